"""Formats and decode: every code's value against the spec and a formula written here.

``format_values`` (the formula) and the spec table below are the independent reference that
test_encode.py rounds against; neither uses FloatFormat.code_value.
"""

import contextlib
import importlib
import math
from unittest import mock

import numpy as np
import pytest
import torch

import fpx
from fpx import E2M1, E2M3, E3M2, E4M3, E5M2, E8M0, FloatFormat, decode, encode, exmy
from fpx.storage import pack_fp4, pack_fp6, unpack_fp4, unpack_fp6

# The OCP formats as the specs state them (OFP8 rev 1.0 table 1, MX v1.0 tables), as data:
# bits, bias, max and its code, min normal, min subnormal, inf codes, NaN codes, -0 code.
SPEC = {
    "E4M3": dict(bits=8, bias=7, max=448.0, max_code=0x7E, min_normal=2.0**-6, min_subnormal=2.0**-9,
                 inf=[], nan=[0x7F, 0xFF], neg_zero=0x80),
    "E5M2": dict(bits=8, bias=15, max=57344.0, max_code=0x7B, min_normal=2.0**-14, min_subnormal=2.0**-16,
                 inf=[0x7C, 0xFC], nan=[0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF], neg_zero=0x80),
    "E3M2": dict(bits=6, bias=3, max=28.0, max_code=0x1F, min_normal=0.25, min_subnormal=0.0625,
                 inf=[], nan=[], neg_zero=0x20),
    "E2M3": dict(bits=6, bias=1, max=7.5, max_code=0x1F, min_normal=1.0, min_subnormal=0.125,
                 inf=[], nan=[], neg_zero=0x20),
    "E2M1": dict(bits=4, bias=1, max=6.0, max_code=0x7, min_normal=1.0, min_subnormal=0.5,
                 inf=[], nan=[], neg_zero=0x8),
    "E8M0": dict(bits=8, bias=127, max=2.0**127, max_code=0xFE, min_normal=2.0**-127, min_subnormal=None,
                 inf=[], nan=[0xFF], neg_zero=None),
}
NAMED = {"E4M3": E4M3, "E5M2": E5M2, "E3M2": E3M2, "E2M3": E2M3, "E2M1": E2M1, "E8M0": E8M0}

# Formats every conversion test runs on: the OCP ones plus a few ExMy ones (an m=0 format
# exercises the tie rule where the implicit bit is the lsb).
FORMATS = [E4M3, E5M2, E3M2, E2M3, E2M1, E8M0, exmy(3, 4), exmy(5, 2, special="finite"), exmy(4, 3, special="ieee"), exmy(2, 0)]
FORMAT_IDS = [f"{f.name}-{f.special}" for f in FORMATS]


def format_values(fmt: FloatFormat) -> np.ndarray:
    """float64 value of every code 0 .. 2**bits - 1, from the sign/exponent/mantissa formula."""
    e, m, bias = fmt.exponent_bits, fmt.mantissa_bits, fmt.bias
    bits = int(fmt.signed) + e + m
    codes = np.arange(2**bits)
    magnitude = codes & (2 ** (e + m) - 1)
    exponent = magnitude >> m
    mantissa = (magnitude & (2**m - 1)).astype(np.float64)
    normal = (1.0 + mantissa / 2**m) * np.exp2(exponent - bias)
    if fmt.has_zero:
        subnormal = mantissa / 2**m * 2.0 ** (1 - bias)
        value = np.where(exponent == 0, subnormal, normal)
    else:
        value = normal
    all_ones_exponent = exponent == 2**e - 1
    if fmt.special == "ieee":
        value = np.where(all_ones_exponent, np.where(mantissa == 0, np.inf, np.nan), value)
    elif fmt.special == "fn" or not fmt.has_zero:
        value = np.where(magnitude == 2 ** (e + m) - 1, np.nan, value)
    if fmt.signed:
        value = np.where(codes >> (bits - 1) == 1, -value, value)
    return value


