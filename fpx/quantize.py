"""Scaled quantization: integer or low-bit float codes plus scales (and zero-points).

``quantize(x, fmt, axis=..., group_size=...)`` splits ``x`` into groups, picks one scale per
group (and a zero-point for unsigned integer formats) and rounds ``x / scale`` onto the
format's grid. The result is a :class:`QuantizedTensor`; ``.dequantize()`` maps it back.

Granularity, all described by ``axis`` (the dim each scale covers, i.e. the dim reduced over)
and ``group_size``:

==================  ==========================  ==============================================
granularity         arguments                   scale shape for x of shape (N, K)
==================  ==========================  ==============================================
per-tensor          ``axis=None``               (1, 1): ``(1,) * x.ndim``
per-channel         ``axis=-1``                 (N, 1): one scale per row, reduced over K
per-channel         ``axis=0``                  (1, K): one scale per column, reduced over N
per-group           ``axis=-1, group_size=g``   (N, K // g): g consecutive elements along K
MX blocks           ``block="mx"``              (N, K // 32), powers of two (E8M0), floats only
==================  ==========================  ==============================================

In general the scale has ``x.shape`` with ``shape[axis]`` replaced by the number of groups
along ``axis`` (1 for per-channel). Note that this ``axis`` is the *reduced* dim, the opposite
of ``torch.fake_quantize_per_channel_affine``'s ``axis`` (the dim that keeps its own scales).

Rules per format (``v = x * (1 / scale)``, computed in float32, or float64 for float64 input;
every quotient, ``scale`` and ``1 / scale`` included, is correctly rounded on every device, eager
or compiled, so CPU and CUDA give the same bits; clip search aside, whose error sums are
reduced in each device's order):

- signed ``INTb`` (b >= 2), symmetric: ``scale = amax / (2**(b-1) - 1)``, codes
  ``clamp(round(v), -2**(b-1), 2**(b-1) - 1)`` (ties to even, as torch), value ``code * scale``.
  The most negative code is only reached when a clipped scale (``clip_search``) asks for it.
- ``INT1`` has the levels {-1, 0}, which cannot hold a symmetric grid (``amax / 0``), so it is
  sign quantization (binary weights): code -1 (bit 1) means ``-scale``, code 0 means
  ``+scale``; ``scale = amax``, value ``(2 * code + 1) * scale``; zero goes to ``+scale``.
- unsigned ``UINTb``, asymmetric with an integer zero-point, like torch's MinMaxObserver: the
  range ``[min(xmin, 0), max(xmax, 0)]`` (so zero is exact), ``scale = range / (2**b - 1)``,
  ``zero_point = round(-lo / scale)``, codes ``clamp(round(v) + zero_point, 0, 2**b - 1)``,
  value ``(code - zero_point) * scale``.
- float formats (E4M3, E5M2, E3M2, E2M3, E2M1, any ``exmy``): ``scale = amax / fmt.max``
  (``block="mx"``: ``2**(floor(log2(amax)) - fmt.emax)``, OCP MX v1.0), codes
  ``fpx.encode(v, fmt)`` (round to nearest even, saturating), value ``decode(code) * scale``.

Scales are clamped to at least the smallest normal number of the compute dtype, so all-zero or
tiny groups never give a zero, infinite or NaN scale (an all-zero group dequantizes to zeros).
Non-finite inputs give unspecified values in their group.

>>> import torch, fpx
>>> w = torch.tensor([[0.7, -1.4, 0.2, 0.1], [2.0, 0.0, -4.0, 1.0]])
>>> q = fpx.quantize(w, fpx.INT4, group_size=2)     # scales (2, 2): groups of 2 along dim -1
>>> q.codes.tolist()
[[4, -7, 7, 4], [7, 0, -7, 2]]
>>> q.scale
tensor([[0.2000, 0.0286],
        [0.2857, 0.5714]])
>>> q.dequantize()
tensor([[ 0.8000, -1.4000,  0.2000,  0.1143],
        [ 2.0000,  0.0000, -4.0000,  1.1429]])
"""

from __future__ import annotations

import math

import torch

import bitpack

from .convert import _constant_format, _decode_int, decode, encode, mx_scale_exponent, round_to
from .formats import E8M0, FloatFormat, IntFormat, _is_int

