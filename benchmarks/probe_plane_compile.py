"""Which fusion inductor could not generate when the layer's plane products failed to compile.

Research probe (not part of the package). In the thirtieth session the layer's per-channel
INT4 plane products (fpx.nn.LowBitLinear._plane_products) failed with inductor's ``CantSplit``
in the first case of a process and compiled in the later ones; this probe found the join
behind it (docs/inductor.md, "The 8-row failure, found"), since refused by
fpx.tuning.marked_decodes_kept_apart. This compiles the layer at each
case in order, in one process, under ``cold_cache_tuning``, and logs every fusion inductor
benchmarks (``Scheduler.speedup_by_fusion``: the two nodes and its answer) and every kernel it
could not generate (``Scheduler.compile_kernel``: the nodes, their sizes, the template's
choice):

    python benchmarks/probe_plane_compile.py --cases 8192x8192:16,8192x8192:16,8192x8192:8
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fpx  # noqa: E402
from fpx.nn import LowBitLinear, compile_options  # noqa: E402


def describe(node) -> str:
    """A scheduler node: its kind, its buffers, its sizes."""
    try:
        sizes = node.get_ranges() if hasattr(node, "get_ranges") else "?"
    except Exception as error:  # some nodes have no single range
        sizes = f"({type(error).__name__})"
    template = node.get_template_node() if hasattr(node, "get_template_node") else None
    kind = f" template {type(template).__name__}" if template is not None else ""
    return f"{type(node).__name__}{sorted(node.get_buffer_names())} sizes {sizes}{kind}"


def install_logging():
    from torch._inductor import scheduler

    original_speedup = scheduler.Scheduler.speedup_by_fusion
    original_compile = scheduler.Scheduler.compile_kernel

    def speedup_by_fusion(self, node1, node2):
        try:
            result = original_speedup(self, node1, node2)
        except Exception as error:
            print(f"  speedup_by_fusion RAISED {type(error).__name__}: {error}\n    1: {describe(node1)}\n"
                  f"    2: {describe(node2)}", flush=True)
            raise
        print(f"  speedup_by_fusion -> {result}\n    1: {describe(node1)}\n    2: {describe(node2)}", flush=True)
        return result

    def compile_kernel(self, nodes, *args, **kwargs):
        try:
            return original_compile(self, nodes, *args, **kwargs)
        except Exception as error:
            print(f"  compile_kernel RAISED {type(error).__name__}: {error}", flush=True)
            for node in nodes:
                print(f"    {describe(node)}", flush=True)
                template = node.get_template_node() if hasattr(node, "get_template_node") else None
                if template is not None:
                    print(f"    template node {type(template).__name__} layout {template.get_layout()}", flush=True)
            raise

    scheduler.Scheduler.speedup_by_fusion = speedup_by_fusion
    scheduler.Scheduler.compile_kernel = compile_kernel


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="8192x8192:16,8192x8192:16", help="NxK:M, in order")
    args = parser.parse_args()
    install_logging()
    options = compile_options("cuda")
    for case in args.cases.split(","):
        shape, m = case.split(":")
        n, k = map(int, shape.split("x"))
        torch.manual_seed(0)
        linear = torch.nn.Linear(k, n, bias=False, device="cuda", dtype=torch.bfloat16)
        layer = LowBitLinear.from_linear(linear, fpx.INT4, group_size=None).to(torch.bfloat16)
        x = torch.randn(int(m), k, device="cuda", dtype=torch.bfloat16)
        torch._dynamo.reset()
        compiled = torch.compile(layer, fullgraph=True, dynamic=False, options=options)
        print(f"== {case}", flush=True)
        try:
            with fpx.nn.cold_cache_tuning():
                y = compiled(x)
            reference = x.float() @ layer.dequantize_weight().T
            print(f"{case}: compiled, error {((y.float() - reference).norm() / reference.norm()).item():.1e}",
                  flush=True)
        except Exception as error:
            print(f"{case}: FAILED {type(error).__name__}: {str(error)[:200]}", flush=True)
            traceback.print_exc(limit=-12)


if __name__ == "__main__":
    main()
