"""encode / decode / round_to under torch.compile: one fused kernel each, bit-identical to eager.

The same cases run on CPU (C++ kernels) and, marked ``cuda``, on a GPU (Triton kernels);
without a GPU the cuda cases skip. Each compile takes seconds, so the cases are a
representative few: every op, a 16-bit input, float64, stochastic rounding, dynamic shapes.
"""

import re

import numpy as np
import pytest
import torch

import fpx
from fpx import E2M1, E3M2, E4M3, E5M2, E8M0, FloatFormat, decode, encode, exmy, mx_scale_exponent, round_to

from ..codegen import compile_and_code, kernel_count, typed_allocations, vectorizes
from .test_encode import all_16_bit, boundaries, in_range_float32, random_float32_bits
from .test_formats import FORMAT_IDS, FORMATS, assert_same_floats, format_values

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def sample(device, dtype=torch.float32, n=4099):
    """Values of every kind (odd length: the vectorized loop's tail runs too)."""
    x = torch.cat([boundaries(E4M3), boundaries(E2M1), in_range_float32(E5M2, n, seed=0)])
    return x.to(dtype).to(device)


def assert_bits_equal(actual, expected):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if actual.dtype.is_floating_point:
        width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[actual.dtype.itemsize]
        actual, expected = actual.view(width), expected.view(width)
    assert torch.equal(actual.cpu(), expected.cpu())


def assert_compiles_without_int32_lanes(fn, x):
    """fn compiled on CPU: eager's bits, and one vectorized kernel with no int32 lane and no
    lane-by-lane fallback (inductor's ``tmpbuf`` loops)."""
    out, source = compile_and_code(fn, x)
    assert_bits_equal(out, fn(x))
    assert kernel_count(source, "cpu") == 1, source
    assert "int32_t" not in source and "tmpbuf" not in source, source
    if vectorizes():  # without a vector ISA every loop is scalar
        assert "at::vec::Vectorized" in source, source


def check_one_kernel(fn, *args, device, dynamic=False):
    out, source = compile_and_code(fn, *args, dynamic=dynamic)
    assert kernel_count(source, device) == 1, source
    return out


def check_one_kernel_with_global_draws(fn, *args, device, dynamic=False):
    """Stochastic rounding compiled with the global RNG's draws: one kernel over the elements
    (the hash of one seed per call and each position fused in), on CUDA plus a 0-d kernel per
    0-d buffer (the seed and its key, computed once); the output the only buffer of x's size
    (no draws written; inductor's own seed is a (1,) buffer; a float output may be allocated
    as the integers of its width, then viewed)."""
    out, source = compile_and_code(fn, *args, dynamic=dynamic)
    buffers = typed_allocations(source)
    assert kernel_count(source, device) == 1 + len([b for b in buffers if b[0] == ()]), source
    widths = [getattr(torch, dtype.removeprefix("torch.")).itemsize for shape, dtype in buffers if shape not in ((), (1,))]
    assert widths == [out.element_size()], source
    return out


