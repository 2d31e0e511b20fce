"""fpx and bitpack on CPU with every choice they make by device answered as on CUDA.

CI has no GPU. The CUDA suite runs the CUDA routes on one, but a route only a GPU takes once
raised there for a case no CPU test reached: ``fpx.decode`` of E8M0 to float16 (the
float32-placement check read E8M0's missing ``min_subnormal``). Here the public entry points
run with every device choice (a function of fpx or bitpack whose first parameter is ``device``
and which returns a bool) answered as on CUDA, for every format, dtype and input set, against
the independent references of the other test modules: eagerly, and LowBitLinear compiled as
well. Two device checks are not such functions: the layer's row limit (the CUDA one is set on
the layer below) and its small-batch word planes (CPU only; the CUDA form is asked for with
``words=False``). The routes one at a time, and their compiled forms, have tests of their own.
"""

import contextlib
import importlib
import importlib.util
import inspect
import pathlib
import pkgutil
from unittest import mock

import numpy as np
import pytest
import torch

import bitpack
import fpx

from .fpx.test_encode import INPUT_SETS, as_float64, boundaries, edge_draws, make_inputs, reference
from .fpx.test_formats import FORMAT_IDS, FORMATS, all_codes, assert_same_floats, format_values
from .fpx.test_nn import CASES, IDS

# (module, function): its answer for a CUDA device of an H100 or H200 (float8 conversions).
CUDA_ANSWERS = {
    ("fpx.convert", "_conversion_pays_off"): lambda device: True,
    ("fpx.convert", "_float_add_pays_off"): lambda device: True,
    ("fpx.convert", "_stochastic_by_float_pays_off"): lambda device: True,
    ("fpx.convert", "_decodes_by_table"): lambda device: False,
    ("fpx.convert", "_float32_placement_pays_off"): lambda device: True,
    ("fpx.convert", "_signs_from_bits"): lambda device: True,
    ("fpx.convert", "_bfloat16_by_float16_placement"): lambda device: True,
    ("fpx.convert", "_16_bit_floats_by_byte_pairs"): lambda device: False,
    ("fpx.convert", "_small_formats_in_float_arithmetic"): lambda device: False,
    ("fpx.nn", "_float_decode_by_casts"): lambda device: True,
    ("fpx.nn", "_e5m2_by_float8_cast"): lambda device: True,
    ("fpx.nn", "_float_bits_pay_off"): lambda device: True,
    ("fpx.nn", "_patterns_from_buffer_pays_off"): lambda device, rows: rows == 1,
    ("fpx.nn", "_marks_the_decode"): lambda device: True,
    ("fpx.nn", "_sums_products_in_one_trip"): lambda device, fmt, rows: fmt.bits != 8 and (rows > 1 or fmt.bits != 4),
    ("fpx.nn", "_matmul_by_weight_blocks"): lambda device: False,
    ("fpx.nn", "_channel_scale_after_matmul"): lambda device: True,
    ("fpx.nn", "_decodes_in_x_dtype"): lambda device: True,
    ("fpx.nn", "_x_in_float32_first"): lambda device, dtype: False,
    ("fpx.nn", "_codes_in_uint8_lanes"): lambda device: False,
    ("fpx.nn", "_float16_matmul_in_float32"): lambda device, dtype: False,
    ("fpx.nn", "_halves_short_segment_sums"): lambda device: True,
    ("fpx.nn", "_weight_as_left_operand"): lambda device, fmt, rows, out_features: (
        (fmt == fpx.E4M3 and rows >= 20) or (fmt == fpx.E5M2 and rows >= 24)
        or (out_features >= 8192 and ((fmt == fpx.INT4 and rows >= 24) or (fmt == fpx.INT8 and rows >= 24)))
        or (fmt == fpx.INT4 and 16 <= rows <= 64 and 2048 <= out_features < 8192)),
    ("fpx.nn", "_splits_k_on_the_left"): lambda device, fmt, rows, out_features: (
        fmt == fpx.INT4 and 16 <= rows <= 64 and 2048 <= out_features < 8192),
    ("fpx.nn", "_splits_k_on_the_right"): lambda device, fmt, rows, out_features, in_features, scales_in_decode: (
        out_features < 8192 and (
            (scales_in_decode and fmt in (fpx.INT4, fpx.INT8, fpx.E2M1) and 5 <= rows <= (32 if fmt == fpx.E2M1 else 64)
             and out_features >= 3584 and in_features >= 11008)
            or (not scales_in_decode and fmt == fpx.INT8 and 24 <= rows <= 64 and out_features >= 4096
                and in_features >= 14336))),
    # CUDA keeps the planes' marked decodes apart inside cold_cache_tuning only: the function's
    # own answer, inside the block or not.
    ("fpx.nn", "_plane_decodes_kept_apart"): lambda device: fpx.tuning.marked_decodes_apart_here(),
    ("bitpack.words", "words_pay_off"): lambda device: True,
    ("bitpack.bits", "_pads_partial_bytes"): lambda device: True,
    ("bitpack.bits", "_packs_bool_bytes_apart"): lambda device: True,
}


