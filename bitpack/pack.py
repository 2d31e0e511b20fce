"""pack / unpack: uint1..8 and int1..8 values <-> bytes, along any dim, in two layouts.

Both functions are written as gathers: every output element is computed from the few input
elements it depends on, with the padding expressed as a mask. So ``torch.compile`` turns each
call into a single pointwise kernel with one output buffer, whatever the length (no separate
pad or cat).
"""

from __future__ import annotations

import torch

from ._checks import (
    check_bits,
    check_integer_input,
    check_layout,
    check_tensor,
    first_bad_value,
    normalize_dim,
)
from .layout import is_byte_aligned, packed_size, values_per_byte


def value_range(bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive range of a ``bits``-bit value: [0, 2**bits - 1] or two's complement."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _check_values_in_range(x: torch.Tensor, bits: int, signed: bool) -> None:
    if x.dtype == torch.bool or x.numel() == 0:
        return
    low, high = value_range(bits, signed)
    wide = x if x.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8) else x.to(torch.int64)
    bad = (wide < low) | (wide > high)
    if bool(bad.any()):
        value, index = first_bad_value(wide, bad)
        kind = f"int{bits}" if signed else f"uint{bits}"
        raise ValueError(
            f"x has value {value} at index {index}, outside the {kind} range [{low}, {high}]; "
            "pass check=False to skip this check and keep only the low bits of each value"
        )


def _low_bits(x: torch.Tensor, bits: int) -> torch.Tensor:
    """The low ``bits`` bits of every element, as int32 (two's complement for negatives)."""
    if x.dtype == torch.bool:
        return x.to(torch.int32)
    if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        x = x.to(torch.int64)  # uint16/32/64 have few kernels; int64 keeps their low bits
    return x.to(torch.int32) & ((1 << bits) - 1)