def all_codes(fmt):
    return torch.arange(2**fmt.bits, dtype=torch.uint8)


def assert_same_floats(actual: np.ndarray, expected: np.ndarray):
    """Equal values, NaN where NaN, and equal signs (so -0.0 != 0.0)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), nan)
    np.testing.assert_array_equal(actual[~nan], expected[~nan])
    np.testing.assert_array_equal(np.signbit(actual[~nan]), np.signbit(expected[~nan]))


# ---- the format definitions --------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SPEC))
def test_named_formats_match_the_spec(name):
    fmt, spec = NAMED[name], SPEC[name]
    assert (fmt.bits, fmt.bias, fmt.max, fmt.max_code) == (spec["bits"], spec["bias"], spec["max"], spec["max_code"])
    assert fmt.min_normal == spec["min_normal"] and fmt.min_subnormal == spec["min_subnormal"]
    values = format_values(fmt)
    assert values[spec["max_code"]] == spec["max"]
    assert np.nanmax(values[np.isfinite(values)]) == spec["max"]
    assert sorted(np.flatnonzero(np.isnan(values))) == spec["nan"]
    assert sorted(np.flatnonzero(np.isinf(values))) == spec["inf"]
    if spec["neg_zero"] is not None:
        assert values[spec["neg_zero"]] == 0 and np.signbit(values[spec["neg_zero"]])
        assert values[1] == spec["min_subnormal"]
    else:
        assert values[0] == spec["min_normal"]  # E8M0: no zero, code 0 is 2^-127


def test_e2m1_values_literally():
    np.testing.assert_array_equal(format_values(E2M1)[:8], [0, 0.5, 1, 1.5, 2, 3, 4, 6])


def test_emax():
    assert [f.emax for f in (E4M3, E5M2, E3M2, E2M3, E2M1, E8M0)] == [8, 15, 4, 2, 2, 127]


# ---- decode ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_decode_every_code(fmt):
    assert_same_floats(decode(all_codes(fmt), fmt).numpy(), format_values(fmt))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_decode_dtypes(fmt, dtype):
    expected = format_values(fmt)
    if dtype == torch.float16:
        # float16 holds every value except E8M0's extremes; those are float32 -> float16 casts.
        expected = torch.from_numpy(expected).to(torch.float32).to(torch.float16).double().numpy()
    out = decode(all_codes(fmt), fmt, dtype=dtype)
    assert out.dtype == dtype
    assert_same_floats(out.double().numpy(), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_decode_nan_codes_keep_their_sign(fmt, dtype):
    # The contract: a quiet NaN with the code's sign, in every dtype (float32 -> bfloat16 casts
    # may drop it).
    codes = all_codes(fmt)
    nan = np.isnan(format_values(fmt))
    out = decode(codes, fmt, dtype=dtype)[torch.from_numpy(nan)]
    assert torch.isnan(out).all()
    negative = (codes[torch.from_numpy(nan)].long() & fmt.sign_mask) != 0
    assert torch.equal(torch.signbit(out), negative)
    if dtype in (torch.bfloat16, torch.float16):
        quiet_bit = 0x0040 if dtype == torch.bfloat16 else 0x0200
        assert ((out.view(torch.int16).long() & quiet_bit) != 0).all()


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_encode_inverts_decode(fmt):
    codes = all_codes(fmt)
    values = decode(codes, fmt)
    finite = torch.from_numpy(np.isfinite(format_values(fmt)))
    # Non-saturating mode keeps +-inf; every other non-NaN code comes back as itself.
    keep = ~torch.from_numpy(np.isnan(format_values(fmt)))
    assert torch.equal(encode(values, fmt, saturate=False)[keep], codes[keep])
    assert torch.equal(encode(values, fmt)[finite], codes[finite])
    assert torch.isnan(values[~keep]).all()


def test_decode_reads_low_bits_only():
    codes = torch.tensor([0x17, 0xF7, 0x3A], dtype=torch.uint8)
    assert decode(codes, E2M1).tolist() == [6.0, 6.0, -1.0]


def test_decode_keeps_shape_and_handles_empty():
    codes = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4).transpose(0, 2)
    out = decode(codes, E4M3)
    assert out.shape == (4, 3, 2)
    assert torch.equal(out, decode(codes.contiguous(), E4M3))
    assert decode(torch.empty(0, 5, dtype=torch.uint8), E5M2).shape == (0, 5)


@pytest.mark.parametrize(
    "fmt, torch_dtype",
    [(E4M3, "float8_e4m3fn"), (E5M2, "float8_e5m2"), (E8M0, "float8_e8m0fnu")],
    ids=["E4M3", "E5M2", "E8M0"],
)
def test_decode_matches_torch_float8_views(fmt, torch_dtype):
    dtype = getattr(torch, torch_dtype, None)
    if dtype is None:
        pytest.skip(f"torch {torch.__version__} has no {torch_dtype}")
    codes = all_codes(fmt)
    assert_same_floats(decode(codes, fmt).numpy(), codes.view(dtype).double().numpy())


def test_nan_codes_keep_their_sign():
    codes = torch.tensor([0x7F, 0xFF, 0x7D, 0xFE], dtype=torch.uint8)
    for fmt, pair in ((E4M3, codes[:2]), (E5M2, codes[2:])):
        out = decode(pair, fmt)
        assert torch.isnan(out).all() and torch.signbit(out).tolist() == [False, True]


# ---- decode by float32 placement (the CUDA route, run here on CPU) -------------------------------
@contextlib.contextmanager
def route_everywhere(pays_off: str, route: str):
    """encode / decode take one of fpx.convert's device-chosen routes on CPU too: ``pays_off``
    (the device check) is patched to say yes, the routes only compiled CPU code takes before it
    to say no (as on CUDA), and the calls of ``route`` are counted; yields the list of their
    arguments."""
    convert = importlib.import_module("fpx.convert")
    calls = []
    original = getattr(convert, route)

    def counted(*args):
        calls.append(args)
        return original(*args)

    cpu_only = mock.patch.object(convert, "_small_formats_in_float_arithmetic", lambda device: False)
    with cpu_only, mock.patch.object(convert, pays_off, lambda device: True), mock.patch.object(convert, route, counted):
        yield calls


def float32_placement_everywhere():
    """decode takes _decode_by_float32_placement on CPU too (by default only on CUDA); the
    calls' arguments are (code, fmt, dtype)."""
    return route_everywhere("_float32_placement_pays_off", "_decode_by_float32_placement")


