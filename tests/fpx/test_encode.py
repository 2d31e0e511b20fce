"""encode / round_to / mx_scale_exponent against an exact reference written here.

The reference rounds in numpy float64, which holds every float32, every float64 and every
midpoint between adjacent format values exactly: the nearest entry of the sorted table of the
format's values (``format_values``, a formula in test_formats.py), ties to the even code, the
exponent unbounded (the table is extended by the next value above max, OFP8 5.2.1).
"""


from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fpx
from fpx import E2M1, E2M3, E3M2, E4M3, E5M2, E8M0, decode, encode, exmy, mx_scale_exponent, round_to

from .test_formats import FORMAT_IDS, FORMATS, format_values, route_everywhere


# ---- the reference -----------------------------------------------------------------------------
class Reference:
    """Exact encode of float64 numpy values into one format."""

    def __init__(self, fmt):
        self.fmt = fmt
        values = format_values(fmt)
        codes = np.arange(values.size)
        positive = np.isfinite(values) & ~np.signbit(values)
        v, c = values[positive], codes[positive]
        assert np.all(np.diff(v) > 0)
        m = fmt.mantissa_bits
        top = v[-1]
        next_up = top + 2.0 ** (np.floor(np.log2(top)) - m)  # the value after max, exponent unbounded
        self.values = np.append(v, next_up)
        self.codes = np.append(c, c[-1] + 1)
        self.max_code = int(c[-1])
        self.sign_bit = 1 << (fmt.bits - 1) if fmt.signed else 0
        positive_codes = codes[codes < (self.sign_bit or values.size)]
        nan_codes = positive_codes[np.isnan(values[positive_codes])]
        inf_codes = positive_codes[np.isposinf(values[positive_codes])]
        self.nan_code = int(nan_codes.max()) if nan_codes.size else None
        self.inf_code = int(inf_codes[0]) if inf_codes.size else None

    def _finish(self, x, index, overflow, saturate):
        """Codes from table indices: overflow, sign, NaN and inf rules."""
        magnitude = self.codes[index]
        if saturate or (self.inf_code is None and self.nan_code is None):
            overflow_code = self.max_code
        else:
            overflow_code = self.inf_code if self.inf_code is not None else self.nan_code
        overflow = overflow | np.isinf(x)
        code = np.where(overflow, overflow_code, magnitude)
        nan = np.isnan(x)
        if self.nan_code is not None:
            code = np.where(nan, self.nan_code, code)
        code = code | np.where(np.signbit(x), self.sign_bit, 0)
        if self.nan_code is None:
            code = np.where(nan, self.max_code, code)  # documented policy: NaN -> +max
        return code.astype(np.uint8)

    def nearest(self, x, saturate=True):
        x = np.asarray(x, np.float64)
        a = np.nan_to_num(np.abs(x), nan=0.0, posinf=0.0)
        v = self.values
        idx = np.searchsorted(v, a, side="left")  # v[idx - 1] < a <= v[idx]
        hi = np.minimum(idx, v.size - 1)
        lo = np.maximum(idx - 1, 0)
        d_hi, d_lo = v[hi] - a, a - v[lo]
        if self.fmt.mantissa_bits > 0:
            tie_up = self.codes[hi] % 2 == 0
        else:
            tie_up = v[lo] != 0  # m = 0: the implicit bit is the lsb, so ties go up, except from 0
        index = np.where((d_hi < d_lo) | ((d_hi == d_lo) & tie_up), hi, lo)
        overflow = (a > v[-1]) | (index == v.size - 1)
        return self._finish(x, index, overflow, saturate)

    def stochastic(self, x, uniform, saturate=True):
        """Round up iff floor(u * 2^24) < floor(p * 2^24), p = (a - below) / (above - below)."""
        x = np.asarray(x, np.float64)
        a = np.nan_to_num(np.abs(x), nan=0.0, posinf=0.0)
        v = self.values
        lo = np.searchsorted(v, a, side="right") - 1  # v[lo] <= a < v[lo + 1]
        below_min = lo < 0  # only formats without zero: the smallest value
        lo = np.clip(lo, 0, v.size - 2)
        gap = v[lo + 1] - v[lo]
        p = np.clip((a - v[lo]) / gap, 0, 1)
        draws = np.floor(np.asarray(uniform, np.float64) * 2**24)
        up = (draws < np.floor(p * 2**24)) & ~below_min
        index = lo + up
        overflow = (a > v[-1]) | (index == v.size - 1)
        return self._finish(x, index, overflow, saturate)


REFERENCES = {}


def reference(fmt):
    if fmt not in REFERENCES:
        REFERENCES[fmt] = Reference(fmt)
    return REFERENCES[fmt]


# ---- inputs ------------------------------------------------------------------------------------
def all_16_bit(dtype):
    return torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)


