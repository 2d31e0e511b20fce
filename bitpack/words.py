"""The dense stream of 1..7-bit values, 32 values at a time, in int32 words.

A byte-at-a-time kernel of the 3/5/6/7-bit stream gathers 2-4 single-byte loads per output
byte and runs at about half of the memory bandwidth on an H100. Here the 32 values of a group
are 8 int32 words (the uint8 values read through a dtype view, 4 per word, little-endian) and
come out as ``bits`` int32 words of the stream; unpack is the inverse. Each word's 4 values
are compressed to (or expanded from) 4 * bits contiguous stream bits by two SWAR steps, with
no per-value loads.

The 1-bit pack folds the 8 values of each output byte, read as one int64, in
:func:`pack_bit_words`. On CPU, unpack of 1, 2 and 4 bits spreads each int32 word of the stream
into int64 words of 8 values (:func:`unpack_spread_words`), and pack of 2 and 4 bits gathers
int64 words of 8 values into int32 words (:func:`pack_gather_words`); the dense 3/5/6/7-bit
stream goes 64 values at a time between int64 words of 8 values and ``bits`` int64 words of
the stream (:func:`pack_gather_stream`, :func:`unpack_spread_stream`). The padded 3-bit layout
(2 values per byte) has its own pairs, :func:`pack_padded3_words` and
:func:`unpack_padded3_words` (CUDA: 2 input words per output word, at constant offsets), and
:func:`pack_padded3_gather` and :func:`unpack_padded3_spread` (CPU: an int64 of 8 values per
int32 of 4 bytes).

Used by :func:`bitpack.pack` (1-byte integer inputs) and :func:`bitpack.unpack` (uint8 or int8
outputs) when the bytes lie contiguous along the packed dim in whole groups of 32 values
(:func:`words_fit`); they give the same bytes as the byte-at-a-time form.

>>> import torch
>>> values = torch.arange(32, dtype=torch.uint8) % 8
>>> words = pack_words(values.view(torch.int32), 3)
>>> words.shape, words.dtype
(torch.Size([3]), torch.int32)
>>> torch.equal(unpack_words(words, 3).view(torch.uint8), values)
True
"""

from __future__ import annotations

import sys

import torch
from torch.fx.experimental.symbolic_shapes import statically_known_true

GROUP = 32  # values per group: 8 input words of 4 values, ``bits`` output words


def words_pay_off(device: torch.device) -> bool:
    """Whether the word forms are the faster ones on ``device``: CUDA. On CPU inductor's C++
    kernels of the word forms (loads at run-time indices) ran about 2x slower than the byte
    forms' constant offsets (benchmarks/RESULTS.md)."""
    return device.type == "cuda"


def words_fit(t: torch.Tensor, multiple: int, word_bytes: int = 4) -> bool:
    """True when the last dim of ``t`` (1-byte elements) can be read as words of
    ``word_bytes`` elements (4: int32, 8: int64): a non-zero multiple of ``multiple`` long (32
    values to pack, 4 * bits bytes to unpack, 8 values for :func:`pack_bit_words`), unit
    stride, every other stride in whole words, and the first element's address too (eager
    reads ``data_ptr()``: a tensor can sit at offset 0 of a storage that itself starts
    inside a word, as ``torch.from_numpy`` of a sliced array does).

    Under ``torch.compile`` neither the address nor the storage offset can be read while
    tracing (dynamo does not trace ``storage_offset()``), so there the tensor must also be
    contiguous, and its address is taken to be whole words, as it is for every tensor torch
    allocates (their storage starts on a 256-byte boundary or wider). A contiguous 1-byte
    slice that starts inside a word fails to compile with torch's message about viewing Byte
    as Int; ``.clone()`` it (see the docstrings of pack and unpack).
    """
    if sys.byteorder != "little" or t.element_size() != 1 or t.ndim == 0:
        return False
    n = t.shape[-1]
    aligned = [n % multiple == 0, n > 0, t.stride(-1) == 1]
    # torch asks whole-word strides of size-1 dims too
    aligned += [stride % word_bytes == 0 for stride in t.stride()[:-1]]
    if not all(statically_known_true(condition) for condition in aligned):
        return False
    if torch.compiler.is_compiling():
        return t.is_contiguous()
    return t.data_ptr() % word_bytes == 0


