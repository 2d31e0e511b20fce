"""PackedMask and packbits speed: packed bytes against bool tensors, compiled packbits against numpy.

Run: python benchmarks/mask.py [--device cpu|cuda|all] [--bits 64]   (--bits: mask size in Mi-bits)

Rows (median time per call; CPU: wall time, baseline and ours alternating; CUDA: CUDA-graph
replays timed with CUDA events, see benchmarks/timing.py):
  - ``(a & b).count()``: PackedMask compiled, against the same on bool tensors, compiled and eager.
    Goal: packed >= 20x the bool versions.
  - ``mask.where(x, -inf)``: PackedMask compiled against bool ``torch.where`` compiled (float32 x).
  - packbits: compiled ``bitpack.packbits`` against ``numpy.packbits`` (CPU), same bool
    input, numpy's default big bit order along the last dim. Goal: >= 1.0x. Same for unpackbits.
    On CUDA against ``clone()`` of the bool mask (packbits moves 72/128 of its bytes: memory
    speed is about 1.8x).
"""

import argparse
import os
import statistics
import sys
import time
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import bitpack  # noqa: E402
import bitpack.bits  # noqa: E402
from timing import chosen_devices, environment_line, time_cuda_graph  # noqa: E402


def and_count_bool(a, b):
    return (a & b).sum()


def and_count_packed(a, b):
    return (a & b).count()


def where_bool(mask, x):
    return torch.where(mask, x, float("-inf"))


def where_packed(mask, x):
    return mask.where(x, float("-inf"))


def packbits_big(x):
    return bitpack.packbits(x, -1)


def unpackbits_big(p):
    return bitpack.unpackbits(p, -1)


def bench_device(device: str, mbits: int) -> list[tuple[str, str, float, float]]:
    """Rows of (operation, baseline name, baseline seconds, ours seconds) on one device."""
    rows, cols = 8192, mbits * 1024 * 1024 // 8192
    generator = torch.Generator().manual_seed(0)
    a = (torch.rand(rows, cols, generator=generator) < 0.5).to(device)
    b = (torch.rand(rows, cols, generator=generator) < 0.5).to(device)
    pa, pb = bitpack.PackedMask.from_bool(a), bitpack.PackedMask.from_bool(b)
    compiled = lambda fn: torch.compile(fn, fullgraph=True)  # noqa: E731

    packed_count = compiled(and_count_packed)
    assert torch.equal(packed_count(pa, pb), and_count_bool(a, b))
    results = [
        ("(a & b).count()", "bool compiled", *compare(compiled(and_count_bool), (a, b), packed_count, (pa, pb))),
        ("(a & b).count()", "bool eager", *compare(and_count_bool, (a, b), packed_count, (pa, pb))),
    ]

    part = cols // 8  # where() writes float32 values: 1/8 of the mask keeps memory modest
    x = torch.randn(rows, part, generator=generator).to(device)
    small = a[:, :part].contiguous()
    small_packed = bitpack.PackedMask.from_bool(small)
    packed_where = compiled(where_packed)
    assert torch.equal(packed_where(small_packed, x), where_bool(small, x))
    results.append(
        ("mask.where(x, -inf), 1/8 size", "bool compiled",
         *compare(compiled(where_bool), (small, x), packed_where, (small_packed, x)))
    )

    if device == "cuda":
        # Against a copy of the bool mask: packbits reads those bytes and writes an eighth of
        # them, 72/128 of a clone's traffic, so memory speed shows as about 1.8x. Both forms:
        # 8 byte loads per byte (CUDA's default) and int64 words folded by shifts (CPU's).
        for form, apart in (("byte loads", True), ("int64 words", False)):
            with mock.patch.object(bitpack.bits, "_packs_bool_bytes_apart", lambda device, apart=apart: apart):
                torch._dynamo.reset()  # one compile per form
                packbits = compiled(packbits_big)
                assert np.array_equal(packbits(a).cpu().numpy(), np.packbits(a.cpu().numpy(), axis=-1))
                results.append((f"packbits(bool, -1), {form}", "bool clone()",
                                *compare(torch.clone, (a,), packbits, (a,))))
    if device == "cpu":
        packbits = compiled(packbits_big)
        a_numpy = a.numpy()
        assert np.array_equal(packbits(a).numpy(), np.packbits(a_numpy, axis=-1))
        results.append(
            ("packbits(bool, -1)", "numpy.packbits", *compare(np.packbits, (a_numpy, -1), packbits, (a,)))
        )
        unpackbits = compiled(unpackbits_big)
        p = packbits(a)
        assert np.array_equal(unpackbits(p).numpy(), np.unpackbits(p.numpy(), axis=-1))
        results.append(
            ("unpackbits(p, -1)", "numpy.unpackbits", *compare(np.unpackbits, (p.numpy(), -1), unpackbits, (p,)))
        )
    return results


def compare(baseline, baseline_args, ours, ours_args, rounds: int = 15) -> tuple[float, float]:
    """Median seconds per call of baseline and ours.

    CPU: the two calls alternate, round after round, so both see the same machine load (shared
    machines are noisy). CUDA: each is timed on its own as CUDA-graph replays.
    """
    if any(isinstance(t, torch.Tensor) and t.is_cuda for t in baseline_args):
        return (
            time_cuda_graph([lambda: baseline(*baseline_args)]),
            time_cuda_graph([lambda: ours(*ours_args)]),
        )
    baseline(*baseline_args), ours(*ours_args)  # warm up
    baseline_times, our_times = [], []
    for _ in range(rounds):
        for fn, args, times in ((baseline, baseline_args, baseline_times), (ours, ours_args, our_times)):
            start = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - start)
    return statistics.median(baseline_times), statistics.median(our_times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    parser.add_argument("--bits", type=int, default=64, help="mask size in Mi-bits (64 -> 8192 x 8192)")
    args = parser.parse_args()
    devices = chosen_devices(args.device)
    print(f"# bitpack PackedMask / packbits, {args.bits} Mi-bit masks; {environment_line()}")
    # Fresh CPU tensors of 64 MiB are fresh pages, each faulted in on first write, unless torch
    # backs them with huge pages as numpy does (THP_MEM_ALLOC_ENABLE=1): that, not the kernel,
    # was most of unpackbits' time against numpy's (benchmarks/RESULTS.md).
    thp = os.environ.get("THP_MEM_ALLOC_ENABLE", "unset")
    print(f"# cpu threads: {torch.get_num_threads()}; THP_MEM_ALLOC_ENABLE={thp}")
    print("| device | operation | baseline | baseline time | ours | speedup |")
    print("|---|---|---|---|---|---|")
    for device in devices:
        for operation, baseline, base_s, ours_s in bench_device(device, args.bits):
            print(f"| {device} | {operation} | {baseline} | {_ms(base_s)} | {_ms(ours_s)} | {base_s / ours_s:.1f}x |")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


if __name__ == "__main__":
    main()
