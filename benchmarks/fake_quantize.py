"""Eager fake quantization and quantization on CPU, against plain torch code for the same job.

Run: python benchmarks/fake_quantize.py [--rows 4096] [--cols 1024] [--rounds 12]

QAT runs its fake quantization in eager mode more often than not, where every tensor operation
is a pass over the weight. Each round times every case once, in one process, the cases
interleaved (this machine's wall times move by 2-3x between processes, so only ratios within a
process are worth comparing); the table gives the fastest and the median round per case, ms.
References: a min/max INT4 fake quantization by groups in four torch operations (rounding half
to even; no straight-through mask, no zero-sign care), and torch's own per-channel
``fake_quantize_per_channel_affine``.
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import fpx  # noqa: E402
from timing import environment_line  # noqa: E402


def plain_int4_by_groups(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """Symmetric min/max INT4 fake quantization by groups in plain torch code (the reference)."""
    groups = w.view(w.shape[0], -1, group_size)
    scale = groups.abs().amax(-1, keepdim=True) / 7
    return (torch.clamp(torch.round(groups / scale), -8, 7) * scale).view_as(w)


def cases(w: torch.Tensor):
    trained = w.clone().requires_grad_()

    def forward_and_backward(fmt, **kwargs):
        def run():
            trained.grad = None
            fpx.fake_quantize(trained, fmt, **kwargs).sum().backward()
        return run

    channel_scale = w.abs().amax(1) / 7
    zero_points = torch.zeros(w.shape[0], dtype=torch.int32)
    return {
        "plain torch INT4 by 128 (reference)": lambda: plain_int4_by_groups(w, 128),
        "torch fake_quantize_per_channel_affine INT4": lambda: torch.fake_quantize_per_channel_affine(
            w, channel_scale, zero_points, 0, -8, 7),
        "fpx.fake_quantize INT4 by 128": lambda: fpx.fake_quantize(w, fpx.INT4, group_size=128),
        "fpx.fake_quantize INT4 per channel": lambda: fpx.fake_quantize(w, fpx.INT4),
        "fpx.fake_quantize INT4 by 128, forward and backward": forward_and_backward(fpx.INT4, group_size=128),
        "fpx.fake_quantize UINT4 by 128, forward and backward": forward_and_backward(fpx.UINT4, group_size=128),
        "fpx.fake_quantize E4M3 by 128": lambda: fpx.fake_quantize(w, fpx.E4M3, group_size=128),
        "fpx.fake_quantize E2M1 MX": lambda: fpx.fake_quantize(w, fpx.E2M1, block="mx"),
        "fpx.quantize INT4 by 128": lambda: fpx.quantize(w, fpx.INT4, group_size=128),
        "fpx.fake_quantize INT4 by 128, clip_search": lambda: fpx.fake_quantize(
            w, fpx.INT4, group_size=128, clip_search=True),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    w = torch.randn(args.rows, args.cols, generator=torch.Generator().manual_seed(0))
    calls = cases(w)
    for call in calls.values():
        call()  # first-call costs out of the way
    samples = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    reference = min(samples["plain torch INT4 by 128 (reference)"])
    print(f"# eager, {args.rows} x {args.cols} float32, {args.threads} thread(s), {args.rounds} rounds; {environment_line()}")
    print("| case | fastest ms | median ms | fastest / reference |")
    print("|---|---|---|---|")
    for name, times in samples.items():
        print(f"| {name} | {min(times) * 1e3:.1f} | {statistics.median(times) * 1e3:.1f} | {min(times) / reference:.2f} |")


if __name__ == "__main__":
    main()