def random_float32_bits(n, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(-(2**31), 2**31, (n,), generator=generator, dtype=torch.int64).to(torch.int32).view(torch.float32)


def in_range_float32(fmt, n, seed):
    """Random float32 whose exponent lies within (or just outside) the format's range."""
    generator = torch.Generator().manual_seed(seed)
    lowest = int(np.floor(np.log2(reference(fmt).values[1 if fmt.has_zero else 0]))) - 2
    highest = int(np.floor(np.log2(reference(fmt).values[-1]))) + 1
    exponent = torch.randint(max(lowest, -126) + 127, min(highest, 127) + 128, (n,), generator=generator)
    mantissa = torch.randint(0, 2**23, (n,), generator=generator)
    sign = torch.randint(0, 2, (n,), generator=generator) << 31
    return (sign | (exponent << 23) | mantissa).to(torch.int32).view(torch.float32)


def boundaries(fmt, dtype=np.float32):
    """Every value and midpoint, their neighbours in ``dtype``, specials, and their negatives."""
    v = reference(fmt).values
    points = np.concatenate([v, (v[:-1] + v[1:]) / 2, [0.0, np.inf, np.nan]])
    with np.errstate(over="ignore"):
        points = points.astype(dtype)
    points = np.concatenate([points, np.nextafter(points, dtype(np.inf)), np.nextafter(points, dtype(-np.inf))])
    extremes = np.array([np.finfo(dtype).max, np.finfo(dtype).smallest_subnormal, np.finfo(dtype).tiny], dtype)
    with np.errstate(over="ignore"):
        powers = np.exp2(np.arange(-150, 129, dtype=np.float64)).astype(dtype)
    points = np.concatenate([points, extremes, powers])
    return torch.from_numpy(np.concatenate([points, -points]))


INPUT_SETS = ["float16-all", "bfloat16-all", "float32-random-bits", "float32-in-range", "float32-boundaries"]


def make_inputs(name, fmt):
    if name == "float16-all":
        return all_16_bit(torch.float16)
    if name == "bfloat16-all":
        return all_16_bit(torch.bfloat16)
    if name == "float32-random-bits":
        return random_float32_bits(1_000_000, seed=1)
    if name == "float32-in-range":
        return in_range_float32(fmt, 200_000, seed=2)
    return boundaries(fmt)


def as_float64(x):
    return x.double().numpy()


# ---- nearest rounding against the reference ----------------------------------------------------
@pytest.mark.parametrize("inputs", INPUT_SETS)
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_encode_matches_reference(fmt, inputs):
    # CPU's eager route (FP8: ATen's cast; FP6/FP4: one float add) and the bit-level one (what
    # compiled CPU code runs).
    x = make_inputs(inputs, fmt)
    for saturate in (True, False):
        expected = reference(fmt).nearest(as_float64(x), saturate)
        for eager_route in (True, False):
            with mock.patch.object(fpx.convert, "_conversion_pays_off", lambda device, on=eager_route: on), \
                    mock.patch.object(fpx.convert, "_float_add_pays_off", lambda device, on=eager_route: on):
                actual = encode(x, fmt, saturate=saturate).numpy()
            bad = np.flatnonzero(actual != expected)
            assert bad.size == 0, (
                f"{bad.size} wrong codes, saturate={saturate}, eager route={eager_route}; first: "
                f"x={x[bad[0]].item()!r} -> {actual[bad[0]]:#x}, expected {expected[bad[0]]:#x}"
            )


@pytest.mark.parametrize("fmt, route", [(E4M3, "_encode_by_conversion"), (E2M1, "_encode_by_float_add")], ids=["E4M3", "E2M1"])
def test_cpu_eager_rounds_by_its_route_and_compiled_bit_by_bit(fmt, route):
    x = torch.tensor([1.0, 300.0, -0.3, float("nan")])
    with mock.patch.object(fpx.convert, route, wraps=getattr(fpx.convert, route)) as eager_route:
        eager = encode(x, fmt)
        torch._dynamo.reset()
        compiled = torch.compile(lambda t: encode(t, fmt), fullgraph=True)(x)
    assert eager_route.call_count == 1 and torch.equal(eager, compiled)
    torch._dynamo.reset()


def conversion_everywhere():
    """E4M3 / E5M2 round through torch's float8 casts (by default only on CUDA devices with a
    conversion instruction)."""
    return route_everywhere("_conversion_pays_off", "_encode_by_conversion")


def float_add_everywhere():
    """FP6/FP4 round by _encode_by_float_add (by default only on CUDA)."""
    return route_everywhere("_float_add_pays_off", "_encode_by_float_add")


@pytest.mark.parametrize("cast_saturates", ["as probed", "no"])
@pytest.mark.parametrize("inputs", INPUT_SETS)
@pytest.mark.parametrize("fmt", [E4M3, E5M2], ids=["E4M3", "E5M2"])
def test_encode_by_conversion_matches_reference(fmt, inputs, cast_saturates, monkeypatch):
    # The cast rounds; overflow, inf, NaN and signs are set after it: every rule of the table.
    # Where torch's cast saturates (E4M3 on torch >= 2.12) only the sign is set after it
    # when saturating; "no" runs every step whatever this torch's cast does.
    if cast_saturates == "no":
        monkeypatch.setattr(fpx.convert, "_float8_cast_saturates", lambda float8: False)
    x = make_inputs(inputs, fmt)
    for saturate in (True, False):
        expected = reference(fmt).nearest(as_float64(x), saturate)
        with conversion_everywhere() as calls:
            actual = encode(x, fmt, saturate=saturate).numpy()
            rounded = round_to(x, fmt, saturate=saturate)
        assert len(calls) == 2
        bad = np.flatnonzero(actual != expected)
        assert bad.size == 0, f"{bad.size} wrong codes, saturate={saturate}; first: x={x[bad[0]].item()!r}"
        assert torch.equal(rounded.view(-1).view(torch.uint8), decode(torch.from_numpy(expected), fmt, x.dtype).view(-1).view(torch.uint8))


def test_encode_by_conversion_only_where_it_applies():
    x = torch.tensor([1.0, 300.0, float("nan")])
    with conversion_everywhere() as calls:
        encode(x.double(), E4M3)  # float64: rounded from its own significand, never cast
        encode(x, E4M3, rounding="stochastic")
        encode(x, E2M1)  # no float8 dtype
        encode(x, exmy(4, 3, special="ieee"))  # E4M3 fields but IEEE specials: not e4m3fn
        assert len(calls) == 0
        encode(x, exmy(4, 3, special="fn"))  # equal fields, whatever the name
        assert len(calls) == 1


FLOAT_ADD_FORMATS = [f for f in FORMATS if not (f.has_inf or f.has_nan) and f.signed]


@pytest.mark.parametrize("inputs", INPUT_SETS)
@pytest.mark.parametrize("fmt", FLOAT_ADD_FORMATS, ids=[f"{f.name}-{f.special}" for f in FLOAT_ADD_FORMATS])
def test_encode_by_float_add_matches_reference(fmt, inputs):
    # The CUDA path of formats that always saturate, run on CPU: every rule of the table.
    x = make_inputs(inputs, fmt)
    expected = reference(fmt).nearest(as_float64(x), True)
    with float_add_everywhere() as calls:
        actual = encode(x, fmt).numpy()
        compiled = torch.compile(lambda t: encode(t, fmt), fullgraph=True, dynamic=False)(x).numpy()
    assert len(calls) == (2 if x.dtype != torch.float64 else 0)
    for codes in (actual, compiled):
        bad = np.flatnonzero(codes != expected)
        assert bad.size == 0, f"{bad.size} wrong codes; first: x={x[bad[0]].item()!r}"
    torch._dynamo.reset()


def test_encode_by_float_add_only_where_it_applies():
    x = torch.tensor([0.3, -2.5, 7.0, float("nan"), -0.0])
    with float_add_everywhere() as calls:
        for fmt in (E2M1, E2M3, E3M2):
            for dtype in (torch.float32, torch.bfloat16, torch.float16):
                encode(x.to(dtype), fmt)
        assert len(calls) == 9
        encode(x.double(), E2M1)  # float64: rounded from its own significand
        encode(x, E2M1, rounding="stochastic")
        encode(x, E4M3)  # NaN codes
        encode(x, E8M0)  # no sign, no zero
        encode(x, exmy(3, 2, special="ieee"))  # inf codes
        assert len(calls) == 9
        encode(x, exmy(3, 4))  # a finite format of 8 bits
        assert calls[-1][1] == exmy(3, 4)
    encode(x, E2M1)  # on CPU by default: the bit-level path
    assert len(calls) == 10


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_encode_float64_is_rounded_once(fmt):
    # float64 neighbours of every value and midpoint: float32 would round them onto the midpoint.
    x64 = boundaries(fmt, np.float64)
    generator = torch.Generator().manual_seed(3)
    x32 = in_range_float32(fmt, 100_000, seed=4).double()
    jitter = torch.randint(-(2**29), 2**29, x32.shape, generator=generator, dtype=torch.int64)
    x = torch.cat([x64, (x32.view(torch.int64) + jitter).view(torch.float64)])
    for saturate in (True, False):
        expected = reference(fmt).nearest(x.numpy(), saturate)
        assert np.array_equal(encode(x, fmt, saturate=saturate).numpy(), expected)


def test_float64_double_rounding_case():
    x = torch.tensor([1.0625 + 2.0**-40, 1.0625, -(1.0625 + 2.0**-40)], dtype=torch.float64)
    assert encode(x, E4M3).tolist() == [0x39, 0x38, 0xB9]
    assert encode(x.float(), E4M3).tolist() == [0x38, 0x38, 0xB8]  # the same value rounded in float32
    assert round_to(x, E4M3).tolist() == [1.125, 1.0, -1.125]


def values_of(codes, fmt):
    return decode(torch.tensor(codes, dtype=torch.uint8), fmt).tolist()


def test_pinned_ties_e2m1():
    x = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.25, -5.0])
    assert round_to(x, E2M1).tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, -0.0, -4.0]


