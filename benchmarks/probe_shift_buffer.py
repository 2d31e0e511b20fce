"""Research probe: INT4 decoded with its nibble's shift *loaded* (a (K/128, N) uint8 buffer)
instead of computed from the column index, in the compiled matmul's prologue.

Why (docs/inductor.md, "A shift loaded, not computed"): in Triton's lowering a matmul operand
decoded from values that are all *loaded* (and constants) is computed in the MMA operand's
register layout, straight from the async-copied shared memory tiles; a value computed from the
index (the planar layout's ``4 * (k // (K/2))``) is not, so the decoded tile is stored to shared
memory and read back each K step. Counted offline for sm_90a (Triton 3.6): the left operand
(W @ x.T, 64 x 16 x 128, 4 warps) 8.78 instructions per weight with no store against 9.30 with
64 STS.U16 today; the right one (x @ W.T, 16 x 16 x 128, 2 warps) 9.84 without a store against
9.69 with 4 STS.128. The scales are read from a (K/group, N) copy, contiguous along N as the
shift is (an (N, K/group) scale is not async-copied).

Run (GPU): python benchmarks/probe_shift_buffer.py --m 16,64 --group-size 128 --variants layer,right,left
Prints per (M, variant): us, ratio to bf16 F.linear in the same run, kernels, the template's
tile, relative error against the dequantized weight's matmul in float32.
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
from fpx.fields import _int_field_values  # noqa: E402
from linear import dense_copies, layer_copies, template_config_of  # noqa: E402
from timing import environment_line, run_and_count_kernels, time_cuda_graph  # noqa: E402

SHIFT_BLOCK = 128  # columns per shift value: BLOCK_K divides it, and K/2 is a multiple of it


def shift_buffer(n: int, k: int, device) -> torch.Tensor:
    """(K / SHIFT_BLOCK, N) uint8: 0 where the block's columns are in the low nibbles (k < K/2),
    4 where in the high ones, repeated along N so that a tile's load is contiguous."""
    blocks = torch.arange(k // SHIFT_BLOCK, device=device) * SHIFT_BLOCK
    return (4 * (blocks >= k // 2)).to(torch.uint8)[:, None].expand(-1, n).contiguous()


def decode(packed2d, shift_t, scale_t=None, *, group, dtype, left):
    """W (N, K) (left) or W.T (K, N) in ``dtype`` from the planar INT4 bytes (N, K/2), the
    loaded shifts (K/128, N) and the scales (K/group, N) or None (per channel, applied after)."""
    byte = packed2d.repeat(1, 2).to(torch.int32)  # byte[n, k % (K/2)]
    shift = shift_t.t().repeat_interleave(SHIFT_BLOCK, dim=1).to(torch.int32)
    w = _int_field_values((byte >> shift) & 15, 4, True, dtype=dtype)
    if scale_t is not None:
        w = w * scale_t.t().repeat_interleave(group, dim=1)
    return w if left else w.t().contiguous()


def forward(x, packed2d, shift_t, scale_t, scale_after, *, group, left):
    # the marker takes tensors only: no None among them
    tensors = (packed2d, shift_t) if scale_t is None else (packed2d, shift_t, scale_t)
    marker = fpx.nn._invoke_quant(low_precision=True)
    w = marker(lambda *t: decode(*t, group=group, dtype=x.dtype, left=left), *tensors, scheme="fpx.lowbit")
    if left:
        out = w @ x.t()
        if scale_after is not None:
            return (out.float() * scale_after.float().reshape(-1, 1)).to(x.dtype).t().contiguous()
        return out.t().contiguous()
    out = x @ w
    if scale_after is not None:
        out = (out.float() * scale_after.float().reshape(-1)).to(x.dtype)
    return out


def time_variant(calls, reference, bf16_s) -> tuple[str, str]:
    """Compile and tune the first of ``calls`` (zero-argument calls of one compiled function on
    copies of the weight) under ``cold_cache_tuning``, the others loading its kernels, then time
    them cycled. Returns ('<us> us <ratio>x bf16 (<bf16 us>)  <n> kernels  <template tile>  err
    <relative error against reference>', the generated source)."""
    with fpx.nn.cold_cache_tuning():
        out, kernels, source = run_and_count_kernels(calls[0])
        for call in calls[1:]:
            call()
    error = ((out.float() - reference).norm() / reference.norm()).item()
    t = time_cuda_graph(calls)
    return (f"{t * 1e6:7.1f} us  {bf16_s / t:5.2f}x bf16 ({bf16_s * 1e6:.1f})  {kernels} kernels  "
            f"{template_config_of(source)}  err {error:.1e}"), source


def variant_row(label, make_calls, reference, bf16_s, more=lambda source: "") -> str:
    """Print and return '<label>: <time_variant's summary><more(source)>' for the calls that
    ``make_calls()`` compiles (dynamo reset first), or '<label>: FAILED <error>': one failing
    variant must not hide the rest."""
    torch._dynamo.reset()
    try:
        timing, source = time_variant(make_calls(), reference, bf16_s)
        row = f"{label}: {timing}{more(source)}"
    except Exception as error:
        row = f"{label}: FAILED {error!r}"[:300]
    print(row, flush=True)
    return row


def layer_calls(layers, x, options):
    """Zero-argument calls of each layer compiled as LowBitLinear compiles (its own route)."""
    fns = [torch.compile(layer, fullgraph=True, dynamic=False, options=options) for layer in layers]
    return [lambda f=f: f(x) for f in fns]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="8192x8192")
    parser.add_argument("--m", default="16,64")
    parser.add_argument("--group-size", type=int, default=128, help="0: per channel (scales on the product)")
    parser.add_argument("--variants", default="layer,right,left")
    args = parser.parse_args()
    n, k = map(int, args.shape.split("x"))
    device, dtype = "cuda", torch.bfloat16
    print(f"# INT4 {args.shape}, group {args.group_size or 'per channel'}; {environment_line()}", flush=True)
    torch.manual_seed(0)
    linear = torch.nn.Linear(k, n, bias=False, device=device, dtype=dtype)
    group = args.group_size or None
    layer = fpx.LowBitLinear.from_linear(linear, fpx.INT4, group_size=group)
    layers = layer_copies(layer, device)
    dense = dense_copies(linear, device)
    per_channel = group is None
    sets = []
    for lay in layers:
        scale = lay.scale.to(dtype)
        sets.append((lay.packed.reshape(n, k // 2), shift_buffer(n, k, device),
                     None if per_channel else scale.t().contiguous(), scale.reshape(-1) if per_channel else None))
    weight_sized = lambda source: "  weight-sized buffers " + str(  # noqa: E731
        len(re.findall(rf"empty_strided_cuda\(\(({n}, {k}|{k}, {n})\)", source)))
    options = fpx.nn.compile_options(device)
    rows = []
    for m in map(int, args.m.split(",")):
        x = torch.randn(m, k, device=device, dtype=dtype)
        reference = x.float() @ layer.dequantize_weight().T
        bf16_s = time_cuda_graph([lambda w=w: F.linear(x, w) for w in dense])
        for variant in args.variants.split(","):
            def make_calls(variant=variant):
                if variant == "layer":
                    return layer_calls(layers, x, options)
                fn = torch.compile(lambda x, p, s, c, a: forward(x, p, s, c, a, group=args.group_size or k,
                                                                 left=variant == "left"),
                                   fullgraph=True, dynamic=False, options=options)
                return [lambda t=t: fn(x, *t) for t in sets]
            rows.append(variant_row(f"M={m:<4} {variant:>6}", make_calls, reference, bf16_s, weight_sized))
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
