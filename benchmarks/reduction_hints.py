"""Print inductor's persistent-or-looped choice for each reduction kernel of LowBitLinear's
small-batch form, with the reduction hints it was made from.

Research aid (not part of the package). Inductor makes a reduction of 128 persistent for an
INNER hint (up to 1024) and loops it otherwise (up to 64):
``InductorChoices.should_use_persistent_reduction``. This prints what that function saw for
each kernel and, with ``--deps``, what each reduction node reads and writes and whether
contiguously (a node is INNER when all of them are). It found why E3M2's one-row plane sums were
persistent and E2M3's looped on an H200 (torch 2.11): E3M2's products had been written out as
buffers (docs/inductor.md, "Why E3M2's sums were persistent and E2M3's looped"), which
``fpx.nn._sums_products_in_one_trip`` now does on purpose. ``--offline`` applies CUDA's
thresholds for writing out an expression (30 operations, 8 reads; CPU tensors get 50 and 12);
its answers match the device's with the device's torch version (2.11 reproduced the H200's;
2.13 counts the same expressions smaller).

    python benchmarks/reduction_hints.py --formats E3M2,E2M3 --deps     # CUDA
    python benchmarks/reduction_hints.py --formats E3M2,E2M3 --offline  # CPU, needs triton
"""

import argparse
import os
import re
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import fpx  # noqa: E402
from fpx.nn import LowBitLinear  # noqa: E402


def spy_on_persistence(verbose=False):
    """Wrap the choice so that each call prints what it saw and what it chose."""
    from torch._inductor.choices import InductorChoices

    original = InductorChoices.should_use_persistent_reduction

    def choice(features, cooperative_reduction):
        persistent = original(features, cooperative_reduction)
        nodes = features.reduction_nodes()
        hints = sorted({features.reduction_hint(node).name for node in nodes})
        print(f"  {'persistent' if persistent else 'looped':>10}  r0 {features.reduction_numel}  x {features.numel}"
              f"  kernel hint {features.get_reduction_hint().name}  node hints {hints}  nodes {len(nodes)}"
              f"  non-contiguous pointwise {features.has_non_contiguous_pw_in_reduction_kernel()}", flush=True)
        if verbose:
            for node in nodes:
                print(f"    node {node.get_name()}: created {node.node.data.reduction_hint.name}", flush=True)
                for dep in node.read_writes.reads | node.read_writes.writes:
                    contiguous = getattr(dep, "is_contiguous", lambda: None)()
                    print(f"      {'contiguous' if contiguous else 'strided   '} {dep}", flush=True)
        return persistent

    InductorChoices.should_use_persistent_reduction = staticmethod(choice)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default="E3M2,E2M3,INT4")
    parser.add_argument("--shape", default="8192x8192", help="N x K")
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--offline", action="store_true", help="CPU tensors through inductor's Triton path")
    parser.add_argument("--deps", action="store_true", help="also each reduction node's reads and writes")
    args = parser.parse_args()
    n, k = (int(v) for v in args.shape.split("x"))
    print(f"# torch {torch.__version__}; {'offline' if args.offline else torch.cuda.get_device_name()}")
    spy_on_persistence(args.deps)
    for name in args.formats.split(","):
        fmt, kwargs = (fpx.E2M1, {"block": "mx"}) if name == "E2M1-MX" else (getattr(fpx, name), {})
        layer = LowBitLinear.from_linear(torch.nn.Linear(k, n, bias=False), fmt, group_size=args.group_size, **kwargs)
        x = torch.randn(args.rows, k, dtype=torch.bfloat16)
        print(f"{name} {n} x {k}, {args.rows} row(s):", flush=True)
        if args.offline:
            import sass_offline

            from torch._inductor import config

            # CUDA's thresholds for writing out an inlined expression (CPU tensors get larger ones).
            cuda_thresholds = config.patch(realize_opcount_threshold=30, realize_acc_reads_threshold=8)
            with sass_offline.cuda_paths(), cuda_thresholds:
                kernels = [kernel for kernel, _ in sass_offline.triton_sources(lambda x: layer._gemv(x, words=False), x)]
        else:
            from torch._inductor.utils import run_and_get_code

            layer, x = layer.cuda(), x.cuda()
            torch._dynamo.reset()
            # linear.py's options without coordinate descent (tuning comes after this choice)
            options = {key: value for key, value in fpx.nn.compile_options("cuda").items() if "coordinate" not in key}
            compiled = torch.compile(lambda x: layer._gemv(x), fullgraph=True, dynamic=False, options=options)
            _, codes = run_and_get_code(compiled, x)
            kernels = [kernel for code in codes for kernel in re.findall(r"async_compile\.triton\('(\w+)'", code)]
        print("  kernels:", ", ".join(kernel[:10] + "..." + kernel[-2:] for kernel in kernels), flush=True)


if __name__ == "__main__":
    main()
