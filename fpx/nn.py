"""LowBitLinear: a weight-only low-bit linear layer, and ``quantize_`` to swap it into a model.

The weight (N, K) is quantized with :func:`fpx.quantize` along K and its codes are stored
packed by :mod:`bitpack` in a *planar* layout: W is viewed as (N, G, K/G) and packed along the
middle dim, so one group of G values (one byte, or ``bits`` bytes for 3, 5, 6 and 7 bits)
holds G values that lie K/G apart in the row::

    G = 8 div bits (bits in 1, 2, 4, 8)  or  8 (bits in 3, 5, 6, 7)
    packed[n, :, j]  holds  W[n, j], W[n, j + K/G], ..., W[n, j + (G-1) K/G]

With that layout the compiled small-batch forward reduces over the K/G byte groups of a row,
and every byte it loads serves the G reductions of its planes: the weight is read once, never
written out dequantized. Scales apply once per scale group, after the dot product of x with the
raw grid values (a second, small reduction).

Forward paths:

- eager (not compiling): ``F.linear(x, dequantize_weight())``.
- compiled, at most ``gemv_max_rows`` rows of x (default: see :func:`default_gemv_max_rows`): the fused
  reductions above: one kernel on CPU (after a small one that orders x for codes read as words,
  one row), one to three on CUDA (the per-group dot products, the scaled sum over groups, and
  sum(x) per group for UINT and INT1), no N x K buffer. A static
  batch of a few rows gets one reduction per row and plane, so the rows share each decoded
  weight.
- compiled, more rows: ``x @ W.T`` with W.T decoded in the (K, N) layout a matmul template
  reads, marked with torch's InvokeQuant on CUDA. Compiled with ``compile_options("cuda")``
  (max-autotune), inductor fuses the decode into the Triton matmul template as a prologue: one
  kernel, no dequantized weight in memory. Without max-autotune inductor writes the
  dequantized weight and calls a library matmul. On CPU the weight is decoded
  ``WEIGHT_BLOCKS`` blocks of output rows at a time, each block multiplied by a library matmul
  into its columns of the output (one block's buffer, reused: see
  :meth:`LowBitLinear._matmul_by_weight_blocks`).

Compile with ``torch.compile(model, options=fpx.nn.compile_options(device))`` for the fused
kernels; the options are scoped to that compile. On CUDA, make the first call (which compiles
and tunes) inside ``with fpx.nn.cold_cache_tuning():`` so that inductor picks the reductions'
launch configs by timings that match how they run (:mod:`fpx.tuning`).

>>> import torch, fpx
>>> linear = torch.nn.Linear(256, 64)
>>> q = fpx.LowBitLinear.from_linear(linear, fpx.INT4, group_size=128)
>>> q
LowBitLinear(in_features=256, out_features=64, fmt=INT4, group_size=128, bias=True, weight=8.5 KiB (4.25 bits/weight))
>>> x = torch.randn(3, 256)
>>> bool(torch.allclose(q(x), x @ q.dequantize_weight().T + linear.bias, atol=1e-5))
True
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

import bitpack
from bitpack.words import _inductor_buffer

from .convert import _decode_bytes_by_float_products, _decodes_by_byte_products, decode
from .fields import (
    _e8m0_values,
    _float32_shift_decodes,
    _float_field_values,
    _float_field_values_in_bfloat16,
    _float_fields_in_place,
    _float_values_by_float16_placement,
    _float_values_by_float32_shift,
    _float_values_in_32_bit_lanes,
    _int_field_pattern,
    _int_field_values,
    _uint_values_plus_two_pow_23,
)
from .formats import E2M1, E2M3, E3M2, E4M3, E5M2, INT1, INT2, INT3, INT4, INT5, INT6, INT7, INT8, UINT4
from .formats import _FORMATS_BY_NAME, FloatFormat, IntFormat, _is_int
from .quantize import _dequantize_grid, _grid_affine, quantize
from .tuning import cold_cache_tuning  # noqa: F401  (fpx.nn.cold_cache_tuning)
from .tuning import marked_decodes_apart_here

__all__ = ["LowBitLinear", "quantize_", "linear_weight_nbytes", "compile_options", "default_gemv_max_rows"]

SCALE_DTYPES = (torch.bfloat16, torch.float16, torch.float32)

# Operations an elementwise value may count and still be inlined into its consumer under
# compile_options("cuda") (inductor's realize_opcount_threshold; its default is 30): the largest
# weight decodes of the matmul path, E3M2's and E2M3's, need 38 on torch 2.11.
DECODE_OPCOUNT = 40


def compile_options(device="cuda") -> dict:
    """Inductor options for ``torch.compile`` of a model with LowBitLinear layers on ``device``
    (a str or torch.device: CUDA's options for a CUDA device of any index, none elsewhere).

    CUDA: max-autotune with Triton matmul templates, so the weight decode fuses into the matmul
    as a prologue (measured on an H100, torch 2.11: with cuBLAS among the choices inductor kept
    the unfused pair), and coordinate-descent tuning of the small-batch reduction kernels that
    looks in all directions. The model's other matmuls then use Triton templates too. CPU:
    inductor's defaults (the fused path needs no option there). The options are scoped to the
    one compile.

    Why all directions: the plain coordinate descent stops wherever one step at a time finds no
    gain, and over fresh compiles of one INT4 layer (8192 x 8192, one row, H100) it ran 24.2 to
    41.1 us; looking in all directions, 24.0 to 26.9 us (INT3: 24.5-39.4 against 25.4-29.7),
    at a longer compile (INT3: 20-49 s against 10 s). Under :func:`cold_cache_tuning` on an
    H200 (8192 x 8192, one row), which also skips the configs that would spill registers (most
    of that compile time) and tries wider programs where the descent stops: INT4 17.3-17.5 us,
    INT2 17.1, INT3 24.7, INT1 19.3, compiled in 11-19, 11, 23 and 24 s. To trade a few percent
    for compile time, add ``"coordinate_descent_check_all_directions": False`` to these options
    (measured before the skipping, under cold-cache tuning: INT2 18.0 against 17.3 us, INT3
    25.0 against 24.4, compiled in 11 and 15 s).

    Why four benchmarked choices: inductor times the decode fused into the best template
    configs for a plain matmul, by default only the best one, and keeps the unfused pair when
    that one config suits the decode poorly (INT4 at 16 rows: 105-117 us unfused in some
    compiles, 63-72 fused in others). With four,
    INT4 and E4M3 at 16 rows fused to one kernel of 68 and 64 us in one fresh compile each.
    Tuning varied between compiles mostly because inductor's benchmark mistimes these short
    kernels: make the first call inside :func:`fpx.nn.cold_cache_tuning` (INT4 at one row on an
    H200: 17.3-17.5 us over 5 compiles against 20.9-26.2); docs/inductor.md has the spreads.

    Why a larger inlining limit (``realize_opcount_threshold`` 30 -> :data:`DECODE_OPCOUNT`):
    inductor writes out an elementwise value of more than 30 operations before its consumer.
    The FP6 and MX decodes and integer codes with zero-points count 31-38 (torch 2.11), so past
    the row limit a half-decoded weight was written out (FP6: int32 codes; MX, zero-points:
    float32 values; 256 MiB at 8192 x 8192) and read back by the rest of the decode, fused into
    the matmul: E3M2, E2M3 and MX E2M1 at 16 and 64 rows took 145-153 us on an H200. With the
    limit at 40, one decode kernel writes the bfloat16 weight for the matmul: 94-101 us. One row
    unchanged (INT4 17.4, INT3 23.2, INT8 22.3, E4M3 19.1, UINT4 18.8, E2M1 21.8, E3M2 29.4,
    E2M3 29.1 us).

    Why the output's loop order (``pick_loop_orders`` off): inductor orders a kernel's loops by
    a vote of its memory accesses. Codes of 3 and 6 bits straddle bytes and are read twice, so
    the decode of W.T iterated its codes' contiguous dim innermost; its write then no longer
    matched the matmul template's read and inductor never tried the fusion ("no shared data"):
    a decode kernel wrote the bfloat16 weight, then the template ran. In the output's order the
    decode fuses into the template. H200, 8192 x 8192: INT3 at 16 rows 99 -> 65.6 us, 64 rows
    77.1; E3M2 and E2M3 at 16 rows 93.9 -> 72.8, 64 rows 94.3 -> 79.1-80.5. Unchanged within
    0.3 us: one row of INT4, INT3, INT8, E4M3, E2M1 and E3M2; 4 and 16 rows of INT4, INT8, E2M1.

    Why no shape padding (``shape_padding`` off): inductor pads a matmul's sizes to multiples
    of 8 where a timed library matmul runs faster padded. For the left route's product (the
    weight's rows by x's rows, :func:`_weight_as_left_operand`) at a row count not a multiple
    of 4, it then copied x into a padded buffer, a third kernel, and the template decoded a
    wider tile. H200 (torch 2.11), E4M3 per channel at 8192 x 8192 on the left, with / without
    padding: 17 rows 47.1-58.5 / 34.6 us (3 / 2 kernels), 21 rows 47.1 / 29.7; 25 and 33 rows
    padded 32.1 and 57.9. The Triton templates take any size (their loads are masked); the
    model's other matmuls lose the padding too.

    Serving at a few rows: compile the whole model as one graph and replay it as a CUDA graph
    (add ``"triton.cudagraphs": True`` to these options, which :func:`cold_cache_tuning`
    supports, or capture one yourself). A compiled call's Python path cost 130-170 us of CPU on
    an H200's host, more than the kernels of Llama 3 8B's MLP at one row (INT4: 47 us).

    >>> import torch, fpx
    >>> model = fpx.quantize_(torch.nn.Sequential(torch.nn.Linear(64, 32)), fpx.INT4, group_size=32)
    >>> compiled = torch.compile(model, options=fpx.nn.compile_options("cpu"))
    """
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device such as 'cuda' or 'cpu', got {device!r}")
    try:
        device_type = torch.device(device).type
    except RuntimeError as error:  # torch's message lists every device type it knows
        raise ValueError(f"device must name a device such as 'cuda' or 'cpu', got {device!r}") from error
    if device_type == "cuda":
        return {
            "max_autotune": True,
            "max_autotune_gemm_backends": "TRITON",
            "coordinate_descent_tuning": True,
            "coordinate_descent_check_all_directions": True,
            "max_epilogue_benchmarked_choices": 4,
            "realize_opcount_threshold": DECODE_OPCOUNT,
            "pick_loop_orders": False,
            "shape_padding": False,
        }
    return {}


# The most (rows x planes) reductions the small-batch forward writes per row instead of sharing
# one reduction among all rows (measured on CPU: 32 of them compile in about 10 s, 128 in 67 s).
ROW_REDUCTIONS = 32


# CPU with bfloat16 x: the weight blocks (codes decoded in uint8 lanes, each block multiplied
# by the library's bfloat16 matmul) overtake the reductions from fewer rows than 16 (2 cores,
# 4096 x 4096, forty-fourth session; the numbers in default_gemv_max_rows's docstring). Not
# the 8-bit floats, whose reductions win up to 12 rows. (Float codes of 8 planes take 4 rows
# on CPU whatever x's dtype: past ROW_REDUCTIONS // 8 rows their reductions decode every
# weight once per row.)
CPU_BFLOAT16_GEMV_MAX_ROWS = 7
CPU_BFLOAT16_FULL_LIMIT_FORMATS = (E4M3, E5M2)


# Per-channel 8-bit codes (their scales on the product, _channel_scale_after_matmul) take the
# matmul template from 3 rows on CUDA where the layer has this many output features or more;
# with 4096 the reductions tied or won (likely the template's 64-column tiles: 64 programs).
# INT8 since its codes convert to bfloat16 in one step (_bytes_as_bfloat16).
CHANNEL_SCALED_TEMPLATE_FORMATS = (E4M3, E5M2, INT8)
CHANNEL_SCALED_TEMPLATE_MIN_OUT_FEATURES = 8192

# E4M3 and E5M2 per channel take the template from 2 rows as well with bfloat16 x where their rows
# are not long (H200, fortieth and forty-second sessions; the numbers in default_gemv_max_rows's
# docstring).
TWO_ROW_TEMPLATE_FORMATS = (E4M3, E5M2)
TWO_ROW_TEMPLATE_MAX_IN_FEATURES = 16384

# Codes whose reductions at 4 rows lose to the matmul template with bfloat16 x and this many
# output features or more (H200, 8192 x 8192 by 128, thirty-eighth session): the 8-plane formats
# (3, 5, 6, 7 bits and INT1: four to six kernels at 4 rows), INT2 and INT8. Not the 4-bit codes
# (INT4, UINT4, E2M1: their reductions win at 4 rows) nor 8-bit floats by groups (unmeasured).
FOUR_ROW_TEMPLATE_FORMATS = (INT1, INT2, INT3, INT5, INT6, INT7, INT8, E3M2, E2M3)
FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES = 8192
# The 8-plane formats among them (and among FLOAT16_FOUR_ROW_TEMPLATE_FORMATS) from this many
# output features (H200, forty-sixth session, 4096 x 4096 and 4096 x 14336: the numbers in
# default_gemv_max_rows's docstring). INT2 and INT8 keep 8192: their reductions win at 4096.
EIGHT_PLANE_FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES = 4096
# And from this many output features where the rows are this short or shorter (H200, forty-seventh
# session: at 2048 x 2048 the template won, at 2048 x 8192 the reductions).
EIGHT_PLANE_FOUR_ROW_SHORT_ROW_MIN_OUT_FEATURES = 2048
EIGHT_PLANE_FOUR_ROW_SHORT_ROW_MAX_IN_FEATURES = 2048

# With float16 x the 8-plane formats (3, 5, 6, 7 bits and INT1) and INT2 do (H200, forty-second
# and forty-third sessions; INT2 loses 3% at 8192 x 8192 and wins 5-11% at 14336 x 4096 and
# 8192 x 28672); INT8 loses there (its one-step int8 -> bfloat16 decode is bfloat16's).
FLOAT16_FOUR_ROW_TEMPLATE_FORMATS = (INT1, INT2, INT3, INT5, INT6, INT7, E3M2, E2M3)

# INT4 and UINT4 by groups join them where the rows are long as well (H200, fortieth and
# forty-second sessions; the numbers in default_gemv_max_rows's docstring). E2M1 ties there: left out.
LONG_ROW_FOUR_ROW_TEMPLATE_FORMATS = (INT4, UINT4)
LONG_ROW_FOUR_ROW_TEMPLATE_MIN_IN_FEATURES = 12288


def default_gemv_max_rows(device_type: str, fmt, static_rows: bool = True, block: str | None = None, *,
                          channel_scales_on_product: bool = False, out_features: int = 0,
                          x_dtype: torch.dtype | None = None, in_features: int = 0) -> int:
    """The most rows of x the compiled forward takes through the small-batch reductions by
    default (more go through the matmul path); ``gemv_max_rows`` overrides it per layer.
    ``channel_scales_on_product``: the layer has one scale per output channel that its matmul
    path multiplies into the product (``group_size == in_features``, no MX block, x in
    bfloat16 or float32); ``out_features``: the layer's N; ``in_features``: its K (0: unknown,
    which keeps the rules that need it off); ``x_dtype``: x's dtype (None: unknown, which keeps
    the rules that need it off).

    - CPU, a static batch of float codes of 3, 5, 6 or 7 bits (E3M2, E2M3): ``ROW_REDUCTIONS
      // 8`` (4), whatever x's dtype. Past that the reductions take all rows in one and decode
      each weight once per row (2 cores, 4096 x 4096, 2026-12-03, weight blocks / reductions
      in ms: float32 x at 6 / 12 rows E3M2 11.5 / 25.8 and 14.1 / 40.0, E2M3 13.2 / 18.4 and
      14.9 / 63.8; float16 x E3M2 13.6 / 26.0 and 13.1 / 38.1, E2M3 11.1 / 18.0 and 23.0 /
      32.0; bfloat16 below).
    - CPU with bfloat16 x and a static batch: ``CPU_BFLOAT16_GEMV_MAX_ROWS`` (7); 16 for
      ``CPU_BFLOAT16_FULL_LIMIT_FORMATS`` (E4M3, E5M2). Measured (2 cores, 4096 x 4096 by 128,
      E4M3 per channel, torch 2.13, 2026-12-03, ``benchmarks/linear.py --gemv-max-rows 4`` against
      16 in consecutive runs), weight blocks / reductions in ms: 6 rows INT4 4.8 / 4.7, INT3 5.4 /
      5.4, INT8 3.0 / 3.4, E2M1 10.3 / 5.7, E3M2 9.3 / 25.5; 8 rows INT4 5.7 / 6.8-10.6, INT3 5.6
      / 6.9-7.2, INT8 3.5 / 4.2-4.7, E2M1 7.4 / 8.1, E4M3 9.3 / 5.1; 12 rows INT4 5.6 / 9.9, INT3
      5.7 / 10.6, INT8 4.3 / 7.6, E2M1 8.6 / 10.4, E3M2 9.2 / 32.5, E4M3 14.6 / 6.6; 16 rows INT4
      6.5 / 13.1, INT3 6.2 / 14.3, INT8 4.1 / 15.0, E2M1 8.0 / 15.4, E4M3 9.3 / 12.6. E3M2 at 4
      rows by the reductions 5.8-8.5. float16 x keeps 16: its blocks multiply in float32
      (:func:`_float16_matmul_in_float32`), and the reductions won at 8 and 12 rows (INT4 6.7 /
      8.0 and 9.5 / 16.6 reductions / blocks, E4M3 4.2 / 9.7 and 6.8 / 12.9, INT3 and E2M1 tied at
      12), the blocks at 16 (INT4 9.3 / 13.4, E4M3 10.6 / 12.2, E2M1 11.6 / 15.3).
    - CPU otherwise (float32 or float16 x, a symbolic batch): 16. Measured (2 cores, 4096 x
      4096, float32, separate runs), reductions against inductor's decode kernel plus a
      library matmul: M = 4: INT4 11.8 / 70.0 ms, INT8 19.1 /
      67.7, E2M1 16.5 / 98.6; M = 16: INT4 40.1 / 67.7, INT8 28.2 / 74.5, E2M1 46.5 / 86.5.
      Against the matmul by weight blocks (2026-11-30, AVX-512 machine, two runs each): M = 8
      reductions faster (INT4 6.3-6.6 / 9.5-9.7 ms, INT8 3.3-3.7 / 7.8-8.3, E2M1 5.9-6.4 /
      13.1-13.2, INT3 6.4-6.9 / 18.2-19.5); M = 16 mixed (INT4 12.7-12.8 / 10.8-11.2, INT8
      13.1-14.4 / 9.2-9.5, E2M1 12.0-13.2 / 14.5-23.1, INT3 12.6-12.9 / 19.5-47.4).
    - CUDA: 4. The limit depends on the layer and the rows alone, not on the tuning block
      around the call: a limit read from :func:`cold_cache_tuning`'s state put a guard on it,
      so a model compiled inside the block recompiled at its first call outside, to the other
      route (E4M3 at 8 rows: the reductions, 87.5 us, where the template takes 25.1). The
      template beats the reductions from 5 rows on an H200 (8192 x 8192, 2026-12-01,
      reductions / template): E4M3 per channel (its scales on the product,
      :func:`_channel_scale_after_matmul`) at M = 8 87.5 / 25.1 us under cold_cache_tuning and
      35.5 in inductor's own tiles, at M = 5 56.7 / 25.8 and 26.1; E5M2 at M = 8 87.3 / 24.1
      and 41.9; MX E2M1 at M = 5 73.2 / 63.9 (both tile sets), M = 8 92.2 / 55.8 and 68.5.
      Measured before, with each weight scaled in the prologue: E4M3 at M = 8 85.8 / 51.4 in
      the narrow tiles, while in an H100's own tiles its decode stayed unfused, 115-123 us at
      4-16 rows: compile E4M3 or E5M2 with per-group scales (or float16 x) inside
      :func:`cold_cache_tuning`. E2M1 on an H200 (in place): reductions 49.8 us at M = 4 and
      107.6 at M = 8, the fused template 60.4 at M = 8.
      Measured on an H100 (torch 2.11, 8192 x 8192, compiled alone with
      :func:`compile_options`): reductions / matmul template at M = 4: INT4 60 / 90 us, INT2
      77 / 89 us, E2M1 58 / 136 us, INT8 57 / 55 us. Formats of 8 planes (3, 5, 6, 7 bits and INT1) stop
      at 4 rows, where one reduction per row and plane (32 of them) still shares each decoded
      weight among the rows (see ``ROW_REDUCTIONS``). A symbolic row count (``dynamic=True``)
      shares one reduction among the rows, which repeats the decode per row: 2 rows (INT4: 50 us
      at M = 2 against the template's 70). On an H200 with integer codes by float bits, INT4
      reductions / template: M = 2 31.9 / 62.5 us, M = 4 48.3 / 59.9 (40.8 at M = 4 since the
      sums are persistent reductions, :func:`_sums_products_in_one_trip`).
    - CUDA, E4M3, E5M2 and INT8 with their per-channel scales on the product and at least
      ``CHANNEL_SCALED_TEMPLATE_MIN_OUT_FEATURES`` output features: 2, the template from 3
      rows. Measured on an H200 (torch 2.11, bf16 x, 2026-12-01, each set compiled alone),
      reductions / template in us: 8192 x 8192 E4M3 M = 2 30.3 / 28.8, M = 3 42.7 / 26.5,
      M = 4 43.7 / 26.8; E5M2 M = 2 28.6 / 48.4 (a poor tile draw), M = 3 46.4 / 31.5, M = 4
      47.4 / 33.2; 14336 x 4096 E4M3 M = 3 35.9 / 21.0, M = 4 42.9 / 20.9. With 4096
      output features the reductions tie or win (4096 x 4096 M = 3 12.6 / 13.8, M = 4 13.8 /
      14.1; 4096 x 14336 M = 3 34.1 / 39.5, M = 4 40.7 / 39.8). INT8 per channel at 8192 x
      8192, reductions 28.6 / 36.7 / 43.7 us at M = 2 / 3 / 4; its template 30.3 / 31.9 / 27.7
      with the codes converted to bfloat16 through int8 (:func:`dequantize_packed`,
      2026-12-01), 40.8 / 34.9 / 34.9 through float32 (so INT8 kept 4 until then). INT8 with
      float32 x and at other shapes follows E4M3's rule, unmeasured.
    - CUDA, ``FOUR_ROW_TEMPLATE_FORMATS`` (INT1-3, INT5-8, E3M2, E2M3) without an MX block,
      bfloat16 x and at least ``FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES`` output features: 3, the
      template from 4 rows. Measured on an H200 (torch 2.11, by 128, 2026-12-02, every case of
      a route side by side in one grid), reductions / template in us, 8192 x 8192 at M = 4:
      INT8 46.5 / 41.5, INT3 64.4 / 54.5, INT2 51.7 / 50.9, INT1 64.0 / 48.0, E3M2 75.4 / 62.1,
      E2M3 75.8 / 61.6; at M = 3 the reductions win (INT8 32.2 / 45.5, INT3 46.9 / 55.4, INT2
      41.8 / 46.3, E3M2 47.5 / 62.1) or tie (INT1 49.5 / 48.4). At M = 4 INT8 and INT2 at 8192
      x 28672 186.3 / 142.6 and 174.2 / 158.2, 14336 x 4096 33.8 / 32.8 and 46.1 / 39.6; with
      4096 output features the reductions win (4096 x 4096 12.1 / 15.5 and 14.9 / 15.5, 4096 x
      14336 49.7 / 52.0 and 45.9 / 53.5). The 4-bit codes keep 4: INT4 39.7 / 52.0, UINT4
      41.7 / 47.0, E2M1 39.7 / 54.4 at 8192 x 8192. INT5-7 as their 8-plane siblings,
      unmeasured.
    - CUDA, ``FLOAT16_FOUR_ROW_TEMPLATE_FORMATS`` (INT1, INT3, INT5-7, E3M2, E2M3: the 8-plane
      formats; and INT2) without an MX block, float16 x and at least
      ``FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES`` output features: 3, the template from 4 rows.
      Measured on an H200 (torch 2.11, by 128, 2026-12-03, each route's cases side by side in
      one grid, the routes in both orders), reductions / template at M = 4 in us: 8192 x 8192
      INT3 60.1 and 60.2 / 55.5 and 55.6, E3M2 76.8 and 76.5 / 62.5 and 64.8, INT1 67.7 / 51.5;
      14336 x 4096 INT3 70.8 / 47.8, E3M2 90.0 / 55.2, INT1 89.0 / 41.7; 8192 x 28672 INT3
      199.2 / 182.5, E3M2 237.9 / 202.2. INT2 loses 3% at 8192 x 8192 (49.3 and 49.3 / 50.9
      and 51.8) and wins elsewhere (14336 x 4096 45.4 and 44.6 / 40.1 and 40.2, 8192 x 28672
      165.3 and 165.5 / 156.8 and 158.2). With float16 x the others keep the reductions: INT8
      42.1 / 47.6 (its template decode is bfloat16's one-step conversion only with bfloat16
      x), INT4 36.7 / 50.1. INT5-7 and E2M3 as their 8-plane siblings, unmeasured.
    - CUDA, the 8-plane formats of both lists above (INT1, INT3, INT5-7, E3M2, E2M3) without
      an MX block, with bfloat16 or float16 x, from
      ``EIGHT_PLANE_FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES`` (4096) output features: 3 as well.
      Measured on an H200 (torch 2.11, by 128, 2026-12-03, each route's cases side by
      side in one grid; the sum over a plane's segments a reduction since
      :func:`_halves_short_segment_sums`), reductions / template in us, bfloat16 x at M = 4:
      4096 x 4096 INT3 23.2 / 20.0, E3M2 28.2 / 21.8, INT1 26.7 / 17.5; 4096 x 14336 INT3
      60.3 / 62.9 (the one loss, 4%), E3M2 75.5 / 69.5, INT1 62.7 / 56.2. float16 x, 4096 x
      4096: INT3 22.2 / 20.1, E3M2 27.2 / 22.1, INT1 24.4 / 17.5. At M = 3 the reductions win
      (bfloat16 x, 4096 x 4096: INT3 17.3 / 19.8, E3M2 16.4 / 22.7; 4096 x 14336 43.8 / 61.2,
      47.1 / 69.6), and INT1 splits (20.9 / 17.4; 46.4 / 54.7): 3 rows stay with the
      reductions.
    - CUDA, the same 8-plane formats and x dtypes from
      ``EIGHT_PLANE_FOUR_ROW_SHORT_ROW_MIN_OUT_FEATURES`` (2048) output features where the
      layer has 1 to ``EIGHT_PLANE_FOUR_ROW_SHORT_ROW_MAX_IN_FEATURES`` (2048) input features:
      3 as well. Measured on an H200 (torch 2.11, by 128, 2026-12-04, bfloat16 x, each route's
      cases side by side in one grid), reductions / template at M = 4 in us: 2048 x 2048 INT3
      10.5 / 9.2, E3M2 15.0 / 11.6, INT1 14.8 / 8.6; with longer rows the reductions win,
      2048 x 8192 INT3 23.6 / 32.1, E3M2 29.5 / 36.7, INT1 25.8 / 28.2. Inductor's
      ``max_fusion_size`` at 128 (default 64) changed neither the reductions' kernels (4, 6,
      6) nor their times (10.9, 14.9, 13.5 at 2048 x 2048). float16 x follows bfloat16 here,
      as it did at 4096 x 4096; fewer output features are unmeasured and keep 4.
    - CUDA, ``LONG_ROW_FOUR_ROW_TEMPLATE_FORMATS`` (INT4, UINT4) by groups (no MX block, no
      per-channel scales on the product), bfloat16 x, at least
      ``FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES`` output and
      ``LONG_ROW_FOUR_ROW_TEMPLATE_MIN_IN_FEATURES`` (12288) input features: 3, the template
      from 4 rows. Measured on an H200 (torch 2.11, by 128, 2026-12-03, each route's cases side
      by side in one grid), reductions / template at M = 4 in us: INT4 8192 x 12288 77.1 / 73.8
      and 77.6 / 74.7 (two grids), 8192 x 14336 90.2 / 84.5, 8192 x 16384 102.3 / 90.7, 8192 x
      22016 136.4 / 131.4, 8192 x 28672 178.1 / 160.1 (153.8 in an earlier grid); UINT4 8192 x
      12288 80.2 / 69.9 and 80.7 / 74.9, 8192 x 14336 93.1 / 82.7, 8192 x 28672 180.5 / 164.6.
      Shorter rows keep the reductions: INT4 8192 x 8192 39.7 / 52.0, 8192 x 11008 70.0 / 78.9,
      28672 x 8192 133.6 / 139.7, 14336 x 4096 34.1 / 39.9; UINT4 8192 x 11008 73.2 / 75.6 and
      72.2 / 74.6. E2M1 ties (8192 x 14336 92.3 / 91.9, 8192 x 28672 181.2 / 182.1) and keeps
      them.
    - CUDA, ``TWO_ROW_TEMPLATE_FORMATS`` (E4M3, E5M2) with their per-channel scales on the
      product, bfloat16 x, at least ``CHANNEL_SCALED_TEMPLATE_MIN_OUT_FEATURES`` output features
      and 1 to ``TWO_ROW_TEMPLATE_MAX_IN_FEATURES`` (16384) input features: 1, the template from
      2 rows. Measured on an H200 (2026-12-03, same method), reductions / template at M = 2:
      E4M3 14336 x 4096 27.1 / 21.7 us, 8192 x 8192 30.9 / 27.4 and 30.3 / 29.4 (two grids),
      8192 x 14336 50.9 / 48.2; E5M2 14336 x 4096 30.7 / 24.8 and 31.0 / 27.0 (two grids), 8192
      x 8192 28.6 / 28.3 and 28.5 / 28.4, 8192 x 14336 47.9 / 46.7 and 47.6 / 45.3. With longer
      rows the two routes trade places from grid to grid (E4M3 8192 x 20480 61.7 / 65.9, 8192 x
      22016 76.2 / 68.8, 8192 x 28672 83.9 / 86.3): the reductions kept there. INT8 ties or
      loses (8192 x 8192 28.3 / 28.2, 8192 x 28672 82.6 / 87.1).

    >>> import fpx
    >>> [fpx.nn.default_gemv_max_rows("cuda", f) for f in (fpx.INT4, fpx.E2M1, fpx.E3M2, fpx.E4M3)]
    [4, 4, 4, 4]
    >>> fpx.nn.default_gemv_max_rows("cuda", fpx.E4M3, channel_scales_on_product=True, out_features=8192)
    2
    >>> fpx.nn.default_gemv_max_rows("cuda", fpx.E4M3, channel_scales_on_product=True, out_features=8192,
    ...                              in_features=8192, x_dtype=torch.bfloat16)
    1
    >>> fpx.nn.default_gemv_max_rows("cuda", fpx.E2M1, block="mx")
    4
    >>> fpx.nn.default_gemv_max_rows("cuda", fpx.INT2, out_features=8192, x_dtype=torch.bfloat16)
    3
    >>> [fpx.nn.default_gemv_max_rows("cuda", f, out_features=4096, x_dtype=torch.float16) for f in (fpx.INT3, fpx.INT2)]
    [3, 4]
    >>> fpx.nn.default_gemv_max_rows("cuda", fpx.INT4, out_features=8192, in_features=28672, x_dtype=torch.bfloat16)
    3
    >>> fpx.nn.default_gemv_max_rows("cuda", fpx.E2M1, static_rows=False)
    2
    >>> [fpx.nn.default_gemv_max_rows("cpu", f, x_dtype=torch.bfloat16) for f in (fpx.INT4, fpx.E4M3, fpx.E3M2)]
    [7, 16, 4]
    """
    if not isinstance(device_type, str) or ":" in device_type:
        raise ValueError(f"device_type must be a device type such as 'cuda' or 'cpu' (no index), got {device_type!r}")
    _check_format(fmt)
    for name, features in (("out_features", out_features), ("in_features", in_features)):
        if not _is_int(features) or features < 0:
            raise ValueError(f"{name} must be a non-negative int, got {features!r}")
    if x_dtype is not None and not isinstance(x_dtype, torch.dtype):
        raise TypeError(f"x_dtype must be a torch.dtype or None, got {x_dtype!r}")
    if device_type != "cuda":
        if not static_rows:
            return 16
        if isinstance(fmt, FloatFormat) and planar_group(fmt.bits) == 8:
            return ROW_REDUCTIONS // 8
        if x_dtype == torch.bfloat16 and fmt not in CPU_BFLOAT16_FULL_LIMIT_FORMATS:
            return CPU_BFLOAT16_GEMV_MAX_ROWS
        return 16
    if not static_rows:
        return 2
    if (channel_scales_on_product and fmt in CHANNEL_SCALED_TEMPLATE_FORMATS
            and out_features >= CHANNEL_SCALED_TEMPLATE_MIN_OUT_FEATURES):
        if fmt in TWO_ROW_TEMPLATE_FORMATS and x_dtype == torch.bfloat16 and 0 < in_features <= TWO_ROW_TEMPLATE_MAX_IN_FEATURES:
            return 1
        return 2
    if block is None:
        four_row_formats = {torch.bfloat16: FOUR_ROW_TEMPLATE_FORMATS,
                            torch.float16: FLOAT16_FOUR_ROW_TEMPLATE_FORMATS}.get(x_dtype, ())
        if planar_group(fmt.bits) != 8:
            least_out_features = FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES
        elif 0 < in_features <= EIGHT_PLANE_FOUR_ROW_SHORT_ROW_MAX_IN_FEATURES:
            least_out_features = EIGHT_PLANE_FOUR_ROW_SHORT_ROW_MIN_OUT_FEATURES
        else:
            least_out_features = EIGHT_PLANE_FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES
        if fmt in four_row_formats and out_features >= least_out_features:
            return 3
        if (x_dtype == torch.bfloat16 and fmt in LONG_ROW_FOUR_ROW_TEMPLATE_FORMATS and not channel_scales_on_product
                and out_features >= FOUR_ROW_TEMPLATE_MIN_OUT_FEATURES
                and in_features >= LONG_ROW_FOUR_ROW_TEMPLATE_MIN_IN_FEATURES):
            return 3
    # 4 for every other format: at most ROW_REDUCTIONS // planar_group(bits) for formats of 8 planes
    return 4


# Fewest elements of a reduction that inductor keeps a reduction on CUDA
# (``unroll_reductions_threshold``, 8): fewer it unrolls into pointwise additions.
SUMMED_SEGMENTS_MIN = 8


def _halves_short_segment_sums(device: torch.device) -> bool:
    """Whether :meth:`LowBitLinear._gemv` halves its segments while a plane has 2 to 7 of them
    (:func:`_segment_for_summed_segments`): on CUDA.

    Why: inductor unrolls a reduction of fewer than 8 elements into pointwise additions, and
    the sum over a plane's segments then read each plane's dot products from buffers of their
    own. The 8-plane codes (INT3, E3M2, INT1) with 4096 input features in groups of 128 have 4
    segments per plane. H200 (torch 2.11), float16 x, 4096 x 4096, 4 segments -> 8, us: INT3
    at 2 rows 20.3 (7 kernels) -> 9.9 (2), at 4 rows 33.9 (13) -> 23.0 (4); E3M2 at 2 rows
    22.4 -> 14.4, at 4 rows 46.7 (15) -> 24.7 (6); INT1 at 2 rows 21.6 -> 10.9. On CPU,
    inductor's ``unroll_reductions_threshold`` at 1 (the same effect) made INT3 at 4 rows
    slower (2.5 -> 3.2-3.5 ms): there every loop nest is one C++ function either way."""
    return device.type == "cuda"


def _segment_for_summed_segments(segment: int, segments: int) -> int:
    """``segment`` halved while the sum over a plane's ``segments`` has 2 to 7 elements
    (:data:`SUMMED_SEGMENTS_MIN`) and the segment's length is even. One segment (a group per
    plane, or per channel) is no sum and stays.

    >>> _segment_for_summed_segments(128, 4), _segment_for_summed_segments(128, 2), _segment_for_summed_segments(128, 1)
    (64, 32, 128)
    """
    while 1 < segments < SUMMED_SEGMENTS_MIN and segment % 2 == 0:
        segment, segments = segment // 2, segments * 2
    return segment


def planar_group(bits: int) -> int:
    """G: how many values one planar group holds (8 div bits, or 8 for 3/5/6/7 bits).

    >>> [planar_group(bits) for bits in range(1, 9)]
    [8, 4, 8, 2, 8, 8, 8, 1]
    """
    if not _is_int(bits) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an int from 1 to 8, got {bits!r}")
    return 8 // bits if 8 % bits == 0 else 8


def _format_name(fmt) -> str:
    return fmt.name


def _format_fields(fmt) -> str:
    """What decides a format's values, as a string for a state dict: a name does not (a
    ``FloatFormat`` may be given any name, and ``fpx.exmy(4, 3)``, no NaN, was named E4M3 as
    ``fpx.E4M3``, NaN at 0x7F, until its name told them apart).

    >>> import fpx
    >>> _format_fields(fpx.E4M3), _format_fields(fpx.exmy(4, 3)), _format_fields(fpx.UINT4)
    ('E4M3 bias 7 fn', 'E4M3 bias 7 finite', 'UINT4')
    """
    if isinstance(fmt, FloatFormat):
        return f"E{fmt.exponent_bits}M{fmt.mantissa_bits} bias {fmt.bias} {fmt.special}"
    return f"{'INT' if fmt.signed else 'UINT'}{fmt.bits}"


class LowBitLinear(nn.Module):
    """``y = x @ W.T + b`` with W stored as packed low-bit codes and scales (weight-only quantization).

    Build it with :meth:`from_linear` (or :func:`quantize_` for a whole model). Formats:

    - integer: ``INT1..INT8`` (symmetric) and ``UINT1..UINT8`` (asymmetric, uint8 zero-points),
      one scale per ``group_size`` consecutive input features (32, 64, 128, ...), or per output
      channel with ``group_size=None``;
    - float: ``E4M3, E5M2, E3M2, E2M3, E2M1`` (any signed ``FloatFormat``) with per-channel,
      per-group, or MX scales (``block="mx"``: E8M0 power-of-two scales per 32 features,
      stored as one byte each).

    Activations may be float32, bfloat16 or float16 with any leading batch dims; the output
    has x's dtype. Scales are stored in ``scale_dtype`` (bf16, fp16 or fp32); ``.to(dtype)``
    converts scales and bias, never the codes. The state dict holds ``packed`` (uint8),
    ``scale``, ``zero_point`` (UINT formats), ``bias`` and the format (its name and fields:
    exponent and mantissa bits, bias, special values)/shape/group size as extra state; loading
    a state dict made for another format, shape or group size raises ValueError, also for a
    format of the same bits and other values (``fpx.exmy(4, 3)`` has no NaN, ``fpx.E4M3`` has);
    the format is matched by its fields, not its name.

    Constraints (ValueError otherwise): ``in_features`` a multiple of 8 and of ``group_size``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        fmt,
        *,
        group_size: int | None = 128,
        block: str | None = None,
        bias: bool = True,
        scale_dtype: torch.dtype = torch.bfloat16,
        device=None,
        gemv_max_rows: int | None = None,
    ):
        super().__init__()
        _check_config(in_features, out_features, fmt, group_size, block, scale_dtype)
        if gemv_max_rows is not None and (not _is_int(gemv_max_rows) or gemv_max_rows < 0):
            raise ValueError(f"gemv_max_rows must be None or a non-negative int, got {gemv_max_rows!r}")
        if block == "mx":
            group_size = 32 if group_size is None else group_size
        self.in_features = in_features
        self.out_features = out_features
        self.fmt = fmt
        self.group_size = in_features if group_size is None else group_size
        self.per_channel = group_size is None
        self.block = block
        self.gemv_max_rows = gemv_max_rows
        bits, g = fmt.bits, planar_group(fmt.bits)
        groups = in_features // self.group_size
        packed_rows = bitpack.packed_size(g, bits)
        self.register_buffer("packed", torch.zeros(out_features, packed_rows, in_features // g, dtype=torch.uint8, device=device))
        scale_storage = torch.uint8 if block == "mx" else scale_dtype  # MX: E8M0 codes
        self.register_buffer("scale", torch.ones(out_features, groups, dtype=scale_storage, device=device))
        has_zero_point = isinstance(fmt, IntFormat) and not fmt.signed
        self.register_buffer(
            "zero_point", torch.zeros(out_features, groups, dtype=torch.uint8, device=device) if has_zero_point else None
        )
        self.register_buffer("bias", torch.zeros(out_features, dtype=scale_dtype, device=device) if bias else None)
        # Values of the 2**bits float codes as float32 bit patterns: an integer buffer, so
        # .to(dtype) leaves it exact. Derived from fmt, hence not part of the state dict.
        table = None
        if isinstance(fmt, FloatFormat):
            table = decode(torch.arange(2**bits, dtype=torch.uint8, device=device), fmt).view(torch.int32)
        self.register_buffer("code_table", table, persistent=False)
        # The XOR pattern of _int_field_values for each byte plane (2^23's exponent, and the
        # field's sign bit for signed codes) as data (see _patterns_from_buffer_pays_off):
        # loaded, it sits in a register and the XOR merges into the mask's LOP3.
        patterns = None
        if isinstance(fmt, IntFormat) and bits in (1, 2, 4):  # the codes _gemv takes in place
            patterns = [_int_field_pattern(bits, fmt.signed, bits * q) for q in range(g)]
            patterns = torch.tensor(patterns, dtype=torch.int32, device=device)
        self.register_buffer("field_patterns", patterns, persistent=False)

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        fmt,
        *,
        group_size: int | None = 128,
        block: str | None = None,
        scale_dtype: torch.dtype | None = None,
        clip_search: bool | int = False,
        gemv_max_rows: int | None = None,
    ) -> "LowBitLinear":
        """Quantize an ``nn.Linear``'s weight with :func:`fpx.quantize` (along in_features).

        ``scale_dtype`` defaults to the linear's dtype when it is bf16/fp16/fp32. ``block="mx"``
        gives OCP MX scales (float formats; ``group_size`` defaults to 32 then).
        ``clip_search`` is passed to :func:`fpx.quantize` (MSE-optimal clipping per group).
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        weight = linear.weight.detach()
        if scale_dtype is None:
            scale_dtype = weight.dtype if weight.dtype in SCALE_DTYPES else torch.float32
        if block == "mx" and group_size == 128:
            group_size = 32  # the MX block size; 128 is only the integer default
        layer = cls(
            linear.in_features, linear.out_features, fmt, group_size=group_size, block=block,
            bias=linear.bias is not None, scale_dtype=scale_dtype, device=weight.device, gemv_max_rows=gemv_max_rows,
        )
        q = quantize(weight.float(), fmt, axis=-1, group_size=group_size, block=block, clip_search=clip_search)
        layer.load_quantized(q)
        if linear.bias is not None:
            layer.bias = linear.bias.detach().to(scale_dtype).clone()
        return layer

    def load_quantized(self, q) -> None:
        """Store a :class:`fpx.QuantizedTensor` of the weight (shape (N, K), axis -1)."""
        if tuple(q.shape) != (self.out_features, self.in_features) or q.axis != 1 or q.fmt != self.fmt:
            raise ValueError(
                f"expected a quantized ({self.out_features}, {self.in_features}) weight in {self.fmt!r} along "
                f"axis 1, got shape {tuple(q.shape)}, axis {q.axis}, fmt {q.fmt!r}"
            )
        n, k, bits, g = self.out_features, self.in_features, self.fmt.bits, planar_group(self.fmt.bits)
        codes = q.codes.view(n, g, k // g)
        self.packed.copy_(bitpack.pack(codes, bits, dim=1, signed=self._signed_codes, check=False))
        scale = q.scale.reshape(n, -1)
        self.scale.copy_(q.scale_codes.reshape(n, -1) if self.block == "mx" else scale.to(self.scale.dtype))
        if self.zero_point is not None:
            self.zero_point.copy_(q.zero_point.reshape(n, -1))

    # ---- the weight -----------------------------------------------------------------------------
    @property
    def _signed_codes(self) -> bool:
        return isinstance(self.fmt, IntFormat) and self.fmt.signed

    def _weight_tensors(self) -> tuple:
        """The tensors the weight is computed from (None where the format has none)."""
        return self.packed, self.scale, self.zero_point, self.code_table

    def dequantize_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dequantized weight, shape (out_features, in_features), in ``dtype``."""
        weight = dequantize_packed(*self._weight_tensors(), fmt=self.fmt, group_size=self.group_size, block=self.block)
        return weight.to(dtype)

    @property
    def weight_nbytes(self) -> int:
        """Bytes of packed codes, scales and zero-points (bias not included)."""
        tensors = [self.packed, self.scale] + ([self.zero_point] if self.zero_point is not None else [])
        return sum(t.numel() * t.element_size() for t in tensors)

    # ---- forward --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            _check_input(x, self.in_features)
            return F.linear(x, self.dequantize_weight(x.dtype), self._bias(x.dtype))
        rows = x.numel() // self.in_features
        limit = self.gemv_max_rows
        scale_after = self._channel_scales_on_product(x)
        if limit is None:
            limit = default_gemv_max_rows(x.device.type, self.fmt, static_rows=isinstance(rows, int), block=self.block,
                                          channel_scales_on_product=scale_after, out_features=self.out_features,
                                          in_features=self.in_features, x_dtype=x.dtype)
        if rows <= limit:
            out = self._gemv(x.reshape(-1, self.in_features), bias=self.bias)
            return out.reshape(*x.shape[:-1], self.out_features)
        x2d = x.reshape(-1, self.in_features)
        if _matmul_by_weight_blocks(x.device):
            out = self._matmul_by_weight_blocks(x2d, self._bias(x.dtype))
            return out.reshape(*x.shape[:-1], self.out_features)
        planes_on_the_left = scale_after and self._products_by_plane(x.device, rows, left=True)
        if planes_on_the_left or scale_after and _weight_as_left_operand(x.device, self.fmt, rows, self.out_features):
            # (W x^T)^T: the decoded weight is the matmul's left operand, x's rows its columns.
            # Split in S chunks of K (see _splits_k_on_the_left): W as (S N, K/S) and x as (M S,
            # K/S), a view. Written out contiguous (M, N), as F.linear's is: a transposed view
            # would break a caller's .view() of the output.
            if planes_on_the_left:
                splits = 1
                product = self._plane_products(x2d, left=True)
            else:
                splits = 2 if _splits_k_on_the_left(x.device, self.fmt, rows, self.out_features) else 1
                chunks = x2d.reshape(-1, self.in_features // splits)
                product = (self._matmul_weight(x.dtype, scaled=False, left=True, splits=splits) @ chunks.t()).t()
            out = self._chunk_products_summed_and_scaled(product, splits, True, x.dtype).contiguous()
        else:
            # Split in S chunks of K (see _splits_k_on_the_right): x as (M S, K/S), a view, times
            # W.T as (K/S, S N).
            in_decode = not scale_after
            splits = 2 if _splits_k_on_the_right(x.device, self.fmt, rows, self.out_features, self.in_features, in_decode) else 1
            if scale_after and splits == 1 and self._products_by_plane(x.device, rows, left=False):
                product = self._plane_products(x2d, left=False)
            else:
                product = x2d.reshape(-1, self.in_features // splits) @ self._matmul_weight(x.dtype, scaled=in_decode, splits=splits)
            out = self._chunk_products_summed_and_scaled(product, splits, scale_after, x.dtype)
        out = out.reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias.to(x.dtype)

    def _channel_scales_on_product(self, x: torch.Tensor) -> bool:
        """Whether the matmul path multiplies one scale per output channel (a group as long as
        a row, not MX's E8M0 codes) into the product's columns, where the choice says so: the
        decoded codes are exact in bfloat16 and float32 (at most 8 significant bits), and
        float16's range could not hold an unscaled product."""
        return (self.group_size == self.in_features and self.block is None
                and x.dtype in (torch.bfloat16, torch.float32) and _channel_scale_after_matmul(x.device))

    def _chunk_products_summed_and_scaled(self, product, splits: int, scale_after: bool, dtype) -> torch.Tensor:
        """x W^T (M, N) in ``dtype`` from the (M S, S N) product of x's and W's K chunks, whose
        element [m S + s', s N + n] is chunk s' of x's row m by chunk s of W's row n: the S
        diagonal blocks s = s' summed in float32, then, with ``scale_after``, each column times
        its channel's scale. Unsplit and unscaled, the product itself."""
        if splits == 1 and not scale_after:
            return product
        out = product.float()
        if splits > 1:
            out = out.view(-1, splits, splits, self.out_features).diagonal(dim1=1, dim2=2).sum(-1)
        if scale_after:
            out = out * self.scale.float().reshape(-1)
        return out.to(dtype)

    def _matmul_by_weight_blocks(self, x2d: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x2d @ W.T (+ bias) with W decoded a block of output rows at a time, each block's
        product a library matmul of x2d by the block (its transposed view: no transposing
        copy), written by inductor straight into its columns of the output, bias included.

        Why blocks: the decoded weight is a fresh buffer, and on CPU a large fresh buffer is
        fresh pages, faulted in at its first write on every call (glibc returns large blocks
        to the system when freed); inductor reuses one block's buffer for the next, so only
        the first block pays. At most :data:`WEIGHT_BLOCKS` blocks: each is a kernel of its
        own to compile. Measured: the module function of the same name, which routes here.
        """
        n = self.out_features
        rows = -(-n // WEIGHT_BLOCKS)
        packed, scale, zero_point, code_table = self._weight_tensors()
        dtype = torch.float32 if _float16_matmul_in_float32(x2d.device, x2d.dtype) else x2d.dtype
        x2d_in_dtype = x2d.to(dtype)
        if dtype == torch.float32 and scale.dtype.itemsize == 2:
            # The scales in float32 first, a small buffer of their own: a 16-bit load would make
            # each block's decode kernel 32 lanes wide (see _codes_in_uint8_lanes).
            scale = _inductor_buffer(scale.float())
        outs = []
        for start in range(0, n, rows):
            block = slice(start, start + rows)
            w = dequantize_packed(
                packed[block], scale[block], None if zero_point is None else zero_point[block], code_table,
                fmt=self.fmt, group_size=self.group_size, block=self.block, table=False, out_dtype=dtype,
            )
            w = w.t()
            outs.append(x2d_in_dtype @ w if bias is None else torch.addmm(bias[block].to(dtype), x2d_in_dtype, w))
        return torch.cat(outs, -1).to(x2d.dtype)

    def _matmul_weight(self, dtype: torch.dtype, scaled: bool = True, left: bool = False, splits: int = 1) -> torch.Tensor:
        """The compiled matmul's weight operand in ``dtype``, as its prologue: W.T (K, N) for
        ``x @ W.T``, or with ``left=True`` W itself (N, K) for ``W @ x.T`` (see
        :func:`_weight_as_left_operand`), its K split in ``splits`` chunks stacked as rows,
        (S N, K/S) with row s N + n = W[n, s K/S : (s+1) K/S] (see
        :func:`_splits_k_on_the_left`), or on the right their transpose (K/S, S N) (see
        :func:`_splits_k_on_the_right`); ``scaled=False``: without the scales (see
        :func:`_channel_scale_after_matmul`).

        Computed directly in the layout the matmul template reads, and wrapped in
        torch's InvokeQuant marker, inductor can fuse the decode into a Triton matmul template
        (``max_autotune``) instead of writing the dequantized weight out first. Without
        max-autotune it is one decode kernel plus a library matmul.
        """
        fmt, group_size, block = self.fmt, self.group_size, self.block
        packed, scale, zero_point, code_table = self._weight_tensors()
        tensors = (packed, scale if scaled else None, zero_point, code_table)
        present = [t for t in tensors if t is not None]
        slots = [t is not None for t in tensors]
        in_dtype = _decodes_in_x_dtype(packed.device) and _decode_in_x_dtype_applies(
            dtype, fmt, scale.dtype if scaled else None
        )
        decode_dtype = dtype if in_dtype else torch.float32

        def decode(*tensors):
            it = iter(tensors)
            args = [next(it) if slot else None for slot in slots]
            w = dequantize_packed(*args, fmt=fmt, group_size=group_size, block=block, table=False,
                                  dtype=decode_dtype, splits=splits).to(dtype)
            return w if left else w.t().contiguous()

        return _marked_decode(decode, present, low_precision=in_dtype)

    def _products_by_plane(self, device: torch.device, rows, left: bool) -> bool:
        """Whether the compiled matmul path computes this layer's unscaled product at ``rows``
        rows of x, on the route ``left`` says, as one product per plane of its packed bytes
        (:meth:`_plane_products`): codes of :data:`PLANE_PRODUCT_FORMATS` (their per-channel
        scales on the product, which the caller checks); on the right in the rows of
        :data:`PLANE_PRODUCTS_RIGHT_ROWS` and from :data:`PLANE_PRODUCTS_MIN_OUT_FEATURES`, on
        the left in the rows of :data:`PLANE_PRODUCTS_LEFT_ROWS` and from the left route's
        least output features (:data:`LEFT_OPERAND_MIN_OUT_FEATURES`), where the caller then
        takes the left route, unsplit, below that route's own rows; on CUDA, and only where
        inductor keeps the planes' decodes apart, which it does inside :func:`cold_cache_tuning`
        (:func:`fpx.tuning.marked_decodes_kept_apart`), asked while the layer is traced (no
        guard: a model compiled inside the block keeps its graph outside it)."""
        if left:
            windows, least_features = PLANE_PRODUCTS_LEFT_ROWS, LEFT_OPERAND_MIN_OUT_FEATURES.get(self.fmt, 0)
        else:
            windows, least_features = PLANE_PRODUCTS_RIGHT_ROWS, PLANE_PRODUCTS_MIN_OUT_FEATURES
        least, most = windows.get(self.fmt, (1, 0))  # formats not listed: an empty window
        shape_takes_it = least <= rows and (most is None or rows <= most) and self.out_features >= least_features
        return (shape_takes_it and self.fmt in PLANE_PRODUCT_FORMATS and self.zero_point is None
                and self.block is None and _plane_decodes_kept_apart(device))

    def _plane_products(self, x2d: torch.Tensor, left: bool) -> torch.Tensor:
        """x2d @ W.T, unscaled (the weights without their scales, in x's dtype), as one product
        per plane of the planar bytes: for codes of 1, 2 or 4 bits (signed integers, or E2M1's
        float codes), byte j of row n holds W[n, p K/G + j] in its field p (bits p b to (p+1) b
        - 1), p < G = 8 / b. For INT4 and E2M1, the low and high nibbles:

            x @ W.T = x[:, :K/2] @ low.T + x[:, K/2:] @ high.T

        each product after the first an ``addmm`` onto the sum so far. ``left``: as
        :func:`_weight_as_left_operand`, ``(low @ x[:, :K/2].T + high @ x[:, K/2:].T).T``, a
        transposed view. Each plane is decoded by its own marked decode
        (:meth:`_plane_weight`), fused as its own template's prologue.

        Why: in the one-product decode the field is chosen by k (INT4: a shift of 4 (k //
        (K/2))), an index that varies along the template's K loop; the decoded tile then goes
        through shared memory every K step and the shift costs instructions (offline, 16 x 16
        x 128, 2 warps: 8.66 instructions per weight against 6.50 for one plane). A plane's
        shift is a constant. Measured on an H200 (torch 2.11, per-channel INT4, bf16 x, 8192 x
        8192 unless said, each set compiled alone under cold_cache_tuning, 2026-12-02), one
        product / planes, us:

        - The layer (``benchmarks/linear.py --group-size 0``): 5 rows 32.5 (planes), 8 rows
          27.9-28.2 (1.19-1.21x bf16 ``F.linear``), 12 rows 28.7, 16 rows 28.0 (1.22x), 20
          rows 39.4; on the left 17 rows 35.0, 18 and 22 rows 34.4-34.5, 24 rows 34.3, 32 rows
          34.3 (1.02x), 64 rows 39.8-40.0 (0.95x), 128 rows 48.5 (0.79x). INT2 (4 planes): 8
          rows 44.6 / 36.2, 16 rows 44.9 / 34.5, 32 rows 48.9 / 50.6 on the right and 40.8 on
          the left, 64 rows 50.5 / 46.8 (left). E2M1 (each nibble placed in bfloat16 by its
          bits): 8 rows 46.6 / 33.5, 16 rows 48.8 / 35.8, 64 rows 61.9 / 46.5 (left). INT1 (8
          planes) at 16 rows 40.5 / 46.6, not taken. The tables:
          :data:`PLANE_PRODUCTS_RIGHT_ROWS`, :data:`PLANE_PRODUCTS_LEFT_ROWS`.
        - ``benchmarks/probe_plane_products.py`` against the one-product layer: right (``x @
          W.T``) 5 rows 42.1 / 32.2, 8 rows 41.0 / 28.2, 16 rows 40.4-40.7 / 28.0, 32 rows 47.0
          / 44.8, 64 rows 51.6 / 51.6, 128 rows 56.3 / 65.2; 16 rows at 14336 x 4096 35.2 /
          26.4, at 4096 x 14336 40.5 / 37.3; left 32 rows 46.4 / 34.2, 64 rows 51.4 / 38.7, 128
          rows 56.4 / 48.3 (16 rows 32.8, where the right takes 28.0). Codes by groups of 128
          (a scale per weight in each decode): 16 rows 44.2 / 48.7, 64 rows 54.3 / 55.9, not
          taken.
        """
        bits = self.fmt.bits
        planes = planar_group(bits)
        width = self.in_features // planes
        product = None
        for plane in range(planes):
            weight = self._plane_weight(x2d.dtype, plane, left)
            chunk = x2d[:, plane * width:(plane + 1) * width]
            a, b = (weight, chunk.t()) if left else (chunk, weight)
            product = a @ b if product is None else torch.addmm(product, a, b)
        return product.t() if left else product

    def _plane_weight(self, dtype: torch.dtype, plane: int, left: bool) -> torch.Tensor:
        """The unscaled weights of field ``plane`` of the packed bytes (INT4 and E2M1: 0 the
        low nibble, 1 the high; the code's value, INT1's 2 c + 1) in ``dtype``: (N, K/G), or its
        transpose (K/G, N) contiguous unless ``left`` (the layout the matmul template reads, as
        :meth:`_matmul_weight`'s), in a decode of its own, marked with InvokeQuant on CUDA.
        Integer codes: the field shifted down by a constant and decoded by
        :func:`fpx.fields._int_field_values`; float codes: the field decoded where it is, by
        :func:`fpx.fields._float_field_values_in_bfloat16` for bfloat16 (on CUDA, where the
        decode computes in x's dtype) and :func:`fpx.fields._float_field_values` (float32)
        otherwise. No int -> float conversion either way."""
        fmt, bits = self.fmt, self.fmt.bits
        top = plane == planar_group(bits) - 1  # nothing above the top field: no mask
        packed = self.packed.reshape(self.out_features, -1)
        float_codes = isinstance(fmt, FloatFormat)
        # Float codes in bfloat16 too: unscaled, each value is exact there (_decode_in_x_dtype_applies
        # covers scaled codes, which keep float32).
        applies = dtype == torch.bfloat16 if float_codes else _decode_in_x_dtype_applies(dtype, fmt, None)
        in_dtype = _decodes_in_x_dtype(packed.device) and applies
        decode_dtype = dtype if in_dtype else torch.float32

        def decode(packed):
            if float_codes:
                place = _float_field_values_in_bfloat16 if decode_dtype == torch.bfloat16 else _float_field_values
                w = place(packed.to(torch.int32), fmt, shift=plane * bits).to(dtype)
            else:
                field = (packed >> (plane * bits)) if plane else packed
                grid = _int_field_values(field.to(torch.int32), bits, True, masked=not top, dtype=decode_dtype)
                w = _dequantize_grid(grid, None, None, fmt).to(dtype)  # INT1's +-1, others as they are
            return w if left else w.t().contiguous()

        return _marked_decode(decode, [packed], low_precision=in_dtype)

    def _bias(self, dtype):
        return None if self.bias is None else self.bias.to(dtype)

    def _gemv(
        self,
        x2d: torch.Tensor,
        words: bool | None = None,
        bias: torch.Tensor | None = None,
        float_bits: bool | None = None,
    ) -> torch.Tensor:
        """(M, K) @ W.T (+ bias) for a few rows: two reductions, accumulated in float32.

        1. Per *plane* and *segment* (a run of a plane's columns inside one scale group), the
           dot product of x with the raw grid values (integer codes, or decoded float codes).
           One reduction per plane: inductor puts reductions of the same size in one kernel,
           where they share each packed byte (or word) they load.
        2. The sum over segments of ``slope * dot + offset * sum(x)``, with the group's scale
           (and zero-point) as slope and offset.

        On CUDA a plane has at least 8 segments where halving its segments allows, so that
        inductor keeps the sum over them a reduction (:func:`_halves_short_segment_sums`).

        Scales are applied once per segment instead of once per weight and no scale index is
        computed per weight: 1.6x faster than one reduction over dequantized weights on an H100
        (INT4 8192 x 8192, M = 1: 27.9 vs 44 us; benchmarks/probe_linear.py, groupsum), when
        those were decoded by conversion with a scale index of several operations per weight.

        The planes are the G planes of the packed layout, or with ``words`` (the default on CPU
        for one row of codes of 1, 2, 4 or 8 bits where :func:`_word_planes_pay_off` says so)
        the 4 G values of each 32-bit word of packed bytes: with AVX2 inductor's C++ loads
        uint8 lanes through a slow partial vector load, int32 lanes in full. x then goes into
        a buffer in the words' order first: read in place it was strided, and inductor
        vectorized across segments with transposes instead (2-core CPU, 4096 x 4096, one row,
        old and new code alternating twice: INT4 4.5-6.1 -> 1.15-1.27 ms, INT8 4.6-4.8 ->
        1.35, INT2 16.6-18.8 -> 1.29, INT1 31-34 -> 1.28, UINT4 4.0-4.1 -> 1.28;
        float codes, now by words too, E2M1 2.8-3.3 -> 2.58, E4M3 3.1-3.2 -> 2.54; float32
        F.linear 3.2-3.9 ms). Byte planes, in the same runs: INT4 1.29-1.34, INT8 1.27-1.28,
        INT2 1.28-1.45, E2M1 2.99-3.12, E4M3 3.25-3.46: the words stay ahead, by less.

        With ``float_bits`` (the default on CUDA for byte planes of 1, 2 or 4-bit integer
        codes and of the float codes :func:`_float_fields_in_place` takes, such as E2M1) each
        plane's codes become float32 where their byte holds them, without a conversion
        instruction: see :func:`_int_field_values` and :func:`_float_field_values`. Other float
        codes without inf or NaN (E3M2, E2M3) are then unpacked and decoded by
        :func:`_float_values_by_float32_shift`.

        Integer fields take their XOR patterns from the ``field_patterns`` buffer where
        :func:`_patterns_from_buffer_pays_off` says so (CUDA, one row). On CUDA x is converted to
        float32 inside the reductions, once per weight and row: written out in float32 by a
        kernel of its own instead, it counted fewer instructions per weight offline but ran
        slower on an H200 (INT4 at one row 28.7 against about 23 us, at four 77.5 against 60.3).
        On CPU a 16-bit x is written out in float32 first (:func:`_x_in_float32_first`: up to
        10x faster there).

        One reduction per plane over the scaled weights instead (scales applied per weight, one
        kernel) counted fewer instructions per weight offline but ran slower on an H200 (INT4
        at one row 30.7 against 25.2 us, at 4 rows 77.8 against 48.7; docs/inductor.md, "One
        level instead of segments").
        """
        fmt, bits, g = self.fmt, self.fmt.bits, planar_group(self.fmt.bits)
        n, columns = self.out_features, self.in_features // g
        if words is None:
            # Measured faster only there (CPU, 4096 x 4096, M = 1; slower from M = 4 on); float
            # codes too since x is read from a buffer in the words' order (see above).
            words = x2d.device.type == "cpu" and x2d.shape[0] == 1 and _word_planes_pay_off(fmt, self.group_size)
        words = words and self._word_aligned()
        if float_bits is None:
            float_bits = _float_bits_pay_off(x2d.device)
        # 1, 2 and 4 bits: the field in place, no shift (offline SASS counts, INT4: 7.5 against 8.7
        # instructions per weight; E2M1 8.45 against 11.4). Not for 3/5/6/7 bits (INT3: 9.3 against
        # 7.9, the straddling unpack costs more unsigned) nor 8 (a signed byte converts in one
        # instruction, I2F.S8; E4M3 in one cvt).
        in_place = _float_fields_in_place(fmt) if isinstance(fmt, FloatFormat) else bits in (1, 2, 4)
        # Other float codes without inf or NaN (E3M2, E2M3) unpacked, then by the sign shift.
        float_shift = float_bits and isinstance(fmt, FloatFormat) and not in_place
        float_bits = float_bits and not words and in_place
        per_word = 4 if words else 1  # a plane's columns each step of a reduction covers
        planes, width = g * per_word, columns // per_word
        segment = math.gcd(self.group_size // per_word, width)  # never straddles a group or a plane
        if _halves_short_segment_sums(x2d.device):  # the sum over segments stays a reduction
            segment = _segment_for_summed_segments(segment, width // segment)
        segments = width // segment
        # x written out first where the graph computes it (an input, or a view of one, stays as
        # it is): the reductions read x once per weight, and inductor would otherwise inline x's
        # producer there, such as an MLP's SiLU and product, computed again for every weight
        # (H200, Llama 3 8B's MLP at one row, INT4: the down projection's reduction took
        # about 45 us more).
        if _x_in_float32_first(x2d.device, x2d.dtype) and not words:
            xf = _inductor_buffer(x2d.float())
        else:
            xf = _inductor_buffer(x2d).float()
        if words:
            # Plane (p, b): byte b of each word of plane p, i.e. columns 4 w + b of plane p.
            # In that order in a buffer of its own (K values, one small kernel): read in place, x
            # is strided by 4 and inductor's C++ vectorizes the reduction across segments instead,
            # with 16 x 16 transposes of the words and x gathered lane by lane.
            xs = xf.view(-1, g, width, 4).transpose(-1, -2).reshape(-1, planes, segments, segment)
            xs = _inductor_buffer(xs.contiguous())
        else:
            xs = xf.view(-1, planes, segments, segment)
        # Group of segment (q, i): the group of its first column (plane q // per_word of W's
        # G planes, column per_word * i * segment; a word's 4 columns share a group).
        device = self.packed.device
        first = (torch.arange(planes, device=device)[:, None] // per_word) * columns + torch.arange(
            segments, device=device
        ) * (segment * per_word)
        group = first // self.group_size  # (planes, segments)
        scale = _e8m0_values(self.scale) if self.block == "mx" else self.scale.float()
        zero_point = None if self.zero_point is None else self.zero_point[:, group]
        slope, offset = _grid_affine(scale[:, group], zero_point, fmt)  # (N, planes, segments)
        x_sums = None if offset is None else xs.sum(-1)  # (M, planes, segments)
        # One int32 view for all planes (a view per plane made inductor split the kernel).
        word = self.packed.view(n, -1).view(torch.int32) if words else None  # little-endian
        rows = xs.shape[0]
        # A symbolic batch counts as several rows (its one reduction sums them all).
        one_trip = not words and _sums_products_in_one_trip(x2d.device, fmt, rows if isinstance(rows, int) else 2)
        # A symbolic batch (dynamic=True) may be any size: it keeps the constants (rows 0 here).
        patterns = float_bits and self.field_patterns is not None
        patterns = patterns and _patterns_from_buffer_pays_off(device, rows if isinstance(rows, int) else 0)
        # A static batch of few rows gets one reduction per row and plane: the decoded weight is
        # then shared by all rows instead of recomputed per row (CPU, 4096 x 4096 INT4: 18 vs
        # 79 ms at M = 8). A symbolic batch (dynamic=True) or more than ROW_REDUCTIONS
        # reductions (compile time grows with their number) takes all rows in one reduction.
        if isinstance(rows, int) and 1 < rows and rows * planes <= ROW_REDUCTIONS:
            row_blocks = [slice(m, m + 1) for m in range(rows)]
        else:
            row_blocks = [slice(None)]
        outs = []
        for block in row_blocks:
            out = 0
            for q in range(planes):
                # Decoded per plane, so that each decode has one consumer and stays inside the
                # reduction (inductor writes out a large expression that several consumers read).
                grid = self._plane_grid(q, word, float_bits, float_shift, patterns).view(n, segments, segment)
                products = xs[block, None, q] * grid[None]
                if one_trip:
                    products = _inductor_buffer(products)
                dots = products.sum(-1)  # (rows, N, segments)
                terms = dots * slope[None, :, q]
                if offset is not None:
                    terms = terms + x_sums[block, None, q] * offset[None, :, q]
                out = out + terms.sum(-1)
            # The bias is added per row in float32, before the rounding to x's dtype and before
            # the rows are joined (inductor writes each row into its slice of the output), so
            # the addition rides in the kernel that sums the row.
            outs.append((out if bias is None else out + bias.float()).to(x2d.dtype))
        return torch.cat(outs)

    def _word_aligned(self) -> bool:
        """Whether the packed bytes read as int32 words with whole groups per word (and the byte
        order of :meth:`_plane_grid`)."""
        columns = self.packed.shape[-1]
        whole_words = columns % 4 == 0
        if not torch.compiler.is_compiling():  # dynamo cannot trace storage_offset()
            # The layer's own buffer starts a storage; one assigned from elsewhere (say a view
            # into a memory-mapped file) may not. Compiled, such a buffer fails to trace the
            # int32 view with torch's "storage_offset() must be divisible by 4" error.
            whole_words = whole_words and self.packed.storage_offset() % 4 == 0 and self.packed.is_contiguous()
        little = sys.byteorder == "little"
        return little and whole_words and 8 % self.fmt.bits == 0 and self.group_size % 4 == 0

    def _plane_grid(
        self,
        q: int,
        word: torch.Tensor | None,
        float_bits: bool = False,
        float_shift: bool = False,
        patterns: bool = False,
    ) -> torch.Tensor:
        """Grid values (N, columns of the plane) of plane ``q`` of the packed bytes, or with
        ``word`` (the packed bytes as int32) of plane ``q`` of the words (see :meth:`_gemv`);
        with ``float_bits`` (byte planes of 1, 2 or 4-bit codes) by :func:`_int_field_values` or
        :func:`_float_field_values` on the field where its byte holds it; with ``float_shift``
        float codes by :func:`_float_values_by_float32_shift` where it takes them; with
        ``patterns`` integer fields by float bits take their XOR pattern from ``field_patterns``."""
        fmt, bits, g = self.fmt, self.fmt.bits, planar_group(self.fmt.bits)
        if float_bits:  # bitpack's dense layout: value q of a byte at bits (bits q) up
            byte = self.packed[:, 0].to(torch.int32)
            if isinstance(fmt, FloatFormat):
                return _float_field_values(byte, fmt, shift=bits * q)
            pattern = self.field_patterns[q] if patterns else None
            return _int_field_values(byte, bits, self._signed_codes, shift=bits * q, masked=True, pattern=pattern)
        if word is None:
            fields = bitpack.unpack(self.packed, bits, g, dim=1, dtype=torch.int32)[:, q]
        else:
            p, b = divmod(q, 4)  # byte b of a little-endian word is its bits 8b..8b+7
            fields = (word >> (8 * b + bits * p)) & ((1 << bits) - 1)  # as bitpack's dense layout places them
        if self._signed_codes:
            # Sign extension by the field's sign bit, then a conversion (I2F).
            sign = 1 << (bits - 1)
            fields = (fields ^ sign) - sign
        return _grid_values(fields, fmt, self.code_table, float_shift=float_shift)

    # ---- state ----------------------------------------------------------------------------------
    def _config(self) -> dict:
        return {
            "fmt": _format_name(self.fmt),
            "fmt_fields": _format_fields(self.fmt),
            "bits": self.fmt.bits,
            "in_features": self.in_features,
            "out_features": self.out_features,
            "group_size": None if self.per_channel else self.group_size,
            "block": self.block,
        }

    def get_extra_state(self) -> dict:
        return self._config()

    def set_extra_state(self, state) -> None:
        mine = self._config()
        name = state.get("fmt") if isinstance(state, dict) else None
        named = _FORMATS_BY_NAME.get(name) if isinstance(name, str) else None
        if named is not None and "fmt_fields" not in state:
            # Saved before the fields were recorded: the name then meant fpx's format of that name.
            state = state | {"fmt_fields": _format_fields(named)}
        def by_fields(config: dict) -> dict:
            # The fields decide the values; the name only shows them (fpx.exmy(4, 3) was named
            # E4M3 before its name told it apart from fpx.E4M3).
            return dict(config, fmt=None) if "fmt_fields" in config else config

        if not isinstance(state, dict) or by_fields(state) != by_fields(mine):
            raise ValueError(f"this state dict was saved for a LowBitLinear with {state}, but this layer is {mine}")

    def extra_repr(self) -> str:
        where = "per-channel" if self.per_channel else f"group_size={self.group_size}"
        block = ", block='mx'" if self.block else ""
        bits_per_weight = 8 * self.weight_nbytes / (self.in_features * self.out_features)
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, fmt={self.fmt.name}, {where}{block}, "
            f"bias={self.bias is not None}, weight={_human(self.weight_nbytes)} ({bits_per_weight:.3g} bits/weight)"
        )


def dequantize_packed(
    packed, scale, zero_point, code_table, *, fmt, group_size, block, table=True, float_bits=None, dtype=torch.float32,
    splits=1, out_dtype=None,
) -> torch.Tensor:
    """The weight W (N, K) computed in ``dtype`` (float32 by default) from its stored tensors
    (``scale=None``: unscaled, the codes' values less their zero-points), returned in
    ``out_dtype`` (default ``dtype``): the caller's conversion, done here so that the decode can
    suit the kernel that stores it (compiled on CPU, see :func:`_codes_in_uint8_lanes`).

    ``splits`` S > 1: W's columns in S chunks stacked as rows, (S N, K / S), row s N + n
    holding W[n, s K/S : (s+1) K/S] (the split K of :func:`_splits_k_on_the_left` and
    :func:`_splits_k_on_the_right`).

    ``dtype`` bfloat16 or float16: W computed in that dtype, integer fields placed there (see
    :func:`_int_field_values`; INT8 codes, and UINT8 codes with their zero-points, converted
    through int8, :func:`_bytes_as_bfloat16`), the scale multiplied there. Where the code
    values are exact in ``dtype`` and the scales are of ``dtype``
    (:func:`_decode_in_x_dtype_applies`), each weight is rounded once, to the same value as the
    float32 product rounded to ``dtype``. See :func:`_decodes_in_x_dtype`.

    ``table=False`` keeps float codes without a fast decode (see :func:`_grid_values`) off
    ``code_table``: no indirect load, which a matmul template's prologue cannot take.
    ``float_bits`` (default: :func:`_float_bits_pay_off`) turns integer codes of 1-7 bits into
    floats by :func:`_int_field_values` instead of a sign extension and a conversion (codes
    with zero-points: code and zero-point both by :func:`_uint_values_plus_two_pow_23`, whose
    difference ``_dequantize_grid`` takes as the code's), and the float codes
    :func:`_float_fields_in_place` takes (such as E2M1) by :func:`_float_field_values` instead
    of ``fpx.decode``. Other float codes keep ``fpx.decode`` here: E3M2 and E2M3 by
    :func:`_float_values_by_float32_shift` did not fuse into the matmul template either and the
    decode kernel ran no faster (H200, 8192 x 8192, 16 rows: E3M2 148.8 against 152.0 us, E2M3
    247.1 against 153.0).
    """
    n, _, columns = packed.shape
    g = planar_group(fmt.bits)
    signed = isinstance(fmt, IntFormat) and fmt.signed
    if float_bits is None:
        float_bits = _float_bits_pay_off(packed.device)
    int_bits = float_bits and isinstance(fmt, IntFormat) and fmt.bits < 8
    float_in_place = float_bits and isinstance(fmt, FloatFormat) and _float_fields_in_place(fmt)
    # Bytes straight to bfloat16 (see _bytes_as_bfloat16): signed codes, and unsigned ones
    # with their zero-points.
    bytes_to_bfloat16 = fmt.bits == 8 and dtype == torch.bfloat16 and (signed or zero_point is not None)
    # Codes kept in uint8 lanes up to uint8 -> float32 conversions (see _codes_in_uint8_lanes):
    # integer codes by one conversion, float codes by _decode_bytes_by_float_products.
    out_dtype = dtype if out_dtype is None else out_dtype
    sixteen_bit = out_dtype.itemsize == 2  # a 16-bit W: the decode's kernel 32 lanes wide on CPU
    uint8_codes = (_codes_in_uint8_lanes(packed.device) and not int_bits and not bytes_to_bfloat16
                   and (isinstance(fmt, IntFormat) or (sixteen_bit and not float_in_place
                                                        and _decodes_by_byte_products(fmt))))
    if bytes_to_bfloat16:
        codes_dtype = torch.int8 if signed else torch.uint8
    else:
        codes_dtype = torch.uint8 if uint8_codes else torch.int32
    if uint8_codes and sixteen_bit and 8 % fmt.bits != 0:
        codes = _planar_codes_in_uint8_lanes(packed, fmt.bits)
    else:
        codes = bitpack.unpack(packed, fmt.bits, g, dim=1, signed=signed and not (int_bits or uint8_codes), dtype=codes_dtype)
    if scale is not None:
        scale = (_e8m0_values(scale) if block == "mx" else scale).to(dtype)
    if torch.compiler.is_compiling():
        # Compiled: each weight reads its code at its column k and its group's scale at
        # k // group_size (a repeat_interleave is a view there, nothing is written). The eager
        # form's (N, groups, group_size) view would reach the code at group_size * (k //
        # group_size) + k % group_size, which Triton's address analysis takes as contiguous over
        # group_size columns only: for groups narrower than the matmul template's BLOCK_K, the
        # codes were loaded byte by byte outside the async-copy pipeline (H200, INT4 at 16
        # rows, fused: 100.0 us with groups of 32 against 50.8 with groups of 128).
        # Two dims, W's own: the decode then ends in no view, which inductor's invoke_quant
        # lowering does not take as its output.
        codes = codes.reshape(n, -1)
        if scale is not None:
            scale = scale.repeat_interleave(group_size, dim=-1)
        if zero_point is not None:
            zero_point = zero_point.repeat_interleave(group_size, dim=-1)
        # The split before the decode's arithmetic: a compiled decode must not end in a view
        # (inductor's invoke_quant lowering takes no view as its output). A chunk's index is
        # plain arithmetic on the row, which inductor folds into the loads (planar INT4 in two
        # chunks: the byte at the column, the nibble by the row).
        codes, scale, zero_point = (None if t is None else _columns_as_rows(t, splits) for t in (codes, scale, zero_point))
    else:
        # (N, G, K/G) planes are W's columns in order: as (N, groups, group_size), scales and
        # zero-points broadcast (no gather, and no scale per weight in memory).
        codes = codes.reshape(n, -1, group_size)
        scale = None if scale is None else scale.unsqueeze(-1)
        zero_point = None if zero_point is None else zero_point.unsqueeze(-1)
    if int_bits and zero_point is not None:
        # Code and zero-point both as 2^23 + value: their difference is exact, with no int ->
        # float conversion of the zero-point per weight in the matmul template's prologue
        # (H200, 8192 x 8192, 16 rows: UINT4 60.7 -> 58.8 us, UINT3 62.0 -> 60.6).
        grid = _uint_values_plus_two_pow_23(codes, dtype)
        zero_point = _uint_values_plus_two_pow_23(zero_point, dtype)
    elif int_bits:
        grid = _int_field_values(codes, fmt.bits, signed, dtype=dtype)
    elif float_in_place:
        grid = _float_field_values(codes, fmt, shift=0)
    elif bytes_to_bfloat16:
        grid, zero_point = _bytes_as_bfloat16(codes, zero_point)
    elif uint8_codes and isinstance(fmt, FloatFormat):
        grid = _decode_bytes_by_float_products(codes, fmt)
    elif uint8_codes:
        grid = _uint8_code_values(codes, fmt.bits, signed)
    elif table:
        grid = _grid_values(codes, fmt, code_table)
    else:
        grid = _grid_values(codes, fmt, casts_only=True)
    grid = grid.to(dtype)  # the float32 decodes' values; integer fields are placed in dtype already
    weight = _dequantize_grid(grid, scale, zero_point, fmt).to(out_dtype)
    if torch.compiler.is_compiling():
        return weight  # (S N, K / S) already
    return _columns_as_rows(weight.reshape(n, g * columns), splits)


def _codes_in_uint8_lanes(device: torch.device) -> bool:
    """Whether :func:`dequantize_packed` keeps codes in uint8 lanes (unpacked as uint8) up to
    their uint8 -> float32 conversions, instead of unpacking them into int32: compiled on CPU.
    Integer codes always (the sign by an XOR there, :func:`_uint8_code_values`); float codes
    decoded by :func:`fpx.convert._decode_bytes_by_float_products` where W is returned in a
    16-bit dtype; codes of 3, 5, 6 or 7 bits for such a W unpacked by
    :func:`_planar_codes_in_uint8_lanes`.

    Why: inductor's C++ runs a kernel that stores a 16-bit float 32 lanes wide, where at::vec's
    uint8 -> int32 and int32 -> float32 conversions are scalar fallbacks and uint8 -> float32
    is not: the decode of each weight block past the row limit with 16-bit x. 2 cores, one 512
    x 4096 block to bfloat16, ms: INT4 6.0 -> 0.45; by 128, int32 route -> uint8 lanes, E4M3
    4.96 -> 0.99-1.68, E5M2 3.68 -> 1.09, E2M1 5.09 -> 0.83; to float16 E4M3 6.07 -> 0.90,
    E5M2 4.80 -> 1.01, E2M1 5.00 -> 0.74; INT3 2.7-3.3 -> 0.49, INT5-7 2.0-3.6 -> 0.48-0.49,
    E3M2 0.93-1.24 -> 0.91, E2M3 1.06-1.31 -> 0.88 (their int32 route's kernel had run 16
    lanes wide). Not float codes stored in float32 (16 lanes, where the int32 route has its
    conversions: E4M3 0.61-0.74 against 1.02-1.19). CUDA converts int32 in one instruction,
    and its matmul template's prologue keeps its measured routes."""
    return device.type == "cpu" and torch.compiler.is_compiling()


def _planar_codes_in_uint8_lanes(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """The (N, 8, C) uint8 codes of planar (N, bits, C) bytes of 3, 5, 6 or 7-bit codes (each
    column's ``bits`` bytes a little-endian stream of 8 codes, as ``bitpack.unpack(packed,
    bits, 8, dim=1)`` reads them), computed in uint8 lanes: a code that straddles two bytes is
    the first shifted down and the last shifted up by 8 - shift, in two shifts of at most 7
    (a uint8 shift by 8 is past the lane's width).

    Why not bitpack.unpack: it joins the two bytes in an int32 word, the faster form in a
    kernel of 16 lanes or fewer (its own uint8 output: 0.24 ms for 1024 x 4096 3-bit codes
    on 2 cores, 0.55 in uint8 lanes). In a weight block stored in a 16-bit dtype, 32 lanes wide,
    at::vec's uint8 -> int32 conversion is a scalar fallback (2 cores, one 512 x 4096 INT3
    block to bfloat16: 2.7-3.3 -> 0.41-0.53 ms)."""
    first_bit = torch.arange(8, device=packed.device, dtype=torch.int32) * bits
    shift = (first_bit % 8).to(torch.uint8)[:, None]
    low = packed[:, first_bit // 8] >> shift
    high = (packed[:, (first_bit + bits - 1) // 8] << (7 - shift)) << 1
    return (low | high) & ((1 << bits) - 1)


def _uint8_code_values(codes: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """float32 values of ``bits``-bit integer codes held in uint8 (high bits clear): as they
    are, or for signed codes the two's complement value, (code XOR 2^(bits-1)) - 2^(bits-1),
    the XOR in uint8 lanes and the subtraction exact in float32."""
    if not signed:
        return codes.to(torch.float32)
    half = 1 << (bits - 1)
    return (codes ^ half).to(torch.float32) - float(half)


def _bytes_as_bfloat16(codes: torch.Tensor, zero_point: torch.Tensor | None) -> tuple:
    """(grid, zero-point) of 8-bit codes as bfloat16 values through int8 alone: int8 codes as
    they are (``zero_point`` None); uint8 codes and their uint8 zero-points each less 128 (the
    top bit flipped, read as int8), whose difference is the code's, exactly (at most 255 in
    magnitude: 8 significant bits).

    Why: Triton converts int8 pairs to bfloat16 by integer operations and one packed add (LOP3,
    PRMT, HADD2), while int8 -> float32 (INT8's float32 route), int8 -> float16 and uint8 ->
    bfloat16 each take an I2F per weight, a quarter-rate conversion on each weight's chain in
    the matmul template (UINT8's float32 route converts code and zero-point by I2FP).
    Offline sm_90a counts of the fused template's K loop (``benchmarks/prologue_counts.py``, 16
    x 16 / 16 x 32 / 16 x 64 tiles, instructions per weight): INT8 per channel 6.12 / 4.78 /
    4.97 through float32 -> 5.41 / 4.42 / 4.33 (E4M3's cast 5.38 / 4.36 / 4.17); INT8 by 128
    7.78 / 6.84 / 6.75 -> 7.00 / 6.00 / 5.86; UINT8 by 128 with zero-points 9.38 / 8.17 / 8.14
    -> 8.72 / 7.53 / 7.47; no I2F. Timed on an H200 (8192 x 8192, bf16 x, 2026-12-01), this
    route / float32's, in us: INT8 per channel 16 rows 24.1 / 29.8, 64 rows 47.0 / 57.1, its
    template at 3 / 4 rows 31.9 / 34.9 and 27.7 / 34.9; INT8 by 128 44.7 / 45.8 and 53.8 /
    55.6; UINT8 by 128 50.1 / 50.2 and 54.3 / 56.5.
    """
    if zero_point is None:
        return codes.to(torch.bfloat16), None
    return tuple((t ^ 0x80).view(torch.int8).to(torch.bfloat16) for t in (codes, zero_point))


def _columns_as_rows(t: torch.Tensor, splits: int) -> torch.Tensor:
    """(N, K) as (S N, K / S): row s N + n is t[n, s K/S : (s+1) K/S]."""
    if splits == 1:
        return t
    return t.reshape(t.shape[0], splits, -1).transpose(0, 1).reshape(-1, t.shape[1] // splits)


def _grid_values(
    codes: torch.Tensor, fmt, code_table: torch.Tensor | None = None, *, casts_only: bool = False, float_shift: bool = False
) -> torch.Tensor:
    """Grid values of int32 ``codes`` as float32: integer codes as they are, float codes decoded
    exactly in the fewest instructions a compiled kernel can take.

    - On CPU: :func:`_float_values_in_32_bit_lanes` (inductor's C++ vectorizes it; the float8
      cast and float16 views below compile to scalar loops there).
    - E4M3 on CUDA: torch's float8_e4m3fn cast (one conversion instruction).
    - E5M2: the top byte of a float16 (same exponent width, bias and specials); in a matmul
      template's prologue (``casts_only``) on CUDA torch's float8_e5m2 cast, see below.
    - Other formats of at most 4 exponent bits without inf (E3M2, E2M3, E2M1): the code's
      fields placed in a float16's, converted to float32 (subnormals map to float16
      subnormals, which the conversion keeps), times 2^(15 - bias), and NaN where the format
      has it.
    - Anything else: a lookup in ``code_table`` when given, else :func:`fpx.decode`.

    ``float_shift`` (CUDA's default in the reductions, see :func:`_float_bits_pay_off`) decodes
    the formats :func:`_float32_shift_decodes` takes by :func:`_float_values_by_float32_shift`
    instead of the float16 placement.

    ``casts_only`` (the matmul template's prologue) takes E5M2 by torch's float8_e5m2 cast
    where :func:`_e5m2_by_float8_cast` says so, else the float16 route, and fpx.decode for the
    other formats:
    in a matmul template's prologue (M = 16, 8192 x 8192, H100) the float16 route measured
    slower there (E2M1: 201 vs 142 us).

    Table lookups cost an indirect load per weight, fpx.decode 10-15 instructions on CUDA (its
    float32 placement, counted for sm_90a) and about 30 operations elsewhere; the casts cost 1-6
    (measured in benchmarks/linear.py). In the M = 1 reduction fpx.decode's float32 placement
    (six operations: magnitude and sign placed apart) counted about the same as the float16 one
    (E2M1 11.0 against 11.4 instructions per weight); the sign-shift float32 placement of
    ``float_shift`` (four operations) counts less (E3M2 10.4-10.5 against 12.5-12.7) and ran
    faster (H200, 8192 x 8192, one row: E3M2 31.3 against 36.5 us).
    """
    if not isinstance(fmt, FloatFormat):
        return codes.to(torch.float32)
    unit_range = (1 - fmt.bias - fmt.mantissa_bits, (1 << fmt.exponent_bits) - 1 - fmt.bias - fmt.mantissa_bits)
    if float_shift and _float32_shift_decodes(fmt):
        return _float_values_by_float32_shift(codes, fmt)
    casts = _float_decode_by_casts(codes.device)
    if not casts and not casts_only and -126 <= unit_range[0] and unit_range[1] <= 127:
        return _float_values_in_32_bit_lanes(codes, fmt)
    fields = (fmt.exponent_bits, fmt.mantissa_bits, fmt.bias, fmt.special, fmt.signed)
    if fields == (4, 3, 7, "fn", True) and casts:
        return codes.to(torch.uint8).view(torch.float8_e4m3fn).to(torch.float32)
    if fields == (5, 2, 15, "ieee", True) and casts_only and _e5m2_by_float8_cast(codes.device):
        return codes.to(torch.uint8).view(torch.float8_e5m2).to(torch.float32)
    like_half = fmt.exponent_bits == 5 and fmt.bias == 15 and fmt.special == "ieee"  # E5M2: float16's specials
    # float16 exponents 1-30 are finite: formats of <= 4 exponent bits fit, their NaN aside.
    small = fmt.special in ("finite", "fn") and fmt.exponent_bits <= 4 and not casts_only
    if like_half or small:
        return _float_values_by_float16_placement(codes, fmt)
    if code_table is not None:
        return code_table[codes].view(torch.float32)
    return decode(codes.to(torch.uint8), fmt)


WEIGHT_BLOCKS = 8  # blocks of output rows of LowBitLinear._matmul_by_weight_blocks


def _matmul_by_weight_blocks(device: torch.device) -> bool:
    """Whether :class:`LowBitLinear`'s compiled forward, past ``gemv_max_rows``, decodes the
    weight a block of output rows at a time, each multiplied by a library matmul
    (:meth:`LowBitLinear._matmul_by_weight_blocks`), instead of one decode of the whole weight
    (the matmul template's prologue on CUDA): on CPU, where the whole decoded weight is a
    fresh buffer per call, paid in page faults. 2 cores, 4096 x 4096, float32, ms, whole ->
    blocks (of float32 ``F.linear`` in the same process), two runs: M = 32 INT4 40.2-40.7 ->
    14.1-14.3 (0.79x), INT8 31.2-31.3 -> 11.7-12.4 (0.90-0.92x), E2M1 40.1-43.1 -> 20.3-27.0,
    E4M3 15.5-39.3 -> 13.3-14.4 (0.79-0.82x); M = 128 INT4 56.9-57.1 -> 30.5-31.0
    (0.89-0.94x), INT8 31.9-32.3 -> 28.2-28.7 (1.00-1.07x), E2M1 59.2-65.2 -> 33.8-46.1, E4M3
    31.7-49.6 -> 29.6-30.0 (0.96x); INT3 46.8-63.5 -> 22.8-71.1 (noisy both ways)."""
    return device.type == "cpu"


def _float16_matmul_in_float32(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether :meth:`LowBitLinear._matmul_by_weight_blocks` multiplies a float16 x in float32
    (x converted once, each block's W stored in float32, the output rounded to float16 once at
    the end) instead of by the library's float16 matmul: on CPU, where that matmul has no
    float16 hardware path (2 cores, AVX-512, a 32 x 4096 x 512 block: 4.0 ms, 1.45 in
    float32). The layer at 4096 x 4096, 32 / 64 rows, ms: INT4 35.3 / 67.7 -> 15.0 / 34.5, E4M3
    38.7 / 74.8 -> 16.8 / 23.3, INT3 68.8 / 62.8 -> 16.2 / 39.0 (float16 `F.linear` 24-34 /
    55-100). CUDA's float16 matmul is its fast one."""
    return device.type == "cpu" and dtype == torch.float16


def _sums_products_in_one_trip(device: torch.device, fmt, rows: int) -> bool:
    """Whether :meth:`LowBitLinear._gemv` hands each plane's products to inductor as a buffer
    (:func:`bitpack.words._inductor_buffer`), so that the plane's segment sums are a persistent
    reduction: one trip over a segment of 128 (or the group), only the outputs per program
    tuned. On CUDA, for
    codes of 1, 2, 3, 5, 6 and 7 bits (4 or 8 planes; 5 and 7 bits by likeness to 3 and 6, not
    measured), and for 4 bits (2 planes) from 2 rows on; never for 8-bit codes.

    Why: inductor makes a reduction of 128 persistent when everything it reads is a contiguous
    buffer (an INNER hint) and loops it otherwise, and a looped one tunes its loop's block too.
    Which one a product got was left to inductor's size limit for inlined expressions (30
    operations on CUDA): on torch 2.11 E3M2's product counted 31 and was written out, E2M3's 30
    and was not; E3M2's plane kernels were persistent, E2M3's looped (44-49 s to compile on an
    H200, 31.3 us at 8192 x 8192, one row). Products as buffers, each compile in a fresh cache
    under :func:`cold_cache_tuning` (H200, 8192 x 8192; us, compile s; before in brackets): at
    one row E2M3 29.2-29.7, 11-14 (31.3, 44-49); INT3 23.2-23.5, 9-13 (24.3-24.7, 23); INT2
    16.5, 6.3 (17.1, 11); INT1 17.5, 11-12 (19.3, 24); at 4 rows INT4 40.8, 17.3 (48.3, 30.3),
    E2M1 40.9, 12.9 (49.1, 34.9), INT2 52.5, 14.6 (59.0, 62.0), INT3 64.5, 30.8 (72.3, 71.3).
    But at one row INT4 18.5 and 18.8 (17.3-17.5; 4096 x 14336: 20.0 against 19.0), UINT4 20.2
    (18.7), INT8 22.7 (22.3), E4M3 19.4 (19.0), E2M1 21.2 (21.7-22.0), E2M1-MX 23.0 (22.7):
    their best looped configs, wide programs that loop over the segment, beat the persistent
    ones. INT8 at 4 rows too: 52.4-52.9 us with the buffers, 46.8-46.9 without (two compiles
    each); at 2 rows 26.3 against 27.0, one compile each, a draw. E4M3 at 4 rows 44.0 and 43.6.
    ``benchmarks/timing.force_layer_choice("one_trip_products", ...)`` flips it for A/B runs.
    """
    return device.type == "cuda" and fmt.bits != 8 and (rows > 1 or fmt.bits != 4)


def _float_decode_by_casts(device: torch.device) -> bool:
    """Whether :func:`_grid_values` decodes float codes by casts and views (the float8 cast,
    float16 placement): on CUDA. On CPU inductor's C++ compiles those to scalar loops and
    vectorizes :func:`_float_values_in_32_bit_lanes` instead. (A function, so that
    benchmarks/sass_offline.py can count the CUDA forms from CPU tensors.)"""
    return device.type == "cuda"


def _e5m2_by_float8_cast(device: torch.device) -> bool:
    """Whether the matmul template's prologue (:func:`_grid_values` with ``casts_only``) decodes
    E5M2 codes by torch's float8_e5m2 cast to float32 rather than as a float16's top byte: on
    CUDA. Counted offline (sm_90a, Triton 3.6, the fused template's K loop at 16 rows, 16 x 32 /
    16 x 64 tiles, ``benchmarks/prologue_counts.py``-style decodes): 4.36 / 4.17 instructions per
    weight (F2FP and HADD2, as E4M3's cast) against 5.41 / 5.45 for the top byte (IMAD, HADD2,
    PRMT). E5M2 per channel took 31.5 / 33.2 us at 3 / 4 rows of 8192 x 8192 on an H200 in the
    top byte's form, E4M3 26.5 / 26.8. Predicted: E5M2 at E4M3's times. Timed (H200, 8192 x
    8192, bf16 x, 2026-12-01, ``benchmarks/linear.py --e5m2-cast 1|0``), cast / top byte: 3
    rows 26.4 / 29.8 us, 16 rows 25.9 / 26.9, 64 rows 49.2 / 54.4 (the left route; 32.8 with
    the cast when repeated alone, a tile draw). The same values, NaN and inf included."""
    return device.type == "cuda"


def _patterns_from_buffer_pays_off(device: torch.device, rows: int) -> bool:
    """Whether the small-batch reductions of ``rows`` rows take the XOR pattern of
    :func:`_int_field_values` from the layer's ``field_patterns`` buffer instead of a constant.
    ptxas encodes one immediate per LOP3: with the mask and the pattern both immediates a field
    costs an AND and an XOR; with the whole pattern in a register one LOP3 does both. (A register
    for 2^23's exponent alone is not enough: ptxas folds the sign bit's constant into the XOR and
    keeps two LOP3s.) Offline counts, sm_90a, INT4 8192 x 8192 at one row: 6.53 instructions
    per weight against 7.47. Timed on an H200 (8192 x 8192, each compile in a fresh inductor
    cache): at one row INT4 median 22.9 us of 6 compiles (17.6-25.2) against 24.5 of 4
    (24.2-26.2), INT2 18.8 against 21.6, UINT4 25.0 against 30.1; at four rows INT4 57.0
    against 49.2 and INT2 57.1 against 59.6 (one compile each: no win shown), so one row only,
    on CUDA. ``benchmarks/linear.py --patterns-from-buffer 0|1`` forces either."""
    return device.type == "cuda" and rows == 1


@torch.compiler.assume_constant_result
def _cpu_vector_bits() -> int:
    """The vector width in bits of the C++ that inductor writes on this machine (its
    ``cpp.simdlen``, or the widest instruction set it finds), 0 where it finds none. A
    constant while tracing: dynamo calls it once and keeps the answer."""
    try:
        from torch._inductor import cpu_vec_isa

        isa = cpu_vec_isa.pick_vec_isa()
        return isa.bit_width() if isa else 0
    except Exception:  # an inductor without this module: the choice made before it existed
        return 256


def _word_planes_pay_off(fmt, group_size: int) -> bool:
    """Whether the one-row reduction on CPU reads the packed codes as int32 words (see
    :meth:`LowBitLinear._gemv`) rather than bytes: with vectors of up to 256 bits (AVX2)
    always, whose byte lanes load through a slow partial load; with 512-bit vectors
    (AVX-512, whose partial loads are masked) for codes of fewer than 8 bits in scale groups
    of 128 or more only, where a segment of a group's words fills two vectors.

    Measured (2026-12-01, 2 cores of an AVX-512 machine, 4096 x 4096, float32 x, one row,
    compiled, words / bytes, ms; AVX2 as inductor's ``cpp.simdlen`` 256 with ``cpp.march``
    haswell). AVX2, groups of 32 / 64 / 128: INT4 2.38 / 6.82, 1.98 / 6.50, 1.69 / 6.27; INT8
    3.65 / 9.06, 2.98 / 8.29, 2.58 / 8.03; E2M1 3.64 / 9.26, 3.49 / 9.12, 3.23 / 9.08; INT2
    1.68 / 4.40, 1.48 / 4.12, 1.27 / 4.05. AVX-512: INT4 1.87 / 0.86, 0.81 / 0.74, 0.53 /
    0.61; INT8 2.84 / 0.68, 0.81 / 0.44, 0.54 / 0.35; E2M1 30.16 / 1.93 (a segment of 8 words
    is half a vector, and the float decode's bit casts of a partial vector go element by
    element), 1.67 / 1.65, 1.27 / 1.57; INT2 1.72 / 0.84, 0.74 / 0.78, 0.55 / 0.60; MX E2M1
    (blocks of 32) 30.31 / 1.88; E4M3 per channel 1.40 / 1.38.

    >>> import fpx
    >>> isinstance(fpx.nn._word_planes_pay_off(fpx.INT4, 128), bool)
    True
    """
    return _cpu_vector_bits() < 512 or (fmt.bits < 8 and group_size >= 128)


def _x_in_float32_first(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the small-batch reductions (:meth:`LowBitLinear._gemv`, byte planes) read a
    16-bit x from a float32 copy that a small kernel of its own writes (M x K values) instead
    of converting x inside the reductions: on CPU. There a 16-bit load makes inductor's C++
    run the reduction 32 lanes wide, where at::vec converts the codes (uint8 -> int32 ->
    float32) by scalar fallbacks. 2 cores, 4096 x 4096 by 128 (E4M3 per channel), compiled,
    ms, inside -> copy first: bfloat16 x, M = 1 INT8 10.8 -> 1.05, INT3 10.4 -> 0.89, E4M3
    31.3 -> 3.0; M = 4 INT4 16.8 -> 3.0, INT8 20.1 -> 2.2, E2M1 33.5 -> 4.5; M = 16 INT4 50.7 ->
    14.5, INT2 231 -> 35.9, E4M3 50.2 -> 12.9; float16 x, M = 1 INT8 11.8 -> 0.82, E4M3 34.6 ->
    2.4; M = 4 INT4 10.8 -> 2.7. (The word planes of one row write x into a float32 buffer of
    their own already.) On CUDA the conversion inside the reductions ran faster (see
    :meth:`LowBitLinear._gemv`)."""
    return device.type == "cpu" and dtype in (torch.bfloat16, torch.float16)


def _float_bits_pay_off(device: torch.device) -> bool:
    """Whether the compiled forms turn codes into floats by their bits: integer codes by
    :func:`_int_field_values` rather than a sign extension and a conversion, E2M1-like codes by
    :func:`_float_field_values` and other float codes without inf or NaN by
    :func:`_float_values_by_float32_shift` rather than the float16 placement (in the
    small-batch reductions only) or fpx.decode. On CUDA (H200, 8192 x 8192: INT4's fused matmul
    template 14-16% faster at 16 and 64 rows; E2M1 38.0 -> 21.7 us at one row, and its template
    decode fuses; E3M2 36.5 -> 31.3 us and E2M3 40.7 -> 34.7 at one row). CPU keeps the conversion
    (its vector conversion is one full-rate instruction per 8 lanes; 2-core timings of either
    form were within their noise) and its 32-bit lane float decode. One switch for all, which
    ``benchmarks/timing.force_layer_choice("float_bits", ...)`` flips for A/B runs."""
    return device.type == "cuda"


def _channel_scale_after_matmul(device: torch.device) -> bool:
    """Whether a per-channel layer's compiled matmul (past the row limit; CUDA's template)
    multiplies the product's columns by the scales, M x N multiplies, instead of every weight
    in the decode, N x K (and a scale load per weight). The template's prologue is then the
    codes' decode alone: for E4M3 a cast. On CUDA. Measured on an H200 (torch 2.11, 8192 x
    8192, bf16 x, each set compiled alone under cold_cache_tuning, 2026-12-01), before / after,
    in us: E4M3 per channel at M = 16 63.4 / 26.3 (1.30x bf16 ``F.linear``), 64 91.1 / 46.4,
    128 92.6 / 78.9 (fused: one kernel, was two); INT8 per channel 16 rows 51.4 / 34.0, 64
    rows 71.1 / 51.2; INT2 53.4 / 48.9, 80.0 / 56.8; E2M1 62.6 / 52.1, 84.0 / 59.6. Predicted
    for E4M3 at 16 rows: 46-52. The product is also more accurate: the codes are exact in
    bfloat16, so only the sum and the scaled result are rounded (E4M3 relative error 1.7e-3
    against 2.3e-3). Not on CPU, which decodes by weight blocks past the row limit
    (:func:`_matmul_by_weight_blocks`): there each block's product scaled after its library
    matmul measured mixed (2 cores, 4096 x 4096, 64 rows, per channel, before / after: E4M3
    65.7 / 68.3 ms, INT8 65.5 / 60.5, INT4 47.2 / 64.5)."""
    return device.type == "cuda"


# The fewest rows of x from which codes with per-channel scales multiply as the matmul's left
# operand on CUDA, by format; formats not listed never do (see _weight_as_left_operand).
LEFT_OPERAND_MIN_ROWS = {E4M3: 20, E5M2: 24, INT4: 24, INT8: 24}
# ... and the fewest output features (the weight's rows, which the left route's 64-row tiles
# divide among the GPU's SMs), where measured to matter; other formats: any. INT2 and E2M1
# take the left route only by plane (PLANE_PRODUCTS_LEFT_ROWS), measured at 8192 output
# features alone: INT4's limit, whose left route lost at 4096 (below).
LEFT_OPERAND_MIN_OUT_FEATURES = {INT4: 8192, INT8: 8192, INT2: 8192, E2M1: 8192}


def _weight_as_left_operand(device: torch.device, fmt, rows, out_features) -> bool:
    """Whether the compiled matmul path computes ``(W @ x.T).T`` rather than ``x @ W.T``, the
    decoded weight the matmul template's left operand and x's rows its columns: on CUDA for
    the formats of :data:`LEFT_OPERAND_MIN_ROWS` from their row counts on (and from
    :data:`LEFT_OPERAND_MIN_OUT_FEATURES` output features, or fewer where K is split, see
    :func:`_splits_k_on_the_left`), with per-channel scales (applied
    to the product, see :func:`_channel_scale_after_matmul`, so that the decode has no scale
    in it).

    Why: the weight's rows fill the template's 64-row tiles, and x's few rows its columns;
    the scaling, the transposition back and the bias are one small kernel after it. On Hopper
    the left operand of a warpgroup MMA is read from registers, where an 8-bit float's decode
    (a cast) is computed from the codes' shared-memory tile; the right one is stored to shared
    memory first, each K step (docs/inductor.md, "The weight as the left operand"). H200,
    8192 x 8192, bf16 x, per channel, ``x @ W.T`` / ``(W @ x.T).T`` (us, two kernels on the
    left):

    - E4M3: 16 rows 24.7 / 28.3, 20 rows 34.9 / 29.4, 24 rows 34.1 / 29.6 (40.7 in inductor's
      128 x 32 x 128 tile; 64-row tiles: ``fpx.tuning.FEW_COLUMN_TILES``), 32 rows 32.9 /
      28.2-30.6, 64 rows 44.3 / 31.7-32.7 (0.85x -> 1.15-1.20x of bf16 ``F.linear``), 128
      rows 59.0 / 38.7-39.0 (0.64x -> 0.97x); E5M2 at 24 rows 39.6 / 32.1, at 64 rows 55.0 /
      35.5 (0.69x -> 1.05x).
    - INT4: 16 rows 45.6 / 66.7, 24 rows 48.5 / 46.4, 32 rows 49.3 / 46.5, 64 rows 51.2-55.1 /
      52.1, 128 rows 63.4 / 56.0. At 64 rows, 14336 x 4096 (N x K): 56.0 / 41.5; 4096 x
      14336: 66.8 / 80.0, lost: 4096 rows of W are 64 tiles of 64 rows for 132 SMs (split
      in two, 49.0: :func:`_splits_k_on_the_left`).
    - INT8, codes converted to bfloat16 through int8 (2026-12-01, each set compiled alone):
      24 rows 36.6 / 36.3, 32 rows 33.6 / 35.2, 48 rows 46.3 / 41.0, 64 rows 52.6 / 42.2
      (47.0 on the right in another compile), 128 rows 58.6 / 49.6; 14336 x 4096 at 32
      rows 30.7 / 30.6, at 64 rows 45.6 / 34.8. Through float32 (before): 64 rows 51.1 /
      66.9, 128 rows 66.1 / 54.2, so INT8 went left from 128 rows until then. With the
      64 x 64 x 256 tile on the left (``fpx.tuning.FEW_COLUMN_TILES[64]``, 2026-12-02): 32
      rows 39.1 / 34.9, 33 rows 38.9 on the left, 40 rows 44.0 / 38.7 (on the right 33-64
      rows take 64-row tiles), 48 rows 39.3 and 64 rows 39.3-39.7 on the left (41.0 and
      42.0 in 128-deep tiles): left from 33 rows. 32 rows stayed right: 33.6 / 35.2 in an
      earlier compile, so the two compiles disagreed. A third (thirty-fourth session): 17 rows
      34.1 / 36.8, 20 rows 34.1 / 36.5 (the right in 32 x 32 x 128), 24 rows 40.9 / 36.4 and 32
      rows 39.1 / 35.1 (the right in 32 x 64 x 128, which its tuning drew in 3 of the 4
      compiles timed at 24-32 rows): left from 24 rows, where it runs 35-36.5 in every compile
      and the right 33.6-40.9.
    - E4M3 at 64 rows on the other shapes: 14336 x 4096 41.8 / 38.4, 4096 x 14336 58.2 / 52.7.
    - Not listed: UINT4 (its zero-point in the decode) 59.2 / 78.4 at 64 rows; INT2 51.0 /
      49.4 (within the spread of compiles).

    The product is rounded to x's dtype before its scaling (relative error 2.4e-3 against
    1.7e-3). Codes with scales in their decode lost (INT4 by groups of 128: 48.1 -> 83.3 us at
    16 rows, 57.8 -> 82.9 at 64, a decode kernel and the template; INT8 by groups of 128,
    fused: 60.1 -> 100.9 at 64 rows; UINT4 and E2M1 like INT4), so they keep ``x @ W.T``."""
    if device.type != "cuda":
        return False
    if _splits_k_on_the_left(device, fmt, rows, out_features):
        return True
    least = LEFT_OPERAND_MIN_ROWS.get(fmt)
    return least is not None and rows >= least and out_features >= LEFT_OPERAND_MIN_OUT_FEATURES.get(fmt, 0)


class SplitKRange(NamedTuple):
    """Where a matmul route splits K in two: output features in [min_out_features,
    below_out_features), rows of x in [min_rows, max_rows], input features from
    min_in_features on."""

    min_out_features: int
    below_out_features: int
    min_rows: int
    max_rows: int
    min_in_features: int = 0

    def holds(self, rows, out_features, in_features) -> bool:
        """Whether a layer of these features at this many rows is in the range."""
        return (self.min_rows <= rows <= self.max_rows and self.min_out_features <= out_features < self.below_out_features
                and in_features >= self.min_in_features)


# By format; formats not listed never split (see _splits_k_on_the_left).
LEFT_OPERAND_SPLIT_K = {INT4: SplitKRange(min_out_features=2048, below_out_features=8192, min_rows=16, max_rows=64)}


def _splits_k_on_the_left(device: torch.device, fmt, rows, out_features) -> bool:
    """Whether the compiled matmul path computes ``(W @ x.T).T`` with K split in two (see
    :func:`_weight_as_left_operand`, which takes it where this says so): W decoded as (2 N,
    K / 2), its rows' halves stacked, times x as (2 M, K / 2), a view (row 2 m + s is half s
    of x's row m); the two diagonal (N, M) blocks of the (2 N, 2 M) product summed are W x^T.
    On CUDA, in the ranges of :data:`LEFT_OPERAND_SPLIT_K`.

    Why: the left route's 64-row tiles of W give N / 64 programs, 64 at 4096 output features
    for the H200's 132 SMs, each with the whole K loop's decode. Split, twice the programs
    with half the K loop each, for twice the MMA work and a product twice as large, summed in
    the small kernel that scales and transposes it anyway. (Inductor's own split K runs
    through ``bmm``, whose template takes no prologue.) Measured on an H200 (torch 2.11,
    per-channel INT4, bf16 x, each argument set compiled alone under cold_cache_tuning,
    2026-12-01), ``x @ W.T`` / split left, us:

    - 4096 x 14336 (N x K): 16 rows 46.9 / 40.7, 20 rows 59.9 / 44.2, 24 rows 59.5 / 45.0, 64
      rows 66.0-67.9 / 49.0-50.9 (unsplit left 78.9; in four 74.0), 96 rows 84.6 / 89.6, 128
      rows 86.3 / 87.8.
    - 4096 x 4096: 24 rows 19.0 / 16.3, 64 rows 28.0 / 23.4, 128 rows 27.7 / 33.9.
    - 2048 x 8192: 16 rows 26.2 / 23.4, 64 rows 37.6 / 28.4 (one compile each; 2049-4095
      output features unmeasured, taken).
    - Not split: 8192 x 8192 at 64 rows 52.1 unsplit / 55.6 split, 14336 x 4096 41.5 / 63.9.
    - Other formats: E4M3 at 4096 x 14336, 64 rows, unsplit 43.7 / split 50.8; INT8 per
      channel, 128 rows, ``x @ W.T`` 84.9 / split 87.9."""
    split = LEFT_OPERAND_SPLIT_K.get(fmt)
    return device.type == "cuda" and split is not None and split.holds(rows, out_features, 0)


# Codes whose per-channel layers take LowBitLinear._plane_products on CUDA inside
# cold_cache_tuning (where PLANE_PRODUCTS_RIGHT_ROWS or PLANE_PRODUCTS_LEFT_ROWS says). INT1
# (8 planes) is built the same way and lost: 16 rows of 8192 x 8192, 46.6 us against 40.5 as
# one product (H200, 2026-12-02). E2M1's planes are placed in bfloat16 by their bits (offline
# 7.8-8.9 instructions per weight against 11.3-12.4 and a shared-memory store as one product):
# predicted 52.1 -> 36-41 us at 16 rows and 59.6 -> 50-55 at 64, measured 48.8 -> 35.8 and
# 61.9 -> 46.5 (H200, 2026-12-02).
PLANE_PRODUCT_FORMATS = (INT4, INT2, E2M1)
# By format, the rows of x (least, most; None: no limit) the right route (x @ W.T) computes by
# plane (see LowBitLinear._plane_products). H200, torch 2.11, 8192 x 8192 unless said, one
# product / planes, us:
# - INT4: 5 rows 42.1 / 32.5, 8 rows 41.0 / 27.9-28.2, 10 rows 28.5 (planes), 12 rows 28.7, 14
#   rows 28.8, 16 rows 40.4 / 28.0, at 14336 x 4096 35.2 / 25.5, at 4096 x 14336 40.5 / 37.3;
#   from 17 rows the left route's planes (PLANE_PRODUCTS_LEFT_ROWS) beat the right's: 17
#   rows 35.0 against 39.4, 18 rows 34.5 against 39.4, 22 rows 34.4 against 39.5.
# - INT2 (4 planes, 4 templates): 5 rows 46.1 / 36.1, 8 rows 44.6 / 36.2, 12 rows 41.0 / 35.3,
#   16 rows 44.9 / 34.5, at 4096 x 14336 68.6 / 36.9; 24 rows 48.3 / 49.3 and 32 rows 48.9 /
#   50.6 on the right, where the left's planes take 41.2 and 40.8.
# - E2M1: 12 rows 34.9 (planes), 16 rows 48.8 / 35.8 (5-11 and 13-15 rows taken as INT4's and
#   INT2's window; see RESULTS.md).
PLANE_PRODUCTS_RIGHT_ROWS = {INT4: (5, 16), INT2: (5, 16), E2M1: (5, 16)}
# By format, the rows of x (least, most; None: no limit) the left route ((W @ x.T).T, unsplit,
# at LEFT_OPERAND_MIN_OUT_FEATURES or more output features) computes by plane, under the left
# route's own row limit (LEFT_OPERAND_MIN_ROWS) where it is lower. INT2 and E2M1 up to the
# rows measured: past them, one product on the right as before. H200, per channel, 8192 x
# 8192, one product / planes, us:
# - INT4: 17 rows 35.0 (right's planes 39.4), 18 and 22 rows (right, one product about 40)
#   34.5 and 34.4, 24 rows 34.3 (planes), 32 rows 46.4 / 34.3, 64 rows 51.4 / 39.8, 128 rows
#   56.4 / 48.5; at 14336 x 4096, 64 rows 36.9 (planes).
# - INT2: 17 rows 42.0 (one product about 45), 24 rows 48.3 / 41.2, 32 rows 48.9 / 40.8, 64
#   rows 50.5 / 46.8, 96 rows 63.0 / 59.4, 128 rows 63.2 / 57.8.
# - E2M1: 20 rows 39.0 (planes), 64 rows 61.9 / 46.5, 96 rows 72.4 / 54.9, 128 rows 72.3 /
#   55.1.
PLANE_PRODUCTS_LEFT_ROWS = {INT4: (17, None), INT2: (17, 128), E2M1: (17, 128)}
# ... and from this many output features (measured at 4096, 8192 and 14336; at fewer, two
# launches against one for a product that takes a few microseconds: unmeasured, not taken).
PLANE_PRODUCTS_MIN_OUT_FEATURES = 4096

# By format, for codes whose scales are in their decode (by groups or MX blocks); formats not
# listed never split (see _splits_k_on_the_right). From 5 rows: CUDA's default row limit of
# the small-batch reductions is 4.
RIGHT_OPERAND_SPLIT_K = {
    fmt: SplitKRange(min_out_features=3584, below_out_features=8192, min_rows=5, max_rows=max_rows, min_in_features=11008)
    for fmt, max_rows in ((INT4, 64), (INT8, 64), (E2M1, 32))
}
# ... and for codes with one scale per output channel, applied to the summed product (see
# _channel_scale_after_matmul).
RIGHT_OPERAND_SPLIT_K_BY_CHANNEL = {
    INT8: SplitKRange(min_out_features=4096, below_out_features=8192, min_rows=24, max_rows=64, min_in_features=14336),
}


def _splits_k_on_the_right(device: torch.device, fmt, rows, out_features, in_features, scales_in_decode) -> bool:
    """Whether the compiled matmul path computes ``x @ W.T`` with K split in two: W.T decoded
    as (K / 2, 2 N), column s N + n holding W[n, s K/2 : (s+1) K/2] (with its scales where
    they are in the decode), times x as (2 M, K / 2), a view (row 2 m + s is half s of x's row
    m); the two diagonal (M, N) blocks of the (2 M, 2 N) product summed are x W^T. On CUDA, in
    the ranges of :data:`RIGHT_OPERAND_SPLIT_K` for codes whose scales are in their decode
    (``scales_in_decode``: by groups or MX blocks), and of
    :data:`RIGHT_OPERAND_SPLIT_K_BY_CHANNEL` for per-channel scales on the product
    (:func:`_channel_scale_after_matmul`), which then scale the summed blocks.

    Why: at 3584-8191 output features the template's tiles of 16-64 weight columns are 56-512
    programs for the H200's 132 SMs, each with the whole K loop's decode (112 steps of 128 at
    K = 14336). Split, twice the columns with half the loop each, for twice the MMA work (x's
    rows doubled: 16 rows fill a 32-row tile) and a product four times x W^T's size, summed
    in one small kernel. The split is applied to the codes and scales before the
    decode's arithmetic (:func:`dequantize_packed` with ``splits``), so the decode still fuses
    into the template: two kernels, no weight-sized buffer. Measured on an H200 (torch 2.11,
    bf16 x, ``benchmarks/linear.py --split-k-right 0|1`` and
    ``benchmarks/probe_right_split.py``, each argument set compiled alone under
    cold_cache_tuning, 2026-12-01), ``x @ W.T`` / split, us:

    - Groups of 128, 4096 x 14336 (N x K): INT4 6 rows 56.0 / 46.2, 8 rows 51.3 / 45.2, 12
      rows 54.9 / 56.2, 16 rows 55.1-55.2 / 44.0, 24 rows 61.9 / 50.1, 32 rows 63.4-64.6 /
      50.2-53.9, 64 rows 70.2-70.5 / 66.1; INT8 6 rows 55.9 / 51.1, 8 rows 55.9 / 43.2, 12
      rows 55.4 / 50.9, 16 rows 61.8 / 50.9-52.4, 32 rows 69.9 / 49.2, 64 rows 74.3 / 67.8;
      E2M1 6 rows 67.8 / 55.9, 16 rows 65.2 / 54.2-54.4, 32 rows 73.1 / 71.1 (64 rows 74.9 /
      75.3: not split).
    - Groups of 128, 4096 x 11008: INT4 8 rows 50.7 / 41.6, 16 rows 54.2 / 37.5, 32 rows
      53.0 / 47.4, 64 rows 59.1 / 52.8; INT8 16 rows 63.9 / 49.8, 32 rows 60.5 / 45.7; E2M1
      16 rows 60.6 / 45.2, 32 rows 61.2 / 45.9.
    - Groups of 128, 16 rows, the down projections of two more models: INT4 at 3584 x 18944
      84.7 / 65.5, at 5120 x 13824 75.4 / 65.0.
    - Per-channel INT8, 4096 x 14336: 16 rows 38.5 / 38.9 (not split), 24 rows 55.1 / 47.6,
      32 rows 64.5 / 45.9, 64 rows 67.6 / 60.5. Per-channel E4M3 at 16 rows 28.7 / 31.5: not
      split (its decode is a cast; from 20 rows it takes the left route).
    - Not split: groups of 128 at 4096 x 8192, INT4 16 rows 28.7 / 27.2, 32 rows 36.3 / 44.4;
      4096 x 4096, INT4 16 rows 15.4 / 19.5 (32 rows 19.0 / 17.4); 8192 x 8192, INT4 16 rows
      44.2 / 47.9, 64 rows 54.5 / 73.8; E2M1 16 rows 58.0 / 56.7. Unmeasured: K from 8193 to
      11007 (not split), 5 rows (split), fewer than 3584 output features (not split), INT8
      and E2M1 under 4096 output features (split, as INT4), per-channel INT8 under K = 14336
      (not split).

    The product of each half is rounded to x's dtype before the sum: the error bound grows by
    2^-8 of ``|x| @ |W|.T`` (relative error 3.0e-3 against 2.5e-3)."""
    ranges = RIGHT_OPERAND_SPLIT_K if scales_in_decode else RIGHT_OPERAND_SPLIT_K_BY_CHANNEL
    split = ranges.get(fmt)
    return device.type == "cuda" and split is not None and split.holds(rows, out_features, in_features)


def _plane_decodes_kept_apart(device: torch.device) -> bool:
    """Whether inductor, compiling for ``device`` now, keeps the planes' marked decodes apart
    (:func:`fpx.tuning.marked_decodes_kept_apart`, inside :func:`cold_cache_tuning`), so that
    each fuses into its own template (see :meth:`LowBitLinear._plane_products`).
    On CUDA, asked while the layer is traced, with no guard."""
    return device.type == "cuda" and marked_decodes_apart_here()


def _marks_the_decode(device: torch.device) -> bool:
    """Whether the matmul path wraps its decode in torch's InvokeQuant marker, under which
    inductor may fuse it into a Triton matmul template's prologue: on CUDA, where the template
    runs (see :meth:`LowBitLinear._matmul_weight`)."""
    return device.type == "cuda"


def _marked_decode(decode, tensors: list, low_precision: bool) -> torch.Tensor:
    """``decode(*tensors)``, wrapped in torch's InvokeQuant marker where the device's matmul path
    marks its decode (:func:`_marks_the_decode`) and this torch has the marker
    (:func:`_invoke_quant`, ``low_precision`` passed on)."""
    marker = _invoke_quant(low_precision=low_precision) if _marks_the_decode(tensors[0].device) else None
    if marker is None:
        return decode(*tensors)
    return marker(decode, *tensors, scheme="fpx.lowbit")


def _invoke_quant(low_precision: bool = False):
    """torch's InvokeQuant wrapper (torch >= 2.7), or None where this torch has none.
    ``low_precision``: inductor generates the marked decode's half-precision arithmetic as it
    is written, instead of in float32 (its default for a fused prologue, which would undo
    :func:`_decodes_in_x_dtype`)."""
    try:
        from torch._higher_order_ops._invoke_quant import InvokeQuant
    except ImportError:
        return None
    return InvokeQuant(codegen_low_precision=low_precision)


def _decodes_in_x_dtype(device: torch.device) -> bool:
    """Whether the matmul path's decode (CUDA's template prologue) computes a bfloat16 or
    float16 x's weights in x's dtype, where :func:`_decode_in_x_dtype_applies` says so: integer
    codes of 1-7 bits placed under 2^7's exponent (INT8 and UINT8 for bfloat16 x converted
    through int8, :func:`_bytes_as_bfloat16`), no float32 step, the zero-point subtracted and
    the scale multiplied in pairs (HADD2, HMUL2). The same weights, bit for bit. On CUDA.

    The fused template's K loop (sm_90a, INT4 group 128 at 16 rows, 16 x 16 x 128 tile, 2
    warps): 12.84 instructions per weight in float32, 9.69 in bfloat16 (539 static
    instructions, offline and in the device's cubin alike). Predicted for INT4 at 16 rows: 52
    -> 42-45 us. Measured on an H200 (torch 2.11, 8192 x 8192, group 128, bf16 x, each set
    compiled alone under cold_cache_tuning, 2026-12-01), float32 / x's dtype, us: INT4 16 rows
    52.1 / 44.2, 64 rows 61.0 / 54.4; UINT4 16 rows 59.6 / 48.6; INT2 56.9 / 46.6; INT3 56.0
    / 52.3. Not on CPU, whose past-the-limit route decodes weight blocks for a library matmul
    in float32 (:func:`_matmul_by_weight_blocks`)."""
    return device.type == "cuda"


def _decode_in_x_dtype_applies(dtype: torch.dtype, fmt, scale_dtype: torch.dtype | None) -> bool:
    """Whether :func:`_decodes_in_x_dtype` covers a layer of ``fmt`` with scales of
    ``scale_dtype`` (None: unscaled) for x of ``dtype``: integer codes of 1-7 bits (placed under
    2^7's exponent, as bfloat16 values) with scales of x's half-precision dtype. Exact: a code
    value (less its zero-point) has at most 8 significant bits and a scale 8 or 11, so their
    float32 product is exact and the float32 route rounds it once to ``dtype``, as ``dtype``'s
    own multiply does. 8-bit codes too for bfloat16 x, through int8 (:func:`_bytes_as_bfloat16`;
    H200, INT8 per channel at 16 rows 29.8 -> 24.1 us; float16's int8 conversion is an I2F,
    no gain). Not float codes. Earlier, 8-bit codes converted to float32 first and float codes
    ran no faster or slower (H200, 8192 x 8192, us, float32 / x's dtype; 16 rows unless
    said: INT8 45.8 / 57.1 and E4M3 per channel 26.5 / 30.8; E2M1 placed in bfloat16's
    fields by :func:`_float_field_values`' multiply, 16 rows 53.2 / 53.0, 64 rows 61.5 / 62.2;
    E2M1-MX with E8M0 scales in bfloat16 too, 56.4 / 55.3 and 64.0 / 63.0)."""
    if not (isinstance(fmt, IntFormat) and scale_dtype in (None, dtype)):
        return False
    placed = dtype in (torch.bfloat16, torch.float16) and fmt.bits <= 7
    return placed or (dtype == torch.bfloat16 and fmt.bits == 8)


def _human(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.3g} {unit}" if unit != "B" else f"{nbytes} B"
        nbytes /= 1024
    raise AssertionError


def _check_format(fmt) -> None:
    if not isinstance(fmt, (IntFormat, FloatFormat)):
        raise TypeError(f"fmt must be an fpx format such as fpx.INT4 or fpx.E2M1, got {fmt!r}")


def _check_config(in_features, out_features, fmt, group_size, block, scale_dtype) -> None:
    for name, value in (("in_features", in_features), ("out_features", out_features)):
        if not _is_int(value) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    _check_format(fmt)
    if isinstance(fmt, FloatFormat) and (not fmt.signed or not fmt.has_zero):
        raise ValueError(f"fmt={fmt!r} is a scale format; use a signed element format such as fpx.E2M1")
    if block not in (None, "mx"):
        raise ValueError(f"block must be None or 'mx', got {block!r}")
    if block == "mx" and not isinstance(fmt, FloatFormat):
        raise ValueError(f"block='mx' needs a float format, got fmt={fmt!r}")
    if scale_dtype not in SCALE_DTYPES:
        raise ValueError(f"scale_dtype must be one of {SCALE_DTYPES}, got {scale_dtype!r}")
    if in_features % 8:
        raise ValueError(f"in_features must be a multiple of 8 for the packed layout, got {in_features}")
    if group_size is not None:
        if not _is_int(group_size) or group_size <= 0:
            raise ValueError(f"group_size must be a positive int or None, got {group_size!r}")
        if in_features % group_size:
            raise ValueError(f"group_size={group_size} does not divide in_features={in_features}")


def _check_input(x, in_features: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in SCALE_DTYPES:
        raise TypeError(f"x must be float32, bfloat16 or float16, got {x.dtype}")
    if x.ndim == 0 or x.shape[-1] != in_features:
        raise ValueError(f"x must have in_features={in_features} in its last dim, got shape {tuple(x.shape)}")


def quantize_(model: nn.Module, fmt, *, group_size: int | None = 128, block: str | None = None, filter_fn=None, **kwargs) -> nn.Module:
    """Replace the ``nn.Linear`` modules of ``model`` in place by :class:`LowBitLinear` and return it.

    ``filter_fn(module, name) -> bool`` picks the layers (default: every ``nn.Linear``);
    further keyword arguments go to :meth:`LowBitLinear.from_linear`. A chosen layer whose
    shape the format cannot hold raises ValueError naming the layer, before anything changes.

    >>> import torch, fpx
    >>> model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    >>> fpx.quantize_(model, fpx.INT4, group_size=32)[0].fmt
    fpx.INT4
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if filter_fn is not None and not callable(filter_fn):
        raise TypeError(f"filter_fn must be None or a callable (module, name) -> bool, got {filter_fn!r}")
    chosen = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and (filter_fn is None or filter_fn(module, name))
    ]
    for name, module in chosen:  # check every layer first, so a bad one changes nothing
        try:
            _check_config(module.in_features, module.out_features, fmt, group_size, block, torch.float32)
        except ValueError as error:
            raise ValueError(f"cannot quantize layer {name!r}: {error} (exclude it with filter_fn)") from None
    for name, module in chosen:
        replacement = LowBitLinear.from_linear(module, fmt, group_size=group_size, block=block, **kwargs)
        if name == "":
            raise ValueError("model is itself an nn.Linear; use LowBitLinear.from_linear(model, fmt)")
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, replacement)
    return model


def linear_weight_nbytes(model: nn.Module) -> int:
    """Bytes of the weights of ``model``'s linear layers: each ``nn.Linear`` weight, and each
    :class:`LowBitLinear`'s packed codes, scales and zero-points (biases not counted), to see
    what :func:`quantize_` saves.

    >>> import torch, fpx
    >>> model = torch.nn.Sequential(torch.nn.Linear(256, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    >>> fpx.nn.linear_weight_nbytes(model)  # float32: (256 * 64 + 64 * 8) * 4
    67584
    >>> fpx.nn.linear_weight_nbytes(fpx.quantize_(model, fpx.INT4, group_size=64))  # 8448 code + 1056 scale bytes
    9504
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    total = 0
    for module in model.modules():
        if isinstance(module, LowBitLinear):
            total += module.weight_nbytes
        elif isinstance(module, nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
    return total
