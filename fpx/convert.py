"""Correctly rounded conversion between ordinary floats and low-bit float codes.

``encode`` turns float32 / bfloat16 / float16 / float64 values into uint8 codes of any
:class:`~fpx.formats.FloatFormat`, ``decode`` turns codes back into floats (exactly), and
``round_to`` is ``decode(encode(x))`` in ``x``'s dtype. Each is branch-free integer arithmetic on
the bit pattern of the input, so ``torch.compile`` emits one pointwise kernel for each. (On CUDA
GPUs with FP8 conversion instructions, compute capability 8.9 and up, E4M3 and E5M2 round to
nearest through the instruction instead, with the same results: see _encode_by_conversion.
On CUDA, formats without inf or NaN codes, FP6 and FP4, round to nearest by one float add:
see _encode_by_float_add; and decode places the fields in a float32 and scales it once: see
_decode_by_float32_placement. Compiled on CPU, where a kernel of 16-bit floats converts integers
lane by lane, encode of bfloat16, round_to and decode to 16-bit floats work in float32 where the
format allows: see _small_formats_in_float_arithmetic.)

Every input is rounded once, from its exact value: float32, bfloat16 and float16 give the same
code for the same value, and float64 is rounded from its own 53-bit significand (never through
float32, which would round twice).

Semantics of ``encode`` (``decode`` is exact; ``round_to`` = decode of encode):

| input | E4M3 ("fn") | E5M2 ("ieee") | E3M2, E2M3, E2M1 ("finite") | E8M0 (scale) |
|---|---|---|---|---|
| finite | nearest, ties to even code, subnormals included | same | same | nearest power of two, ties up (the implicit bit is the lsb) |
| rounds above max (exponent unbounded, OFP8 5.2.1), saturate=True | +-max 0x7E/0xFE (464 -> 448, above 464 overflows) | +-max 0x7B/0xFB (61440 overflows) | +-max | 0xFE (2^127) |
| same, saturate=False | NaN 0x7F/0xFF | +-inf 0x7C/0xFC | +-max: always saturates, nothing else exists | NaN 0xFF |
| +-inf | as above max | as above max | +-max | as above max |
| NaN | NaN, input's sign: 0x7F/0xFF | NaN, input's sign: 0x7F/0xFF | +max 0x1F / 0x7 (policy: no NaN code; sign ignored) | 0xFF |
| -0.0, negatives rounding to 0 | -0 0x80 | -0 0x80 | -0 0x20 / 0x8 | 0x00 |
| sign | kept | kept | kept | dropped: encodes abs(x) (no sign bit) |
| below the smallest value | rounds to +-0 or +-min subnormal | same | same | 0x00 (2^-127; no zero) |

Native agreement: E5M2 and E8M0 with ``saturate=False`` equal torch's ``x.to(torch.float8_e5m2)``
and ``x.to(torch.float8_e8m0fnu)`` (bar torch's rounding of float32 subnormals to E8M0), E4M3 with
``saturate=True`` equals ``x.to(torch.float8_e4m3fn)`` on torch 2.13 (on 2.11 and earlier, which
gave NaN, ``saturate=False`` does).

``rounding="stochastic"`` rounds abs(x) up to the next value with probability ``p`` = (distance to
the value below) / (gap between the two), using a uniform draw ``u`` in [0, 1): up iff
``floor(u * 2^24) < floor(p * 2^24)``. So E[decode(encode(x))] = x to within 2^-24 of the gap
for every x inside the range (an exact value is never moved); beyond max the overflow rule
above applies. Draws come from ``torch.rand(generator=generator)`` or from the ``uniform``
argument (float32 in [0, 1), broadcastable to ``x``; a draw below 0 counts as 0, one of 1 or
more or NaN never rounds up), which makes results identical in eager and compiled code.
(Compiled code without ``generator`` draws one seed per call from the global RNG and hashes it
with each element's position, as ``seed=`` does: reproducible after ``torch.manual_seed``, but
not the same draws as eager, whose ``torch.rand_like`` is a pass of its own; past 2^32 elements,
``torch.rand_like`` in the kernel.) ``uniform=fpx.hashed_uniform(x.shape,
seed, device=x.device)``, or ``seed=seed`` (the same codes, cheaper still: the hash's integer
draws are compared as integers), hashes each element's position with a seed instead
(``fpx.draws``): the same draws on every device, eager or compiled, and the cheapest compiled
(no Philox).

The MX shared scale (OCP MX v1.0, section 6.3) is :func:`mx_scale_exponent`.

>>> import torch
>>> from fpx import E4M3, E2M1
>>> encode(torch.tensor([1.0, 464.0, 500.0, -0.0]), E4M3).tolist()
[56, 126, 126, 128]
>>> round_to(torch.tensor([0.25, 0.75, 1.25, 2.5, 5.0, 7.0]), E2M1).tolist()
[0.0, 1.0, 1.0, 2.0, 4.0, 6.0]
"""

from __future__ import annotations

import functools
import math
import sys
from typing import NamedTuple

import torch

from . import draws
from .draws import _hashed_counts
from .formats import E2M1, E2M3, E3M2, E4M3, E5M2, E8M0, INT_FORMATS, UINT_FORMATS, FloatFormat, IntFormat

ROUNDINGS = ("nearest", "stochastic")
MX_SCALE_ROUNDINGS = ("floor", "ceil")

# (integer dtype of the same width, stored significand bits P, exponent bias) of the two
# floating dtypes computed on directly; narrower floats are upcast to float32 exactly first.
_IEEE = {torch.float32: (torch.int32, 23, 127), torch.float64: (torch.int64, 52, 1023)}
_INPUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)

# Stochastic rounding compares draws at this resolution (torch.rand's float32 resolution).
_RANDOM_BITS = 24

# float32's sign bit as an int32 (bit 31 set).
_INT32_SIGN_BIT = -(1 << 31)


# ---- formats as compile-time constants ---------------------------------------------------------
# torch.compile(dynamic=True) turns the int fields of a format object that it reaches through a
# local variable or a closure (not a global) into symbolic ints. Those would reach Python shifts
# (``1 << fmt.mantissa_bits``; torch 2.11's dynamo crashes on ``1 << SymInt``), scalar kernel
# arguments and guards, while the format must shape the kernel as constants. So every public
# entry point swaps ``fmt`` for an equal object whose fields are plain ints.
_KNOWN_FORMATS = {
    _fmt_key: _fmt
    for _fmt in (E4M3, E5M2, E3M2, E2M3, E2M1, E8M0, *INT_FORMATS, *UINT_FORMATS)
    for _fmt_key in [
        ("int", _fmt.name, _fmt.bits, _fmt.signed)
        if isinstance(_fmt, IntFormat)
        else ("float", _fmt.name, _fmt.exponent_bits, _fmt.mantissa_bits, _fmt.bias, _fmt.special, _fmt.signed, _fmt.has_zero)
    ]
}


def _constant_int(value, candidates) -> int:
    """The candidate equal to ``value``: a plain int even when ``value`` is a symbolic int.

    ``value == c`` on a symbolic int makes dynamo guard on the answer and hand back a plain
    bool (``int(symint)`` does not specialize in torch 2.11's dynamo; and under dynamo a
    symbolic int passes ``type(v) is int``, so it cannot be told from a constant).
    """
    for candidate in candidates:
        if value == candidate:
            return candidate
    raise ValueError(f"format field {value} is outside the supported range")


def _constant_format(fmt):
    """``fmt`` (a FloatFormat or IntFormat) with plain-int fields, equal to it (see above).

    In eager mode this is ``fmt`` itself; anything that is not a format is returned unchanged
    for the caller's type check.
    """
    if not torch.compiler.is_compiling():
        return fmt
    if isinstance(fmt, IntFormat):
        key = ("int", fmt.name, _constant_int(fmt.bits, range(1, 9)), fmt.signed)
    elif isinstance(fmt, FloatFormat):
        exponent_bits = _constant_int(fmt.exponent_bits, range(1, 9))
        mantissa_bits = _constant_int(fmt.mantissa_bits, range(0, 8))
        # The default bias first (one guard), then every bias that _fits_float32 can accept.
        bias = _constant_int(fmt.bias, [(1 << (exponent_bits - 1)) - 1, *range(-128, 160)])
        key = ("float", fmt.name, exponent_bits, mantissa_bits, bias, fmt.special, fmt.signed, fmt.has_zero)
    else:
        return fmt
    # The module's own formats come from a global (dynamo keeps their fields constant); any
    # other is rebuilt from the constants.
    known = _KNOWN_FORMATS.get(key)
    if known is not None:
        return known
    return IntFormat(*key[1:]) if key[0] == "int" else FloatFormat(*key[1:])


# ---- argument checks (pure Python on constants: free under torch.compile) --------------------
def _check_format(fmt) -> FloatFormat:
    fmt = _constant_format(fmt)
    if not isinstance(fmt, FloatFormat):
        raise TypeError(f"fmt must be a fpx.FloatFormat (E4M3, E5M2, E2M1, exmy(...), ...), got {fmt!r}")
    if not _fits_float32(fmt):
        raise ValueError(f"fmt={fmt!r} (bias {fmt.bias}) has values outside float32's exact range")
    return fmt


def _fits_float32(fmt: FloatFormat) -> bool:
    # decode builds float32 bit patterns: every value must be exact in float32, and subnormal
    # codes are converted through a normal float32 (see _code_to_float32).
    smallest = fmt.min_subnormal if fmt.has_subnormals else fmt.min_normal
    return fmt.max < 2.0**128 and smallest >= 2.0**-149 and (not fmt.has_subnormals or smallest >= 2.0**-126)


