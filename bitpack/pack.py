"""pack / unpack: uint1..8 and int1..8 values <-> bytes, along any dim, in two layouts.

Every output element is computed from the few input elements it depends on, read at offsets
that are plain index arithmetic for inductor, with the padding expressed as ``F.pad`` (a masked
load inside the consuming kernel) rather than a clamped gather and a select. So
``torch.compile`` turns each call into a single pointwise kernel with one output buffer, whatever
the length (no separate pad or cat).

When the length is a multiple of 8, eight values fill a whole number of bytes in either layout,
and both functions work on (..., groups, per group) views: the offsets inside a group are
constants, and the output is a view of the (..., groups, per group) buffer. Other lengths use the
flat form, whose indices need a division by the bit width per element (slower on CPU). The dense
3/5/6/7-bit stream of 1-byte values contiguous along the packed dim, 32 at a time, goes through
int32 words instead (:mod:`bitpack.words`: about twice the bandwidth on an H100), and 1-bit
values, 8 at a time, through int64 words. On CPU the 3/5/6/7-bit stream goes 64 values at a
time through int64 words, in two loops with a buffer of chunks between them (2-5x the byte
form's bandwidth), and 2/4-bit values and the padded 3-bit layout through int64 words too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.fx.experimental.symbolic_shapes import statically_known_true

from ._checks import (
    check_bits,
    check_flag,
    check_integer_input,
    check_layout,
    check_tensor,
    first_bad_value,
    normalize_dim,
)
from .layout import is_byte_aligned, packed_size, values_per_byte
from . import words as _words  # words_pay_off looked up at call time: tests patch it
from .words import GROUP as WORD_GROUP
from .words import (
    pack_bit_words,
    pack_gather_stream,
    pack_gather_words,
    pack_padded3_gather,
    pack_padded3_words,
    pack_words,
    unpack_padded3_spread,
    unpack_padded3_words,
    unpack_spread_stream,
    unpack_spread_words,
    unpack_words,
    words_fit,
)


def value_range(bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive range of a ``bits``-bit value (``bits`` 1-8): [0, 2**bits - 1], or with
    ``signed`` two's complement.

    >>> value_range(3, False), value_range(3, True)
    ((0, 7), (-4, 3))
    """
    check_bits(bits)
    if check_flag(signed, "signed"):
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
    """The low ``bits`` bits of every element, as uint8 (two's complement for negatives).

    Converting to uint8 keeps the low 8 bits (a wrapping cast), and uint8 lanes are the
    cheapest for the shifts and ORs that follow.
    """
    if x.dtype == torch.bool:
        return x.to(torch.uint8)
    if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        x = x.to(torch.int64)  # uint16/32/64 have few kernels; int64 keeps their low bits
    x = x.to(torch.uint8)
    return x if bits == 8 else x & ((1 << bits) - 1)


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
      - On CUDA, uint8/int8 values contiguous along ``dim`` (the last dim) in whole groups of
        32 are packed through int32 words (:mod:`bitpack.words`); on every device 1-bit values
        in whole groups of 8, and on CPU 2 and 4-bit values in whole int32 words of the
        stream, the dense 3/5/6/7-bit stream in whole groups of 64 and padded 3-bit values in
        whole groups of 8, through int64 words. Under ``torch.compile`` their storage offset
        must then be a multiple of 4 (int64 words: 8), as it is for every tensor torch
        allocates; a contiguous slice starting inside a word (``buf[1:33]``) fails to compile
        with torch's message about viewing Byte as Int (or Long): pass ``.clone()`` of it.

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
    check_flag(signed, "signed")
    check_flag(check, "check")
    dim = normalize_dim(dim, x.ndim)
    if check and not torch.compiler.is_compiling():
        _check_values_in_range(x, bits, signed)

    words = _pack_in_words(x, bits, layout, dim)
    if words is not None:
        return words
    values = _low_bits(x, bits).movedim(dim, -1)
    if is_byte_aligned(bits, layout):
        return _pack_aligned(values, bits).movedim(-1, dim).contiguous()
    return _place(*_pack_stream(values, bits), dim)


