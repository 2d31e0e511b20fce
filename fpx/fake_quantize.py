"""Fake quantization for quantization-aware training: quantize, dequantize, straight-through gradient.

``fake_quantize(x, fmt, ...)`` takes the same arguments as :func:`fpx.quantize` and returns
``quantize(x, fmt, ...).dequantize()`` (bitwise equal) without materializing codes. Its
gradient is the straight-through estimator of ``torch.fake_quantize_per_channel_affine``:
1 where the value was inside the representable range, 0 where it was clamped (saturated).
Scales are treated as constants (no gradient flows through the min/max reduction).

``fake_quantize_lsq(x, scale, fmt, ...)`` is the learnable-scale variant (LSQ): the caller owns
the scale (e.g. an ``nn.Parameter`` initialised from ``fpx.quantize(x, ...).scale``) and gets
its gradient.

Written as plain tensor code, so ``torch.compile(fullgraph=True)`` fuses it, forward and
backward: on CPU the forward is one kernel for every granularity measured (per-tensor,
per-channel along the last dim or dim 0, per-group, MX, with clip search too): inductor puts
the amax reduction and the elementwise rounding in one loop nest. On CUDA (Triton) it is one
kernel too for per-channel, per-group and MX scales; a per-tensor amax is a split reduction
there (more kernels). CUDA results equal the CPU's bit for bit, except with clip search, whose
error sums are reduced in another order.

>>> import torch, fpx
>>> x = torch.tensor([[0.2, -0.9, 0.7, 1.5]], requires_grad=True)
>>> y = fpx.fake_quantize(x, fpx.INT3)
>>> y.tolist()
[[0.0, -1.0, 0.5, 1.5]]
>>> y.sum().backward(); x.grad
tensor([[1., 1., 1., 1.]])
"""

from __future__ import annotations

import math

import torch

from .convert import _constant_format, round_to
from .formats import FloatFormat, IntFormat
from .quantize import (
    _check_arguments,
    _choose_scale,
    _compute_dtype,
    _dequantize_grid,
    _saturating_cast,
    _Geometry,
    _reciprocal,
    _round_to_grid,
    _without_negative_zero,
)

__all__ = ["fake_quantize", "fake_quantize_lsq"]


def fake_quantize(
    x: torch.Tensor,
    fmt,
    *,
    axis: int | None = -1,
    group_size: int | None = None,
    block: str | None = None,
    clip_search: bool | int = False,
) -> torch.Tensor:
    """Quantize ``x`` to ``fmt`` and back, in ``x``'s dtype, with a straight-through gradient.

    Contract:
      - Arguments, rules and errors as :func:`fpx.quantize` (``axis`` is the dim each scale
        covers; ``group_size``; ``block="mx"``; ``clip_search``).
      - Returns a tensor shaped and typed like ``x``, bitwise equal to
        ``fpx.quantize(x, fmt, ...).dequantize()``.
      - Gradient: ``grad * mask``, where ``mask`` is 1 where the scaled value was inside the
        format's range and 0 where it was clamped. Integers follow torch's rule (the rounded
        value, zero-point added, within [fmt.min, fmt.max]; for INT1, whose levels are
        ``+-scale``, ``|x| <= 2 * scale``); floats pass ``|x / scale| <= fmt.max +
        ulp(fmt.max) / 2``. With min/max scales the gradient is all ones, except that for UINT
        formats the rounded zero-point can put an extreme value half a step past the end of
        the grid, which then counts as clamped (as in torch), and that MX's power-of-two scale
        (floor(log2(amax)), per the spec) lets a block's largest elements saturate.
        ``clip_search`` clips the tails, which then get 0.
      - Idempotent: ``fake_quantize(fake_quantize(x)) == fake_quantize(x)`` bitwise for INT,
        float and MX formats (tested). UINT is not exactly: the range of ``fq(x)`` is the
        rounded grid's, so the re-derived scale moves by about an ulp (codes are kept in
        float32; in bf16/fp16 a code can move by one step).

    >>> import torch, fpx
    >>> x = torch.tensor([0.5, -1.0, 0.25, 1.0])
    >>> fpx.fake_quantize(x, fpx.UINT4, axis=None)
    tensor([ 0.5333, -0.9333,  0.2667,  0.9333])
    """
    fmt = _constant_format(fmt)  # plain-int fields under torch.compile(dynamic=True), see fpx.convert
    axis, group_size = _check_arguments(x, fmt, axis, group_size, block, clip_search)
    if x.requires_grad and torch.is_grad_enabled():
        return _StraightThrough.apply(x, fmt, axis, group_size, block, clip_search)
    out, _ = _fake_quantize_with_mask(x, fmt, axis, group_size, block, clip_search, mask=False)
    return out


