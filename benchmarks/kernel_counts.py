"""The kernels each compiled LowBitLinear forward of tests/fpx/test_nn_codegen.py launches.

Prints one line per case and row count as it goes (device, format, rows, kernels, the largest
buffer allocated, in elements), so that the CUDA codegen tests can pin what a device run
shows. Usage: ``python benchmarks/kernel_counts.py [--device cuda] [--rows 1 2]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fpx  # noqa: E402
from tests.codegen import allocations, compile_and_code, kernel_count  # noqa: E402
from tests.fpx.test_nn_codegen import CASES, IDS, K, N  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    print(f"# {args.device}, torch {torch.__version__}, N x K = {N} x {K}", flush=True)
    for rows in args.rows:
        for (fmt, kwargs), name in zip(CASES, IDS):
            torch.manual_seed(0)
            layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(K, N), fmt, **kwargs).to(args.device)
            x = torch.randn(rows, K, device=args.device)
            _, source = compile_and_code(layer, x)
            sizes = [math.prod(s) for s in allocations(source) if all(isinstance(d, int) for d in s)]
            print(f"{name:>8} rows {rows}: {kernel_count(source, args.device)} kernels, "
                  f"largest buffer {max(sizes, default=0)} elements", flush=True)


if __name__ == "__main__":
    main()
