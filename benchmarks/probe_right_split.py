"""Research probe: a split K on the right route, ``x @ W.T``, for group-scaled codes.

Why: the left route's split K (``fpx.nn._splits_k_on_the_left``, twenty-first session) fused
because the split is applied to the codes and scales *before* the decode's arithmetic
(``fpx.nn.dequantize_packed(..., splits=S)``); the eleventh session's split folded into N
("Split-K folded into N: refuted", docs/inductor.md) permuted the decoded weight and did not
fuse (3 kernels, 91.4 us for INT4 at 16 rows). The same split on the right: W.T decoded as
(K / S, S N) (``LowBitLinear._matmul_weight(..., splits=S)``: column s N + n is W[n, s K/S :
(s+1) K/S], its group scales along), x read as a view (M S, K / S) (row m S + s is chunk s of
x's row m), the product (M S, S N) and its S diagonal blocks [m S + s, s N + n] summed in a
second kernel. S times the programs with 1 / S of the K loop each; S times the MMA work and
a product S^2 times the output's size. With M S rows a tile of BLOCK_M >= M S decodes each
weight tile once (the extra rows are MMA work only).

Predicted (not measured): INT4 by groups of 128 at 16 rows of 8192 x 8192, 44.2 us today (512
programs of 16 x 16 x 128, 2 warps): 38-42 with S = 2 (1024 programs of 32 x 16 x 128 if
more resident warps hide the decode's latency; no gain if shared memory caps the programs
per SM); at 4096 x 14336, 16 rows (55.2, 256 programs): toward 42; at 64 rows no gain (128
rows of x per tile).

Measured (H200, twenty-second session): 8192 x 8192 lost (47.9 at 16 rows, 73.8 against 54.5
at 64); 4096 x 14336 won (INT4 44.0 at 16 rows, 50.1 at 24, 53.9 at 32, 66.1 at 64 against
55.1-70.2; INT8 and E2M1 at 16 rows 52.4 and 54.4 against 61.8 and 65.2). Built into the
layer as ``fpx.nn._splits_k_on_the_right``.

Run (GPU): python benchmarks/probe_right_split.py --shape 8192x8192 --m 16,64 --formats INT4 (one
process per format: in one process the compiles share inductor's autotuning cache)
Check (CPU, numbers only): python benchmarks/probe_right_split.py --device cpu --shape 256x512 --m 3,16
Prints per (format, M, variant): us, ratio to bf16 ``F.linear`` in the same run, kernels, the
template's tile, relative error against the dequantized weight's matmul in float32, and the
weight-sized buffers the compiled code allocates (0 when the decode is fused).
"""

import argparse
import os
import re
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import fpx  # noqa: E402
import fpx.nn  # noqa: E402
from linear import FORMATS, dense_copies, layer_copies  # noqa: E402
from probe_shift_buffer import layer_calls, variant_row  # noqa: E402
from timing import environment_line, time_cuda_graph  # noqa: E402


def forward(layer, x, splits: int):
    """``x @ W.T`` (+ bias) with K split in ``splits``: the scaled decode as the matmul template's
    right operand (K / S, S N), x as the view (M S, K / S), the product's diagonal blocks summed."""
    n, k = layer.out_features, layer.in_features
    x2d = x.reshape(-1, k)
    product = x2d.reshape(-1, k // splits) @ layer._matmul_weight(x.dtype, scaled=True, splits=splits)
    # product[m S + s', s N + n]: chunk s' of x's row m by chunk s of W's row n
    out = product.float().view(-1, splits, splits, n).diagonal(dim1=1, dim2=2).sum(-1).to(x.dtype)
    return out if layer.bias is None else out + layer.bias.to(x.dtype)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="8192x8192", help="N x K")
    parser.add_argument("--m", default="16,64")
    parser.add_argument("--formats", default="INT4", help=f"of benchmarks/linear.py: {','.join(FORMATS)}")
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--splits", default="2", help="1: the same form unsplit (the layer's matmul, its autotuning shared)")
    parser.add_argument("--no-layer", action="store_true", help="leave out the layer's own route")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    n, k = map(int, args.shape.split("x"))
    device, dtype = args.device, torch.bfloat16
    print(f"# group {args.group_size}, {args.shape} (N x K); {environment_line()}", flush=True)
    torch.manual_seed(0)
    linear = torch.nn.Linear(k, n, bias=False, device=device, dtype=dtype)
    dense = dense_copies(linear, device)
    options = fpx.nn.compile_options(device)
    rows = []
    for name in args.formats.split(","):
        fmt, kwargs = FORMATS[name]
        layer = fpx.LowBitLinear.from_linear(linear, fmt, **{"group_size": args.group_size, **kwargs})
        layers = layer_copies(layer, device)
        weight_sized = lambda source: "  weight-sized buffers " + str(  # noqa: E731
            len(re.findall(rf"empty_strided\w*\(\(({n}, {k}|{k}, {n}|{2 * n}, {k // 2}|{k // 2}, {2 * n})\)", source)))
        for m in map(int, args.m.split(",")):
            x = torch.randn(m, k, device=device, dtype=dtype)
            reference = x.float() @ layer.dequantize_weight().T
            variants = ([] if args.no_layer else ["layer"]) + [f"split{s}" for s in args.splits.split(",")]
            if device == "cpu":  # numbers only: each form compiled, against the dequantized weight
                for variant in [v for v in variants if v != "layer"]:
                    splits = int(variant[len("split"):])
                    fn = torch.compile(lambda x: forward(layer, x, splits), fullgraph=True, dynamic=False)
                    torch._dynamo.reset()
                    out = fn(x)
                    error = ((out.float() - reference).norm() / reference.norm()).item()
                    print(f"{name:>7} M={m:<4} {variant:>6}: err {error:.1e}", flush=True)
                continue
            bf16_s = time_cuda_graph([lambda w=w: F.linear(x, w) for w in dense])
            for variant in variants:
                def make_calls(variant=variant):
                    if variant == "layer":
                        return layer_calls(layers, x, options)
                    splits = int(variant[len("split"):])
                    fns = [torch.compile(lambda x, lay=lay: forward(lay, x, splits), fullgraph=True, dynamic=False,
                                         options=options) for lay in layers]
                    return [lambda f=f: f(x) for f in fns]
                rows.append(variant_row(f"{name:>7} M={m:<4} {variant:>6}", make_calls, reference, bf16_s, weight_sized))
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