def test_pinned_overflow_e4m3():
    above = float(np.nextafter(np.float32(464), np.float32(np.inf)))
    x = torch.tensor([448.0, 464.0, above, 1e30, float("inf"), -464.0, -above])
    assert encode(x, E4M3).tolist() == [0x7E, 0x7E, 0x7E, 0x7E, 0x7E, 0xFE, 0xFE]
    assert encode(x, E4M3, saturate=False).tolist() == [0x7E, 0x7E, 0x7F, 0x7F, 0x7F, 0xFE, 0xFF]
    assert values_of([0x7E], E4M3) == [448.0]


def test_pinned_overflow_e5m2():
    below = float(np.nextafter(np.float32(61440), np.float32(0)))
    x = torch.tensor([57344.0, below, 61440.0, float("inf"), -61440.0])
    assert encode(x, E5M2).tolist() == [0x7B, 0x7B, 0x7B, 0x7B, 0xFB]
    assert encode(x, E5M2, saturate=False).tolist() == [0x7B, 0x7B, 0x7C, 0x7C, 0xFC]


def test_pinned_specials():
    x = torch.tensor([-0.0, float("nan"), -float("nan"), 1e-30, -1e-30])
    assert encode(x, E4M3).tolist() == [0x80, 0x7F, 0xFF, 0x00, 0x80]
    assert encode(x, E5M2).tolist() == [0x80, 0x7F, 0xFF, 0x00, 0x80]
    assert encode(x, E2M1).tolist() == [0x8, 0x7, 0x7, 0x0, 0x8]  # NaN -> +max (no NaN in FP4)
    assert encode(x, E3M2).tolist() == [0x20, 0x1F, 0x1F, 0x00, 0x20]
    assert encode(x, E2M3, saturate=False).tolist() == [0x20, 0x1F, 0x1F, 0x00, 0x20]
    assert encode(x, E8M0).tolist() == [0x00, 0xFF, 0xFF, 27, 27]  # 1e-30 is nearest 2^-100
    big = torch.tensor([2.0**127, 1.5 * 2.0**127, float("inf"), -float("inf"), 3.0, 1.5 * 2.0**-127])
    assert encode(big, E8M0).tolist() == [0xFE, 0xFE, 0xFE, 0xFE, 129, 1]
    assert encode(big, E8M0, saturate=False).tolist() == [0xFE, 0xFF, 0xFF, 0xFF, 129, 1]


