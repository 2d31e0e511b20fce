"""Run compiled LowBitLinear cases for Nsight Compute: one NVTX range per case, named after it.

Research aid for docs/inductor.md (not part of the package): what bounds a kernel (occupancy,
stall reasons, DRAM and L1 traffic) instead of guessing from times. Compile once to fill an
inductor cache, then profile a second process that finds every kernel and tuning in that cache
(so ncu sees no autotuning launches):

    export TORCHINDUCTOR_CACHE_DIR=/tmp/ic
    python benchmarks/profile_linear.py --cases INT4:1,INT4:16
    ncu --clock-control none --nvtx --nvtx-include "profile/" --set full -o /tmp/prof \\
        python benchmarks/profile_linear.py --cases INT4:1,INT4:16 --profile
"""

import argparse
import contextlib
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fpx.nn import LowBitLinear, cold_cache_tuning, compile_options  # noqa: E402
from linear import FORMATS  # noqa: E402
from timing import (  # noqa: E402
    force_layer_choice,
    parse_template_configs,
    template_configs,
    time_cuda_graph,
    tuned_configs,
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="INT4:1,INT4:16",
                        help="FORMAT:M[:GROUP],... (linear.py's format names; GROUP overrides --group-size, 0 per channel)")
    parser.add_argument("--shape", default="8192x8192")
    parser.add_argument("--profile", action="store_true", help="one call per case inside an NVTX range 'profile'")
    parser.add_argument("--copies", type=int, default=4, help="weights cycled in the timing (defeats L2)")
    parser.add_argument("--float-bits", choices=("auto", "0", "1"), default="auto", help="the reductions' planes by float bits")
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--template-configs", default="",
                        help="the CUDA matmul template tries exactly these configs (linear.py's option)")
    args = parser.parse_args()
    configs = parse_template_configs(args.template_configs)
    if args.float_bits != "auto":
        force_layer_choice("float_bits", args.float_bits == "1")
    n, k = map(int, args.shape.split("x"))
    linear = torch.nn.Linear(k, n, bias=False, device="cuda")
    for case in args.cases.split(","):
        name, m, *group = case.split(":")
        fmt, kwargs = FORMATS[name]
        group_size = int(group[0]) if group else args.group_size
        kwargs = {"group_size": group_size or None, **kwargs}
        layers = [LowBitLinear.from_linear(linear, fmt, **kwargs).to(torch.bfloat16) for _ in range(args.copies)]
        x = torch.randn(int(m), k, device="cuda", dtype=torch.bfloat16)
        compiled = torch.compile(lambda layer, x: layer(x), options=compile_options("cuda"))
        # Tuned as linear.py tunes (cold_cache_tuning, with --template-configs inside it), so the
        # profiled kernels and tiles are the ones the sweeps time; the --profile process finds
        # them in the inductor cache.
        with cold_cache_tuning(), template_configs(configs) if configs else contextlib.nullcontext():
            for layer in layers:
                compiled(layer, x)
        torch.cuda.synchronize()
        if args.profile:
            torch.cuda.nvtx.range_push("profile")
            compiled(layers[0], x)
            torch.cuda.synchronize()
            torch.cuda.nvtx.range_pop()
            print(f"{case}: profiled", flush=True)
        else:
            t = time_cuda_graph([lambda layer=layer: compiled(layer, x) for layer in layers])
            print(f"{case} float_bits={args.float_bits}: {t * 1e6:.1f} us  {tuned_configs()}", flush=True)


if __name__ == "__main__":
    main()
