"""Packed storage of FP6 and FP4 codes: 4 FP6 codes in 3 bytes, 2 FP4 codes per byte.

Both are :func:`bitpack.pack` in the dense layout (one little-endian bit stream), so the bytes
are exactly those pictured in :mod:`bitpack.layout`. For FP4 that puts element 0 in the low
nibble, the order of ``torch.float4_e2m1fn_x2``: packed E2M1 codes can be reinterpreted as that
dtype with ``.view(torch.float4_e2m1fn_x2)``. FP8 codes need no packing: they are bytes, and view
as ``torch.float8_e4m3fn`` / ``torch.float8_e5m2`` / ``torch.float8_e8m0fnu`` as they are.

>>> import torch
>>> from fpx import E2M1, encode, decode
>>> codes = encode(torch.tensor([0.5, -1.0, 6.0]), E2M1)
>>> packed = pack_fp4(codes)
>>> packed.tolist()                          # (0xA << 4 | 0x1), then 0x7 and a zero nibble
[161, 7]
>>> decode(unpack_fp4(packed, n=3), E2M1).tolist()
[0.5, -1.0, 6.0]
"""

from __future__ import annotations

import torch

import bitpack


def _check_codes(codes, name: str = "codes") -> None:
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(codes).__name__}")
    if codes.dtype != torch.uint8:
        raise TypeError(f"{name} must be a torch.uint8 tensor of codes, got {codes.dtype}")


def pack_fp6(codes: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Pack 6-bit codes (E3M2, E2M3, any 6-bit format) along ``dim``: 4 codes -> 3 bytes.

    Contract: ``codes`` is uint8 with values in [0, 64) (a ValueError quotes the first one
    outside, in eager mode); any length n along ``dim``, which becomes ceil(6 n / 8).
    Returns contiguous uint8. The layout is bitpack's dense bit stream (bits=6).

    >>> import torch
    >>> pack_fp6(torch.tensor([1, 2, 3, 4], dtype=torch.uint8)).tolist()
    [129, 48, 16]
    """
    _check_codes(codes)
    return bitpack.pack(codes, 6, dim=dim, layout="dense")


def unpack_fp6(packed: torch.Tensor, n: int, *, dim: int = -1) -> torch.Tensor:
    """Unpack ``n`` 6-bit codes along ``dim`` from bytes made by :func:`pack_fp6`; uint8 codes.

    >>> import torch
    >>> unpack_fp6(torch.tensor([129, 48, 16], dtype=torch.uint8), n=4).tolist()
    [1, 2, 3, 4]
    """
    _check_codes(packed, "packed")
    return bitpack.unpack(packed, 6, n, dim=dim, layout="dense")


def pack_fp4(codes: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Pack 4-bit codes (E2M1) along ``dim``, two per byte, element 0 in the low nibble.

    Contract: ``codes`` is uint8 with values in [0, 16) (ValueError otherwise, eager mode); any
    length n along ``dim``, which becomes ceil(n / 2); an odd n leaves the last high nibble 0.
    Returns contiguous uint8; along the last dim it views as ``torch.float4_e2m1fn_x2``.

    >>> import torch
    >>> pack_fp4(torch.tensor([0x1, 0xA, 0x7], dtype=torch.uint8)).tolist()
    [161, 7]
    """
    _check_codes(codes)
    return bitpack.pack(codes, 4, dim=dim, layout="dense")


def unpack_fp4(packed: torch.Tensor, n: int, *, dim: int = -1) -> torch.Tensor:
    """Unpack ``n`` 4-bit codes along ``dim`` from bytes made by :func:`pack_fp4`; uint8 codes.

    Accepts ``torch.float4_e2m1fn_x2`` tensors too (read as their bytes).

    >>> import torch
    >>> unpack_fp4(torch.tensor([161, 7], dtype=torch.uint8), n=3).tolist()
    [1, 10, 7]
    """
    if isinstance(packed, torch.Tensor) and packed.dtype == getattr(torch, "float4_e2m1fn_x2", None):
        packed = packed.view(torch.uint8)
    _check_codes(packed, "packed")
    return bitpack.unpack(packed, 4, n, dim=dim, layout="dense")
