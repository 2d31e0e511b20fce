"""The compiled LowBitLinear forward fuses the weight decode into the matmul.

For every format at M=1 and M=16 (CPU), and at the M where the fused path is used on CUDA: no
buffer as large as the weight (N x K elements) is allocated, in one kernel on CPU (two at one
row for codes read as words: x reordered first, K values); on CUDA the
small-batch reductions launch the kernels pinned in CUDA_KERNELS (the per-group dot products
and their scaled sum, in one kernel or two; a third at 2 rows where sum(x) per group is needed,
UINT4 and INT1; at this K the scaled sum of MX blocks over 2 rows is a few unrolled terms per
row, which inductor computes per row in kernels of their own: four, where 8192 x 8192 takes
two). A change in a pinned count is a change in what inductor makes of the layer: look at the
kernels (``python benchmarks/kernel_counts.py`` on the device) before updating the pin.
"""

import contextlib
import math
import os
import re
import subprocess
import sys

import pytest
import torch

import fpx

from ..codegen import (allocations, compile_and_code, kernel_count, typed_allocations, vector_bits, vectorizes,
                       weight_sized_allocations)

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
# Kernels the CUDA forward launches at 1 and 2 rows: H200, torch 2.11, 2026-11-30
# (benchmarks/kernel_counts.py).
CUDA_KERNELS = {
    1: {"INT1": 2, "INT2": 1, "INT3": 1, "INT4": 1, "INT8": 2, "UINT4": 2},
    2: {"INT1": 3, "INT2": 1, "INT3": 1, "INT4": 1, "INT8": 2, "UINT4": 3},
}
CUDA_KERNELS[1] |= {"E4M3": 1, "E5M2": 2, "E3M2": 1, "E2M3": 1, "E2M1-mx": 2}
CUDA_KERNELS[2] |= {"E4M3": 1, "E5M2": 2, "E3M2": 1, "E2M3": 1, "E2M1-mx": 2}


def checked_forward_source(fmt, kwargs, rows, device, dtype=torch.float32, n=N, k=K):
    """Compile the layer (n x k) in ``dtype`` at ``rows`` rows of x, check its output against
    the dequantized weight in float64 (to 1e-4 in float32, 2e-2 in a 16-bit dtype); return the
    generated source."""
    torch.manual_seed(0)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(k, n), fmt, **kwargs).to(device, dtype)
    x = torch.randn(rows, k, device=device).to(dtype)
    out, source = compile_and_code(layer, x)
    assert out.dtype == dtype
    expected = x.double() @ layer.dequantize_weight().double().T + layer.bias.double()
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.double(), expected, rtol=tolerance, atol=tolerance)
    return source


def assert_fused(fmt, kwargs, rows, device, kernels):
    """Compile the layer at ``rows`` rows, check its output, kernel count and that no
    weight-sized buffer is allocated; return the generated source."""
    source = checked_forward_source(fmt, kwargs, rows, device)
    assert kernel_count(source, device) == kernels, source
    assert weight_sized_allocations(source, N * K) == [], allocations(source)
    return source


def reads_words(fmt, kwargs) -> bool:
    """CPU, one row: whether the codes are read as int32 words, x in the words' order from a
    buffer of its own (K values) that a small kernel writes first. Codes of 1, 2, 4 and 8 bits
    where inductor's vectors are 256 bits or narrower (AVX2: byte lanes load slowly); with
    512-bit vectors only codes under 8 bits in groups of 128 or more (AVX-512: in shorter
    groups a segment's words fill less than two vectors; fpx.nn._word_planes_pay_off)."""
    group = 32 if kwargs.get("block") else (kwargs.get("group_size") or K)
    if 8 % fmt.bits:
        return False
    return vector_bits() < 512 or (fmt.bits < 8 and group >= 128)


# Every format at one row; at CPU's row limit with float32 x (16 rows, 4 for FP6; one
# accumulator per row and plane) the formats whose reductions differ: 1, 3 and 4-bit planes,
# FP6, FP8 per channel and MX (INT2, INT8, UINT4 and E5M2 share theirs; each 16-row compile
# costs 10-27 s on the CI machine).
AT_THE_LIMIT = {"INT1", "INT3", "INT4", "E4M3", "E3M2", "E2M3", "E2M1-mx"}
CPU_FUSED_CASES = [(*case, name, rows) for case, name in zip(CASES, IDS)
                   for rows in (1, fpx.nn.default_gemv_max_rows("cpu", case[0], block=case[1].get("block")))
                   if rows == 1 or name in AT_THE_LIMIT]


@pytest.mark.parametrize("fmt, kwargs, name, rows", CPU_FUSED_CASES, ids=[f"{c[2]}-{c[3]}" for c in CPU_FUSED_CASES])
def test_cpu_forward_is_fused_without_a_dequantized_weight(fmt, kwargs, name, rows):
    assert_fused(fmt, kwargs, rows, "cpu", kernels=2 if rows == 1 and reads_words(fmt, kwargs) else 1)


# CPU, a 16-bit x through the small-batch reductions (fpx.nn._x_in_float32_first): x is written
# out in float32 first (M x K values), so the reductions run on float32 and uint8 lanes only.
# Read as bfloat16 inside them, inductor's C++ ran the reductions 32 lanes wide, converting
# each code uint8 -> int32 -> float32 by at::vec's scalar fallbacks (2 cores, 4096 x 4096,
# one row: INT8 10.8 -> 1.05 ms, E4M3 31.3 -> 3.0).
@pytest.mark.parametrize("fmt, kwargs, dtype", [(fpx.INT8, {"group_size": 32}, torch.bfloat16),
                                                (fpx.E4M3, {"group_size": None}, torch.float16)],
                         ids=["INT8-bf16", "E4M3-f16"])
def test_cpu_forward_of_16_bit_x_reduces_in_float32_lanes(fmt, kwargs, dtype):
    source = checked_forward_source(fmt, kwargs, 2, "cpu", dtype)
    assert kernel_count(source, "cpu") == 1, source
    assert weight_sized_allocations(source, N * K) == [], allocations(source)
    if vectorizes():
        assert "int32_t,2" not in source, source  # 32-lane int32 vectors: the scalar fallbacks


# CPU past gemv_max_rows (16 by default): the weight decoded a block of N / WEIGHT_BLOCKS output
# rows at a time, a kernel per block, each block's buffer reused by the next and multiplied by a
# library matmul straight into its columns of the output (bias included): two allocations, the
# block and the output. Where the C++ backend vectorizes, each block's codes are loaded as
# vectors, also for scale groups shorter than a code row (UINT4 by 32, MX): read through the
# (N, groups, group_size) view, those codes were gathered byte by byte into a buffer (MX) or
# the whole loop was scalar (UINT4 by 32).
@pytest.mark.parametrize("fmt, kwargs", [CASES[3], (fpx.UINT4, {"group_size": 32}), CASES[10]],
                         ids=[IDS[3], "UINT4-32", IDS[10]])