# The route's cases: formats with zero and subnormals, to float32 and bfloat16; to float16 the
# formats with NaN codes whose values are float16 normals (the others keep the float16
# placement, which test_decode_dtypes covers).
PLACEMENT_CASES = [
    pytest.param(fmt, dtype, id=f"{fmt_id}-{str(dtype)[6:]}")
    for fmt, fmt_id in zip(FORMATS, FORMAT_IDS)
    if fmt.has_zero
    for dtype in (torch.float32, torch.bfloat16, torch.float16)
    if dtype != torch.float16 or (fmt.has_nan and fmt.min_subnormal >= 2.0**-14)
]


@pytest.mark.parametrize("fmt, dtype", PLACEMENT_CASES)
def test_decode_by_float32_placement_matches_reference(fmt, dtype):
    # Every code, with bits above the format's set (they must be ignored), eager and compiled:
    # values, signs of zero, and NaN codes as quiet NaNs of the code's sign.
    codes = all_codes(fmt)
    noisy = codes | (0xFF << fmt.bits & 0xFF)
    compiled = torch.compile(lambda c: decode(c, fmt, dtype), fullgraph=True, dynamic=False)
    with float32_placement_everywhere() as calls:
        outs = [decode(codes, fmt, dtype), decode(noisy, fmt, dtype), compiled(noisy)]
    assert [call[1] for call in calls] == [fmt] * 3
    expected = format_values(fmt)
    nan = torch.from_numpy(np.isnan(expected))
    int_view, quiet_bit = {torch.float32: (torch.int32, 1 << 22), torch.bfloat16: (torch.int16, 1 << 6), torch.float16: (torch.int16, 1 << 9)}[dtype]
    for out in outs:
        assert out.dtype == dtype
        assert_same_floats(out.double().numpy(), expected)
        assert torch.equal(torch.signbit(out[nan]), (codes[nan].long() & fmt.sign_mask) != 0)
        assert ((out.view(int_view).long()[nan] & quiet_bit) != 0).all()