BLOCKS = (None, "mx")
MX_BLOCK_SIZE = 32
DEFAULT_CLIP_RATIOS = 11  # 1.0, 0.95, ..., 0.5

__all__ = ["QuantizedTensor", "quantize", "dequantize"]


# ---- the result ---------------------------------------------------------------------------------


class QuantizedTensor:
    """Codes, scales and (for UINT formats) zero-points of a tensor quantized by :func:`quantize`.

    Fields (for ``x`` of shape ``S`` quantized along ``axis`` in groups of ``g``; ``G =
    S[axis] // g``):

    - ``codes`` (property): integer codes shaped ``S``, unpacked: ``torch.int8`` for INT
      formats (two's-complement values in [fmt.min, fmt.max]), ``torch.uint8`` for UINT formats
      and for float formats (the format's bit patterns, as :func:`fpx.encode` gives).
    - ``scale``: float32 (float64 for float64 input), shaped ``S`` with ``S[axis]`` replaced by
      ``G`` (1 for per-channel; all ones for per-tensor). Positive and finite.
    - ``zero_point``: ``torch.uint8`` shaped like ``scale`` for UINT formats, else None.
    - ``fmt``, ``shape`` (``S``), ``dtype`` (the input dtype, the default of
      :meth:`dequantize`), ``axis`` (non-negative int, None for per-tensor), ``group_size``
      (``g``; ``S[axis]`` for per-channel, None for per-tensor), ``block`` (None or "mx").
    - Packed storage: ``layout`` is None (codes stored as they are) or a :mod:`bitpack`
      layout; then ``storage`` holds ``bitpack.pack(codes, fmt.bits, dim=pack_dim,
      layout=layout, signed=<INT format>)``, packed along ``pack_dim`` (``axis``, or the last
      dim for per-tensor), and ``codes`` unpacks on access. E2M1 codes packed two per byte put
      element 0 in the low nibble, as ``torch.float4_e2m1fn_x2``.

    >>> import torch, fpx
    >>> q = fpx.quantize(torch.tensor([[1.0, -2.0, 3.0, -6.0]]), fpx.E2M1, packed=True)
    >>> q.storage.tolist(), q.codes.tolist(), q.scale.tolist()   # two E2M1 codes per byte
    ([[194, 245]], [[2, 12, 5, 15]], [[1.0]])
    """

    def __init__(self, codes, scale, zero_point, *, fmt, shape, dtype, axis, group_size, block=None, layout=None):
        self.storage = codes
        self.scale = scale
        self.zero_point = zero_point
        self.fmt = fmt
        self.shape = torch.Size(shape)
        self.dtype = dtype
        self.axis = axis
        self.group_size = group_size
        self.block = block
        self.layout = layout

    @property
    def pack_dim(self) -> int:
        """The dim codes are packed along: ``axis``, or the last dim for per-tensor scales."""
        return len(self.shape) - 1 if self.axis is None else self.axis

    @property
    def codes(self) -> torch.Tensor:
        """The codes, unpacked, shaped like the input (see the class docstring for dtypes)."""
        signed = _is_signed_int(self.fmt)
        return self._unpacked_codes(torch.int8 if signed else torch.uint8)

    def _unpacked_codes(self, dtype: torch.dtype) -> torch.Tensor:
        """The codes in ``dtype``. Unpacked straight into int32 for arithmetic, they take
        bitpack's byte-at-a-time form, which inductor fuses into the consumer; uint8 codes from
        bitpack's word forms (CUDA, and CPU for 1/2/4 bits) come out of int32/int64 words viewed
        as bytes, a buffer of their own."""
        if self.layout is None:
            return self.storage.to(dtype)
        return bitpack.unpack(
            self.storage, self.fmt.bits, self.shape[self.pack_dim], dim=self.pack_dim, layout=self.layout,
            signed=_is_signed_int(self.fmt), dtype=dtype,
        )

    @property
    def scale_codes(self) -> torch.Tensor:
        """E8M0 codes (``torch.uint8``) of the scales; only for ``block="mx"``, where they are exact."""
        if self.block != "mx":
            raise ValueError(f"scale_codes needs block='mx' (power-of-two scales), this tensor has block={self.block!r}")
        return encode(self.scale, E8M0)

    @property
    def nbytes(self) -> int:
        """Bytes held: codes (packed or not), scales and zero-points."""
        total = self.storage.numel() * self.storage.element_size() + self.scale.numel() * self.scale.element_size()
        if self.zero_point is not None:
            total += self.zero_point.numel() * self.zero_point.element_size()
        return total

    def pack(self, layout: str = "dense") -> "QuantizedTensor":
        """The same tensor with its codes stored by ``bitpack.pack`` along ``pack_dim``."""
        if len(self.shape) == 0:
            raise ValueError("a 0-d QuantizedTensor cannot be packed; quantize x.reshape(1) instead")
        data = bitpack.pack(
            self.codes, self.fmt.bits, dim=self.pack_dim, layout=layout, signed=_is_signed_int(self.fmt), check=False
        )
        return self._replace(data, layout)

    def unpack(self) -> "QuantizedTensor":
        """The same tensor with its codes stored unpacked."""
        return self._replace(self.codes, None)

    def _replace(self, storage, layout):
        return QuantizedTensor(
            storage, self.scale, self.zero_point, fmt=self.fmt, shape=self.shape, dtype=self.dtype, axis=self.axis,
            group_size=self.group_size, block=self.block, layout=layout,
        )

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Values ``scale * grid_value(code)`` shaped like the input, in ``dtype`` (default: the input's).

        Bitwise equal to :func:`fpx.fake_quantize` with the same arguments when ``dtype`` is
        the input's dtype.
        """
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating-point torch.dtype or None, got {dtype!r}")
        geometry = _Geometry(self.shape, self.axis, self.group_size)
        compute = self.scale.dtype
        codes = self._unpacked_codes(torch.int32).reshape(geometry.grouped_shape)
        scale = self.scale.reshape(geometry.scale_keepdim_shape)
        zero_point = None if self.zero_point is None else self.zero_point.reshape(geometry.scale_keepdim_shape)
        grid = _code_values(codes, self.fmt, compute)
        out = _dequantize_grid(grid, scale, zero_point, self.fmt)
        return _saturating_cast(out.reshape(self.shape), self.dtype if dtype is None else dtype)

    def __repr__(self) -> str:
        where = "per-tensor" if self.axis is None else f"axis={self.axis}, group_size={self.group_size}"
        extra = f", block={self.block!r}" if self.block else ""
        packed = f", layout={self.layout!r}" if self.layout else ""
        return f"QuantizedTensor({self.fmt!r}, shape={tuple(self.shape)}, {where}{extra}{packed})"


def dequantize(q: QuantizedTensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``q.dequantize(dtype)``: the values a :class:`QuantizedTensor` stands for.

    >>> import torch, fpx
    >>> q = fpx.quantize(torch.tensor([1.0, -0.5, 0.2]), fpx.INT2, axis=None)
    >>> q.codes.tolist(), fpx.dequantize(q).tolist()
    ([1, 0, 0], [1.0, 0.0, 0.0])
    """
    if not isinstance(q, QuantizedTensor):
        raise TypeError(f"q must be a QuantizedTensor, got {type(q).__name__}")
    return q.dequantize(dtype)


# ---- quantize -----------------------------------------------------------------------------------


def quantize(
    x: torch.Tensor,
    fmt,
    *,
    axis: int | None = -1,
    group_size: int | None = None,
    block: str | None = None,
    clip_search: bool | int = False,
    packed: bool = False,
) -> QuantizedTensor:
    """Quantize ``x`` to ``fmt`` with one scale per tensor, channel, group or MX block.

    Contract:
      - ``x``: a floating-point tensor (float16, bfloat16, float32, float64), any shape.
      - ``fmt``: an :class:`fpx.IntFormat` (INT1..8 symmetric, UINT1..8 with zero-point) or a
        signed :class:`fpx.FloatFormat` (not E8M0, which is a scale format). See the module
        docstring for the exact rules.
      - ``axis``: the dim each scale covers (the dim reduced over), negative allowed; None for
        one scale for the whole tensor. ``group_size=None`` gives per-channel scales: one for
        every index of all the other dims. ``group_size=g`` splits ``axis`` into groups of g
        consecutive elements; ``x.shape[axis]`` must be a multiple of g (no padding).
      - ``block="mx"``: OCP MX scales (float formats only): groups of 32 along ``axis``
        (``group_size`` may override), power-of-two scales ``2**(floor(log2(amax)) -
        fmt.emax)`` clamped to E8M0's range; ``.scale_codes`` gives the E8M0 codes.
      - ``clip_search``: False uses min/max scales. True (11 ratios 1.0, 0.95, ..., 0.5) or
        an int n (n ratios from 1.0 to 0.5) tries ``ratio * amax`` (``ratio * [lo, hi]`` for
        UINT) per group and keeps the ratio with the least squared error. Not with MX.
      - ``packed=True`` stores the codes packed by :mod:`bitpack` (dense layout) along
        ``axis`` (or the last dim for per-tensor scales); see :class:`QuantizedTensor`.
      - Errors (eager only): TypeError for a non-tensor or non-float ``x``, a ``fmt`` that is
        no format, or non-int ``axis``/``group_size``; ValueError for an out-of-range ``axis``,
        a ``group_size`` that is not positive or does not divide ``x.shape[axis]``,
        ``group_size`` without ``axis``, an unknown ``block``, MX with an integer format, an
        unsigned float format, or an empty reduction.

    >>> import torch, fpx
    >>> x = torch.tensor([[-1.0, 0.0, 1.0, 2.0], [0.0, 0.1, 0.2, 0.3]])
    >>> q = fpx.quantize(x, fpx.UINT2)
    >>> q.codes.tolist(), q.zero_point.tolist(), q.scale.flatten().tolist()
    ([[0, 1, 2, 3], [0, 1, 2, 3]], [[1], [0]], [1.0, 0.10000000149011612])
    >>> fpx.quantize(torch.randn(4, 64), fpx.E2M1, block="mx").scale.shape
    torch.Size([4, 2])
    """
    fmt = _constant_format(fmt)  # plain-int fields under torch.compile(dynamic=True), see fpx.convert
    axis, group_size = _check_arguments(x, fmt, axis, group_size, block, clip_search)
    if not isinstance(packed, bool):
        raise TypeError(f"packed must be a bool, got {packed!r}")
    geometry = _Geometry(x.shape, axis, group_size)
    xg = x.to(_compute_dtype(x)).reshape(geometry.grouped_shape)
    scale, zero_point = _choose_scale(xg, fmt, geometry.group_dim, block, clip_search)
    codes = _encode_codes(xg * _reciprocal(scale), zero_point, fmt).reshape(x.shape)
    q = QuantizedTensor(
        codes,
        scale.reshape(geometry.scale_shape),
        None if zero_point is None else zero_point.to(torch.uint8).reshape(geometry.scale_shape),
        fmt=fmt, shape=x.shape, dtype=x.dtype, axis=axis, group_size=group_size, block=block,
    )
    return q.pack() if packed else q


# ---- the machinery shared with fake_quantize ------------------------------------------------------


class _Geometry:
    """How ``x`` is viewed as groups: ``grouped_shape`` has the group elements at ``group_dim``.

    per-tensor: (1, numel), group_dim 1. Otherwise ``S[:a] + (G, g) + S[a+1:]``, group_dim a+1.
    Scales computed with keepdim have ``scale_keepdim_shape``; they are stored as ``scale_shape``.
    """

    def __init__(self, shape, axis, group_size):
        shape = tuple(shape)
        if axis is None:
            self.grouped_shape = (1, math.prod(shape))
            self.group_dim = 1
            self.scale_shape = (1,) * len(shape)
        else:
            groups = shape[axis] // group_size
            self.grouped_shape = shape[:axis] + (groups, group_size) + shape[axis + 1:]
            self.group_dim = axis + 1
            self.scale_shape = shape[:axis] + (groups,) + shape[axis + 1:]
        keep = list(self.grouped_shape)
        keep[self.group_dim] = 1
        self.scale_keepdim_shape = tuple(keep)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    # 16-bit inputs are scaled and rounded in float32: their own precision would blur the grid.
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _is_signed_int(fmt) -> bool:
    return isinstance(fmt, IntFormat) and fmt.signed


def _is_sign_only(fmt) -> bool:
    """INT1: levels {-1, 0} cannot be symmetric, so it quantizes to +-scale (see module doc)."""
    return isinstance(fmt, IntFormat) and fmt.signed and fmt.bits == 1


def _grid_max(fmt) -> float:
    """The largest grid value in code units, which ``amax`` maps to with min/max scales."""
    if isinstance(fmt, FloatFormat):
        return fmt.max
    if _is_sign_only(fmt):
        return 1.0
    return float(fmt.max)


def _choose_scale(xg, fmt, dim, block, clip_search):
    """Scale (and zero-point, float-valued) per group, with keepdim shapes."""
    if block == "mx":
        return _mx_scale(xg.abs().amax(dim, keepdim=True), fmt), None
    if isinstance(fmt, IntFormat) and not fmt.signed:
        low = xg.amin(dim, keepdim=True).clamp(max=0)
        high = xg.amax(dim, keepdim=True).clamp(min=0)
        candidate = lambda ratio: _affine_params(low * ratio, high * ratio, fmt)  # noqa: E731
    else:
        amax = xg.abs().amax(dim, keepdim=True)
        candidate = lambda ratio: (_symmetric_scale(amax * ratio, fmt), None)  # noqa: E731
    if not clip_search:
        return candidate(1.0)
    return _search_clip_ratio(xg, fmt, dim, candidate, _clip_ratios(clip_search))


def _divide(t: torch.Tensor, divisor: float) -> torch.Tensor:
    """``t / divisor``, correctly rounded on every device, eager and compiled.

    Two rewrites to defeat: eager CUDA computes ``tensor / python_scalar`` as ``tensor * (1 /
    scalar)`` (ATen's div_true_kernel_cuda), and inductor, on GPUs, turns a division by a
    constant into a multiplication by its rounded reciprocal; both are often 1 ulp off. So the
    divisor is a tensor that inductor cannot see as a constant (the ``where`` changes no
    quotient: NaN / anything is NaN), and float32 is divided in float64 (see
    :func:`_reciprocal`).
    """
    wide = _widen(t)
    return (wide / torch.where(torch.isnan(wide), wide, divisor)).to(t.dtype)


def _reciprocal(t: torch.Tensor) -> torch.Tensor:
    """``1 / t``, correctly rounded on every device.

    Triton lowers a float32 ``/`` to the approximate div.full.f32 (up to 2 ulp off; 30% of
    random quotients differ from IEEE division), so float32 is divided in float64 (correctly
    rounded on CPU and GPU) and rounded back: with 53 >= 2 * 24 + 2 bits, rounding twice
    gives the correctly rounded quotient. Scales are per group, so this costs next to nothing.
    """
    wide = _widen(t)
    return (1.0 / wide).to(t.dtype)


def _widen(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float64) if t.dtype == torch.float32 else t


def _symmetric_scale(amax, fmt):
    tiny = torch.finfo(amax.dtype).tiny
    return torch.clamp(_divide(amax, _grid_max(fmt)), min=tiny)


def _affine_params(low, high, fmt):
    """MinMaxObserver-style scale and integer zero-point (as floats) for the range [low, high] (low <= 0 <= high)."""
    tiny = torch.finfo(low.dtype).tiny
    scale = torch.clamp(_divide(high - low, float(fmt.max)), min=tiny)
    zero_point = torch.clamp(torch.round(-low * _reciprocal(scale)), 0, fmt.max)
    return scale, zero_point


def _mx_scale(amax, fmt):
    """OCP MX shared scale 2**(floor(log2(amax)) - emax_elem), as a float (exact power of two)."""
    return decode(mx_scale_exponent(amax, fmt), E8M0, dtype=amax.dtype)


def _clip_ratios(clip_search) -> list[float]:
    n = DEFAULT_CLIP_RATIOS if clip_search is True else int(clip_search)
    if n == 1:
        return [1.0]
    return [1.0 - 0.5 * i / (n - 1) for i in range(n)]


def _search_clip_ratio(xg, fmt, dim, candidate, ratios):
    """Per group, the candidate scale (and zero-point) whose fake quantization has the least squared error."""
    best_scale = best_zero_point = best_error = None
    for ratio in ratios:
        scale, zero_point = candidate(ratio)
        grid, _ = _round_to_grid(xg * _reciprocal(scale), zero_point, fmt, mask=False)
        error = (_dequantize_grid(grid, scale, zero_point, fmt) - xg).square().sum(dim, keepdim=True)
        if best_error is None:
            best_scale, best_zero_point, best_error = scale, zero_point, error
            continue
        better = error < best_error  # strict: ties keep the wider range
        best_scale = torch.where(better, scale, best_scale)
        if zero_point is not None:
            best_zero_point = torch.where(better, zero_point, best_zero_point)
        best_error = torch.where(better, error, best_error)
    return best_scale, best_zero_point


def _round_to_grid(v, zero_point, fmt, *, mask: bool = True):
    """Round scaled values ``v`` onto the format's grid (in code units, as floats).

    Returns (grid, in_range): ``in_range`` is True where ``v`` was not clamped/saturated, the
    straight-through estimator's mask. For integers it is torch's rule (the rounded value,
    zero-point added, lies in [min, max]); for floats ``|v| <= max + ulp(max) / 2`` (the
    values that round to a finite code without saturating). ``mask=False`` returns None for
    it: eager code would otherwise spend passes over ``v`` on a mask nobody reads (compiled
    code drops it either way).
    """
    if isinstance(fmt, FloatFormat):
        boundary = fmt.max + 2.0 ** (fmt.emax - fmt.mantissa_bits - 1)
        return round_to(v, fmt), (v.abs() <= boundary) if mask else None
    if _is_sign_only(fmt):
        # Levels -1 and +1 (codes -1 and 0) are 2 apart: "in range" reaches half a step beyond.
        return torch.where(v < 0, -1.0, 0.0).to(v.dtype), (v.abs() <= 2.0) if mask else None
    rounded = torch.round(v)  # round first, then add the zero-point, as torch does (exact)
    if zero_point is not None:
        rounded = rounded + zero_point
    clamped = torch.clamp(rounded, fmt.min, fmt.max)
    # In [min, max] exactly where the clamp changed nothing: one comparison, not two and an
    # AND (a NaN is unequal to itself, so out of range, as it fails both bounds).
    in_range = (clamped == rounded) if mask else None
    # round(-0.3) is -0.0, but an integer code has no sign of zero: keep +0.0, as the codes do.
    return _without_negative_zero(clamped), in_range


def _without_negative_zero(t: torch.Tensor) -> torch.Tensor:
    """``t`` (a fresh tensor, which eager code changes in place) with -0.0 as +0.0.

    Eager: one in-place add of +0.0 (-0 + +0 is +0 under IEEE rounding to nearest; every other
    value is unchanged), one pass and no allocation, where the select took a comparison and a
    select (ATen's CPU select runs lane by lane with a branch: 4 Mi float32 values, one thread,
    a data-dependent mask, 14.8 ms against 1.5 for the add). Compiled: the select, which no
    compiler can drop; an add of zero is one a compiler may fold away under fast-math flags.
    """
    if torch.compiler.is_compiling():
        return torch.where(t == 0, 0.0, t)
    return t.add_(0.0)


def _encode_codes(v, zero_point, fmt):
    """Integer codes of the scaled values ``v``: int8 (INT), uint8 (UINT, float formats)."""
    if isinstance(fmt, FloatFormat):
        return encode(v, fmt)
    grid, _ = _round_to_grid(v, zero_point, fmt, mask=False)
    return grid.to(torch.int8 if fmt.signed else torch.uint8)


def _code_values(codes, fmt, dtype):
    """Grid values (code units, ``dtype``) of integer codes (any integer dtype): the inverse of
    :func:`_encode_codes`."""
    if isinstance(fmt, FloatFormat):
        return _decode_int(codes.to(torch.int32), fmt, dtype)  # fpx.decode without its uint8 check
    return codes.to(dtype)


def _saturating_cast(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``values`` in ``dtype``, finite values beyond its range clamped to its largest finite value.

    A grid point can lie beyond float16's range (UINT levels are ``(code - zero_point) * scale``
    with a rounded zero-point); it saturates instead of becoming inf. NaN stays NaN.
    """
    if values.dtype == dtype:
        return values
    limit = torch.finfo(dtype).max
    if limit < torch.finfo(values.dtype).max:
        values = values.clamp(-limit, limit)
    return values.to(dtype)


def _dequantize_grid(grid, scale, zero_point, fmt):
    """Values of grid points: ``grid * scale``, minus the zero-point (UINT), or ``+-scale`` (INT1).

    The one place the dequantization rule lives (fpx.nn's LowBitLinear calls it too): ``grid``
    holds code values as floats, ``scale``/``zero_point`` broadcast against it. ``scale=None``
    leaves the values unscaled (a scale of 1), for a caller that scales a product instead.
    """
    if _is_sign_only(fmt):
        values = 2.0 * grid + 1.0
    elif zero_point is not None:
        values = grid - zero_point.to(grid.dtype)
    else:
        values = grid
    return values if scale is None else values * scale


def _grid_affine(scale, zero_point, fmt):
    """``(slope, offset)`` with ``_dequantize_grid(grid, scale, zero_point, fmt) == grid * slope + offset``
    up to rounding; ``offset`` is None where it is zero.

    A sum of x * value over a scale group is then ``slope * sum(x * grid) + offset * sum(x)``:
    what LowBitLinear's small-batch forward computes (the same rule as ``_dequantize_grid``).
    """
    if _is_sign_only(fmt):
        return 2.0 * scale, scale
    if zero_point is not None:
        return scale, -zero_point.to(scale.dtype) * scale
    return scale, None


# ---- argument checks (eager only) ---------------------------------------------------------------


def _check_arguments(x, fmt, axis, group_size, block, clip_search):
    """Validate (eager only) and normalize ``axis`` / ``group_size``; return them."""
    if not torch.compiler.is_compiling():
        _check_x_and_fmt(x, fmt, block)
        if clip_search is not False and not (isinstance(clip_search, int) and clip_search >= 1):
            raise ValueError(f"clip_search must be False, True or a positive int, got {clip_search!r}")
        if clip_search is not False and block == "mx":
            raise ValueError("clip_search is not supported with block='mx' (MX scales are fixed by the spec)")
    if axis is None:
        if not torch.compiler.is_compiling():
            if group_size is not None:
                raise ValueError(f"group_size={group_size!r} needs an axis to group along, got axis=None")
            if block is not None:
                raise ValueError(f"block={block!r} needs an axis to group along, got axis=None")
            if x.numel() == 0:
                raise ValueError(f"x is empty (shape {tuple(x.shape)}); there is nothing to take a scale from")
        return None, None
    axis = _normalize_axis(axis, x.ndim)
    if block == "mx" and group_size is None:
        group_size = MX_BLOCK_SIZE
    length = x.shape[axis]
    if group_size is None:
        group_size = length
    elif not torch.compiler.is_compiling():
        _check_group_size(group_size, length, axis)
    if not torch.compiler.is_compiling() and length == 0:
        raise ValueError(f"x has no elements along axis={axis} (shape {tuple(x.shape)}); there is nothing to take a scale from")
    return axis, group_size


def _check_x_and_fmt(x, fmt, block):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"x must have a floating-point dtype, got x.dtype={x.dtype}")
    if not isinstance(fmt, (IntFormat, FloatFormat)):
        raise TypeError(f"fmt must be an fpx.IntFormat or fpx.FloatFormat, got {fmt!r}")
    if isinstance(fmt, FloatFormat) and not (fmt.signed and fmt.has_zero):
        raise ValueError(f"fmt={fmt!r} has no sign or no zero (a scale format); quantize to a signed float format")
    if block not in BLOCKS:
        raise ValueError(f"block must be None or 'mx', got {block!r}")
    if block == "mx" and not isinstance(fmt, FloatFormat):
        raise ValueError(f"block='mx' needs a float format (MXFP8/6/4), got fmt={fmt!r}")


def _normalize_axis(axis, ndim: int) -> int:
    if torch.compiler.is_compiling():
        return axis % ndim
    if not _is_int(axis):
        raise TypeError(f"axis must be an int or None, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for a tensor with {ndim} dimensions")
    return axis % ndim


def _check_group_size(group_size, length: int, axis: int) -> None:
    if not _is_int(group_size):
        raise TypeError(f"group_size must be an int or None, got {group_size!r}")
    if group_size < 1:
        raise ValueError(f"group_size must be positive, got group_size={group_size}")
    if length % group_size:
        raise ValueError(
            f"group_size={group_size} does not divide x.shape[{axis}]={length}; "
            "pad x along axis to a multiple of group_size, or pick a divisor"
        )