def test_finite_formats_always_saturate():
    x = torch.tensor([1e9, -float("inf"), 7.0, 30.0])
    for fmt in (E2M1, E2M3, E3M2):
        assert torch.equal(encode(x, fmt, saturate=False), encode(x, fmt))
        assert round_to(x, fmt, saturate=False).abs().max().item() == fmt.max


# ---- torch's native float8 casts ---------------------------------------------------------------
def torch_e4m3fn_saturates() -> bool:
    """torch >= 2.12 saturates x.to(float8_e4m3fn); earlier versions gave NaN. Ask it."""
    return torch.tensor(1000.0).to(torch.float8_e4m3fn).view(torch.uint8).item() == 0x7E


def test_the_encode_asks_whether_torchs_float8_cast_saturates():
    assert fpx.convert._float8_cast_saturates(torch.float8_e4m3fn) == torch_e4m3fn_saturates()
    assert not fpx.convert._float8_cast_saturates(torch.float8_e5m2)  # E5M2's cast keeps inf


def native_inputs():
    return torch.cat([
        all_16_bit(torch.float16).float(),
        all_16_bit(torch.bfloat16).float(),
        random_float32_bits(300_000, seed=5),
        in_range_float32(E4M3, 100_000, seed=6),
        in_range_float32(E5M2, 100_000, seed=7),
        boundaries(E4M3),
        boundaries(E5M2),
        boundaries(E8M0),
    ])


@pytest.mark.parametrize(
    "fmt, dtype_name",
    [(E4M3, "float8_e4m3fn"), (E5M2, "float8_e5m2"), (E8M0, "float8_e8m0fnu")],
    ids=["E4M3", "E5M2", "E8M0"],
)
def test_encode_matches_torch_native_casts(fmt, dtype_name):
    dtype = getattr(torch, dtype_name, None)
    if dtype is None:
        pytest.skip(f"torch {torch.__version__} has no {dtype_name}")
    # torch's float8_e5m2 and float8_e8m0fnu casts never saturate; float8_e4m3fn depends on
    # the version (probed, not assumed).
    saturate = torch_e4m3fn_saturates() if fmt is E4M3 else False
    x = native_inputs()
    if fmt is E8M0:
        # torch rounds float32 subnormals in (2^-127, 1.5 * 2^-127) up to 2^-126, though 2^-127
        # is nearer (test_e8m0_float32_subnormals pins the right answer): compare the rest.
        x = x[~((x.abs() > 2.0**-127) & (x.abs() < 2.0**-126))]
    native = x.to(dtype).view(torch.uint8)
    ours = encode(x, fmt, saturate=saturate)
    bad = torch.nonzero(native != ours).flatten()
    assert bad.numel() == 0, f"x={x[bad[0]].item()!r}: torch {native[bad[0]].item():#x}, fpx {ours[bad[0]].item():#x}"
    assert torch.equal(ours.view(dtype).view(torch.uint8), native)


def test_e8m0_float32_subnormals():
    x = torch.tensor([2.0**-127, 1.0156 * 2.0**-127, 1.4999 * 2.0**-127, 1.5 * 2.0**-127, 1.6 * 2.0**-127, 2.0**-128])
    assert encode(x, E8M0).tolist() == [0, 0, 0, 1, 1, 0]
    assert round_to(x, E8M0).tolist() == [2.0**-127, 2.0**-127, 2.0**-127, 2.0**-126, 2.0**-126, 2.0**-127]


def test_e4m3_and_e5m2_codes_view_as_torch_float8_bit_exactly():
    x = boundaries(E4M3)
    codes = encode(x, E4M3)
    viewed = codes.view(torch.float8_e4m3fn)
    assert viewed.dtype == torch.float8_e4m3fn and torch.equal(viewed.view(torch.uint8), codes)
    finite = ~torch.isnan(decode(codes, E4M3))
    assert torch.equal(viewed.float()[finite], decode(codes, E4M3)[finite])
    codes = encode(boundaries(E5M2), E5M2, saturate=False)
    finite = ~torch.isnan(decode(codes, E5M2))
    assert torch.equal(codes.view(torch.float8_e5m2).float()[finite], decode(codes, E5M2)[finite])


# ---- stochastic rounding -----------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_stochastic_matches_reference_rule(fmt):
    x = torch.cat([boundaries(fmt), in_range_float32(fmt, 100_000, seed=8)])
    uniform = torch.rand(x.shape, generator=torch.Generator().manual_seed(9))
    # Draws exactly on the 2^-24 grid boundaries and 1 - 2^-24 exercise the comparison's edges.
    uniform[:1000] = torch.arange(1000) / 2**24
    uniform[1000:2000] = 1 - 2.0**-24
    assert_stochastic_matches_reference(x, fmt, uniform)


def assert_stochastic_matches_reference(x, fmt, uniform):
    """Both routes of stochastic rounding (CPU's eager one and CUDA's, by a float scaling where
    the format allows it, and the integer one compiled CPU code runs) against the reference,
    with the draws given as ``uniform`` and, where they lie on the 2^-24 grid, as the integer
    draws ``seed=`` takes from the hash (its hash replaced by these draws times 2^24)."""
    counts = uniform * 2**24
    on_grid = bool(((counts >= 0) & (counts < 2**24) & (counts == counts.floor())).all())
    for saturate in (True, False):
        expected = reference(fmt).stochastic(as_float64(x), uniform.double().numpy(), saturate)
        for by_float in (True, False):
            for given in ("uniform", "seed") if on_grid else ("uniform",):
                with mock.patch.object(fpx.convert, "_stochastic_by_float_pays_off", lambda device, on=by_float: on), \
                        mock.patch.object(fpx.convert, "_hashed_counts", lambda shape, seed, device=None: counts.to(torch.int32)):
                    draws = {"uniform": uniform} if given == "uniform" else {"seed": 0}
                    actual = encode(x, fmt, saturate=saturate, rounding="stochastic", **draws).numpy()
                bad = np.flatnonzero(actual != expected)
                assert bad.size == 0, (f"by float {by_float}, draws from {given}, saturate={saturate}: x={x[bad[0]].item()!r}, "
                                       f"u={uniform[bad[0]].item()!r}: {actual[bad[0]]:#x} != {expected[bad[0]]:#x}")