CASES = {
    "encode-E4M3-float32": (lambda x: encode(x, E4M3), torch.float32),
    "encode-E2M1-bfloat16-nonsat": (lambda x: encode(x, E2M1, saturate=False), torch.bfloat16),
    "encode-E5M2-float64-nonsat": (lambda x: encode(x, E5M2, saturate=False), torch.float64),
    "round_to-E4M3-float16": (lambda x: round_to(x, E4M3), torch.float16),
    "round_to-E5M2-bfloat16": (lambda x: round_to(x, E5M2), torch.bfloat16),
    "round_to-E2M1-float16": (lambda x: round_to(x, E2M1), torch.float16),
    "mx_scale_exponent-E2M1": (lambda x: mx_scale_exponent(x, E2M1), torch.float32),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("device", DEVICES)
def test_encode_one_kernel(device, case):
    fn, dtype = CASES[case]
    x = sample(device, dtype)
    assert_bits_equal(check_one_kernel(fn, x, device=device), fn(x))


@pytest.mark.parametrize(
    "fmt, dtype",
    [(E5M2, torch.float32), (E3M2, torch.bfloat16), (E4M3, torch.bfloat16), (E8M0, torch.float32),
     (E4M3, torch.float16), (E5M2, torch.float16)],
    ids=["E5M2", "E3M2", "E4M3-bf16", "E8M0", "E4M3-f16", "E5M2-f16"],
)
@pytest.mark.parametrize("device", DEVICES)
def test_decode_one_kernel(device, fmt, dtype):
    codes = torch.arange(256, dtype=torch.uint8, device=device).repeat(17)
    fn = lambda c: decode(c, fmt, dtype)  # noqa: E731
    assert_bits_equal(check_one_kernel(fn, codes, device=device), fn(codes))


@pytest.mark.parametrize("device", DEVICES)
def test_every_16_bit_pattern_becomes_its_float(device):
    """fpx.convert._as_16_bit_float (bfloat16 results with NaN codes; on CPU from two uint8
    halves) against the int16 view of the same patterns: every one of the 65536, both 16-bit
    dtypes, eager and compiled, with bits above the low 16 that must be ignored."""
    from fpx.convert import _as_16_bit_float

    patterns = torch.arange(1 << 16, dtype=torch.int32, device=device)
    bits = patterns | (patterns << 16)  # the high half holds junk: the low half decides
    for dtype in (torch.bfloat16, torch.float16):
        expected = patterns.to(torch.int16).view(dtype)  # two's complement narrowing: the low 16 bits
        assert_bits_equal(_as_16_bit_float(bits, dtype), expected)
        assert_bits_equal(_as_16_bit_float(bits.view(256, 256), dtype), expected.view(256, 256))
    assert _as_16_bit_float(torch.tensor(0x7FC0 | 0x18000, device=device), torch.bfloat16).view(torch.int16).item() == -64
    compiled = check_one_kernel(lambda b: _as_16_bit_float(b, torch.bfloat16), bits, device=device)
    assert_bits_equal(compiled, patterns.to(torch.int16).view(torch.bfloat16))


def test_float16_bits_of_every_float16_value():
    """fpx.convert._float16_bits against the patterns themselves: every float16 (both zeros,
    subnormals, normals, infinities) as float32 gives its own bits back; every NaN the quiet
    NaN of its sign."""
    from fpx.convert import _float16_bits

    patterns = torch.arange(1 << 16, dtype=torch.int32).to(torch.int16)
    values = patterns.view(torch.float16).float()
    nan = torch.isnan(values)
    expected = torch.where(nan, (patterns.int() & 0x8000) | 0x7E00, patterns.int() & 0xFFFF)
    assert torch.equal(_float16_bits(values), expected)
    compiled, source = compile_and_code(_float16_bits, values)
    assert torch.equal(compiled, expected)
    assert kernel_count(source, "cpu") == 1, source


def test_sign_of_every_16_bit_pattern_in_any_layout():
    """fpx.convert._sign_of against the int16 view's sign: every pattern of both 16-bit dtypes
    (NaNs of both signs included), contiguous, sliced at an odd offset, strided and transposed
    (the last two by signbit), eager and compiled."""
    from fpx.convert import _sign_of

    patterns = torch.arange(1 << 16, dtype=torch.int32).to(torch.int16)
    for dtype in (torch.float16, torch.bfloat16):
        grid = patterns.view(dtype).view(256, 256)
        for x in (grid, grid[3:200, 1:255], grid[:, ::3], grid.t(), grid[5]):
            expected = x.contiguous().view(torch.int16) < 0
            assert torch.equal(_sign_of(x), expected)
    x = patterns.view(torch.float16)[:65531]
    compiled, source = compile_and_code(_sign_of, x)
    assert torch.equal(compiled, x.view(torch.int16) < 0)
    assert "signbit" not in source, source


def test_float16_encode_reads_signs_as_bytes_compiled():
    """Compiled on CPU, encode of float16 to a format with NaN codes reads each sign from the
    value's high byte (no signbit, which compiled lane by lane: 8 Mi values, 2 cores, 29-34 ms
    against 6-8): one kernel, every float16 pattern's code as eager's."""
    x = torch.arange(1 << 16, dtype=torch.int32).to(torch.int16).view(torch.float16)[:65531]
    for fmt in (E4M3, E5M2):
        codes, source = compile_and_code(lambda t: encode(t, fmt), x)
        assert_bits_equal(codes, encode(x, fmt))
        assert kernel_count(source, "cpu") == 1, source
        assert "signbit" not in source, source


@pytest.mark.parametrize("fmt, dtype", [(E4M3, torch.bfloat16), (E2M1, torch.float16), (E4M3, torch.float16)],
                         ids=["E4M3-bf16", "E2M1-f16", "E4M3-f16"])
def test_decode_to_16_bit_floats_compiles_to_a_vectorized_cpu_kernel(fmt, dtype):
    """Decode to bfloat16 (formats with NaN codes) and float16 assembles each result from its two
    bytes (fpx.convert._16_bit_floats_by_byte_pairs), float16's bits computed in int32 lanes:
    an int32 -> int16 narrowing and view, or int16 arithmetic, made inductor's C++ kernel a
    scalar loop (8 Mi E4M3 codes to bfloat16, 2 cores: 32-58 ms against 8-11)."""
    codes = torch.arange(256, dtype=torch.uint8).repeat(65)
    out, source = compile_and_code(lambda c: decode(c, fmt, dtype), codes)
    assert_bits_equal(out, decode(codes, fmt, dtype))
    assert kernel_count(source, "cpu") == 1, source
    assert "int16_t" not in source, source
    if vectorizes():  # without a vector ISA every loop is scalar
        assert "at::vec::Vectorized" in source, source


# Formats whose every code is finite, of at most 3 exponent bits (fpx.convert._fits_byte_products):
# compiled on CPU, decode to a 16-bit float takes their fields in uint8 lanes and the value as a
# float product (fpx.convert._decode_bytes_by_float_products); a bias far from the usual, an
# unsigned format and one without mantissa bits among them.
BYTE_PRODUCT_CASES = [(E2M1, torch.bfloat16), (E2M1, torch.float16), (E3M2, torch.bfloat16), (fpx.E2M3, torch.float16),
                      (exmy(3, 4), torch.bfloat16), (exmy(1, 6), torch.float16), (exmy(2, 1, bias=-3), torch.bfloat16),
                      (FloatFormat("UE2M3", 2, 3, 1, signed=False), torch.bfloat16), (exmy(2, 0), torch.float16)]


@pytest.mark.parametrize("fmt, dtype", BYTE_PRODUCT_CASES,
                         ids=["E2M1-bf16", "E2M1-f16", "E3M2-bf16", "E2M3-f16", "E3M4-bf16", "E1M6-f16",
                              "E2M1-bias-3-bf16", "UE2M3-bf16", "E2M0-f16"])
def test_compiled_cpu_decode_by_byte_products_of_every_code(fmt, dtype):
    """Every byte (the bits above the format's ignored), compiled on CPU, against the value
    formula of tests/fpx/test_formats.py: equal values and signs of zero, in an odd length
    (the vector loop's tail), a sliced view and a transposed 2-d layout."""
    from fpx.convert import _fits_byte_products

    assert _fits_byte_products(fmt)
    codes = torch.arange(256, dtype=torch.uint8).repeat(5)[:1283]
    expected = format_values(fmt)[codes.numpy() & ((1 << fmt.bits) - 1)]
    out, source = compile_and_code(lambda c: decode(c, fmt, dtype), codes)
    assert out.dtype == dtype
    assert_same_floats(out.double().numpy(), expected)
    assert kernel_count(source, "cpu") == 1, source
    grid = codes[:1280].view(40, 32)
    for view in (grid[1:, 3:], grid.t()):
        got = torch.compile(lambda c: decode(c, fmt, dtype), fullgraph=True)(view)
        assert_same_floats(got.double().numpy(), format_values(fmt)[view.numpy() & ((1 << fmt.bits) - 1)])


def test_compiled_cpu_decode_to_16_bit_floats_by_byte_products_has_no_int32_lanes():
    """E2M1 to bfloat16, compiled on CPU: one vectorized kernel with no int32 and no lane-by-lane
    fallback (at::vec converts uint8 -> int32 and int32 -> float32 32 lanes at a time through a
    scalar loop: 4 Mi codes, 2 cores, 6.4 ms against 1.2 this way)."""
    from fpx.convert import _fits_byte_products

    assert [_fits_byte_products(f) for f in (E2M1, E3M2, fpx.E2M3, exmy(3, 4))] == [True] * 4
    assert not any(_fits_byte_products(f) for f in (E4M3, E5M2, E8M0, exmy(4, 3), exmy(3, 2, bias=130)))
    codes = torch.arange(256, dtype=torch.uint8).repeat(9)
    assert_compiles_without_int32_lanes(lambda c: decode(c, E2M1, torch.bfloat16), codes)


# Formats with 4-6 exponent bits or inf / NaN codes (fpx.convert._decodes_by_byte_products): the
# two-factor power of two and the specials by float comparisons, which LowBitLinear's compiled CPU
# weight blocks take for whole-byte-plane float codes stored in 16 bits (fpx.nn._codes_in_uint8_lanes).
BYTE_PRODUCT_SPECIAL_CASES = [E4M3, E5M2, exmy(6, 1, special="ieee"), exmy(4, 2, special="fn", bias=3),
                              FloatFormat("UE5M3", 5, 3, 15, special="fn", signed=False), exmy(3, 2, special="ieee")]


@pytest.mark.parametrize("fmt", BYTE_PRODUCT_SPECIAL_CASES, ids=[f.name for f in BYTE_PRODUCT_SPECIAL_CASES])
def test_decode_by_byte_products_of_every_code_with_specials_and_long_exponents(fmt):
    """Every byte (the bits above the format's ignored), eager and compiled on CPU, against the
    value formula of tests/fpx/test_formats.py: equal values, infinities, signs of zero, and NaN
    where NaN with the code's sign (as fpx.decode's contract), in float32 with no int32 lanes."""
    from fpx.convert import _decode_bytes_by_float_products, _decodes_by_byte_products

    assert _decodes_by_byte_products(fmt)
    codes = torch.arange(256, dtype=torch.uint8).repeat(5)[:1283]
    low = codes.numpy() & ((1 << fmt.bits) - 1)
    expected = format_values(fmt)[low]
    eager = _decode_bytes_by_float_products(codes, fmt)
    compiled, source = compile_and_code(lambda c: _decode_bytes_by_float_products(c, fmt), codes)
    for out in (eager, compiled):
        assert out.dtype == torch.float32
        assert_same_floats(out.double().numpy(), expected)
        nan = np.isnan(expected)
        negative_code = (low >> (fmt.bits - 1)) & 1 if fmt.signed else np.zeros_like(low)
        np.testing.assert_array_equal(np.signbit(out.numpy()[nan]), negative_code[nan] == 1)
    assert kernel_count(source, "cpu") == 1, source
    if vectorizes():
        assert "int32_t" not in source, source


def test_decode_by_byte_products_takes_no_format_it_cannot_decode_exactly():
    """E8M0 (no zero, no subnormals), 7 exponent bits (a uint8 power of 2^15) and a bias that
    puts subnormals below float32's normals are left to the int32 route."""
    from fpx.convert import _decodes_by_byte_products

    assert [_decodes_by_byte_products(f) for f in (E2M1, E3M2, E4M3, E5M2, exmy(6, 1))] == [True] * 5
    assert not any(_decodes_by_byte_products(f) for f in (E8M0, exmy(7, 0), exmy(4, 3, bias=130)))


# Signed formats whose every code is finite, of at most 3 exponent bits, from any input, and FP8
# from float32 and float16 (fpx.convert._rounds_by_binade_steps): compiled on CPU, round_to to nearest works
# in float32 (the binade by halving steps, the rounding torch.round): against eager, itself
# checked against the value tables for every 16-bit input in tests/fpx/test_encode.py.
@pytest.mark.parametrize("fmt, dtype, saturate",
                         [(E2M1, torch.bfloat16, True), (E2M1, torch.float32, True), (E3M2, torch.float16, True),
                          (fpx.E2M3, torch.bfloat16, True), (exmy(3, 4), torch.float16, True),
                          (exmy(2, 1, bias=-3), torch.float32, True), (E4M3, torch.float32, True),
                          (E4M3, torch.float32, False), (E5M2, torch.float32, True), (E5M2, torch.float32, False),
                          (E4M3, torch.float16, True), (E5M2, torch.float16, False)],
                         ids=["E2M1-bf16", "E2M1-f32", "E3M2-f16", "E2M3-bf16", "E3M4-f16", "E2M1-bias-3-f32",
                              "E4M3-f32-sat", "E4M3-f32", "E5M2-f32-sat", "E5M2-f32", "E4M3-f16-sat", "E5M2-f16"])
def test_compiled_cpu_round_to_by_binade_steps_as_eager(fmt, dtype, saturate):
    """Every bfloat16 / float16 pattern (NaNs, infinities, both zeros, subnormals), or float32
    values and midpoints of the format with their neighbours, random values in and around its
    range, float32 subnormals, random bit patterns and NaNs of both signs with payloads: the
    same bits as eager, one kernel."""
    from fpx.convert import _rounds_by_binade_steps

    assert _rounds_by_binade_steps(fmt, dtype)
    if dtype == torch.float32:
        tiny = torch.tensor([2.0**-149, -(2.0**-149), 2.0**-127, -(2.0**-130)])
        nans = torch.tensor([0x7FC00000, 0x7F800001, 0x7FC12345, -0x00400000, -0x007FFFFF], dtype=torch.int32)
        x = torch.cat([boundaries(fmt), in_range_float32(fmt, 4099, seed=1), random_float32_bits(4099, seed=2), tiny,
                       nans.view(torch.float32)])
    else:
        x = all_16_bit(dtype)
    out, source = compile_and_code(lambda t: round_to(t, fmt, saturate=saturate), x)
    assert_bits_equal(out, round_to(x, fmt, saturate=saturate))
    assert kernel_count(source, "cpu") == 1, source


def test_compiled_cpu_round_to_by_binade_steps_has_no_int32_lanes():
    """round_to of bfloat16 to E2M1 compiled on CPU: no int32 and no lane-by-lane fallback (4 Mi
    values, 2 cores: 7.1-8.4 ms at the bit level, 1.4 this way); formats outside the rule (FP8
    with a bfloat16 result, whose NaN signs the float32 -> bfloat16 conversion loses),
    stochastic rounding and float64 keep the bit-level path."""
    from fpx.convert import _rounds_by_binade_steps

    assert all(_rounds_by_binade_steps(f, d) for f in (E2M1, E3M2, fpx.E2M3) for d in (torch.bfloat16, torch.float16))
    assert all(_rounds_by_binade_steps(f, d) for f in (E2M1, E4M3, E5M2, exmy(4, 3))
               for d in (torch.float32, torch.float16))
    unsigned = FloatFormat("UE2M3", 2, 3, 1, signed=False)
    assert not any(_rounds_by_binade_steps(f, torch.bfloat16) for f in (E4M3, E5M2, exmy(4, 3)))
    assert not any(_rounds_by_binade_steps(f, d) for f in (E8M0, unsigned, exmy(3, 2, bias=130))
                   for d in (torch.float32, torch.bfloat16))
    x = all_16_bit(torch.bfloat16)
    assert_compiles_without_int32_lanes(lambda t: round_to(t, E2M1), x)
    # float64 just off E2M1's midpoints: a float32 conversion first would round them onto the
    # midpoint, then to even (0.25 + 2^-40 to 0.0, not 0.5).
    midpoints = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], dtype=torch.float64)
    wide = torch.cat([midpoints + 2.0**-40, midpoints - 2.0**-40, -(midpoints + 2.0**-40)])
    expected = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0,
                             -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=torch.float64)
    out, _ = compile_and_code(lambda t: round_to(t, E2M1), wide)
    assert_bits_equal(out, expected)