def _pack_in_words(x: torch.Tensor, bits: int, layout: str, dim: int) -> torch.Tensor | None:
    """pack through int32 words (:mod:`bitpack.words`) when the form and the bytes allow it,
    else None. The word kernels keep each byte's low ``bits`` bits, as _low_bits would."""
    if x.dtype not in (torch.uint8, torch.int8):
        return None
    raw = x.movedim(dim, -1)
    if _word_form(bits, layout, x.device, packing=True) and words_fit(raw, WORD_GROUP):
        packed = _as_one_stream(raw, lambda r: pack_words(r.view(torch.int32), bits).view(torch.uint8))
        return _place(packed, False, dim)
    if _padded3_word_form(bits, layout, x.device) and words_fit(raw, 8):
        return _place(pack_padded3_words(raw.view(torch.int32)).view(torch.uint8), False, dim)
    if bits == 1 and words_fit(raw, 8, word_bytes=8):  # every device: see pack_bit_words
        return _place(pack_bit_words(raw.view(torch.int64)), False, dim)
    # Elsewhere (CPU) 2, 3, 5, 6 and 7 bits, 64 values at a time, into int64 words of the stream;
    if _stream_form(bits, layout, x.device, packing=True) and words_fit(raw, STREAM_GROUP, word_bytes=8):
        packed = _as_one_stream(raw, lambda r: pack_gather_stream(r.view(torch.int64), bits).view(torch.uint8))
        return _place(packed, False, dim)
    # 2 and 4 bits gathered from int64 words of 8 values into int32 words; the padded 3-bit
    # layout 8 values at a time into int32 words.
    if not _words.words_pay_off(x.device) and bits in (2, 4) and words_fit(raw, 32 // bits, word_bytes=8):
        packed = _as_one_stream(raw, lambda r: pack_gather_words(r.view(torch.int64), bits).view(torch.uint8))
        return _place(packed, False, dim)
    if _padded3_gather_form(bits, layout, x.device) and words_fit(raw, 8, word_bytes=8):
        return _place(pack_padded3_gather(raw.view(torch.int64)).view(torch.uint8), False, dim)
    return None


STREAM_GROUP = 64  # values per group of the CPU stream form: 8 int64 words in, ``bits`` out


def _stream_form(bits: int, layout: str, device: torch.device, packing: bool) -> bool:
    """Whether the dense 3/5/6/7-bit stream (and 2-bit values, to pack) goes through int64 words
    64 values at a time (:func:`bitpack.words.pack_gather_stream`,
    :func:`~bitpack.words.unpack_spread_stream`): where the int32 word form does not pay off
    (CPU). On the 2-core CPU, 16 MiB compiled, of clone: pack 0.06-0.12x byte at a time ->
    0.26-0.44x, unpack 0.11-0.17x -> 0.25-0.40x. 2 bits, against int32 words gathered from two
    int64 words each (:func:`~bitpack.words.pack_gather_words`): pack 0.26-0.34x -> 0.36-0.46x;
    their unpack keeps :func:`~bitpack.words.unpack_spread_words` (0.45-0.51x, 0.29-0.33x this
    way), and 1 and 4 bits their forms both ways (1-bit pack 1.28x, 0.55x this way; 4-bit pack
    0.86x, 0.23x)."""
    if _words.words_pay_off(device) or not (layout == "dense" or 8 % bits == 0):
        return False
    return bits in ((2, 3, 5, 6, 7) if packing else (3, 5, 6, 7))


def _padded3_gather_form(bits: int, layout: str, device: torch.device) -> bool:
    """Whether the padded 3-bit layout goes through int64 words of 8 values
    (:func:`bitpack.words.pack_padded3_gather`, :func:`~bitpack.words.unpack_padded3_spread`):
    where the int32 word form does not pay off (CPU). On the 2-core CPU, 16 MiB compiled, of
    clone: pack 0.09-0.17x byte at a time -> 0.93-0.96x, unpack 0.14-0.26x -> 0.90x."""
    return not _words.words_pay_off(device) and bits == 3 and layout == "padded"


def _unpack_in_words(source: torch.Tensor, n, bits: int, layout: str, signed: bool, dtype, dim: int):
    """unpack of ``n`` values from ``source`` (the packed dim last) through int32 words, or None
    (see above). ``n`` must fill the words exactly: the last byte of 31 3-bit values ends a
    word too, but the word form would make 32 values of it."""
    if dtype != (torch.int8 if signed else torch.uint8):
        return None
    if _word_form(bits, layout, source.device, packing=False) and _whole_groups(n, WORD_GROUP):
        if words_fit(source, 4 * bits):
            values = _as_one_stream(source, lambda r: unpack_words(r.view(torch.int32), bits, signed).view(dtype))
            return _place(values, False, dim)
    if _padded3_word_form(bits, layout, source.device) and _whole_groups(n, 8):
        if words_fit(source, 4):
            return _place(unpack_padded3_words(source.view(torch.int32), signed).view(dtype), False, dim)
    # Elsewhere (CPU) 1, 2 and 4 bits spread from int32 words into int64 words of 8 values.
    if not _words.words_pay_off(source.device) and bits in (1, 2, 4) and _whole_groups(n, 32 // bits):
        if words_fit(source, 4):
            values = _as_one_stream(source, lambda r: unpack_spread_words(r.view(torch.int32), bits, signed).view(dtype))
            return _place(values, False, dim)
    # and 3, 5, 6 and 7 bits from int64 words of the stream, 64 values at a time; the padded
    # 3-bit layout from int32 words, 8 values at a time.
    if _stream_form(bits, layout, source.device, packing=False) and _whole_groups(n, STREAM_GROUP):
        if words_fit(source, bits * STREAM_GROUP // 8, word_bytes=8):
            values = _as_one_stream(source, lambda r: unpack_spread_stream(r.view(torch.int64), bits, signed).view(dtype))
            return _place(values, False, dim)
    if _padded3_gather_form(bits, layout, source.device) and _whole_groups(n, 8) and words_fit(source, 4):
        return _place(unpack_padded3_spread(source.view(torch.int32), signed).view(dtype), False, dim)
    return None


def _as_one_stream(rows: torch.Tensor, word_form) -> torch.Tensor:
    """``word_form`` (bytes in, bytes out, along the last dim) of ``rows``, each a whole number
    of word groups: contiguous rows go in as one flat stream and the result is reshaped to rows
    after its byte view. Inductor's index arithmetic per word is then that of one flat index,
    not a row and a column: about half the instructions of the word kernels at 3-7 bits (SASS
    for sm_90a, benchmarks/sass_offline.py). No rows (a zero-size leading dim) go in as they
    are: a flat empty stream could not be reshaped back to rows of the output's length."""
    if not rows.is_contiguous() or rows.numel() == 0:
        return word_form(rows)
    return word_form(rows.reshape(-1)).reshape(*rows.shape[:-1], -1)


def _padded3_word_form(bits: int, layout: str, device: torch.device) -> bool:
    """The padded 3-bit layout (2 values per byte) in words, on CUDA: H100 unpack 0.59-0.61x of
    clone byte at a time (see _word_form for why CUDA only)."""
    return _words.words_pay_off(device) and bits == 3 and layout == "padded"


def _word_form(bits: int, layout: str, device: torch.device, packing: bool) -> bool:
    """Whether this stream goes through int32 words (:mod:`bitpack.words`) when the bytes fit.

    CUDA only: on an H100 the word form ran the dense 3/5/6/7-bit stream at 0.72-1.01x of
    clone() against 0.34-0.49x byte at a time, and 2- and 4-bit at 0.96-1.03x against
    0.72-0.85x; on CPU inductor's C++ kernels of the word form (loads at run-time indices) were
    about 2x slower than the grouped byte form's constant offsets (benchmarks/RESULTS.md).
    1-bit pack takes int64 words instead, on every device (:func:`bitpack.words.pack_bit_words`,
    0.98x; 0.71x byte at a time, 0.38x as int32 words, which OR 8 chunks per word; on CPU 3.8x
    faster than byte at a time); 1-bit unpack takes the int32 words (1.18x against 0.77x). The
    padded 3/5/6/7 bits are not a stream.
    """
    if not _words.words_pay_off(device) or bits == 8 or (packing and bits == 1):
        return False
    return layout == "dense" or 8 % bits == 0


def _pack_aligned(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Padded layout, or bits dividing 8: byte j is the OR of values kj .. kj+k-1 (k per byte).

    Padding with zeros to whole bytes and viewing (..., bytes, k) makes every read a plain load
    at a fixed offset (k * j + t); inductor folds the pad into those loads as a mask.
    """
    n = values.shape[-1]
    k = values_per_byte(bits)
    size = (n + k - 1) // k
    groups = F.pad(values, (0, size * k - n)).unflatten(-1, (size, k))
    packed = groups[..., 0]
    for t in range(1, k):
        packed = packed | (groups[..., t] << (t * bits))
    return packed


def _pack_stream(values: torch.Tensor, bits: int) -> tuple[torch.Tensor, bool]:
    """Dense layout for bits 3, 5, 6, 7: each byte gathers the values that overlap it.

    Byte j covers stream bits [8j, 8j+8): the value holding bit 8j (it may start before the
    byte: shift right), then the following ones (shift left; those starting past the byte
    land above bit 7). Eight values make exactly ``bits`` bytes, so when the length is a whole
    number of groups of 8 the bytes are computed as (..., groups, bits) from a (..., groups, 8)
    view of the values: the offsets inside a group are constants, and the C++ kernel is a plain
    loop over groups with a constant inner loop (3x faster on CPU than the flat form below,
    whose every index needs a division by ``bits``). Returns the bytes and whether they come
    grouped.
    """
    n = values.shape[-1]
    groups = (n + 7) // 8
    values = values.to(torch.int32)  # shifts up to 14 bits wide
    grouped = _whole_groups(n)
    if grouped:
        values = values.unflatten(-1, (groups, 8))
        byte_index = torch.arange(bits, device=values.device, dtype=torch.int32)
    else:
        # Zeros past the last value, and room for the reads of the last byte past them.
        values = F.pad(values, (0, 8 * groups + 8 - n))
        byte_index = torch.arange(packed_size(n, bits), device=values.device, dtype=_index_dtype(n))
    first_bit = byte_index * 8
    first = first_bit // bits
    offset = first_bit - first * bits
    packed = values[..., first] >> offset
    for t in range(1, 7 // bits + 2):
        index = first + t
        if grouped:
            # Past the group's last value the shift is >= 8: read that one again instead (a
            # constant offset); the & 0xFF drops it.
            index = torch.clamp(index, max=7)
        packed = packed | (values[..., index] << (t * bits - offset))
    return (packed & 0xFF).to(torch.uint8), grouped


def _whole_groups(n, size: int = 8) -> bool:
    """True when ``n`` is known (without a guard on a symbolic length) to be a multiple of
    ``size``."""
    return statically_known_true(n % size == 0)


def _place(out: torch.Tensor, grouped: bool, dim: int) -> torch.Tensor:
    """Move the last dim of ``out`` (the last two when ``grouped``: groups, then the elements of
    one group) back to ``dim``, contiguous. Grouped, the kernel writes (..., groups, per group)
    and the result is a view of that buffer with the two dims merged."""
    if grouped:
        return out.movedim((-2, -1), (dim, dim + 1)).contiguous().flatten(dim, dim + 1)
    return out.movedim(-1, dim).contiguous()


def _index_dtype(n) -> torch.dtype:
    """int32 index math where bit offsets (8 * n) fit, which keeps the kernels in 32-bit ops."""
    return torch.int32 if n < 2**27 else torch.int64


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
      - On CUDA, uint8 (int8 when ``signed``) outputs of a stream contiguous along ``dim`` in
        whole words go through int32 words, and on CPU those of 1, 2 and 4 bits (into int64
        words), of the dense 3/5/6/7-bit stream in whole groups of 64 values and of padded
        3-bit values in whole groups of 8 (from int64 and int32 words), with the
        storage-offset condition of :func:`pack` under ``torch.compile``.

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
    check_flag(signed, "signed")
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

    source = packed.movedim(dim, -1)
    if values_per_byte(bits) == 1 and (bits == 8 or layout == "padded"):
        # One value per byte: a copy, masked, sign-extended in uint8 lanes (wrapping) and
        # reinterpreted as int8 when signed. The general form below computes a shift of 0 per
        # value from its index, which kept inductor's C++ kernel scalar (2-core CPU, 16 MiB,
        # compiled: 8 bits 19 GB/s, now 71, clone 58-74; padded 5-7 bits 15-17 GB/s).
        values = packed  # elementwise: no dim to move
        if bits < 8:
            values = packed & ((1 << bits) - 1)
            if signed:
                values = (values ^ (1 << (bits - 1))) - (1 << (bits - 1))
        values = values.view(torch.int8) if signed else values
        return values.to(dtype, memory_format=torch.contiguous_format, copy=True)
    words = _unpack_in_words(source, n, bits, layout, signed, dtype, dim)
    if words is not None:
        return words
    grouped = _whole_groups(n)
    if grouped:
        # Eight values fill a whole number of bytes in either layout: read (..., groups, bytes
        # per group) and write (..., groups, 8), so the offsets are constants (see _pack_stream).
        source = source.unflatten(-1, (n // 8, packed_size(8, bits, layout)))
        index = torch.arange(8, device=packed.device, dtype=torch.int32)
    else:
        index = torch.arange(n, device=packed.device, dtype=_index_dtype(n))
    if layout == "dense":
        first_bit = index * bits
    else:
        k = values_per_byte(bits)
        first_bit = (index // k) * 8 + (index % k) * bits
    if is_byte_aligned(bits, layout):
        # Bytes hold whole values: uint8 lanes suffice (4x the lanes of int32 on CPU).
        values = (source[..., first_bit // 8] >> (first_bit % 8).to(torch.uint8)) & ((1 << bits) - 1)
    else:
        # A value may straddle two bytes: the one holding its first bit and the one holding its
        # last (the same byte when it does not straddle), read as a 16-bit little-endian word.
        word = source[..., first_bit // 8].to(torch.int32)
        word = word | (source[..., (first_bit + bits - 1) // 8].to(torch.int32) << 8)
        values = (word >> (first_bit % 8)) & ((1 << bits) - 1)
    if signed:
        sign = 1 << (bits - 1)
        values = (values.to(torch.int32) ^ sign) - sign
    return _place(values.to(dtype), grouped, dim)


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
