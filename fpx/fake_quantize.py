"""Fake quantization for quantization-aware training: quantize, dequantize, straight-through gradient.

``fake_quantize(x, fmt, ...)`` takes the same arguments as :func:`fpx.quantize` and returns
``quantize(x, fmt, ...).dequantize()`` (bitwise equal) without materializing codes. Its
gradient is the straight-through estimator of ``torch.fake_quantize_per_channel_affine``:
1 where the value was inside the representable range, 0 where it was clamped (saturated).
Scales are treated as constants (no gradient flows through the min/max reduction).

Written as plain tensor code, so ``torch.compile(fullgraph=True)`` fuses it: on CPU the forward
of per-channel and per-group fake quantization along the last dim is one kernel (the amax
reduction and the elementwise rounding share the loop over the group).

>>> import torch, fpx
>>> x = torch.tensor([[0.2, -0.9, 0.7, 1.5]], requires_grad=True)
>>> y = fpx.fake_quantize(x, fpx.INT3)
>>> y.tolist()
[[0.0, -1.0, 0.5, 1.5]]
>>> y.sum().backward(); x.grad
tensor([[1., 1., 1., 1.]])
"""

from __future__ import annotations

import torch

from .quantize import (
    _check_arguments,
    _choose_scale,
    _compute_dtype,
    _dequantize_grid,
    _Geometry,
    _round_to_grid,
)

__all__ = ["fake_quantize"]


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
    axis, group_size = _check_arguments(x, fmt, axis, group_size, block, clip_search)
    if x.requires_grad and torch.is_grad_enabled():
        return _StraightThrough.apply(x, fmt, axis, group_size, block, clip_search)
    out, _ = _fake_quantize_with_mask(x, fmt, axis, group_size, block, clip_search)
    return out


def _fake_quantize_with_mask(x, fmt, axis, group_size, block, clip_search):
    """(fake-quantized x in x's dtype, in-range mask shaped like x)."""
    geometry = _Geometry(x.shape, axis, group_size)
    xg = x.to(_compute_dtype(x)).reshape(geometry.grouped_shape)
    scale, zero_point = _choose_scale(xg, fmt, geometry.group_dim, block, clip_search)
    grid, in_range = _round_to_grid(xg * (1.0 / scale), zero_point, fmt)
    out = _dequantize_grid(grid, scale, zero_point, fmt)
    return out.reshape(x.shape).to(x.dtype), in_range.reshape(x.shape)


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