def _check_float_tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _INPUT_DTYPES:
        hint = " (convert it with .float() first: exact)" if x.dtype.is_floating_point else ""
        raise TypeError(f"{name} must be a floating-point tensor (float32, bfloat16, float16, float64), got {x.dtype}{hint}")
    return x


def _check_rounding(rounding, generator, uniform, seed, x: torch.Tensor) -> None:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    given = [name for name, value in (("generator", generator), ("uniform", uniform), ("seed", seed)) if value is not None]
    if rounding == "nearest" and given:
        raise ValueError(f"generator, uniform and seed are only used with rounding='stochastic', got {given[0]}")
    if len(given) > 1:
        raise ValueError(f"pass one of generator, uniform and seed, not {' and '.join(given)}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if uniform is not None and not (isinstance(uniform, torch.Tensor) and uniform.dtype.is_floating_point):
        raise TypeError(f"uniform must be a floating-point tensor of draws in [0, 1), got {uniform!r}")
    if uniform is not None and not torch.compiler.is_compiling():
        try:
            fits = torch.broadcast_shapes(uniform.shape, x.shape) == x.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"uniform of shape {tuple(uniform.shape)} does not broadcast to x's shape {tuple(x.shape)}")


def _check_saturate(saturate) -> bool:
    if not isinstance(saturate, bool):
        raise TypeError(f"saturate must be a bool, got {saturate!r}")
    return saturate


# ---- float -> (sign, exponent, significand) ---------------------------------------------------
def _as_ieee(x: torch.Tensor) -> torch.Tensor:
    """x as float32 or float64; every narrower float converts to float32 exactly."""
    return x if x.dtype in _IEEE else x.to(torch.float32)


def _split(x: torch.Tensor, min_exponent: int):
    """Sign, special-value masks, and abs(x) = sig * 2**(exponent - P).

    ``sig`` is normalized, in [2**P, 2**(P+1)), for every finite nonzero x whose exponent can
    reach ``min_exponent`` (the caller's smallest exponent that matters); zero gives sig = 0.
    Subnormal inputs are normalized by converting their (integer) fraction field to float,
    which is exact, and reading its exponent: a leading-zero count without a clz op. When
    ``min_exponent`` lies above the input's subnormal range that step is skipped (it only
    matters for E8M0): a subnormal keeps exponent 1 - bias and sig = fraction, the same value.
    """
    int_dtype, p, bias = _IEEE[x.dtype]
    exponent_bits = 11 if p == 52 else 8
    bits = x.view(int_dtype)
    negative = bits < 0
    magnitude = bits & ((1 << (p + exponent_bits)) - 1)
    inf_bits = ((1 << exponent_bits) - 1) << p
    is_nan = magnitude > inf_bits
    is_inf = magnitude == inf_bits

    exponent_field = magnitude >> p
    fraction = magnitude & ((1 << p) - 1)
    normal = exponent_field != 0
    if min_exponent > 1 - bias:
        exponent = torch.clamp(exponent_field, min=1) - bias
        sig = fraction | (normal.to(int_dtype) << p)
    else:
        as_float = fraction.to(x.dtype).view(int_dtype)  # exact: fraction < 2**P
        sub_exponent = (as_float >> p) - (2 * bias - 1 + p)
        sub_sig = torch.where(fraction == 0, 0, (as_float & ((1 << p) - 1)) | (1 << p))
        exponent = torch.where(normal, exponent_field - bias, sub_exponent)
        sig = torch.where(normal, fraction | (1 << p), sub_sig)
    return negative, is_nan, is_inf, exponent, sig, p


def _min_exponent(fmt: FloatFormat) -> int:
    """Exponent of the format's smallest normal value (the bottom of its exponent range)."""
    return 1 - fmt.bias if fmt.has_subnormals else -fmt.bias


class _DrawCounts(NamedTuple):
    """Stochastic rounding's draws given as the integers r = u * 2^24 in [0, 2^24) (``seed=``'s,
    :func:`fpx.draws._hashed_counts`), where a ``uniform`` tensor gives u: the rounding compares
    them with its integer threshold as they are, with no scaling to [0, 1) and back (6 fewer
    instructions per element in the float rounding's CUDA kernel, below)."""

    counts: torch.Tensor


def _uniform_to_int(uniform, dtype: torch.dtype) -> torch.Tensor:
    """floor(u * 2**24) of draws u in [0, 1) as integers of ``dtype``; a draw outside [0, 1)
    counts as 0 below it and as 2^24 - 1 above it, a NaN draw as 2^24 - 1: never up, as every
    threshold is below 2^24 (and no float -> int conversion of a NaN, undefined in C++).
    :class:`_DrawCounts` are those integers already."""
    top = (1 << _RANDOM_BITS) - 1
    if isinstance(uniform, _DrawCounts):
        return uniform.counts.to(dtype)
    scaled = uniform.to(torch.float32) * float(1 << _RANDOM_BITS)
    scaled = torch.where(scaled < float(1 << _RANDOM_BITS), scaled, float(top))
    return torch.clamp(scaled, min=0).to(dtype)


def _round_magnitude(exponent, sig, p, fmt: FloatFormat, uniform):
    """Code of abs(x) with the exponent unbounded (may exceed max_code), as an integer tensor.

    The result's ulp is 2**(e - m) with e = max(exponent, emin), so ``s`` low bits of ``sig``
    fall below it. Codes are monotonic in value, and one formula covers subnormal and normal
    results (a carry out of the mantissa lands in the exponent field by itself).
    """
    m = fmt.mantissa_bits
    emin = _min_exponent(fmt)
    e = torch.clamp(exponent, min=emin)
    # Beyond p + 2 every significand rounds to 0 (nearest); clamping keeps shifts defined.
    s_exact = e - exponent + (p - m)
    s = torch.clamp(s_exact, max=p + 2)
    truncated = sig >> s
    if uniform is None:
        # Round to nearest, ties to even: add half an ulp minus one, plus the kept lsb.
        r = (sig + ((1 << (s - 1)) - 1) + (truncated & 1)) >> s
    else:
        # Round up with probability floor(p * 2**24) / 2**24, p = remainder / 2**s_exact
        # (remainder is all of sig once s_exact > p + 1).
        remainder = sig - (truncated << s)
        threshold = torch.where(
            s <= _RANDOM_BITS,
            remainder << torch.clamp(_RANDOM_BITS - s, min=0),
            remainder >> torch.clamp(s_exact - _RANDOM_BITS, min=0, max=p + 2),
        )
        r = truncated + (_uniform_to_int(uniform, sig.dtype) < threshold).to(sig.dtype)
    code = ((e + fmt.bias) << m) - (1 << m) + r
    if not fmt.has_zero:
        code = torch.clamp(code, min=0)  # below the smallest value: the smallest value
    return code


def _encode_int(x, fmt: FloatFormat, saturate: bool, uniform) -> torch.Tensor:
    """The codes as an integer tensor (int32 or int64), before narrowing to uint8."""
    float8 = _float8_dtype(fmt)
    if float8 is not None and uniform is None and x.dtype != torch.float64 and _conversion_pays_off(x.device):
        return _encode_by_conversion(x, fmt, saturate, float8)
    if uniform is None and x.dtype != torch.float64 and _rounds_by_float_add(fmt) and _float_add_pays_off(x.device):
        return _encode_by_float_add(x, fmt)
    if (uniform is not None and x.dtype != torch.float64 and _rounds_stochastically_by_float(fmt)
            and _stochastic_by_float_pays_off(x.device)):
        as_float32 = x.to(torch.float32)
        negative = as_float32.view(torch.int32) < 0
        size = as_float32.abs()
        is_nan = size != size
        # An inf's code here is that of float32's exponent 128, past every format's largest
        # code (their exponents stay below 128 in 8 bits): the overflow test catches it without
        # a test of its own (1-4 instructions per element on CUDA).
        is_inf = None if _code_of_float32_exponent_128(fmt) > fmt.max_code else size == float("inf")
        code = _stochastic_magnitude_by_float(size, fmt, uniform)
    else:
        negative, is_nan, is_inf, exponent, sig, p = _split(_as_ieee(x), _min_exponent(fmt))
        code = _round_magnitude(exponent, sig, p, fmt, uniform)
    # The float32 conversion's NaN may have lost x's sign: on CUDA; on CPU a float16's (the
    # scalar conversion), which only a format with NaN codes keeps (others encode NaN as +max).
    if x.dtype.itemsize < 4 and (_signs_from_bits(x.device) or (x.dtype == torch.float16 and fmt.has_nan)):
        negative = _sign_of(x)
    return _with_overflow_nan_and_sign(code, negative, is_nan, is_inf, fmt, saturate)


def _saturates(fmt: FloatFormat, saturate: bool) -> bool:
    """Whether a magnitude past max becomes max: asked for, or the format has no inf or NaN
    code to become (FP6 / FP4 always saturate)."""
    return saturate or not (fmt.has_inf or fmt.has_nan)


def _overflow_code(fmt: FloatFormat) -> int:
    """The magnitude code of a value past max without saturation: inf's, else NaN's."""
    return fmt.inf_code if fmt.has_inf else fmt.nan_code