# Compiled on CPU, encode to nearest of bfloat16 and float16 to signed formats with subnormals,
# FP8 to FP4: the code as a float (the magnitude's binade by
# halving steps, the step count rounded by torch.round, plus the binade's first code;
# fpx.convert._encode_by_binade_steps), against eager, itself checked against the value tables
# for every 16-bit input in tests/fpx/test_encode.py.
BINADE_ENCODE_CASES = [(E2M1, torch.bfloat16, True), (E2M1, torch.float16, True), (E3M2, torch.bfloat16, True),
                       (fpx.E2M3, torch.float16, True), (exmy(3, 4), torch.bfloat16, True),
                       (exmy(2, 1, bias=-3), torch.float16, True), (exmy(1, 6), torch.bfloat16, True),
                       (E4M3, torch.bfloat16, True), (E4M3, torch.bfloat16, False), (E5M2, torch.bfloat16, True),
                       (E5M2, torch.bfloat16, False), (exmy(6, 1, special="ieee"), torch.bfloat16, False),
                       (E4M3, torch.float16, False)]


@pytest.mark.parametrize("fmt, dtype, saturate", BINADE_ENCODE_CASES,
                         ids=["E2M1-bf16", "E2M1-f16", "E3M2-bf16", "E2M3-f16", "E3M4-bf16", "E2M1-bias-3-f16",
                              "E1M6-bf16", "E4M3-bf16-sat", "E4M3-bf16", "E5M2-bf16-sat", "E5M2-bf16",
                              "E6M1-ieee-bf16", "E4M3-f16"])