def device_choices() -> set:
    """(module, name) of every function of fpx and bitpack whose first parameter is ``device``
    and which returns a bool."""
    found = set()
    for package in (fpx, bitpack):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for name, function in vars(module).items():
                if not inspect.isfunction(function) or function.__module__ != module.__name__:
                    continue
                signature = inspect.signature(function)
                if list(signature.parameters)[:1] == ["device"] and signature.return_annotation in (bool, "bool"):
                    found.add((module.__name__, name))
    return found


@contextlib.contextmanager
def as_on_cuda(float8_conversions: bool = True):
    """Every device choice answered as on CUDA: a GPU with float8 conversion instructions
    (compute capability 8.9 on, such as the H100 the CUDA suite runs on) or, with
    ``float8_conversions=False``, an older one (an A100), which no GPU of the suite is."""
    answers = dict(CUDA_ANSWERS)
    if not float8_conversions:
        answers[("fpx.convert", "_conversion_pays_off")] = lambda device: False
    with contextlib.ExitStack() as stack:
        for (module, name), answer in answers.items():
            stack.enter_context(mock.patch.object(importlib.import_module(module), name, answer))
        yield


GPUS = pytest.mark.parametrize("float8_conversions", [True, False], ids=["sm90", "sm80"])


def test_every_device_choice_is_answered_here():
    # A new choice by device joins CUDA_ANSWERS, so that this module runs its CUDA side.
    assert device_choices() == set(CUDA_ANSWERS)