def edge_draws(shape, seed):
    """Random draws in [0, 1) with the comparison's edges among them: 0, 1 - 2^-24, and points
    of the 2^-24 grid."""
    uniform = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    uniform[0::7] = 0.0
    uniform[1::7] = 1 - 2.0**-24
    uniform[2::7] = torch.randint(0, 2**24, uniform[2::7].shape, generator=torch.Generator().manual_seed(seed + 1)) / 2**24
    return uniform


@pytest.mark.parametrize("inputs", [name for name in INPUT_SETS if name != "float32-boundaries"])
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_stochastic_matches_reference_rule_for_every_input_set(fmt, inputs):
    # every float16 and bfloat16 input, and float32 of any bits or in the format's range
    x = make_inputs(inputs, fmt)
    assert_stochastic_matches_reference(x, fmt, edge_draws(x.shape, seed=10))


def test_stochastic_with_seven_mantissa_bits_matches_reference_rule():
    # an unsigned E1M7: steps * 2^24 reach 2^32, past the float scaling's int32 sum, so these
    # take the integer rounding whichever route is asked for
    fmt = fpx.FloatFormat("E1M7", exponent_bits=1, mantissa_bits=7, bias=1, signed=False)
    x = torch.cat([boundaries(fmt), in_range_float32(fmt, 20_000, seed=3).abs()])
    assert_stochastic_matches_reference(x, fmt, edge_draws(x.shape, seed=4))


@pytest.mark.parametrize("fmt", [E4M3, E2M1, E8M0], ids=["E4M3", "E2M1", "E8M0"])
def test_stochastic_draws_outside_0_1_count_as_0_below_and_never_up_above(fmt):
    # a negative draw rounds as 0 (up wherever x is not exact), one of 1 or more, or NaN, down
    x = boundaries(fmt)
    x = x[torch.isfinite(x)]
    n = x.numel()
    up = reference(fmt).stochastic(as_float64(x), np.zeros(n), True)
    down = reference(fmt).stochastic(as_float64(x), np.full(n, 1 - 2.0**-24), True)
    for draw, expected in [(-0.5, up), (-float("inf"), up), (1.0, down), (7.0, down), (float("inf"), down), (float("nan"), down)]:
        for by_float in (True, False):
            with mock.patch.object(fpx.convert, "_stochastic_by_float_pays_off", lambda device, on=by_float: on):
                actual = encode(x, fmt, rounding="stochastic", uniform=torch.full_like(x, draw)).numpy()
            assert np.array_equal(actual, expected), (draw, by_float)


def test_stochastic_rounds_in_float_arithmetic_where_it_applies():
    x = torch.tensor([1.1, 300.0, -0.3, float("nan")])
    u = torch.full_like(x, 0.25)
    with mock.patch.object(fpx.convert, "_stochastic_magnitude_by_float",
                           wraps=fpx.convert._stochastic_magnitude_by_float) as by_float:
        eager = encode(x, E4M3, rounding="stochastic", uniform=u)
        assert by_float.call_count == 1  # CPU eager
        encode(x.double(), E4M3, rounding="stochastic", uniform=u)  # float64: its own significand
        encode(x, E8M0, rounding="stochastic", uniform=u)  # no zero, no mantissa
        encode(x, exmy(2, 0), rounding="stochastic", uniform=u)  # no mantissa
        encode(x, E4M3)  # nearest
        assert by_float.call_count == 1
        torch._dynamo.reset()
        compiled = torch.compile(lambda t, v: encode(t, E4M3, rounding="stochastic", uniform=v), fullgraph=True)(x, u)
        assert by_float.call_count == 1  # compiled on CPU: the integer rounding
    assert torch.equal(eager, compiled)
    torch._dynamo.reset()


def test_stochastic_rounding_is_unbiased():
    """Mean of 4096 draws for 192 values in range: each within 5 sigma, all together within 3."""
    generator = torch.Generator().manual_seed(10)
    samples = 4096
    z_scores = []
    for fmt in (E4M3, E5M2, E2M1, E3M2):
        x = in_range_float32(fmt, 48, seed=11)
        x = x[x.abs() < fmt.max]
        rounded = round_to(x.expand(samples, -1), fmt, rounding="stochastic", generator=generator)
        z_scores.append(z_scores_of_means(x, rounded, fmt))
    assert_unbiased(np.concatenate(z_scores))


def z_scores_of_means(x, rounded, fmt):
    """(mean of ``rounded``'s rows - x) / sigma per value: ``rounded`` holds samples (rows) of
    x stochastically rounded, each value up to the next in the format's table with probability
    p (the reference's neighbours), so the mean's sigma is gap * sqrt(p (1 - p) / samples)."""
    samples = rounded.shape[0]
    ref = reference(fmt)
    a = x.abs().double().numpy()
    lo = ref.values[np.searchsorted(ref.values, a, side="right") - 1]
    hi = ref.values[np.searchsorted(ref.values, a, side="right")]
    p = (a - lo) / (hi - lo)
    sigma = (hi - lo) * np.sqrt(np.maximum(p * (1 - p), 1e-12) / samples)
    return (rounded.double().mean(0).numpy() - x.double().numpy()) / sigma


def assert_unbiased(z):
    """Each mean within 5 sigma, all together within 3."""
    assert np.abs(z).max() < 5
    assert abs(z.sum()) / np.sqrt(z.size) < 3