def test_compiled_cpu_encode_by_binade_steps_as_eager(fmt, dtype, saturate):
    """Every bfloat16 / float16 pattern (NaNs of both signs, infinities, both zeros,
    subnormals): the same codes as eager, one kernel."""
    from fpx.convert import _encodes_by_binade_steps

    assert _encodes_by_binade_steps(fmt, dtype)
    x = all_16_bit(dtype)
    out, source = compile_and_code(lambda t: encode(t, fmt, saturate=saturate), x)
    assert out.dtype == torch.uint8
    assert_bits_equal(out, encode(x, fmt, saturate=saturate))
    assert kernel_count(source, "cpu") == 1, source


@pytest.mark.parametrize("operation, dtype, saturate",
                         [(encode, torch.bfloat16, False), (encode, torch.float16, True), (round_to, torch.float16, False)],
                         ids=["encode-bf16", "encode-f16", "round_to-f16"])
def test_compiled_cpu_fp8_by_binade_steps_in_other_layouts(operation, dtype, saturate):
    """E4M3 in a sliced view of odd rows, a transposed layout and a short odd tail of negative
    NaNs (a loop's remainder, where a NaN's sign must survive the float16 -> float32
    conversion): the same bits as eager."""
    x = all_16_bit(dtype)
    grid = x[:65535].view(257, 255)
    for view in (grid[1:, 3:], grid.t(), x[-37:]):  # the last: negative NaNs in a loop tail
        got = torch.compile(lambda t: operation(t, E4M3, saturate=saturate), fullgraph=True)(view)
        assert_bits_equal(got, operation(view, E4M3, saturate=saturate))


