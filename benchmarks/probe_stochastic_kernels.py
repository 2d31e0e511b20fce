"""Where the compiled default stochastic encode's time goes on CUDA: each kernel's duration
(torch.profiler) and the call's time (benchmarks/timing.py's CUDA-graph replays, as
convert.py times it), against seed= (research aid for benchmarks/RESULTS.md, thirty-seventh
session: 0.69x against 0.82x of clone at 64 MiB).

    python benchmarks/probe_stochastic_kernels.py [--mib 64]
"""

import argparse
import collections
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(__file__))
import fpx  # noqa: E402
from timing import time_call  # noqa: E402


def kernel_times(fn, *args, calls: int = 20):
    """Mean device microseconds per call of each kernel name."""
    for _ in range(3):
        fn(*args)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn(*args)
        torch.cuda.synchronize()
    per_name = collections.defaultdict(float)
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            per_name[event.name[:70]] += event.device_time / calls
    return per_name


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    x = torch.randn(args.mib * 2**20 // 4, device="cuda")
    seed = torch.tensor(5, device="cuda")
    cases = {
        "default": (torch.compile(lambda x: fpx.encode(x, fpx.E4M3, rounding="stochastic"), fullgraph=True), (x,)),
        "seed= a tensor": (torch.compile(lambda x, s: fpx.encode(x, fpx.E4M3, rounding="stochastic", seed=s), fullgraph=True), (x, seed)),
        "seed= an int": (torch.compile(lambda x: fpx.encode(x, fpx.E4M3, rounding="stochastic", seed=5), fullgraph=True), (x,)),
        "clone": (lambda x: x.clone(), (x,)),
    }
    print(f"# {args.mib} MiB float32 -> E4M3 stochastic; {torch.cuda.get_device_name()}; torch {torch.__version__}")
    print("| case | us per call | kernel | device us |")
    print("|---|---|---|---|")
    for name, (fn, fn_args) in cases.items():
        call_us = time_call(fn, *fn_args) * 1e6
        for kernel, us in sorted(kernel_times(fn, *fn_args).items(), key=lambda item: -item[1]):
            print(f"| {name} | {call_us:.1f} | {kernel} | {us:.2f} |")


if __name__ == "__main__":
    main()
