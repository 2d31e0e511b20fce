"""fpx.decode E4M3 -> float32 compiled several times afresh: each compile's tuned pointwise
config and its GB/s against clone(), then every compile timed again side by side.

Question (issue 8): the float32 decode measured 0.88x of clone on 2026-11-30, 0.72x in the
thirty-fifth session, and 0.73x then 0.90x in two fresh inductor caches in the thirty-sixth,
the same code. Is the poor number a launch config that inductor's pointwise tuning picks
(which one), or noise in the timing? If the second timing of a compile repeats its first, the
config is the cause. 16 Mi codes in, 64 MiB out (``--mib``), CUDA graphs and events
(benchmarks/timing.py).

Run: python benchmarks/probe_decode_configs.py [--compiles 6] [--mib 64] [--device cuda|cpu]
(``--device cpu`` only checks that the script runs: CPU kernels have no tuned config.)
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import fpx  # noqa: E402
from timing import environment_line, time_call, time_cpu, tuned_configs  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--compiles", type=int, default=6)
    parser.add_argument("--mib", type=int, default=64, help="MiB of float32 output")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    timer = time_call if args.device == "cuda" else (lambda fn, *a: time_cpu(fn, *a, repeats=3, min_seconds=0.05))
    n = args.mib * 2**20 // 4
    codes = torch.randint(0, 256, (n,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).to(args.device)
    x = torch.empty(n, dtype=torch.float32, device=args.device)
    nbytes = n + 4 * n  # codes read, float32 written
    print(f"# fpx.decode E4M3 -> float32, {n} codes, {args.compiles} fresh compiles; {environment_line()}")
    compiled = []
    for trial in range(args.compiles):
        torch._dynamo.reset()
        with torch._inductor.config.patch(force_disable_caches=True):
            fn = torch.compile(lambda c: fpx.decode(c, fpx.E4M3, torch.float32), fullgraph=True, dynamic=False)
            out = fn(codes)
        assert torch.equal(out.view(torch.int32), fpx.decode(codes, fpx.E4M3, torch.float32).view(torch.int32))
        compiled.append((fn, tuned_configs() or "(no tuned config)"))
    print("| compile | config | GB/s, first | vs clone | GB/s, again | vs clone |")
    print("|---|---|---|---|---|---|")
    first = []
    for fn, _ in compiled:
        clone = 2 * x.numel() * 4 / timer(torch.clone, x) / 1e9
        first.append((nbytes / timer(fn, codes) / 1e9, clone))
    for trial, ((fn, config), (gbs, clone)) in enumerate(zip(compiled, first)):
        clone_again = 2 * x.numel() * 4 / timer(torch.clone, x) / 1e9
        again = nbytes / timer(fn, codes) / 1e9
        print(f"| {trial} | {config} | {gbs:.1f} | {gbs / clone:.2f}x | {again:.1f} | {again / clone_again:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
