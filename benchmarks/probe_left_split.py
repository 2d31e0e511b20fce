"""Research probe: a split K inside one matmul template, on the left route, for per-channel
INT4 (planar) and E4M3.

Why: the left route ``(W @ x.T).T`` runs N / BLOCK_M programs (64-row tiles: 128 programs of 4
warps at 8192 output features, 64 at 4096, for 132 SMs): one warp per scheduler, latency-bound,
and at 4096 features half the GPU idle (INT4 per channel at 4096 x 14336, 64 rows: 80.0 us on
the left, 66.8 on the right; H200, benchmarks/RESULTS.md). Inductor's own split K goes through
``bmm``, whose template takes no prologue. Here the split is in the operands' shapes: W (N, K)
is decoded as (S N, K / S), row s N + n holding W[n, s K/S : (s+1) K/S], times x's chunks
stacked the same way, (S M, K / S); the S diagonal (N, M) blocks of the (S N, S M) product are
the partial sums. S times the programs and the MMA work, 1 / S of the K loop. For the planar
INT4 layout the chunk's byte is a plain index (no permute) and its nibble a function of the
row; for E4M3 the chunk is a slice of the codes (only the address depends on the index, so
the decode keeps the MMA register operand path, see docs/inductor.md "A shift loaded, not
computed").

Measured (H200, twenty-first session; benchmarks/RESULTS.md): INT4 at 4096 x 14336, 64 rows,
49.0 us split in two against 66.0 on the right, taken by the layer (fpx.nn.
_splits_k_on_the_left), which reads x as a view (M S, K / S) instead of the copy stacked here;
E4M3 split no faster than unsplit; INT4 split in four gave NaN in a 128 x 128 x 64 tile (not
investigated). Run the cases alone (one process each): in one process the compiles share
inductor's autotuning cache, and a later format reuses an earlier one's tile choices.

Run (GPU): python benchmarks/probe_left_split.py --shape 4096x14336 --m 16,64 --formats INT4,E4M3 --splits 1,2,4
Prints per (format, M, variant): us, ratio to bf16 F.linear in the same run, kernels, the
template's tile, relative error against the dequantized weight's matmul in float32. ``layer``
is LowBitLinear's own route; ``split1`` the left route written here (no split).
"""

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import fpx  # noqa: E402
import fpx.nn  # noqa: E402
from fpx.fields import _int_field_values  # noqa: E402
from linear import dense_copies, layer_copies  # noqa: E402
from probe_shift_buffer import layer_calls, variant_row  # noqa: E402
from timing import environment_line, time_cuda_graph  # noqa: E402


def split_codes(packed, fmt, splits: int, dtype) -> torch.Tensor:
    """W decoded as (S N, K / S), unscaled: row s N + n is W[n, s K/S : (s+1) K/S]."""
    n = packed.shape[0]
    if fmt == fpx.E4M3 or splits == 1:
        # Chunks of whole codes (E4M3's bytes; INT4's planar row unsplit): the layer's own decode.
        codes = packed.reshape(n, splits, -1).transpose(0, 1).reshape(splits * n, 1, -1)
        group = fpx.nn.planar_group(fmt.bits) * codes.shape[-1]
        return fpx.nn.dequantize_packed(codes, None, None, None, fmt=fmt, group_size=group, block=None,
                                        table=False, dtype=dtype)
    # INT4, planar: column k sits in byte k % (K/2), nibble k // (K/2). Chunk s: byte run
    # s % (S/2) of the row, nibble s // (S/2).
    runs = splits // 2
    codes = packed.reshape(n, runs, -1).transpose(0, 1).repeat(2, 1, 1).reshape(splits * n, -1).to(torch.int32)
    rows = torch.arange(splits * n, device=packed.device, dtype=torch.int32)
    shift = 4 * (rows // (n * runs))[:, None]
    return _int_field_values((codes >> shift) & 15, 4, True, dtype=dtype)


def forward(x, packed, scale, *, fmt, splits):
    m, k = x.shape
    n = packed.shape[0]
    marker = fpx.nn._invoke_quant(low_precision=True)
    w = marker(lambda p: split_codes(p, fmt, splits, x.dtype), packed, scheme="fpx.lowbit")
    xs = x.reshape(m, splits, k // splits).transpose(0, 1).reshape(splits * m, k // splits)
    product = (w @ xs.t()).float().reshape(splits, n, splits, m)
    out = product.diagonal(dim1=0, dim2=2).sum(-1)  # (N, M): the S partial sums
    return (out * scale.float().reshape(-1, 1)).to(x.dtype).t().contiguous()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="8192x8192", help="N x K")
    parser.add_argument("--m", default="16,64")
    parser.add_argument("--formats", default="INT4,E4M3")
    parser.add_argument("--splits", default="1,2,4")
    parser.add_argument("--no-layer", action="store_true", help="leave out the layer's own route")
    args = parser.parse_args()
    n, k = map(int, args.shape.split("x"))
    device, dtype = "cuda", torch.bfloat16
    print(f"# per channel, {args.shape} (N x K); {environment_line()}", flush=True)
    torch.manual_seed(0)
    linear = torch.nn.Linear(k, n, bias=False, device=device, dtype=dtype)
    dense = dense_copies(linear, device)
    options = fpx.nn.compile_options(device)
    rows = []
    for name in args.formats.split(","):
        fmt = {"INT4": fpx.INT4, "E4M3": fpx.E4M3}[name]
        layer = fpx.LowBitLinear.from_linear(linear, fmt, group_size=None)
        layers = layer_copies(layer, device)
        tensors = [(lay.packed.reshape(n, -1), lay.scale.to(dtype).reshape(-1)) for lay in layers]
        for m in map(int, args.m.split(",")):
            x = torch.randn(m, k, device=device, dtype=dtype)
            reference = x.float() @ layer.dequantize_weight().T
            bf16_s = time_cuda_graph([lambda w=w: F.linear(x, w) for w in dense])
            variants = ([] if args.no_layer else ["layer"]) + [f"split{s}" for s in args.splits.split(",")]
            for variant in variants:
                def make_calls(variant=variant):
                    if variant == "layer":
                        return layer_calls(layers, x, options)
                    splits = int(variant[len("split"):])
                    fn = torch.compile(lambda x, p, s: forward(x, p, s, fmt=fmt, splits=splits),
                                       fullgraph=True, dynamic=False, options=options)
                    return [lambda t=t: fn(x, *t) for t in tensors]
                rows.append(variant_row(f"{name:>5} M={m:<4} {variant:>6}", make_calls, reference, bf16_s))
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