def test_the_offline_instruction_counts_take_every_cuda_route():
    # benchmarks/sass_offline.py counts CUDA's instructions from CPU tensors: it must switch
    # every device choice (the XOR patterns' aside, which depends on the rows).
    path = pathlib.Path(__file__).parent.parent / "benchmarks" / "sass_offline.py"
    spec = importlib.util.spec_from_file_location("sass_offline_for_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    switched = {(name_of_module, name) for name_of_module, names in module.CUDA_CHOICES.items() for name in names}
    assert switched == set(CUDA_ANSWERS) - {("fpx.nn", "_patterns_from_buffer_pays_off")}


@pytest.mark.parametrize("choice", sorted(CUDA_ANSWERS), ids=lambda choice: choice[1])
def test_the_answers_are_the_functions_own_for_a_cuda_device(choice):
    module, name = choice
    function = getattr(importlib.import_module(module), name)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    # The further arguments of the choices that take them: those for which CUDA answers yes, no.
    further = {
        "_patterns_from_buffer_pays_off": ([(1,)], [(2,)]),  # rows
        "_matmul_by_weight_blocks": ([], [()]),  # CPU's choice: CUDA says no
        "_decodes_by_table": ([], [()]),  # CPU's choice in eager: CUDA says no
        "_16_bit_floats_by_byte_pairs": ([], [()]),  # CPU's choice: CUDA says no
        "_small_formats_in_float_arithmetic": ([], [()]),  # CPU's choice when compiled: CUDA says no
        "_x_in_float32_first": ([], [(torch.bfloat16,), (torch.float16,), (torch.float32,)]),  # CPU's choice
        "_codes_in_uint8_lanes": ([], [()]),  # CPU's choice when compiled: CUDA says no
        "_float16_matmul_in_float32": ([], [(torch.float16,), (torch.bfloat16,), (torch.float32,)]),  # CPU's choice
        "_weight_as_left_operand": ([(fpx.E4M3, 20, 48), (fpx.E5M2, 24, 4096), (fpx.INT4, 24, 8192), (fpx.INT8, 24, 14336),
                                     (fpx.INT4, 64, 2048), (fpx.INT4, 16, 8191)],
                                    [(fpx.E4M3, 19, 8192), (fpx.E5M2, 23, 8192), (fpx.INT4, 23, 8192), (fpx.INT4, 65, 4096),
                                     (fpx.INT4, 15, 4096), (fpx.INT4, 64, 2047), (fpx.INT8, 23, 8192), (fpx.INT8, 128, 4096),
                                     (fpx.UINT4, 64, 8192), (fpx.INT2, 64, 8192), (fpx.E2M1, 64, 8192)]),
        "_splits_k_on_the_left": ([(fpx.INT4, 64, 2048), (fpx.INT4, 16, 8191)],
                                  [(fpx.INT4, 65, 4096), (fpx.INT4, 15, 4096), (fpx.INT4, 64, 8192), (fpx.INT4, 64, 2047),
                                   (fpx.E4M3, 64, 4096), (fpx.INT8, 64, 4096)]),
        "_splits_k_on_the_right": ([(fpx.INT4, 5, 3584, 11008, True), (fpx.INT8, 64, 8191, 14336, True),
                                    (fpx.E2M1, 32, 4096, 28672, True), (fpx.INT8, 24, 4096, 14336, False),
                                    (fpx.INT8, 64, 8191, 14336, False)],
                                   [(fpx.INT4, 4, 4096, 14336, True), (fpx.INT4, 65, 4096, 14336, True),
                                    (fpx.INT4, 16, 3583, 14336, True), (fpx.INT4, 16, 8192, 14336, True),
                                    (fpx.INT8, 32, 4095, 14336, False),
                                    (fpx.INT4, 16, 4096, 11000, True), (fpx.E2M1, 33, 4096, 14336, True),
                                    (fpx.INT8, 23, 4096, 14336, False), (fpx.INT8, 65, 4096, 14336, False),
                                    (fpx.INT8, 32, 4096, 11008, False), (fpx.INT8, 32, 8192, 14336, False),
                                    (fpx.INT4, 32, 4096, 14336, False), (fpx.E4M3, 16, 4096, 14336, False),
                                    (fpx.E4M3, 16, 4096, 14336, True),
                                    (fpx.UINT4, 16, 4096, 14336, True), (fpx.INT2, 16, 4096, 14336, True)]),
        "_sums_products_in_one_trip": ([(fpx.INT3, 1), (fpx.E2M3, 1), (fpx.INT4, 2), (fpx.E2M1, 4)], [(fpx.INT4, 1), (fpx.E4M3, 1), (fpx.INT8, 2), (fpx.INT8, 4)]),
    }
    yes, no = further.get(name, ([()], []))
    # Yes inside cold_cache_tuning's rule, no outside it.
    if name == "_plane_decodes_kept_apart":
        yes, no = [()], [()]
    where_yes = fpx.tuning.marked_decodes_kept_apart if name == "_plane_decodes_kept_apart" else contextlib.nullcontext
    # _conversion_pays_off asks the GPU whether it converts float8 (sm_89 on): an H100's does.
    with mock.patch.object(fpx.convert, "_cuda_has_float8_conversion", lambda index: True):
        for args in yes:
            with where_yes():
                assert function(cuda, *args) is CUDA_ANSWERS[choice](cuda, *args) is True
                # so forcing the answer changes the route on CPU, compiled (FP8 rounding by
                # conversion is CPU's choice in eager too)
                with mock.patch.object(torch.compiler, "is_compiling", lambda: True):
                    assert function(cpu, *args) is False
        for args in no:
            assert function(cuda, *args) is CUDA_ANSWERS[choice](cuda, *args) is False


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64], ids=str)
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_decode(fmt, dtype):
    with as_on_cuda():
        out = fpx.decode(all_codes(fmt), fmt, dtype)
    assert out.dtype == dtype
    # float64 values rounded once to dtype (E8M0's extremes leave float16's range)
    assert_same_floats(out.double().numpy(), torch.from_numpy(format_values(fmt)).to(dtype).double().numpy())