def test_cpu_forward_past_the_row_limit_decodes_the_weight_by_blocks(fmt, kwargs):
    rows = fpx.nn.default_gemv_max_rows("cpu", fmt) + 4
    source = assert_fused(fmt, kwargs, rows, "cpu", kernels=fpx.nn.WEIGHT_BLOCKS)
    sizes = sorted(math.prod(s) for s in allocations(source))
    assert sizes == sorted([N // fpx.nn.WEIGHT_BLOCKS * K, rows * N]), allocations(source)
    assert source.count("extern_kernels.addmm(") == fpx.nn.WEIGHT_BLOCKS, source
    if vectorizes():
        # One vector load of codes per block at least, and no element-by-element gather.
        assert len(re.findall(r"Vectorized<uint8_t>::loadu\(in_ptr", source)) >= fpx.nn.WEIGHT_BLOCKS, source
        assert not re.search(r"tmpbuf\[\w+\] = in_ptr", source), source


# CPU past the row limit with bfloat16 x (fpx.nn._codes_in_uint8_lanes): each block's kernel
# stores bfloat16, so inductor's C++ runs it 32 lanes wide; the integer codes stay in uint8
# lanes up to one uint8 -> float32 conversion (no int32 lanes: at 32 lanes their conversions
# are scalar fallbacks; a 512 x 4096 INT4 block 6.0 -> 0.45 ms on 2 cores).
@pytest.mark.parametrize("fmt, kwargs", [CASES[3], (fpx.UINT4, {"group_size": 32})], ids=[IDS[3], "UINT4-32"])
def test_cpu_forward_past_the_row_limit_with_bfloat16_x_decodes_in_uint8_lanes(fmt, kwargs):
    rows = fpx.nn.default_gemv_max_rows("cpu", fmt, x_dtype=torch.bfloat16) + 1  # 8: bfloat16's lower limit
    assert rows == 8
    source = checked_forward_source(fmt, kwargs, rows, "cpu", torch.bfloat16)
    assert source.count("extern_kernels.addmm(") == fpx.nn.WEIGHT_BLOCKS, source
    if vectorizes():
        assert "int32_t" not in source, source


# CPU with bfloat16 x (fpx.nn.CPU_BFLOAT16_GEMV_MAX_ROWS): the reductions up to 7 rows, the
# weight blocks from 8 (the blocks won from 8 rows on 2 cores, 4096 x 4096); float codes of 8
# planes from 5 rows, where the reductions would decode every weight once per row (E3M2 at 6
# rows: 25.5 ms by the reductions, 9.3 by blocks); the 8-bit floats at 16 rows as before.
@pytest.mark.parametrize("fmt, kwargs, rows, blocks", [(fpx.INT4, {"group_size": 128}, 7, False),
                                                       (fpx.E3M2, {"group_size": 32}, 5, True),
                                                       (fpx.E4M3, {"group_size": None}, 8, False)],
                         ids=["INT4-7", "E3M2-5", "E4M3-8"])
def test_cpu_forward_with_bfloat16_x_takes_the_weight_blocks_from_its_own_row_limit(fmt, kwargs, rows, blocks):
    source = checked_forward_source(fmt, kwargs, rows, "cpu", torch.bfloat16)
    assert source.count("extern_kernels.addmm(") == (fpx.nn.WEIGHT_BLOCKS if blocks else 0), source
    if not blocks:
        assert kernel_count(source, "cpu") == 1, source
        assert weight_sized_allocations(source, N * K) == [], allocations(source)


# float16 x past the row limit on CPU (fpx.nn._float16_matmul_in_float32): each block's W is
# stored in float32 and multiplied in float32 (the library's float16 matmul has no hardware path
# there: a 32 x 4096 x 512 block's addmm 4.0 ms in float16, 1.45 in float32), the output rounded
# to float16 once. No float16 block, every block's product a float32 addmm.
def test_cpu_forward_past_the_row_limit_with_float16_x_multiplies_in_float32():
    source = checked_forward_source(fpx.INT4, {"group_size": 128}, fpx.nn.default_gemv_max_rows("cpu", fpx.INT4) + 4,
                                    "cpu", torch.float16)
    assert source.count("extern_kernels.addmm(") == fpx.nn.WEIGHT_BLOCKS, source
    blocks = [dtype for shape, dtype in typed_allocations(source) if shape == (K, N // fpx.nn.WEIGHT_BLOCKS)
              or shape == (N // fpx.nn.WEIGHT_BLOCKS, K)]
    assert blocks and set(blocks) == {"torch.float32"}, typed_allocations(source)


# And float codes returned in a 16-bit dtype, decoded in uint8 lanes by float products
# (fpx.convert._decode_bytes_by_float_products; a 512 x 4096 block to bfloat16, 2 cores: E4M3
# 4.96 -> 0.99 ms, E2M1 5.09 -> 0.83), with the 3, 5, 6 and 7-bit codes' straddling bytes
# joined in uint8 lanes too (fpx.nn._planar_codes_in_uint8_lanes; INT3 2.7-3.3 -> 0.49). The
# block's compiled decode against the eager weight rounded to that dtype, bit for bit, and no
# int32 lanes.
@pytest.mark.parametrize("fmt, kwargs, dtype", [(fpx.E4M3, {"group_size": None}, torch.bfloat16),
                                                (fpx.E5M2, {"group_size": 128}, torch.float16),
                                                (fpx.E2M1, {"block": "mx"}, torch.bfloat16),
                                                (fpx.INT3, {"group_size": 64}, torch.bfloat16),
                                                (fpx.E3M2, {"group_size": 32}, torch.float16)],
                         ids=["E4M3-bf16", "E5M2-f16", "E2M1-mx-bf16", "INT3-bf16", "E3M2-f16"])
def test_cpu_weight_block_in_a_16_bit_dtype_decodes_in_uint8_lanes(fmt, kwargs, dtype):
    torch.manual_seed(0)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(K, N), fmt, **kwargs)
    expected = layer.dequantize_weight().to(dtype)

    def block_weight(packed, scale, zero_point, code_table):
        return fpx.nn.dequantize_packed(packed, scale, zero_point, code_table, fmt=fmt, group_size=layer.group_size,
                                        block=layer.block, table=False, out_dtype=dtype)

    out, source = compile_and_code(block_weight, *layer._weight_tensors())
    assert out.dtype == dtype
    assert torch.equal(out.view(torch.int16), expected.view(torch.int16))
    if vectorizes():
        # No int32 vectors (the MX scale's E8M0 decode is scalar int32 arithmetic, once per block).
        assert not re.search(r"Vectorized(N)?<int32_t|at::vec::convert<int32_t", source), source


@pytest.mark.cuda
@pytest.mark.parametrize("fmt, kwargs, name", [(*case, name) for case, name in zip(CASES, IDS)], ids=IDS)
@pytest.mark.parametrize("rows", [1, 2])
def test_cuda_forward_at_few_rows_is_fused(fmt, kwargs, name, rows):
    assert_fused(fmt, kwargs, rows, "cuda", kernels=CUDA_KERNELS[rows][name])


# At one row on CUDA, codes of 1-3 and 6 bits hand each plane's products to inductor as buffers
# so that the per-segment sums are persistent reductions, one trip over a segment of 128
# (fpx.nn._sums_products_in_one_trip): no kernel loops. 4096 x 4096 is large enough (more
# outputs than inductor splits a reduction for) that without the buffers these were looped:
# E2M3 and INT3 each (torch 2.11 and 2.13, benchmarks/reduction_hints.py --offline).
@pytest.mark.cuda
@pytest.mark.parametrize("fmt", [fpx.INT3, fpx.E2M3], ids=["INT3", "E2M3"])
def test_cuda_sums_at_one_row_are_persistent_reductions(fmt):
    n = k = 4096
    source = checked_forward_source(fmt, {"group_size": 128}, 1, "cuda", n=n, k=k)
    assert "triton_per_" in source and "triton_red_" not in source, source
    assert weight_sized_allocations(source, n * k) == [], allocations(source)


# Inductor unrolls a reduction of fewer than 8 elements into pointwise additions. With 4096
# input features in groups of 128 the 8-plane codes (3, 6 and 1 bits) have 4 segments per plane;
# the sum over them, unrolled, was a pointwise kernel of its own that read every plane's dot
# products back, and at 4 rows and 4096 outputs the reductions split into 13-21 kernels (H200,
# float16 x). Segments halved to 8 per plane (fpx.nn._segment_for_summed_segments) keep that sum
# a reduction: at one row every kernel is a persistent reduction (with 4 segments one of them
# was pointwise).
@pytest.mark.cuda
@pytest.mark.parametrize("fmt, kernels", [(fpx.INT3, 2), (fpx.E3M2, 3), (fpx.INT1, 3)], ids=["INT3", "E3M2", "INT1"])
def test_cuda_sums_over_four_segments_per_plane_stay_reductions(fmt, kernels):
    source = checked_forward_source(fmt, {"group_size": 128}, 1, "cuda", torch.float16, n=256, k=4096)
    assert kernel_count(source, "cuda") == kernels, source
    assert "triton_poi_" not in source and "triton_red_" not in source, source


# At one row the reductions read x once per weight. Where the graph computes x (an MLP's SiLU
# and product feeding its down projection), inductor inlined that producer into them and
# computed it again for every weight: on an H200, Llama 3 8B's MLP in INT4 took 103 us at one
# row, 47 with x written out first (a buffer of K values: here one small kernel on CUDA, in the
# MLP the gate and up layers' kernel; on CPU a loop of its own in the one kernel), and the
# reductions compute no SiLU.
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("fmt, kwargs", [CASES[3], CASES[10]], ids=[IDS[3], IDS[10]])
def test_one_row_reads_a_computed_x_written_out_not_its_producer(fmt, kwargs, device):
    torch.manual_seed(0)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(K, N, bias=False), fmt, **kwargs).to(device)
    gate, up = torch.randn(2, 1, K, device=device)

    def mlp_tail(gate, up):
        return layer(torch.nn.functional.silu(gate) * up)

    out, source = compile_and_code(mlp_tail, gate, up, options=fpx.nn.compile_options(device))
    x = torch.nn.functional.silu(gate.double()) * up.double()
    torch.testing.assert_close(out.double(), x @ layer.dequantize_weight().double().T, rtol=1e-4, atol=1e-4)
    assert (1, K) in allocations(source), allocations(source)
    if device == "cuda":
        kernels = re.findall(r"async_compile\.triton\('\w+', '{3}(.*?)'{3}", source, re.S)  # their sources
        exp = re.compile(r"\.exp\(")  # libdevice.exp(, tl_math.exp(
        reductions = [k for k in kernels if "r0_numel" in k]
        assert reductions and not any(exp.search(k) for k in reductions), source
        assert any(exp.search(k) for k in kernels), source


# Inductor decides a prologue fusion by timing the fused kernel against the unfused pair while
# compiling. At 4096 x 4096 the pair's bfloat16 weight (32 MiB) stays in an H200's L2 and INT8
# at 16 rows stayed unfused in one of several runs (torch 2.11); at 8192 x 8192 the pair writes
# and reads 128 MiB, and the fused kernels measured 55-73 us against 93-145 us for the pair
# (benchmarks/RESULTS.md), a margin no timing noise crosses. Pinned: INT8, INT4 (codes by float
# bits), E2M1 (codes decoded in place), and the codes that straddle bytes (INT3, E3M2, E2M3),
# which fuse only with compile_options' loop orders left as the output's (pick_loop_orders off:
# the decode's write then matches the template's read). MX scales do not fuse yet.
@pytest.mark.cuda
@pytest.mark.parametrize(
    "fmt, kwargs",
    [(fpx.INT8, {"group_size": 32}), (fpx.INT4, {"group_size": 128}), (fpx.E2M1, {"group_size": 128}),
     (fpx.INT3, {"group_size": 128}), (fpx.E3M2, {"group_size": 128}), (fpx.E2M3, {"group_size": 128})],
    ids=["INT8", "INT4", "E2M1", "INT3", "E3M2", "E2M3"],
)
def test_cuda_forward_at_16_rows_fuses_the_decode_into_the_matmul_template(fmt, kwargs):
    source, weight_size = compiled_cuda_forward(fmt, kwargs)
    assert weight_sized_allocations(source, weight_size) == [], allocations(source)
    assert kernel_count(source, "cuda") <= 2, source  # the template (+ the bias epilogue if unfused)


def compiled_cuda_forward(fmt, kwargs, n=8192, k=8192, tuning=contextlib.nullcontext, rows=16, dtype=torch.bfloat16):
    """(generated source, weight elements) of the layer compiled with compile_options("cuda")
    at ``rows`` rows of ``dtype`` (compiled and tuned inside ``tuning()``), its output checked
    against the dequantized weight."""
    torch.manual_seed(0)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(k, n), fmt, **kwargs).to("cuda", dtype)
    x = torch.randn(rows, k, device="cuda", dtype=dtype)
    with tuning():
        out, source = compile_and_code(layer, x, options=fpx.nn.compile_options("cuda"))
    expected = x.float() @ layer.dequantize_weight().T + layer.bias.float()
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=5e-2)
    return source, n * k


def compiled_cuda_template_forward(fmt, kwargs, **forward):
    """The source of :func:`compiled_cuda_forward` (``forward`` its size, rows and dtype),
    checked to be the matmul template (no reduction kernel) with the decode fused into it: no
    buffer of the weight's size."""
    source, weight_size = compiled_cuda_forward(fmt, kwargs, **forward)
    assert weight_sized_allocations(source, weight_size) == [], allocations(source)
    assert "triton_tem_" in source and "r0_numel" not in source, source
    return source


# Per-channel E4M3, E5M2 and INT8 with 8192 output features leave the reductions after 2 rows
# (fpx.nn.CHANNEL_SCALED_TEMPLATE_MIN_OUT_FEATURES; H200, 8192 x 8192, 3 rows: E4M3 42.7 us
# reduced, 26.5 in the template; INT8 36.7, 31.9): at 3 rows the decode, torch's float8 cast
# (E5M2's since fpx.nn._e5m2_by_float8_cast) or INT8's int8 -> bfloat16 conversion (no float32
# in the K loop, fpx.nn._bytes_as_bfloat16), fuses into the template, the scales on its product.
@pytest.mark.cuda
@pytest.mark.parametrize("fmt, triton_type", [(fpx.E4M3, "tl.float8e4nv"), (fpx.E5M2, "tl.float8e5"), (fpx.INT8, None)],
                         ids=["E4M3", "E5M2", "INT8"])
def test_cuda_forward_per_channel_8_bit_codes_at_3_rows_take_the_fused_template(fmt, triton_type):
    source = compiled_cuda_template_forward(fmt, {"group_size": None}, k=2048, rows=3)
    assert kernel_count(source, "cuda") <= 2, source  # the template (+ the scale epilogue if unfused)
    if triton_type is not None:
        assert triton_type in source, source  # the cast
    else:
        loops = re.findall(r"for k_idx.*?acc \+=", source, re.DOTALL)
        assert loops and not any("float32" in loop for loop in loops), loops


# E4M3 and E5M2 per channel with bfloat16 x and rows that are not long leave the reductions after
# 1 row (fpx.nn.TWO_ROW_TEMPLATE_FORMATS; H200, 2 rows: E4M3 14336 x 4096 27.1 us reduced, 21.7 in
# the template; E5M2 30.7, 24.8): at 2 rows their float8 cast fuses into the template.
@pytest.mark.cuda
@pytest.mark.parametrize("fmt, triton_type", [(fpx.E4M3, "tl.float8e4nv"), (fpx.E5M2, "tl.float8e5")],
                         ids=["E4M3", "E5M2"])
def test_cuda_8_bit_float_per_channel_forward_at_2_rows_takes_the_fused_template(fmt, triton_type):
    assert fpx.nn.default_gemv_max_rows("cuda", fmt, channel_scales_on_product=True, out_features=8192,
                                        in_features=2048, x_dtype=torch.bfloat16) == 1
    source = compiled_cuda_template_forward(fmt, {"group_size": None}, k=2048, rows=2)
    assert triton_type in source, source


# Codes of 1-3 and 5-8 bits and the 6-bit floats scaled by groups, with bfloat16 x and 8192 output
# features, leave the reductions after 3 rows (fpx.nn.FOUR_ROW_TEMPLATE_FORMATS; H200, 8192 x
# 8192 by 128, 4 rows: INT3 64.4 us reduced in four kernels, 54.5 in the template; INT8 46.5,
# 41.5): at 4 rows the decode with its group scales fuses into the template, no weight written.
@pytest.mark.cuda
@pytest.mark.parametrize("fmt", [fpx.INT3, fpx.INT8], ids=["INT3", "INT8"])
def test_cuda_forward_by_groups_at_4_rows_takes_the_fused_template(fmt):
    assert fpx.nn.default_gemv_max_rows("cuda", fmt, out_features=8192, x_dtype=torch.bfloat16) == 3
    compiled_cuda_template_forward(fmt, {"group_size": 128}, k=2048, rows=4)


# With float16 x the 8-plane codes and INT2 by groups (fpx.nn.FLOAT16_FOUR_ROW_TEMPLATE_FORMATS;
# H200, by 128, 4 rows: INT3 8192 x 8192 60.1 us reduced in four kernels, 55.5 in the template;
# INT2 14336 x 4096 45.4 in two, 40.1) leave the reductions after 3 rows: at 4 rows the decode
# fuses into the template.
@pytest.mark.cuda
@pytest.mark.parametrize("fmt", [fpx.INT3, fpx.INT2], ids=["INT3", "INT2"])
def test_cuda_forward_by_groups_with_float16_x_at_4_rows_takes_the_fused_template(fmt):
    assert fpx.nn.default_gemv_max_rows("cuda", fmt, out_features=8192, x_dtype=torch.float16) == 3
    compiled_cuda_template_forward(fmt, {"group_size": 128}, k=2048, rows=4, dtype=torch.float16)


# The 8-plane codes from 4096 output features (fpx.nn.EIGHT_PLANE_FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES;
# H200, 4096 x 4096 by 128, 4 rows: INT1 26.7 us reduced in six kernels, 17.5 in the template with
# bfloat16 x; E3M2 27.2, 22.1 with float16 x), and from 2048 with at most 2048 input features
# (EIGHT_PLANE_FOUR_ROW_SHORT_ROW_*; 2048 x 2048: INT3 10.5, 9.2): the same fused template, no
# weight written.
@pytest.mark.cuda
@pytest.mark.parametrize("fmt, dtype, n", [
    (fpx.INT1, torch.bfloat16, fpx.nn.EIGHT_PLANE_FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES),
    (fpx.E3M2, torch.float16, fpx.nn.EIGHT_PLANE_FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES),
    (fpx.INT3, torch.bfloat16, fpx.nn.EIGHT_PLANE_FOUR_ROW_SHORT_ROW_MIN_OUT_FEATURES),
], ids=["INT1-4096", "E3M2-4096", "INT3-2048"])
def test_cuda_8_plane_forward_at_4_rows_from_its_output_feature_limits_takes_the_fused_template(fmt, dtype, n):
    k = 2048
    assert fpx.nn.default_gemv_max_rows("cuda", fmt, out_features=n, in_features=k, x_dtype=dtype) == 3
    compiled_cuda_template_forward(fmt, {"group_size": 128}, n=n, k=k, rows=4, dtype=dtype)


# INT4 and UINT4 by groups with long rows as well (fpx.nn.LONG_ROW_FOUR_ROW_TEMPLATE_MIN_IN_FEATURES;
# H200, by 128, 4 rows: INT4 8192 x 12288 77.1 us reduced, 73.8 in the template; 8192 x 28672
# 178.1, 160.1; UINT4 8192 x 12288 80.2, 69.9): at 4 rows the decode and group scales (and
# UINT4's zero-points) fuse into the template, no weight written.
@pytest.mark.cuda
@pytest.mark.parametrize("fmt", [fpx.INT4, fpx.UINT4], ids=["INT4", "UINT4"])
def test_cuda_4_bit_forward_by_groups_with_long_rows_at_4_rows_takes_the_fused_template(fmt):
    k = fpx.nn.LONG_ROW_FOUR_ROW_TEMPLATE_MIN_IN_FEATURES
    assert fpx.nn.default_gemv_max_rows("cuda", fmt, out_features=8192, in_features=k, x_dtype=torch.bfloat16) == 3
    compiled_cuda_template_forward(fmt, {"group_size": 128}, k=k, rows=4)


# E5M2 by Triton's float8 conversion in the template's prologue (fpx.nn._e5m2_by_float8_cast):
# every finite code (both signs, subnormals, -0), decoded exactly on the GPU. One-hot rows of x
# make each output one weight: its code's value (exact in bfloat16) times its channel's scale.
@pytest.mark.cuda
def test_cuda_template_decodes_every_finite_e5m2_code_exactly():
    n, k = 8192, 2048
    torch.manual_seed(0)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(k, n, bias=False), fpx.E5M2, group_size=None)
    finite = torch.tensor([c for c in range(256) if (c & 0x7F) < 0x7C], dtype=torch.uint8)
    index = (torch.arange(n)[:, None] + torch.arange(k)[None, :]) % len(finite)  # every code in every column
    layer.packed.copy_(finite[index].view(layer.packed.shape))
    layer = layer.to("cuda", torch.bfloat16)
    columns = torch.arange(16, device="cuda") * 127 + 5
    x = torch.nn.functional.one_hot(columns, k).to(torch.bfloat16)
    with fpx.nn.cold_cache_tuning():
        out, source = compile_and_code(layer, x, options=fpx.nn.compile_options("cuda"))
    assert "tl.float8e5" in source, source
    assert torch.equal(out, layer.dequantize_weight()[:, columns].T.to(torch.bfloat16))