def _lane_masks(bits: int) -> tuple[int, int]:
    """Masks of ``bits`` low bits in each 16-bit lane, and of ``2 * bits`` low bits."""
    low = (1 << bits) - 1
    return low | (low << 16), (1 << (2 * bits)) - 1


def compress(words: torch.Tensor, bits: int) -> torch.Tensor:
    """int32 words of 4 byte values -> their low ``bits`` bits each, side by side (4 * bits
    stream bits, low value first). Bits above ``bits`` in a byte are dropped."""
    pair, low2 = _lane_masks(bits)
    # Bytes 1 and 3 move down next to bytes 0 and 2 (two values per 16-bit lane) ...
    words = (words & pair) | ((words >> (8 - bits)) & (pair << bits))
    # ... then the high lane next to the low one.
    return (words & low2) | ((words >> (16 - 2 * bits)) & (low2 << (2 * bits)))


def expand(chunks: torch.Tensor, bits: int) -> torch.Tensor:
    """The inverse of :func:`compress`: 4 * bits stream bits -> 4 byte values in an int32."""
    pair, low2 = _lane_masks(bits)
    chunks = (chunks & low2) | ((chunks << (16 - 2 * bits)) & (low2 << 16))
    return (chunks & pair) | ((chunks << (8 - bits)) & (pair << 8))


