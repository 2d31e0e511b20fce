"""LowBitLinear and quantize_: correctness against the dequantized weight, state, errors."""

import io
import math
import re
from unittest import mock

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import bitpack
import fpx
from fpx.formats import FloatFormat
from fpx import LowBitLinear, quantize_
from fpx.fields import (
    _float32_shift_decodes,
    _float_field_values,
    _float_field_values_in_bfloat16,
    _float_fields_in_place,
    _float_values_by_float32_shift,
    _int_field_values,
    _uint_values_plus_two_pow_23,
)
from fpx.nn import dequantize_packed

# (fmt, keyword arguments) covering every kind of scale the layer stores.
CASES = [
    (fpx.INT1, {"group_size": 32}),
    (fpx.INT2, {"group_size": 32}),
    (fpx.INT3, {"group_size": 64}),
    (fpx.INT4, {"group_size": 128}),
    (fpx.INT5, {"group_size": 32}),
    (fpx.INT8, {"group_size": None}),
    (fpx.UINT3, {"group_size": 32}),
    (fpx.UINT4, {"group_size": 64}),
    (fpx.E4M3, {"group_size": None}),
    (fpx.E5M2, {"group_size": 64}),
    (fpx.E3M2, {"group_size": 32}),
    (fpx.E2M3, {"group_size": 128}),
    (fpx.E2M1, {"group_size": 32}),
    (fpx.E2M1, {"block": "mx"}),
    (fpx.E4M3, {"block": "mx"}),
]
IDS = [f"{fmt.name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for fmt, kw in CASES]


def make_linear(k=256, n=48, bias=True, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Linear(k, n, bias=bias).to(dtype)


@pytest.mark.parametrize("fmt, kwargs", CASES, ids=IDS)
def test_weight_round_trips_through_the_packed_layout(fmt, kwargs):
    linear = make_linear()
    layer = LowBitLinear.from_linear(linear, fmt, scale_dtype=torch.float32, **kwargs)
    group_size = kwargs.get("group_size", 128)
    if kwargs.get("block") == "mx":
        group_size = 32
    expected = fpx.quantize(linear.weight.detach(), fmt, axis=-1, group_size=group_size, block=kwargs.get("block"))
    assert torch.equal(layer.dequantize_weight(), expected.dequantize(torch.float32))


@pytest.mark.parametrize("fmt, kwargs", CASES, ids=IDS)
def test_eager_forward_matches_dequantized_matmul(fmt, kwargs):
    linear = make_linear()
    layer = LowBitLinear.from_linear(linear, fmt, **kwargs)
    x = torch.randn(2, 5, 256)
    expected = x.double() @ layer.dequantize_weight().double().T + layer.bias.double()
    torch.testing.assert_close(layer(x).double(), expected, rtol=1e-5, atol=1e-5)


# An odd row count in the small-batch reductions, x a view into the middle of a larger tensor
# (an offset into its storage, strided rows: the reductions write x out first where the graph
# computes it and read a view in place); tests/fpx/test_nn_codegen.py compiles every format at
# 1 and 16 rows (MX E2M1 among them) with x contiguous, and tests/test_cuda_routes.py CUDA's routes.
@pytest.mark.parametrize("fmt, kwargs, rows", [(*CASES[3], 1), (*CASES[3], 7), (*CASES[6], 7), (*CASES[12], 1)],
                         ids=[f"{IDS[3]}-1", f"{IDS[3]}-7", f"{IDS[6]}-7", f"{IDS[12]}-1"])
def test_compiled_forward_matches_dequantized_matmul(fmt, kwargs, rows):
    layer = LowBitLinear.from_linear(make_linear(), fmt, **kwargs)
    x = torch.randn(2, rows, 263)[1, :, 5:261]
    assert x.storage_offset() > 0 and x.stride(0) == 263
    expected = x.double() @ layer.dequantize_weight().double().T + layer.bias.double()
    compiled = torch.compile(layer, fullgraph=True)
    torch.testing.assert_close(compiled(x).double(), expected, rtol=1e-5, atol=1e-5)


# Gradients flow to x and the bias through the compiled forward (a frozen low-bit base under a
# trained adapter): at one row the reductions, whose x is a view written out where the graph
# computes it, and past CPU's row limit the weight decoded by blocks. Against float64 autograd
# through the dequantized weight.
@pytest.mark.parametrize("rows", [1, 20])
def test_compiled_forward_passes_gradients_to_x_and_the_bias(rows):
    layer = LowBitLinear.from_linear(make_linear(), CASES[3][0], **CASES[3][1])
    layer.bias.requires_grad_(True)
    base = torch.randn(rows + 1, 263, requires_grad=True)

    def loss(layer_fn, base):
        x = torch.nn.functional.silu(base[1:, 5:261])  # computed, then read by the layer
        return (layer_fn(x) * torch.linspace(-1, 1, 48)).square().sum()

    grads = torch.autograd.grad(loss(torch.compile(layer, fullgraph=True), base), [base, layer.bias])
    weight = layer.dequantize_weight().double()
    base64, bias64 = base.detach().double().requires_grad_(), layer.bias.detach().double().requires_grad_()
    expected = torch.autograd.grad(loss(lambda x: x @ weight.T + bias64, base64), [base64, bias64])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


def test_compiled_large_batch_path_matches():
    # x of three dims past a row limit set on the layer (tests/fpx/test_nn_codegen.py compiles
    # INT4, UINT4 by 32 and MX E2M1 past the default limit)
    layer = LowBitLinear.from_linear(make_linear(), CASES[3][0], gemv_max_rows=2, **CASES[3][1])
    x = torch.randn(3, 4, 256)
    expected = x.double() @ layer.dequantize_weight().double().T + layer.bias.double()
    torch.testing.assert_close(torch.compile(layer, fullgraph=True)(x).double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_activations(dtype):
    layer = LowBitLinear.from_linear(make_linear(), fpx.INT4).to(dtype)
    assert layer.scale.dtype == dtype and layer.bias.dtype == dtype and layer.packed.dtype == torch.uint8
    x = torch.randn(3, 256, dtype=dtype)
    out = layer(x)
    assert out.dtype == dtype
    expected = x.float() @ layer.dequantize_weight().T + layer.bias.float()
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)
    compiled = torch.compile(layer, fullgraph=True)(x[:1])
    torch.testing.assert_close(compiled.float(), expected[:1], rtol=2e-2, atol=2e-2)


def test_quantization_error_is_small_for_8_bit_and_larger_for_fewer_bits():
    linear = make_linear(k=512, n=64)
    x = torch.randn(16, 512)
    ref = linear(x)
    errors = {}
    for fmt in (fpx.INT8, fpx.INT4, fpx.INT2):
        out = LowBitLinear.from_linear(linear, fmt, scale_dtype=torch.float32)(x)
        errors[fmt.name] = ((out - ref).norm() / ref.norm()).item()
    assert errors["INT8"] < 0.01 < errors["INT4"] < 0.2 < errors["INT2"] < 1.0


def test_state_dict_round_trip_with_weights_only_load():
    layer = LowBitLinear.from_linear(make_linear(), fpx.UINT4, group_size=64)
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = LowBitLinear(256, 48, fpx.UINT4, group_size=64, scale_dtype=torch.float32)
    fresh.load_state_dict(state)
    x = torch.randn(4, 256)
    assert torch.equal(fresh(x), layer(x))


@pytest.mark.parametrize(
    "other",
    [
        dict(in_features=256, out_features=48, fmt=fpx.E2M1, group_size=64),  # same packed shape, other format
        dict(in_features=256, out_features=48, fmt=fpx.UINT4, group_size=128),
        dict(in_features=512, out_features=48, fmt=fpx.UINT4, group_size=64),
    ],
)
def test_loading_a_state_dict_of_another_configuration_is_an_error(other):
    state = LowBitLinear.from_linear(make_linear(), fpx.UINT4, group_size=64).state_dict()
    layer = LowBitLinear(other.pop("in_features"), other.pop("out_features"), other.pop("fmt"), **other)
    with pytest.raises(ValueError, match="saved for a LowBitLinear with"):
        layer.load_state_dict(state)


@pytest.mark.parametrize("saved, other", [
    (fpx.exmy(4, 3), fpx.E4M3),  # no NaN / NaN at 0x7F (480 against NaN)
    (fpx.E5M2, fpx.exmy(5, 2)),  # inf and NaN / every code finite
    (fpx.E3M2, fpx.exmy(3, 2, bias=2)),  # another bias: every value doubled
], ids=["E4M3-finite-fn", "E5M2-ieee-finite", "E3M2-bias"])
def test_a_state_dict_of_a_format_of_the_same_bits_and_other_values_is_an_error(saved, other):
    """The state records the format's fields: loading it into a layer of a format with the same
    exponent and mantissa bits (the same packed shape) and other values would decode every code
    differently, silently; even with the state's name changed to the layer's format's name."""
    assert (saved.exponent_bits, saved.mantissa_bits) == (other.exponent_bits, other.mantissa_bits) and saved != other
    state = LowBitLinear.from_linear(make_linear(), saved, group_size=64).state_dict()
    layer = LowBitLinear(256, 48, other, group_size=64)
    with pytest.raises(ValueError, match="saved for a LowBitLinear with"):
        layer.load_state_dict(state)
    renamed = dict(state, _extra_state=dict(state["_extra_state"], fmt=other.name))
    with pytest.raises(ValueError, match="saved for a LowBitLinear with"):
        layer.load_state_dict(renamed)
    LowBitLinear(256, 48, saved, group_size=64).load_state_dict(state)  # its own format loads


def test_a_state_dict_loads_by_its_format_fields_whatever_the_name_it_recorded():
    """fpx.exmy(4, 3) (no NaN) was named "E4M3" like fpx.E4M3 until its name told them apart: a
    state saved then records that name and the fields "E4M3 bias 7 finite", and loads into an
    exmy(4, 3) layer, whose weights it restores exactly, and into no fpx.E4M3 layer."""
    fmt = fpx.exmy(4, 3)
    assert fmt.name != fpx.E4M3.name
    layer = LowBitLinear.from_linear(make_linear(), fmt, group_size=64)
    state = layer.state_dict()
    assert state["_extra_state"]["fmt_fields"] == "E4M3 bias 7 finite"
    state["_extra_state"] = dict(state["_extra_state"], fmt="E4M3")
    fresh = LowBitLinear(256, 48, fmt, group_size=64, scale_dtype=layer.scale.dtype)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.packed, layer.packed) and torch.equal(fresh.scale, layer.scale)
    with pytest.raises(ValueError, match="saved for a LowBitLinear with"):
        LowBitLinear(256, 48, fpx.E4M3, group_size=64).load_state_dict(state)


def test_a_state_dict_saved_without_format_fields_loads_into_the_named_format():
    """State dicts saved before the fields were recorded name fpx's own format: they load into
    a layer of that format, and not into a namesake of other fields."""
    layer = LowBitLinear.from_linear(make_linear(), fpx.E4M3, group_size=64)
    state = layer.state_dict()
    old = {key: value for key, value in state["_extra_state"].items() if key != "fmt_fields"}
    state["_extra_state"] = old
    fresh = LowBitLinear(256, 48, fpx.E4M3, group_size=64, scale_dtype=torch.float32)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.packed, layer.packed) and torch.equal(fresh.scale, layer.scale)
    with pytest.raises(ValueError, match="saved for a LowBitLinear with"):
        LowBitLinear(256, 48, fpx.exmy(4, 3), group_size=64).load_state_dict(state)