# Under cold_cache_tuning the template tries narrow tiles at small batches (fpx.tuning.
# SMALL_BATCH_TILES): more programs for a decode prologue. H200, 8192 x 8192, 16 rows: the
# fused INT4 template 59.1 us in a 16 x 32 tile, 50.8 in 16 x 16 (2 warps). E4M3 per channel
# fused only in a narrow tile while its prologue scaled each weight (inductor's own tiles: a
# decode kernel writes the weight). With the scale on the product
# (fpx.nn._channel_scale_after_matmul) its prologue is a cast, and the tile is left to the
# timing. Scale groups narrower than BLOCK_K (INT4 by 32, MX) fuse since the compiled decode
# reads each code at its own column (fpx.nn.dequantize_packed): before, their fused template
# took 100-133 us and inductor kept a decode kernel plus the template. Which given tile wins is
# timed, and close: INT4 by 128 in 16 x 32 48.9 us against 16 x 64 51.8 in one compile, and 16
# x 64 kept in 2 of 6 compiles (twenty-third session; MX once kept 16 x 64 too). So the test
# pins the fusion and that a given 16-row tile is used, not which one.
@pytest.mark.cuda
@pytest.mark.parametrize("fmt, kwargs", [(fpx.INT4, {"group_size": 128}),
                                         (fpx.E4M3, {"group_size": None}),
                                         (fpx.INT4, {"group_size": 32}),
                                         (fpx.E2M1, {"block": "mx"})],
                         ids=["INT4", "E4M3", "INT4-g32", "E2M1-MX"])