@pytest.mark.parametrize("inputs", INPUT_SETS + ["float64-boundaries"])
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
@GPUS
def test_encode_and_round_to(fmt, inputs, float8_conversions):
    x = boundaries(fmt, np.float64) if inputs == "float64-boundaries" else make_inputs(inputs, fmt)
    for saturate in (True, False):
        expected = reference(fmt).nearest(as_float64(x), saturate)
        with as_on_cuda(float8_conversions):
            codes = fpx.encode(x, fmt, saturate=saturate)
            rounded = fpx.round_to(x, fmt, saturate=saturate)
        bad = np.flatnonzero(codes.numpy() != expected)
        assert bad.size == 0, f"{bad.size} wrong codes, saturate={saturate}; first: x={x[bad[0]].item()!r}"
        values = torch.from_numpy(format_values(fmt)[expected.astype(np.int64)]).to(x.dtype)
        assert rounded.dtype == x.dtype
        assert_same_floats(rounded.double().numpy(), values.double().numpy())


@pytest.mark.parametrize("inputs", INPUT_SETS)
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_stochastic_encode_and_round_to(fmt, inputs):
    x = make_inputs(inputs, fmt)
    uniform = edge_draws(x.shape, seed=5)
    for saturate in (True, False):
        expected = reference(fmt).stochastic(as_float64(x), uniform.double().numpy(), saturate)
        with as_on_cuda(True):
            codes = fpx.encode(x, fmt, saturate=saturate, rounding="stochastic", uniform=uniform)
            rounded = fpx.round_to(x, fmt, saturate=saturate, rounding="stochastic", uniform=uniform)
        bad = np.flatnonzero(codes.numpy() != expected)
        assert bad.size == 0, f"{bad.size} wrong codes, saturate={saturate}; first: x={x[bad[0]].item()!r}"
        values = torch.from_numpy(format_values(fmt)[expected.astype(np.int64)]).to(x.dtype)
        assert_same_floats(rounded.double().numpy(), values.double().numpy())


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("fmt, kwargs", CASES, ids=IDS)
def test_low_bit_linear_small_batch_and_matmul_forms(fmt, kwargs, rows):
    # The small-batch reductions in their CUDA form (byte planes) and the matmul path's W.T.
    torch.manual_seed(rows)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(256, 48), fmt, **kwargs)
    x = torch.randn(rows, 256)
    weight = layer.dequantize_weight()
    with as_on_cuda():
        out = layer._gemv(x, words=False, bias=layer.bias)
        transposed = layer._matmul_weight(torch.float32)
    expected = x.double() @ weight.double().T + layer.bias.double()
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(transposed, weight.T, rtol=1e-6, atol=1e-7)


# Compiled as on CUDA: CUDA's row limit, so the small-batch reductions at one and two rows and
# the matmul path (its decode under the InvokeQuant marker) one row past the limit. A few
# representative cases (each costs two compiles): integer fields by float bits, FP4 in place,
# FP6 by the sign shift, a zero point, MX scales.
COMPILED_CASES = [(fpx.INT4, {"group_size": 128}), (fpx.E2M1, {"group_size": 32}), (fpx.E3M2, {"group_size": 32}),
                  (fpx.UINT4, {"group_size": 64}), (fpx.E4M3, {"block": "mx"})]


@pytest.mark.parametrize("fmt, kwargs", COMPILED_CASES, ids=[f"{fmt.name}-{kw}" for fmt, kw in COMPILED_CASES])
def test_low_bit_linear_compiled(fmt, kwargs):
    torch.manual_seed(0)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(256, 48), fmt, **kwargs)
    limit = fpx.nn.default_gemv_max_rows("cuda", fmt, block=kwargs.get("block"))
    layer.gemv_max_rows = limit
    for rows in sorted({1, min(2, limit), limit + 1}):  # 2: 4/8-bit products as buffers from 2 rows
        x = torch.randn(rows, 256)
        expected = x.double() @ layer.dequantize_weight().double().T + layer.bias.double()
        torch._dynamo.reset()
        with as_on_cuda():
            out = torch.compile(layer, fullgraph=True, dynamic=False)(x)
        torch._dynamo.reset()  # no compiled forward with the forced choices left for later tests
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