def _with_overflow_nan_and_sign(code, negative, is_nan, is_inf, fmt: FloatFormat, saturate: bool) -> torch.Tensor:
    """The magnitude ``code`` (exponent unbounded) with the contract's overflow, inf, NaN and
    sign rules applied (the table of the module docstring). ``is_inf`` None: every inf's
    ``code`` is past the format's max code already."""
    overflow = code > fmt.max_code if is_inf is None else (code > fmt.max_code) | is_inf
    code = torch.where(overflow, fmt.max_code if _saturates(fmt, saturate) else _overflow_code(fmt), code)
    if fmt.has_nan:
        code = torch.where(is_nan, fmt.nan_code, code)
    if fmt.signed:
        code = code | (negative.to(code.dtype) << (fmt.bits - 1))
    if not fmt.has_nan:
        code = torch.where(is_nan, fmt.max_code, code)  # policy: NaN -> +max
    return code


# ---- stochastic rounding by a float scaling ------------------------------------------------------
# The integer rounding of _round_magnitude takes about 42 instructions per float32 element for
# sm_90a (benchmarks/sass_offline.py: variable shifts, clamps and selects), and bound the
# stochastic encode on an H200 once its draws cost a few (0.46x of clone with
# fpx.hashed_uniform's). The same rule by a float scaling and float arithmetic, every step
# exact: 27.0 (E4M3, float32 input, draws given) or 41.9 with fpx.hashed_uniform's (56.4
# before), counted offline; since the thirty-sixth session by one integer sum after the
# scaling, with no inf test of its own: 24.0, 37.25, and 31.25 with seed='s integer draws
# (_DrawCounts).
def _stochastic_by_float_pays_off(device: torch.device) -> bool:
    """Round stochastically by :func:`_stochastic_magnitude_by_float`: on CUDA, where it counts
    fewer instructions (above), and its float-arithmetic form of the thirty-fifth session ran
    E4M3 encode with hashed draws at 0.66x of clone from float32 against 0.47x, 0.40x from
    bfloat16 against 0.29x (H200, compiled, 64 MiB; predicted 0.62x / 0.39x); and on CPU
    outside ``torch.compile`` (fewer eager operations: 8 Mi float32 values to E4M3, 2 cores,
    547 -> 393 ms). Compiled on CPU the integer rounding stays: inductor's C++ kernel of that
    form ran at half its speed (its float <-> int32 views: 24.5 against 11.9 ms), and that of
    today's integer sum at the same speed (8 Mi float32 values, 4.6-5.1 ms with ``uniform``,
    6.8-7.1 with ``seed``, either route)."""
    if device.type == "cpu":
        return not torch.compiler.is_compiling()
    return device.type == "cuda"


def _rounds_stochastically_by_float(fmt: FloatFormat) -> bool:
    """Formats :func:`_stochastic_magnitude_by_float` handles: with zero, subnormals and a
    mantissa, so that a code is its binade's first code plus a step count; with at most 6
    mantissa bits, so that a magnitude's steps times 2^24 stay below 2^31 (an int32); and with
    every scale 2^(m - e + 24), e from the format's min normal exponent up to 128, a normal
    float32. The bound of 100 on m - emin (not float32's 127 - 24) keeps float32 subnormal
    inputs out of play: scaled by at most 2^124 they stay below 1/4, so their threshold is 0
    whether or not a GPU flushes them to zero."""
    m = fmt.mantissa_bits
    return fmt.has_zero and fmt.has_subnormals and 1 <= m <= 6 and m - _min_exponent(fmt) <= 100


def _stochastic_magnitude_by_float(size: torch.Tensor, fmt: FloatFormat, uniform) -> torch.Tensor:
    """:func:`_round_magnitude`'s stochastic code of the float32 magnitude ``size``, by one
    float scaling and one integer sum (codes past max, inf and NaN are left to the caller's
    masks).

    With e the magnitude's float32 exponent, at least the format's min normal exponent emin,
    ``steps = size * 2^(m - e)`` is below 2^(m + 1); its whole part is the count of steps below
    size, and T = floor(frac(steps) * 2^24) = floor(p * 2^24) is the rule's threshold. The
    scaling by 2^(m - e + 24) (a power of two built from bits) is exact, and its truncation to
    an integer is S = floor(steps * 2^24) = whole * 2^24 + T, below 2^(m + 25) <= 2^31. With
    d = 2^24 - 1 - r for the integer draw r in [0, 2^24), ``(S + d) >> 24``, read as unsigned,
    is whole + [T + d >= 2^24] = whole + [r < T]: the count with its stochastic step. The
    binade's first code, (e - emin) << m, is added. No float -> int conversion of an inf or
    NaN (undefined in C++): ``fmin`` puts them at the largest finite S, whose code (exponent
    128's binade) is past max too.
    """
    emin = _min_exponent(fmt)
    m = fmt.mantissa_bits
    exponent = torch.clamp((size.view(torch.int32) >> 23) - 127, min=emin)
    scaled = size * ((127 + m + _RANDOM_BITS - exponent) << 23).view(torch.float32)
    largest = float((1 << (m + 1 + _RANDOM_BITS)) - (1 << (m + 1)))  # (2^(m+1) - 2^(m-23)) * 2^24
    scaled = torch.fmin(scaled, scaled.new_full((), largest))
    total = scaled.to(torch.int32) + _draw_complements(uniform)
    count = (total >> _RANDOM_BITS) & ((1 << (32 - _RANDOM_BITS)) - 1)  # unsigned: below 2^32
    return count + ((exponent - emin) << m)


def _draw_complements(uniform) -> torch.Tensor:
    """2^24 - 1 - r for the integer draws r of :func:`_uniform_to_int`, as int32."""
    return ((1 << _RANDOM_BITS) - 1) - _uniform_to_int(uniform, torch.int32)


def _code_of_float32_exponent_128(fmt: FloatFormat) -> int:
    """The smallest code :func:`_stochastic_magnitude_by_float` gives a float32 of exponent 128
    (inf, NaN): its binade's first code, the step count being at least 0."""
    return (128 - _min_exponent(fmt)) << fmt.mantissa_bits


def _signs_from_bits(device: torch.device) -> bool:
    """Whether :func:`_sign_of` reads a 2-byte float's sign from its bits (a view as int16):
    everywhere but CPU. CUDA converts to float32 inside signbit too, and its conversion returns
    a NaN's sign as it likes, so there only the bits can be trusted. On CPU signbit keeps the
    sign. But on CPU encode reads the sign from the float32 the input converts to, whose bits
    it reads anyway, where that float32 keeps it: a bfloat16's (a shift: every sign kept) and,
    for formats without NaN codes (which encode a NaN as +max), a float16's (CPU's scalar
    float16 -> float32 conversion, which a compiled kernel's tail uses, drops a NaN's sign).
    signbit of a 2-byte float compiled to a scalar loop inside inductor's 32-lane kernels
    (8 Mi values, 2 cores: bfloat16 to E4M3 28.4 ms with it, 9.1 without; float32 input
    4.6-4.8; float16 to E4M3 stays at about 31)."""
    return device.type != "cpu"


def _sign_of(x: torch.Tensor) -> torch.Tensor:
    """The sign bit of x, read from x itself: a float16 -> float32 cast may drop a NaN's sign
    (see :func:`_signs_from_bits`)."""
    if not _signs_from_bits(x.device):
        if x.dtype.itemsize == 2 and _16_bit_floats_by_byte_pairs(x.device) and x.dim() > 0 and x.stride(-1) == 1:
            # The top bit of each value's high byte, loaded as a byte: signbit of a 2-byte
            # float converts it and compiles to a loop lane by lane (compiled encode of 8 Mi
            # float16 values to E4M3, 2 cores: 29-34 ms, 6-8 this way).
            return x.view(torch.uint8)[..., 1::2] >= 128
        return torch.signbit(x)
    return x.view({2: torch.int16, 4: torch.int32}[x.dtype.itemsize]) < 0


# ---- FP8 by the conversion instruction ---------------------------------------------------------
# E4M3 and E5M2 codes are torch's float8_e4m3fn and float8_e5m2 bit for bit. Hopper and Ada
# GPUs round to them in one instruction (cvt.rn.satfinite), against some 30 integer operations
# of the bit-level path, which ran bfloat16 and float16 input at 0.58-0.60x of clone() on an
# H100 (integer instructions issue at half the float rate there); through the instruction
# 0.98-1.00x (benchmarks/probe_convert.py). The instruction's handling of overflow, inf and NaN
# (saturating, and NaN signs as the hardware likes) is not the contract's, so those are set
# from the input after it; the rounding of finite values (to nearest, ties to even,
# subnormals included) is.
def _float8_dtype(fmt: FloatFormat):
    """torch's float8 dtype whose bits are fmt's codes, or None."""
    fields = (fmt.exponent_bits, fmt.mantissa_bits, fmt.bias, fmt.special, fmt.signed, fmt.has_zero)
    for known, dtype in ((E4M3, torch.float8_e4m3fn), (E5M2, torch.float8_e5m2)):
        if fields == (known.exponent_bits, known.mantissa_bits, known.bias, known.special, known.signed, known.has_zero):
            return dtype
    return None


def _conversion_pays_off(device: torch.device) -> bool:
    """Round to FP8 by conversion instruction: CUDA devices that have one (compute capability
    8.9 and up); and on CPU outside ``torch.compile``, where ATen's cast is one pass against
    some 30 eager operations of the bit-level path (2 cores, 16 Mi float32 values, two runs:
    encode to E4M3 570-646 -> 186-193 ms, ``round_to`` 1070-1167 -> 676-684, ``fake_quantize``
    with groups of 128 1217-1337 -> 777-816; bfloat16 to E5M2 636-662 -> 209). Compiled on CPU,
    inductor converts element by element: 11x slower than its bit-level kernel for float32
    input."""
    if device.type == "cpu":
        return not torch.compiler.is_compiling()
    return device.type == "cuda" and _cuda_has_float8_conversion(device.index)


