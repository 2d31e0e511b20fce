"""Probe: INT4's nibble chosen by k (the layer's planar layout) or by n (pairs along N) in the
fused matmul template.

Research script (not part of the package); docs/inductor.md, "Levers not yet tried". In the
layer's planar layout a byte holds W[n, j] and W[n, j + K/2], so the template's prologue shifts
each weight by 4 (k // (K/2)): a variable shift per weight, in a K loop along which k changes.
Paired along N, a byte holds W[n, k] and W[n + N/2, k]: which nibble depends on the column n
only, loop-invariant, and the decode is one LOP3 (a mask and an XOR pattern chosen by n, the
float32 exponent of 2^23 with the nibble's sign bit) and one FFMA (times 1 or 1/16, minus
2^23 r + 8) per weight. Counted offline for sm_90a: 9.69 / 8.39 / 8.30 instructions per weight
in 16 x 16 / 16 x 32 / 16 x 64 tiles against 8.31 / 7.31 / 7.05. This times both side by side:
the layer's own decode (``LowBitLinear._matmul_weight``) and the pairs' form, each ``x @ W.T``
with W.T decoded inside the template (torch's InvokeQuant marker), both compiled with
``fpx.nn.compile_options`` and tuned in ``fpx.nn.cold_cache_tuning``, INT4 by 128, bf16 x and
scales (both decodes give the same weights: checked against float64).

    python benchmarks/probe_nibble_pairs.py --m 16,64              # on the GPU
    python benchmarks/probe_nibble_pairs.py --device cpu --m 4     # correctness only, no timing
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fpx  # noqa: E402
from linear import copies_for  # noqa: E402
from timing import environment_line, run_and_count_kernels, time_cuda_graph  # noqa: E402

GROUP = 128


class PlanarWeight:
    """What ``LowBitLinear._matmul_weight`` reads of a layer: INT4 by GROUP, planar bytes."""

    fmt, group_size, block = fpx.INT4, GROUP, None

    def __init__(self, packed, scale):
        self.packed, self.scale = packed, scale

    def _weight_tensors(self):
        return self.packed, self.scale, None, None


def planar_weight_t(packed, scale):
    """W.T (K, N) in bfloat16 as the layer decodes it for its matmul template (planar bytes)."""
    return fpx.nn.LowBitLinear._matmul_weight(PlanarWeight(packed, scale), torch.bfloat16)


def pairs_weight_t(packed_pairs, scale):
    """W.T (K, N) in bfloat16 from bytes paired along N: ``packed_pairs[j, k]`` holds W[j, k]
    (low nibble) and W[j + N/2, k] (high), two's complement."""
    def decode(packed_pairs, scale):
        half, k = packed_pairs.shape
        n = 2 * half
        high = torch.arange(n, device=packed_pairs.device) >= half  # by column: loop-invariant
        mask = torch.where(high, 0xF0, 0x0F).to(torch.int32)
        pattern = torch.where(high, 0x4B000080, 0x4B000008).to(torch.int32)  # 2^23, the sign bit flipped
        unit = torch.where(high, 1 / 16, 1.0)
        offset = 2.0**23 * unit + 8
        byte = packed_pairs.t().repeat(1, 2).to(torch.int32)  # (K, N): column n reads row n % (N/2)
        values = ((byte & mask) ^ pattern).view(torch.float32) * unit - offset  # the signed nibble, exactly
        return values.to(torch.bfloat16) * scale.t().repeat_interleave(GROUP, dim=0)

    marker = fpx.nn._invoke_quant(low_precision=True)
    return marker(decode, packed_pairs, scale, scheme="probe.pairs") if marker is not None else decode(packed_pairs, scale)


def planar_form(x, packed, scale):
    return x @ planar_weight_t(packed, scale)


def pairs_form(x, packed_pairs, scale):
    return x @ pairs_weight_t(packed_pairs, scale)


def make_weights(n, k, device):
    """(codes (N, K) int8 in [-8, 7], bf16 scales (N, K / GROUP), planar bytes as the layer
    stores them, bytes paired along N)."""
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(k, n, bias=False), fpx.INT4, group_size=GROUP)
    layer = layer.to(device, torch.bfloat16)
    weight = layer.dequantize_weight(torch.float64)
    codes = torch.round(weight / layer.scale.double().repeat_interleave(GROUP, dim=1)).to(torch.int8)
    nibbles = codes.to(torch.uint8) & 15
    pairs = nibbles[: n // 2] | (nibbles[n // 2 :] << 4)
    return codes, layer.scale, layer.packed, pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="8192x8192", help="N x K")
    parser.add_argument("--m", default="16,64")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    n, k = map(int, args.shape.split("x"))
    device = args.device
    print(f"# {environment_line()}; INT4 by {GROUP}, {n} x {k}, bf16 x", flush=True)
    torch.manual_seed(0)
    codes, scale, packed, pairs = make_weights(n, k, device)
    reference_weight = codes.double() * scale.double().repeat_interleave(GROUP, dim=1)
    copies = copies_for(packed.numel() + 2 * scale.numel(), device)  # cycled: each call reads from HBM
    operands = {"planar (layer)": [(packed.clone(), scale.clone()) for _ in range(copies)],
                "pairs along N": [(pairs.clone(), scale.clone()) for _ in range(copies)]}
    forms = {"planar (layer)": planar_form, "pairs along N": pairs_form}
    print(f"{'form':>15} {'M':>4} {'us':>8} {'kernels':>7} {'max rel err':>11}", flush=True)
    for m in map(int, args.m.split(",")):
        x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
        expected = x.double() @ reference_weight.T
        bound = x.double().abs() @ reference_weight.abs().T
        for name, form in forms.items():
            torch._dynamo.reset()
            compiled = torch.compile(form, fullgraph=True, dynamic=False, options=fpx.nn.compile_options(device))
            with fpx.nn.cold_cache_tuning():
                out, kernels, _ = run_and_count_kernels(compiled, x, *operands[name][0])
            error = ((out.double() - expected).abs() / bound.clamp_min(1e-30)).max().item()
            us = float("nan")
            if device == "cuda":
                us = 1e6 * time_cuda_graph([lambda ops=ops: compiled(x, *ops) for ops in operands[name]])
            print(f"{name:>15} {m:>4} {us:>8.1f} {kernels:>7} {error:>11.2e}", flush=True)


if __name__ == "__main__":
    main()