def test_decode_by_float32_placement_only_where_it_applies():
    codes = all_codes(E4M3)
    with float32_placement_everywhere() as calls:
        decode(codes, E8M0)  # no zero: its code 0 is 2^-127, not a subnormal
        decode(codes, E5M2, torch.float16)  # subnormal float16 values: float16's own placement
        decode(codes, E2M1, torch.float16)  # no NaN codes: float16's own placement is cheaper
        decode(codes, E4M3, torch.float64)
        decode(codes, exmy(3, 2, bias=-1))  # the scale 2^(127 - bias) = 2^128 is no float32
    assert calls == []
    assert decode(codes, E4M3).device.type == "cpu"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64], ids=str)
def test_decode_routes_every_format_on_cuda_choices(dtype):
    # decode as on CUDA, for every format: the float32 placement taken exactly for
    # PLACEMENT_CASES, and every value right either way. (Asking whether E8M0 fits the float16
    # placement once raised on CUDA: it has no subnormals, so no min_subnormal.)
    routed = {(fmt, case_dtype) for fmt, case_dtype in (case.values for case in PLACEMENT_CASES)}
    for fmt in FORMATS:
        with float32_placement_everywhere() as calls:
            out = decode(all_codes(fmt), fmt, dtype)
        assert len(calls) == ((fmt, dtype) in routed), fmt
        # float64 values rounded once to dtype (E8M0's extremes leave float16's range)
        expected = torch.from_numpy(format_values(fmt)).to(dtype).double().numpy()
        assert out.dtype == dtype
        assert_same_floats(out.double().numpy(), expected)


# ---- errors ------------------------------------------------------------------------------------
def test_decode_errors():
    codes = torch.zeros(3, dtype=torch.uint8)
    with pytest.raises(TypeError, match="codes must be a torch.uint8 tensor, got torch.int32"):
        decode(codes.int(), E4M3)
    with pytest.raises(TypeError, match=r"view\(torch.uint8\)"):
        decode(codes.view(torch.float8_e4m3fn), E4M3)
    with pytest.raises(TypeError, match="codes must be a torch.Tensor, got list"):
        decode([1, 2], E4M3)
    with pytest.raises(TypeError, match="fmt must be a fpx.FloatFormat.*INT4"):
        decode(codes, fpx.INT4)
    with pytest.raises(TypeError, match="fmt must be a fpx.FloatFormat.*'E4M3'"):
        decode(codes, "E4M3")
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype, got torch.int32"):
        decode(codes, E4M3, dtype=torch.int32)


def test_formats_outside_float32_are_refused():
    with pytest.raises(ValueError, match="outside float32's exact range"):
        decode(torch.zeros(1, dtype=torch.uint8), exmy(4, 3, bias=140))
    with pytest.raises(ValueError, match="outside float32's exact range"):
        encode(torch.zeros(1), exmy(4, 3, bias=-130))