def test_stochastic_rounding_is_reproducible():
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(12)) * 10
    first = encode(x, E2M1, rounding="stochastic", generator=torch.Generator().manual_seed(0))
    again = encode(x, E2M1, rounding="stochastic", generator=torch.Generator().manual_seed(0))
    other = encode(x, E2M1, rounding="stochastic", generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and not torch.equal(first, other)
    torch.manual_seed(5)
    global_rng = encode(x, E2M1, rounding="stochastic")
    torch.manual_seed(5)
    assert torch.equal(encode(x, E2M1, rounding="stochastic"), global_rng)


def test_compiled_stochastic_rounding_hashes_one_global_seed_per_call():
    """Compiled without generator/uniform/seed: one seed per call from the global RNG
    (``torch.randint(2**62)``), the codes of ``seed=`` that seed; eager keeps ``rand_like``."""
    x = torch.randn(3000, generator=torch.Generator().manual_seed(13)) * 10
    # dynamo's graph, run eagerly: its randint draws what eager code draws after manual_seed
    recorder = torch._dynamo.testing.EagerAndRecordGraphs()
    fn = torch.compile(lambda x: encode(x, E4M3, rounding="stochastic"), backend=recorder, fullgraph=True)
    for rng_seed in (0, 7):
        torch.manual_seed(rng_seed)
        got = fn(x)
        torch.manual_seed(rng_seed)
        seed = torch.randint(2**62, ())
        assert torch.equal(got, encode(x, E4M3, rounding="stochastic", seed=seed))
    assert len(recorder.graphs) == 1 and "randint" in recorder.graphs[0].code and "rand_like" not in recorder.graphs[0].code
    # eager: rand_like's draws, as before
    torch.manual_seed(3)
    eager = encode(x, E4M3, rounding="stochastic")
    torch.manual_seed(3)
    assert torch.equal(eager, encode(x, E4M3, rounding="stochastic", uniform=torch.rand_like(x)))


def test_compiled_stochastic_rounding_past_the_hash_counters_draws_rand_like(monkeypatch):
    # more elements than fpx.draws' 32-bit counters (the bound lowered here): Philox per element
    monkeypatch.setattr(fpx.draws, "_MAX_ELEMENTS", 100)
    recorder = torch._dynamo.testing.EagerAndRecordGraphs()
    fn = torch.compile(lambda x: round_to(x, E4M3, rounding="stochastic"), backend=recorder, fullgraph=True)
    fn(torch.randn(101))
    assert len(recorder.graphs) == 1 and "rand_like" in recorder.graphs[0].code and "randint" not in recorder.graphs[0].code
    torch._dynamo.reset()


def test_compiled_stochastic_rounding_is_unbiased_and_reproducible():
    """Inductor-compiled, draws from the global RNG: reproducible after torch.manual_seed, new
    draws on each call, each result a neighbour, and the mean over calls within 5 sigma."""
    fmt = E4M3
    x = in_range_float32(fmt, 64, seed=14)
    x = x[x.abs() < fmt.max]
    samples = 2048
    fn = torch.compile(lambda x: round_to(x, fmt, rounding="stochastic"), fullgraph=True)
    torch.manual_seed(21)
    first = fn(x.expand(samples, -1).contiguous())
    second = fn(x.expand(samples, -1).contiguous())
    torch.manual_seed(21)
    assert torch.equal(fn(x.expand(samples, -1).contiguous()), first)
    assert not torch.equal(first, second)
    down = round_to(x, fmt, rounding="stochastic", uniform=torch.full_like(x, 1 - 2.0**-24))
    up = round_to(x, fmt, rounding="stochastic", uniform=torch.zeros_like(x))
    assert ((first == down) | (first == up)).all()
    assert_unbiased(z_scores_of_means(x, first, fmt))
    torch._dynamo.reset()


@pytest.mark.cuda
def test_compiled_stochastic_rounding_draws_anew_on_each_cuda_graph_replay():
    """Under CUDA graphs (``mode="reduce-overhead"``) each replay draws a new seed: a seed
    frozen into the graph would round every step alike."""
    x = (torch.randn(1 << 16, generator=torch.Generator().manual_seed(16)) * 10).cuda()
    fn = torch.compile(lambda x: encode(x, E4M3, rounding="stochastic"), fullgraph=True, mode="reduce-overhead")
    for _ in range(3):  # warm up and record: the calls below replay the graph
        fn(x)
    torch.manual_seed(17)
    calls = [fn(x).clone() for _ in range(4)]
    torch.manual_seed(17)
    again = [fn(x).clone() for _ in range(4)]
    assert all(not torch.equal(calls[i], calls[j]) for i in range(4) for j in range(i))
    assert all(torch.equal(a, b) for a, b in zip(calls, again))
    torch._dynamo.reset()


def test_stochastic_keeps_exact_values_and_uniform_broadcasts():
    values = decode(torch.arange(256, dtype=torch.uint8), E4M3)
    values = values[~torch.isnan(values)]
    for u in (0.0, 0.5, 1 - 2.0**-24):
        uniform = torch.tensor(u)  # broadcasts
        assert torch.equal(encode(values, E4M3, rounding="stochastic", uniform=uniform), encode(values, E4M3))


@given(st.lists(st.floats(-500, 500, width=32), min_size=1, max_size=50), st.integers(0, 2**32 - 1))
def test_stochastic_gives_a_neighbour(values, seed):
    x = torch.tensor(values, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    out = round_to(x, E4M3, rounding="stochastic", generator=generator)
    # The largest draw never rounds up, the smallest rounds up whenever p >= 2^-24.
    down = round_to(x, E4M3, rounding="stochastic", uniform=torch.full_like(x, 1 - 2.0**-24))
    up = round_to(x, E4M3, rounding="stochastic", uniform=torch.zeros_like(x))
    assert ((out == down) | (out == up)).all()
    assert (down.abs() <= x.abs()).all()
    assert ((up.abs() >= x.abs()) | (up.abs() == 448) | (x.abs() < 2.0**-33)).all()


# ---- properties --------------------------------------------------------------------------------
PROPERTY_FORMATS = [E4M3, E5M2, E3M2, E2M3, E2M1, exmy(3, 4), exmy(2, 0)]


@given(st.lists(st.floats(allow_nan=False, width=32), min_size=2, max_size=64), st.sampled_from(PROPERTY_FORMATS))
def test_monotonic(values, fmt):
    x = torch.tensor(sorted(values), dtype=torch.float32)
    out = round_to(x, fmt)
    assert (out[1:] >= out[:-1]).all()
    if fmt is E5M2:
        out = round_to(x, fmt, saturate=False)
        assert (out[1:] >= out[:-1]).all()


@given(st.lists(st.floats(min_value=0, allow_nan=False, width=32), min_size=2, max_size=64))
def test_monotonic_e8m0(values):
    x = torch.tensor(sorted(values), dtype=torch.float32)
    codes = encode(x, E8M0)
    assert (codes[1:] >= codes[:-1]).all()


@given(st.lists(st.floats(allow_nan=False, width=32), min_size=1, max_size=64), st.sampled_from(PROPERTY_FORMATS))
def test_sign_symmetry(values, fmt):
    x = torch.tensor(values, dtype=torch.float32)
    sign_bit = 1 << (fmt.bits - 1)
    for saturate in (True, False):
        assert torch.equal(encode(-x, fmt, saturate=saturate), encode(x, fmt, saturate=saturate) ^ sign_bit)
    assert torch.equal(round_to(-x, fmt), -round_to(x, fmt))


@given(st.lists(st.integers(0, 2**16 - 1), min_size=1, max_size=64), st.sampled_from(FORMATS))
def test_float16_bfloat16_float32_float64_agree(bit_patterns, fmt):
    bits = torch.tensor(bit_patterns, dtype=torch.int32).to(torch.int16)
    for dtype in (torch.float16, torch.bfloat16):
        x = bits.view(dtype)
        codes = encode(x, fmt)
        assert torch.equal(encode(x.double(), fmt), codes)
        assert torch.equal(encode(x, fmt, saturate=False), encode(x.double(), fmt, saturate=False))
        # torch's float16 -> float32 cast drops a NaN's sign (float64 keeps it): NaNs aside.
        number = ~torch.isnan(x)
        assert torch.equal(encode(x.float(), fmt)[number], codes[number])


# ---- round_to ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("fmt", [E4M3, E5M2, E3M2, E2M3, E2M1, E8M0], ids=lambda f: f.name)
def test_round_to_is_decode_of_encode(fmt, dtype):
    x = torch.cat([boundaries(fmt), in_range_float32(fmt, 50_000, seed=13)]).to(dtype)
    for saturate in (True, False):
        out = round_to(x, fmt, saturate=saturate)
        expected = decode(encode(x, fmt, saturate=saturate), fmt, dtype=dtype)
        assert out.dtype == dtype
        assert torch.equal(out.view(torch.uint8), expected.view(torch.uint8)) or torch.equal(
            torch.nan_to_num(out, nan=7.0), torch.nan_to_num(expected, nan=7.0)
        )
        uniform = torch.rand(x.shape, generator=torch.Generator().manual_seed(14))
        out = round_to(x, fmt, saturate=saturate, rounding="stochastic", uniform=uniform)
        codes = encode(x, fmt, saturate=saturate, rounding="stochastic", uniform=uniform)
        assert torch.equal(torch.nan_to_num(out, nan=7.0), torch.nan_to_num(decode(codes, fmt, dtype), nan=7.0))
        assert torch.equal(torch.signbit(out), torch.signbit(decode(codes, fmt, dtype)))


def test_shapes_and_strides():
    x = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(15)).transpose(0, 2)[::2]
    codes = encode(x, E4M3)
    assert codes.shape == x.shape and codes.dtype == torch.uint8
    assert torch.equal(codes, encode(x.contiguous(), E4M3))
    assert round_to(x, E5M2).shape == x.shape
    assert encode(torch.empty(0, 3), E2M1).shape == (0, 3)
    assert encode(torch.tensor(2.0), E2M1).shape == ()


# ---- errors ------------------------------------------------------------------------------------
def test_encode_errors():
    x = torch.ones(3)
    for fn in (encode, round_to):
        with pytest.raises(TypeError, match="x must be a floating-point tensor.*torch.int64"):
            fn(torch.arange(3), E4M3)
        with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
            fn([1.0], E4M3)
        with pytest.raises(TypeError, match="fmt must be a fpx.FloatFormat.*INT8"):
            fn(x, fpx.INT8)
        with pytest.raises(ValueError, match="rounding must be one of.*'up'"):
            fn(x, E4M3, rounding="up")
        with pytest.raises(ValueError, match="only used with rounding='stochastic', got generator"):
            fn(x, E4M3, generator=torch.Generator())
        with pytest.raises(ValueError, match="only used with rounding='stochastic', got seed"):
            fn(x, E4M3, seed=1)
        with pytest.raises(ValueError, match="pass one of generator, uniform and seed, not generator and uniform"):
            fn(x, E4M3, rounding="stochastic", generator=torch.Generator(), uniform=x)
        with pytest.raises(ValueError, match="not uniform and seed"):
            fn(x, E4M3, rounding="stochastic", uniform=x, seed=0)
        with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\), got -3"):
            fn(x, E4M3, rounding="stochastic", seed=-3)
        with pytest.raises(TypeError, match="seed must be an int or an integer tensor of one element, got float"):
            fn(x, E4M3, rounding="stochastic", seed=0.5)
        with pytest.raises(TypeError, match="generator must be a torch.Generator, got int"):
            fn(x, E4M3, rounding="stochastic", generator=0)
        with pytest.raises(TypeError, match="uniform must be a floating-point tensor"):
            fn(x, E4M3, rounding="stochastic", uniform=torch.ones(3, dtype=torch.int32))
        with pytest.raises(TypeError, match="saturate must be a bool, got 'no'"):
            fn(x, E4M3, saturate="no")
    with pytest.raises(TypeError, match="x must be a floating-point tensor.*torch.complex64"):
        encode(torch.ones(2, dtype=torch.complex64), E4M3)
    with pytest.raises(TypeError, match=r"got torch.float8_e4m3fn \(convert it with .float\(\) first"):
        encode(torch.ones(2).to(torch.float8_e4m3fn), E2M1)
    with pytest.raises(ValueError, match=r"uniform of shape \(3,\) does not broadcast to x's shape \(1,\)"):
        encode(torch.ones(1), E4M3, rounding="stochastic", uniform=torch.rand(3))