@torch.compiler.assume_constant_result
def _cuda_has_float8_conversion(index) -> bool:
    return torch.cuda.get_device_capability(index) >= (8, 9)


def _overflow_bound(fmt: FloatFormat) -> tuple[float, bool]:
    """(b, inclusive): magnitudes above b (or at b when inclusive) round past max. b lies half
    an ulp above max, where ties go to the even code: up when max's code is odd."""
    half_ulp = 2.0 ** (fmt.emax - fmt.mantissa_bits - 1)
    return fmt.max + half_ulp, fmt.max_code % 2 == 1


@torch.compiler.assume_constant_result
def _float8_cast_saturates(float8: torch.dtype) -> bool:
    """Whether torch's cast to ``float8`` takes magnitudes past its max, inf included, to
    +-max: torch 2.13's float8_e4m3fn cast does, 2.11's gave NaN, and no float8_e5m2 cast does
    (it has inf). Asked of the CPU cast, whose conversion (c10's) CUDA's eager cast shares;
    compiled for CUDA the cast is Triton's, which saturates (``cvt.rn.satfinite``)."""
    return _cast_saturates(float8)


@functools.cache
def _cast_saturates(float8: torch.dtype) -> bool:
    """The probe behind :func:`_float8_cast_saturates`, once per dtype (eager, each encode
    would otherwise pay for a small cast of its own)."""
    largest = torch.finfo(float8).max
    probe = torch.tensor([largest * 1.0625, largest * 2, 1e30, float("inf"), -float("inf")])
    expected = torch.tensor([largest, largest, largest, largest, -largest])
    return torch.equal(probe.to(float8).float(), expected)


def _encode_by_conversion(x: torch.Tensor, fmt: FloatFormat, saturate: bool, float8: torch.dtype) -> torch.Tensor:
    """_encode_int of float32/bfloat16/float16 x for E4M3 or E5M2 (round to nearest): the
    conversion rounds, then overflow, inf and NaN are set as the contract says (float32
    comparisons: every bound is exact in it), and the sign from x's own bits.

    A NaN needs no step of its own where the format has one NaN magnitude ("fn": E4M3): any
    conversion returns a NaN code for it, whose magnitude is then the canonical one, and the
    comparisons with max are false for it. Without that step bfloat16 -> E4M3 counts 12.38
    instructions per element for sm_90a against 13.88 (float16 11.88 against 13.38, float32
    9.75 against 10.75; ``benchmarks/sass_offline.py encode``).

    Saturating, where torch's cast saturates too (:func:`_float8_cast_saturates`), the cast's
    magnitude is the contract's and only the sign is set (a NaN's, which the cast may drop):
    bfloat16 -> E4M3 then counts 8.75 instructions per element for sm_90a (float16 8.12,
    float32 6.12), and on CPU, eager, three passes over the data go (2 cores, 16 Mi values,
    torch 2.13, median of 7: float32 147 -> 105 ms, bfloat16 167 -> 111, float16 175 -> 119)."""
    magnitude = x.to(float8).view(torch.uint8).to(torch.int32) & fmt.magnitude_mask
    if not (saturate and fmt.special == "fn" and _float8_cast_saturates(float8)):
        magnitude = _overflow_and_nan_set(x, magnitude, fmt, saturate)
    return magnitude | (_sign_of(x).to(torch.int32) << (fmt.bits - 1))


def _overflow_and_nan_set(x: torch.Tensor, magnitude: torch.Tensor, fmt: FloatFormat, saturate: bool) -> torch.Tensor:
    """The cast's ``magnitude`` codes with the contract's codes where ``x`` overflows, is inf
    or (E5M2) NaN; see :func:`_encode_by_conversion`."""
    size = x.to(torch.float32).abs()
    at_least_max = size >= fmt.max  # inf included
    if saturate:
        magnitude = torch.where(at_least_max, fmt.max_code, magnitude)
    else:
        bound, inclusive = _overflow_bound(fmt)
        overflow = size >= bound if inclusive else size > bound
        magnitude = torch.where(overflow, _overflow_code(fmt), torch.where(at_least_max, fmt.max_code, magnitude))
    if fmt.special != "fn":  # E5M2's conversions may return any of its three NaN magnitudes
        magnitude = torch.where(size != size, fmt.nan_code, magnitude)
    return magnitude


# ---- FP6 / FP4 by one float add (CUDA) ---------------------------------------------------------
# The bit-level path takes about 30 integer instructions per element (29 for float32 input,
# counted for sm_90a by benchmarks/sass_offline.py), and on an H200 its E2M1 encode ran at the
# same GB/s as on an H100 (0.68x of the faster clone): bound by instruction issue. For formats
# that always saturate, nearest rounding is one float add: 16-17 instructions, most of them
# full-rate float ones.
def _float_add_pays_off(device: torch.device) -> bool:
    """Round FP6/FP4 by _encode_by_float_add: on CUDA, and on CPU outside ``torch.compile``
    (fewer eager operations: 16 Mi float32 values, 2 cores, E2M1 614-642 -> 350-376 ms, E3M2
    601-617 -> 350-362). Compiled on CPU, inductor's C++ kernel of it stays scalar (its float
    <-> int32 views): 14 ms against 2.7 ms for the bit-level path, 8 Mi float32 values to E2M1."""
    if device.type == "cpu":
        return not torch.compiler.is_compiling()
    return device.type == "cuda"


def _rounds_by_float_add(fmt: FloatFormat) -> bool:
    """Formats _encode_by_float_add handles: signed, with zero and subnormals, no inf or NaN
    codes (they always saturate), and small enough that every step 2^(e - m) and its inverse
    are normal float32s."""
    if fmt.has_inf or fmt.has_nan or not (fmt.signed and fmt.has_zero and fmt.has_subnormals):
        return False
    return fmt.bits <= 8 and -100 <= _min_exponent(fmt) - fmt.mantissa_bits and fmt.emax <= 100


def _encode_by_float_add(x: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """_encode_int of float32/bfloat16/float16 x, nearest rounding, for _rounds_by_float_add
    formats.

    The magnitude, saturated at max, is scaled by the inverse of its binade's step 2^(e - m)
    (e: its float32 exponent, at least the format's min normal exponent; a power of two built
    from bits, so the product is exact) and 2^23 is added: the float add rounds to the nearest
    multiple r of the step, ties to even, and leaves r in the low mantissa bits. The code is r
    + (e - emin) << m: the binade's first code plus the step count, which carries into the
    next binade when r reaches 2^(m + 1), as the code's value does. Sign from x's bits; NaN
    gives +max (the policy of formats without NaN).
    """
    emin = _min_exponent(fmt)
    m = fmt.mantissa_bits
    size = x.to(torch.float32).abs().clamp(max=fmt.max)
    exponent = torch.clamp((size.view(torch.int32) >> 23) - 127, min=emin)
    inverse_step = ((127 + m - exponent) << 23).view(torch.float32)
    steps = (size * inverse_step + 8388608.0).view(torch.int32) & ((1 << (m + 2)) - 1)
    code = (steps + ((exponent - emin) << m)) | (_sign_of(x).to(torch.int32) << (fmt.bits - 1))
    return torch.where(x != x, fmt.max_code, code)


def _draws(x: torch.Tensor, rounding: str, generator, uniform, seed):
    if rounding == "nearest":
        return None
    if uniform is not None:
        return uniform
    if seed is not None:
        return _DrawCounts(_hashed_counts(x.shape, seed, device=x.device))
    if generator is None:
        if torch.compiler.is_compiling() and x.numel() <= draws._MAX_ELEMENTS:
            # Compiled, the global RNG gives one seed per call and each element hashes it with
            # its position, as seed= does (fpx.draws): Philox per element (rand_like in the
            # kernel) bound the whole encode. Reproducible after torch.manual_seed all the same.
            # Eager keeps rand_like: the hash would be a dozen eager passes over the tensor.
            # Past the hash's 32-bit counters (draws._MAX_ELEMENTS), rand_like as before.
            seed = torch.randint(_GLOBAL_SEED_BOUND, (), device=x.device)
            return _DrawCounts(_hashed_counts(x.shape, seed, device=x.device))
        # rand_like, not rand(generator=None): the latter fails to trace with dynamic shapes.
        return torch.rand_like(x, dtype=torch.float32)
    return torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float32)


# Compiled draws from the global RNG (_draws): seeds in [0, 2^62). Inductor's randint lowering
# takes high - low in int64 (triton_helpers.randint64), which 2^64 - 1 would overflow;
# fpx.draws folds any seed into a 32-bit key.
_GLOBAL_SEED_BOUND = 1 << 62


