"""Float values of code fields read by their bits: the decodes LowBitLinear's compiled forward
fuses, each exact for every code and written so that inductor emits a few integer and float
operations per weight (no table lookup, no int -> float conversion where avoidable).

- integer fields: :func:`_int_field_values` (under the exponent of 2^23, one XOR and one
  multiply-add), and unsigned codes less a zero-point: :func:`_uint_values_plus_two_pow_23`;
- 2 and 4-bit float codes in place: :func:`_float_field_values` (one integer multiply writes
  magnitude and sign where float32 keeps them);
- float codes of up to 8 exponent bits without inf/NaN: :func:`_float_values_by_float32_shift`;
- float codes with specials: :func:`_float_values_by_float16_placement` (at most 5 exponent
  bits) or :func:`_float_values_in_32_bit_lanes` (any);
- E8M0 scales: :func:`_e8m0_values`.

The counts and timings behind each choice: docs/inductor.md and their docstrings.
"""

from __future__ import annotations

import torch

from bitpack.words import _shifted

from .convert import _INT32_SIGN_BIT, _fits_float32_placement, _float16_placed
from .formats import FloatFormat

_TWO_POW_23_BITS = 0x4B000000  # float32 2^23: its unit in the last place is 1
# Per float dtype: the bits of the power of two whose unit in the last place is 1 (2^23, bfloat16's
# 2^7, float16's 2^10), that exponent, and the integer dtype of the float's width.
_UNIT_ULP = {
    torch.float32: (_TWO_POW_23_BITS, 23, torch.int32),
    torch.bfloat16: (0x4300, 7, torch.int16),
    torch.float16: (0x6400, 10, torch.int16),
}


def _float_values_by_float16_placement(codes: torch.Tensor, fmt) -> torch.Tensor:
    """Values of int32 float ``codes`` of at most 5 exponent bits (and float16's bias when 5)
    as float32: the code's fields placed in a float16's (``fpx.convert._float16_placed``),
    converted, and scaled by 2^(15 - bias). Subnormals map to float16 subnormals, which the
    conversion keeps; NaN codes are placed by ``fmt.nan_code``.

    ``codes`` is read once: a code that several expressions read is one inductor may write out
    in full before the reduction that consumes it (on CUDA, 8 planes of E3M2 codes, unpacked
    from straddling bytes, were: 9 kernels and 167 us at M = 1 for 8192 x 8192).
    """
    m_bits = fmt.mantissa_bits
    placed = _float16_placed(codes, fmt)
    half = placed.view(torch.float16).to(torch.float32)
    if fmt.exponent_bits == 5:
        return half
    values = half * 2.0 ** (15 - fmt.bias)
    if fmt.has_nan:  # "fn": the NaN code's exponent is finite in float16
        nan_bits = fmt.nan_code << (10 - m_bits)
        values = torch.where((placed & 0x7FFF) == nan_bits, float("nan"), values)
    return values


def _float32_shift_decodes(fmt: FloatFormat) -> bool:
    """Formats :func:`_float_values_by_float32_shift` decodes: no inf or NaN codes, and fields
    that float32 placement takes (zero and subnormals, at most 8 exponent bits, a bias in
    [0, 127]): E3M2, E2M3, E2M1 and such ``exmy`` formats."""
    return not fmt.has_inf and not fmt.has_nan and _fits_float32_placement(fmt, torch.float32)