def test_cuda_forward_at_16_rows_under_cold_cache_tuning_fuses_into_a_given_tile(fmt, kwargs):
    source, weight_size = compiled_cuda_forward(fmt, kwargs, tuning=fpx.nn.cold_cache_tuning)
    assert weight_sized_allocations(source, weight_size) == [], allocations(source)
    assert kernel_count(source, "cuda") <= 2, source
    given = {(bm, bn, bk) for bm, bn, bk, _, _ in fpx.tuning.small_batch_tiles(16, 8192, 8192)}
    tiles = template_tiles(source)
    assert tiles and all(tile in given for tile in tiles), tiles


# Integer codes decoded in x's dtype (fpx.nn._decodes_in_x_dtype; H200, 16 rows: INT4 52.1 ->
# 44.2 us, UINT4 59.6 -> 48.6): the fused template's K loop has no float32 operation, and its
# weights are the float32 decode's rounded once to bfloat16. One-hot rows of x make each output
# one weight, exactly (a product by 1.0 and sums of zeros in the float32 accumulator), with
# scales across bfloat16's exponent range. INT8 and UINT8: codes (and zero-points) converted to
# bfloat16 through int8 (no int -> float32 conversion per weight, fpx.nn._bytes_as_bfloat16).
@pytest.mark.cuda
@pytest.mark.parametrize("fmt", [fpx.INT4, fpx.UINT4, fpx.INT8, fpx.UINT8], ids=["INT4", "UINT4", "INT8", "UINT8"])
def test_cuda_template_decodes_integer_codes_in_bfloat16_exactly(fmt):
    out, source, expected = one_hot_rows_through_the_layer(fmt, group_size=128)
    assert weight_sized_allocations(source, 8192 * 8192) == [], allocations(source)
    assert kernel_count(source, "cuda") == 1, source
    loops = re.findall(r"for k_idx.*?acc \+=", source, re.DOTALL)
    assert loops and not any("float32" in loop for loop in loops), loops
    assert torch.equal(out, expected)