def encode(
    x: torch.Tensor,
    fmt: FloatFormat,
    *,
    saturate: bool = True,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
    uniform: torch.Tensor | None = None,
    seed: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Round ``x`` to the float format ``fmt``; return the codes as ``torch.uint8``.

    Contract:
      - ``x``: float32, bfloat16, float16 or float64, each rounded from its exact value
        (float64 is never rounded through float32). Any shape; the result
        has ``x``'s shape, one code per element in its low ``fmt.bits`` bits, the
        sign in the highest of them (``0x80`` for FP8, ``0x20`` FP6, ``0x8`` FP4).
      - ``rounding="nearest"``: ties to even, subnormals included, exponent unbounded before
        the comparison with max (OFP8 5.2.1). ``"stochastic"``: unbiased, see the module
        docstring; draws from ``generator`` (a ``torch.Generator``; None: the global RNG,
        compiled one seed per call from it, hashed as with ``seed``),
        from ``uniform`` (floats in [0, 1) broadcastable to ``x``; bit-reproducible in eager
        and compiled code alike), or from ``seed`` (an int or an integer tensor of one element:
        the codes of ``uniform=fpx.hashed_uniform(x.shape, seed, device=x.device)``, the same
        draws on every device, and compiled the cheapest: no Philox, no draws tensor, no
        scaling of the draws). Under
        ``torch.compile`` a ``generator`` causes a graph break (``fullgraph=True`` fails): pass
        ``uniform`` or ``seed`` (a tensor seed takes new values without recompiling) or use
        the global RNG there.
      - ``saturate``: see the table in the module docstring. Formats without inf and NaN
        (FP6/FP4) always saturate; ``saturate=False`` is accepted and changes nothing for them.
      - FP8 codes can be reinterpreted as torch's float8 dtypes bit-exactly:
        ``encode(x, E4M3).view(torch.float8_e4m3fn)``, ``encode(x, E5M2).view(torch.float8_e5m2)``,
        ``encode(x, E8M0).view(torch.float8_e8m0fnu)``.
      - TypeError for another ``x`` dtype or a non-FloatFormat ``fmt``; ValueError for a bad
        ``rounding``, a ``generator``/``uniform``/``seed`` given with ``rounding="nearest"``
        or more than one of them, or a ``uniform`` that does not broadcast to ``x``'s shape;
        :func:`fpx.hashed_uniform`'s errors for a bad ``seed``.

    >>> import torch
    >>> from fpx import E4M3, E5M2, E2M1
    >>> encode(torch.tensor([448.0, 464.0, 465.0]), E4M3, saturate=False).tolist()
    [126, 126, 127]
    >>> encode(torch.tensor([61440.0, -float("inf")]), E5M2, saturate=False).tolist()
    [124, 252]
    >>> encode(torch.tensor([0.5, -1.5, 6.0]), E2M1).tolist()
    [1, 11, 7]
    >>> x = torch.full((1000,), 1.1)  # between 1.0 (code 56) and 1.125 (57): up with p = 0.8
    >>> codes = encode(x, E4M3, rounding="stochastic", seed=42)
    >>> sorted(set(codes.tolist())), 0.75 < (codes == 57).float().mean().item() < 0.85
    ([56, 57], True)
    """
    _check_float_tensor(x, "x")
    fmt = _check_format(fmt)
    saturate = _check_saturate(saturate)
    _check_rounding(rounding, generator, uniform, seed, x)
    if rounding == "nearest" and _small_formats_in_float_arithmetic(x.device) and _encodes_by_binade_steps(fmt, x.dtype):
        return _encode_by_binade_steps(x, fmt, saturate)
    code = _encode_int(x, fmt, saturate, _draws(x, rounding, generator, uniform, seed))
    return code.to(torch.uint8)


# ---- code -> float --------------------------------------------------------------------------
def _decodes_by_table(device: torch.device) -> bool:
    """Whether :func:`_decode_int` indexes a table of the format's values in the output dtype:
    on CPU outside ``torch.compile``, where one ``index_select`` pass replaces a dozen eager
    operations of the field arithmetic (2 cores, 16 Mi codes, two runs, a float32 table first:
    E4M3 to float32 529-631 -> 45-49 ms, to bfloat16 565-615 -> 90-95, E2M1 to float32
    524-554 -> 78-86).
    Compiled, the field arithmetic fuses into its consumer, and an indirect load would not
    vectorize (CPU) or would cost a gather per code (CUDA)."""
    return device.type == "cpu" and not torch.compiler.is_compiling()


def _code_to_float32(code: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """float32 values of integer codes (only their low ``fmt.bits`` bits are read); exact."""
    m = fmt.mantissa_bits
    magnitude = code & fmt.magnitude_mask
    exponent_field = magnitude >> m
    mantissa = magnitude & ((1 << m) - 1)
    # Normal codes: float32 fields directly; a result below float32's normal range (only
    # E8M0's 2^-127) becomes a float32 subnormal by shifting the significand right.
    biased = exponent_field + (127 - fmt.bias)
    significand = (1 << 23) | (mantissa << (23 - m))
    # Both branches are computed for every code: clamp so that neither shifts a negative value
    # or by an amount outside [0, 31] (undefined in C++ and on CUDA, whatever where() keeps).
    bits = torch.where(
        biased >= 1,
        ((torch.clamp(biased, min=1) - 1) << 23) + significand,
        significand >> torch.clamp(1 - biased, min=0, max=24),
    )
    if fmt.has_subnormals:
        # mantissa * 2^(emin - m): the integer converts to float32 exactly; then shift its
        # exponent field (the result is a normal float32, _check_format ensures it).
        scaled = mantissa.to(torch.float32).view(torch.int32) + ((1 - fmt.bias - m) << 23)
        bits = torch.where(exponent_field == 0, torch.where(mantissa == 0, 0, scaled), bits)
    inf, nan, _ = _SPECIAL_BITS[torch.float32]
    bits = _with_specials(bits, magnitude, fmt, inf, nan)
    if fmt.signed:
        # Set the sign bit on the integer pattern, not by negating the float: Triton's unary
        # minus is 0 - x (so -(+0.0) gives +0.0), and a GPU's negation of a NaN may return any
        # NaN. (An OR with INT32_MIN, not a shift into bit 31, which would overflow an int32.)
        bits = torch.where((code & fmt.sign_mask) != 0, bits | _INT32_SIGN_BIT, bits)
    return bits.view(torch.float32)


def _with_specials(bits: torch.Tensor, magnitude: torch.Tensor, fmt: FloatFormat, inf: int, nan: int) -> torch.Tensor:
    """``bits`` (an integer pattern per code) with the pattern ``inf`` at inf codes and ``nan`` at
    NaN codes, by the codes' ``magnitude`` (sign cleared)."""
    if fmt.has_inf:
        bits = torch.where(magnitude == fmt.inf_code, inf, bits)
        return torch.where(magnitude > fmt.inf_code, nan, bits)
    if fmt.has_nan:
        return torch.where(magnitude == fmt.nan_code, nan, bits)
    return bits


def _check_codes(codes) -> None:
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
    if codes.dtype != torch.uint8:
        hint = " (view float8 tensors as codes with .view(torch.uint8))" if codes.dtype.itemsize == 1 else ""
        raise TypeError(f"codes must be a torch.uint8 tensor, got {codes.dtype}{hint}")


def _check_dtype(dtype) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return dtype


def decode(codes: torch.Tensor, fmt: FloatFormat, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The values of ``fmt`` codes, as ``dtype`` (default float32); exact.

    Contract:
      - ``codes``: ``torch.uint8``, any shape; only the low ``fmt.bits`` bits of each are read.
        Torch's float8 tensors decode after ``.view(torch.uint8)``.
      - Returns ``codes``' shape in ``dtype``. Every code's value is exact in float32, float64 and
        bfloat16; float16 holds all but E8M0's extremes (those round as float32 -> float16 does).
      - Specials: NaN codes give a quiet NaN with the code's sign, E5M2's inf codes +-inf, the
        -0 code -0.0, E8M0 0x00 2^-127 and 0xFF NaN.
      - TypeError for non-uint8 ``codes``, a non-FloatFormat ``fmt`` or a non-float ``dtype``.

    >>> import torch
    >>> from fpx import E4M3, E2M1, E8M0
    >>> decode(torch.tensor([0x7E, 0x80, 0x01, 0x7F], dtype=torch.uint8), E4M3).tolist()
    [448.0, -0.0, 0.001953125, nan]
    >>> decode(torch.arange(8, dtype=torch.uint8), E2M1).tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    >>> decode(torch.tensor([127, 128, 0], dtype=torch.uint8), E8M0).tolist()[:2]
    [1.0, 2.0]
    """
    _check_codes(codes)
    fmt = _check_format(fmt)
    dtype = _check_dtype(dtype)
    if dtype.itemsize == 2 and _small_formats_in_float_arithmetic(codes.device) and _fits_byte_products(fmt):
        return _decode_bytes_by_float_products(codes, fmt).to(dtype)
    return _decode_int(codes.to(torch.int32), fmt, dtype)


# ---- decode by float products of byte fields (compiled CPU) ----------------------------------
# Inductor's C++ backend vectorizes a kernel that writes 16-bit floats 32 lanes at a time, and
# at::vec has no 32-lane conversion of uint8 -> int32 or int32 -> float32 (nor a 32-lane cast
# of a uint8 mask to float lanes): each falls back to a scalar loop through a buffer. The field
# arithmetic in int32 lanes ran E2M1 -> bfloat16 at 6.6 ms for 4 Mi codes (2 cores), where
# uint8 field operations and one uint8 -> float32 conversion (which at::vec has) take 1.3.
def _small_formats_in_float_arithmetic(device: torch.device) -> bool:
    """Whether decode to bfloat16 or float16 takes :func:`_decode_bytes_by_float_products`
    (formats of :func:`_fits_byte_products`), round_to to nearest of float32 / bfloat16 /
    float16 takes :func:`_round_by_binade_steps` (formats and dtypes of
    :func:`_rounds_by_binade_steps`), and
    encode to nearest of bfloat16 / float16 takes :func:`_encode_by_binade_steps` (formats and
    dtypes of :func:`_encodes_by_binade_steps`): on
    CPU under ``torch.compile``. Eager CPU decodes by a table (:func:`_decodes_by_table`) and
    rounds by one float add (:func:`_float_add_pays_off`), in fewer eager operations; CUDA
    places decode's fields in a float32 and its views cost nothing. float32 and float64 decode
    results (16 lanes or fewer, where at::vec has the conversions) stay on the int32 fields, as
    fast or faster there (4 Mi codes to float32: 1.0-1.9 ms, against 1.4-2.8 by bytes)."""
    return device.type == "cpu" and torch.compiler.is_compiling()


def _fits_byte_products(fmt: FloatFormat) -> bool:
    """Formats whose every code is a finite value (no inf or NaN), with zero and subnormals, at
    most 3 exponent bits (so 2^(exponent field - 1) is at most 64, a uint8) and values that are
    normal float32s: the MX FP6 / FP4 formats and their kind, which decode to 16-bit floats
    takes by :func:`_decode_bytes_by_float_products`."""
    return _decodes_by_byte_products(fmt) and not (fmt.has_inf or fmt.has_nan) and fmt.exponent_bits <= 3


def _decodes_by_byte_products(fmt: FloatFormat) -> bool:
    """Formats :func:`_decode_bytes_by_float_products` decodes exactly: with zero and
    subnormals, at most 6 exponent bits (its two uint8 powers of two) and finite values that are
    normal float32s (E4M3, E5M2, the FP6 / FP4 formats and their kind; not E8M0)."""
    return (fmt.has_subnormals and fmt.exponent_bits <= 6 and fmt.min_subnormal >= 2.0**-126
            and fmt.max < 2.0**127)


def _decode_bytes_by_float_products(codes: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """float32 values of uint8 codes (formats of :func:`_decodes_by_byte_products`; only the
    low ``fmt.bits`` bits of each code are read), exact, with uint8 field operations and uint8
    -> float32 conversions only: the product of exact float32s, significand x 2^(exponent
    field - 1) x 2^(1 - bias - mantissa bits) (a subnormal code's significand being its
    mantissa, its power 1). The power of two is one uint8 power, 2^(e - 1) for at most 3
    exponent bits, else 2^((e - 1) mod 8) x (2^((e - 1) div 8))^8. Specials and the sign come
    from comparisons of the code as a float32 (inf and NaN codes as :func:`decode` places them,
    NaN signed like its code; the -0 code -0.0): at::vec has no 32-lane cast of a uint8 mask
    to float lanes, and a float comparison's mask needs none."""
    m = fmt.mantissa_bits
    magnitude = codes & fmt.magnitude_mask
    exponent_field = magnitude >> m
    significand = (torch.clamp(exponent_field, max=1) << m) | (magnitude & ((1 << m) - 1))
    power = torch.clamp(exponent_field, min=1) - 1
    if fmt.exponent_bits <= 3:
        values = significand.to(torch.float32) * (1 << power).to(torch.float32)
    else:
        eighth = (1 << (power >> 3)).to(torch.float32)  # 2^((e - 1) div 8), at most 2^7
        eighth = eighth * eighth
        eighth = eighth * eighth
        values = significand.to(torch.float32) * (1 << (power & 7)).to(torch.float32) * (eighth * eighth)
    values = values * 2.0 ** (1 - fmt.bias - m)
    if not (fmt.signed or fmt.has_inf or fmt.has_nan):
        return values
    code = (codes & ((1 << fmt.bits) - 1)).to(torch.float32)
    sign = float(fmt.sign_mask)
    negative = code >= sign if fmt.signed else None
    if fmt.has_inf or fmt.has_nan:
        magnitude_value = torch.where(negative, code - sign, code) if fmt.signed else code
        if fmt.has_inf:
            values = torch.where(magnitude_value == float(fmt.inf_code), float("inf"), values)
            values = torch.where(magnitude_value > float(fmt.inf_code), float("nan"), values)
        else:
            values = torch.where(magnitude_value == float(fmt.nan_code), float("nan"), values)
    return torch.where(negative, -values, values) if fmt.signed else values


def _bfloat16_by_float16_placement(device: torch.device) -> bool:
    """Whether decode to bfloat16 may take the float16 placement: everywhere but CPU, where a
    bfloat16 result of float16 arithmetic makes inductor warn ("bf16 and fp16 are mixed in the
    scheduler node"); there bfloat16 takes the float32 path."""
    return device.type != "cpu"


def _decode_int(code: torch.Tensor, fmt: FloatFormat, dtype: torch.dtype) -> torch.Tensor:
    """decode of int32 codes (what decode and round_to share): by the field arithmetic, or (CPU,
    eager: :func:`_decodes_by_table`) by a table of its results for every code, indexed by
    each code's low ``fmt.bits`` bits: the same bits, NaN patterns included."""
    if _decodes_by_table(code.device):
        table = _decode_int_by_fields(torch.arange(1 << fmt.bits, dtype=torch.int32, device=code.device), fmt, dtype)
        index = (code & ((1 << fmt.bits) - 1)).to(torch.int32).reshape(-1)
        return table.index_select(0, index).reshape(code.shape)
    return _decode_int_by_fields(code, fmt, dtype)


def _decode_int_by_fields(code: torch.Tensor, fmt: FloatFormat, dtype: torch.dtype) -> torch.Tensor:
    """:func:`_decode_int` by the codes' fields: the kernels compiled code fuses."""
    if _float32_placement_pays_off(code.device) and _fits_float32_placement(fmt, dtype):
        return _decode_by_float32_placement(code, fmt, dtype)
    if dtype == torch.float16 and _16_bit_floats_by_byte_pairs(code.device) and _float16_holds_every_value(fmt):
        # CPU: the float16 placement's int16 arithmetic (and its NaN fix on int16 bits) kept
        # inductor's C++ kernel scalar; float16's bits computed in int32 lanes vectorize.
        return _as_16_bit_float(_float16_bits(_code_to_float32(code, fmt)), dtype)
    placement_dtypes = tuple(_QUIET_NAN_BITS) if _bfloat16_by_float16_placement(code.device) else (torch.float16,)
    if dtype in placement_dtypes and _fits_float16_placement(fmt):
        return _decode_by_float16_placement(code, fmt, dtype)
    values = _code_to_float32(code, fmt)
    if dtype == torch.bfloat16 and fmt.has_nan:
        # Every value of a format of at most 8 bits has at most 7 mantissa bits, so it is
        # exact in bfloat16: the float32's top half, NaN signs included, which a float32 ->
        # bfloat16 cast may drop (torch's CPU cast gives 0xFFFF for both).
        return _as_16_bit_float(values.view(torch.int32) >> 16, torch.bfloat16)
    if dtype == torch.float16 and fmt.has_nan:
        return _with_signed_nans(values.to(dtype), code, fmt)
    return values.to(dtype)


def _16_bit_floats_by_byte_pairs(device: torch.device) -> bool:
    """Whether :func:`_as_16_bit_float` assembles its result from two uint8 halves, and decode
    to float16 computes float16's bits in int32 lanes (:func:`_float16_bits`) rather than by
    the float16 placement's int16 arithmetic: on CPU (little-endian). Inductor's C++ backend
    vectorizes no kernel that computes in int16 or narrows int32 to int16 and views it as a
    16-bit float: the whole kernel became a scalar loop (2 cores, 8 Mi values: decode of E4M3
    codes to bfloat16 32-58 ms, round_to of float16 to E2M1 57-88), where uint8 stores
    vectorize (8-9 ms, 13-15). On CUDA the int16 view and arithmetic cost nothing extra."""
    return device.type == "cpu" and sys.byteorder == "little"


def _as_16_bit_float(bits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The bfloat16 or float16 whose bit pattern is the low 16 bits of each int32 of ``bits``
    (same shape). Exact for every pattern, NaN payloads and signs included: no float
    conversion touches them."""
    if _16_bit_floats_by_byte_pairs(bits.device):
        low = (bits & 0xFF).to(torch.uint8)
        high = ((bits >> 8) & 0xFF).to(torch.uint8)
        return torch.stack([low, high], dim=-1).view(dtype).squeeze(-1)
    return bits.to(torch.int16).view(dtype)


# Quiet NaN bit patterns (sign clear) of the 16-bit float dtypes.
_QUIET_NAN_BITS = {torch.bfloat16: 0x7FC0, torch.float16: 0x7E00}


def _float16_holds_every_value(fmt: FloatFormat) -> bool:
    """Whether every finite value of ``fmt`` is a float16: none above float16's max, none finer
    than its smallest subnormal 2^-24, at most 10 mantissa bits."""
    smallest = fmt.min_subnormal if fmt.has_subnormals else fmt.min_normal
    return fmt.mantissa_bits <= 10 and smallest >= 2.0**-24 and fmt.max <= 65504.0


def _float16_bits(values: torch.Tensor) -> torch.Tensor:
    """int32 float16 bit patterns (in the low 16 bits) of float32 ``values`` that float16 holds
    exactly, with no float16 conversion: normal values by their float32 exponent rebased and
    mantissa's top 10 bits, subnormal ones (below 2^-14) as |value| * 2^24 (an exact integer),
    infinities 0x7C00, NaNs the quiet 0x7E00; the sign from the float32's own bit, so a NaN
    keeps it. Values float16 does not hold exactly give unspecified patterns."""
    bits = values.view(torch.int32)
    magnitude = values.abs()
    normal = ((bits & 0x7FFFFFFF) >> 13) - ((127 - 15) << 10)
    tiny = magnitude < 2.0**-14
    # Only values below 2^-14 reach the conversion (others as 0): no NaN, inf or overflow in it.
    subnormal = (torch.where(tiny, magnitude, 0.0) * 2.0**24).to(torch.int32)
    pattern = torch.where(tiny, subnormal, normal)
    pattern = torch.where(magnitude == float("inf"), 0x7C00, pattern)
    pattern = torch.where(values != values, _QUIET_NAN_BITS[torch.float16], pattern)
    return pattern | ((bits >> 16) & 0x8000)


def _nan_codes(code: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    magnitude = code & fmt.magnitude_mask
    return magnitude > fmt.inf_code if fmt.has_inf else magnitude == fmt.nan_code


def _with_signed_nans(values: torch.Tensor, code: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """``values`` (a 16-bit float dtype) with every NaN code's value the quiet NaN of its sign."""
    quiet = _QUIET_NAN_BITS[values.dtype]
    negative = (quiet | 0x8000) - 0x10000  # the same pattern with the sign set, as an int16
    nan = torch.where((code & fmt.sign_mask) != 0, negative, quiet).to(torch.int16)
    bits = torch.where(_nan_codes(code, fmt), nan, values.view(torch.int16))
    return bits.view(values.dtype)


def _fits_float16_placement(fmt: FloatFormat) -> bool:
    """Whether a code's fields placed in a float16's make the code's value times 2^(bias - 15):
    signed, with zero and subnormals, at most 5 exponent bits, and at 5 exactly float16's top
    byte (bias 15, IEEE inf and NaN); fewer exponent bits and no infinity otherwise."""
    if not (fmt.signed and fmt.has_zero) or abs(15 - fmt.bias) > 100:
        return False
    if fmt.exponent_bits == 5:
        return fmt.special == "ieee" and fmt.bias == 15
    return fmt.exponent_bits < 5 and not fmt.has_inf


def _float16_placed(code: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """int16 float16 bits of int32 codes (at most 5 exponent bits): the code's sign on bit 15,
    its exponent and mantissa fields where float16 keeps them, so that the float16 is the
    code's value times 2^(bias - 15), subnormals included.

    Shifted left so that its sign lands on bit 15 of an int16, the code shifts back right
    arithmetically by 5 - exponent bits: the magnitude lands where float16 keeps it, the sign
    stays on bit 15 and fills the bits between them, which one mask clears. Each code is read
    once, which matters to inductor (a value several expressions read may be written out in
    full)."""
    keep = -(1 << 15) | (fmt.magnitude_mask << (10 - fmt.mantissa_bits))
    return ((code << (16 - fmt.bits)).to(torch.int16) >> (5 - fmt.exponent_bits)) & keep


def _decode_by_float16_placement(code: torch.Tensor, fmt: FloatFormat, dtype: torch.dtype) -> torch.Tensor:
    """decode to bfloat16 or float16 in about half the operations of the general path.

    The float16 of :func:`_float16_placed`, scaled by 2^(15 - bias) in float32 and narrowed:
    exact for every value the dtype holds (the general path's float32 -> dtype rounding
    otherwise). NaN codes become the quiet NaN of their sign by bit pattern.
    """
    placed = _float16_placed(code, fmt)
    values = placed.view(torch.float16)
    if fmt.bias != 15:
        values = values.to(torch.float32) * 2.0 ** (15 - fmt.bias)
    values = values.to(dtype)
    return _with_signed_nans(values, code, fmt) if fmt.has_nan else values


# ---- decode by float32 placement (CUDA) ------------------------------------------------------
# _code_to_float32 takes about 24 instructions per code for sm_90a (benchmarks/sass_offline.py)
# and the float16 placement about 17-19, most of them int16 byte moves; on an H200 E4M3 ->
# bfloat16 decode ran at 0.70x of clone that way. Placing the fields in a float32 and scaling
# once takes about 12 (15 to float16): 0.94x of clone to bfloat16 on the H200.
def _float32_placement_pays_off(device: torch.device) -> bool:
    """Decode by _decode_by_float32_placement: on CUDA, where Triton's float multiply keeps
    subnormal inputs (FMUL, not FMUL.FTZ). On CPU ``torch.set_flush_denormal(True)`` would
    flush them, so CPU keeps the integer path."""
    return device.type == "cuda"


def _fits_float32_placement(fmt: FloatFormat, dtype: torch.dtype) -> bool:
    """Formats whose fields placed in a float32's make the code's value times 2^(bias - 127):
    zero and IEEE subnormals (exponent field 0), at most 8 exponent bits, and a bias in
    [0, 127], so that the scale 2^(127 - bias) is a float32 of at least 1 and every product is
    exact. float16 also needs every nonzero finite value to be a float16 normal, and is taken
    only for formats with NaN codes: without them the float16 placement is cheaper (E2M1 and
    E3M2 7.5 instructions per code against 12.75; E4M3 17.4 against 14.6)."""
    if not (fmt.has_zero and fmt.has_subnormals and fmt.exponent_bits <= 8 and 0 <= fmt.bias <= 127):
        return False  # checked first: without subnormals (E8M0) min_subnormal is None
    if dtype == torch.float16:
        normal = fmt.min_subnormal >= 2.0**-14 and fmt.max <= 65504 and fmt.mantissa_bits <= 10
        return normal and fmt.has_nan
    return dtype in (torch.float32, torch.bfloat16)


# (inf, quiet NaN) bit patterns, sign clear, and the sign bit, of the patterns built.
_SPECIAL_BITS = {
    torch.float32: (0x7F800000, 0x7FC00000, _INT32_SIGN_BIT),
    torch.float16: (0x7C00, _QUIET_NAN_BITS[torch.float16], 0x8000),
}


def _decode_by_float32_placement(code: torch.Tensor, fmt: FloatFormat, dtype: torch.dtype) -> torch.Tensor:
    """decode in about half the instructions of _code_to_float32 (formats and dtypes of
    _fits_float32_placement).

    The magnitude shifted to float32's field positions is the code's value times 2^(bias - 127)
    (a float32 subnormal for a subnormal code, both being 0.m times the lowest binade's scale);
    one multiply by 2^(127 - bias) makes it the value, exactly. bfloat16 is the float32's top
    half: an 8-bit format's values have at most 7 mantissa bits, so the truncation is exact.
    float16 moves the exponent from float32's bias to float16's (every nonzero value being a
    float16 normal). Specials and the sign are set on the bit pattern, which keeps NaN signs
    (a cast may not).
    """
    # bfloat16 works on the float32 pattern and takes its top half last (fewer instructions).
    bits_dtype = torch.float32 if dtype == torch.bfloat16 else dtype
    inf, nan, sign_bit = _SPECIAL_BITS[bits_dtype]
    magnitude = code & fmt.magnitude_mask
    placed = (magnitude << (23 - fmt.mantissa_bits)).view(torch.float32)
    bits = (placed * 2.0 ** (127 - fmt.bias)).view(torch.int32)
    if dtype == torch.float16:
        bits = torch.where(magnitude == 0, 0, (bits >> 13) - ((127 - 15) << 10))
    bits = _with_specials(bits, magnitude, fmt, inf, nan)
    if fmt.signed:
        # The code's sign bit moved to the result's; the bits above the code's fall off the top.
        width = 8 * bits_dtype.itemsize
        bits = bits | ((code << (width - fmt.bits)) & sign_bit)
    if dtype == torch.float32:
        return bits.view(torch.float32)
    if dtype == torch.bfloat16:
        bits = bits >> 16
    return _as_16_bit_float(bits, dtype)


def round_to(
    x: torch.Tensor,
    fmt: FloatFormat,
    *,
    saturate: bool = True,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
    uniform: torch.Tensor | None = None,
    seed: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """``decode(encode(x, fmt, ...), fmt, x.dtype)`` without the uint8 codes in between.

    Same arguments, rounding and errors as :func:`encode`; returns ``x``'s shape and dtype
    (exact wherever that dtype holds the format's values, see :func:`decode`). Under
    ``torch.compile`` it is one pointwise kernel. As with decode(encode(x)), a NaN input gives
    +max for formats without NaN (FP6/FP4).

    >>> import torch
    >>> from fpx import E4M3, E2M3
    >>> round_to(torch.tensor([0.3, 1000.0], dtype=torch.bfloat16), E4M3).tolist()
    [0.3125, 448.0]
    >>> round_to(torch.tensor([7.9, -0.0625, 1.0625]), E2M3).tolist()
    [7.5, -0.0, 1.0]
    """
    _check_float_tensor(x, "x")
    fmt = _check_format(fmt)
    saturate = _check_saturate(saturate)
    _check_rounding(rounding, generator, uniform, seed, x)
    if rounding == "nearest" and _small_formats_in_float_arithmetic(x.device) and _rounds_by_binade_steps(fmt, x.dtype):
        return _round_by_binade_steps(x, fmt, saturate)
    code = _encode_int(x, fmt, saturate, _draws(x, rounding, generator, uniform, seed))
    return _decode_int(code.to(torch.int32), fmt, x.dtype)


# ---- round_to and encode in float arithmetic (compiled CPU) ---------------------------------
# The bit-level round_to and encode compute in int32 lanes from the input's float32 bits and
# back: on CPU each float <-> int32 view and, with 16-bit x, each int32 <-> float conversion of a
# 32-lane kernel is a scalar loop (see _decode_bytes_by_float_products). In float32 instead, a
# magnitude's binade comes from a few halving steps (compare, scale by a power of two) and the
# rounding from a float round() (taken where _small_formats_in_float_arithmetic says).
def _steps_are_normal_floats(fmt: FloatFormat) -> bool:
    """Signed formats with zero and subnormals whose every step 2^(e - m) and the first power
    of two past max are normal float32s: the float arithmetic of :func:`_binade_steps` is exact
    for them."""
    return fmt.signed and fmt.has_subnormals and fmt.min_subnormal >= 2.0**-126 and fmt.emax + 1 < 127


def _fits_binade_steps(fmt: FloatFormat) -> bool:
    """The signed formats of :func:`_fits_byte_products` (every code finite, so a 16-bit
    result needs no NaN sign; at most 3 exponent bits)."""
    return fmt.signed and _fits_byte_products(fmt)


def _rounds_by_binade_steps(fmt: FloatFormat, dtype: torch.dtype) -> bool:
    """The formats and input dtypes round_to takes in float arithmetic
    (:func:`_round_by_binade_steps`): float32 / float16 x for every format of
    :func:`_steps_are_normal_floats` (FP8 too: float32 and float16 results keep a NaN's sign),
    and bfloat16 x for formats of :func:`_fits_binade_steps` only (torch's vectorized float32 ->
    bfloat16 conversion writes every NaN as 0xFFFF, so an FP8 NaN would lose its sign)."""
    if dtype in (torch.float32, torch.float16) and _steps_are_normal_floats(fmt):
        return True
    return dtype == torch.bfloat16 and _fits_binade_steps(fmt)


def _encodes_by_binade_steps(fmt: FloatFormat, dtype: torch.dtype) -> bool:
    """The formats and input dtypes encode takes in float arithmetic (:func:`_binade_steps`):
    bfloat16 and float16 x, and formats of :func:`_steps_are_normal_floats`, FP8 (E4M3, E5M2)
    to FP4. (A float16 NaN's sign survives these kernels' float32 conversion, vectorized, in a
    loop's tail and lane by lane: tested for every float16 pattern on torch 2.13.) float32 x
    keeps the bit level, 16 lanes wide, where at::vec has the int32 conversions: as fast there
    (4 Mi values to E2M1: 1.35 ms against 1.28-1.61) or faster (E4M3 1.5-1.6 against 2.0)."""
    return dtype in (torch.bfloat16, torch.float16) and _steps_are_normal_floats(fmt)


def _binade_steps(x: torch.Tensor, fmt: FloatFormat, saturate: bool):
    """x in float32; its magnitude capped (NaN stays NaN, inf becomes the cap), saturating at
    max, otherwise at the first power of two past max, so that a magnitude rounding past max
    (exponent unbounded, OFP8 5.2.1) or inf lands past the max code and value; that
    magnitude over its binade's first power 2^e, e at least the format's min normal exponent
    emin (``scaled``: in [1, 2) above 2^emin, below 1 under it); the step count of that first
    power, (e - emin) << m, as a float (``first_code``); and 2^e (``power``). So
    round(scaled x 2^m) + first_code is the magnitude's code (a subnormal's count being its
    code, and a count that reaches 2^(m + 1) landing on the next binade's first code, as the
    value does), and round(scaled x 2^m) x 2^-m x power its value. e comes from halving steps:
    the magnitude over 2^emin compared with 2^k and scaled by 2^-k where it is at least that,
    for k = ..., 4, 2, 1: every product by a power of two, exact (formats of
    :func:`_steps_are_normal_floats`)."""
    m = fmt.mantissa_bits
    emin = _min_exponent(fmt)
    cap = fmt.max if saturate else 2.0 ** (fmt.emax + 1)
    values = x.to(torch.float32)
    size = torch.clamp(values.abs(), max=cap)
    scaled = size * 2.0**-emin
    first_code = torch.zeros_like(size)
    power = torch.full_like(size, 2.0**emin)
    top = math.floor(math.log2(cap)) - emin  # the largest e - emin
    k = 1
    while 2 * k - 1 < top:  # halving steps k, k/2, ..., 1 reach e - emin up to 2k - 1
        k *= 2
    while top > 0 and k >= 1:
        at_least = scaled >= 2.0**k
        scaled = torch.where(at_least, scaled * 2.0**-k, scaled)
        first_code = torch.where(at_least, first_code + float(k << m), first_code)
        power = torch.where(at_least, power * 2.0**k, power)
        k //= 2
    return values, size, scaled, first_code, power


def _round_by_binade_steps(x: torch.Tensor, fmt: FloatFormat, saturate: bool) -> torch.Tensor:
    """round_to(x, fmt, saturate=saturate), nearest, for x and formats of
    :func:`_rounds_by_binade_steps` (exact in float32): the magnitude capped and scaled into
    its binade (:func:`_binade_steps`), rounded
    half to even by ``torch.round`` at m fraction bits and scaled back; past max (unsaturated)
    the overflow value, inf or NaN; a NaN the quiet NaN decode gives; the sign copied from x
    (so negatives that round to 0 give -0.0, and NaNs keep theirs). Formats without NaN codes
    give +max for NaN, the policy. (Inductor drops the unused code counts.)"""
    m = fmt.mantissa_bits
    saturate = _saturates(fmt, saturate)
    values, size, scaled, _, power = _binade_steps(x, fmt, saturate)
    rounded = torch.round(scaled * 2.0**m) * (power * 2.0**-m)
    if not saturate:
        rounded = torch.where(rounded > fmt.max, float("inf") if fmt.has_inf else float("nan"), rounded)
    if fmt.has_nan:
        rounded = torch.where(size != size, float("nan"), rounded)  # the quiet NaN, not x's payload
    rounded = torch.copysign(rounded, values)
    if not fmt.has_nan:
        rounded = torch.where(size != size, fmt.max, rounded)
    return rounded.to(x.dtype)


def _encode_by_binade_steps(x: torch.Tensor, fmt: FloatFormat, saturate: bool) -> torch.Tensor:
    """encode(x, fmt, saturate=saturate), nearest, as uint8, for x and formats of
    :func:`_encodes_by_binade_steps`: the magnitude's code round(scaled x 2^m) + first_code
    (:func:`_binade_steps`) in float32, every step exact (codes below 256); unsaturated, a code
    past the max code becomes the overflow code. A NaN gets the NaN code (formats without one:
    +max's, the policy), and the sign bit is added where copysign(1, x) is negative (-0.0 and
    negative NaNs included)."""
    m = fmt.mantissa_bits
    saturate = _saturates(fmt, saturate)
    values, size, scaled, first_code, _ = _binade_steps(x, fmt, saturate)
    code = torch.round(scaled * 2.0**m) + first_code
    if not saturate:
        code = torch.where(code > fmt.max_code, float(_overflow_code(fmt)), code)
    if fmt.has_nan:
        code = torch.where(size != size, float(fmt.nan_code), code)
    negative = torch.copysign(torch.ones_like(values), values) < 0
    code = torch.where(negative, code + float(1 << (fmt.bits - 1)), code)
    if not fmt.has_nan:
        code = torch.where(size != size, float(fmt.max_code), code)
    return code.to(torch.uint8)


# ---- OCP MX shared scale ----------------------------------------------------------------------
def mx_scale_exponent(amax: torch.Tensor, fmt: FloatFormat, *, rounding: str = "floor") -> torch.Tensor:
    """E8M0 codes of the MX shared scale X for blocks whose largest magnitude is ``amax``.

    Contract:
      - ``amax``: float32/bfloat16/float16/float64 tensor, any shape, of block maxima of abs(value);
        its sign is ignored. ``fmt``: the element format (E4M3, E5M2, E3M2, E2M3, E2M1, ...).
      - ``rounding="floor"`` (OCP MX v1.0, section 6.3): X = 2^(floor(log2(amax)) - fmt.emax).
        Exact for every input (computed on the exponent bits, no log2). Elements of the block
        may then exceed fmt.max by less than a factor 2 and saturate when encoded.
        ``rounding="ceil"``: the smallest power of two X with amax / X <= fmt.max (no element
        saturates; one fewer exponent of headroom for small values).
      - Returns uint8 E8M0 codes (code = log2(X) + 127), ``amax``'s shape: decode them with
        ``decode(codes, E8M0)``, or view them as ``torch.float8_e8m0fnu``. Exponents below -127
        (including amax = 0 and subnormal amax) clamp to code 0 (X = 2^-127), above 127 to 254;
        a NaN or infinite amax gives the NaN code 255 (the whole block decodes to NaN).

    >>> import torch
    >>> from fpx import E4M3, E2M1, E8M0
    >>> amax = torch.tensor([448.0, 500.0, 1.0, 0.0])
    >>> mx_scale_exponent(amax, E4M3).tolist()                  # 2^0, 2^0, 2^-8, 2^-127
    [127, 127, 119, 0]
    >>> mx_scale_exponent(amax, E4M3, rounding="ceil").tolist() # 500 / 2^1 <= 448
    [127, 128, 119, 0]
    >>> decode(mx_scale_exponent(torch.tensor([6.0, 12.0]), E2M1), E8M0).tolist()
    [1.0, 2.0]
    """
    _check_float_tensor(amax, "amax")
    fmt = _check_format(fmt)
    if rounding not in MX_SCALE_ROUNDINGS:
        raise ValueError(f"rounding must be one of {MX_SCALE_ROUNDINGS}, got {rounding!r}")
    # The code clamps at 0 below exponent emax - 127: smaller exponents need not be exact.
    _, is_nan, is_inf, exponent, sig, p = _split(_as_ieee(amax), fmt.emax - 127)
    scale = exponent - fmt.emax
    if rounding == "ceil":
        # amax / 2^scale = sig * 2^(emax - p) lies in [2^emax, 2^(emax+1)): it fits iff its
        # significand is at most max's, scaled to the same p bits.
        max_sig = int(fmt.max / 2.0**fmt.emax * (1 << p))
        scale = scale + (sig > max_sig).to(scale.dtype)
    code = torch.clamp(scale + 127, 0, 254)
    code = torch.where(sig == 0, 0, code)  # amax = 0: any scale works; take the smallest
    code = torch.where(is_nan | is_inf, 255, code)
    return code.to(torch.uint8)