def _float_values_by_float32_shift(word: torch.Tensor, fmt: FloatFormat, *, shift: int = 0) -> torch.Tensor:
    """The code of ``fmt`` (a format :func:`_float32_shift_decodes` takes) at bit ``shift`` of
    int32 ``word``, its other bits anything, as float32, exactly, in four operations.

    Shifted left so that the code's top bit lands on bit 31 (the bits above it fall off), the
    word shifts back right arithmetically by 8 - exponent bits: exponent and mantissa land where
    float32 keeps them, the sign stays on bit 31 and fills the bits between, which one AND clears
    with the bits that were below the code (``fpx.convert._float16_placed`` does the same in a
    float16). The float32 is the code's value times 2^(bias - 127), a float32 subnormal for a
    subnormal code; one multiply by 2^(127 - bias) makes the value, as ``fpx.decode``'s float32
    placement does on CUDA. An unsigned format's exponent comes down from bit 31, one further,
    and the AND clears its copies.

    Why: the float16 placement costs int16 byte moves and a conversion. LowBitLinear's one-row
    reduction, E3M2 8192 x 8192 (sm_90a, XBLOCK 8, R0_BLOCK 32, benchmarks/sass_offline.py
    style counts): 12.5-12.7 instructions per weight by the float16 placement, 10.4-10.5 by
    this. (Decoding each code from the window of the two bytes it spans, without unpacking it
    first, counted the same: the compiler merges the unpack's shift and mask into these.)

    >>> import torch, fpx
    >>> _float_values_by_float32_shift(torch.tensor([0, 1, 4, 31, 32, 63], dtype=torch.int32), fpx.E3M2).tolist()
    [0.0, 0.0625, 0.25, 28.0, -0.0, -28.0]
    >>> _float_values_by_float32_shift(torch.tensor([0xFFFF, 0x07C0], dtype=torch.int32), fpx.E3M2, shift=6).tolist()
    [-28.0, 28.0]
    """
    keep = fmt.magnitude_mask << (23 - fmt.mantissa_bits)
    if fmt.signed:
        keep -= 1 << 31  # and bit 31, as an int32
    # The exponent's top bit goes to bit 22 + exponent bits: one below the sign, or from bit 31.
    back = 8 - fmt.exponent_bits if fmt.signed else 9 - fmt.exponent_bits
    placed = ((word << (32 - fmt.bits - shift)) >> back) & keep
    return placed.view(torch.float32) * 2.0 ** (127 - fmt.bias)


def _e8m0_values(codes: torch.Tensor) -> torch.Tensor:
    """E8M0 scale codes (uint8) as float32, exactly as ``fpx.decode(codes, E8M0)``: 2^(code -
    127) as the float32 whose exponent field is the code (bit 22 set makes code 0 the
    subnormal 2^-127 and code 255 a NaN), in five integer operations instead of fpx.decode's
    general arithmetic, so that inductor keeps the scale decode inside its consumer's kernel.
    """
    e = codes.to(torch.int32)
    ends = ((e == 0) | (e == 255)).to(torch.int32)
    return ((e << 23) | (ends << 22)).view(torch.float32)


