"""Write the code inductor generates for a compiled LowBitLinear, one file per case.

Research aid for docs/inductor.md (not part of the package): which kernels a format and batch
size compile to, and what each kernel computes per weight.

    python benchmarks/dump_linear_code.py --out /tmp/code --cases INT4:16,E3M2:1 --shape 8192x8192
"""

import argparse
import contextlib
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fpx  # noqa: E402
from fpx.nn import LowBitLinear, compile_options  # noqa: E402
from linear import FORMATS  # noqa: E402
from timing import run_and_count_kernels  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--cases", default="INT4:1,INT4:16", help="FORMAT:M,... (FORMAT-MX for MX scales)")
    parser.add_argument("--shape", default="8192x8192")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    n, k = map(int, args.shape.split("x"))
    tuning = fpx.nn.cold_cache_tuning if args.device == "cuda" else contextlib.nullcontext
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    linear = torch.nn.Linear(k, n, dtype=torch.float32, device=args.device)
    for case in args.cases.split(","):
        name, m = case.split(":")
        fmt, kwargs = FORMATS[name]  # as benchmarks/linear.py times them (E4M3 per channel)
        layer = LowBitLinear.from_linear(linear, fmt, **kwargs).to(dtype)
        x = torch.randn(int(m), k, device=args.device, dtype=dtype)
        torch._dynamo.reset()
        compiled = torch.compile(layer, options=compile_options(args.device))
        with tuning():  # the layer's tuning on CUDA, as benchmarks/linear.py times it
            out, kernels, source = run_and_count_kernels(compiled, x)
        ref = x.float() @ layer.dequantize_weight().T + layer.bias.float()
        err = ((out.float() - ref).norm() / ref.norm()).item()
        path = os.path.join(args.out, f"{name}_m{m}.py")
        with open(path, "w") as fh:
            fh.write(source)
        print(f"{name:>8} M={m:>4} kernels={kernels} rel_err={err:.1e} -> {path}", flush=True)


if __name__ == "__main__":
    main()