# From 20-24 rows CUDA multiplies E4M3, E5M2 and INT4 with per-channel scales as (W @ x.T).T,
# the decode returned as W itself from the InvokeQuant subgraph. With x in float32 that decode
# was a reshape of its last value, a view, which inductor's invoke_quant lowering raised on
# (NotImplementedError: ReinterpretView) until the compiled decode kept W's two dims.
# From 2048 to 8191 output features and 16 to 64 rows, INT4's left route splits K in two (W as
# (2 N, K / 2), x as a view (2 M, K / 2), the product's two diagonal blocks summed).
@pytest.mark.parametrize("fmt, dtype, splits", [(fpx.E4M3, torch.float32, 1), (fpx.E4M3, torch.bfloat16, 1),
                                                (fpx.E5M2, torch.bfloat16, 1), (fpx.INT4, torch.bfloat16, 1),
                                                (fpx.INT8, torch.bfloat16, 1), (fpx.INT4, torch.bfloat16, 2),
                                                (fpx.INT4, torch.float32, 2)],
                         ids=["E4M3-float32", "E4M3-bfloat16", "E5M2-bfloat16", "INT4-bfloat16", "INT8-bfloat16",
                              "INT4-bfloat16-split", "INT4-float32-split"])
def test_low_bit_linear_compiled_with_the_weight_on_the_left(fmt, dtype, splits):
    torch.manual_seed(0)
    out_features = max(48, fpx.nn.LEFT_OPERAND_MIN_OUT_FEATURES.get(fmt, 0))
    if splits > 1:
        out_features = fpx.nn.LEFT_OPERAND_SPLIT_K[fmt].min_out_features
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(256, out_features), fmt, group_size=None,
                                         gemv_max_rows=4).to(dtype)  # CUDA's limit (CPU's is 16)
    rows = fpx.nn.LEFT_OPERAND_SPLIT_K[fmt].min_rows if splits > 1 else fpx.nn.LEFT_OPERAND_MIN_ROWS[fmt]
    x = torch.randn(1, rows, 256, dtype=dtype)  # rows of a batch of one
    assert fpx.nn._weight_as_left_operand(torch.device("cuda"), fmt, x.shape[1], out_features)
    asked = []
    original = fpx.LowBitLinear._matmul_weight
    torch._dynamo.reset()
    with as_on_cuda(), mock.patch.object(fpx.LowBitLinear, "_matmul_weight",
                                         lambda self, *args, **kwargs: asked.append((kwargs.get("left"), kwargs.get("splits")))
                                         or original(self, *args, **kwargs)):
        out = torch.compile(layer, fullgraph=True, dynamic=False)(x)
    torch._dynamo.reset()
    assert asked == [(True, splits)]
    assert out.is_contiguous()  # as F.linear's, not the transposed product's view
    weight = layer.dequantize_weight().double()
    expected = x.double() @ weight.T + layer.bias.double()
    bound = x.double().abs() @ weight.abs().T + layer.bias.double().abs()
    # float32: float32 sums; bfloat16: the product, its scaling and the bias rounded to bfloat16,
    # and split, each half's product rounded (by at most 2^-8 of |x| @ |W|.T, the halves together)
    allowed = 1e-5 * bound if dtype == torch.float32 else 1e-5 * bound + 2**-7 * (expected.abs() + layer.bias.double().abs())
    if dtype != torch.float32 and splits > 1:
        allowed = allowed + 2**-8 * (x.double().abs() @ weight.abs().T)
    assert bool(((out.double() - expected).abs() <= allowed).all())


# Past CUDA's row limit with bfloat16 x, 8-bit integer codes go to bfloat16 through int8 in the
# matmul's decode (fpx.nn._bytes_as_bfloat16; UINT8's zero-points alike), the scales multiplied
# in bfloat16, per channel (scales on the product) or by groups: compiled as on CUDA, the output
# against the dequantized weight in float64.
@pytest.mark.parametrize("fmt, group_size", [(fpx.INT8, None), (fpx.INT8, 32), (fpx.UINT8, 32)],
                         ids=["INT8-per-channel", "INT8-by-32", "UINT8-by-32"])
