"""Serve a transformer's MLP with low-bit weights: memory, error and time per call, compiled.

The MLP of one Llama-style block (gate and up projections, SiLU, down projection; on CUDA
Llama 3 8B's shapes, 4096 -> 14336 -> 4096, in bfloat16) is quantized with ``fpx.quantize_``
to several formats and compiled with ``fpx.nn.compile_options``. The first call at each
batch size compiles and tunes, inside ``fpx.nn.cold_cache_tuning`` as the layer asks on
CUDA. Printed per format: the linear weights' memory, the output's relative error against
the unquantized MLP, and the time per call at each batch size against the unquantized MLP
run eagerly (cuBLAS on CUDA; both timed in CUDA graphs there, see ``seconds_per_call``). On
CUDA the compiles take minutes: the matmul template is tuned for every layer and batch size.

Run: python examples/lowbit_mlp_serving.py                    # CUDA if present, else a CPU-sized MLP
     python examples/lowbit_mlp_serving.py --device cpu --dim 1024 --hidden 2816 --rows 1,32
"""

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import fpx

FORMATS = [  # (label, format, LowBitLinear arguments)
    ("INT4 by 128", fpx.INT4, {"group_size": 128}),
    ("INT8 per channel", fpx.INT8, {"group_size": None}),
    ("E4M3 per channel", fpx.E4M3, {"group_size": None}),
    ("E2M1 MX", fpx.E2M1, {"block": "mx"}),
]


class MLP(nn.Module):
    """x -> down(silu(gate(x)) * up(x)), without biases."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


def seconds_per_call(fn, x, device: torch.device, calls: int = 20, trials: int = 5) -> float:
    """Seconds per call of ``fn(x)``: the median over ``trials``.

    CUDA: ``calls`` calls captured in one CUDA graph, whose replay is timed with CUDA events, as
    a server replays its graphs: what the GPU takes, without the CPU's launch costs (a compiled
    call launches its kernels from Python; at one row they cost more than the kernels run).
    CPU: the mean of ``calls`` calls back to back.
    """
    fn(x)
    if device.type == "cuda":
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):  # warm up outside the capture, as CUDA graphs ask
            fn(x)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn(x)
        graph.replay()
        times = []
        for _ in range(trials):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3 / calls)
        return statistics.median(times)
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(calls):
            fn(x)
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def main():
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--dim", type=int, default=4096 if cuda else 1024)
    parser.add_argument("--hidden", type=int, default=14336 if cuda else 2816)
    parser.add_argument("--rows", default="1,16" if cuda else "1,32", help="batch sizes, comma-separated")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rows = [int(r) for r in args.rows.split(",")]
    for name, value in (("--dim", args.dim), ("--hidden", args.hidden), *(("--rows", r) for r in rows)):
        if value < 1:
            parser.error(f"{name} must be positive, got {value}")

    torch.manual_seed(0)
    dense = MLP(args.dim, args.hidden).to(device, dtype).eval()
    inputs = {m: torch.randn(m, args.dim, device=device, dtype=dtype) for m in rows}
    with torch.no_grad():
        references = {m: dense(x).float() for m, x in inputs.items()}
        dense_bytes = fpx.nn.linear_weight_nbytes(dense)
        dense_times = {m: seconds_per_call(dense, x, device) for m, x in inputs.items()}
        results = []
        for label, fmt, kwargs in FORMATS:
            model = fpx.quantize_(copy.deepcopy(dense), fmt, **kwargs)
            torch._dynamo.reset()  # a fresh compile per model: they share the forward's code object
            compiled = torch.compile(model, fullgraph=True, dynamic=False, options=fpx.nn.compile_options(device.type))
            errors, times = {}, {}
            for m, x in inputs.items():
                with fpx.nn.cold_cache_tuning():  # the first call at this size compiles and tunes
                    out = compiled(x).float()
                errors[m] = ((out - references[m]).norm() / references[m].norm()).item()
                times[m] = seconds_per_call(compiled, x, device)
            results.append((label, fpx.nn.linear_weight_nbytes(model), errors, times))

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"MLP {args.dim} -> {args.hidden} -> {args.dim}, {str(dtype).removeprefix('torch.')} activations; {where}, "
          f"torch {torch.__version__}")
    header = "".join(f" {f'{m} rows: us (x)':>20}" for m in rows)
    print(f"{'weights':<18} {'memory':>10} {'max rel. error':>15}{header}")
    dense_cells = "".join(f" {dense_times[m] * 1e6:>14.1f} (1.00)" for m in rows)
    print(f"{'unquantized':<18} {dense_bytes / 2**20:>6.1f} MiB {0.0:>15.4f}{dense_cells}")
    for label, nbytes, errors, times in results:
        cells = "".join(f" {times[m] * 1e6:>14.1f} ({dense_times[m] / times[m]:.2f})" for m in rows)
        print(f"{label:<18} {nbytes / 2**20:>6.1f} MiB {max(errors.values()):>15.4f}{cells}")
    print("(x): speedup over the unquantized MLP run eagerly. The error is the quantization's, "
          "on random weights and inputs.")


if __name__ == "__main__":
    main()