def _int_field_values(
    word: torch.Tensor,
    bits: int,
    signed: bool,
    *,
    shift: int = 0,
    masked: bool = False,
    pattern: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The ``bits``-bit integer field at bit ``shift`` of int32 ``word`` as float32 (two's
    complement when ``signed``), exactly, in two or three operations and no int -> float
    conversion. ``masked`` clears the word's other bits first; without it they must be zero.
    ``pattern``, an int32 tensor holding the XOR pattern below (0x4B000000, with the field's
    sign bit for a signed field), replaces that constant (see
    :func:`_patterns_from_buffer_pays_off`). ``dtype`` bfloat16 or float16: the same under the
    exponent of 2^7 or 2^10, a value of that dtype (``shift + bits`` at most 7 or 10), so that
    a half-precision matmul's decode needs no float32 at all (see
    :func:`fpx.nn._decodes_in_x_dtype`).

    The field stays where it is, under the exponent of 2^23 (whose unit in the last place is
    1): the float32 whose bits are ``field << shift | 0x4B000000`` is 2^23 + 2^shift field. A
    signed field has its sign bit flipped in the same XOR: 2^23 + 2^shift (field ^ 2^(bits-1));
    times 2^-shift, minus 2^(23 - shift) + 2^(bits - 1), that is the sign-extended field (one
    fused multiply-add, exact: every step is an integer below 2^24). Needs ``shift + bits <= 23``.

    Why: a conversion (I2F) issues at a quarter of the integer rate on Hopper and sits on each
    weight's dependency chain, after a sign extension of four instructions. In the matmul
    template's decode prologue, latency-bound at one warp per scheduler, dropping both took
    INT4 8192 x 8192 from 68.2 to 58.9 us at 16 rows and 78.6-79.1 to 66.0-66.6 us at 64 (H200,
    compiled alone; 3% fewer instructions in Nsight Compute). The one-row reductions, bound by
    instruction issue, stayed at 24-29 us (docs/inductor.md).

    >>> import torch
    >>> fields = torch.arange(8, dtype=torch.int32) << 3
    >>> _int_field_values(fields, 3, signed=True, shift=3).tolist()
    [0.0, 1.0, 2.0, 3.0, -4.0, -3.0, -2.0, -1.0]
    """
    if masked:
        word = word & (((1 << bits) - 1) << shift)
    sign = 1 << (bits - 1 + shift) if signed else 0
    _, exponent, int_dtype = _UNIT_ULP[dtype]
    if pattern is None:
        pattern = _int_field_pattern(bits, signed, shift, dtype)
    placed = (word ^ pattern).to(int_dtype)  # the field's bits lie below the exponent's
    unit = 2.0**-shift
    return placed.view(dtype) * unit - (2.0**exponent + sign) * unit


def _uint_values_plus_two_pow_23(values: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integers ``values`` in [0, 2^23) as the float32 2^23 + value: their bits ORed under the
    exponent of 2^23, one integer operation and no int -> float conversion. ``dtype`` bfloat16
    or float16: values in [0, 2^7) or [0, 2^10) as 2^7 or 2^10 + value in that dtype.

    Two such floats subtract to the exact difference of their integers: LowBitLinear's compiled
    decode takes a zero-point off an unsigned code this way. The matmul template's prologue
    loads a zero-point for each weight of its tile; converted, each cost a conversion, which
    issues at a quarter of the integer rate.

    >>> import torch
    >>> codes, zero_points = torch.tensor([0, 7, 15]), torch.tensor([3, 3, 8])
    >>> (_uint_values_plus_two_pow_23(codes) - _uint_values_plus_two_pow_23(zero_points)).tolist()
    [-3.0, 4.0, 7.0]
    """
    unit_bits, _, int_dtype = _UNIT_ULP[dtype]
    return (values.to(torch.int32) | unit_bits).to(int_dtype).view(dtype)


def _int_field_pattern(bits: int, signed: bool, shift: int, dtype: torch.dtype = torch.float32) -> int:
    """The XOR pattern of :func:`_int_field_values` for a field at bit ``shift``: the exponent
    bits of 2^23 (of ``dtype``'s 2^7 or 2^10), and for a signed field its sign bit (flipped to
    offset binary)."""
    return _UNIT_ULP[dtype][0] | ((1 << (bits - 1 + shift)) if signed else 0)


def _float_fields_in_place(fmt: FloatFormat) -> bool:
    """Formats :func:`_float_field_values` decodes: 2 or 4-bit codes (whole codes per byte, at
    most 4 bits so that the two copies its multiply makes cannot overlap), no inf or NaN codes,
    and fields that float32 placement takes (zero and subnormals, a bias in [0, 127]): the
    2 and 4-bit formats of :func:`_float32_shift_decodes`."""
    return fmt.bits in (2, 4) and _float32_shift_decodes(fmt)


def _float_field_values(word: torch.Tensor, fmt: FloatFormat, *, shift: int) -> torch.Tensor:
    """The code of ``fmt`` (see :func:`_float_fields_in_place`) at bit ``shift`` of int32
    ``word`` (its other bits anything) as float32, exactly, in four operations.

    float32 placement (``fpx.convert._decode_by_float32_placement``) without moving the code
    first: one integer multiply by 2^(23 - m - shift) + 2^(32 - bits - shift) writes two copies
    of the masked code, one with its magnitude at float32's exponent and mantissa positions and
    one with its sign at bit 31 (the product wraps past 2^31, which int32 arithmetic does on
    every backend torch has); one AND keeps those bits, and one multiply by 2^(127 - bias) makes
    the value (a float32 subnormal for a subnormal code, as there). For E2M1 in LowBitLinear's
    one-row reduction: 8.45 instructions per weight against 11.4 by the float16 placement
    (benchmarks/sass_offline.py counts, sm_90a), 21.7 against 38.0 us (H200, 8192 x 8192). In
    the matmul template's prologue it is the decode that fuses (16 rows: one kernel of 65.0 us,
    where fpx.decode's stayed a decode kernel and a matmul, 145.1 us).

    >>> import torch, fpx
    >>> codes = torch.arange(16, dtype=torch.int32)
    >>> _float_field_values(codes << 4, fpx.E2M1, shift=4).tolist()[:8]
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    """
    m = fmt.mantissa_bits
    multiplier, keep = 1 << (23 - m - shift), fmt.magnitude_mask << (23 - m)
    if fmt.signed:
        multiplier += 1 << (32 - fmt.bits - shift)
        keep |= 1 << 31
    keep -= (1 << 32) if keep >> 31 else 0  # as an int32
    code = word & (((1 << fmt.bits) - 1) << shift)
    placed = (code * multiplier) & keep
    return placed.view(torch.float32) * 2.0 ** (127 - fmt.bias)