def chunks_per_word(bits: int) -> int:
    """The most chunks (4 values, 4 * bits stream bits) that overlap one 32-bit output word."""
    width = 4 * bits
    return max(len({b // width for b in range(32 * o, 32 * o + 32)}) for o in range(bits))


def pack_words(words: torch.Tensor, bits: int) -> torch.Tensor:
    """(..., 8 G) int32 words of byte values -> (..., bits G) int32 words of the dense stream.

    Output word o of a group holds stream bits [32 o, 32 o + 32): the OR of the chunks j0 + t
    for t < chunks_per_word (j0 = 8 o div bits, the chunk holding bit 32 o). Chunk j0 is
    shifted right by s = 32 o - 4 bits j0 (< 4 bits: its low s bits belong to the word
    before), chunk j0 + t left by 4 bits t - s. Chunks are non-negative (at most 28 bits), so
    the right shift is logical; where a left shift could reach 32 it is split in two, the
    first by a constant, so that each stays in [0, 31] and a total of 32 or more clears the
    chunk: a chunk past the word, or one past the group (its index wrapped by & 7 to a chunk
    of the same group, whose bits are shifted out all the same). The indices and shifts
    depend only on o, so inductor computes them from the output index; no value is loaded
    twice per word.

    Against the earlier form (each chunk shifted by its own clamped amount, kept by a
    validity mask and a select) and with bitpack.pack handing it contiguous rows as one flat
    stream, whose per-word index arithmetic is simpler, the kernel has 36-57% fewer
    instructions at 3, 5, 6 and 7 bits: 10.5 -> 6.7, 21.0 -> 9.1, 13.3 -> 8.1, 16.4 -> 10.6
    per input byte (SASS for sm_90a, benchmarks/sass_offline.py). Those kernels ran at the same
    GB/s on an H100 and an H200, bound by instruction issue rather than memory
    (benchmarks/RESULTS.md). A 64-bit window cut by one shift counts a few instructions
    fewer, but inductor writes the int64 window out when the result is viewed as bytes.
    """
    chunks = compress(words.unflatten(-1, (-1, 8)), bits)  # (..., G, 8): 4 * bits bits each
    o = torch.arange(bits, device=words.device, dtype=torch.int32)
    first = (8 * o) // bits
    s = 32 * o - 4 * bits * first
    out = chunks[..., first] >> s
    last_first = (8 * (bits - 1)) // bits  # first's largest value
    for t in range(1, chunks_per_word(bits)):
        # Wrapped only where the index can pass the group; & 7 costs fewer instructions per
        # word than a clamp, which inductor prints as comparisons and products (sympy's Min).
        chunk = chunks[..., first + t if last_first + t <= 7 else (first + t) & 7]
        start = 4 * bits * t  # the shift, start - s, lies in [start - 4 * bits + 1, start]
        if start <= 31:
            out = out | (chunk << (start - s))
        else:
            out = out | ((chunk << (start - 31)) << (31 - s))
    return out.flatten(-2)


def unpack_words(words: torch.Tensor, bits: int, signed: bool = False) -> torch.Tensor:
    """(..., bits G) int32 words of the dense stream -> (..., 8 G) int32 words of 4 byte values
    each (two's complement in each byte when ``signed``).

    Output word i of a group holds stream bits [4 bits i, 4 bits (i + 1)): from input word q =
    4 bits i div 32 at offset r, plus the next word when the chunk straddles it.
    """
    words = words.unflatten(-1, (-1, bits))
    i = torch.arange(8, device=words.device, dtype=torch.int32)
    start = 4 * bits * i
    q, r = start // 32, start % 32
    # The bits of word q above r, and how far the next word's bits go up to follow them (31,
    # not 32, at r = 0, where no chunk straddles: shifts stay below the int32 width).
    room = torch.clamp(32 - r, max=31)
    # Right shifts of int32 are arithmetic: clear the copies of the sign bit they bring in
    # (at r = 0 the mask keeps bits 0..30, more than the 4 * bits <= 28 needed).
    low = (words[..., q] >> r) & ((1 << room) - 1)
    high = words[..., torch.clamp(q + 1, max=bits - 1)] << room
    values = expand(torch.where(r + 4 * bits > 32, low | high, low), bits)
    if signed:
        values = _sign_extend_bytes(values, bits)
    return values.flatten(-2)


def pack_bit_words(words: torch.Tensor, little: bool = True) -> torch.Tensor:
    """1-bit pack: int64 words of 8 byte values (the low bit of each is read) -> one uint8
    each, value i in bit i (``little``) or in bit 7 - i.

    Shift-ORs fold the word: value i moves down by 7 i bits, into bit i of the low byte (three
    steps); for the big order value 0 moves up to bit 7 and value i >= 1 down by 9 i - 7 (a
    shift of 2, then three steps). Right shifts only on a non-negative word (the mask clears
    bit 63), so nothing overflows and the shifts stay logical. On an H100 this ran at 0.98x of
    clone() against 0.71x for 8 byte loads per output byte (benchmarks/probe_pack.py), and
    0.38x as int32 words, which OR 8 chunks per output word; on the 2-core CPU, 64 Mi values,
    2.3 ms against 8.6 for the byte loads (big order 2.0 ms against numpy.packbits' 3.5).

    >>> values = torch.tensor([1, 0, 1, 1, 0, 0, 0, 1], dtype=torch.uint8)
    >>> pack_bit_words(values.view(torch.int64)).tolist(), pack_bit_words(values.view(torch.int64), little=False).tolist()
    ([141], [177])
    """
    words = words & 0x0101010101010101
    if little:
        folded = words | (words >> 7)
        folded = folded | (folded >> 14)
        folded = folded | (folded >> 28)
        return (folded & 0xFF).to(torch.uint8)
    folded = words >> 2  # value i >= 1 at bit 8 i - 2; then down by 9 (i - 1), to bit 7 - i
    folded = folded | (folded >> 9)
    folded = folded | (folded >> 18)
    folded = folded | (folded >> 36)
    return ((folded & 0x7F) | ((words & 1) << 7)).to(torch.uint8)


def pack_padded3_words(words: torch.Tensor) -> torch.Tensor:
    """The padded 3-bit layout (2 values per byte, bits 6-7 zero) from (..., 2 W) int32 words of
    byte values to (..., W) int32 words: each input word's 4 values make 2 bytes."""
    pairs = words.unflatten(-1, (-1, 2))

    def two_bytes(word):
        # v0 | v1 << 3 in byte 0 and v2 | v3 << 3 in byte 2, then byte 2 moved down to byte 1.
        packed = (word & 0x00070007) | ((word >> 5) & 0x00380038)
        return (packed & 0xFF) | ((packed >> 8) & 0xFF00)

    return two_bytes(pairs[..., 0]) | (two_bytes(pairs[..., 1]) << 16)


def unpack_padded3_words(words: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """The inverse of :func:`pack_padded3_words`: (..., W) int32 words -> (..., 2 W) words of 4
    byte values each (two's complement in each byte when ``signed``)."""

    def four_values(half):
        # Bytes 0 and 1 of the half to bytes 0 and 2, then each byte's high value to the byte
        # above it.
        spread = (half | (half << 8)) & 0x00FF00FF
        return (spread & 0x00070007) | ((spread << 5) & 0x07000700)

    halves = 16 * torch.arange(2, dtype=torch.int32, device=words.device)
    values = four_values((words[..., None] >> halves) & 0xFFFF)  # (..., W, 2)
    if signed:
        values = _sign_extend_bytes(values, 3)
    return values.flatten(-2)


# The padded 3-bit layout in int64 words of 8 values (CPU): value pairs join inside each 16-bit
# lane, then the lanes' low bytes close up, then the two halves: (shift, mask) per step, masks
# of the part that stays and of the part that moves.
_PADDED3_STEPS = (
    (5, 0x0007000700070007, 0x0038003800380038),
    (8, 0x000000FF000000FF, 0x0000FF000000FF00),
    (16, 0x000000000000FFFF, 0x00000000FFFF0000),
)


def pack_padded3_gather(words: torch.Tensor) -> torch.Tensor:
    """The padded 3-bit layout (2 values per byte, bits 6-7 zero) from (..., W) int64 words of
    8 byte values (each byte's low 3 bits are read) to (..., W) int32 words of 4 bytes, by
    three shift-and-mask steps (:data:`_PADDED3_STEPS`): a loop word by word, which inductor's
    C++ vectorizes. The CUDA form, :func:`pack_padded3_words`, reads two int32 words per word
    out, at a stride inductor's C++ keeps scalar.

    >>> import torch
    >>> values = torch.tensor([1, 2, 3, 4, 5, 6, 7, 0], dtype=torch.uint8)
    >>> pack_padded3_gather(values.view(torch.int64)).view(torch.uint8).tolist()
    [17, 35, 53, 7]
    """
    for shift, stay, move in _PADDED3_STEPS:
        words = (words & stay) | ((words >> shift) & move)
    return words.to(torch.int32)  # bit 31 is a pad bit, 0: no overflow


def unpack_padded3_spread(words: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """The inverse of :func:`pack_padded3_gather`: (..., W) int32 words of the padded 3-bit
    layout -> (..., W) int64 words of 8 byte values (two's complement in each byte when
    ``signed``). Pad bits are ignored.

    >>> import torch
    >>> packed = torch.tensor([17, 35, 53, 7], dtype=torch.uint8)
    >>> unpack_padded3_spread(packed.view(torch.int32)).view(torch.uint8).tolist()
    [1, 2, 3, 4, 5, 6, 7, 0]
    """
    values = words.to(torch.int64)  # the sign copies above bit 31 are masked off below
    for shift, stay, move in reversed(_PADDED3_STEPS):
        values = (values & stay) | ((values << shift) & (move << shift))
    if signed:
        values = _sign_extend_bytes(values, 3, 0x0101010101010101)
    return values


def _gather_steps(bits: int) -> list[tuple[int, int, int]]:
    """(shift, mask, field) per step that brings the 8 fields of an int64 (one per byte, the
    low ``bits`` bits of each) together. Step k joins the two fields of ``field = bits << k``
    bits in each ``16 << k``-bit lane, the low one at the lane's bit 0 and the high one at its
    middle: ``mask`` keeps the low one in every lane, and the high one comes down by ``shift``
    next to it. After three steps the int64 holds its 8 fields in its low 8 * bits bits."""
    steps = []
    for k in range(3):
        field, lane = bits << k, 16 << k
        mask = sum(((1 << field) - 1) << start for start in range(0, 64, lane))
        steps.append(((lane >> 1) - field, mask, field))
    return steps


def _gather(words: torch.Tensor, bits: int) -> torch.Tensor:
    """int64 words of 8 byte values -> each word's 8 fields (the low ``bits`` bits of each byte;
    the rest dropped) side by side in its low 8 * bits bits, by :func:`_gather_steps`."""
    for shift, mask, field in _gather_steps(bits):
        words = (words & mask) | ((words >> shift) & (mask << field))
    return words


def _spread(chunks: torch.Tensor, bits: int) -> torch.Tensor:
    """The inverse of :func:`_gather`: int64s whose low 8 * bits bits hold 8 fields (bits above
    them dropped) -> one field per byte, by :func:`_gather_steps` run backwards."""
    for shift, mask, field in reversed(_gather_steps(bits)):
        chunks = (chunks & mask) | ((chunks << shift) & (mask << (field + shift)))
    return chunks


def unpack_spread_words(words: torch.Tensor, bits: int, signed: bool = False) -> torch.Tensor:
    """(..., W) int32 words of the dense stream of 1, 2 or 4-bit values -> (..., 4 W / bits)
    int64 words of 8 byte values each (two's complement in each byte when ``signed``), value i
    of the stream in byte i (little-endian).

    Each int32 word is 4 / bits chunks of 8 values; each chunk spreads into one int64 by three
    shift-and-mask steps (:func:`_spread`), without per-value loads or shifts that vary by
    value. For inductor's C++ backend: the byte-at-a-time unpack computes each value's shift
    from its index, which kept the kernel scalar (2-core CPU, ``benchmarks/pack.py --mib 16``,
    of clone: 4-bit 0.22x by bytes, 0.63-1.09x by this; 2-bit 0.22x, 0.63-1.04x; 1-bit 0.25x,
    0.56-0.58x).

    >>> import torch
    >>> words = torch.tensor([0x76543210], dtype=torch.int32)
    >>> unpack_spread_words(words, 4).view(torch.uint8).tolist()
    [0, 1, 2, 3, 4, 5, 6, 7]
    """
    w = words.to(torch.int64) & 0xFFFFFFFF  # the int32's bits, not its sign-extended value
    # Chunk j is the word shifted down by j chunks: _spread drops the bits above it.
    chunks = [_spread(w >> (8 * bits * j) if j else w, bits) for j in range(4 // bits)]
    values = chunks[0] if len(chunks) == 1 else torch.stack(chunks, -1).flatten(-2)
    if signed:
        values = _sign_extend_bytes(values, bits, 0x0101010101010101)
    return values


def pack_gather_words(words: torch.Tensor, bits: int) -> torch.Tensor:
    """The inverse of :func:`unpack_spread_words` for 2 and 4 bits: (..., W) int64 words of 8
    byte values each (each byte's low ``bits`` bits are read) -> (..., W bits / 4) int32 words
    of the dense stream.

    :func:`_gather` brings each int64's 8 fields into its low 8 * bits bits; 32 / (8 bits) of
    those make one int32 word. The word is formed in int64 and folded into int32's range
    before the narrowing (the stream's bit 31 is the int32's sign), so no conversion overflows.

    >>> import torch
    >>> values = torch.arange(8, dtype=torch.uint8)
    >>> hex(pack_gather_words(values.view(torch.int64), 4).item())
    '0x76543210'
    """
    chunk_bits = 8 * bits
    chunks = _gather(words, bits).unflatten(-1, (-1, 32 // chunk_bits))
    word = chunks[..., 0]
    for j in range(1, 32 // chunk_bits):
        word = word | (chunks[..., j] << (chunk_bits * j))
    return ((word ^ 0x80000000) - 0x80000000).to(torch.int32)


def _sign_extend_bytes(values: torch.Tensor, bits: int, ones: int = 0x01010101) -> torch.Tensor:
    """Copy each byte's bit ``bits - 1`` into the bits above it (shifts and ORs: no carry crosses
    a byte, and no arithmetic can overflow). ``ones``: 0x01 in every byte of the word."""
    sign = values & ((1 << (bits - 1)) * ones)
    for t in range(1, 9 - bits):
        values = values | (sign << t)
    return values



def _inductor_buffer(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself, as a view with its own sizes, strides and storage offset, which inductor
    writes out as a buffer of its own before its consumer where the graph computes it: its
    lowering of ``as_strided`` realizes the input (a graph input, or a view of one, stays as it
    is: no kernel). Eager, it is ``t`` as it was. Uses:

    - split a kernel whose two halves want different loops: one word by word over contiguous
      words, which inductor's C++ vectorizes, and one with an inner dim of ``bits`` or 8 words,
      which it runs scalar (:func:`pack_gather_stream`, :func:`unpack_spread_stream`);
    - hand a consumer a contiguous buffer, which inductor's reduction heuristics see
      (``fpx.nn._sums_products_in_one_trip``: on CUDA the buffer is fused back into the
      consumer's kernel and never allocated) and its C++ vectorizer too (x in the order of the
      words, ``fpx.nn.LowBitLinear._gemv``: one small kernel on CPU);
    - keep a consumer that reads each value many times from inlining its producer
      (``fpx.nn.LowBitLinear._gemv`` reads x once per weight).
    """
    return t.as_strided(t.shape, t.stride())  # dynamo traces no storage_offset()


def _chunk_dtype(bits: int) -> torch.dtype:
    """The narrowest signed dtype of the 8 * bits-bit chunks between the two passes."""
    return torch.int32 if 8 * bits < 32 else torch.int64


def pack_gather_stream(words: torch.Tensor, bits: int) -> torch.Tensor:
    """(..., 8 G) int64 words of 8 byte values each (each byte's low ``bits`` bits are read) ->
    (..., bits G) int64 words of the dense stream of ``bits``-bit values (1..7).

    Two passes, for inductor's C++ backend: each int64 is gathered into 8 * bits contiguous
    bits (:func:`_gather`: three shift-and-mask steps, vectorized word by word), then
    every 8 of those chunks fill ``bits`` int64 words of the stream, each the OR of the 2 or 3
    chunks that overlap it, shifted into place (a scalar loop over groups, with no per-value
    work). Byte at a time, each byte of a 3/5/6/7-bit stream gathers 2 or 3 values at offsets
    that depend on it, and inductor kept that loop scalar over values.

    >>> import torch
    >>> values = torch.arange(64, dtype=torch.uint8) % 8
    >>> stream = pack_gather_stream(values.view(torch.int64), 3)
    >>> stream.shape, hex(stream[0].item() & 0xFFFFFF)
    (torch.Size([3]), '0xfac688')
    """
    chunks = _inductor_buffer(_gather(words, bits).to(_chunk_dtype(bits))).to(torch.int64).unflatten(-1, (-1, 8))
    chunk_bits = 8 * bits
    out = []
    for j in range(bits):  # stream word j: bits [64 j, 64 j + 64) of the group
        word = None
        for i in range(8):
            offset = chunk_bits * i - 64 * j  # where chunk i's bit 0 lands in word j
            if offset >= 64 or offset + chunk_bits <= 0:
                continue
            # Chunks are below 2^56, so >> is logical; << wraps past bit 63, as wanted.
            part = _shifted(chunks[..., i], offset)
            word = part if word is None else word | part
        out.append(word)
    return torch.stack(out, -1).flatten(-2)


def _shifted(bits: torch.Tensor, by: int) -> torch.Tensor:
    """``bits`` shifted left by ``by`` bits, right (arithmetically) where ``by`` is negative."""
    return bits << by if by >= 0 else bits >> -by


def unpack_spread_stream(words: torch.Tensor, bits: int, signed: bool = False) -> torch.Tensor:
    """The inverse of :func:`pack_gather_stream`: (..., bits G) int64 words of the dense stream
    -> (..., 8 G) int64 words of 8 byte values each (two's complement in each byte when
    ``signed``).

    Chunk i of a group, stream bits [8 bits i, 8 bits (i + 1)), is cut from the one or two
    stream words holding it (a scalar loop over groups), then spread to one value per byte by
    :func:`_spread` (vectorized word by word).

    >>> import torch
    >>> values = torch.arange(64, dtype=torch.uint8) % 8
    >>> stream = pack_gather_stream(values.view(torch.int64), 3)
    >>> torch.equal(unpack_spread_stream(stream, 3).view(torch.uint8), values)
    True
    """
    words = words.unflatten(-1, (-1, bits))
    chunk_bits = 8 * bits
    chunks = []
    for i in range(8):
        q, r = divmod(chunk_bits * i, 64)
        chunk = words[..., q] >> r if r else words[..., q]
        if r + chunk_bits > 64:  # straddles into the next word
            chunk = (chunk & ((1 << (64 - r)) - 1)) | (words[..., q + 1] << (64 - r))
        chunks.append(chunk)  # bits above the chunk's: the spread's masks drop them
    chunks = _spread(_inductor_buffer(torch.stack(chunks, -1).flatten(-2).to(_chunk_dtype(bits))).to(torch.int64), bits)
    if signed:
        chunks = _sign_extend_bytes(chunks, bits, 0x0101010101010101)
    return chunks