def test_formats_refuse_bad_fields_by_name():
    """Ranges (ValueError) and field types (TypeError): a string bias or a truthy signed="no"
    would otherwise make a format that fails or encodes wrongly far from its definition."""
    with pytest.raises(ValueError, match="need exponent_bits >= 1 and mantissa_bits >= 0, got 0, 1"):
        exmy(0, 1)
    with pytest.raises(ValueError, match="E4M5 has 10 bits; at most 8"):
        exmy(4, 5)
    with pytest.raises(ValueError, match="special must be one of .* got 'nan'"):
        exmy(4, 3, special="nan")
    with pytest.raises(TypeError, match="exponent_bits must be an int, got '4'"):
        exmy("4", 3)
    for bias in ("7", 7.0, True):
        with pytest.raises(TypeError, match=f"FloatFormat bias must be an int, got {bias!r}"):
            exmy(4, 3, bias=bias)
    for field, value in (("signed", "no"), ("has_zero", 1)):
        with pytest.raises(TypeError, match=f"FloatFormat {field} must be a bool, got {value!r}"):
            FloatFormat("F", 4, 3, 7, **{field: value})
    with pytest.raises(TypeError, match="FloatFormat name must be a str, got 43"):
        FloatFormat(43, 4, 3, 7)
    for bits in (0, 9, 4.0):
        with pytest.raises(ValueError, match=f"bits must be an int in 1..8, got {bits!r}"):
            fpx.IntFormat("I", bits, True)
    with pytest.raises(TypeError, match="IntFormat signed must be a bool, got 'no'"):
        fpx.IntFormat("I", 4, "no")
    with pytest.raises(TypeError, match="IntFormat name must be a str, got 4"):
        fpx.IntFormat(4, 4, True)
    # Valid fields still build, equal to the named formats.
    assert exmy(4, 3, bias=8).bias == 8 and fpx.IntFormat("INT4", 4, True) == fpx.INT4
    assert FloatFormat("E4M3", 4, 3, 7, special="fn") == E4M3


def test_no_two_exmy_formats_of_other_values_share_a_name_and_each_repr_rebuilds_its_format():
    """Every signed ExMy of at most 8 bits with each special-value rule and a few biases: equal
    names exactly where the formats are equal (a namesake of other values, as exmy(4, 3) was of
    fpx.E4M3, would be shown and saved as the other), fpx's own formats under their own names,
    and ``eval(repr(f))`` gives ``f`` back."""
    formats = [exmy(e, m, special=special, bias=bias)
               for e in range(1, 8) for m in range(0, 8 - e) for special in ("ieee", "fn", "finite")
               for bias in (None, 0, 3, 7, 15, 127, -2)]
    formats += [E4M3, E5M2, E3M2, E2M3, E2M1, E8M0, FloatFormat("custom", 3, 2, 3), FloatFormat("E3M2", 3, 2, 2),
                FloatFormat("U3M2", 3, 2, 3, signed=False), fpx.INT4, fpx.UINT3, fpx.IntFormat("q4", 4, True)]
    by_name = {}
    for fmt in formats:
        by_name.setdefault(fmt.name, set()).add(fmt)
        assert eval(repr(fmt), {"fpx": fpx}) == fmt, repr(fmt)
    shared = {name: group for name, group in by_name.items() if len(group) > 1}
    # Only a hand-built FloatFormat can take a name that means other values (as "E3M2" here).
    assert shared == {"E3M2": {E3M2, FloatFormat("E3M2", 3, 2, 2)}}, shared
    for named in (E4M3, E5M2, E3M2, E2M3, E2M1):
        same = exmy(named.exponent_bits, named.mantissa_bits, special=named.special, bias=named.bias)
        assert same == named and repr(same) == f"fpx.{named.name}"
    assert [exmy(4, 3).name, exmy(5, 2).name, exmy(3, 2, bias=2).name, exmy(3, 4).name,
            exmy(3, 4, special="ieee", bias=5).name] == ["E4M3_finite", "E5M2_finite", "E3M2_bias2", "E3M4",
                                                           "E3M4_ieee_bias5"]
    assert [repr(exmy(4, 3)), repr(exmy(3, 2, special="fn", bias=2)), repr(fpx.IntFormat("q4", 4, True))] == [
        "fpx.exmy(4, 3)", "fpx.exmy(3, 2, special='fn', bias=2)", "fpx.IntFormat('q4', 4, True)"]


