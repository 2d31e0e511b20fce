"""Geometry of the two bit layouts: how many bytes, and which values land in which byte.

dense  (a little-endian bit stream, b bits per value)::

    stream bit j  = bit (j mod 8) of byte (j div 8)
    value i       = stream bits [i*b, i*b + b), least significant bit first

    eight uint3 values v0..v7 -> three bytes (bit 7 ... bit 0):
    byte 0: v2[1:0] v1[2:0] v0[2:0]
    byte 1: v5[0]   v4[2:0] v3[2:0] v2[2]
    byte 2: v7[2:0] v6[2:0] v5[2:1]

padded (k = 8 div b values per byte, never straddling a byte)::

    value i = bits [(i mod k)*b, (i mod k)*b + b) of byte (i div k)

    uint3 values (k = 2): byte j holds v[2j] in bits 2..0 and v[2j+1] in bits 5..3;
    bits 7..6 are 0.

Unused bits (the tail of the last byte, the top bits of padded bytes) are always 0. For b in
{1, 2, 4, 8} both layouts give the same bytes.
"""

from __future__ import annotations

from ._checks import check_bits, check_layout


def values_per_byte(bits: int) -> int:
    """k = 8 div bits: how many values the padded layout puts in one byte (``bits`` 1-8).

    >>> [values_per_byte(bits) for bits in range(1, 9)]
    [8, 4, 2, 2, 1, 1, 1, 1]
    """
    return 8 // check_bits(bits)


def packed_size(n, bits: int, layout: str = "dense"):
    """Number of bytes that ``n`` values of ``bits`` bits take along the packed dim.

    dense: ceil(n * bits / 8); padded: ceil(n / (8 div bits)). ``n`` may be a SymInt.

    >>> packed_size(8, 3), packed_size(8, 3, "padded"), packed_size(0, 5)
    (3, 4, 0)
    """
    check_bits(bits)
    check_layout(layout)
    if isinstance(n, bool) or (isinstance(n, int) and n < 0):
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if layout == "dense" or 8 % bits == 0:
        return (n * bits + 7) // 8
    k = values_per_byte(bits)
    return (n + k - 1) // k


def is_byte_aligned(bits: int, layout: str) -> bool:
    """True when no value straddles a byte: padded layout, or a bit width dividing 8."""
    return layout == "padded" or 8 % bits == 0
