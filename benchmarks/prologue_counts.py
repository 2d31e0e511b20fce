"""Instructions per weight of a fused matmul template's K loop, for decodes of our choosing,
counted for Hopper (sm_90a) without a GPU.

Research tool (not part of the package). Inductor's Triton matmul template, with a decode
prologue in the form inductor writes it (the INT4 template an H200 compiled in the twenty-
fourth session, its prologue replaced here), is compiled offline by
``benchmarks/sass_offline.py`` (a CPU build of torch and ``pip install triton==3.6.0``); the K
loop's SASS instructions are divided by the weights each thread decodes per trip. Predicts
which decode issues less before a device run times it (docs/inductor.md, "INT8 codes to
bfloat16 in one conversion").

    python benchmarks/prologue_counts.py                      # every decode below, three tiles
    python benchmarks/prologue_counts.py --decodes int8-pc-direct e4m3-pc --tiles 16x64x128w4
    python benchmarks/prologue_counts.py --decodes int4-g128 --tiles 16x16x128w2 16x16x256w2s3  # stages
    python benchmarks/prologue_counts.py --scale-layouts rows groups   # scales (N, K/128) or (K/128, N)
    python benchmarks/prologue_counts.py --left --tiles 64x16x128w4 64x64x128w4   # the left route
    python benchmarks/prologue_counts.py --left --decodes int8-g128-direct --scale-layouts rows groups
    python benchmarks/prologue_counts.py --decodes e4m3-g128-float32 int8-g128-float32 --scale-dtype fp32
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sass_offline  # noqa: E402

# The codes' byte at the tile's (k, n): W is (N, K) row-major, 8192 x 8192.
CODE = "tl.load(in_ptr1 + (tl.broadcast_to(8192*idx_n + idx_m, [BLOCK_K, BLOCK_N])), None, eviction_policy='evict_last')"
# One bfloat16 scale per 128 weights of a row, and a uint8 zero-point alike.
SCALE = "tl.load(in_ptr2 + (tl.broadcast_to(64*idx_n + (idx_m // 128), [BLOCK_K, BLOCK_N])), None, eviction_policy='evict_last')"
ZERO = "tl.load(in_ptr3 + (tl.broadcast_to(64*idx_n + (idx_m // 128), [BLOCK_K, BLOCK_N])), None, eviction_policy='evict_last')"

# Scales and zero-points stored group-major, (K / 128, N) in memory: tried in the layer and removed
# (slower on an H200; docs/inductor.md, "Scales stored group-major").
SCALE_GROUP_MAJOR = SCALE.replace("64*idx_n + (idx_m // 128)", "8192*(idx_m // 128) + idx_n")
ZERO_GROUP_MAJOR = ZERO.replace("64*idx_n + (idx_m // 128)", "8192*(idx_m // 128) + idx_n")
# INT4's planar byte: columns k and k + K / 2 in its low and high nibbles.
PLANAR_CODE = CODE.replace("8192*idx_n + idx_m", "4096*idx_n + (idx_m % 4096)")

# name: the decode's statements, from the code byte c (uint8), the scale s and zero-point z
# where used, to the bfloat16 weight w.
DECODES = {
    "int8-pc-float32": "w = c.to(tl.int8, bitcast=True).to(tl.int32).to(tl.float32).to(tl.bfloat16)",
    "int8-pc-direct": "w = c.to(tl.int8, bitcast=True).to(tl.bfloat16)",
    "int8-pc-via-float16": "w = c.to(tl.int8, bitcast=True).to(tl.float16).to(tl.bfloat16)",
    "e4m3-pc": "w = c.to(tl.float8e4nv, bitcast=True).to(tl.float32).to(tl.bfloat16)",
    "int8-g128-float32": "w = (c.to(tl.int8, bitcast=True).to(tl.int32).to(tl.float32) * s.to(tl.float32)).to(tl.bfloat16)",
    "int8-g128-direct": "w = c.to(tl.int8, bitcast=True).to(tl.bfloat16) * s",
    "e4m3-g128": "w = c.to(tl.float8e4nv, bitcast=True).to(tl.float32).to(tl.bfloat16) * s",
    # ... as the layer decodes it (float codes scale in float32: fpx.nn._decode_in_x_dtype_applies)
    "e4m3-g128-float32": "w = (c.to(tl.float8e4nv, bitcast=True).to(tl.float32) * s.to(tl.float32)).to(tl.bfloat16)",
    "int8-pc-bits-f32": "w = ((c.to(tl.int32) ^ 0x4B000080).to(tl.float32, bitcast=True) * 1.0 - 8388736.0).to(tl.bfloat16)",
    "int8-pc-bits-f16": "w = ((c.to(tl.int32) ^ 0x6480).to(tl.int16).to(tl.float16, bitcast=True) - 1152.0).to(tl.bfloat16)",
    # int8 as 128 + its low seven bits (0x4300 | c & 0x7F) plus -128 or -256 (0xC300 | c & 0x80:
    # the sign bit on the exponent's lowest bit), both placed in bfloat16 by their bits
    "int8-pc-two-halves": ("w = ((c.to(tl.int32) & 127) | 17152).to(tl.int16).to(tl.bfloat16, bitcast=True)"
                           " + ((c.to(tl.int32) & 128) | -15616).to(tl.int16).to(tl.bfloat16, bitcast=True)"),
    "uint8-g128-float32": "w = ((c.to(tl.int32).to(tl.float32) - z.to(tl.float32)) * s.to(tl.float32)).to(tl.bfloat16)",
    "uint8-g128-direct": "w = (c.to(tl.bfloat16) - z.to(tl.bfloat16)) * s",
    "uint8-g128-xor": ("w = ((c ^ 0x80).to(tl.int8, bitcast=True).to(tl.bfloat16)"
                       " - (z ^ 0x80).to(tl.int8, bitcast=True).to(tl.bfloat16)) * s"),
    # E5M2 as inductor writes it: a float16's top byte (before), torch's float8_e5m2 cast (now)
    "e5m2-pc-top-byte": ("w = ((c.to(tl.int32) << 8).to(tl.int16) & -256).to(tl.float16, bitcast=True)"
                         ".to(tl.bfloat16)"),
    "e5m2-pc-cast": "w = c.to(tl.int32).to(tl.uint8).to(tl.float8e5, bitcast=True).to(tl.float32).to(tl.bfloat16)",
    # INT4 by 128 as inductor writes its prologue today (the planar byte's nibble shifted by k,
    # the field placed in a bfloat16 by its bits, the scale multiplied in bfloat16)
    "int4-g128": ("w = ((((c >> (4*(idx_m // 4096)).to(tl.int16).to(tl.uint8)) & tl.full([1, 1], 15, tl.uint8))"
                  ".to(tl.int32) ^ tl.full([1, 1], 17160, tl.int32)).to(tl.int16).to(tl.bfloat16, bitcast=True)"
                  " * tl.full([1, 1], 1.0, tl.bfloat16) - tl.full([1, 1], 136.0, tl.bfloat16)) * s"),
    # One plane of the planar bytes per product (fpx.nn.LowBitLinear._plane_products): the field
    # at a constant shift, masked below the top one, placed in a bfloat16 by its bits; INT1's
    # sign-only 2 v + 1 after
    **{f"int{bits}-plane-{plane}": (
        "w = ((((c >> tl.full([1, 1], {shift}, tl.uint8)).to(tl.int32){mask}) ^ tl.full([1, 1], {pattern}, tl.int32))"
        ".to(tl.int16).to(tl.bfloat16, bitcast=True) * tl.full([1, 1], 1.0, tl.bfloat16)"
        " - tl.full([1, 1], {offset}.0, tl.bfloat16)){sign_only}").format(
            shift=bits * plane, pattern=(0x4300 | 1 << (bits - 1)), offset=128 + (1 << (bits - 1)),
            mask="" if plane == 8 // bits - 1 else f" & tl.full([1, 1], {(1 << bits) - 1}, tl.int32)",
            sign_only=" * tl.full([1, 1], 2.0, tl.bfloat16) + tl.full([1, 1], 1.0, tl.bfloat16)" if bits == 1 else "")
      for bits, plane in ((4, 0), (4, 1), (2, 1), (2, 3), (1, 3), (1, 7))},
    # Per-channel E2M1 (no scale in the decode), the field placed in float32 by one multiply
    # (fpx.fields._float_field_values), then rounded to bfloat16: as one product today (the
    # planar byte's nibble shifted by k, masked, placed) and one plane per product (the field
    # masked in place at a constant shift, the multiplier chosen for it)
    "e2m1-pc": ("w = ((((c >> (4*(idx_m // 4096)).to(tl.int16).to(tl.uint8)) & tl.full([1, 1], 15, tl.uint8))"
                ".to(tl.int32) * 272629760 & -2118123520).to(tl.float32, bitcast=True)"
                " * 8.507059173023462e+37).to(tl.bfloat16)"),
    **{f"e2m1-plane-{plane}": (
        "w = (((c.to(tl.int32) & {mask}) * {multiplier} & -2118123520).to(tl.float32, bitcast=True)"
        " * 8.507059173023462e+37).to(tl.bfloat16)").format(mask=15 << 4 * plane, multiplier=(1 << 22 - 4 * plane) + (1 << 28 - 4 * plane))
       for plane in (0, 1)},
    # ... one plane per product, the field placed in a bfloat16 by its bits (magnitude at
    # bfloat16's exponent and mantissa, sign at bit 15) and scaled by 2^126 in bfloat16 (exact:
    # a subnormal code places as a bfloat16 subnormal, which the multiply takes)
    **{f"e2m1-plane-{plane}-bf16": (
        "w = (((c.to(tl.int32) & {magnitude}) {to_magnitude} | (c.to(tl.int32) & {sign}) << {to_sign})"
        ".to(tl.int16).to(tl.bfloat16, bitcast=True) * tl.full([1, 1], 8.507059173023462e+37, tl.bfloat16))").format(
            magnitude=7 << 4 * plane, sign=8 << 4 * plane, to_magnitude="<< 6" if plane == 0 else "<< 2",
            to_sign=12 - 4 * plane)
       for plane in (0, 1)},
    # ... the same bits placed by one multiply of the masked field (two copies, the magnitude's
    # and the sign's, as fpx.fields._float_field_values places them in float32) and one AND
    **{f"e2m1-plane-{plane}-bf16-multiply": (
        "w = ((c.to(tl.int32) & {field}) * {multiplier} & -32320).to(tl.int16).to(tl.bfloat16, bitcast=True)"
        " * tl.full([1, 1], 8.507059173023462e+37, tl.bfloat16)").format(
            field=15 << 4 * plane, multiplier=(1 << 6 - 4 * plane) + (1 << 12 - 4 * plane))
       for plane in (0, 1)},
}
# Decodes whose codes are not one byte per weight.
CODE_OF = {"int4-g128": PLANAR_CODE, "e2m1-pc": PLANAR_CODE}

# The signature and the pointers' 16-byte alignment, as inductor passes them (sass_offline
# reads both from the source).
META = ("# triton_meta={'signature': {'arg_A': '*bf16', 'in_ptr1': '*u8', 'in_ptr2': '*bf16', 'in_ptr3': '*u8', "
        "'out_ptr0': '*bf16'}, 'configs': [{(0,): [['tt.divisibility', 16]], (1,): [['tt.divisibility', 16]], "
        "(2,): [['tt.divisibility', 16]], (3,): [['tt.divisibility', 16]], (4,): [['tt.divisibility', 16]]}]}")

TEMPLATE = '''
@triton.jit
def triton_tem_decode(arg_A, in_ptr1, in_ptr2, in_ptr3, out_ptr0):
    EVEN_K : tl.constexpr = True
    ACC_TYPE : tl.constexpr = tl.float32
    BLOCK_M : tl.constexpr = {block_m}
    BLOCK_N : tl.constexpr = {block_n}
    BLOCK_K : tl.constexpr = {block_k}
    GROUP_M : tl.constexpr = 8
    INDEX_DTYPE : tl.constexpr = tl.int32
    A = arg_A
    M = 16
    N = 8192
    K = 8192
    pid = tl.program_id(0).to(INDEX_DTYPE)
    grid_m = (M + BLOCK_M - 1) // BLOCK_M
    grid_n = (N + BLOCK_N - 1) // BLOCK_N
    width = GROUP_M * grid_n
    group_id = pid // width
    group_size = min(grid_m - group_id * GROUP_M, GROUP_M)
    pid_m = group_id * GROUP_M + (pid % group_size)
    pid_n = (pid % width) // (group_size)
    tl.assume(pid_m >= 0)
    tl.assume(pid_n >= 0)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_a_m = tl.max_contiguous(tl.multiple_of(rm % M, BLOCK_M), BLOCK_M)
    offs_b_n = tl.max_contiguous(tl.multiple_of(rn % N, BLOCK_N), BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_TYPE)
    for k_idx in range(0, tl.cdiv(K, BLOCK_K)):
        a_k_idx_vals = offs_k[None, :] + (k_idx * BLOCK_K)
        b_k_idx_vals = offs_k[:, None] + (k_idx * BLOCK_K)
        idx_m = offs_a_m[:, None]
        idx_n = a_k_idx_vals
        xindex = idx_n + 8192*idx_m
        a = tl.load(A + (xindex))
        idx_m = b_k_idx_vals
        idx_n = offs_b_n[None, :]
        xindex = idx_n + 8192*idx_m
{loads}
        {decode}
        b = w.broadcast_to(xindex.shape)
        acc += tl.dot(a, b, allow_tf32=False, out_dtype=ACC_TYPE)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    idx_m = rm[:, None]
    idx_n = rn[None, :]
    mask = (idx_m < M) & (idx_n < N)
    xindex = idx_n + 8192*idx_m
    tl.store(out_ptr0 + (tl.broadcast_to(xindex, [BLOCK_M, BLOCK_N])), acc, mask)
'''

# The left route ((W @ x.T).T, fpx.nn._weight_as_left_operand): the decoded weight is the
# template's left operand, 8192 rows of W by 64 columns of x.T (the layer's left route takes
# per-channel codes, no scale in the decode; scales are counted here to see what they cost).
LEFT_TEMPLATE = (TEMPLATE.replace("M = 16\n", "M = 8192\n").replace("N = 8192\n", "N = 64\n")
                 .replace("""        a = tl.load(A + (xindex))
        idx_m = b_k_idx_vals
        idx_n = offs_b_n[None, :]
        xindex = idx_n + 8192*idx_m
{loads}
        {decode}
        b = w.broadcast_to(xindex.shape)""", """{loads}
        {decode}
        a = w.broadcast_to(xindex.shape)
        idx_m = b_k_idx_vals
        idx_n = offs_b_n[None, :]
        xindex = 8192*idx_n + idx_m
        b = tl.load(A + (xindex))""")
                 .replace("xindex = idx_n + 8192*idx_m\n    tl.store", "xindex = idx_n + 64*idx_m\n    tl.store"))
LEFT_CODE = "tl.load(in_ptr1 + (tl.broadcast_to(8192*idx_m + idx_n, [BLOCK_M, BLOCK_K])), None, eviction_policy='evict_last')"
# Scales on the left (a W row idx_m, a column idx_n of K): the layer has none there (its left
# route takes per-channel codes, scaled on the product); counted to see what groups would cost.
LEFT_SCALE = "tl.load(in_ptr2 + (tl.broadcast_to(64*idx_m + (idx_n // 128), [BLOCK_M, BLOCK_K])), None, eviction_policy='evict_last')"
LEFT_SCALE_GROUP_MAJOR = LEFT_SCALE.replace("64*idx_m + (idx_n // 128)", "8192*(idx_n // 128) + idx_m")


def _reads(decode: str, names: str) -> bool:
    """Whether ``decode`` reads any of the one-letter values ``names`` (s: scale, z: zero-point)."""
    return re.search(rf"\b[{names}]\b", decode) is not None


def _kernel_source(template: str, loads: list, decode: str, block_m: int, block_n: int, block_k: int,
                   float32_scales: bool) -> str:
    """``template`` with its loads, its decode and its block sizes filled in, META before it;
    with ``float32_scales`` the scales' pointer is float32 and the decoded weight is cast back
    to bfloat16 where a float32 scale promoted it."""
    source = META + template.format(block_m=block_m, block_n=block_n, block_k=block_k, loads="\n".join(loads),
                                    decode=decode)
    if float32_scales:
        source = source.replace("'in_ptr2': '*bf16'", "'in_ptr2': '*fp32'")
        for operand in ("a", "b"):
            source = source.replace(f"        {operand} = w.broadcast_to",
                                    f"        w = w.to(tl.bfloat16)\n        {operand} = w.broadcast_to")
    return source


def left_template_source(decode: str, block_m: int, block_n: int, block_k: int, group_major: bool = False,
                         float32_scales: bool = False) -> str:
    """The left route's template kernel with ``decode`` as its prologue (a scale where it reads
    one, stored group-major where ``group_major``, in float32 where ``float32_scales``; no
    zero-points)."""
    if _reads(decode, "z"):
        raise ValueError(f"the left route's counts take no zero-point, got {decode!r}")
    loads = [f"        c = {LEFT_CODE}"]
    if _reads(decode, "s"):
        loads.append(f"        s = {LEFT_SCALE_GROUP_MAJOR if group_major else LEFT_SCALE}")
    return _kernel_source(LEFT_TEMPLATE, loads, decode, block_m, block_n, block_k, float32_scales)


def template_source(decode: str, block_m: int, block_n: int, block_k: int, code: str = CODE,
                    group_major: bool = False, float32_scales: bool = False) -> str:
    """The template kernel's Triton source with ``decode`` as its prologue (the codes loaded by
    ``code``; scales and zero-points stored group-major where ``group_major``, scales in
    float32 where ``float32_scales``)."""
    loads = [f"        c = {code}"]
    if _reads(decode, "s"):
        loads.append(f"        s = {SCALE_GROUP_MAJOR if group_major else SCALE}")
    if _reads(decode, "z"):
        loads.append(f"        z = {ZERO_GROUP_MAJOR if group_major else ZERO}")
    return _kernel_source(TEMPLATE, loads, decode, block_m, block_n, block_k, float32_scales)


def k_loop_counts(source: str, warps: int, stages: int) -> tuple[collections.Counter, int, int]:
    """(opcode counts of one trip of the K loop of ``source`` compiled for sm_90a, one thread's;
    the kernel's registers per thread; its shared memory per program, in bytes)."""
    cubin, shared_bytes = sass_offline.compile_kernel(source, {}, num_warps=warps, num_stages=stages)
    rows, loops = sass_offline._rows_and_loops(sass_offline.sass_of(cubin))
    first, last = max(loops, key=lambda loop: loop[1] - loop[0])  # the K loop: the longest
    registers, _ = sass_offline.resource_usage(cubin)
    return collections.Counter(op for _, _, op in rows[first : last + 1] if op != "NOP"), registers, shared_bytes


# An H100 / H200 SM: what bounds the programs resident on it at once.
SM_SHARED_BYTES, SM_REGISTERS, SM_MAX_WARPS, SM_MAX_PROGRAMS, SMS = 228 * 1024, 65536, 64, 32, 132


def warps_per_sm(programs: int, warps: int, registers: int, shared_bytes: int) -> tuple[int, int]:
    """(programs resident per SM, warps per SM) of a grid of ``programs`` spread over SMS SMs:
    the fewest of what shared memory (``shared_bytes`` per program, plus 1 KiB that the driver
    reserves per program), registers (allocated per warp in units of 256), the warp limit and
    the program limit allow, and no more than the grid fills.

    >>> warps_per_sm(512, 2, 80, 28 * 1024)   # INT4 by 128, 16 x 16 x 128 in 5 stages, 16 rows
    (4, 8)
    >>> warps_per_sm(256, 2, 167, 64 * 1024)  # ... in 16 x 32 x 256, 4 stages: half the grid
    (2, 4)
    """
    per_warp_registers = -(-registers * 32 // 256) * 256
    fits = min(SM_SHARED_BYTES // (shared_bytes + 1024), SM_REGISTERS // (per_warp_registers * warps),
               SM_MAX_WARPS // warps, SM_MAX_PROGRAMS)
    resident = min(fits, -(-programs // SMS))
    return resident, resident * warps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decodes", nargs="*", default=list(DECODES), choices=list(DECODES))
    parser.add_argument("--tiles", nargs="*", default=["16x16x128w2", "16x32x128w2", "16x64x128w4"],
                        help="BLOCK_M x BLOCK_N x BLOCK_K, warps and optionally stages (5 unless given), "
                             "e.g. 16x16x256w2s3")
    parser.add_argument("--left", action="store_true",
                        help="the left route's template ((W @ x.T).T: the decoded weight the left operand, "
                             "8192 x 64; byte codes, scales counted though the layer's left route has none); "
                             "--tiles then BLOCK_M (W's rows) x BLOCK_N x BLOCK_K")
    parser.add_argument("--scale-dtype", default="bf16", choices=("bf16", "fp32"),
                        help="the scales' dtype in memory: fp32 scales are 4-byte loads, which Triton copies "
                             "asynchronously, so a scaled decode can stay in the MMA operand's registers")
    parser.add_argument("--scale-layouts", nargs="*", default=["rows"], choices=("rows", "groups"),
                        help="scales and zero-points stored (N, K / 128) (rows, today's) or (K / 128, N) "
                             "(groups: tried in the layer, slower, removed)")
    args = parser.parse_args()
    # regs: per thread; smem: KiB per program (Triton's); programs and warps/SM (resident, on
    # an SM that has any): at 8192 x 8192, the right at BLOCK_M rows of x, the left at BLOCK_N
    # (see warps_per_sm; SMS SMs)
    print(f"{'decode':>20} {'scales':>6} {'tile':>14} {'instr/weight':>12} {'I2F/weight':>10} {'LDG':>4} {'STS':>4}"
          f" {'regs':>4} {'smem':>5} {'programs':>8} {'warps/SM':>8}  top opcodes")
    for tile in args.tiles:
        found = re.fullmatch(r"(\d+)x(\d+)x(\d+)w(\d+)(?:s(\d+))?", tile)
        if found is None:
            parser.error(f"--tiles takes BMxBNxBKwW[sS], e.g. 16x16x256w2s3, got {tile!r}")
        block_m, block_n, block_k, warps = (int(v) for v in found.groups()[:4])
        stages = int(found.group(5) or 5)
        programs = (8192 // block_m) if args.left else (8192 // block_n)
        for name in args.decodes:
            if args.left and (_reads(DECODES[name], "z") or name in CODE_OF):
                continue  # byte codes without zero-points on the left
            for layout in args.scale_layouts:
                if layout == "groups" and not _reads(DECODES[name], "sz"):
                    continue  # no scale or zero-point in its loop
                layouts = {"group_major": layout == "groups", "float32_scales": args.scale_dtype == "fp32"}
                if args.left:
                    source = left_template_source(DECODES[name], block_m, block_n, block_k, **layouts)
                    tile_weights = block_m * block_k
                else:
                    source = template_source(DECODES[name], block_m, block_n, block_k, CODE_OF.get(name, CODE),
                                             **layouts)
                    tile_weights = block_k * block_n
                body, registers, shared_bytes = k_loop_counts(source, warps, stages)
                weights_per_thread = tile_weights / (32 * warps)
                per_weight, i2f = sum(body.values()) / weights_per_thread, body["I2F"] / weights_per_thread
                top = ", ".join(f"{op} {n}" for op, n in body.most_common(6))
                _, warps_on_sm = warps_per_sm(programs, warps, registers, shared_bytes)
                # LDG: loads outside the async copy; STS: the decoded tile stored to shared memory
                print(f"{name:>20} {layout:>6} {tile:>14} {per_weight:>12.2f} {i2f:>10.2f} {body['LDG']:>4} "
                      f"{body['STS']:>4} {registers:>4} {shared_bytes / 1024:>5.0f} {programs:>8} {warps_on_sm:>8}  {top}",
                      flush=True)


if __name__ == "__main__":
    main()
