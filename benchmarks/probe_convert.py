"""Probe: E4M3 encode/decode on CUDA through the GPU's float8 conversion instruction.

Research script (not part of the package). On Hopper the integer-heavy bit-level paths of
``fpx.encode`` / ``fpx.decode`` run at 0.60-0.63x of clone for bfloat16 data (twice the
elements per byte of float32, and integer instructions issue at half the float rate). The
conversion-instruction variants with fpx's fix-ups are the package's own CUDA path now
(``fpx`` rows); ``cvt-raw`` times the bare instruction (not the contract) as a speed
reference, and ``words`` / ``words-view`` / ``pairs`` test whether the bytes each thread has in
flight bound the 16-bit encode and decode (refuted: benchmarks/RESULTS.md).

Every variant is checked bit for bit against ``fpx`` on the CPU: every bfloat16 and float16
bit pattern, every code, and float32 boundary neighbours plus random bit patterns. The
generated Triton code of each variant goes to ``--dump`` when given.

Run on a GPU: python benchmarks/probe_convert.py [--mib 64] [--dump DIR]
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import fpx  # noqa: E402
from fpx import E4M3  # noqa: E402
from timing import environment_line, time_cuda_graph  # noqa: E402

_INT_VIEW = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def encode_by_cvt_raw(x):
    """The instruction alone: no fix-ups (speed reference; not fpx's contract)."""
    return x.to(torch.float8_e4m3fn).view(torch.uint8)


def decode_by_cvt_raw(codes, dtype):
    return codes.view(torch.float8_e4m3fn).to(dtype)


def encode_words(x, by_int32_view=False):
    """fpx.encode(x, E4M3) with four codes per int32 word: each thread of inductor's pointwise
    kernel (8 outputs per thread) then has 4x the input bytes in flight. The H200 ran the
    elementwise bfloat16 encode at clone's read rate (0.79x of clone's bytes); this tests
    whether the bytes in flight bound it (refuted: 0.78-0.81x). ``by_int32_view``: bfloat16 inputs read
    as int32 words (two values each, a value being its half shifted to the top) instead of
    four strided loads."""
    if by_int32_view and x.dtype == torch.bfloat16:
        halves = x.view(torch.int32).reshape(-1, 2)
        columns = [(halves[:, i // 2] << 16 if i % 2 == 0 else halves[:, i // 2] & -65536).view(torch.float32) for i in range(4)]
    else:
        quads = x.reshape(-1, 4)
        columns = [quads[:, i] for i in range(4)]
    word = None
    for i, column in enumerate(columns):
        code = fpx.encode(column, E4M3).to(torch.int32) << (8 * i)
        word = code if word is None else word | code
    return word.view(torch.uint8).view(x.shape)


def decode_pairs(codes, dtype):
    """fpx.decode(codes, E4M3, dtype) for a 16-bit dtype, two values per int32 word: twice the
    input bytes per thread (the H200 ran the elementwise bfloat16 decode at 0.70x of clone)."""
    pairs = codes.reshape(-1, 2)
    low, high = (fpx.decode(pairs[:, i], E4M3, dtype).view(torch.int16).to(torch.int32) for i in range(2))
    return ((low & 0xFFFF) | (high << 16)).view(dtype).view(codes.shape)


def encode_variants():
    return {
        "fpx": lambda x: fpx.encode(x, E4M3),
        "cvt-raw": encode_by_cvt_raw,
        "words": encode_words,
        "words-view": lambda x: encode_words(x, by_int32_view=True),
    }


def decode_variants(dtype):
    variants = {
        "fpx": lambda c: fpx.decode(c, E4M3, dtype),
        "cvt-raw": lambda c: decode_by_cvt_raw(c, dtype),
    }
    if dtype.itemsize == 2:
        variants["pairs"] = lambda c: decode_pairs(c, dtype)
    return variants


def exhaustive_inputs(dtype):
    """Every 16-bit pattern; for float32 the bfloat16 patterns widened, each E4M3 midpoint and
    its float32 neighbours, and 4 Mi random bit patterns."""
    if dtype != torch.float32:
        return torch.arange(1 << 16, dtype=torch.int32).to(torch.int16).view(dtype)
    widened = (torch.arange(1 << 16, dtype=torch.int32) << 16).view(torch.float32)
    table = fpx.decode(torch.arange(0x7F, dtype=torch.uint8), E4M3)
    table = torch.cat([table, torch.tensor([480.0])])  # 480: the first step past max
    mid = (table[1:] + table[:-1]) / 2
    near = torch.cat([mid, mid.nextafter(torch.tensor(0.0)), mid.nextafter(torch.tensor(1e9))])
    near = torch.cat([near, -near])
    random = torch.randint(-(2**31), 2**31, (4 << 20,), dtype=torch.int64).to(torch.int32).view(torch.float32)
    # Padded to a multiple of 4 for the words variants.
    return torch.cat([widened, near, random, torch.zeros(-(widened.numel() + near.numel()) % 4)])


def bits(t):
    return t.view(_INT_VIEW.get(t.dtype, torch.uint8))


def mismatches(got, want):
    return int((bits(got.cpu()) != bits(want)).sum())


def checked(fn):
    """fn compiled afresh for the exhaustive check, after the timing: a second shape would
    otherwise recompile the timed function with dynamic shapes, whose kernels ran at 0.43x of
    clone where the static ones ran at 0.63-0.83x (the first run of this probe)."""
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--dump", default=None)
    args = parser.parse_args()
    from torch._inductor.utils import run_and_get_code

    print(f"# {environment_line()}", flush=True)
    rows = []
    codes_all = torch.arange(256, dtype=torch.uint8)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        n = args.mib * 2**20 // dtype.itemsize
        x = (torch.randn(n, device="cuda") * 100).to(dtype)
        codes = fpx.encode(x, E4M3)
        clone = time_cuda_graph([lambda: x.clone()])
        size = n * dtype.itemsize
        name_of = str(dtype).replace("torch.", "")
        rows.append((name_of, "clone", "", clone * 1e6, 1.0, ""))
        scaled_clone = (size + n) / (2 * size) * clone  # over a time: the bandwidth ratio to clone
        inputs = exhaustive_inputs(dtype)
        checks = (
            ("encode", encode_variants(), x, inputs, fpx.encode(inputs, E4M3)),
            ("decode", decode_variants(dtype), codes, codes_all, fpx.decode(codes_all, E4M3, dtype)),
        )
        for op, variants, timed_input, checked_input, want in checks:
            for name, fn in variants.items():
                compiled = torch.compile(fn, fullgraph=True)
                _, sources = run_and_get_code(compiled, timed_input)
                if args.dump:
                    with open(os.path.join(args.dump, f"{op}_{name}_{name_of}.py"), "w") as handle:
                        handle.write("\n\n".join(sources))
                t = time_cuda_graph([lambda: compiled(timed_input)])
                bad = mismatches(checked(fn)(checked_input.cuda()), want)
                rows.append((name_of, op, name, t * 1e6, scaled_clone / t, f"{bad} of {checked_input.numel()} differ"))
        uniform = torch.compile(lambda x: torch.rand_like(x, dtype=torch.float32), fullgraph=True)
        t = time_cuda_graph([lambda: uniform(x)])
        rows.append((name_of, "rand_like f32", "", t * 1e6, 4 * n / (2 * size) * clone / t, "RNG alone"))
        stochastic = torch.compile(lambda x: fpx.encode(x, E4M3, rounding="stochastic"), fullgraph=True)
        t = time_cuda_graph([lambda: stochastic(x)])
        rows.append((name_of, "encode", "fpx stochastic", t * 1e6, scaled_clone / t, ""))
        for row in rows[-8:]:
            print(row, flush=True)
    print(f"\n{'input':>9} {'op':>13} {'variant':>15} {'us':>8} {'x clone':>8}  notes")
    for dtype, op, name, us, ratio, notes in rows:
        print(f"{dtype:>9} {op:>13} {name:>15} {us:>8.1f} {ratio:>8.2f}  {notes}")


if __name__ == "__main__":
    main()