# ---- MX shared scale ---------------------------------------------------------------------------
def reference_mx_scale(amax: np.ndarray, fmt, rounding):
    with np.errstate(divide="ignore", invalid="ignore"):  # signalling NaNs among the inputs
        a = np.abs(amax).astype(np.float64)
        _, e = np.frexp(a)  # a = f * 2^e with f in [0.5, 1): floor(log2 a) = e - 1
        scale = e - 1 - fmt.emax
        if rounding == "ceil":
            scale = scale + (a / np.exp2(scale) > fmt.max)
    code = np.clip(scale + 127, 0, 254)
    code = np.where(a == 0, 0, code)
    return np.where(np.isfinite(a), code, 255).astype(np.uint8)


@pytest.mark.parametrize("rounding", ["floor", "ceil"])
@pytest.mark.parametrize("fmt", [E4M3, E5M2, E3M2, E2M3, E2M1], ids=lambda f: f.name)
def test_mx_scale_exponent(fmt, rounding):
    amax = torch.cat([all_16_bit(torch.bfloat16).float(), random_float32_bits(100_000, seed=16), boundaries(fmt)])
    expected = reference_mx_scale(amax.numpy(), fmt, rounding)
    assert np.array_equal(mx_scale_exponent(amax, fmt, rounding=rounding).numpy(), expected)
    assert np.array_equal(mx_scale_exponent(amax.double(), fmt, rounding=rounding).numpy(), expected)
    # The element values: floor keeps amax / X in [2^emax, 2^(emax+1)), ceil keeps it <= max.
    positive = amax[(amax > 2.0**-100) & (amax < 2.0**100)]
    ratio = positive / decode(mx_scale_exponent(positive, fmt, rounding=rounding), E8M0)
    if rounding == "floor":
        assert ((ratio >= 2.0**fmt.emax) & (ratio < 2.0 ** (fmt.emax + 1))).all()
    else:
        assert ((ratio <= fmt.max) & (ratio > fmt.max / 2)).all()