# ---- packed storage ----------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 8, 13])
def test_fp6_storage(n):
    generator = torch.Generator().manual_seed(n)
    codes = torch.randint(0, 64, (3, n), generator=generator, dtype=torch.uint8)
    packed = pack_fp6(codes)
    assert packed.shape == (3, math.ceil(6 * n / 8)) and packed.dtype == torch.uint8
    assert torch.equal(unpack_fp6(packed, n), codes)
    # 4 values -> 3 bytes: one little-endian 24-bit word, value i at bits [6i, 6i + 6).
    for row, row_codes in zip(packed[:, : (n // 4) * 3].reshape(3, -1, 3), codes[:, : (n // 4) * 4].reshape(3, -1, 4)):
        for group, group_codes in zip(row.tolist(), row_codes.tolist()):
            word = group[0] | group[1] << 8 | group[2] << 16
            assert [(word >> (6 * i)) & 63 for i in range(4)] == group_codes


def test_fp6_storage_dim_and_errors():
    codes = encode(torch.randn(8, 5, generator=torch.Generator().manual_seed(0)), E3M2)
    packed = pack_fp6(codes, dim=0)
    assert packed.shape == (6, 5)
    assert torch.equal(unpack_fp6(packed, 8, dim=0), codes)
    with pytest.raises(ValueError, match="64"):
        pack_fp6(torch.tensor([64], dtype=torch.uint8))
    with pytest.raises(TypeError, match="codes must be a torch.uint8 tensor"):
        pack_fp6(torch.tensor([1, 2]))


@pytest.mark.parametrize("n", [0, 1, 2, 7, 16])
def test_fp4_storage(n):
    codes = torch.randint(0, 16, (2, n), generator=torch.Generator().manual_seed(n), dtype=torch.uint8)
    packed = pack_fp4(codes)
    assert packed.shape == (2, math.ceil(n / 2))
    low, high = packed & 0xF, packed >> 4
    assert torch.equal(low, codes[:, 0::2])  # element 0 in the low nibble
    assert torch.equal(high[:, : n // 2], codes[:, 1::2])
    if n % 2:
        assert (high[:, -1] == 0).all()
    assert torch.equal(unpack_fp4(packed, n), codes)


@pytest.mark.skipif(not hasattr(torch, "float4_e2m1fn_x2"), reason="torch has no float4_e2m1fn_x2")
def test_fp4_storage_views_as_torch_float4():
    x = torch.tensor([0.5, -1.0, 6.0, 0.0, -3.0, 1.5])
    packed = pack_fp4(encode(x, E2M1))
    as_float4 = packed.view(torch.float4_e2m1fn_x2)
    assert as_float4.shape == (3,)
    assert torch.equal(as_float4.view(torch.uint8), packed)
    assert packed.tolist() == [0xA1, 0x07, 0x3D]  # (-1.0, 0.5), (0.0, 6.0), (1.5, -3.0)
    assert torch.equal(decode(unpack_fp4(as_float4, 6), E2M1), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_decode_by_table_is_decode_by_fields_bit_for_bit(fmt, dtype):
    # CPU's eager route (a table of the field arithmetic's results, indexed by each code)
    # against the field arithmetic itself (compiled CPU code keeps it): every code, every bit,
    # codes with stray high bits too (read: the low fmt.bits bits only).
    codes = all_codes(fmt)
    codes = torch.cat([codes, codes | (0xFF ^ ((1 << fmt.bits) - 1))])
    with mock.patch.object(fpx.convert, "_decode_int_by_fields", wraps=fpx.convert._decode_int_by_fields) as fields:
        by_table = decode(codes, fmt, dtype)
    # the field arithmetic ran once, on the table's codes
    assert fields.call_count == 1 and fields.call_args.args[0].shape == (1 << fmt.bits,)
    with mock.patch.object(fpx.convert, "_decodes_by_table", lambda device: False):
        by_fields = decode(codes, fmt, dtype)
    bits = {torch.float64: torch.int64, torch.float32: torch.int32}.get(dtype, torch.int16)
    assert torch.equal(by_table.view(bits), by_fields.view(bits))
