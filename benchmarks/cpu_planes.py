"""CPU, one row: LowBitLinear's reduction over int32 word planes against byte planes, compiled.

Research tool for ``fpx.nn._word_planes_pay_off``: each format and scale group compiled both
ways (``LowBitLinear._gemv(words=True|False)``), side by side in one process, at the vector
width inductor picks here or at a forced one (``--simdlen 256`` with ``--march haswell``
emulates an AVX2 machine on an AVX-512 one; ``simdlen`` alone compiles with
``-march=native`` and gave wrong float decodes there).

    python benchmarks/cpu_planes.py                              # this machine's vectors
    python benchmarks/cpu_planes.py --simdlen 256 --march haswell
"""

import argparse
import statistics
import time

import torch
from torch._inductor import config

import fpx


def milliseconds(layer, x, words: bool, patch: dict, repeats: int = 9) -> float:
    """Median ms per call of the one-row reduction compiled with ``words``."""
    torch._dynamo.reset()
    with config.patch(patch):
        compiled = torch.compile(lambda x: layer._gemv(x, words=words), fullgraph=True, dynamic=False,
                                 options=fpx.nn.compile_options("cpu"))
        out = compiled(x)
    expected = x.double() @ layer.dequantize_weight().double().T
    bound = x.double().abs() @ layer.dequantize_weight().double().abs().T
    assert bool(((out.double() - expected).abs() <= 1e-5 * bound).all()), "wrong result"
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(10):
            compiled(x)
        times.append((time.perf_counter() - start) / 10)
    return statistics.median(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="4096x4096", help="N x K")
    parser.add_argument("--formats", default="INT4,INT8,E2M1,INT2")
    parser.add_argument("--groups", default="32,64,128", help="scale group sizes; 'mx' for MX blocks")
    parser.add_argument("--simdlen", type=int, default=None)
    parser.add_argument("--march", default=None)
    args = parser.parse_args()
    n, k = map(int, args.shape.split("x"))
    patch = {key: value for key, value in (("cpp.simdlen", args.simdlen), ("cpp.march", args.march)) if value is not None}
    with config.patch(patch):
        bits = fpx.nn._cpu_vector_bits()
    print(f"# {n} x {k}, one row, float32 x; inductor options {patch or 'default'}; vector bits {bits}; torch {torch.__version__}")
    print(f"{'group':>6} {'fmt':>5} {'words ms':>9} {'bytes ms':>9} {'words/bytes':>11}")
    torch.manual_seed(0)
    linear = torch.nn.Linear(k, n, bias=False)
    x = torch.randn(1, k)
    for group in args.groups.split(","):
        kwargs = {"block": "mx"} if group == "mx" else {"group_size": int(group)}
        for name in args.formats.split(","):
            if group == "mx" and not isinstance(getattr(fpx, name), fpx.FloatFormat):
                continue  # MX blocks scale float codes only
            layer = fpx.LowBitLinear.from_linear(linear, getattr(fpx, name), **kwargs)
            words, planes = (milliseconds(layer, x, w, patch) for w in (True, False))
            print(f"{group:>6} {name:>5} {words:>9.2f} {planes:>9.2f} {words / planes:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