def test_repr_shows_format_group_and_memory():
    layer = LowBitLinear.from_linear(make_linear(k=1024, n=1024), fpx.INT4, group_size=128, scale_dtype=torch.bfloat16)
    text = repr(layer)
    assert "fmt=INT4" in text and "group_size=128" in text
    # 4 bits per code + one bf16 scale per 128 codes = 4.125 bits per weight
    assert "528 KiB (4.12 bits/weight)" in text
    assert layer.weight_nbytes == 1024 * 1024 // 2 + 1024 * 8 * 2


def test_bad_configurations_raise():
    with pytest.raises(ValueError, match="group_size=100 does not divide in_features=256"):
        LowBitLinear(256, 8, fpx.INT4, group_size=100)
    with pytest.raises(ValueError, match="in_features must be a multiple of 8"):
        LowBitLinear(20, 8, fpx.INT4, group_size=None)
    with pytest.raises(TypeError, match="fmt must be an fpx format"):
        LowBitLinear(256, 8, "int4")
    with pytest.raises(ValueError, match="block='mx' needs a float format"):
        LowBitLinear(256, 8, fpx.INT4, block="mx")
    with pytest.raises(ValueError, match="scale format"):
        LowBitLinear(256, 8, fpx.E8M0)
    with pytest.raises(ValueError, match="scale_dtype must be one of"):
        LowBitLinear(256, 8, fpx.INT4, scale_dtype=torch.int8)
    with pytest.raises(TypeError, match="linear must be a torch.nn.Linear"):
        LowBitLinear.from_linear(nn.Conv1d(2, 2, 1), fpx.INT4)
    for rows in (-1, 2.0, "4", True):
        with pytest.raises(ValueError, match=f"gemv_max_rows must be None or a non-negative int, got {rows!r}"):
            LowBitLinear(256, 8, fpx.INT4, gemv_max_rows=rows)
        with pytest.raises(ValueError, match="gemv_max_rows must be"):
            LowBitLinear.from_linear(nn.Linear(256, 8), fpx.INT4, gemv_max_rows=rows)
    assert LowBitLinear(256, 8, fpx.INT4, gemv_max_rows=0).gemv_max_rows == 0  # the matmul path at every row count
    with pytest.raises(TypeError, match="filter_fn must be None or a callable.*got 3"):
        quantize_(nn.Sequential(nn.Linear(64, 32)), fpx.INT4, group_size=32, filter_fn=3)
    for bits in (0, 9, "4", True):
        with pytest.raises(ValueError, match=f"bits must be an int from 1 to 8, got {bits!r}"):
            fpx.nn.planar_group(bits)
    layer = LowBitLinear(256, 8, fpx.INT4)
    with pytest.raises(ValueError, match=r"in_features=256 in its last dim, got shape \(2, 128\)"):
        layer(torch.randn(2, 128))
    with pytest.raises(TypeError, match="x must be float32, bfloat16 or float16, got torch.int64"):
        layer(torch.ones(2, 256, dtype=torch.int64))


def test_quantize_swaps_linears_in_place_with_filter():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Sequential(nn.Linear(128, 64), nn.Linear(64, 10)))
    x = torch.randn(5, 64)
    ref = model(x)
    out_model = quantize_(model, fpx.INT8, group_size=32, filter_fn=lambda module, name: name != "2.1")
    assert out_model is model
    assert isinstance(model[0], LowBitLinear) and isinstance(model[2][0], LowBitLinear)
    assert type(model[2][1]) is nn.Linear
    torch.testing.assert_close(model(x), ref, rtol=0.05, atol=0.05)


def test_linear_weight_nbytes_counts_codes_scales_and_zero_points():
    """Dense weights at their element size; LowBitLinear's packed codes (4 bits each), scales
    (bfloat16 here, one per group of 32) and UINT4's zero-points (a byte per group); biases
    and other modules not at all."""
    model = nn.Sequential(nn.Linear(128, 64), nn.LayerNorm(64), nn.Linear(64, 32)).to(torch.bfloat16)
    assert fpx.nn.linear_weight_nbytes(model) == (128 * 64 + 64 * 32) * 2
    fpx.quantize_(model, fpx.UINT4, group_size=32, filter_fn=lambda module, name: name == "0")
    codes, groups = 128 * 64 // 2, 64 * (128 // 32)
    assert fpx.nn.linear_weight_nbytes(model) == codes + groups * 2 + groups * 1 + 64 * 32 * 2
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        fpx.nn.linear_weight_nbytes(torch.zeros(3))


def test_quantize_checks_every_layer_before_changing_any():
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 20), nn.Linear(20, 4))
    with pytest.raises(ValueError, match=r"cannot quantize layer '2'.*in_features must be a multiple of 8"):
        quantize_(model, fpx.INT4, group_size=None)
    assert all(type(m) is nn.Linear for m in model)


def _reference_value(code: int, fmt) -> float:
    """The value of a signed ExMy code from its fields (independent of fpx.decode)."""
    e_bits, m_bits = fmt.exponent_bits, fmt.mantissa_bits
    sign = -1.0 if code >> (e_bits + m_bits) & 1 else 1.0
    e, m = (code >> m_bits) & ((1 << e_bits) - 1), code & ((1 << m_bits) - 1)
    if fmt.special == "fn" and e == (1 << e_bits) - 1 and m == (1 << m_bits) - 1:
        return float("nan")
    if fmt.special == "ieee" and e == (1 << e_bits) - 1:
        return sign * float("inf") if m == 0 else float("nan")
    if e == 0:
        return sign * m / 2**m_bits * 2.0 ** (1 - fmt.bias)
    return sign * (1 + m / 2**m_bits) * 2.0 ** (e - fmt.bias)


GRID_FORMATS = [
    fpx.E4M3, fpx.E5M2, fpx.E3M2, fpx.E2M3, fpx.E2M1, fpx.exmy(4, 2), fpx.exmy(5, 1), fpx.exmy(6, 1), fpx.exmy(1, 2),
    fpx.exmy(3, 2, special="fn"), fpx.exmy(4, 1, special="fn"),
]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize(
    "decoder, fmt",
    [("_grid_values", f) for f in GRID_FORMATS]
    # The CUDA decode of small float formats, also checked on CPU (which decodes otherwise).
    + [("_float_values_by_float16_placement", f) for f in GRID_FORMATS if f.exponent_bits <= 4 or f.name == "E5M2"],
    ids=lambda v: v if isinstance(v, str) else v.name,
)
def test_weight_decode_gives_every_codes_exact_value(decoder, fmt, device):
    """The layer's fast float decodes (float8 / float16 casts, 32-bit lanes) against the codes'
    field values."""
    import fpx.nn

    fn = getattr(fpx.nn, decoder)
    codes = torch.arange(2**fmt.bits, dtype=torch.int32, device=device)
    expected = torch.tensor([_reference_value(c, fmt) for c in range(2**fmt.bits)], dtype=torch.float64)
    torch._dynamo.reset()  # each case compiles anew, never past dynamo's recompile limit into eager
    for decode in (fn, torch.compile(fn, fullgraph=True)):
        got = decode(codes, fmt).cpu()
        assert got.dtype == torch.float32
        assert torch.equal(got.isnan(), expected.isnan())
        finite = ~expected.isnan()
        assert torch.equal(got[finite].double(), expected[finite])
        assert torch.equal(got[finite].signbit(), expected[finite].signbit())  # -0.0 included


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_e8m0_scale_decode_gives_every_codes_exact_value(device):
    from fpx.fields import _e8m0_values

    codes = torch.arange(256, dtype=torch.uint8, device=device)
    expected = [2.0 ** (c - 127) for c in range(255)] + [float("nan")]
    torch._dynamo.reset()  # each case compiles anew, never past dynamo's recompile limit into eager
    for decode in (_e8m0_values, torch.compile(_e8m0_values, fullgraph=True)):
        got = decode(codes).cpu()
        assert got.dtype == torch.float32
        assert [float(v) for v in got[:255].double()] == expected[:255]
        assert got[255].isnan()


