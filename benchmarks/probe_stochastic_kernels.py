"""Where the compiled default stochastic encode's time goes on CUDA: each kernel's duration
and the call's span, from torch.profiler, against seed= a tensor (research aid for
benchmarks/RESULTS.md, thirty-seventh session: 0.69x against 0.82x of clone at 64 MiB).

    python benchmarks/probe_stochastic_kernels.py [--mib 64]
"""

import argparse
import collections

import torch
from torch.profiler import ProfilerActivity, profile

import fpx


def kernel_times(fn, *args, calls: int = 20):
    """Mean device microseconds per call of each kernel name, and of all kernels summed."""
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


def span_us(fn, *args, calls: int = 50):
    """Mean microseconds per call, CUDA events around back-to-back calls."""
    for _ in range(3):
        fn(*args)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn(*args)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / calls


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
    print("| case | span us per call | kernel | device us |")
    print("|---|---|---|---|")
    for name, (fn, fn_args) in cases.items():
        span = span_us(fn, *fn_args)
        for kernel, us in sorted(kernel_times(fn, *fn_args).items(), key=lambda item: -item[1]):
            print(f"| {name} | {span:.1f} | {kernel} | {us:.2f} |")


if __name__ == "__main__":
    main()