def test_compiled_cpu_encode_of_16_bit_floats_by_binade_steps_has_no_int32_lanes():
    """encode of float16 to E2M1 compiled on CPU: no int32 and no lane-by-lane fallback (4 Mi
    values, 2 cores: 3.5-4.3 ms at the bit level, 1.1-1.3 this way); float32 input and
    stochastic rounding keep the bit level (int32 lanes)."""
    from fpx.convert import _encodes_by_binade_steps

    assert _encodes_by_binade_steps(E4M3, torch.float16) and not _encodes_by_binade_steps(E4M3, torch.float32)
    unsigned = FloatFormat("UE2M3", 2, 3, 1, signed=False)
    assert not any(_encodes_by_binade_steps(f, torch.bfloat16) for f in (E8M0, unsigned, exmy(3, 2, bias=130)))
    x = all_16_bit(torch.float16)
    assert_compiles_without_int32_lanes(lambda t: encode(t, E2M1), x)
    wide = x.float()
    out, source = compile_and_code(lambda t: encode(t, E2M1), wide)
    assert_bits_equal(out, encode(wide, E2M1))
    assert "int32_t" in source, source
    uniform = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    stochastic = lambda t, u: encode(t, E2M1, rounding="stochastic", uniform=u)  # noqa: E731
    out, source = compile_and_code(stochastic, x, uniform)
    assert_bits_equal(out, stochastic(x, uniform))
    assert "int32_t" in source, source


