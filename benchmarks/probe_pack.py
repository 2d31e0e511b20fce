"""Probe: formulations of the dense (bit stream) pack and unpack of 3, 5, 6 and 7 bits.

Research script (not part of the package). On the H100 the dense stream kernels of these widths
ran at 0.34-0.49x of clone() (benchmarks/RESULTS.md): each output byte computes the indices and
shifts of the values overlapping it at run time (divisions by the bit width per element) and
gathers them with up to four loads. The variants here make every index and shift a constant:

- ``columns``: one expression per output byte of a group of 8 values (constant offsets and
  shifts), joined by ``torch.stack`` (inductor's pointwise cat: the loads of the other columns
  are masked off).
- ``columns-i32``: the same, stacked as int32 and narrowed after the stack.
- ``word``: the group's bits as one int64 stream word, each output byte a shift of it.
- ``word-view``: the same stream word, built from the group's 8 bytes read as one int64 (a
  dtype view: one 8-byte load per group instead of 8 byte loads).
- ``words32``: 32 values at a time in int32 words in and out: each input word's 4 values
  compressed to 4 * bits stream bits (SWAR), each output word the OR of the 2-4 chunks that
  overlap it (run-time indices); input words built from 4 byte loads.
- ``words32-view``: the same on the values read as int32 words (a dtype view). Unpack: the
  inverse, each output word of 4 values from one or two input words.
- ``words-window``: ``bitpack.words.pack_words`` with each output word cut from a 64-bit
  window: the chunks that can overlap it ORed into one int64 at constant shifts, then one
  shift right by the word's offset and a truncation. One run-time shift per word instead of
  two per chunk, and no validity masks or selects (a chunk past the group lands above the
  32 bits kept).
  (Its int32 twin, each chunk shifted by an amount kept in [0, 31], is bitpack's own form
  since 2026-11-30: the ``bitpack`` variant.)

Each variant is checked bit for bit against bitpack before it is timed, and its kernels are
counted. Run: python benchmarks/probe_pack.py [--device cuda] [--mib 64] [--bits 3 5 6 7]
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bitpack  # noqa: E402
from timing import environment_line, run_and_count_kernels, time_call  # noqa: E402


def _overlaps(bits, byte):
    """(value index, shift) of the values of a group of 8 that overlap output byte ``byte``:
    a positive shift moves the value left, a negative one right."""
    lo = 8 * byte
    return [(i, bits * i - lo) for i in range(8) if bits * i < lo + 8 and bits * i + bits > lo]


def pack_columns(values, bits, narrow_after_stack=False):
    v = values.to(torch.int32).unflatten(-1, (-1, 8))
    columns = []
    for byte in range(bits):
        out = 0
        for i, shift in _overlaps(bits, byte):
            out = out | (v[..., i] << shift if shift >= 0 else v[..., i] >> -shift)
        out = out & 0xFF
        columns.append(out if narrow_after_stack else out.to(torch.uint8))
    packed = torch.stack(columns, -1)
    return (packed.to(torch.uint8) if narrow_after_stack else packed).flatten(-2)


def pack_word(values, bits):
    v = values.to(torch.int64).unflatten(-1, (-1, 8))
    stream = v[..., 0]
    for i in range(1, 8):
        stream = stream | (v[..., i] << (bits * i))
    return stream_bytes(stream, bits)


def stream_bytes(stream, bits):
    """The ``bits`` bytes of each int64 stream word (8 values of ``bits`` bits), low byte first."""
    shifts = 8 * torch.arange(bits, device=stream.device, dtype=torch.int64)
    return ((stream[..., None] >> shifts) & 0xFF).to(torch.uint8).flatten(-2)


def pack_word_view(values, bits):
    # The 8 values of a group are the 8 bytes of one little-endian int64; no value reaches bit 7
    # of its byte (bits <= 7), so the word is non-negative and the right shifts are logical.
    word = values.contiguous().view(torch.int64)
    mask = (1 << bits) - 1
    stream = word & mask
    for i in range(1, 8):
        stream = stream | (((word >> (8 * i)) & mask) << (bits * i))
    return stream_bytes(stream, bits)


def _chunks_per_word(bits):
    """The most 4-value chunks (4 * bits stream bits each) that overlap one 32-bit output word."""
    width = 4 * bits
    return max(len({i // width for i in range(32 * o, 32 * o + 32)}) for o in range(bits))


def _compress_words(words, bits):
    """Each int32 word of 4 byte values (< 2**bits each) -> its 4 * bits stream bits, low first:
    pairs of bytes into 16-bit lanes, then pairs of lanes (SWAR, 8 operations)."""
    low = (1 << bits) - 1
    pair = (low | (low << 16))
    words = (words & pair) | ((words >> (8 - bits)) & (pair << bits))
    low2 = (1 << (2 * bits)) - 1
    return (words & low2) | ((words >> (16 - 2 * bits)) & (low2 << (2 * bits)))


def pack_words32(words, bits):
    """Dense pack of (..., 8 * G) int32 words (4 byte values each, 32 values per group of 8
    words) into (..., bits * G) int32 words: output word o of a group ORs the chunks j that
    overlap its 32 stream bits, each read at a run-time index (j0 + t) and shifted into place."""
    chunks = _compress_words(words.unflatten(-1, (-1, 8)), bits)  # (..., G, 8)
    o = torch.arange(bits, device=words.device, dtype=torch.int32)
    first = (8 * o) // bits  # the chunk holding the word's first bit
    out = None
    for t in range(_chunks_per_word(bits)):
        j = first + t
        shift = 4 * bits * j - 32 * o  # where chunk j starts, relative to the word
        valid = (j < 8) & (shift < 32)
        chunk = chunks[..., torch.clamp(j, max=7)]
        left = chunk << torch.clamp(shift, min=0, max=31)
        right = chunk >> torch.clamp(-shift, min=0, max=31)
        piece = torch.where(valid, torch.where(shift >= 0, left, right), 0)
        out = piece if out is None else out | piece
    return out.flatten(-2)


def pack_words32_bytes(values, bits):
    """pack_words32 with each input word built from 4 byte loads (any layout, any values dtype)."""
    v = values.to(torch.int32).unflatten(-1, (-1, 4))
    words = v[..., 0] | (v[..., 1] << 8) | (v[..., 2] << 16) | (v[..., 3] << 24)
    return _as_bytes(pack_words32(words, bits))


def _as_bytes(words):
    return words.view(torch.uint8)


def pack_words32_view(values, bits):
    """pack_words32 on the uint8 values read as int32 words (a dtype view: one 4-byte load)."""
    return _as_bytes(pack_words32(values.contiguous().view(torch.int32), bits))


def pack_words_window(values, bits):
    """Dense pack through int32 words (as bitpack.words.pack_words), each output word o of a
    group taken from a 64-bit window: chunks j0 .. j0 + T - 1 (j0 = 8 o div bits, T =
    chunks_per_word, at most 4 * bits * T = 60 bits for 1-7 bits) placed at 4 * bits * t,
    shifted right by 32 o - 4 * bits * j0 (< 4 * bits) and truncated to 32 bits. A chunk
    index past the group is clamped to the last chunk, whose copy then starts at or above
    bit 32 of the shifted window and is cut off; the window is non-negative (chunks are at
    most 28 bits), so the right shift is logical."""
    from bitpack.words import chunks_per_word, compress

    chunks = compress(values.contiguous().view(torch.int32).unflatten(-1, (-1, 8)), bits)
    o = torch.arange(bits, device=values.device, dtype=torch.int32)
    first = (8 * o) // bits
    window = None
    for t in range(chunks_per_word(bits)):
        chunk = chunks[..., torch.clamp(first + t, max=7)].to(torch.int64) << (4 * bits * t)
        window = chunk if window is None else window | chunk
    offset = (32 * o - 4 * bits * first).to(torch.int64)
    return _as_bytes((window >> offset).to(torch.int32).flatten(-2))


def unpack_words32(packed, bits):
    """Dense unpack into int32 words of 4 byte values: output word i of a group of 32 values is
    the stream bits [4 bits i, 4 bits (i + 1)) of the group's ``bits`` input words (one or two
    of them), spread into 4 bytes (SWAR, the inverse of _compress_words)."""
    words = packed.contiguous().view(torch.int32).unflatten(-1, (-1, bits))  # (..., G, bits)
    i = torch.arange(8, device=packed.device, dtype=torch.int32)
    start = 4 * bits * i
    q, r = start // 32, start % 32
    lo = (words[..., q] >> r) & ((1 << (32 - r).clamp(max=31)) - 1)  # logical shift of the low word
    hi = words[..., torch.clamp(q + 1, max=bits - 1)] << torch.clamp(32 - r, max=31)
    chunk = torch.where(r + 4 * bits > 32, lo | hi, lo)
    low2 = (1 << (2 * bits)) - 1
    chunk = (chunk & low2) | ((chunk << (16 - 2 * bits)) & (low2 << 16))
    low = (1 << bits) - 1
    pair = low | (low << 16)
    chunk = (chunk & pair) | ((chunk << (8 - bits)) & (pair << 8))
    return _as_bytes(chunk.flatten(-2))


def unpack_columns(packed, bits):
    src = packed.to(torch.int32).unflatten(-1, (-1, bits))
    mask = (1 << bits) - 1
    columns = []
    for i in range(8):
        first, offset = divmod(bits * i, 8)
        value = src[..., first] >> offset
        if offset + bits > 8:  # straddles into the next byte
            value = value | (src[..., first + 1] << (8 - offset))
        columns.append((value & mask).to(torch.uint8))
    return torch.stack(columns, -1).flatten(-2)


def pack1_mul64(values, bits):
    """1 bit: the 8 values of an output byte are the 8 bytes of one int64 (a dtype view); one
    multiply by 0x0102040810204080 moves value i (bit 8 i) to bit 56 + i, with no two partial
    products meeting in bits 56-63 (the masked bytes are 0 or 1)."""
    assert bits == 1
    word = values.contiguous().view(torch.int64) & 0x0101010101010101
    return ((word * 0x0102040810204080) >> 56).to(torch.uint8)


def pack1_shift64(values, bits):
    """1 bit: the int64 of 8 values folded by three shift-ORs (7, 14, 28): its low byte then
    holds value i at bit i."""
    assert bits == 1
    word = values.contiguous().view(torch.int64) & 0x0101010101010101
    word = word | (word >> 7)
    word = word | (word >> 14)
    word = word | (word >> 28)
    return word.to(torch.uint8)


def pack1_mul32(values, bits):
    """1 bit: two int32 words (4 values each) per output byte, each folded by one multiply by
    0x10204080 (value i to bit 28 + i; the product wraps, its top nibble is exact)."""
    assert bits == 1
    word = (values.contiguous().view(torch.int32) & 0x01010101).unflatten(-1, (-1, 2))
    nibbles = ((word * 0x10204080) >> 28) & 0xF
    return (nibbles[..., 0] | (nibbles[..., 1] << 4)).to(torch.uint8)


PACKS = {
    "bitpack": lambda v, bits: bitpack.pack(v, bits),
    "columns": pack_columns,
    "columns-i32": lambda v, bits: pack_columns(v, bits, narrow_after_stack=True),
    "word": pack_word,
    "word-view": pack_word_view,
    "words32": pack_words32_bytes,
    "words32-view": pack_words32_view,
    "words-window": pack_words_window,
    "mul64": pack1_mul64,
    "shift64": pack1_shift64,
    "mul32": pack1_mul32,
}
ONE_BIT_ONLY = {"mul64", "shift64", "mul32"}
UNPACKS = {
    "bitpack": lambda p, bits, n: bitpack.unpack(p, bits, n),
    "columns": lambda p, bits, n: unpack_columns(p, bits),
    "words32-view": lambda p, bits, n: unpack_words32(p, bits),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--bits", type=int, nargs="*", default=[3, 5, 6, 7])
    parser.add_argument("--variants", nargs="*", help="only these variants (default: all)")
    args = parser.parse_args()
    rows = 1024
    cols = args.mib * 1024 * 1024 // rows
    print(f"# dense pack/unpack formulations, {args.mib} MiB of uint8 values; {environment_line()}", flush=True)
    clone = torch.compile(torch.clone)
    table = []
    for bits in args.bits:
        values = torch.randint(0, 2**bits, (rows, cols), dtype=torch.uint8, device=args.device)
        clone_gbs = 2 * values.numel() / time_call(clone, values) / 1e9
        reference = bitpack.pack(values, bits)
        moved = values.numel() + reference.numel()
        for kind, variants in (("pack", PACKS), ("unpack", UNPACKS)):
            for name, form in variants.items():
                if args.variants and name not in args.variants:
                    continue
                if name in ONE_BIT_ONLY and bits != 1:
                    continue
                torch._dynamo.reset()
                if kind == "pack":
                    fn = torch.compile(lambda v, form=form: form(v, bits), fullgraph=True)
                    arg, expected = values, reference
                else:
                    fn = torch.compile(lambda p, form=form: form(p, bits, cols), fullgraph=True)
                    arg, expected = reference, values
                try:
                    out, count, _ = run_and_count_kernels(fn, arg)
                    if not torch.equal(out, expected):
                        table.append((bits, kind, name, count, float("nan"), "WRONG"))
                    else:
                        gbs = moved / time_call(fn, arg) / 1e9
                        table.append((bits, kind, name, count, gbs / clone_gbs, f"{gbs:.1f} GB/s"))
                except Exception as error:  # a research probe: record and go on
                    table.append((bits, kind, name, "-", float("nan"), repr(error)[:120]))
                print(table[-1], flush=True)
    print(f"\n{'bits':>4} {'op':>6} {'variant':>12} {'kern':>4} {'x clone':>8}  notes")
    for bits, kind, name, count, ratio, notes in table:
        print(f"{bits:>4} {kind:>6} {name:>12} {count!s:>4} {ratio:>8.2f}  {notes}")


if __name__ == "__main__":
    main()