def pack(
    x: torch.Tensor,
    bits: int,
    *,
    dim: int = -1,
    layout: str = "dense",
    signed: bool = False,
    check: bool = True,
) -> torch.Tensor:
    """Pack ``bits``-bit integers along ``dim`` into a ``torch.uint8`` tensor.

    Contract:
      - ``x``: any integer dtype, or bool. Unsigned values must lie in [0, 2**bits); with
        ``signed=True``, two's-complement values in [-2**(bits-1), 2**(bits-1)).
      - ``bits``: 1..8. ``layout``: "dense" (one little-endian bit stream, ceil(n*bits/8)
        bytes) or "padded" (8 div bits values per byte, ceil(n / (8 div bits)) bytes).
        See :mod:`bitpack.layout` for the bit-exact pictures; unused bits are 0.
      - Returns a contiguous uint8 tensor shaped like ``x`` with ``x.shape[dim]`` replaced
        by ``packed_size(x.shape[dim], bits, layout)``. Non-contiguous inputs are fine.
        Empty inputs give empty outputs; a 0-d input is a ValueError (reshape it to (1,)).
      - ``check=True`` (eager only) raises ValueError quoting the first out-of-range value
        and its index; it costs one reduction and a host sync. With ``check=False``, and
        always under ``torch.compile``, each value is masked to its low ``bits`` bits, so a
        bad value never spills into its neighbours.

    Eight uint3 values make three bytes (dense), or four (padded):

    >>> import torch
    >>> x = torch.tensor([1, 2, 3, 4, 5, 6, 7, 0])
    >>> pack(x, 3).tolist()
    [209, 88, 31]
    >>> unpack(pack(x, 3), 3, n=8).tolist()
    [1, 2, 3, 4, 5, 6, 7, 0]
    >>> pack(x, 3, layout="padded").tolist()
    [17, 35, 53, 7]
    >>> pack(torch.tensor([-1, 0, 1]), 2, signed=True).tolist()
    [19]
    """
    check_tensor(x, "x")
    check_integer_input(x, "x")
    bits = check_bits(bits)
    check_layout(layout)
    dim = normalize_dim(dim, x.ndim)
    if check and not torch.compiler.is_compiling():
        _check_values_in_range(x, bits, signed)

    values = _low_bits(x, bits).movedim(dim, -1)
    n = values.shape[-1]
    byte_index = torch.arange(packed_size(n, bits, layout), device=x.device, dtype=_index_dtype(n))

    if is_byte_aligned(bits, layout):
        k = values_per_byte(bits)
        first = byte_index * k
        packed = 0
        for t in range(k):
            packed = packed | (_gather_or_zero(values, first + t, n) << (t * bits))
    else:
        # Byte j covers stream bits [8j, 8j+8): the value holding bit 8j, then the following
        # ones. The first may start before the byte (shift right); the rest start inside it.
        first_bit = byte_index * 8
        first = first_bit // bits
        packed = _gather_or_zero(values, first, n) >> (first_bit - first * bits)
        for t in range(1, (7 // bits) + 2):
            index = first + t
            packed = packed | (_gather_or_zero(values, index, n) << (index * bits - first_bit))
    return (packed & 0xFF).to(torch.uint8).movedim(-1, dim).contiguous()


def _index_dtype(n) -> torch.dtype:
    """int32 index math where bit offsets (8 * n) fit, which keeps the kernels in 32-bit ops."""
    return torch.int32 if n < 2**27 else torch.int64


def _gather_or_zero(values: torch.Tensor, index: torch.Tensor, n) -> torch.Tensor:
    """values[..., index] where index < n, else 0 (the padding)."""
    safe = torch.clamp(index, max=n - 1)
    return torch.where(index < n, values[..., safe], 0)


def unpack(
    packed: torch.Tensor,
    bits: int,
    n: int,
    *,
    dim: int = -1,
    layout: str = "dense",
    signed: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Unpack ``n`` values of ``bits`` bits along ``dim`` from a uint8 tensor made by :func:`pack`.

    Contract:
      - ``packed``: torch.uint8 with ``packed.shape[dim] == packed_size(n, bits, layout)``.
      - ``n``: the original length along ``dim`` (needed because the last byte may hold
        padding). ``bits``, ``dim``, ``layout`` and ``signed`` as given to :func:`pack`.
      - Returns ``packed``'s shape with ``shape[dim]`` replaced by ``n``, contiguous, in
        ``dtype`` (default uint8, or int8 when ``signed``). ``dtype`` may be any integer or
        floating dtype that holds every value (bool for unsigned 1-bit values).
        Signed values are sign-extended. Padding bits are ignored.

    >>> import torch
    >>> p = pack(torch.tensor([[1, -2, 3], [-4, 0, 2]]), 3, dim=0, signed=True)
    >>> p.shape
    torch.Size([1, 3])
    >>> unpack(p, 3, n=2, dim=0, signed=True).tolist()
    [[1, -2, 3], [-4, 0, 2]]
    """
    check_tensor(packed, "packed")
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed must be a torch.uint8 tensor, got {packed.dtype}")
    bits = check_bits(bits)
    check_layout(layout)
    dim = normalize_dim(dim, packed.ndim)
    dtype = _output_dtype(dtype, bits, signed)
    if not torch.compiler.is_compiling():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        expected = packed_size(n, bits, layout)
        if packed.shape[dim] != expected:
            raise ValueError(
                f"n={n} values of {bits} bits take {expected} bytes in the {layout} layout, "
                f"but packed.shape[{dim}] is {packed.shape[dim]}"
            )

    source = packed.movedim(dim, -1).to(torch.int32)
    value_index = torch.arange(n, device=packed.device, dtype=_index_dtype(n))
    mask = (1 << bits) - 1
    if is_byte_aligned(bits, layout):
        k = values_per_byte(bits)
        values = (source[..., value_index // k] >> ((value_index % k) * bits)) & mask
    else:
        # A value may straddle two bytes: read the byte holding its first bit and the next one
        # (clamped at the end, where a value never straddles), as one 16-bit little-endian word.
        first_bit = value_index * bits
        low_byte = first_bit // 8
        high_byte = torch.clamp(low_byte + 1, max=source.shape[-1] - 1)
        word = source[..., low_byte] | (source[..., high_byte] << 8)
        values = (word >> (first_bit % 8)) & mask
    if signed:
        values = values - ((values >> (bits - 1)) << bits)
    return values.to(dtype).movedim(-1, dim).contiguous()


def _output_dtype(dtype, bits: int, signed: bool) -> torch.dtype:
    if dtype is None:
        return torch.int8 if signed else torch.uint8
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
    if dtype.is_complex:
        raise TypeError(f"dtype must be an integer, bool or floating dtype, got {dtype}")
    low, high = value_range(bits, signed)
    if dtype == torch.bool:
        if (low, high) != (0, 1):
            raise ValueError(f"dtype=torch.bool holds only unsigned 1-bit values, got bits={bits}, signed={signed}")
    elif not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        if low < info.min or high > info.max:
            raise ValueError(
                f"dtype={dtype} cannot hold {'signed' if signed else 'unsigned'} {bits}-bit values "
                f"[{low}, {high}]"
            )
    return dtype