@pytest.mark.parametrize("device", DEVICES)
def test_stochastic_one_kernel(device):
    x = sample(device)
    uniform = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)).to(device)
    fn = lambda x, u: encode(x, E5M2, rounding="stochastic", uniform=u)  # noqa: E731
    assert_bits_equal(check_one_kernel(fn, x, uniform, device=device), fn(x, uniform))
    # Draws from the global RNG (one seed per call, hashed per element): a different stream
    # from eager's, so check the result lies on one side or the other.
    out = check_one_kernel_with_global_draws(lambda x: round_to(x, E5M2, rounding="stochastic"), x, device=device)
    up = round_to(x, E5M2, rounding="stochastic", uniform=torch.zeros_like(x))
    down = round_to(x, E5M2, rounding="stochastic", uniform=torch.full_like(x, 1 - 2.0**-24))
    same = (out == up) | (out == down) | (torch.isnan(out) & torch.isnan(down))
    assert same.all()


@pytest.mark.parametrize("device", DEVICES)
def test_dynamic_shapes_one_kernel(device):
    x = sample(device)
    encode_fn = lambda x: encode(x, E4M3)  # noqa: E731
    decode_fn = lambda c: decode(c, E4M3)  # noqa: E731
    codes = check_one_kernel(encode_fn, x, device=device, dynamic=True)
    assert_bits_equal(codes, encode_fn(x))
    assert_bits_equal(check_one_kernel(decode_fn, codes, device=device, dynamic=True), decode_fn(codes))
    stochastic_fn = lambda x: encode(x, E4M3, rounding="stochastic")  # noqa: E731
    assert check_one_kernel_with_global_draws(stochastic_fn, x, device=device, dynamic=True).shape == x.shape


