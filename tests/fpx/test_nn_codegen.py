"""The compiled LowBitLinear forward fuses the weight decode into the matmul.

For every format at M=1 and M=16 (CPU), and at the M where the fused path is used on CUDA: no
buffer as large as the weight (N x K elements) is allocated, in one kernel on CPU; on CUDA the
small-batch reductions take at most three kernels (the per-group dot products, the scaled sum,
and a third where sum(x) per group is needed (UINT, INT1) or the 8 planes of 6-bit codes split
the dot products in two: measured on an H100, torch 2.11). At this K the scaled sum of MX
blocks over 2 rows is a few unrolled terms per row, which inductor computes per row in
kernels of their own: four kernels (at 8192 x 8192 it is a reduction over both rows: two).
"""

import math

import pytest
import torch

import fpx

from ..codegen import allocations, compile_and_code, kernel_count

N, K = 64, 256
CASES = [
    (fpx.INT1, {"group_size": 32}),
    (fpx.INT2, {"group_size": 64}),
    (fpx.INT3, {"group_size": 64}),
    (fpx.INT4, {"group_size": 128}),
    (fpx.INT8, {"group_size": 32}),
    (fpx.UINT4, {"group_size": 128}),
    (fpx.E4M3, {"group_size": None}),
    (fpx.E5M2, {"group_size": 128}),
    (fpx.E3M2, {"group_size": 32}),
    (fpx.E2M3, {"group_size": 64}),
    (fpx.E2M1, {"block": "mx"}),
]
IDS = [fmt.name + ("-mx" if kw.get("block") else "") for fmt, kw in CASES]


def assert_fused(fmt, kwargs, rows, device, max_kernels):
    torch.manual_seed(0)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(K, N), fmt, **kwargs).to(device)
    x = torch.randn(rows, K, device=device)
    out, source = compile_and_code(layer, x)
    expected = x.double() @ layer.dequantize_weight().double().T + layer.bias.double()
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-4)
    assert 1 <= kernel_count(source, device) <= max_kernels, source
    sizes = [math.prod(s) for s in allocations(source) if all(isinstance(d, int) for d in s)]
    assert all(size < N * K for size in sizes), allocations(source)


@pytest.mark.parametrize("rows", [1, 16])
@pytest.mark.parametrize("fmt, kwargs", CASES, ids=IDS)
def test_cpu_forward_is_one_kernel_without_a_dequantized_weight(fmt, kwargs, rows):
    assert_fused(fmt, kwargs, rows, "cpu", max_kernels=1)


@pytest.mark.cuda
@pytest.mark.parametrize("fmt, kwargs", CASES, ids=IDS)
@pytest.mark.parametrize("rows", [1, 2])
def test_cuda_forward_at_few_rows_is_fused(fmt, kwargs, rows):
    assert_fused(fmt, kwargs, rows, "cuda", max_kernels=4 if kwargs.get("block") == "mx" and rows == 2 else 3)


# Inductor decides a prologue fusion by timing the fused kernel against the unfused pair while
# compiling. At 4096 x 4096 the pair's bfloat16 weight (32 MiB) stays in an H200's L2 and INT8
# at 16 rows stayed unfused in one of several runs (torch 2.11); at 8192 x 8192 the pair writes
# and reads 128 MiB, and the fused kernels measured 55-65 us against 93-145 us for the pair
# (benchmarks/RESULTS.md), a margin no timing noise crosses. Pinned: INT8, INT4 (codes by float
# bits) and E2M1 (codes decoded in place); float codes of 6 bits and MX scales do not fuse yet.
@pytest.mark.cuda
@pytest.mark.parametrize(
    "fmt, kwargs", [(fpx.INT8, {"group_size": 32}), (fpx.INT4, {"group_size": 128}), (fpx.E2M1, {"group_size": 128})],
    ids=["INT8", "INT4", "E2M1"],
)
def test_cuda_forward_at_16_rows_fuses_the_decode_into_the_matmul_template(fmt, kwargs):
    torch.manual_seed(0)
    n, k = 8192, 8192
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(k, n), fmt, **kwargs).to("cuda", torch.bfloat16)
    x = torch.randn(16, k, device="cuda", dtype=torch.bfloat16)
    out, source = compile_and_code(layer, x, options=fpx.nn.compile_options("cuda"))
    expected = x.float() @ layer.dequantize_weight().T + layer.bias.float()
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=5e-2)
    sizes = [math.prod(s) for s in allocations(source) if all(isinstance(d, int) for d in s)]
    assert all(size < n * k for size in sizes), allocations(source)
    assert kernel_count(source, "cuda") <= 2, source  # the template (+ the bias epilogue if unfused)