def one_hot_rows_through_the_layer(fmt, group_size, n=8192, k=8192):
    """(output, generated source, expected output) of a bfloat16 layer of ``fmt``, its scales
    across bfloat16's exponent range, compiled inside cold_cache_tuning at 16 one-hot rows of x
    (columns in both halves of K): each output one weight, the dequantized weight's in bfloat16."""
    torch.manual_seed(0)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(k, n, bias=False), fmt, group_size=group_size)
    exponents = torch.randint(-100, 101, layer.scale.shape).double()
    layer.scale.copy_(((1 + torch.rand(layer.scale.shape, dtype=torch.float64)) * 2.0**exponents).to(layer.scale.dtype))
    layer = layer.to("cuda", torch.bfloat16)
    columns = torch.arange(16, device="cuda") * 511 + 3  # in both halves of K (both nibbles of a byte)
    x = torch.nn.functional.one_hot(columns, k).to(torch.bfloat16)
    with fpx.nn.cold_cache_tuning():
        out, source = compile_and_code(layer, x, options=fpx.nn.compile_options("cuda"))
    return out, source, layer.dequantize_weight()[:, columns].T.to(torch.bfloat16)


# The row limit is read while tracing. One read from cold_cache_tuning's state put a guard on
# it: E4M3 compiled at 8 rows inside the block (the template, 25.1 us on an H200) recompiled at
# its first call outside, to the reductions (87.5 us), and benchmarks timed those.
@pytest.mark.cuda
def test_cuda_forward_compiled_inside_cold_cache_tuning_is_not_recompiled_outside():
    assert_compiled_inside_the_block_is_not_recompiled_outside(fpx.E4M3, rows=8, features=1024)