@given(st.integers(1, 512), st.integers(1, 64))
def test_segments_are_halved_until_a_plane_has_8_or_they_are_odd(segment, segments):
    # CUDA's segments (fpx.nn._segment_for_summed_segments): inductor unrolls a sum of fewer
    # than 8 elements into pointwise additions, so a plane's 2-7 segments are halved, each a
    # divisor of the original segment (which never straddles a group), and no further than needed.
    halved = fpx.nn._segment_for_summed_segments(segment, segments)
    assert segment % halved == 0
    count = segments * (segment // halved)
    if segments == 1 or segments >= 8:
        assert halved == segment
    else:
        assert count >= 8 or halved % 2 == 1
        assert halved == segment or count < 16


FORMULATION_FORMATS = [
    (fpx.INT1, None), (fpx.INT2, None), (fpx.INT3, None), (fpx.INT4, None), (fpx.INT7, None), (fpx.INT8, None),
    (fpx.UINT2, None), (fpx.UINT5, None), (fpx.E4M3, None), (fpx.E5M2, None), (fpx.E3M2, None),
    (fpx.E2M3, None), (fpx.E2M1, None), (fpx.E2M1, "mx"), (fpx.E3M2, "mx"),
]


@st.composite
def layer_configs(draw):
    fmt, block = draw(st.sampled_from(FORMULATION_FORMATS))
    k = 8 * draw(st.integers(1, 24))
    if block == "mx":
        k = 32 * draw(st.integers(1, 6))
        group_size = 32
    else:
        divisors = [d for d in range(1, k + 1) if k % d == 0]
        group_size = draw(st.sampled_from(divisors + [None]))
    return fmt, block, k, group_size, draw(st.integers(1, 9)), draw(st.integers(1, 5)), draw(st.booleans())


@given(config=layer_configs())
def test_both_compiled_formulations_match_the_dequantized_weight(config):
    """The forms the compiled forward uses, run eagerly on many shapes: the small-batch
    reductions over byte or word planes (segments of scale groups that may span planes, or
    planes that span groups) and the transposed decode of the matmul path."""
    fmt, block, k, group_size, n, rows, with_zero_codes = config
    torch.manual_seed(k * 131 + n)
    linear = nn.Linear(k, n, bias=False)
    if with_zero_codes:
        with torch.no_grad():
            linear.weight[:, : k // 2] = 0  # whole groups of zeros: zero scales, zero-points at 0
    layer = LowBitLinear.from_linear(linear, fmt, group_size=group_size, block=block)
    x = torch.randn(rows, k)
    weight = layer.dequantize_weight()
    expected = x.double() @ weight.double().T
    scale = x.double().abs() @ weight.double().abs().T
    # byte planes with codes by float bits (CUDA's default) or by conversion, 32-bit word
    # planes (CPU's default for one row); byte planes also with CUDA's segments (halved while a
    # plane has 2-7 of them)
    for words, float_bits, halved in ((False, True, False), (False, False, False), (True, False, False),
                                      (False, True, True), (False, False, True)):
        with mock.patch.object(fpx.nn, "_halves_short_segment_sums", lambda device: halved):
            got = layer._gemv(x, words=words, float_bits=float_bits).double()
        assert got.shape == (rows, n)
        close = (got - expected).abs() <= 1e-5 * scale + 1e-6
        assert bool(close.all()), (words, float_bits, halved, got, expected)
    assert torch.equal(layer._matmul_weight(torch.float32), weight.T)
    # The matmul by blocks of output rows (CPU's past gemv_max_rows: n of 1-9 rows make blocks
    # of one row, or of two with a shorter last one), with a bias.
    bias = torch.randn(n)
    got = layer._matmul_by_weight_blocks(x, bias).double()
    assert got.shape == (rows, n)
    assert bool(((got - expected - bias.double()).abs() <= 1e-5 * scale + 1e-6).all()), (got, expected)
    # The weight by float bits (the prologue's decode on CUDA) against the one by conversion.
    layout = dict(fmt=layer.fmt, group_size=layer.group_size, block=layer.block)
    assert torch.equal(dequantize_packed(*layer._weight_tensors(), **layout, float_bits=True), weight)


def in_place_float_formats():
    """fpx.E2M1 and every 2 or 4-bit exmy format (biases 0, default, 3) that the in-place float
    decode takes."""
    formats = [fpx.E2M1]
    for e, m in ((1, 0), (1, 2), (2, 1), (3, 0)):
        for bias in (None, 0, 3):
            formats.append(fpx.exmy(e, m, bias=bias))
    return [f for f in formats if _float_fields_in_place(f)]


@pytest.mark.parametrize("fmt", in_place_float_formats(), ids=lambda f: f"{f.name}-b{f.bias}")
def test_float_field_values_is_fpx_decode_for_every_code_and_shift(fmt):
    """Every code at every position a byte holds one (the word's other bits set at random),
    bit for bit against fpx.decode (the sign of zero included)."""
    expected = fpx.decode(torch.arange(1 << fmt.bits, dtype=torch.uint8), fmt).view(torch.int32)
    for shift, word in every_code_at_every_shift(fmt):
        assert torch.equal(_float_field_values(word, fmt, shift=shift).view(torch.int32), expected), shift


def every_code_at_every_shift(fmt):
    """(shift, int32 words) with every code of ``fmt`` in order at bit ``shift``, for each
    position a byte holds one, the words' other bits at random."""
    codes = torch.arange(1 << fmt.bits, dtype=torch.int32)
    generator = torch.Generator().manual_seed(fmt.bits + fmt.bias)
    for shift in range(0, 8, fmt.bits):
        junk = torch.randint(-(2**31), 2**31 - 1, codes.shape, dtype=torch.int32, generator=generator)
        yield shift, (codes << shift) | (junk & ~(((1 << fmt.bits) - 1) << shift))


@pytest.mark.parametrize("fmt", in_place_float_formats(), ids=lambda f: f"{f.name}-b{f.bias}")
def test_float_field_values_in_bfloat16_is_fpx_decode_for_every_code_and_shift(fmt):
    """The same in bfloat16 (the plane products' decode for bfloat16 x on CUDA): every code at
    every position, the word's other bits at random, bit for bit (as float32) against fpx.decode."""
    expected = fpx.decode(torch.arange(1 << fmt.bits, dtype=torch.uint8), fmt).view(torch.int32)
    for shift, word in every_code_at_every_shift(fmt):
        values = _float_field_values_in_bfloat16(word, fmt, shift=shift)
        assert values.dtype == torch.bfloat16
        assert torch.equal(values.float().view(torch.int32), expected), shift


def test_float_field_values_in_bfloat16_refuses_formats_it_cannot_place():
    with pytest.raises(ValueError, match="fmt must be a format whose fields place in bfloat16, got .*E3M2"):
        _float_field_values_in_bfloat16(torch.zeros(2, dtype=torch.int32), fpx.E3M2, shift=0)


def float32_shift_formats():
    """The OCP FP6/FP4 formats, signed exmy formats of every width the layer stores (biases 0,
    default and 10), and unsigned ones (no sign bit, zero and subnormals kept)."""
    formats = [fpx.E3M2, fpx.E2M3, fpx.E2M1]
    for e, m in ((1, 0), (1, 1), (2, 2), (3, 1), (4, 3), (5, 2), (6, 1), (7, 0), (3, 4)):
        for bias in (None, 0, 10):
            formats.append(fpx.exmy(e, m, bias=bias))
    formats += [FloatFormat(f"UE{e}M{m}", e, m, (1 << (e - 1)) - 1, signed=False) for e, m in ((3, 2), (4, 4), (5, 3))]
    return [f for f in formats if _float32_shift_decodes(f)]


@pytest.mark.parametrize("fmt", float32_shift_formats(), ids=lambda f: f"{f.name}-b{f.bias}")
def test_float32_shift_decode_is_fpx_decode_for_every_code_and_shift(fmt):
    """Bit for bit fpx.decode (to float32) for every code, signed zeros and subnormals included,
    at every position of an int32 word, the word's other bits clear or set at random."""
    codes = torch.arange(1 << fmt.bits, dtype=torch.int32)
    expected = fpx.decode(codes.to(torch.uint8), fmt).view(torch.int32)
    generator = torch.Generator().manual_seed(fmt.bits)
    for shift in range(33 - fmt.bits):
        field = ((1 << fmt.bits) - 1) << shift
        junk = torch.randint(-(2**31), 2**31 - 1, codes.shape, dtype=torch.int32, generator=generator)
        for word in (codes << shift, (codes << shift) | (junk & ~field)):
            assert torch.equal(_float_values_by_float32_shift(word, fmt, shift=shift).view(torch.int32), expected), shift


def test_float32_shift_takes_the_formats_without_specials():
    assert all(_float32_shift_decodes(f) for f in (fpx.E3M2, fpx.E2M3, fpx.E2M1))
    assert not any(_float32_shift_decodes(f) for f in (fpx.E4M3, fpx.E5M2, fpx.E8M0, fpx.exmy(2, 1, special="fn")))


def test_in_place_float_formats_are_the_finite_small_ones():
    assert _float_fields_in_place(fpx.E2M1)
    for fmt in (fpx.E4M3, fpx.E5M2, fpx.E3M2, fpx.E2M3, fpx.exmy(2, 1, special="fn"), fpx.exmy(2, 1, special="ieee")):
        assert not _float_fields_in_place(fmt), fmt


def test_default_row_limits_are_four_rows_on_cuda_inside_a_tuning_block_or_not():
    """CUDA: 4 rows for every format (8 planes need at most 4: ``ROW_REDUCTIONS``), whether
    :func:`fpx.nn.cold_cache_tuning` is open or not: the limit is read while tracing, and one
    read from the block's state made a model compiled inside recompile to the other route at
    its first call outside. 2 for a symbolic batch; 16 on CPU with float32 or unknown x but for
    E3M2 (4: the test below)."""
    limit = fpx.nn.default_gemv_max_rows
    formats = (fpx.INT8, fpx.INT4, fpx.INT3, fpx.INT2, fpx.INT1, fpx.UINT4, fpx.E4M3, fpx.E5M2, fpx.E3M2, fpx.E2M3,
               fpx.E2M1)
    outside = [limit("cuda", f) for f in formats] + [limit("cuda", fpx.E2M1, block="mx")]
    with fpx.nn.cold_cache_tuning():
        inside = [limit("cuda", f) for f in formats] + [limit("cuda", fpx.E2M1, block="mx")]
    assert outside == inside == [4] * (len(formats) + 1)
    assert all(4 <= fpx.nn.ROW_REDUCTIONS // fpx.nn.planar_group(f.bits) for f in formats)
    assert limit("cuda", fpx.INT4, static_rows=False) == limit("cuda", fpx.E2M1, static_rows=False) == 2
    assert {limit("cpu", f, block=b) for f, b in ((fpx.INT4, None), (fpx.E2M1, "mx"), (fpx.E4M3, None))} == {16}
    assert limit("cpu", fpx.E3M2) == 4  # CPU's 8-plane float codes (the test below)


def test_cpu_row_limit_with_bfloat16_x_is_7_rows_4_for_8_plane_float_codes_16_for_8_bit_floats():
    """CPU with a static batch: 4 rows for float codes of 3, 5, 6 or 7 bits whatever x's dtype
    (past ``ROW_REDUCTIONS // 8`` rows their reductions decode each weight once per row); with
    bfloat16 x 7 rows for the other codes (the weight blocks win from 8 there), 16 for E4M3 and
    E5M2. float16, float32 and an unknown dtype keep 16 for the other codes, a symbolic batch
    16 for all."""
    limit = fpx.nn.default_gemv_max_rows
    bf16 = torch.bfloat16
    assert fpx.nn.CPU_BFLOAT16_GEMV_MAX_ROWS == 7 and fpx.nn.ROW_REDUCTIONS // 8 == 4
    for fmt in (fpx.INT8, fpx.INT4, fpx.INT3, fpx.INT2, fpx.INT1, fpx.INT5, fpx.UINT4, fpx.UINT8, fpx.E2M1):
        assert limit("cpu", fmt, x_dtype=bf16) == 7, fmt
    assert limit("cpu", fpx.E2M1, block="mx", x_dtype=bf16) == 7
    for fmt in (fpx.E3M2, fpx.E2M3, fpx.exmy(3, 3), fpx.exmy(2, 2)):
        for dtype in (bf16, torch.float16, torch.float32, None):
            assert limit("cpu", fmt, x_dtype=dtype) == 4, (fmt, dtype)
    for fmt in (fpx.E4M3, fpx.E5M2):
        assert limit("cpu", fmt, x_dtype=bf16) == 16
        assert limit("cpu", fmt, x_dtype=bf16, channel_scales_on_product=True, out_features=8192) == 16
    for fmt in (fpx.INT4, fpx.INT3, fpx.E4M3, fpx.E2M1):
        for dtype in (torch.float16, torch.float32, None):
            assert limit("cpu", fmt, x_dtype=dtype) == 16, (fmt, dtype)
    for fmt in (fpx.INT4, fpx.E3M2, fpx.E4M3, fpx.E2M1):
        assert limit("cpu", fmt, static_rows=False, x_dtype=bf16) == 16
    # The CUDA rules are not CPU's.
    assert limit("cuda", fpx.INT4, x_dtype=bf16) == 4


def test_per_channel_8_bit_codes_take_the_template_from_three_rows_on_cuda_with_many_output_features():
    """E4M3, E5M2 and INT8 with their per-channel scales on the product: 2 rows on CUDA from 8192
    output features (the template wins from 3 rows there, measured on an H200), 4 with fewer,
    and for every other format or scale layout; CPU and a symbolic batch unchanged."""
    limit = fpx.nn.default_gemv_max_rows
    many = fpx.nn.CHANNEL_SCALED_TEMPLATE_MIN_OUT_FEATURES
    assert many == 8192
    for fmt in (fpx.E4M3, fpx.E5M2, fpx.INT8):
        assert limit("cuda", fmt, channel_scales_on_product=True, out_features=many) == 2
        assert limit("cuda", fmt, channel_scales_on_product=True, out_features=14336) == 2
        assert limit("cuda", fmt, channel_scales_on_product=True, out_features=many - 1) == 4
        assert limit("cuda", fmt, channel_scales_on_product=False, out_features=many) == 4
        assert limit("cuda", fmt, static_rows=False, channel_scales_on_product=True, out_features=many) == 2
        assert limit("cpu", fmt, channel_scales_on_product=True, out_features=many) == 16
    for fmt in (fpx.UINT8, fpx.INT4, fpx.E2M1, fpx.E3M2):
        assert limit("cuda", fmt, channel_scales_on_product=True, out_features=many) == 4


def test_codes_by_groups_but_the_4_bit_ones_take_the_template_from_four_rows_with_bfloat16_x():
    """INT1-3, INT5-8, E3M2 and E2M3 without an MX block: 3 rows on CUDA with bfloat16 x and
    8192 or more output features, the 8-plane ones (INT1, INT3, INT5-7, E3M2, E2M3) from 4096
    (the template wins from 4 rows there, measured on an H200); 4 with fewer output features,
    float32 or an unknown x dtype (float16: the test below), for the 4-bit codes, the unsigned
    ones and 8-bit floats by groups; a symbolic batch and per-channel scales on the product as
    before; CPU by its own bfloat16 rule."""
    limit = fpx.nn.default_gemv_max_rows
    many = fpx.nn.FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES
    assert many == 8192
    bf16 = torch.bfloat16
    eight_planes = fpx.nn.EIGHT_PLANE_FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES
    assert eight_planes == 4096
    for fmt in (fpx.INT1, fpx.INT2, fpx.INT3, fpx.INT5, fpx.INT6, fpx.INT7, fpx.INT8, fpx.E3M2, fpx.E2M3):
        # The 8-plane formats from 4096 output features, INT2 and INT8 from 8192.
        least = many if fmt in (fpx.INT2, fpx.INT8) else eight_planes
        assert limit("cuda", fmt, out_features=least, x_dtype=bf16) == 3, fmt
        assert limit("cuda", fmt, out_features=many, x_dtype=bf16) == 3, fmt
        assert limit("cuda", fmt, out_features=28672, x_dtype=bf16) == 3, fmt
        assert limit("cuda", fmt, out_features=least - 1, x_dtype=bf16) == 4, fmt
        assert limit("cuda", fmt, out_features=least - 1, in_features=4096, x_dtype=bf16) == 4, fmt
        assert limit("cuda", fmt, block="mx", out_features=many, x_dtype=bf16) == 4, fmt
        for other in (torch.float32, None):
            assert limit("cuda", fmt, out_features=many, x_dtype=other) == 4, (fmt, other)
        assert limit("cuda", fmt, static_rows=False, out_features=many, x_dtype=bf16) == 2, fmt
        # CPU's own bfloat16 rule (the test above), whatever the output features.
        assert limit("cpu", fmt, out_features=many, x_dtype=bf16) == (4 if fmt in (fpx.E3M2, fpx.E2M3) else 7), fmt
    for fmt in (fpx.INT4, fpx.UINT4, fpx.E2M1, fpx.UINT2, fpx.UINT8, fpx.E4M3, fpx.E5M2):
        assert limit("cuda", fmt, out_features=many, x_dtype=bf16) == 4, fmt
    assert limit("cuda", fpx.E2M3, block="mx", out_features=many, x_dtype=bf16) == 4
    assert limit("cuda", fpx.INT8, channel_scales_on_product=True, out_features=many, x_dtype=bf16) == 2
    with pytest.raises(TypeError, match="x_dtype.*'bfloat16'"):
        limit("cuda", fpx.INT2, out_features=many, x_dtype="bfloat16")


def test_8_plane_codes_by_groups_take_the_template_from_four_rows_with_float16_x():
    """INT1, INT3, INT5-7, E3M2 and E2M3 (8 planes) and INT2 without an MX block: 3 rows on
    CUDA with float16 x and 4096 (8 planes) or 8192 (INT2) or more output features (measured on
    an H200); INT8 and the 4-bit codes keep 4 with float16 x (losses), as do fewer output
    features and MX blocks."""
    limit = fpx.nn.default_gemv_max_rows
    many = fpx.nn.FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES
    f16 = torch.float16
    for fmt in (fpx.INT1, fpx.INT2, fpx.INT3, fpx.INT5, fpx.INT6, fpx.INT7, fpx.E3M2, fpx.E2M3):
        # The 8-plane formats from 4096 output features, INT2 from 8192.
        least = many if fmt == fpx.INT2 else fpx.nn.EIGHT_PLANE_FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES
        assert limit("cuda", fmt, out_features=least, x_dtype=f16) == 3, fmt
        assert limit("cuda", fmt, out_features=many, x_dtype=f16) == 3, fmt
        assert limit("cuda", fmt, out_features=least - 1, x_dtype=f16) == 4, fmt
        assert limit("cuda", fmt, out_features=least - 1, in_features=4096, x_dtype=f16) == 4, fmt
        assert limit("cuda", fmt, block="mx", out_features=many, x_dtype=f16) == 4, fmt
        assert limit("cuda", fmt, static_rows=False, out_features=many, x_dtype=f16) == 2, fmt
        # CPU's own rule (4 for FP6 whatever x's dtype; 16 for the others with float16 x).
        assert limit("cpu", fmt, out_features=many, x_dtype=f16) == (4 if fmt in (fpx.E3M2, fpx.E2M3) else 16), fmt
    for fmt in (fpx.INT8, fpx.INT4, fpx.UINT4, fpx.E2M1, fpx.UINT8):
        assert limit("cuda", fmt, out_features=many, x_dtype=f16) == 4, fmt
        assert limit("cuda", fmt, out_features=many, in_features=28672, x_dtype=f16) == 4, fmt


def test_8_plane_codes_with_short_rows_take_the_template_from_four_rows_from_2048_outputs():
    """The 8-plane codes (INT1, INT3, INT5-7, E3M2, E2M3) by groups: 3 rows on CUDA with
    bfloat16 or float16 x from 2048 output features where the layer has at most 2048 input
    features (the template won at 2048 x 2048 on an H200, the reductions at 2048 x 8192);
    longer rows, fewer outputs, INT2 / INT8, MX blocks and float32 x keep 4."""
    limit = fpx.nn.default_gemv_max_rows
    least = fpx.nn.EIGHT_PLANE_FOUR_ROW_SHORT_ROW_MIN_OUT_FEATURES
    longest = fpx.nn.EIGHT_PLANE_FOUR_ROW_SHORT_ROW_MAX_IN_FEATURES
    assert (least, longest) == (2048, 2048)
    for dtype in (torch.bfloat16, torch.float16):
        for fmt in (fpx.INT1, fpx.INT3, fpx.INT5, fpx.INT6, fpx.INT7, fpx.E3M2, fpx.E2M3):
            for k in (8, 1024, longest):
                assert limit("cuda", fmt, out_features=least, in_features=k, x_dtype=dtype) == 3, (fmt, dtype, k)
            assert limit("cuda", fmt, out_features=least, in_features=longest + 8, x_dtype=dtype) == 4, (fmt, dtype)
            assert limit("cuda", fmt, out_features=least, in_features=8192, x_dtype=dtype) == 4, (fmt, dtype)
            assert limit("cuda", fmt, out_features=least - 1, in_features=longest, x_dtype=dtype) == 4, (fmt, dtype)
            assert limit("cuda", fmt, out_features=least, x_dtype=dtype) == 4, (fmt, dtype)  # rows unknown
            assert limit("cuda", fmt, block="mx", out_features=least, in_features=longest, x_dtype=dtype) == 4, fmt
        for fmt in (fpx.INT2, fpx.INT8, fpx.INT4, fpx.E2M1):
            assert limit("cuda", fmt, out_features=least, in_features=longest, x_dtype=dtype) == 4, (fmt, dtype)
    assert limit("cuda", fpx.INT3, out_features=least, in_features=longest, x_dtype=torch.float32) == 4
    assert limit("cpu", fpx.INT3, out_features=least, in_features=longest, x_dtype=torch.bfloat16) == 7


def test_compile_options_take_a_device_and_refuse_anything_else_by_name():
    """CUDA's options for 'cuda', 'cuda:1' or a CUDA torch.device (no GPU needed to build them);
    none for CPU; a device index alone or a name torch does not know is refused, naming it."""
    cuda = fpx.nn.compile_options("cuda")
    assert cuda["max_autotune"] and cuda["max_autotune_gemm_backends"] == "TRITON"
    assert fpx.nn.compile_options("cuda:1") == cuda == fpx.nn.compile_options(torch.device("cuda", 0))
    assert fpx.nn.compile_options("cpu") == {} == fpx.nn.compile_options(torch.device("cpu"))
    for device in (0, None, ["cuda"]):
        with pytest.raises(TypeError, match=f"device must be a str or torch.device.*got {re.escape(repr(device))}"):
            fpx.nn.compile_options(device)
    with pytest.raises(ValueError, match="device must name a device.*got 'gpu'"):
        fpx.nn.compile_options("gpu")


def test_row_limit_rejects_a_format_that_is_not_an_fpx_format():
    """On either device (the device, feature and dtype checks: the tests below and above)."""
    for device in ("cuda", "cpu"):
        for fmt in ("INT4", None, 4):
            with pytest.raises(TypeError, match=f"fmt must be an fpx format.*got {fmt!r}"):
                fpx.nn.default_gemv_max_rows(device, fmt)


def test_4_bit_integers_by_groups_take_the_template_from_four_rows_where_their_rows_are_long():
    """INT4 and UINT4 without an MX block or per-channel scales on the product, bfloat16 x, 8192
    or more output features and 12288 or more input features: 3 rows on CUDA (the template wins
    from 4 rows there, measured on an H200); one feature fewer of either kind, another or an
    unknown x dtype or in_features, E2M1 (a tie), MX blocks, per-channel scales and a symbolic
    batch as before; CPU by its own bfloat16 rule."""
    limit = fpx.nn.default_gemv_max_rows
    long_rows = fpx.nn.LONG_ROW_FOUR_ROW_TEMPLATE_MIN_IN_FEATURES
    assert long_rows == 12288
    bf16 = torch.bfloat16
    shape = {"out_features": 8192, "in_features": long_rows, "x_dtype": bf16}
    for fmt in (fpx.INT4, fpx.UINT4):
        assert limit("cuda", fmt, **shape) == 3, fmt
        assert limit("cuda", fmt, **shape | {"out_features": 28672, "in_features": 28672}) == 3, fmt
        assert limit("cuda", fmt, **shape | {"in_features": long_rows - 1}) == 4, fmt
        assert limit("cuda", fmt, **shape | {"in_features": 11008}) == 4, fmt  # measured: the reductions win
        assert limit("cuda", fmt, **shape | {"out_features": 8191}) == 4, fmt
        assert limit("cuda", fmt, out_features=8192, x_dtype=bf16) == 4, fmt  # in_features unknown
        for other in (torch.float16, torch.float32, None):
            assert limit("cuda", fmt, **shape | {"x_dtype": other}) == 4, (fmt, other)
        assert limit("cuda", fmt, block="mx", **shape) == 4, fmt
        assert limit("cuda", fmt, static_rows=False, **shape) == 2, fmt
        assert limit("cpu", fmt, **shape) == 7, fmt  # CPU's own bfloat16 rule, whatever the input features
    assert limit("cuda", fpx.E2M1, **shape) == 4
    assert limit("cuda", fpx.INT4, channel_scales_on_product=True, **shape) == 4


@pytest.mark.parametrize("fmt", [fpx.E4M3, fpx.E5M2], ids=["E4M3", "E5M2"])
def test_8_bit_floats_per_channel_take_the_template_from_two_rows_where_their_rows_are_not_long(fmt):
    """E4M3 and E5M2 with their per-channel scales on the product, bfloat16 x, 8192 or more output
    features and 1-16384 input features: 1 row on CUDA (the template wins from 2 rows there,
    measured on an H200); longer rows, unknown in_features, another x dtype, fewer output
    features and INT8 keep the 3-row rule's 2 (or 4); CPU and a symbolic batch as before."""
    limit = fpx.nn.default_gemv_max_rows
    most = fpx.nn.TWO_ROW_TEMPLATE_MAX_IN_FEATURES
    assert most == 16384
    shape = {"channel_scales_on_product": True, "out_features": 8192, "in_features": 4096, "x_dtype": torch.bfloat16}
    assert limit("cuda", fmt, **shape) == 1
    assert limit("cuda", fmt, **shape | {"out_features": 14336, "in_features": most}) == 1
    assert limit("cuda", fmt, **shape | {"in_features": most + 1}) == 2
    assert limit("cuda", fmt, **shape | {"in_features": 0}) == 2
    assert limit("cuda", fmt, **shape | {"x_dtype": torch.float32}) == 2
    assert limit("cuda", fmt, **shape | {"x_dtype": None}) == 2
    assert limit("cuda", fmt, **shape | {"out_features": 8191}) == 4
    assert limit("cuda", fmt, **shape | {"channel_scales_on_product": False}) == 4
    assert limit("cuda", fpx.INT8, **shape) == 2
    assert limit("cuda", fmt, static_rows=False, **shape) == 2
    assert limit("cpu", fmt, **shape) == 16


@pytest.mark.parametrize("kwargs, match", [
    ({"device_type": "cuda:0"}, "device_type.*'cuda:0'"),
    ({"device_type": torch.device("cuda")}, "device_type"),
    ({"out_features": -1}, "out_features.*-1"),
    ({"out_features": 8192.0}, "out_features.*8192.0"),
    ({"out_features": True}, "out_features.*True"),
    ({"in_features": -3}, "in_features.*-3"),
    ({"in_features": 14336.0}, "in_features.*14336.0"),
    ({"in_features": False}, "in_features.*False"),
], ids=["indexed-device", "device-object", "negative-features", "float-features", "bool-features",
        "negative-in-features", "float-in-features", "bool-in-features"])
def test_row_limit_rejects_a_device_with_an_index_and_bad_feature_counts(kwargs, match):
    arguments = {"device_type": "cuda", "fmt": fpx.E4M3, "channel_scales_on_product": True,
                 "out_features": 8192} | kwargs
    with pytest.raises(ValueError, match=match):
        fpx.nn.default_gemv_max_rows(**arguments)


ROW_LIMIT_ROUTES = [  # format, group size, out features, x dtype, the first of 2-4 rows taking the matmul
    (fpx.E4M3, None, 8192, torch.bfloat16, 2),  # 64 input features: the template from 2 rows
    (fpx.E5M2, None, 8192, torch.float32, 3),
    (fpx.E4M3, None, 4096, torch.bfloat16, None),  # too few output features
    (fpx.E4M3, None, 8192, torch.float16, None),  # float16 x: the scales go into the decode
    (fpx.E4M3, 32, 8192, torch.bfloat16, None),  # scales by groups
    (fpx.INT8, None, 8192, torch.bfloat16, 3),  # since its int8 -> bfloat16 decode
    (fpx.INT4, None, 8192, torch.bfloat16, None),  # its decode costs more than a cast: the reductions
    (fpx.INT8, 32, 8192, torch.bfloat16, 4),  # by groups: the template from 4 rows
    (fpx.INT3, 32, 8192, torch.bfloat16, 4),
    (fpx.E3M2, 32, 8192, torch.bfloat16, 4),
    (fpx.INT2, 32, 4096, torch.bfloat16, None),  # too few output features
    (fpx.INT2, 32, 8192, torch.float16, 4),  # float16 x: INT2 and the 8-plane formats from 4 rows
    (fpx.INT3, 32, 8192, torch.float16, 4),  # float16 x: the 8-plane formats from 4 rows
    (fpx.INT4, 32, 8192, torch.bfloat16, None),  # 4-bit codes: the reductions win at 4 rows
]


@pytest.mark.parametrize("fmt, group_size, n, dtype, first_matmul_rows", ROW_LIMIT_ROUTES,
                         ids=["E4M3", "E5M2-f32", "E4M3-4096", "E4M3-f16", "E4M3-g32", "INT8", "INT4", "INT8-g32",
                              "INT3-g32", "E3M2-g32", "INT2-g32-4096", "INT2-g32-f16", "INT3-g32-f16", "INT4-g32"])
def test_the_layer_gives_its_row_limit_its_scales_layout_and_output_features(fmt, group_size, n, dtype,
                                                                              first_matmul_rows, monkeypatch):
    """The compiled forward as on CUDA (its row limit read for "cuda"; the choices of CUDA's
    matmul path forced on, eagerly): per-channel E4M3 with 8192 output features and bfloat16 x takes
    the matmul from 2 rows, E5M2 with float32 x and INT8 from 3, the reductions at 2; codes of 1-3 and 5-8 bits and the 6-bit floats
    by groups with 8192 output features and bfloat16 x from 4 rows (with float16 x the 8-plane
    ones and INT2), the reductions at 3; the
    other layers the reductions at 2-4. Outputs against the dequantized weight in float64
    either way."""
    check_row_routes(fmt, group_size, n, dtype, first_matmul_rows, monkeypatch)


@pytest.mark.parametrize("least_in_features, first_matmul_rows", [(64, 4), (65, None)], ids=["long", "short"])
def test_the_layer_gives_its_row_limit_its_input_features(least_in_features, first_matmul_rows, monkeypatch):
    """INT4 by groups with 8192 output features and bfloat16 x: the matmul from 4 rows where its
    64 input features reach the long-row threshold (lowered to 64 here: a CPU test cannot afford
    12288), the reductions at 2-4 one feature short of it. E4M3 per channel: the matmul from 2
    rows with 64 input features, from 3 where 64 is past the two-row rule's most (lowered to 63)."""
    monkeypatch.setattr(fpx.nn, "LONG_ROW_FOUR_ROW_TEMPLATE_MIN_IN_FEATURES", least_in_features)
    check_row_routes(fpx.INT4, 32, 8192, torch.bfloat16, first_matmul_rows, monkeypatch)
    monkeypatch.setattr(fpx.nn, "TWO_ROW_TEMPLATE_MAX_IN_FEATURES", least_in_features - 1)
    check_row_routes(fpx.E4M3, None, 8192, torch.bfloat16, 3 if first_matmul_rows else 2, monkeypatch)


def check_row_routes(fmt, group_size, n, dtype, first_matmul_rows, monkeypatch):
    """The routes of the two tests above: 2-4 rows of x through a layer of ``n`` x 64."""
    real_limit = fpx.nn.default_gemv_max_rows
    monkeypatch.setattr(fpx.nn, "default_gemv_max_rows",
                        lambda device_type, *args, **kwargs: real_limit("cuda", *args, **kwargs))
    monkeypatch.setattr(fpx.nn, "_channel_scale_after_matmul", lambda device: True)
    monkeypatch.setattr(fpx.nn, "_matmul_by_weight_blocks", lambda device: False)
    monkeypatch.setattr(fpx.nn, "_weight_as_left_operand", lambda device, fmt, rows, out_features: False)
    monkeypatch.setattr(fpx.nn, "_splits_k_on_the_right", lambda *args: False)
    torch.manual_seed(0)
    k = 64
    layer = LowBitLinear.from_linear(nn.Linear(k, n), fmt, group_size=group_size).to(dtype)
    weight = layer.dequantize_weight().double()
    for rows in (2, 3, 4):
        takes_matmul = first_matmul_rows is not None and rows >= first_matmul_rows
        x = torch.randn(rows, k).to(dtype)
        out, taken = compiled_route_run_eagerly(layer, x, monkeypatch)
        # Per channel the scale multiplies the product (an unscaled decode); by groups it is in the decode.
        assert taken == ([(group_size is not None, False, 1)] if takes_matmul else []), (rows, taken)
        expected = x.double() @ weight.T + layer.bias.double()
        bound = x.double().abs() @ weight.abs().T + layer.bias.double().abs()
        assert bool(((out.double() - expected).abs() <= 2 ** -6 * bound + 1e-6).all()), rows


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", range(1, 8))
def test_int_field_values_is_the_field_exactly_for_every_code_and_shift(bits, signed):
    """Every field of 1-7 bits at every bit position the float bits allow, with the word's
    other bits clear or (``masked``) set at random, against the sign extension done here."""
    fields = torch.arange(1 << bits, dtype=torch.int32)
    expected = [f - (1 << bits) if signed and f >> (bits - 1) else f for f in fields.tolist()]
    generator = torch.Generator().manual_seed(bits)
    for shift in range(24 - bits):
        placed = fields << shift
        junk = torch.randint(0, 2**31 - 1, fields.shape, dtype=torch.int32, generator=generator)
        junk = junk & ~(((1 << bits) - 1) << shift)
        assert _int_field_values(placed, bits, signed, shift=shift).tolist() == expected, shift
        assert _int_field_values(placed | junk, bits, signed, shift=shift, masked=True).tolist() == expected, shift
        # The XOR pattern as data, as the layer's field_patterns buffer passes it.
        pattern = torch.tensor(0x4B000000 | ((1 << (bits - 1 + shift)) if signed else 0), dtype=torch.int32)
        got = _int_field_values(placed | junk, bits, signed, shift=shift, masked=True, pattern=pattern)
        assert got.tolist() == expected, shift


def test_codes_less_zero_points_as_floats_plus_two_pow_23_are_exact():
    """Every pair of a code and a zero-point of up to 8 bits (the zero-point stored as uint8,
    the code as int32), both read as 2^23 + value: the float difference is the integer one."""
    codes = torch.arange(256, dtype=torch.int32).repeat_interleave(256)
    zero_points = torch.arange(256, dtype=torch.uint8).repeat(256)
    got = _uint_values_plus_two_pow_23(codes) - _uint_values_plus_two_pow_23(zero_points)
    assert got.dtype == torch.float32
    assert torch.equal(got.double(), (codes.long() - zero_points.long()).double())


def compiled_route_run_eagerly(layer, x, monkeypatch):
    """(output, [(scaled, left, splits)] of each ``_matmul_weight`` call) of ``layer(x)`` with the
    compiled forward's route taken eagerly (its device choices as the caller patched them)."""
    taken = []
    original = LowBitLinear._matmul_weight
    with monkeypatch.context() as inside:
        inside.setattr(LowBitLinear, "_matmul_weight",
                       lambda self, dtype, scaled=True, left=False, splits=1: taken.append((scaled, left, splits))
                       or original(self, dtype, scaled, left, splits))
        inside.setattr(torch.compiler, "is_compiling", lambda: True)
        return layer(x), taken


@pytest.mark.parametrize("left, splits", [(False, 1), (True, 1), (True, 2)], ids=["x-left", "weight-left", "weight-left-split"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("fmt, group_size", [(fpx.E4M3, None), (fpx.INT8, None), (fpx.UINT4, None), (fpx.INT1, None),
                                             (fpx.INT4, 256)], ids=["E4M3", "INT8", "UINT4", "INT1", "INT4-row"])
def test_per_channel_scale_after_the_matmul_is_taken_and_matches(fmt, group_size, dtype, left, splits, monkeypatch):
    """The per-channel scale on the matmul's product (``fpx.nn._channel_scale_after_matmul``,
    CUDA's choice) forced on here, past the row limit, with CUDA's whole-weight matmul, for
    per-channel scales and a group as long as a row: the unscaled decode times the scale is
    the dequantized weight exactly; the route is taken for bfloat16 and float32 x (not
    float16, whose range an unscaled product could leave); and the layer compiled on CPU (in
    bfloat16) matches the dequantized weight. With ``left`` the product is ``(W @ x.T).T``
    (``fpx.nn._weight_as_left_operand``, CUDA's choice for E4M3, E5M2, INT4 and INT8 from
    their row counts on, forced here for every format), taken only with the scale after it;
    with ``splits`` 2 its K split in two (``fpx.nn._splits_k_on_the_left``, CUDA's choice for
    INT4 at 2048-8191 output features): W decoded as its rows' halves stacked, (2 N, K / 2)."""
    monkeypatch.setattr(fpx.nn, "_channel_scale_after_matmul", lambda device: True)
    monkeypatch.setattr(fpx.nn, "_matmul_by_weight_blocks", lambda device: False)
    monkeypatch.setattr(fpx.nn, "_weight_as_left_operand", lambda device, fmt, rows, out_features: left)
    monkeypatch.setattr(fpx.nn, "_splits_k_on_the_left", lambda device, fmt, rows, out_features: splits > 1)
    torch.manual_seed(0)
    layer = LowBitLinear.from_linear(nn.Linear(256, 64), fmt, group_size=group_size)
    weight = layer.dequantize_weight()
    unscaled = layer._matmul_weight(torch.float32, scaled=False).T
    assert torch.equal(unscaled * layer.scale.float(), weight)
    halves = torch.cat([unscaled[:, :128], unscaled[:, 128:]])  # row s N + n: half s of row n
    with monkeypatch.context() as inside:
        for compiling in (False, True):  # the eager decode's split and the compiled one's
            inside.setattr(torch.compiler, "is_compiling", lambda: compiling)
            assert torch.equal(layer._matmul_weight(torch.float32, scaled=False, left=True), unscaled)
            assert torch.equal(layer._matmul_weight(torch.float32, scaled=False, left=True, splits=2), halves)
    x = torch.randn(20, 256, dtype=dtype)
    routed, taken = compiled_route_run_eagerly(layer, x, monkeypatch)
    after = dtype != torch.float16
    assert taken == [(not after, left and after, splits if left and after else 1)]
    assert routed.is_contiguous()  # as F.linear's: a caller may .view() it
    expected = x.double() @ weight.double().T + layer.bias.double()
    bound = x.double().abs() @ weight.double().abs().T + layer.bias.double().abs()
    if dtype == torch.float32:  # (CPU's eager half-precision matmuls do not sum in float32)
        assert bool(((routed.double() - expected).abs() <= 1e-5 * bound).all())
    if dtype != torch.bfloat16 or (left and fmt != {1: fpx.E4M3, 2: fpx.UINT4}[splits]):
        return  # compiled once per format, and on the left once unsplit, once split: each compile costs seconds
    torch._dynamo.reset()
    out = torch.compile(layer, fullgraph=True)(x)
    torch._dynamo.reset()  # no compiled forward with the forced choice left for later tests
    assert out.is_contiguous()
    # float32 sums; the product (each half's, split), its scaling and the bias each rounded to
    # bfloat16's 8 bits
    allowed = 1e-5 * bound + 2**-7 * (expected.abs() + layer.bias.double().abs())
    if splits > 1:  # the halves' products rounded apart: at most 2^-8 of |x| @ |W|.T together
        allowed = allowed + 2**-8 * (bound - layer.bias.double().abs())
    assert bool(((out.double() - expected).abs() <= allowed).all())


RIGHT_SPLIT_CASES = [(fpx.INT4, {"group_size": 128}), (fpx.E2M1, {"block": "mx"}), (fpx.UINT4, {"group_size": 32}),
                     (fpx.INT8, {"group_size": 64}), (fpx.E4M3, {"group_size": None})]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("fmt, kwargs", RIGHT_SPLIT_CASES, ids=["INT4-g128", "E2M1-MX", "UINT4-g32", "INT8-g64", "E4M3-row"])
def test_k_split_on_the_right_decodes_the_halves_side_by_side_and_matches(fmt, kwargs, dtype, monkeypatch):
    """K split in two on the ``x @ W.T`` route (``fpx.nn._splits_k_on_the_right``, CUDA's
    choice for INT4, INT8 and E2M1 by groups at 3584-8191 output features and K from 11008,
    and for per-channel INT8 at 24-64 rows; forced on here with CUDA's whole-weight matmul):
    W.T decoded as (K / 2, 2 N), column s N + n holding half s of W's row n, scales included
    (384 columns: halves of 192, which groups of 128 do not divide), eagerly and in the
    compiled branch; the split taken when told, with per-channel scales too, applied after
    the blocks' sum (CUDA's choice for bfloat16 and float32 x); and the layer compiled on CPU
    (in bfloat16, for three formats) matching the dequantized weight within each half's
    rounding."""
    monkeypatch.setattr(fpx.nn, "_channel_scale_after_matmul", lambda device: True)
    monkeypatch.setattr(fpx.nn, "_matmul_by_weight_blocks", lambda device: False)
    monkeypatch.setattr(fpx.nn, "_splits_k_on_the_right", lambda device, fmt, rows, out_features, in_features, in_decode: True)
    torch.manual_seed(0)
    k = 384
    layer = LowBitLinear.from_linear(nn.Linear(k, 40), fmt, **kwargs)
    weight = layer.dequantize_weight()
    side_by_side = torch.cat([weight[:, : k // 2], weight[:, k // 2 :]]).T  # column s N + n: half s of row n
    with monkeypatch.context() as inside:
        for compiling in (False, True):  # the eager decode's split and the compiled one's
            inside.setattr(torch.compiler, "is_compiling", lambda: compiling)
            assert torch.equal(layer._matmul_weight(torch.float32, splits=2), side_by_side)
    x = torch.randn(3, 7, k, dtype=dtype)
    routed, taken = compiled_route_run_eagerly(layer, x, monkeypatch)
    scale_after = kwargs.get("group_size", 0) is None and dtype != torch.float16
    assert taken == [(not scale_after, False, 2)]
    assert routed.shape == (3, 7, 40) and routed.is_contiguous()
    expected = x.double() @ weight.double().T + layer.bias.double()
    bound = x.double().abs() @ weight.double().abs().T + layer.bias.double().abs()
    if dtype == torch.float32:  # (CPU's eager half-precision matmuls do not sum in float32)
        assert bool(((routed.double() - expected).abs() <= 1e-5 * bound).all())
    if dtype != torch.bfloat16 or fmt not in (fpx.INT4, fpx.E2M1, fpx.E4M3):
        return  # each compile costs seconds
    torch._dynamo.reset()
    out = torch.compile(layer, fullgraph=True)(x)
    torch._dynamo.reset()  # no compiled forward with the forced choice left for later tests
    assert out.shape == (3, 7, 40) and out.is_contiguous()
    # float32 sums; the decode, each half's product and the bias rounded to bfloat16's 8 bits
    # (the halves' products: at most 2^-8 of |x| @ |W|.T together)
    allowed = 1e-5 * bound + 2**-7 * (expected.abs() + layer.bias.double().abs()) + 2**-8 * (bound - layer.bias.double().abs())
    assert bool(((out.double() - expected).abs() <= allowed).all())


@st.composite
def split_route_cases(draw):
    """(format, layer kwargs, K, N, x's batch shape, rows, x non-contiguous, route) for the
    K-split routes: K a multiple of 8 (the layer's own rule), so that the halves need not
    divide a scale group."""
    fmt, kwargs = draw(st.sampled_from(RIGHT_SPLIT_CASES + [(fpx.INT4, {"group_size": None}), (fpx.INT8, {"group_size": None})]))
    k = draw(st.sampled_from([32, 64, 96, 160])) if kwargs.get("block") else 8 * draw(st.integers(1, 40))
    if kwargs.get("group_size"):
        k = kwargs["group_size"] * draw(st.integers(1, 3))
    per_channel = kwargs.get("group_size", 0) is None
    route = draw(st.sampled_from(["right", "left"] if per_channel else ["right"]))
    return (fmt, kwargs, k, draw(st.integers(1, 24)), draw(st.sampled_from([(), (2,), (2, 3)])), draw(st.integers(1, 9)),
            draw(st.booleans()), route)


@given(case=split_route_cases())
def test_k_split_routes_match_the_dequantized_weight_for_any_shape(case):
    """Both K splits (``fpx.nn._splits_k_on_the_right`` with scales in the decode or on the
    summed product, ``fpx.nn._splits_k_on_the_left`` for per-channel codes), forced on and run
    eagerly with CUDA's whole-weight matmul, for any K the layer takes, any rows and batch
    dims, and x contiguous or a slice of wider rows: float32 x matches the dequantized weight,
    and the output is contiguous with x's batch dims."""
    fmt, kwargs, k, n, batch, rows, sliced, route = case
    torch.manual_seed(k * 131 + n)
    layer = LowBitLinear.from_linear(nn.Linear(k, n), fmt, **kwargs)
    weight = layer.dequantize_weight()
    x = torch.randn(*batch, rows, k + 5)[..., :k] if sliced else torch.randn(*batch, rows, k)
    left = route == "left"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fpx.nn, "_channel_scale_after_matmul", lambda device: True)
        patch.setattr(fpx.nn, "_matmul_by_weight_blocks", lambda device: False)
        patch.setattr(fpx.nn, "_weight_as_left_operand", lambda device, fmt, rows, out_features: left)
        patch.setattr(fpx.nn, "_splits_k_on_the_left", lambda device, fmt, rows, out_features: left)
        patch.setattr(fpx.nn, "_splits_k_on_the_right", lambda device, fmt, rows, out_features, in_features, in_decode: True)
        patch.setattr(fpx.nn, "default_gemv_max_rows", lambda *args, **kwargs: 0)
        out, taken = compiled_route_run_eagerly(layer, x, patch)
    per_channel = layer.group_size == k and layer.block is None  # a group as long as a row too
    assert taken == [(not per_channel, left, 2)]
    assert out.shape == (*batch, rows, n) and out.is_contiguous()
    expected = x.double() @ weight.double().T + layer.bias.double()
    bound = x.double().abs() @ weight.double().abs().T + layer.bias.double().abs()
    assert bool(((out.double() - expected).abs() <= 1e-5 * bound).all())


HALF_DECODE_CASES = CASES + [(fpx.INT7, {"group_size": 32}), (fpx.UINT7, {"group_size": 32}),
                             (fpx.UINT8, {"group_size": 32}), (fpx.INT8, {"group_size": 32})]


@pytest.mark.parametrize("fmt, kwargs", HALF_DECODE_CASES, ids=[f"{f.name}-{kw}" for f, kw in HALF_DECODE_CASES])
def test_decode_in_x_dtype_gives_the_float32_decodes_weights_bit_for_bit(fmt, kwargs, monkeypatch):
    """The matmul path's decode in x's half-precision dtype (``fpx.nn._decodes_in_x_dtype``,
    CUDA's choice, forced on here with CUDA's integer fields by float bits): where it applies
    (integer codes of 1-7 bits, and 8-bit codes for bfloat16 x, converted through int8;
    scales of x's dtype) the weights are the float32 decode's
    rounded once to x's dtype, bit for bit, for scales across most of the dtype's exponent range
    (bfloat16 2^-100 to 2^100; float16's overflowing its products to inf alike); elsewhere the float32 route is kept. The
    reference is the float32 decode, computed before the choice is forced."""
    wide_scales = {torch.bfloat16: (-100, 100), torch.float16: (-24, 12), torch.float32: (-100, 100)}
    generator = torch.Generator().manual_seed(0)
    layers, references = [], []
    for scale_dtype in ([torch.bfloat16] if kwargs.get("block") else [torch.bfloat16, torch.float16, torch.float32]):
        layer = LowBitLinear.from_linear(make_linear(), fmt, scale_dtype=scale_dtype, **kwargs)
        if not kwargs.get("block"):  # MX scales are E8M0 codes: left as quantized
            low, high = wide_scales[scale_dtype]
            exponents = torch.randint(low, high + 1, layer.scale.shape, generator=generator).double()
            mantissas = 1 + torch.rand(layer.scale.shape, generator=generator, dtype=torch.float64)
            layer.scale.copy_((mantissas * 2.0**exponents).to(scale_dtype))
        layers.append(layer)
        references.append((layer.dequantize_weight(), layer._matmul_weight(torch.float32, scaled=False).T))
    monkeypatch.setattr(fpx.nn, "_decodes_in_x_dtype", lambda device: True)
    monkeypatch.setattr(fpx.nn, "_float_bits_pay_off", lambda device: True)
    decode_dtypes = []
    original = fpx.nn.dequantize_packed
    monkeypatch.setattr(fpx.nn, "dequantize_packed", lambda *a, **kw: decode_dtypes.append(kw["dtype"]) or original(*a, **kw))
    for layer, (weight, unscaled) in zip(layers, references):
        for dtype in (torch.bfloat16, torch.float16):
            for scaled, expected in ((True, weight), (False, unscaled)):
                decode_dtypes.clear()
                transposed = layer._matmul_weight(dtype, scaled=scaled)
                assert transposed.dtype == dtype
                assert torch.equal(transposed.T, expected.to(dtype)), (dtype, layer.scale.dtype, scaled)
                bytes_to_bfloat16 = fmt.bits == 8 and dtype == torch.bfloat16
                applies = (isinstance(fmt, fpx.IntFormat) and (fmt.bits <= 7 or bytes_to_bfloat16)
                           and (not scaled or layer.scale.dtype == dtype))
                assert decode_dtypes == [dtype if applies else torch.float32], (dtype, layer.scale.dtype, scaled)


def traced_dtypes(fn, *args) -> set:
    """The dtypes of every tensor ``fn(*args)`` computes on the way, traced by make_fx."""
    from torch.fx.experimental.proxy_tensor import make_fx

    graph = make_fx(fn)(*args).graph
    return {node.meta["val"].dtype for node in graph.nodes if isinstance(node.meta.get("val"), torch.Tensor)}


def test_e5m2_by_the_float8_cast_decodes_every_code_as_the_float16_placement(monkeypatch):
    """The matmul template's E5M2 decode by torch's float8_e5m2 cast (``fpx.nn.
    _e5m2_by_float8_cast``, CUDA's choice, forced on here) against the float16 top byte it
    replaces and fpx.decode: every code, the same float32 bits (inf, -0 and NaN included)."""
    codes = torch.arange(256, dtype=torch.int32)
    decoded = {}
    for cast in (True, False):
        monkeypatch.setattr(fpx.nn, "_e5m2_by_float8_cast", lambda device, cast=cast: cast)
        decoded[cast] = fpx.nn._grid_values(codes, fpx.E5M2, casts_only=True)
        dtypes = traced_dtypes(lambda c: fpx.nn._grid_values(c, fpx.E5M2, casts_only=True), codes)
        assert (torch.float8_e5m2 in dtypes) == cast, dtypes  # the route taken
    reference = fpx.decode(codes.to(torch.uint8), fpx.E5M2)
    for values in decoded.values():
        assert values.dtype == torch.float32
        nan = torch.isnan(reference)
        assert torch.equal(torch.isnan(values), nan)
        assert torch.equal(values[~nan].view(torch.int32), reference[~nan].view(torch.int32))


@pytest.mark.parametrize("splits", [1, 2])
@pytest.mark.parametrize("compiling", [False, True], ids=["eager-form", "compiled-form"])
@pytest.mark.parametrize("fmt", [fpx.INT8, fpx.UINT8], ids=["INT8", "UINT8"])
def test_8_bit_codes_through_int8_are_the_float32_weights_for_every_code_and_zero_point(fmt, compiling, splits,
                                                                                        monkeypatch):
    """fpx.nn._bytes_as_bfloat16's decode (bfloat16, through int8) against the float32 decode
    rounded to bfloat16, bit for bit: every code against every zero-point (UINT8: 256 rows, one
    zero-point each, all 256 codes in every row's groups), bfloat16 scales from 2^-133
    (subnormal products) to 2^120, in the eager form and the compiled one (codes and
    zero-points by column, K split in ``splits`` chunks)."""
    generator = torch.Generator().manual_seed(0)
    n, k, group = 256, 512, 256
    codes = (torch.arange(k) % 256).to(torch.uint8).repeat(n, 1)  # every code in each group
    packed = codes.view(n, 1, k)  # 8-bit codes: one plane
    exponents = torch.randint(-133, 121, (n, k // group), generator=generator).double()
    scale = ((1 + torch.rand(n, k // group, generator=generator, dtype=torch.float64)) * 2.0**exponents)
    scale = scale.to(torch.bfloat16)
    zero_point = None
    if not fmt.signed:
        zero_point = torch.arange(n).to(torch.uint8).unsqueeze(1).repeat(1, k // group)  # every zero-point
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)
    decode = {dtype: dequantize_packed(packed, scale, zero_point, None, fmt=fmt, group_size=group, block=None,
                                       table=False, dtype=dtype, splits=splits)
              for dtype in (torch.float32, torch.bfloat16)}
    assert decode[torch.bfloat16].dtype == torch.bfloat16
    assert torch.equal(decode[torch.bfloat16], decode[torch.float32].to(torch.bfloat16))
    # and the float32 decode is the codes' own arithmetic, in float64
    values = codes.view(torch.int8).double() if fmt.signed else codes.double() - zero_point.double().repeat_interleave(group, 1)
    expected = (values * scale.double().repeat_interleave(group, 1)).to(torch.float32)
    if splits > 1:
        expected = expected.reshape(n, splits, -1).transpose(0, 1).reshape(-1, k // splits)
    assert torch.equal(decode[torch.float32], expected)


@pytest.mark.parametrize("compiling", [False, True], ids=["eager-form", "compiled-form"])
@pytest.mark.parametrize("fmt, group_size", [(fpx.INT8, None), (fpx.INT8, 32), (fpx.UINT8, 32)],
                         ids=["INT8-per-channel", "INT8-by-32", "UINT8-by-32"])
def test_8_bit_codes_decode_to_bfloat16_with_no_wider_tensor(fmt, group_size, compiling, monkeypatch):
    """8-bit integer codes' bfloat16 decode (the matmul template's prologue on CUDA) holds the
    codes and zero-points as uint8 / int8 and the values as bfloat16 only: no int32 or float32
    tensor, whose int -> float32 conversion costs an I2F per weight in the template
    (docs/inductor.md, "INT8 codes to bfloat16 in one conversion"). Traced with make_fx, both
    the eager and compiled forms."""
    layer = LowBitLinear.from_linear(make_linear(), fmt, group_size=group_size).to(torch.bfloat16)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)
    dtypes = traced_dtypes(lambda packed, scale, zero_point: dequantize_packed(
        packed, scale, zero_point, None, fmt=fmt, group_size=layer.group_size, block=None, dtype=torch.bfloat16),
        layer.packed, layer.scale, layer.zero_point)
    assert dtypes == {torch.uint8, torch.int8, torch.bfloat16}, dtypes


@pytest.mark.parametrize("fmt, kwargs, on_avx2, on_avx512", [
    (fpx.INT4, {"group_size": 128}, True, True),
    (fpx.INT2, {"group_size": 256}, True, True),
    (fpx.INT4, {"group_size": 64}, True, False),
    (fpx.INT1, {"group_size": 32}, True, False),
    (fpx.E2M1, {"block": "mx"}, True, False),
    (fpx.INT8, {"group_size": 128}, True, False),
    (fpx.E4M3, {"group_size": None}, True, False),
    (fpx.INT3, {"group_size": 128}, False, False),
], ids=["INT4-128", "INT2-256", "INT4-64", "INT1-32", "E2M1-mx", "INT8-128", "E4M3-row", "INT3-128"])
def test_one_row_on_cpu_reads_words_where_the_vector_width_says(fmt, kwargs, on_avx2, on_avx512, monkeypatch):
    """CPU's one-row reduction reads the codes as int32 words (``fpx.nn._word_planes_pay_off``)
    with vectors of 256 bits for codes of 1, 2, 4 and 8 bits, and with 512-bit vectors only for
    codes under 8 bits in groups of 128 or more (in shorter groups a segment's words fill less
    than two vectors: MX E2M1 at 4096 x 4096 took 30.3 ms by words, 1.9 by bytes); the result
    is the dequantized weight's either way."""
    layer = LowBitLinear.from_linear(make_linear(), fmt, **kwargs)
    x = torch.randn(1, 256)
    expected = x.double() @ layer.dequantize_weight().double().T + layer.bias.double()
    bound = x.double().abs() @ layer.dequantize_weight().double().abs().T + layer.bias.double().abs()
    original = LowBitLinear._plane_grid
    for width, words in ((256, on_avx2), (512, on_avx512)):
        read = []
        monkeypatch.setattr(fpx.nn, "_cpu_vector_bits", lambda width=width: width)
        monkeypatch.setattr(LowBitLinear, "_plane_grid", lambda self, q, word, *a, **kw: read.append(word is not None)
                            or original(self, q, word, *a, **kw))
        out = layer._gemv(x, bias=layer.bias).double()
        assert read and set(read) == {words}, (width, read)
        assert bool(((out - expected).abs() <= 1e-5 * bound).all()), width


def test_misaligned_packed_storage_falls_back_to_byte_planes():
    """Word planes read the packed bytes as int32: a buffer at an odd storage offset (as from a
    memory-mapped checkpoint) must give the same result through byte planes, not an error."""
    layer = LowBitLinear.from_linear(make_linear(), fpx.INT4, group_size=32)
    x = torch.randn(1, 256)
    expected = layer._gemv(x, words=True)
    storage = torch.zeros(layer.packed.numel() + 1, dtype=torch.uint8)
    storage[1:] = layer.packed.flatten()
    layer.packed = storage[1:].view(layer.packed.shape)
    assert layer.packed.storage_offset() == 1
    torch.testing.assert_close(layer._gemv(x, words=True), expected, rtol=1e-6, atol=1e-6)


# ---- by plane (LowBitLinear._plane_products; the route is CUDA's, inside cold_cache_tuning, for
# per-channel INT4, INT2 and E2M1, tested there in test_nn_codegen.py; the arithmetic here) -----
PLANE_FORMATS = [fpx.INT4, fpx.INT2, fpx.INT1, fpx.E2M1]


# The windows the plane products take on CUDA inside cold_cache_tuning (fpx.nn's tables, timed
# on an H200): right (x @ W.T) from 5 to 16 rows at 4096 or more output features; left ((W @
# x.T).T) from 17 rows at 8192 or more, INT2 and E2M1 up to the 128 rows measured; INT1 never.
@pytest.mark.parametrize("fmt, left, out_features, by_plane, one_product", [
    (fpx.INT4, False, 4096, [5, 8, 16], [4, 17]),
    (fpx.INT4, True, 8192, [17, 64, 128, 4096], [16]),
    (fpx.INT4, True, 4096, [], [17, 64]),
    (fpx.INT2, False, 8192, [5, 16], [4, 17, 32]),
    (fpx.INT2, True, 8192, [17, 32, 64, 128], [16, 129, 256]),
    (fpx.E2M1, False, 4096, [5, 16], [4, 17]),
    (fpx.E2M1, True, 8192, [17, 64, 96, 128], [16, 129]),
    (fpx.E2M1, True, 4096, [], [17, 64]),
    (fpx.INT1, False, 8192, [], [5, 16]),
    (fpx.INT1, True, 8192, [], [17, 64]),
], ids=lambda v: getattr(v, "name", None))
def test_plane_products_take_their_measured_windows(fmt, left, out_features, by_plane, one_product, monkeypatch):
    monkeypatch.setattr(fpx.nn, "_plane_decodes_kept_apart", lambda device: True)
    layer = LowBitLinear.from_linear(nn.Linear(64, out_features), fmt, group_size=None)
    cuda = torch.device("cuda")
    assert [rows for rows in by_plane + one_product if layer._products_by_plane(cuda, rows, left)] == by_plane
    monkeypatch.setattr(fpx.nn, "_plane_decodes_kept_apart", lambda device: False)  # outside the block
    assert not any(layer._products_by_plane(cuda, rows, left) for rows in by_plane)


def code_range(fmt):
    """(least, past the most) of ``fmt``'s codes as stored: signed integers two's complement,
    float codes their bit patterns."""
    if isinstance(fmt, fpx.FloatFormat):
        return 0, 2**fmt.bits
    return -(2 ** (fmt.bits - 1)), 2 ** (fmt.bits - 1)


def unscaled_values(fmt, codes):
    """The weights codes stand for before scaling: an integer code itself, INT1's sign-only 2 c +
    1, a float code its value (fpx.decode, the package's reference decode)."""
    if isinstance(fmt, fpx.FloatFormat):
        return fpx.decode(codes.to(torch.uint8), fmt).double()
    return 2 * codes + 1 if fmt == fpx.INT1 else codes


def packed_layer_of_codes(fmt, codes):
    """A per-channel LowBitLinear of ``fmt`` whose packed bytes hold ``codes`` (N, K) in the
    planar layout (W as (N, G, K/G), packed along G), independently of the layer's quantizer."""
    n, k = codes.shape
    layer = LowBitLinear.from_linear(nn.Linear(k, n, bias=False), fmt, group_size=None)
    planes = 8 // fmt.bits
    signed = not isinstance(fmt, fpx.FloatFormat)
    layer.packed.copy_(bitpack.pack(codes.view(n, planes, k // planes), fmt.bits, dim=1, signed=signed))
    return layer


@given(st.sampled_from(PLANE_FORMATS), st.integers(1, 5), st.sampled_from([8, 24, 128]), st.integers(1, 9),
       st.booleans(), st.sampled_from([torch.float32, torch.bfloat16]))
def test_plane_products_are_x_times_the_codes(fmt, rows, k, n, left, dtype):
    torch.manual_seed(rows * 1000 + k + n)
    codes = torch.randint(*code_range(fmt), (n, k))
    layer = packed_layer_of_codes(fmt, codes)
    x = torch.randn(rows, k).to(dtype)
    product = layer._plane_products(x, left=left)
    assert product.shape == (rows, n) and product.dtype == dtype
    values = unscaled_values(fmt, codes).double()
    expected = x.double() @ values.T
    # Each plane's product is rounded once to x's dtype, with the sum of those before it added.
    bound = (x.double().abs() @ values.abs().T).max().item()
    unit = 2.0**-8 if dtype == torch.bfloat16 else 2.0**-20
    assert (product.double() - expected).abs().max().item() <= 8 // fmt.bits * bound * unit


@pytest.mark.parametrize("fmt", PLANE_FORMATS, ids=lambda f: f.name)
def test_planes_are_the_codes_in_the_weights_column_order(fmt):
    # Every code in every plane (16 columns of 3 rows hold each code of 4 bits or fewer).
    n, k = 3, 16
    codes = (torch.arange(n * k) % 2**fmt.bits + code_range(fmt)[0]).view(n, k)
    layer = packed_layer_of_codes(fmt, codes)
    for left in (False, True):
        planes = [layer._plane_weight(torch.float32, plane, left) for plane in range(8 // fmt.bits)]
        assert torch.equal(torch.cat(planes if left else [p.T for p in planes], dim=1), unscaled_values(fmt, codes).float())


@pytest.mark.parametrize("left", [False, True], ids=["right", "left"])
def test_e2m1_planes_in_bfloat16_are_every_code_exactly(left, monkeypatch):
    # Where the decode computes in x's dtype (CUDA's choice, forced here), E2M1's planes are
    # placed in bfloat16 by their bits (fpx.fields._float_field_values_in_bfloat16): every code,
    # in both nibbles, is its value, signed zeros and subnormals included.
    placed = []
    in_bfloat16 = fpx.nn._float_field_values_in_bfloat16
    monkeypatch.setattr(fpx.nn, "_decodes_in_x_dtype", lambda device: True)
    monkeypatch.setattr(fpx.nn, "_float_field_values_in_bfloat16",
                        lambda word, fmt, shift: placed.append(shift) or in_bfloat16(word, fmt, shift=shift))
    codes = torch.arange(16 * 16).view(16, 16) % 16  # (N, K): each row every code, so both planes
    codes = torch.cat([codes, codes.roll(8, dims=1)])  # ... and each code in each nibble
    layer = packed_layer_of_codes(fpx.E2M1, codes)
    planes = [layer._plane_weight(torch.bfloat16, plane, left) for plane in range(2)]
    assert placed == [0, 4] and all(p.dtype == torch.bfloat16 for p in planes)
    weights = torch.cat(planes if left else [p.T for p in planes], dim=1).double()
    expected = unscaled_values(fpx.E2M1, codes)
    assert torch.equal(weights, expected) and torch.equal(weights.signbit(), expected.signbit())


@given(st.sampled_from(PLANE_FORMATS), st.integers(1, 40), st.integers(1, 24), st.sampled_from([(), (2,), (2, 3)]),
       st.integers(12, 32), st.booleans(), st.booleans())
def test_plane_route_matches_the_dequantized_weight_for_any_shape(fmt, k8, n, batch, rows, sliced, left):
    """The compiled forward's plane route (CUDA's, inside cold_cache_tuning; forced on here for
    INT4, INT2, INT1 and E2M1, run eagerly with CUDA's whole-weight matmul) for any K the layer takes,
    any N, rows and batch dims, x contiguous or a slice of wider rows, on the right (12-32
    rows here) or the left (any rows here): float32 x matches the dequantized weight, and the output is contiguous
    with x's batch dims."""
    k = 8 * k8
    torch.manual_seed(k * 131 + n)
    layer = LowBitLinear.from_linear(nn.Linear(k, n), fmt, group_size=None)
    weight = layer.dequantize_weight()
    x = torch.randn(*batch, rows, k + 5)[..., :k] if sliced else torch.randn(*batch, rows, k)
    planes = []  # (the right route's least output features lowered to these few)
    original = LowBitLinear._plane_products
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fpx.nn, "PLANE_PRODUCT_FORMATS", tuple(PLANE_FORMATS))
        patch.setattr(fpx.nn, "PLANE_PRODUCTS_RIGHT_ROWS", {fmt: (12, 32) for fmt in PLANE_FORMATS})
        patch.setattr(fpx.nn, "PLANE_PRODUCTS_LEFT_ROWS", {fmt: (1, None) for fmt in PLANE_FORMATS} if left else {})
        patch.setattr(fpx.nn, "LEFT_OPERAND_MIN_OUT_FEATURES", {})
        patch.setattr(fpx.nn, "PLANE_PRODUCTS_MIN_OUT_FEATURES", 1)
        patch.setattr(fpx.nn, "_plane_decodes_kept_apart", lambda device: True)
        patch.setattr(fpx.nn, "_channel_scale_after_matmul", lambda device: True)
        patch.setattr(fpx.nn, "_matmul_by_weight_blocks", lambda device: False)
        patch.setattr(fpx.nn, "_weight_as_left_operand", lambda device, fmt, rows, out_features: left)
        patch.setattr(fpx.nn, "_splits_k_on_the_left", lambda device, fmt, rows, out_features: False)
        patch.setattr(fpx.nn, "default_gemv_max_rows", lambda *args, **kwargs: 0)
        patch.setattr(LowBitLinear, "_plane_products",
                      lambda self, x2d, left: planes.append(left) or original(self, x2d, left))
        out, taken = compiled_route_run_eagerly(layer, x, patch)
    on_the_planes = left or 12 <= math.prod(batch) * rows <= 32  # the right route's rows
    assert planes == [left] * on_the_planes and len(taken) == 1 - on_the_planes
    assert out.shape == (*batch, rows, n) and out.is_contiguous()
    expected = x.double() @ weight.double().T + layer.bias.double()
    bound = x.double().abs() @ weight.double().abs().T + layer.bias.double().abs()
    assert bool(((out.double() - expected).abs() <= 1e-5 * bound).all())


@pytest.mark.parametrize("bits", [3, 5, 6, 7])
def test_planar_codes_in_uint8_lanes_read_the_bytes_as_bitpack_unpack_does(bits):
    """Every byte value in each of a column's ``bits`` bytes (column j's byte j runs through
    0-255, its other bytes random) and a column of random bytes: the same 8 codes per column as
    bitpack.unpack, eager and compiled."""
    from fpx.nn import _planar_codes_in_uint8_lanes

    torch.manual_seed(bits)
    packed = torch.randint(0, 256, (256, bits, bits + 1), dtype=torch.uint8)
    for j in range(bits):
        packed[:, j, j] = torch.arange(256, dtype=torch.uint8)
    expected = bitpack.unpack(packed, bits, 8, dim=1)
    for decode in (_planar_codes_in_uint8_lanes, torch.compile(_planar_codes_in_uint8_lanes, dynamic=False)):
        got = decode(packed, bits)
        assert got.dtype == torch.uint8 and got.shape == (256, 8, packed.shape[-1])
        assert torch.equal(got, expected)
