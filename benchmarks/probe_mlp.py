"""Research: the serving example's MLP (examples/lowbit_mlp_serving.py, Llama 3 8B's shapes,
bf16, CUDA) per format and batch size, timed by wall clock and as a CUDA-graph replay, with its
kernel count, then compiled again with inductor's CUDA graphs (``"triton.cudagraphs": True``)
and timed by wall clock. The one-row wrapper code goes to $OUT/mlp_<format>_1.py.

Run: PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/probe_mlp.py [ROWS [FORMATS]]
     e.g. ... probe_mlp.py 1,16 INT4,E2M1   (FORMATS: parts of the example's labels)
Found with it (benchmarks/RESULTS.md, twenty-fourth session): the down projection's one-row
reductions recomputed the SiLU and the product per weight (fixed), and the wall clock of a
compiled call at one row is its launches, not its kernels.
"""

import copy
import os
import sys
import time

import torch
from torch._inductor.utils import run_and_get_code

sys.path.insert(0, "examples")
import fpx  # noqa: E402
from lowbit_mlp_serving import FORMATS, MLP  # noqa: E402
from timing import cuda_wall_seconds_per_call, time_cuda_graph  # noqa: E402


def main():
    rows = [int(r) for r in (sys.argv[1] if len(sys.argv) > 1 else "1,16").split(",")]
    only = sys.argv[2].split(",") if len(sys.argv) > 2 else None
    out_dir = os.environ.get("OUT", ".")
    device = torch.device("cuda")
    torch.manual_seed(0)
    dense = MLP(4096, 14336).to(device, torch.bfloat16).eval()
    inputs = {m: torch.randn(m, 4096, device=device, dtype=torch.bfloat16) for m in rows}
    with torch.no_grad():
        for m, x in inputs.items():
            print(f"dense eager M={m}: wall {cuda_wall_seconds_per_call(dense, x) * 1e6:.1f} "
                  f"graph {time_cuda_graph([lambda: dense(x)]) * 1e6:.1f}", flush=True)
        for label, fmt, kwargs in FORMATS:
            if only and not any(o in label for o in only):
                continue
            model = fpx.quantize_(copy.deepcopy(dense), fmt, **kwargs)
            for graphs in (False, True):
                torch._dynamo.reset()
                options = {**fpx.nn.compile_options("cuda"), **({"triton.cudagraphs": True} if graphs else {})}
                compiled = torch.compile(model, fullgraph=True, dynamic=False, options=options)
                for m, x in inputs.items():
                    start = time.time()
                    with fpx.nn.cold_cache_tuning():
                        if graphs:
                            compiled(x)
                            kernels = "-"
                        else:
                            _, codes = run_and_get_code(compiled, x)
                            kernels = codes[-1].count(".run(")
                            if m == 1:
                                with open(f"{out_dir}/mlp_{fmt.name}_{m}.py", "w") as handle:
                                    handle.write(codes[-1])
                    compile_s = time.time() - start
                    wall = cuda_wall_seconds_per_call(compiled, x)
                    graph = "" if graphs else f" graph {time_cuda_graph([lambda: compiled(x)]) * 1e6:.1f}"
                    print(f"M={m} {label:18} cudagraphs={graphs}: kernels {kernels} wall {wall * 1e6:.1f}{graph} "
                          f"compile {compile_s:.0f}s", flush=True)


if __name__ == "__main__":
    main()
