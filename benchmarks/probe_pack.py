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


PACKS = {
    "bitpack": lambda v, bits: bitpack.pack(v, bits),
    "columns": pack_columns,
    "columns-i32": lambda v, bits: pack_columns(v, bits, narrow_after_stack=True),
    "word": pack_word,
    "word-view": pack_word_view,
}
UNPACKS = {
    "bitpack": lambda p, bits, n: bitpack.unpack(p, bits, n),
    "columns": lambda p, bits, n: unpack_columns(p, bits),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--bits", type=int, nargs="*", default=[3, 5, 6, 7])
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
