"""Probe: which LowBitLinear weight-decode prologues inductor fuses into the Triton mm template.

Run (GPU): TORCH_LOGS=fusion python benchmarks/probe_prologue.py
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import bitpack  # noqa: E402
import fpx  # noqa: E402
import fpx.nn as lowbit  # noqa: E402
from timing import time_cuda_graph  # noqa: E402


def variant_current(layer, dtype):
    return layer._matmul_weight(dtype)


def _wrap(layer, body):
    marker = lowbit._invoke_quant()
    return marker(body, layer.packed, layer.scale, scheme="probe")


def variant_bf16_math(layer, dtype):
    n, k, bits, gs = layer.out_features, layer.in_features, layer.fmt.bits, layer.group_size
    g = lowbit.planar_group(bits)

    def body(packed, scale):
        codes = bitpack.unpack(packed, bits, g, dim=1, signed=True, dtype=torch.int32).reshape(n, k)
        return (codes.to(dtype) * scale.to(dtype).repeat_interleave(gs, dim=1)).t().contiguous()

    return _wrap(layer, body)


def variant_fp32_math_repeat(layer, dtype):
    n, k, bits, gs = layer.out_features, layer.in_features, layer.fmt.bits, layer.group_size
    g = lowbit.planar_group(bits)

    def body(packed, scale):
        codes = bitpack.unpack(packed, bits, g, dim=1, signed=True, dtype=torch.int32).reshape(n, k)
        return (codes.float() * scale.float().repeat_interleave(gs, dim=1)).to(dtype).t().contiguous()

    return _wrap(layer, body)


def variant_planes_index_bf16(layer, dtype):
    n, k, bits, gs = layer.out_features, layer.in_features, layer.fmt.bits, layer.group_size
    g = lowbit.planar_group(bits)

    def body(packed, scale):
        codes = bitpack.unpack(packed, bits, g, dim=1, signed=True, dtype=torch.int32)
        group = (torch.arange(k, device=packed.device, dtype=torch.int32) // gs).view(g, k // g)
        return (codes.to(dtype) * scale.to(dtype)[:, group]).reshape(n, k).t().contiguous()

    return _wrap(layer, body)


VARIANTS = {
    "current": variant_current,
    "bf16-math": variant_bf16_math,
    "fp32-math-repeat": variant_fp32_math_repeat,
    "planes-index-bf16": variant_planes_index_bf16,
}


def main():
    from torch._inductor.utils import run_and_get_code

    n = k = int(os.environ.get("SIZE", "8192"))
    torch.manual_seed(0)
    linear = torch.nn.Linear(k, n, bias=False, device="cuda", dtype=torch.bfloat16)
    layer = fpx.LowBitLinear.from_linear(linear, fpx.INT4, group_size=128, gemv_max_rows=0)
    x = torch.randn(16, k, device="cuda", dtype=torch.bfloat16)
    reference = x.float() @ layer.dequantize_weight().T
    for name, variant in VARIANTS.items():
        def forward(x, variant=variant):
            return x @ variant(layer, x.dtype)

        torch._dynamo.reset()
        compiled = torch.compile(forward, fullgraph=True, options=lowbit.compile_options("cuda"))
        try:
            out, codes = run_and_get_code(compiled, x)
        except Exception as error:
            print(f"{name:>20}: FAILED {error!r}"[:300], flush=True)
            continue
        source = "\n".join(codes)
        error = ((out.float() - reference).norm() / reference.norm()).item()
        seconds = time_cuda_graph([lambda: compiled(x)])
        print(f"{name:>20}: {source.count('.run('):>2} kernels  {seconds * 1e6:7.1f} us  err {error:.1e}", flush=True)


if __name__ == "__main__":
    main()