def _float_field_values_in_bfloat16(word: torch.Tensor, fmt: FloatFormat, *, shift: int) -> torch.Tensor:
    """The code of ``fmt`` (see :func:`_float_fields_in_place`) at bit ``shift`` of int32
    ``word`` (its other bits anything) as bfloat16, exactly: its magnitude masked and moved to
    bfloat16's exponent and mantissa positions, its sign to bit 15 (a constant shift each), the
    bits taken as a bfloat16 and multiplied by 2^(127 - bias) in bfloat16. A subnormal code
    places as a bfloat16 subnormal, which the multiply scales exactly; every value of a format
    that float32 placement takes is a bfloat16 (at most 3 significant bits here).

    Why: one plane of E2M1's planar bytes per matmul (``fpx.nn.LowBitLinear._plane_products``)
    decodes with no float32 arithmetic and no conversion: offline (sm_90a, a 16 x 16 x 128
    template tile, 2 warps) 8.88 instructions per weight against 10.19 by
    :func:`_float_field_values` and a conversion to bfloat16 (``benchmarks/prologue_counts.py``).

    >>> import torch, fpx
    >>> codes = torch.arange(16, dtype=torch.int32)
    >>> _float_field_values_in_bfloat16(codes << 4, fpx.E2M1, shift=4).tolist()[:8]
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    """
    if not _float_fields_in_place(fmt) or fmt.bias > 127:
        raise ValueError(f"fmt must be a format whose fields place in bfloat16, got {fmt}")
    magnitude_at = 7 - fmt.mantissa_bits  # the magnitude's lowest bit in bfloat16's bits
    magnitude = _shifted(word & (fmt.magnitude_mask << shift), magnitude_at - shift)
    if fmt.signed:
        sign_at = shift + fmt.bits - 1
        magnitude = magnitude | _shifted(word & (1 << sign_at), 15 - sign_at)
    return magnitude.to(torch.int16).view(torch.bfloat16) * 2.0 ** (127 - fmt.bias)


def _float_values_in_32_bit_lanes(codes: torch.Tensor, fmt) -> torch.Tensor:
    """Values of int32 float ``codes`` by 32-bit integer and float operations only: the
    significand (with its implicit bit) times 2^(exponent - bias - mantissa bits), the unit
    built as float32 bits. Exact for every code: the significand has at most 8 bits, and the
    caller checks that the unit is a normal float32 (true for every standard bias). Subnormals
    need no branch.
    """
    m_bits = fmt.mantissa_bits
    magnitude = codes & fmt.magnitude_mask
    exponent = magnitude >> m_bits
    significand = (magnitude & ((1 << m_bits) - 1)) | ((exponent > 0).to(torch.int32) << m_bits)
    unit = ((exponent.clamp(min=1) - (fmt.bias + m_bits) + 127) << 23).view(torch.float32)
    values = significand.to(torch.float32) * unit
    # Specials as fpx.decode (_code_to_float32) places them, then the sign on the bit pattern.
    if fmt.has_inf:
        values = torch.where(magnitude == fmt.inf_code, float("inf"), values)
        values = torch.where(magnitude > fmt.inf_code, float("nan"), values)
    elif fmt.has_nan:
        values = torch.where(magnitude == fmt.nan_code, float("nan"), values)
    bits = values.view(torch.int32)
    return torch.where((codes & fmt.sign_mask) != 0, bits | _INT32_SIGN_BIT, bits).view(torch.float32)