def _fake_quantize_with_mask(x, fmt, axis, group_size, block, clip_search, *, mask: bool = True):
    """(fake-quantized x in x's dtype, in-range mask shaped like x, or None for ``mask=False``)."""
    geometry = _Geometry(x.shape, axis, group_size)
    xg = x.to(_compute_dtype(x)).reshape(geometry.grouped_shape)
    scale, zero_point = _choose_scale(xg, fmt, geometry.group_dim, block, clip_search)
    grid, in_range = _round_to_grid(xg * _reciprocal(scale), zero_point, fmt, mask=mask)
    out = _dequantize_grid(grid, scale, zero_point, fmt)
    return _as_output(out, x), None if in_range is None else in_range.reshape(x.shape)


def _as_output(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out`` (grouped shape) in ``x``'s dtype and shape, for an autograd.Function to return.

    - No ``.to(x.dtype)`` when the dtype already matches: that no-op returns an alias, and
      torch 2.11's compiled autograd.Function then hands its backward a zero gradient.
    - Convert, then reshape: the conversion then iterates over the groups like the amax
      reduction, so inductor's Triton backend fuses it into the reduction's kernel (converted
      after the reshape, a bf16 output took a second kernel).
    """
    if out.dtype != x.dtype:
        out = _saturating_cast(out, x.dtype)
    return out.reshape(x.shape)


class _StraightThrough(torch.autograd.Function):
    """Forward: fake quantization. Backward: the gradient where in range, 0 where clamped."""

    @staticmethod
    def forward(ctx, x, fmt, axis, group_size, block, clip_search):
        out, in_range = _fake_quantize_with_mask(x, fmt, axis, group_size, block, clip_search)
        ctx.save_for_backward(in_range)
        return out

    @staticmethod
    def backward(ctx, grad):
        (in_range,) = ctx.saved_tensors
        return torch.where(in_range, grad, torch.zeros((), dtype=grad.dtype, device=grad.device)), None, None, None, None, None


# ---- learnable scales (LSQ) ------------------------------------------------------------------------


def fake_quantize_lsq(
    x: torch.Tensor,
    scale: torch.Tensor,
    fmt,
    *,
    axis: int | None = -1,
    group_size: int | None = None,
    zero_point: torch.Tensor | None = None,
    grad_scale: float | None = None,
) -> torch.Tensor:
    """Fake quantization with a learnable ``scale`` (LSQ, Esser et al. 2020): gradients reach x and scale.

    Contract:
      - ``x``, ``fmt``, ``axis``, ``group_size``: as :func:`fake_quantize` (no MX, no clip
        search: the scale is the caller's). INT1 is refused (its sign grid has no LSQ form).
      - ``scale``: positive floats shaped like :func:`fpx.quantize`'s ``scale`` for the same
        arguments (e.g. (N, K // g) for an (N, K) weight), typically an ``nn.Parameter``
        initialised from ``fpx.quantize(x, fmt, ...).scale``. ``zero_point``: required for
        UINT formats (integer values, e.g. ``fpx.quantize(...).zero_point``), held fixed.
      - Forward: ``v = x * (1 / scale)`` clamped to the grid's range, rounded (ties to even;
        ``fpx.round_to`` for floats), times ``scale``; returned in ``x``'s dtype. With the
        min/max scale and zero-point it is bitwise equal to :func:`fake_quantize`.
      - Backward (LSQ): d/dx = 1 where ``v`` lies in the grid's range, else 0; d/dscale =
        ``round(v) - v`` inside, the range end (``min`` or ``max``, zero-point removed)
        outside, times ``grad_scale`` (default ``1 / sqrt(elements per scale * Qp)``, Qp the
        number of positive grid values), summed over each group.

    >>> import torch, fpx
    >>> w = torch.tensor([[0.3, -1.0, 0.6, 2.0]], requires_grad=True)
    >>> scale = torch.tensor([[0.5]], requires_grad=True)      # INT2 grid: -2, -1, 0, 1
    >>> y = fpx.fake_quantize_lsq(w, scale, fpx.INT2, grad_scale=1.0)
    >>> y.tolist()                                             # v = 0.6, -2, 1.2 -> 1, 4 -> 1
    [[0.5, -1.0, 0.5, 0.5]]
    >>> y.sum().backward()
    >>> scale.grad, w.grad             # (1 - 0.6) + (-2 + 2) + 1 + 1; clamped: 0
    (tensor([[2.4000]]), tensor([[1., 1., 0., 0.]]))
    """
    fmt = _constant_format(fmt)
    axis, group_size = _check_arguments(x, fmt, axis, group_size, None, False)
    geometry = _Geometry(x.shape, axis, group_size)
    if not torch.compiler.is_compiling():
        _check_lsq_arguments(scale, zero_point, fmt, geometry)
    if grad_scale is not None and (
        isinstance(grad_scale, bool) or not isinstance(grad_scale, (int, float)) or not 0 <= grad_scale < math.inf
    ):
        raise ValueError(f"grad_scale must be None or a finite number >= 0, got {grad_scale!r}")
    if grad_scale is None:
        grad_scale = 1.0 / math.sqrt(geometry.grouped_shape[geometry.group_dim] * _positive_levels(fmt))
    return _LearnedStepSize.apply(x, scale, zero_point, fmt, axis, group_size, grad_scale)


class _LearnedStepSize(torch.autograd.Function):
    """LSQ as one Function, so that d/dx is exactly 1 inside (no ``scale * (1 / scale)`` rounding)."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, fmt, axis, group_size, grad_scale):
        geometry = _Geometry(x.shape, axis, group_size)
        compute = _compute_dtype(x)
        xg = x.to(compute).reshape(geometry.grouped_shape)
        s = scale.to(compute).reshape(geometry.scale_keepdim_shape)
        low, high = _grid_range(fmt)
        if zero_point is not None:  # codes v + zero_point in [low, high]
            shift = zero_point.to(compute).reshape(geometry.scale_keepdim_shape)
            low, high = low - shift, high - shift
        v = xg * _reciprocal(s)
        clamped = torch.clamp(v, min=low, max=high)
        grid = _round_to_grid_lsq(clamped, fmt)
        inside = (v >= low) & (v <= high)
        # d out / d scale per element: round(v) - v inside, the end of the range outside
        ctx.save_for_backward(inside, grid - torch.where(inside, v, 0.0))
        ctx.geometry, ctx.grad_scale, ctx.scale_dtype, ctx.x_dtype = geometry, grad_scale, scale.dtype, x.dtype
        return _as_output(grid * s, x)

    @staticmethod
    def backward(ctx, grad):
        inside, scale_term = ctx.saved_tensors
        geometry = ctx.geometry
        grad_x = grad_scale = None
        if ctx.needs_input_grad[0]:
            zero = torch.zeros((), dtype=grad.dtype, device=grad.device)
            grad_x = torch.where(inside.reshape(grad.shape), grad, zero)
        if ctx.needs_input_grad[1]:
            per_element = grad.to(scale_term.dtype).reshape(geometry.grouped_shape) * scale_term
            summed = per_element.sum(geometry.group_dim, keepdim=True) * ctx.grad_scale
            grad_scale = summed.reshape(geometry.scale_shape).to(ctx.scale_dtype)
        return grad_x, grad_scale, None, None, None, None, None


def _round_to_grid_lsq(v, fmt):
    """Round already clamped values onto the grid: ties to even (+0.0 for zero), or fpx.round_to."""
    if isinstance(fmt, FloatFormat):
        return round_to(v, fmt)
    return _without_negative_zero(torch.round(v))


def _grid_range(fmt):
    if isinstance(fmt, FloatFormat):
        return -fmt.max, fmt.max
    return float(fmt.min), float(fmt.max)


def _positive_levels(fmt) -> int:
    """LSQ's Qp: how many grid values are positive (max_code for floats: every code up to max)."""
    return fmt.max_code if isinstance(fmt, FloatFormat) else fmt.max


def _check_lsq_arguments(scale, zero_point, fmt, geometry) -> None:
    if isinstance(fmt, IntFormat) and fmt.signed and fmt.bits == 1:
        raise ValueError("fake_quantize_lsq needs a grid with a zero: INT1 (sign quantization) has none; use INT2 or more")
    if not isinstance(scale, torch.Tensor) or not scale.dtype.is_floating_point:
        raise TypeError(f"scale must be a floating-point torch.Tensor, got {type(scale).__name__}")
    if tuple(scale.shape) != tuple(geometry.scale_shape):
        raise ValueError(f"scale must have shape {tuple(geometry.scale_shape)} (as fpx.quantize gives), got {tuple(scale.shape)}")
    unsigned = isinstance(fmt, IntFormat) and not fmt.signed
    if unsigned and zero_point is None:
        raise ValueError(f"fmt={fmt!r} needs a zero_point (e.g. fpx.quantize(x, fmt, ...).zero_point)")
    if not unsigned and zero_point is not None:
        raise ValueError(f"zero_point is only for UINT formats, got fmt={fmt!r}")
    if zero_point is not None and tuple(zero_point.shape) != tuple(geometry.scale_shape):
        raise ValueError(f"zero_point must have shape {tuple(geometry.scale_shape)}, got {tuple(zero_point.shape)}")