def test_low_bit_linear_compiled_8_bit_codes_decoded_to_bfloat16_through_int8(fmt, group_size):
    torch.manual_seed(0)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(256, 48), fmt, group_size=group_size,
                                         gemv_max_rows=4).to(torch.bfloat16)  # CUDA's limit (CPU's is 16)
    x = torch.randn(5, 256, dtype=torch.bfloat16)
    in_x_dtype = []  # the decode's own calls are traced inside InvokeQuant: asked outside it
    original = fpx.nn._decode_in_x_dtype_applies
    torch._dynamo.reset()
    with as_on_cuda(), mock.patch.object(fpx.nn, "_decode_in_x_dtype_applies",
                                         lambda *args: in_x_dtype.append(original(*args)) or in_x_dtype[-1]):
        out = torch.compile(layer, fullgraph=True, dynamic=False)(x)
    torch._dynamo.reset()
    assert in_x_dtype == [True]
    weight = layer.dequantize_weight().double()
    expected = x.double() @ weight.T + layer.bias.double()
    bound = x.double().abs() @ weight.abs().T + layer.bias.double().abs()
    # bfloat16 roundings, each within 2^-9 relative: by groups each weight, per channel the
    # product and its scaling; then the output and the bias
    assert bool(((out.double() - expected).abs() <= 2**-7 * bound).all())


# Per-channel INT4, INT2 and E2M1 compiled as on CUDA inside cold_cache_tuning's rule: one
# product per plane of the packed bytes (LowBitLinear._plane_products), on the right from 5 to
# 16 rows (fpx.nn.PLANE_PRODUCTS_RIGHT_ROWS) and on the left from 17 rows at 8192 output
# features (fpx.nn.PLANE_PRODUCTS_LEFT_ROWS, under INT4's one-product left route's 24; INT2
# and E2M1 take the left route only by plane); the output contiguous, against the dequantized
# weight. E2M1 decodes each plane in bfloat16 (fpx.fields._float_field_values_in_bfloat16).
@pytest.mark.parametrize("fmt, rows, left", [(fpx.INT4, 16, False), (fpx.INT4, 17, True), (fpx.INT2, 16, False),
                                             (fpx.INT2, 17, True), (fpx.E2M1, 5, False), (fpx.E2M1, 17, True)],
                         ids=["INT4-right", "INT4-left", "INT2-right", "INT2-left", "E2M1-right", "E2M1-left"])
def test_low_bit_linear_compiled_by_plane(fmt, rows, left):
    torch.manual_seed(0)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(256, 8192), fmt, group_size=None,
                                         gemv_max_rows=4).to(torch.bfloat16)  # CUDA's limit (CPU's is 16)
    x = torch.randn(rows, 256, dtype=torch.bfloat16)
    asked = []
    original = fpx.LowBitLinear._plane_products
    torch._dynamo.reset()
    with as_on_cuda(), fpx.tuning.marked_decodes_kept_apart(), mock.patch.object(
            fpx.LowBitLinear, "_plane_products", lambda self, x2d, left: asked.append(left) or original(self, x2d, left)):
        out = torch.compile(layer, fullgraph=True, dynamic=False)(x)
    torch._dynamo.reset()
    assert asked == [left]
    assert out.is_contiguous()
    weight = layer.dequantize_weight().double()
    expected = x.double() @ weight.T + layer.bias.double()
    bound = x.double().abs() @ weight.abs().T + layer.bias.double().abs()
    # bfloat16 roundings, each within 2^-9 relative: each plane's product (each after the first
    # with the sum so far added), the scaling, the output and the bias
    roundings = 8 // fmt.bits + 3
    assert bool(((out.double() - expected).abs() <= roundings * 2**-9 * bound).all())


@pytest.mark.parametrize("bitorder", ["big", "little"])
def test_packbits_by_byte_loads(bitorder):
    generator = torch.Generator().manual_seed(0)
    for n in [*range(20), 64]:  # 64: whole words, which CPU reads as int64 words
        bits = torch.randint(0, 2, (3, n), generator=generator).bool()
        with as_on_cuda():
            packed = bitpack.packbits(bits, dim=-1, bitorder=bitorder)
        np.testing.assert_array_equal(packed.numpy(), np.packbits(bits.numpy(), axis=-1, bitorder=bitorder))
