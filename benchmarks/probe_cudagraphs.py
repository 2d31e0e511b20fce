"""Research: where a call of the MLP compiled with inductor's CUDA graphs spends its wall time
(benchmarks/RESULTS.md, twenty-fourth session: 133-173 us at one row for 47 us of GPU time).

Run: PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/probe_cudagraphs.py
"""

import copy
import cProfile
import io
import pstats
import sys

import torch

sys.path.insert(0, "examples")
import fpx  # noqa: E402
from lowbit_mlp_serving import MLP  # noqa: E402
from timing import cuda_wall_seconds_per_call  # noqa: E402


def wall_us(fn, x, mark=False):
    """Wall-clock us per call over 100 calls, each after a CUDA-graph step mark with ``mark``."""
    step = torch.compiler.cudagraph_mark_step_begin if mark else None
    return cuda_wall_seconds_per_call(fn, x, calls=100, before_each=step) * 1e6


def main():
    torch.manual_seed(0)
    dense = MLP(4096, 14336).to("cuda", torch.bfloat16).eval()
    model = fpx.quantize_(copy.deepcopy(dense), fpx.INT4, group_size=128)
    x = torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        print(f"eager dense {wall_us(dense, x):.1f} us", flush=True)
        for graphs in (False, True):
            torch._dynamo.reset()
            options = {**fpx.nn.compile_options("cuda"), **({"triton.cudagraphs": True} if graphs else {})}
            compiled = torch.compile(model, fullgraph=True, dynamic=False, options=options)
            for _ in range(3):
                compiled(x)
            print(f"cudagraphs={graphs}: {wall_us(compiled, x):.1f} us; marked {wall_us(compiled, x, mark=True):.1f} us", flush=True)
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(20):
                compiled(x)
            torch.cuda.synchronize()
            profile.disable()
            text = io.StringIO()
            pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(12)
            print("\n".join(line[:150] for line in text.getvalue().splitlines()[:30]), flush=True)


if __name__ == "__main__":
    main()
