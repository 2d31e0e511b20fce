"""Probe: INT4 by groups of 128 with the group scales out of the matmul's K loop, as a batched
product per group.

Research script (not part of the package); docs/inductor.md, "Levers not yet tried". The
layer's fused template multiplies every weight by its group's scale inside the K loop, and
at 16 rows that loop runs one warp per scheduler, latency-bound on each weight's chain
(twenty-seventh session's profile); INT8 by 128 with no plain load or store still took 39.9
us where per channel, no scale, takes 24.1. Here the scale leaves the loop:

    P[g, m, n] = sum over k in group g of x[m, k] * code[n, k]    (torch.bmm, G batches)
    y[m, n]    = sum over g of scale[n, g] * P[g, m, n]            (a reduction over g)

The codes are decoded unscaled (``LowBitLinear._matmul_weight(..., scaled=False)``) as W.T
(K, N), viewed (G, 128, N): batch g's nibble is the same for all its weights (the planar
byte's half is k // (K / 2) = g // (G / 2)), so, if inductor fuses the decode into the bmm
template's prologue, it has no per-weight shift. The price: P, (G, M, N), written and read
back (bfloat16: 16.8 MB at 16 rows of 8192 x 8192, half the codes' 33.5 MB; float32 twice
that), so it can only pay at few rows. Each P rounded to bfloat16 adds at most 2^-9 of
``|x| @ |W|.T`` to the error bound (as the right route's K split rounds its halves).

Predicted (H200, 8192 x 8192, bf16 x, 16 rows; the layer 43.9-44.2 us): bfloat16 P 25-32 us
(about 68 MB moved at 2.7 TB/s is 25 us, if the bmm's decode keeps up: 64 x 256 programs of
16 x 32 tiles, many warps per scheduler), float32 P 33-40 us; at 64 rows P is 4 times
larger and the layer (54 us) should win. If the decode does not fuse (a weight-sized buffer
in the output's "weight-sized allocations" column), about 80 us.

    python benchmarks/probe_group_products.py --m 8,16,32,64     # on the GPU
    python benchmarks/probe_group_products.py --device cpu --shape 512x1024 --m 1,5   # correctness only
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fpx  # noqa: E402
from linear import copies_for  # noqa: E402
from probe_nibble_pairs import GROUP, PlanarWeight, make_weights, planar_form  # noqa: E402
from timing import environment_line, run_and_count_kernels, time_cuda_graph  # noqa: E402


def unscaled_codes_t(packed, scale):
    """W.T (K, N) in bfloat16 without its scales: the codes' values, as the layer's matmul
    decode computes them with ``scaled=False`` (inside torch's InvokeQuant marker on CUDA)."""
    return fpx.nn.LowBitLinear._matmul_weight(PlanarWeight(packed, scale), torch.bfloat16, scaled=False)


def group_products(x, packed, scale, product_dtype):
    """x @ W.T from one product per group of 128 input features (a bmm), each scaled by its
    group's scales and summed in float32; the products in ``product_dtype``."""
    m, k = x.shape
    groups = k // GROUP
    codes = unscaled_codes_t(packed, scale).view(groups, GROUP, -1)  # (G, 128, N)
    chunks = x.view(m, groups, GROUP).transpose(0, 1)  # (G, M, 128), a view
    if product_dtype == torch.bfloat16:
        products = torch.bmm(chunks, codes)
    else:
        products = torch.bmm(chunks, codes, out_dtype=product_dtype)
    return (products.float() * scale.t().float().unsqueeze(1)).sum(0).to(x.dtype)


def group_products_bf16(x, packed, scale):
    return group_products(x, packed, scale, torch.bfloat16)


def group_products_f32(x, packed, scale):
    return group_products(x, packed, scale, torch.float32)


def weight_sized_allocations(source, elements):
    """Buffers of the generated wrapper with at least ``elements`` elements (a decoded weight)."""
    sizes = []
    for shape in re.findall(r"empty_strided\w*\(\(([\d, ]+)\)", source):
        numel = 1
        for d in shape.replace(" ", "").rstrip(",").split(","):
            numel *= int(d)
        if numel >= elements:
            sizes.append(shape)
    return sizes


# name: form (layer: the layer's decode, scales in the K loop; bf16-P, f32-P: group products)
FORMS = {"layer": planar_form, "bf16-P": group_products_bf16, "f32-P": group_products_f32}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="8192x8192", help="N x K")
    parser.add_argument("--m", default="8,16,32,64")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--forms", default=",".join(FORMS), help="comma-separated, of: " + ",".join(FORMS))
    args = parser.parse_args()
    n, k = map(int, args.shape.split("x"))
    if k % GROUP or (k // GROUP) % 2:
        parser.error(f"--shape: K must be a multiple of {2 * GROUP}, got {k}")
    unknown = [name for name in args.forms.split(",") if name not in FORMS]
    if unknown:
        parser.error(f"--forms: unknown {unknown}, choose from {list(FORMS)}")
    forms = {name: FORMS[name] for name in args.forms.split(",")}
    device = args.device
    print(f"# {environment_line()}; INT4 by {GROUP}, {n} x {k}, bf16 x", flush=True)
    torch.manual_seed(0)
    codes, scale, packed, _ = make_weights(n, k, device)
    reference_weight = codes.double() * scale.double().repeat_interleave(GROUP, dim=1)
    copies = copies_for(packed.numel() + 2 * scale.numel(), device)  # cycled: each call reads from HBM
    operands = [(packed.clone(), scale.clone()) for _ in range(copies)]
    print(f"{'form':>8} {'M':>4} {'us':>8} {'kernels':>7} {'max rel err':>11}  weight-sized allocations", flush=True)
    for m in map(int, args.m.split(",")):
        x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
        expected = x.double() @ reference_weight.T
        bound = x.double().abs() @ reference_weight.abs().T
        for name, form in forms.items():
            torch._dynamo.reset()
            compiled = torch.compile(form, fullgraph=True, dynamic=False, options=fpx.nn.compile_options(device))
            try:
                with fpx.nn.cold_cache_tuning():
                    out, kernels, source = run_and_count_kernels(compiled, x, *operands[0])
            except Exception as error:  # one form failing to compile leaves the others' numbers
                print(f"{name:>8} {m:>4} failed: {type(error).__name__}: {str(error)[:160]}", flush=True)
                continue
            error = ((out.double() - expected).abs() / bound.clamp_min(1e-30)).max().item()
            us = float("nan")
            if device == "cuda":
                us = 1e6 * time_cuda_graph([lambda ops=ops: compiled(x, *ops) for ops in operands])
            big = weight_sized_allocations(source, n * k // 2)
            print(f"{name:>8} {m:>4} {us:>8.1f} {kernels:>7} {error:>11.2e}  {big or 'none'}", flush=True)


if __name__ == "__main__":
    main()