@pytest.mark.parametrize("device", DEVICES)
def test_format_from_a_closure_compiles_to_constants(device):
    """Under dynamic=True dynamo makes the int fields of a format reached through a closure
    symbolic (torch 2.11 then crashed on ``1 << symint``): they must reach the kernel as
    constants, so the only symbolic kernel argument left is the length."""
    x = sample(device)
    # exmy(3, 4) and the bias-5 format are not module constants: rebuilt inside the trace.
    for fmt in (E3M2, exmy(3, 4), FloatFormat("E3M2-bias5", 3, 2, 5), fpx.INT4):
        if isinstance(fmt, FloatFormat):
            fn, t = (lambda t: round_to(t, fmt)), x  # noqa: E731
        else:  # non-finite inputs give unspecified values: leave them out
            fn, t = (lambda t: fpx.fake_quantize(t, fmt, axis=None)), x[torch.isfinite(x)]  # noqa: E731
        out, source = compile_and_code(fn, t, dynamic=True)
        assert kernel_count(source, device) == 1
        assert_bits_equal(out, fn(t))
        assert len(set(re.findall(r"\bks\d+\b", source))) <= 1, source


@pytest.mark.parametrize("device", DEVICES)
def test_decode_keeps_the_sign_of_zero_and_nan_compiled(device):
    """The sign bit is set on the integer pattern: Triton's unary minus is 0 - x, which turns
    -0.0 into +0.0, and a GPU may negate a NaN into any NaN."""
    codes = torch.tensor([0x80, 0xFF, 0x7F, 0x00], dtype=torch.uint8, device=device)
    out = torch.compile(lambda c: decode(c, E4M3), fullgraph=True)(codes)
    assert out.view(torch.int32).tolist() == [-(2**31), 0xFFC00000 - 2**32, 0x7FC00000, 0]


@pytest.mark.cuda
@pytest.mark.parametrize("fmt, triton_dtype", [(E4M3, "tl.float8e4nv"), (E5M2, "tl.float8e5")], ids=["E4M3", "E5M2"])
def test_fp8_encode_rounds_by_the_conversion_instruction_cuda(fmt, triton_dtype):
    # Compute capability 8.9+ (the GPUs with FP8 conversion): one kernel that converts, and
    # the contract's overflow / NaN rules on top (checked against the CPU's bit-level path).
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("no FP8 conversion instruction on this GPU")
    x = sample("cuda", torch.bfloat16)
    for saturate in (True, False):
        fn = lambda x: encode(x, fmt, saturate=saturate)  # noqa: E731
        out, source = compile_and_code(fn, x)
        assert kernel_count(source, "cuda") == 1, source
        assert triton_dtype in source, source
        assert_bits_equal(out, encode(x.cpu(), fmt, saturate=saturate))


# ---- GPU correctness: eager and compiled CUDA against CPU eager on every kind of input --------
@pytest.mark.cuda
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_cuda_matches_cpu(fmt):
    inputs = [
        all_16_bit(torch.float16),
        all_16_bit(torch.bfloat16),
        random_float32_bits(1_000_000, seed=1),
        in_range_float32(fmt, 200_000, seed=2),
        boundaries(fmt),
        boundaries(fmt, np.float64),
    ]
    for saturate in (True, False):
        compiled_encode = torch.compile(lambda x: encode(x, fmt, saturate=saturate), fullgraph=True, dynamic=True)
        for x in inputs:
            expected = encode(x, fmt, saturate=saturate)
            assert_bits_equal(encode(x.cuda(), fmt, saturate=saturate), expected)
            assert_bits_equal(compiled_encode(x.cuda()), expected)
    codes = torch.arange(2**fmt.bits, dtype=torch.uint8)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        compiled_decode = torch.compile(lambda c: decode(c, fmt, dtype), fullgraph=True)
        expected = decode(codes, fmt, dtype)
        assert_bits_equal(decode(codes.cuda(), fmt, dtype), expected)
        assert_bits_equal(compiled_decode(codes.cuda()), expected)