def test_mx_scale_exponent_specials_and_errors():
    amax = torch.tensor([0.0, -0.0, float("nan"), float("inf"), 1e-45, -6.0])
    assert mx_scale_exponent(amax, E2M1).tolist() == [0, 0, 255, 255, 0, 127]
    huge = torch.tensor([2.0**300], dtype=torch.float64)
    assert mx_scale_exponent(huge, E2M1).tolist() == [254]
    with pytest.raises(ValueError, match="rounding must be one of.*'nearest'"):
        mx_scale_exponent(amax, E2M1, rounding="nearest")
    with pytest.raises(TypeError, match="amax must be a floating-point tensor"):
        mx_scale_exponent(torch.tensor([1]), E2M1)
    with pytest.raises(TypeError, match="fmt must be a fpx.FloatFormat"):
        mx_scale_exponent(amax, fpx.INT4)


@pytest.mark.cuda
@pytest.mark.parametrize("fmt", [E4M3, E5M2, E2M1, E8M0], ids=["E4M3", "E5M2", "E2M1", "E8M0"])
def test_cuda_stochastic_matches_reference_eager_and_compiled(fmt):
    # both routes on CUDA (float arithmetic where the format allows it, CUDA's default; and
    # the integer one), every 16-bit input and float32 in the format's range, against the
    # reference on the CPU: edge draws given as uniform, the same draws as seed='s integer
    # draws (the hash replaced by them), and seed='s own hashed draws
    x = torch.cat([all_16_bit(torch.bfloat16).float(), all_16_bit(torch.float16).float(), in_range_float32(fmt, 100_000, seed=4)])
    uniform = edge_draws(x.shape, seed=6)
    counts = (uniform * 2**24).to(torch.int32).cuda()
    cases = [(uniform, {"uniform": uniform.cuda()}, fpx.convert._hashed_counts),
             (uniform, {"seed": torch.tensor(0, device="cuda")}, lambda shape, seed, device=None: counts),
             (fpx.hashed_uniform(x.shape, 77), {"seed": torch.tensor(77, device="cuda")}, fpx.convert._hashed_counts)]
    for draws, draw_args, hashed_counts in cases:
        expected = reference(fmt).stochastic(as_float64(x), draws.double().numpy(), True)
        for by_float in (True, False):
            with mock.patch.object(fpx.convert, "_stochastic_by_float_pays_off", lambda device, on=by_float: on), \
                    mock.patch.object(fpx.convert, "_hashed_counts", hashed_counts):
                torch._dynamo.reset()
                compiled = torch.compile(lambda t, kw: encode(t, fmt, rounding="stochastic", **kw), fullgraph=True, dynamic=False)
                for actual in (encode(x.cuda(), fmt, rounding="stochastic", **draw_args), compiled(x.cuda(), draw_args)):
                    bad = np.flatnonzero(actual.cpu().numpy() != expected)
                    assert bad.size == 0, f"by float {by_float}, {list(draw_args)}: {bad.size} wrong codes; first: x={x[bad[0]].item()!r}"
    torch._dynamo.reset()