def assert_compiled_inside_the_block_is_not_recompiled_outside(fmt, rows, features):
    """A per-channel layer of ``fmt`` (features x features, bfloat16) compiled at its first
    call inside cold_cache_tuning runs its one graph at a call outside, with the same output."""
    torch.manual_seed(0)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(features, features), fmt, group_size=None)
    layer = layer.to("cuda", torch.bfloat16)
    x = torch.randn(rows, features, device="cuda", dtype=torch.bfloat16)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    compiled = torch.compile(layer, fullgraph=True, options=fpx.nn.compile_options("cuda"))
    with fpx.nn.cold_cache_tuning():
        inside = compiled(x)
    assert counters["stats"]["unique_graphs"] == 1
    outside = compiled(x)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert torch.equal(outside, inside)
    torch._dynamo.reset()


def template_tiles(source):
    """(BLOCK_M, BLOCK_N, BLOCK_K) of each matmul template kernel in ``source``, at least one."""
    blocks = [[int(b) for b in re.findall(rf"{name}\s*:\s*tl\.constexpr\s*=\s*(\d+)", source)]
              for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K")]  # each template kernel sets all three
    tiles = list(zip(*blocks))
    assert tiles and all(len(b) == len(tiles) for b in blocks), blocks
    return tiles


# At 128 rows inductor's own tiles leave the decode unfused (a kernel writes the bfloat16 weight
# for a 64 x 128 template: INT4 93.9 us on an H200); cold_cache_tuning's 128-row tiles fuse it
# (79.4 us in 128 x 64 x 128, 8 warps).
@pytest.mark.cuda
def test_cuda_forward_at_128_rows_under_cold_cache_tuning_fuses_into_a_128_row_tile():
    source, weight_size = compiled_cuda_forward(fpx.INT4, {"group_size": 128}, rows=128, tuning=fpx.nn.cold_cache_tuning)
    assert weight_sized_allocations(source, weight_size) == [], allocations(source)
    assert kernel_count(source, "cuda") <= 2, source
    tiles = template_tiles(source)
    assert all(block_m == 128 for block_m, _, _ in tiles), tiles


# Per-channel E4M3 (from 20 rows), INT4 (from 24) and INT8 (from 24): (W @ x.T).T, the
# decoded weight the template's left operand (fpx.nn._weight_as_left_operand; H200, 8192 x
# 8192, E4M3: 64 rows 44.3 -> 31.7 us, 128 rows 59.0 -> 39.0; INT4 at 64 rows 55.1 -> 52.1;
# INT8 at 64 rows 52.6 -> 42.2). The decode fuses into the template, whose tiles then run
# along the weight's rows (BLOCK_M of 64 or more, x's rows in BLOCK_N); one more kernel scales
# the product, transposes it back and adds the bias.
@pytest.mark.cuda
@pytest.mark.parametrize("fmt, rows", [(fpx.E4M3, 64), (fpx.E4M3, 128), (fpx.INT8, 64)],
                         ids=["E4M3-64", "E4M3-128", "INT8-64"])
def test_cuda_forward_per_channel_at_64_and_128_rows_takes_the_weight_as_left_operand(fmt, rows):
    source, weight_size = compiled_cuda_forward(fmt, {"group_size": None}, rows=rows, tuning=fpx.nn.cold_cache_tuning)
    assert weight_sized_allocations(source, weight_size) == [], allocations(source)
    assert kernel_count(source, "cuda") == 2, source
    tiles = template_tiles(source)
    assert tiles and all(block_m >= 64 and block_n <= rows for block_m, block_n, _ in tiles), tiles


def template_launches(source):
    """How many matmul template kernels the wrapper launches."""
    return len(re.findall(r"triton_tem_\w*\.run\(", source))


# Per-channel INT4 inside cold_cache_tuning: one product per nibble plane
# (fpx.nn.LowBitLinear._plane_products; H200, 8192 x 8192: 16 rows 40.4 -> 28.0 us, on
# the left at 64 rows 51.4 -> 38.7), each plane's decode fused into its own template, kept apart
# from the other's by fpx.tuning.marked_decodes_kept_apart (joined, they wrote both planes out:
# 3 kernels, 85-87 us at 16 rows). On the left a third kernel scales the product, transposes it
# back and adds the bias. No buffer of a plane's size (N x K / 2). INT2 per channel likewise,
# one template per 2-bit plane (four), on the right from 5 to 16 rows and on the left from 17;
# E2M1 by nibble plane as INT4.
@pytest.mark.cuda
@pytest.mark.parametrize("fmt, rows, kernels", [(fpx.INT4, 8, 2), (fpx.INT4, 16, 2), (fpx.INT4, 17, 3), (fpx.INT4, 64, 3),
                                                (fpx.INT2, 16, 4), (fpx.INT2, 64, 5), (fpx.E2M1, 16, 2)],
                         ids=["INT4-8-right", "INT4-16-right", "INT4-17-left", "INT4-64-left", "INT2-16-right",
                              "INT2-64-left", "E2M1-16-right"])
def test_cuda_forward_per_channel_inside_cold_cache_tuning_is_one_product_per_plane(fmt, rows, kernels):
    source, weight_size = compiled_cuda_forward(fmt, {"group_size": None}, rows=rows, tuning=fpx.nn.cold_cache_tuning)
    planes = 8 // fmt.bits
    assert weight_sized_allocations(source, weight_size // planes) == [], allocations(source)
    assert template_launches(source) == planes, source
    assert kernel_count(source, "cuda") == kernels, source
    tiles = template_tiles(source)
    if rows >= 17:  # the weight's rows in the tiles' rows, x's in their columns: the left route
        columns = 1 << (rows - 1).bit_length()  # (17 rows: 64 x 32 tiles on the H200)
        assert tiles and all(block_m >= 64 and block_n <= columns for block_m, block_n, _ in tiles), tiles


# The first layer compiled in a process: on torch 2.11 inductor offered one plane's template,
# its prologue fused, a horizontal join with the other plane's decode, and that join's
# benchmark raised CantSplit out of the compile (3 of 3 first compiles at 5, 14 and 16 rows,
# 2026-12-02; later compiles in the process fused the second decode into its template first).
# fpx.tuning.marked_decodes_kept_apart refuses it. In a fresh process, with a fresh cache.
@pytest.mark.cuda
def test_cuda_plane_products_compile_first_in_a_fresh_process(tmp_path):
    script = (
        "import torch, fpx\n"
        "torch.manual_seed(0)\n"
        "layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(8192, 8192), fpx.INT4, group_size=None)\n"
        "layer = layer.to('cuda', torch.bfloat16)\n"
        "x = torch.randn(16, 8192, device='cuda', dtype=torch.bfloat16)\n"
        "compiled = torch.compile(layer, fullgraph=True, dynamic=False, options=fpx.nn.compile_options('cuda'))\n"
        "with fpx.nn.cold_cache_tuning():\n"
        "    out = compiled(x)\n"
        "expected = x.float() @ layer.dequantize_weight().T + layer.bias.float()\n"
        "torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=5e-2)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path), PYTHONPATH=root)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]


# Each output of a one-hot row of x is one weight, exactly, from either plane: the plane's code
# (exact in bfloat16), the other plane's product (zero) added, times the channel's scale in
# float32, rounded once to bfloat16, as the dequantized weight rounded to bfloat16. E2M1 (built,
# not taken by default: forced here) places its codes in bfloat16 by their bits and scales them
# by 2^126 in bfloat16 (fpx.fields._float_field_values_in_bfloat16): its subnormal code (0.5)
# is a bfloat16 subnormal until that multiply, which must not flush it.
@pytest.mark.cuda
@pytest.mark.parametrize("fmt", [fpx.INT4, fpx.E2M1], ids=lambda f: f.name)
def test_cuda_plane_products_give_every_weight_exactly(fmt, monkeypatch):
    monkeypatch.setattr(fpx.nn, "PLANE_PRODUCT_FORMATS", (fmt,))
    monkeypatch.setattr(fpx.nn, "PLANE_PRODUCTS_RIGHT_ROWS", {fmt: (5, 17)})
    out, source, expected = one_hot_rows_through_the_layer(fmt, group_size=None)
    assert template_launches(source) == 2, source
    assert torch.equal(out, expected)


# Outside cold_cache_tuning inductor would join the planes' decodes (3 kernels, slower than one
# product): there the layer keeps one product. Compiled inside, it keeps its plane products
# when called outside (the choice is read while tracing, with no guard).
@pytest.mark.cuda
def test_cuda_per_channel_int4_outside_the_block_is_one_product_and_inside_keeps_its_graph():
    source, _ = compiled_cuda_forward(fpx.INT4, {"group_size": None}, rows=16)
    assert template_launches(source) == 1, source
    assert_compiled_inside_the_block_is_not_recompiled_outside(fpx.INT4, rows=16, features=8192)  # the planes' shape


# Per-channel INT4 under 8192 output features: the left route with K split in two (fpx.nn.
# _splits_k_on_the_left; H200, 4096 x 14336, 64 rows: 66.0 us on the right, 78.9 on the left
# unsplit, 49.0 split): W decoded as (2 N, K / 2) inside the template (no weight-sized
# buffer), x as a view; the second kernel sums the two halves' products as it scales them.
@pytest.mark.cuda
def test_cuda_forward_per_channel_int4_at_4096_features_splits_k_on_the_left():
    rows = 64
    source, weight_size = compiled_cuda_forward(fpx.INT4, {"group_size": None}, n=4096, k=14336, rows=rows,
                                                tuning=fpx.nn.cold_cache_tuning)
    assert weight_sized_allocations(source, weight_size // 2) == [], allocations(source)  # nor a half
    assert kernel_count(source, "cuda") == 2, source
    tiles = template_tiles(source)
    assert tiles and all(block_m >= 64 and block_n <= 2 * rows for block_m, block_n, _ in tiles), tiles


# The split product (at 64 rows, 128 columns) in every tile it is given: the 64-deep tiles of
# inductor's own list (compiled outside cold_cache_tuning) and fpx.tuning.FEW_COLUMN_TILES[128]
# (inside). benchmarks/probe_left_split.py's split in *four* gave NaN in a 128 x 128 x 64 tile
# on the H200 (a decode of its own, not the layer's; not investigated).
SPLIT_LEFT_TILES = [(128, 128, 64, 3, 4), (64, 128, 64, 3, 4), *fpx.tuning.FEW_COLUMN_TILES[128]]


def only_tile(tile, within=contextlib.nullcontext):
    """A tuning scope for compiled_cuda_forward: ``within()``, the matmul template given ``tile``
    alone inside it."""
    @contextlib.contextmanager
    def scope():
        with within(), fpx.tuning.matmul_template_tiles(lambda m, n, k: (tile,)):
            yield
    return scope


@pytest.mark.cuda
@pytest.mark.parametrize("tile", SPLIT_LEFT_TILES, ids=["x".join(map(str, tile)) for tile in SPLIT_LEFT_TILES])
def test_cuda_forward_per_channel_int4_split_on_the_left_is_right_in_every_tile_it_is_given(tile):
    source, _ = compiled_cuda_forward(fpx.INT4, {"group_size": None}, n=4096, k=14336, rows=64,
                                      tuning=only_tile(tile))
    assert template_tiles(source) == [tile[:3]], source  # the output was checked against the weight's


# The left route at 33-64 columns in every tile of fpx.tuning.FEW_COLUMN_TILES[64] and
# SMALL_WEIGHT_TILES[64] (weights of fewer rows), one at a time: INT8 per channel at 64 rows
# (8192 x 8192 took the 64 x 64 x 256 tile on the H200, the only tile of the layer's lists
# deeper than 128: a K loop of 32 trips, 3 stages of 64 KiB).
LEFT_64_COLUMN_TILES = fpx.tuning.FEW_COLUMN_TILES[64] + fpx.tuning.SMALL_WEIGHT_TILES[64]


@pytest.mark.cuda
@pytest.mark.parametrize("tile", LEFT_64_COLUMN_TILES, ids=["x".join(map(str, tile)) for tile in LEFT_64_COLUMN_TILES])
def test_cuda_forward_per_channel_int8_on_the_left_is_right_in_every_64_column_tile(tile):
    # cold_cache_tuning's decode fusion timed, the tile given alone
    source, weight_size = compiled_cuda_forward(fpx.INT8, {"group_size": None}, rows=64,
                                                tuning=only_tile(tile, within=fpx.nn.cold_cache_tuning))
    assert weight_sized_allocations(source, weight_size) == [], allocations(source)
    assert template_tiles(source) == [tile[:3]], source  # the output was checked against the weight's


# The right route's 256-deep tiles (fpx.tuning.SMALL_BATCH_TILES; INT8 by groups of 128 at
# 8192 x 8192 drew them on the H200: 16 rows 41.5 -> 39.3 us, 32 rows 50.9 -> 46.9 in a 64-row
# tile, 64 rows 54.0 -> 45.4): the decode with its group scales fused into them, two groups per
# K step.
@pytest.mark.cuda
@pytest.mark.parametrize("rows, tile", [(16, (16, 16, 256, 4, 2)), (32, (64, 64, 256, 3, 4)), (64, (64, 64, 256, 3, 4))],
                         ids=["16-rows", "32-rows", "64-rows"])
def test_cuda_forward_int8_by_groups_is_fused_and_right_in_the_256_deep_tiles(rows, tile):
    assert tile in fpx.tuning.SMALL_BATCH_TILES[rows]
    source, weight_size = compiled_cuda_forward(fpx.INT8, {"group_size": 128}, rows=rows,
                                                tuning=only_tile(tile, within=fpx.nn.cold_cache_tuning))
    assert weight_sized_allocations(source, weight_size) == [], allocations(source)
    assert kernel_count(source, "cuda") == 1, source
    assert template_tiles(source) == [tile[:3]], source


# With inductor's pool of compile workers up, a template's choices went to the workers and the
# benchmark compiled each again here, one at a time (fpx.tuning.template_choices_precompiled_here;
# H200, INT2 per channel at 128 rows after 96 in one process: 65.3 -> 20.6 s). The pool's
# answer forced true: inside cold_cache_tuning the choices are still precompiled in threads.
@pytest.mark.cuda
def test_cuda_template_choices_are_precompiled_in_threads_with_the_worker_pool_up(monkeypatch):
    import logging

    from torch._inductor import async_compile

    class Lines(logging.Handler):
        def __init__(self):
            super().__init__(logging.DEBUG)
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    logger, lines = logging.getLogger("torch._inductor.select_algorithm"), Lines()
    monkeypatch.setattr(async_compile.AsyncCompile, "use_process_pool", classmethod(lambda cls: True))
    level = logger.level
    logger.setLevel(logging.DEBUG)  # (setLevel, not the attribute: loggers cache isEnabledFor)
    logger.addHandler(lines)
    try:
        with torch._inductor.config.patch(force_disable_caches=True):  # tuned here, not found in a cache
            compiled_cuda_forward(fpx.INT4, {"group_size": 128}, n=1536, k=2560, rows=16, tuning=fpx.nn.cold_cache_tuning)
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    submitted = [line for line in lines.lines if line.startswith("Submitted")]
    assert submitted and all(line.startswith("Submitted precompile for choice") for line in submitted), submitted


# Under 8192 output features, K of 14336: x @ W.T with K split in two
# (fpx.nn._splits_k_on_the_right; H200, 4096 x 14336, unsplit / split: INT4 by groups of 128 at
# 16 rows 55.1 / 44.0 us, INT8 per channel at 32 rows 64.5 / 45.9): W.T decoded as (K / 2, 2 N)
# inside the template (no weight-sized buffer, nor a half), x as a view (2 M, K / 2); a second
# kernel sums the product's two diagonal blocks (and scales the channels).
@pytest.mark.cuda
@pytest.mark.parametrize("fmt, group_size, rows", [(fpx.INT4, 128, 16), (fpx.INT8, None, 32)],
                         ids=["INT4-by-128", "INT8-per-channel"])
def test_cuda_forward_at_4096_features_splits_k_on_the_right(fmt, group_size, rows):
    source, weight_size = compiled_cuda_forward(fmt, {"group_size": group_size}, n=4096, k=14336, rows=rows,
                                                tuning=fpx.nn.cold_cache_tuning)
    assert weight_sized_allocations(source, weight_size // 2) == [], allocations(source)
    assert kernel_count(source, "cuda") == 2, source
    tiles = template_tiles(source)
    assert tiles and all(block_m >= 2 * rows for block_m, _, _ in tiles), tiles  # x's rows doubled


# The left route at a row count not a multiple of 4: with inductor's shape padding (off under
# compile_options) x was copied into a buffer padded to 24 columns, a third kernel (H200, E4M3
# per channel at 8192 x 8192, 21 rows: 47.1 us padded, 29.7 not).
@pytest.mark.cuda
def test_cuda_forward_on_the_left_at_21_rows_is_not_padded():
    source, weight_size = compiled_cuda_forward(fpx.E4M3, {"group_size": None}, rows=21, tuning=fpx.nn.cold_cache_tuning)
    assert weight_sized_allocations(source, weight_size) == [], allocations(source)
    assert kernel_count(source, "cuda") == 2, source
    tiles = template_tiles(source)
    assert tiles and all(block_m >= 64 for block_m, _, _ in tiles), tiles  # the weight's rows: the left route


# The decodes of more than 30 operations (FP6, MX scales, unsigned codes with zero-points):
# with inductor's default inlining limit, half-decoded weights were written out (FP6: int32
# codes; MX and zero-points: float32 values; 256 MiB at 8192 x 8192) and read back by a second
# decode kernel fused into the matmul template (torch 2.11, H200: 145-153 us at 16 rows). Under
# compile_options("cuda") one decode kernel writes the bfloat16 weight (94-101 us), or the
# decode fuses into the template: no full-size buffer but the matmul's bfloat16 operand. (FP6
# fuses whole under compile_options, pinned by the stricter test above.)
@pytest.mark.cuda
@pytest.mark.parametrize(
    "fmt, kwargs",
    [(fpx.E2M1, {"block": "mx"}), (fpx.UINT3, {"group_size": 128})],
    ids=["E2M1-MX", "UINT3"],
)
def test_cuda_forward_at_16_rows_writes_no_half_decoded_weight(fmt, kwargs):
    source, weight_size = compiled_cuda_forward(fmt, kwargs)
    half_decoded = [(shape, dtype) for shape, dtype in weight_sized_allocations(source, weight_size)
                    if dtype != "torch.bfloat16"]
    assert half_decoded == [], half_decoded
    assert kernel_count(source, "cuda") <= 2, source


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("fmt", [fpx.INT4, fpx.UINT4, fpx.INT2], ids=["INT4", "UINT4", "INT2"])
def test_field_patterns_from_the_buffer_replace_the_constants_and_match(fmt, rows, monkeypatch):
    """With CUDA's integer fields by float bits forced on, the XOR pattern of each byte plane
    (2^23's exponent bits, 0x4B000000, with the field's sign bit for a signed field) is either
    a constant of the generated code or, with ``_patterns_from_buffer_pays_off`` forced on, read
    from the layer's ``field_patterns`` buffer (no longer a constant); the forward matches the
    dequantized weight either way. (Byte planes: CPU's one-row default reads int32 words.)"""
    monkeypatch.setattr(fpx.nn, "_float_bits_pay_off", lambda device: True)
    torch.manual_seed(rows)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(K, N), fmt, group_size=64)
    x = torch.randn(rows, K, dtype=torch.bfloat16)
    expected = x.double() @ layer.dequantize_weight().double().T + layer.bias.double()
    bits, planes = fmt.bits, 8 // fmt.bits
    signs = [1 << (bits - 1 + bits * q) if fmt.signed else 0 for q in range(planes)]
    patterns = [str(0x4B000000 | sign) for sign in signs]  # as decimal literals in the source
    for on in (False, True):
        monkeypatch.setattr(fpx.nn, "_patterns_from_buffer_pays_off", lambda device, rows, on=on: on)
        out, source = compile_and_code(lambda x: layer._gemv(x, words=False, bias=layer.bias), x)
        torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=1e-2)
        literals = [p for p in patterns if p in source]
        assert literals == ([] if on else patterns), literals
    torch._dynamo.reset()  # no compiled forward with the forced choice left for later tests
