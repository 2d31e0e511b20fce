"""Probe: which tensor formulations of a low-bit linear does inductor fuse, and how fast are they.

Research script for the LowBitLinear forward (not part of the package). Weight codes are stored
planar: W (N, K) viewed as (N, G, K/G) and packed with bitpack along dim 1, so one group of G
values (one byte, or `bits` bytes for 3/5/6/7 bits) holds G values that lie K/G apart.

Run on a GPU: python benchmarks/probe_linear.py --shapes 8192x8192 --m 1,16,64
"""

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import bitpack  # noqa: E402
from timing import environment_line, run_and_count_kernels, time_cuda_graph, tuned_configs  # noqa: E402


def values_per_group(bits):
    return 8 // bits if 8 % bits == 0 else 8


def make_weight(n, k, bits, group_size, device, dtype=torch.bfloat16):
    g = values_per_group(bits)
    codes = torch.randint(0, 2**bits, (n, k), device=device, dtype=torch.uint8)
    packed = bitpack.pack(codes.view(n, g, k // g), bits, dim=1)
    scale = (torch.rand(n, k // group_size, device=device, dtype=torch.float32) * 0.02 + 0.001).to(dtype)
    return codes, packed, scale


def dequantize(packed, scale, bits, n, k, group_size, dtype=torch.bfloat16):
    g = values_per_group(bits)
    codes = bitpack.unpack(packed, bits, g, dim=1, dtype=torch.int32).reshape(n, k)
    centered = (codes - (1 << (bits - 1))).to(dtype)
    return (centered.view(n, k // group_size, group_size) * scale.unsqueeze(-1)).view(n, k)


def gemv_planes_form(x, packed, scale, bits, n, k, group_size):
    """Reduction over the K/G bytes of a row; each element handles the G values of one group."""
    g = values_per_group(bits)
    j = k // g
    codes = bitpack.unpack(packed, bits, g, dim=1, dtype=torch.int32)  # (n, g, j)
    xs = x.float().view(-1, g, j)
    scales = scale.float().view(n, g, j // group_size, 1)
    acc = 0
    for p in range(g):
        w = (codes[:, p, :] - (1 << (bits - 1))).float().view(n, j // group_size, group_size) * scales[:, p]
        acc = acc + xs[:, None, p, :] * w.view(1, n, j)
    return acc.sum(-1).to(x.dtype)


def gemv_words_form(x, packed, scale, bits, n, k, group_size):
    """INT4: the planar bytes read as int32 words (4 bytes = 8 values); one reduction over the
    words whose body decodes the 8 values and applies one scale per plane per word."""
    assert bits == 4 and group_size % 4 == 0
    j = k // 2
    words = packed.reshape(n, j).view(torch.int32)  # (n, j/4)
    xs = x.float().view(-1, 2, j // 4, 4)
    groups = j // group_size
    scales = scale.float().view(n, 2, groups, 1).expand(n, 2, groups, group_size // 4).reshape(n, 2, j // 4)
    acc = 0
    for p in range(2):
        part = 0
        for b in range(4):
            v = ((words >> (8 * b + 4 * p)) & 15).float() - 8
            part = part + xs[:, None, p, :, b] * v[None]
        acc = acc + part * scales[None, :, p]
    return acc.sum(-1).to(x.dtype)


def group_sum_inputs(x, packed, scale, bits, n, k, group_size):
    """What the group-sum forms share: planes g, groups per plane, codes (n, g, j), x as
    (M, g, groups, group_size) float32, its sums per group and the scales (n, g, groups)."""
    g = values_per_group(bits)
    groups = k // g // group_size
    codes = bitpack.unpack(packed, bits, g, dim=1, dtype=torch.int32)
    xs = x.float().view(-1, g, groups, group_size)
    return g, groups, codes, xs, xs.sum(-1), scale.float().view(n, g, groups)


def gemv_group_sum_form(x, packed, scale, bits, n, k, group_size, as_float=lambda c: c.float()):
    """Two levels: dot products of raw codes per scale group (inner reduction of group_size),
    then the scaled, centred sum over groups (a small second reduction)."""
    g, groups, codes, xs, xsum, scales = group_sum_inputs(x, packed, scale, bits, n, k, group_size)
    out = 0
    for p in range(g):
        c = as_float(codes[:, p]).view(n, groups, group_size)
        dots = (xs[:, None, p] * c[None]).sum(-1)  # (M, n, groups)
        out = out + ((dots - (1 << (bits - 1)) * xsum[:, None, p]) * scales[None, :, p]).sum(-1)
    return out.to(x.dtype)


def gemv_group_major_sum_form(x, packed, scale, bits, n, k, group_size):
    """gemv_group_sum_form with the per-group dots laid out (M, groups, N) instead of (M, N,
    groups), meant to give a program rows of one group, all reading the same slice of x.
    (Measured: inductor reorders the loop to the weight's memory order; same kernel.)"""
    g, groups, codes, xs, xsum, scales = group_sum_inputs(x, packed, scale, bits, n, k, group_size)
    out = 0
    for p in range(g):
        c = codes[:, p].float().view(n, groups, group_size).permute(1, 0, 2)  # (groups, n, group_size)
        dots = (xs[:, p, :, None, :] * c[None]).sum(-1)  # (M, groups, n)
        centred = dots - (1 << (bits - 1)) * xsum[:, p, :, None]
        out = out + (centred * scales[:, p].t()[None]).sum(-2)
    return out.to(x.dtype)


def float_bits_weights(packed_bytes, bits, offset_binary=True):
    """The G planes' values of each byte, v_p * 2^(b p - 8), as float32, with no int -> float
    conversion: one shift per byte, then per value one LOP3, one FADD.

    With the fields as unsigned u_p = v_p + o (o = 2^(b - 1); two's complement fields get
    their top bits flipped first, which folds into the same LOP3), T_p = byte >> b p holds
    fields p.. and u_p = T_p - 2^b T_(p+1). The byte shifted into the mantissa top (bits
    15-22), masked to bits 15 + b p .. 22 and ORed into 1.0 gives 1 + T_p 2^(b p - 8); ORing
    in also K_p = o sum_(q<p) 2^(b q - 8) (bits 14 + b (q + 1), all below the mask) gives
    a_p, whose differences a_p - a_(p+1) = (u_p - o) 2^(b p - 8) are exact (Sterbenz: both in
    [1, 2)); the last plane subtracts a constant. ``offset_binary``: fields stored as value +
    o (the probe's codes), else two's complement (LowBitLinear's).

    Exact for every byte (INT4, two's complement nibbles):

    >>> byte = torch.arange(256, dtype=torch.uint8)
    >>> low, high = float_bits_weights(byte, 4, offset_binary=False)
    >>> nibble = lambda v: (v ^ 8) - 8  # two's complement
    >>> torch.equal(low * 2**8, nibble(byte.int() & 15).float())
    True
    >>> torch.equal(high * 2**4, nibble(byte.int() >> 4).float())
    True
    """
    g = values_per_group(bits)
    o = 1 << (bits - 1)
    flip = 0 if offset_binary else sum(o << (bits * p) for p in range(g))
    shifted = (packed_bytes.to(torch.int32) ^ flip) << 15
    a = []
    for p in range(g):
        mask = ((1 << (8 - bits * p)) - 1) << (15 + bits * p)
        k_bits = sum(1 << (14 + bits * (q + 1)) for q in range(p))  # K_p
        a.append(((shifted & mask) | (0x3F800000 | k_bits)).view(torch.float32))
    last = 1.0 + o * sum(2.0 ** (bits * q - 8) for q in range(g))
    return [a[p] - a[p + 1] if p + 1 < g else a[p] - last for p in range(g)]


def gemv_float_bits_form(x, packed, scale, bits, n, k, group_size):
    """The group-sum form with the weights of float_bits_weights: about 3 + 1/G instructions
    per weight (LOP3, FADD, FFMA, and one shift per byte), no conversion instruction (I2F
    issues 16 per clock per SM on Hopper: one per weight alone takes 16 us at 8192 x 8192).
    The 2^(8 - b p) of each plane is folded into its scales: exact, powers of two."""
    assert 8 % bits == 0
    g = values_per_group(bits)
    j = k // g
    groups = j // group_size
    weights = float_bits_weights(packed.reshape(n, j), bits)
    xs = x.float().view(-1, g, groups, group_size)
    scales = scale.float().view(n, g, groups)
    out = 0
    for p in range(g):
        dots = (xs[:, None, p] * weights[p].view(n, groups, group_size)[None]).sum(-1)  # (M, n, groups)
        out = out + (dots * (scales[None, :, p] * float(2 ** (8 - bits * p)))).sum(-1)
    return out.to(x.dtype)


def fields_as_float(fields):
    """Unsigned int32 fields (< 2**23) as float32 without an int -> float conversion
    instruction: the field in the mantissa of 2^23, minus 2^23 (exact)."""
    return (fields | 0x4B000000).view(torch.float32) - 8388608.0


def gemv_group_sum_fields_form(x, packed, scale, bits, n, k, group_size):
    """gemv_group_sum_form with the codes converted by fields_as_float (no I2F per weight)."""
    return gemv_group_sum_form(x, packed, scale, bits, n, k, group_size, as_float=fields_as_float)


def mm_t_iq_fields_form(x, packed, scale, bits, n, k, group_size):
    """mm_t_iq_form with the codes converted by fields_as_float in the prologue."""
    from torch._higher_order_ops._invoke_quant import InvokeQuant

    def dq(packed, scale):
        g = values_per_group(bits)
        codes = bitpack.unpack(packed, bits, g, dim=1, dtype=torch.int32).reshape(n, k)
        centred = fields_as_float(codes) - float(1 << (bits - 1))
        w = (centred * scale.float().repeat_interleave(group_size, dim=1)).to(x.dtype)
        return w.t().contiguous()

    return x @ InvokeQuant(codegen_low_precision=False)(dq, packed, scale, scheme="lowbit")


# ---- E2M1 codes: the decode of the two-level reduction, with and without conversions -----------
# The codes of make_weight (4 bits) read as E2M1 (sign, 2 exponent bits, 1 mantissa bit, bias 1).


def e2m1_reference(packed, scale, n, k, group_size):
    import fpx

    codes = bitpack.unpack(packed, 4, 2, dim=1, dtype=torch.uint8).reshape(n, k)
    values = fpx.decode(codes, fpx.E2M1).view(n, k // group_size, group_size)
    return (values * scale.float().unsqueeze(-1)).view(n, k)


def e2m1_by_half(c):
    """float16 placement (the layer's own CUDA decode): 2 conversions (int16, float16 -> float32)."""
    import fpx
    from fpx.fields import _float_values_by_float16_placement

    return _float_values_by_float16_placement(c, fpx.E2M1)


def e2m1_by_unit(c):
    """significand (by the 2^23 mantissa trick) times 2^(max(e, 1) - 2) built as float32 bits;
    the sign set on the bits. No conversion instruction, no subnormal float32."""
    magnitude = c & 7
    exponent = magnitude >> 1
    significand = (magnitude & 1) | ((exponent > 0).to(torch.int32) << 1)
    unit = ((exponent.clamp(min=1) + 125) << 23).view(torch.float32)
    value = ((significand | 0x4B000000).view(torch.float32) - 8388608.0) * unit
    return (value.view(torch.int32) | ((c & 8) << 28)).view(torch.float32)


def e2m1_by_subnormal(c):
    """The magnitude's fields as a float32's exponent and mantissa (code 1: a float32 subnormal),
    times 2^126: one multiply, no conversion; wrong where the GPU flushes subnormals."""
    value = ((c & 7) << 22).view(torch.float32) * 2.0**126
    return (value.view(torch.int32) | ((c & 8) << 28)).view(torch.float32)


def e2m1_group_sum_form(decode):
    def form(x, packed, scale, bits, n, k, group_size):
        g, groups, codes, xs, _, scales = group_sum_inputs(x, packed, scale, 4, n, k, group_size)
        out = 0
        for p in range(g):
            v = decode(codes[:, p]).view(n, groups, group_size)
            dots = (xs[:, None, p] * v[None]).sum(-1)
            out = out + (dots * scales[None, :, p]).sum(-1)
        return out.to(x.dtype)

    return form


# ---- K-major storage: the weight as W.T (K, N), planar along N ----------------------------------
# The matmul template reads its B operand as (K, N) tiles; the N-major layout above makes the
# prologue load bytes K/G apart across a tile's N dim. Stored K-major, a tile's bytes are
# contiguous along N, as in the int8 K-major control (36 us at M = 16 on an H100).


def make_weight_kmajor(n, k, bits, group_size, device, dtype=torch.bfloat16):
    """Codes of W.T (K, N) packed planar along N: packed[k, :, j] holds W.T[k, j + p N/G]."""
    g = values_per_group(bits)
    codes = torch.randint(0, 2**bits, (k, n), device=device, dtype=torch.uint8)
    packed = bitpack.pack(codes.view(k, g, n // g), bits, dim=1)
    scale = (torch.rand(k // group_size, n, device=device, dtype=torch.float32) * 0.02 + 0.001).to(dtype)
    return codes, packed, scale


def dequantize_kmajor(packed, scale, bits, n, k, group_size, dtype=torch.bfloat16):
    """W.T (K, N), computed in that layout (not a view), from K-major storage."""
    g = values_per_group(bits)
    codes = bitpack.unpack(packed, bits, g, dim=1, dtype=torch.int32).reshape(k, n)
    centered = (codes - (1 << (bits - 1))).to(dtype)
    return centered * scale.repeat_interleave(group_size, dim=0)  # ends computed, not as a view


def mm_kmajor_iq_form(x, packed, scale, bits, n, k, group_size):
    from torch._higher_order_ops._invoke_quant import InvokeQuant

    def dq(packed, scale):
        return dequantize_kmajor(packed, scale, bits, n, k, group_size, x.dtype)

    return x @ InvokeQuant(codegen_low_precision=False)(dq, packed, scale, scheme="lowbit")


def gemv_kmajor_group_sum_form(x, packed, scale, bits, n, k, group_size):
    """Two levels on K-major storage: per scale group, sum over k of x[k] * raw code[k, n]
    (a reduction over the strided dim, N contiguous across threads), then the scaled sum."""
    g = values_per_group(bits)
    groups = k // group_size
    codes = bitpack.unpack(packed, bits, g, dim=1, dtype=torch.int32).reshape(groups, group_size, n)
    xs = x.float().view(-1, groups, group_size, 1)
    dots = (xs * codes.float()[None]).sum(2)  # (M, groups, N)
    centred = dots - (1 << (bits - 1)) * xs.sum(2)  # sum x * (code - offset)
    return (centred * scale.float()[None]).sum(1).to(x.dtype)


def gemv_form(x, packed, scale, bits, n, k, group_size):
    w = dequantize(packed, scale, bits, n, k, group_size, torch.float32)
    return (x.unsqueeze(-2).float() * w).sum(-1).to(x.dtype)


def mm_form(x, packed, scale, bits, n, k, group_size):
    return x @ dequantize(packed, scale, bits, n, k, group_size, x.dtype).t()


def mm_invoke_quant_form(x, packed, scale, bits, n, k, group_size):
    from torch._higher_order_ops._invoke_quant import InvokeQuant

    def dq(packed, scale):
        # the subgraph must end in a computed tensor, not a view (inductor cannot lower a
        # ReinterpretView output of invoke_quant)
        g = values_per_group(bits)
        codes = bitpack.unpack(packed, bits, g, dim=1, dtype=torch.int32).reshape(n, k)
        return (codes - (1 << (bits - 1))).to(x.dtype) * scale.repeat_interleave(group_size, dim=1)

    return x @ InvokeQuant(codegen_low_precision=LOW_PRECISION)(dq, packed, scale, scheme="lowbit").t()


LOW_PRECISION = False


def mm_invoke_quant_lowp_form(*args):
    global LOW_PRECISION
    LOW_PRECISION = True
    try:
        return mm_invoke_quant_form(*args)
    finally:
        LOW_PRECISION = False


def centred_weight(packed, scale, bits, n, k, group_size, dtype):
    """W (N, K) in ``dtype`` from planar codes (offset binary) and per-group scales, computed
    as the matmul forms' prologues compute it."""
    g = values_per_group(bits)
    codes = bitpack.unpack(packed, bits, g, dim=1, dtype=torch.int32).reshape(n, k)
    return (codes - (1 << (bits - 1))).to(dtype) * scale.repeat_interleave(group_size, dim=1)


def invoke_quant(dq, packed, scale):
    """``dq(packed, scale)`` as torch's InvokeQuant subgraph, whose result may fuse into a
    matmul template as its prologue (it must end in a computed tensor, not a view)."""
    from torch._higher_order_ops._invoke_quant import InvokeQuant

    return InvokeQuant(codegen_low_precision=False)(dq, packed, scale, scheme="lowbit")


def mm_t_form(x, packed, scale, bits, n, k, group_size):
    """x @ W^T with W^T computed directly in (K, N) layout, the template's own input layout."""
    return x @ centred_weight(packed, scale, bits, n, k, group_size, x.dtype).t().contiguous()


def mm_t_iq_form(x, packed, scale, bits, n, k, group_size):
    def dq(packed, scale):
        return centred_weight(packed, scale, bits, n, k, group_size, x.dtype).t().contiguous()

    return x @ invoke_quant(dq, packed, scale)


def mm_nt_iq_form(x, packed, scale, bits, n, k, group_size):
    """(W @ x.T).T: the decoded W (N, K) as the template's A operand, so that the tile's long side
    (BLOCK_M) runs along N and x.T is the small B operand."""

    def dq(packed, scale):
        return centred_weight(packed, scale, bits, n, k, group_size, x.dtype)

    return (invoke_quant(dq, packed, scale) @ x.t()).t()


def mm_t_iq_fold_form(splits):
    """Split K into ``splits`` parts folded into the template's N: B' = (K/S, S N) with
    B'[k', s N + n] = W.T[s K/S + k', n], A' = x as (M S, K/S); the product (M S, S N) holds the
    S partial products on its diagonal blocks. S times the tensor-core work and S times the
    programs, so S times the warps decoding the weight."""

    def form(x, packed, scale, bits, n, k, group_size):
        def dq(packed, scale):
            w = centred_weight(packed, scale, bits, n, k, group_size, x.dtype)
            return w.view(n, splits, k // splits).permute(2, 1, 0).contiguous()  # (K/S, S, N)

        m = x.shape[0]
        b = invoke_quant(dq, packed, scale).view(k // splits, splits * n)
        c = x.reshape(m * splits, k // splits) @ b  # (M S, S N)
        return c.view(m, splits, splits, n).diagonal(dim1=1, dim2=2).float().sum(-1).to(x.dtype)

    return form


def mm_t_iq_interleaved_fold_form(splits):
    """mm_t_iq_fold_form with K split *interleaved* (k = S k' + s) instead of in blocks: then
    B' = (K/S, S N), B'[k', s N + n] = W.T[S k' + s, n], is a plain view of the decoded W.T
    (K, N) the layer's prologue already computes, so the decode can fuse as it does today,
    and A' = x as (M S, K/S) is a small copy of x. S times the programs and the tensor-core
    work; the S partial products lie on the diagonal blocks of the (M S, S N) result, in bf16."""

    def form(x, packed, scale, bits, n, k, group_size):
        def dq(packed, scale):
            return centred_weight(packed, scale, bits, n, k, group_size, x.dtype).t().contiguous()

        m = x.shape[0]
        b = invoke_quant(dq, packed, scale).view(k // splits, splits * n)
        a = x.view(m, k // splits, splits).transpose(1, 2).reshape(m * splits, k // splits)
        c = a @ b  # (M S, S N)
        return c.view(m, splits, splits, n).diagonal(dim1=1, dim2=2).float().sum(-1).to(x.dtype)

    return form


def mm_t_iq_sx_form(x, packed, scale, bits, n, k, group_size):
    """mm_t_iq_form (INT4) with each nibble sign-extended by two int32 shifts: the byte (XOR
    0x88: two's complement nibbles, as LowBitLinear stores signed codes) shifted left so that
    nibble p tops the int32, then arithmetically right by 28. About 4 operations per weight
    before the float conversion, against 7 for bitpack.unpack's (shift by a converted
    amount, mask, widen, XOR, subtract)."""
    from torch._higher_order_ops._invoke_quant import InvokeQuant

    assert bits == 4

    def dq(packed, scale):
        twos = packed.reshape(n, 1, k // 2).to(torch.int32) ^ 0x88
        lift = 28 - 4 * torch.arange(2, device=packed.device, dtype=torch.int32).view(1, 2, 1)
        values = ((twos << lift) >> 28).reshape(n, k)
        w = values.to(x.dtype) * scale.repeat_interleave(group_size, dim=1)
        return w.t().contiguous()

    return x @ InvokeQuant(codegen_low_precision=False)(dq, packed, scale, scheme="lowbit")


def mm_t_iq_sx_st_form(x, packed, scale_t, bits, n, k, group_size):
    """mm_t_iq_sx_form with the scales stored (K / group_size, N) (the probe passes them so for
    the "-st" variants): the prologue's scale load runs along n, the tile's contiguous dim, a
    vector load, instead of a gather at n * K / group_size + k // group_size."""
    from torch._higher_order_ops._invoke_quant import InvokeQuant

    assert bits == 4

    def dq(packed, scale_t):
        twos = packed.reshape(n, 1, k // 2).to(torch.int32) ^ 0x88
        lift = 28 - 4 * torch.arange(2, device=packed.device, dtype=torch.int32).view(1, 2, 1)
        values_t = ((twos << lift) >> 28).reshape(n, k).t()
        return (values_t.to(x.dtype) * scale_t.repeat_interleave(group_size, dim=0)).contiguous()

    return x @ InvokeQuant(codegen_low_precision=False)(dq, packed, scale_t, scheme="lowbit")


def mm_int8_kmajor_form(x, packed, scale, bits, n, k, group_size):
    """Control from DESIGN.md: int8 stored (K, N), x @ w8T.to(bf16), per-channel scale after."""
    w8t = packed.view(torch.int8).view(k, n)  # reinterpret the bytes; values are not meaningful
    return (x @ w8t.to(x.dtype)) * scale[:, 0]


VARIANTS = {
    "mm-t-ma": (mm_t_form, {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "mm-t-iq-ma": (mm_t_iq_form, {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "mm-nt-iq-ma": (mm_nt_iq_form, {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "mm-t-iq-fold2-ma": (mm_t_iq_fold_form(2), {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "mm-t-iq-fold4-ma": (mm_t_iq_fold_form(4), {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "mm-t-iq-fold8-ma": (mm_t_iq_fold_form(8), {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "mm-t-iq-ifold2-ma": (mm_t_iq_interleaved_fold_form(2), {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "mm-t-iq-ifold4-ma": (mm_t_iq_interleaved_fold_form(4), {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "mm-t-iq-ifold8-ma": (mm_t_iq_interleaved_fold_form(8), {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "mm-t-iq-sx-ma": (mm_t_iq_sx_form, {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "mm-t-iq-sx-st-ma": (mm_t_iq_sx_st_form, {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "mm-int8k-ma": (mm_int8_kmajor_form, {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "planes": (gemv_planes_form, {}),
    "planes-nosplit": (gemv_planes_form, {"split_reductions": False}),
    "planes-cdt": (gemv_planes_form, {"coordinate_descent_tuning": True}),
    "planes-nosplit-cdt": (gemv_planes_form, {"split_reductions": False, "coordinate_descent_tuning": True}),
    "mm-iq-lowp-ma": (mm_invoke_quant_lowp_form, {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "words-cdt": (gemv_words_form, {"coordinate_descent_tuning": True}),
    "words-cdt-big": (gemv_words_form, {"coordinate_descent_tuning": True, "realize_acc_reads_threshold": 64, "realize_opcount_threshold": 256}),
    "groupsum-cdt": (gemv_group_sum_form, {"coordinate_descent_tuning": True}),
    "groupsum-fields-cdt": (gemv_group_sum_fields_form, {"coordinate_descent_tuning": True}),
    "groupsum-floatbits-cdt": (gemv_float_bits_form, {"coordinate_descent_tuning": True}),
    "groupsum-floatbits-xf32-cdt": (gemv_float_bits_form, {"coordinate_descent_tuning": True}),
    "groupsum-gmajor-cdt": (gemv_group_major_sum_form, {"coordinate_descent_tuning": True}),
    # x given as float32 (converted once outside): no bf16 -> float32 conversion per weight.
    "groupsum-xf32-cdt": (gemv_group_sum_form, {"coordinate_descent_tuning": True}),
    "groupsum-gmajor-xf32-cdt": (gemv_group_major_sum_form, {"coordinate_descent_tuning": True}),
    "e2m1-half-cdt": (e2m1_group_sum_form(e2m1_by_half), {"coordinate_descent_tuning": True}),
    "e2m1-unit-cdt": (e2m1_group_sum_form(e2m1_by_unit), {"coordinate_descent_tuning": True}),
    "e2m1-subnormal-cdt": (e2m1_group_sum_form(e2m1_by_subnormal), {"coordinate_descent_tuning": True}),
    "mm-t-iq-fields-ma": (mm_t_iq_fields_form, {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "planes-cdt-big": (gemv_planes_form, {"coordinate_descent_tuning": True, "realize_acc_reads_threshold": 64, "realize_opcount_threshold": 256}),
    "mm-kmajor-iq-ma": (mm_kmajor_iq_form, {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "gemv-kmajor-groupsum-cdt": (gemv_kmajor_group_sum_form, {"coordinate_descent_tuning": True}),
    "mm-native": (mm_form, {"triton.native_matmul": True}),
    "mm-native-cdt": (mm_form, {"triton.native_matmul": True, "coordinate_descent_tuning": True}),
    "gemv": (gemv_form, {}),
    "gemv-cdt": (gemv_form, {"coordinate_descent_tuning": True}),
    "gemv-ma": (gemv_form, {"max_autotune": True, "coordinate_descent_tuning": True}),
    "mm-ma": (mm_form, {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
    "mm-iq-ma": (mm_invoke_quant_form, {"max_autotune": True, "max_autotune_gemm_backends": "TRITON"}),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="8192x8192")
    parser.add_argument("--m", default="1,16,64")
    parser.add_argument("--bits", default="4")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--log", default=None)
    args = parser.parse_args()
    device = "cuda"
    print(f"# {environment_line()}", flush=True)
    big = torch.empty(512 * 2**20, dtype=torch.uint8, device=device)
    clone_bw = 2 * big.numel() / time_cuda_graph([lambda: big.clone()], replays_per_graph=3)
    print(f"clone bandwidth {clone_bw / 1e12:.2f} TB/s", flush=True)
    del big
    rows = []
    for shape in args.shapes.split(","):
        n, k = map(int, shape.split("x"))
        ws = [torch.randn(n, k, device=device, dtype=torch.bfloat16) for _ in range(2)]
        for m in map(int, args.m.split(",")):
            x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
            bf16 = time_cuda_graph([lambda w=w: F.linear(x, w) for w in ws])
            rows.append((shape, m, "bf16", "-", bf16 * 1e6, 1.0, "-", "-"))
            print(rows[-1], flush=True)
            for bits in map(int, args.bits.split(",")):
                n_major = [make_weight(n, k, bits, args.group_size, device) for _ in range(args.copies)]
                k_major = [make_weight_kmajor(n, k, bits, args.group_size, device) for _ in range(args.copies)]
                _, packed, scale = n_major[0]
                ref_n = x.float() @ dequantize(packed, scale, bits, n, k, args.group_size, torch.float32).t()
                _, packed_k, scale_k = k_major[0]
                ref_k = x.float() @ dequantize_kmajor(packed_k, scale_k, bits, n, k, args.group_size, torch.float32)
                weight_bytes = packed.numel() + scale.numel() * scale.element_size()
                floor = weight_bytes / clone_bw
                for name in args.variants.split(","):
                    form, options = VARIANTS[name]
                    weights, ref = (k_major, ref_k) if "kmajor" in name else (n_major, ref_n)
                    if name.startswith("e2m1") and bits != 4:
                        continue
                    if "-st-" in name:  # scales stored (K / group_size, N)
                        weights = [(c, p, s.t().contiguous()) for c, p, s in weights]
                    _, packed, scale = weights[0]
                    if name.startswith("e2m1"):
                        ref = x.float() @ e2m1_reference(packed, scale, n, k, args.group_size).t()
                    xin = x.float() if "xf32" in name else x
                    torch._dynamo.reset()
                    try:
                        import time as _t

                        t0 = _t.perf_counter()
                        fn = torch.compile(form, fullgraph=True, options=options)
                        out, kernels, src = run_and_count_kernels(fn, xin, packed, scale, bits, n, k, args.group_size)
                        compile_s = _t.perf_counter() - t0
                        err = ((out.float() - ref).norm() / ref.norm()).item()
                        full = f"({n}, {k})" in src or f"({k}, {n})" in src
                        t = time_cuda_graph(
                            [lambda p=p, s=s: fn(xin, p, s, bits, n, k, args.group_size) for _, p, s in weights]
                        )
                        rows.append(
                            (shape, m, f"int{bits} {name}", kernels, t * 1e6, bf16 / t, f"{floor / t:.0%}", f"err {err:.1e} full_w {full} compile {compile_s:.0f}s {tuned_configs()}")
                        )
                        if args.log:
                            with open(os.path.join(args.log, f"{name}_b{bits}_m{m}_{shape}.py"), "w") as fh:
                                fh.write(src)
                    except Exception as error:  # a research probe: record and go on
                        rows.append((shape, m, f"int{bits} {name}", "FAIL", 0, 0, "-", repr(error)[:200]))
                    print(rows[-1], flush=True)
            if 4 in map(int, args.bits.split(",")) and m <= 64:
                try:
                    w = torch.randint(0, 16, (n, k), device=device, dtype=torch.int32)
                    w_u8 = (w[:, ::2] << 4 | w[:, 1::2]).to(torch.uint8)
                    tiny = [torch.ops.aten._convert_weight_to_int4pack(w_u8, 8) for _ in range(args.copies)]
                    sz = torch.rand(k // args.group_size, n, 2, device=device, dtype=torch.bfloat16)
                    t = time_cuda_graph(
                        [lambda p=p: torch.ops.aten._weight_int4pack_mm(x, p, args.group_size, sz) for p in tiny]
                    )
                    rows.append((shape, m, "tinygemm int4", 1, t * 1e6, bf16 / t, "-", ""))
                except Exception as error:
                    rows.append((shape, m, "tinygemm int4", "FAIL", 0, 0, "-", repr(error)[:200]))
                print(rows[-1], flush=True)
    print(f"\n{'shape':>10} {'M':>4} {'variant':>18} {'kern':>5} {'us':>8} {'x bf16':>7} {'roof':>5}  notes")
    for shape, m, name, kernels, us, speedup, roof, notes in rows:
        print(f"{shape:>10} {m:>4} {name:>18} {kernels!s:>5} {us:>8.1f} {speedup:>7.2f} {roof:>5}  {notes}")


if __name__ == "__main__":
    main()
