"""fpx.quantize / QuantizedTensor: shapes, error bounds, torch agreement, MX scales, packing, errors.

The error bounds are computed from the formats' definitions (integer steps; float ulps from
exponent and mantissa bits), never from the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bitpack
import fpx
from fpx.convert import decode

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
INT_FMTS = fpx.formats.INT_FORMATS + fpx.formats.UINT_FORMATS
FLOAT_FMTS = (fpx.E4M3, fpx.E5M2, fpx.E3M2, fpx.E2M3, fpx.E2M1)
ALL_FMTS = INT_FMTS + FLOAT_FMTS


# ---- shared strategies and references (test_fake_quantize imports these) ----------------------


@st.composite
def layouts(draw, max_dims: int = 3, allow_per_tensor: bool = True, group_sizes=(1, 2, 4, 8, 16, 32)):
    """(shape, axis, group_size): axis may be negative or None; group_size divides shape[axis]."""
    ndim = draw(st.integers(1, max_dims))
    shape = [draw(st.sampled_from((1, 2, 3, 5, 8))) for _ in range(ndim)]
    if allow_per_tensor and draw(st.integers(0, 5)) == 0:
        return tuple(shape), None, None
    axis = draw(st.integers(-ndim, ndim - 1))
    mode = draw(st.sampled_from(("channel", "group")))
    if mode == "channel":
        shape[axis] = draw(st.integers(1, 40))
        return tuple(shape), axis, None
    group = draw(st.sampled_from(group_sizes))
    shape[axis] = group * draw(st.integers(1, 4))
    return tuple(shape), axis, group


@st.composite
def tensors(draw, shape, dtype):
    """Random data of several kinds: normal, heavy-tailed, with zeros, constant, all zero, tiny."""
    seed = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(("normal", "normal", "heavy", "zeros", "constant", "allzero", "tiny", "positive")))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if kind == "heavy":
        x = x * torch.exp(3 * torch.randn(shape, generator=g, dtype=torch.float64))
    elif kind == "zeros":
        x = torch.where(torch.rand(shape, generator=g) < 0.5, 0.0, x)
    elif kind == "constant":
        x = torch.full(shape, float(x.reshape(-1)[0]), dtype=torch.float64)
    elif kind == "allzero":
        x = torch.zeros(shape, dtype=torch.float64)
    elif kind == "tiny":
        x = x * 1e-30
    elif kind == "positive":
        x = x.abs() + 3.0
    big = torch.finfo(dtype).max  # finite inputs only: non-finite ones give unspecified groups
    return x.clamp(-big, big).to(dtype)


def broadcast_scale(q: fpx.QuantizedTensor, t: torch.Tensor) -> torch.Tensor:
    """q.scale (or q.zero_point) repeated to q.shape: each element's own scale."""
    if q.axis is None:
        return t.reshape(()).expand(q.shape)
    return t.repeat_interleave(q.group_size, dim=q.axis)


def float_ulp(v: torch.Tensor, fmt) -> torch.Tensor:
    """The gap between fmt's neighbours around |v| (float64), from the format's definition."""
    v = v.double().abs()
    _, exponent = torch.frexp(v)  # v = m * 2**exponent, m in [0.5, 1)
    e = torch.clamp(exponent - 1, min=1 - fmt.bias)  # subnormals share the smallest exponent
    return torch.pow(2.0, (e - fmt.mantissa_bits).double())


def expected_groups(q, shape, axis, group_size):
    """Number of groups (scales) quantize should make."""
    if axis is None:
        return 1
    return math.prod(shape) // (group_size or shape[axis])


# ---- fields and shapes ---------------------------------------------------------------------------


SHAPE_CASES = [
    (dict(axis=None), (1, 1)),
    (dict(axis=-1), (6, 1)),
    (dict(axis=1), (6, 1)),
    (dict(axis=0), (1, 64)),
    (dict(axis=-1, group_size=16), (6, 4)),
    (dict(axis=0, group_size=3), (2, 64)),
]
MX_SHAPE_CASES = [(dict(axis=-1, block="mx"), (6, 2)), (dict(axis=0, block="mx", group_size=2), (3, 64))]


@pytest.mark.parametrize(
    "kwargs, scale_shape, fmt",
    [(k, s, f) for k, s in SHAPE_CASES for f in (fpx.INT4, fpx.UINT4, fpx.E2M1)]
    + [(k, s, fpx.E2M1) for k, s in MX_SHAPE_CASES],
)
def test_field_shapes_and_dtypes(kwargs, scale_shape, fmt):
    x = torch.randn(6, 64, dtype=torch.bfloat16)
    q = fpx.quantize(x, fmt, **kwargs)
    assert q.codes.shape == x.shape
    assert q.codes.dtype == (torch.int8 if fmt == fpx.INT4 else torch.uint8)
    assert q.scale.shape == scale_shape and q.scale.dtype == torch.float32
    assert bool((q.scale > 0).all()) and bool(q.scale.isfinite().all())
    if fmt == fpx.UINT4:
        assert q.zero_point.shape == scale_shape and q.zero_point.dtype == torch.uint8
    else:
        assert q.zero_point is None
    assert q.shape == x.shape and q.dtype == torch.bfloat16
    assert q.dequantize().dtype == torch.bfloat16 and q.dequantize(torch.float64).dtype == torch.float64
    assert q.axis == (None if kwargs["axis"] is None else kwargs["axis"] % 2)
    assert "QuantizedTensor(fpx." in repr(q)


def test_group_size_and_per_channel_metadata():
    x = torch.randn(4, 96)
    assert fpx.quantize(x, fpx.INT4).group_size == 96
    assert fpx.quantize(x, fpx.INT4, group_size=32).group_size == 32
    assert fpx.quantize(x, fpx.E4M3, block="mx").group_size == 32
    per_tensor = fpx.quantize(x, fpx.INT4, axis=None)
    assert per_tensor.axis is None and per_tensor.group_size is None


def test_per_channel_scale_is_amax_over_the_axis():
    x = torch.tensor([[1.0, -7.0, 3.5], [0.5, 0.25, -0.125]])
    rows = fpx.quantize(x, fpx.INT4, axis=-1)
    assert torch.equal(rows.scale, torch.tensor([[7.0], [0.5]]) / 7)
    cols = fpx.quantize(x, fpx.INT4, axis=0)
    assert torch.equal(cols.scale, torch.tensor([[1.0, 7.0, 3.5]]) / 7)


def test_uint_zero_point_minmax_like_torch_observer():
    # range [min(x, 0), max(x, 0)] = [-1, 2]; scale 3/15; zero_point round(1 / 0.2) = 5
    x = torch.tensor([[-1.0, 0.0, 2.0, 0.4]])
    q = fpx.quantize(x, fpx.UINT4)
    assert q.scale.item() == pytest.approx(0.2) and q.zero_point.item() == 5
    assert q.codes.tolist() == [[0, 5, 15, 7]]
    # all positive: zero stays in the range, so the zero-point is 0
    assert fpx.quantize(torch.tensor([[3.0, 4.0]]), fpx.UINT8).zero_point.item() == 0


def test_int1_is_sign_quantization():
    x = torch.tensor([[0.5, -2.0, 0.0, -0.0, 1.0, -0.1]])
    q = fpx.quantize(x, fpx.INT1)
    assert q.scale.item() == 2.0
    assert q.codes.tolist() == [[0, -1, 0, 0, 0, -1]]
    assert q.dequantize().tolist() == [[2.0, -2.0, 2.0, 2.0, 2.0, -2.0]]


@pytest.mark.parametrize("fmt", [fpx.INT1, fpx.INT4, fpx.UINT3, fpx.E4M3, fpx.E2M1])
@pytest.mark.parametrize("fill", [0.0, -0.0, 1e-45, 3.0, -5e-39])
def test_constant_and_zero_groups_give_finite_scales(fmt, fill):
    x = torch.full((3, 8), fill)
    q = fpx.quantize(x, fmt, group_size=4)
    assert bool((q.scale > 0).all()) and bool(q.scale.isfinite().all())
    out = q.dequantize()
    assert bool(out.isfinite().all())
    step = 2 * q.scale if fmt == fpx.INT1 else q.scale
    assert bool(((out - x).abs() <= step.repeat_interleave(4, dim=1) / 2 + 1e-45).all())
    if fill == 0.0:
        assert bool((out == 0).all()) or fmt == fpx.INT1


def test_float64_input_is_computed_in_float64():
    x = torch.randn(4, 32, dtype=torch.float64)
    q = fpx.quantize(x, fpx.INT8, group_size=16)
    assert q.scale.dtype == torch.float64 and q.dequantize().dtype == torch.float64
    assert torch.equal(q.dequantize(), fpx.fake_quantize(x, fpx.INT8, group_size=16))


# ---- error bounds --------------------------------------------------------------------------------


@given(st.data())
def test_integer_error_is_at_most_half_a_step(data):
    shape, axis, group_size = data.draw(layouts())
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES))
    fmt = data.draw(st.sampled_from(INT_FMTS))
    x = data.draw(tensors(shape, dtype))
    q = fpx.quantize(x, fmt, axis=axis, group_size=group_size)
    assert q.scale.numel() == expected_groups(q, shape, axis, group_size)
    codes = q.codes.long()
    assert bool((codes >= fmt.min).all()) and bool((codes <= fmt.max).all())
    step = broadcast_scale(q, q.scale).double() * (2.0 if fmt == fpx.INT1 else 1.0)
    error = (x.double() - q.dequantize().double()).abs()
    # half a step, plus float32 slack for the scale arithmetic and the output dtype's rounding
    bound = step / 2 * (1 + 2**-16) + x.double().abs() * torch.finfo(dtype).eps + 1e-300
    assert bool((error <= bound).all()), (error - bound).max()


@given(st.data())
def test_float_error_is_at_most_half_an_ulp_of_the_scaled_value(data):
    shape, axis, group_size = data.draw(layouts())
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES))
    fmt = data.draw(st.sampled_from(FLOAT_FMTS))
    x = data.draw(tensors(shape, dtype))
    q = fpx.quantize(x, fmt, axis=axis, group_size=group_size)
    scale = broadcast_scale(q, q.scale)
    scaled = x.float() * (1.0 / scale)  # the scaled value, in quantize's compute dtype
    grid = decode(q.codes, fmt, dtype=torch.float64)
    assert bool((grid.abs() <= fmt.max).all())
    half_ulp = float_ulp(scaled, fmt) / 2
    inside = scaled.double().abs() <= fmt.max
    assert bool(((scaled.double() - grid).abs() <= half_ulp)[inside].all())
    # min/max scales put amax at fmt.max up to one float32 rounding: saturation is tiny
    assert bool((grid[~inside].abs() == fmt.max).all())
    assert bool((scaled.double().abs()[~inside] <= fmt.max * (1 + 2**-20)).all())
    # and back in x's units (output rounding to x's dtype aside)
    error = (x.double() - q.dequantize().double()).abs()
    bound = scale.double() * (half_ulp + fmt.max * 2**-20) * (1 + 2**-20) + x.double().abs() * torch.finfo(dtype).eps
    assert bool((error <= bound + 1e-300).all())


@given(st.data())
def test_at_most_2_to_the_bits_values_per_group(data):
    shape, axis, group_size = data.draw(layouts(max_dims=2, allow_per_tensor=False, group_sizes=(16, 32)))
    fmt = data.draw(st.sampled_from((fpx.INT1, fpx.INT2, fpx.UINT2, fpx.INT3, fpx.E2M1, fpx.E3M2)))
    x = data.draw(tensors(shape, torch.float32)) * 10
    q = fpx.quantize(x, fmt, axis=axis, group_size=group_size)
    values = q.dequantize().movedim(q.axis, -1)
    values = values.reshape(-1, q.group_size)
    for group in values:
        assert group.unique().numel() <= 2**fmt.bits


# ---- agreement with torch's fake quantization ----------------------------------------------------


def _torch_fake_quantize(q: fpx.QuantizedTensor, x: torch.Tensor) -> torch.Tensor:
    """torch.fake_quantize_per_channel_affine with q's scales / zero-points (2-D x, axis -1)."""
    n, k = x.shape
    scale = q.scale.reshape(-1)
    zero_point = torch.zeros_like(scale, dtype=torch.int32) if q.zero_point is None else q.zero_point.reshape(-1).int()
    rows = x.reshape(-1, q.group_size)  # one torch "channel" per group
    out = torch.fake_quantize_per_channel_affine(rows, scale, zero_point, 0, q.fmt.min, q.fmt.max)
    return out.reshape(n, k)


@pytest.mark.parametrize("fmt", [f for f in INT_FMTS if f != fpx.INT1])
@pytest.mark.parametrize("group_size", [None, 16])
@pytest.mark.parametrize("clip_search", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_torch_fake_quantize_per_channel(fmt, group_size, clip_search, dtype):
    x = (torch.randn(32, 64) * torch.rand(32, 1) * 4).to(dtype)
    x[3] = 0.0  # an all-zero row
    q = fpx.quantize(x, fmt, group_size=group_size, clip_search=clip_search)
    expected = _torch_fake_quantize(q, x)
    assert torch.equal(q.dequantize(), expected)
    assert torch.equal(fpx.fake_quantize(x, fmt, group_size=group_size, clip_search=clip_search), expected)


@pytest.mark.parametrize("fmt", [fpx.INT8, fpx.UINT8, fpx.INT4, fpx.UINT4])
def test_matches_torch_fake_quantize_per_tensor(fmt):
    x = torch.randn(16, 48) * 3 + 0.5
    q = fpx.quantize(x, fmt, axis=None)
    zero_point = torch.zeros(1, dtype=torch.int32) if q.zero_point is None else q.zero_point.reshape(1).int()
    expected = torch.fake_quantize_per_tensor_affine(x, q.scale.reshape(1), zero_point, fmt.min, fmt.max)
    assert torch.equal(q.dequantize(), expected)


def test_matches_torch_per_channel_along_axis_0_of_a_3d_tensor():
    x = torch.randn(40, 3, 7)
    q = fpx.quantize(x, fpx.UINT8, axis=0)  # a scale for each (j, k), reducing over dim 0
    flat = x.reshape(40, 21).t()
    expected = torch.fake_quantize_per_channel_affine(
        flat, q.scale.reshape(-1), q.zero_point.reshape(-1).int(), 0, 0, 255
    ).t().reshape(40, 3, 7)
    assert torch.equal(q.dequantize(), expected)


# ---- MX ------------------------------------------------------------------------------------------


@given(st.data())
def test_mx_scales_follow_ocp_mx(data):
    fmt = data.draw(st.sampled_from(FLOAT_FMTS))
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES))
    rows = data.draw(st.integers(1, 4))
    x = data.draw(tensors((rows, 64), dtype))
    q = fpx.quantize(x, fmt, block="mx")
    amax = x.double().abs().reshape(rows, 2, 32).amax(-1)
    _, exponent = torch.frexp(amax)
    expected_log2 = torch.where(amax == 0, -127, torch.clamp(exponent - 1 - fmt.emax, -127, 127))
    assert torch.equal(q.scale.double(), torch.pow(2.0, expected_log2.double()))
    assert torch.equal(q.scale_codes.long(), expected_log2 + 127)
    # elements: nearest (even) value of x / X; beyond fmt.max they saturate (as the spec says)
    scaled = x.double() / broadcast_scale(q, q.scale).double()  # exact: X is a power of two
    grid = decode(q.codes, fmt, dtype=torch.float64)
    inside = scaled.abs() <= fmt.max
    assert bool(((scaled - grid).abs() <= float_ulp(scaled, fmt) / 2)[inside].all())
    assert bool((grid.abs()[~inside] == fmt.max).all())
    assert bool((scaled.abs() < 2 * 2.0**fmt.emax).all())  # X keeps every element under 2**(emax+1)


def test_mx_e2m1_known_block():
    x = torch.tensor([[6.0, -3.0, 0.5, 1.75] + [0.0] * 28])
    q = fpx.quantize(x, fpx.E2M1, block="mx")
    assert q.scale.item() == 1.0 and q.scale_codes.item() == 127  # floor(log2 6) - emax(E2M1) = 2 - 2
    assert q.dequantize()[0, :4].tolist() == [6.0, -3.0, 0.5, 2.0]


def test_scale_codes_needs_mx():
    with pytest.raises(ValueError, match="block='mx'"):
        fpx.quantize(torch.randn(2, 32), fpx.E4M3).scale_codes


# ---- clip search ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [fpx.INT3, fpx.UINT3, fpx.E2M1, fpx.INT1])
def test_clip_search_never_increases_the_error(fmt):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 128, generator=g) ** 3  # heavy tails: clipping pays off
    plain = fpx.quantize(x, fmt, group_size=32)
    searched = fpx.quantize(x, fmt, group_size=32, clip_search=True)
    err = lambda q: (q.dequantize() - x).square().reshape(64, 4, 32).sum(-1)  # noqa: E731
    assert bool((err(searched) <= err(plain)).all())
    assert err(searched).sum() < 0.97 * err(plain).sum()
    assert bool((searched.scale <= plain.scale * (1 + 1e-6)).all())
    assert bool((searched.scale >= plain.scale * 0.5 * (1 - 1e-6)).all())


def test_clip_search_count_and_one_ratio_is_minmax():
    x = torch.randn(8, 64)
    assert torch.equal(fpx.quantize(x, fpx.INT4, clip_search=1).scale, fpx.quantize(x, fpx.INT4).scale)
    assert fpx.quantize(x, fpx.INT4, clip_search=5).scale.shape == (8, 1)


# ---- packed storage ------------------------------------------------------------------------------


@given(st.data())
def test_packed_storage_round_trips(data):
    shape, axis, group_size = data.draw(layouts())
    fmt = data.draw(st.sampled_from(ALL_FMTS))
    layout = data.draw(st.sampled_from(("dense", "padded")))
    x = data.draw(tensors(shape, torch.float32))
    q = fpx.quantize(x, fmt, axis=axis, group_size=group_size)
    p = q.pack(layout)
    dim = q.pack_dim
    assert p.storage.dtype == torch.uint8
    assert p.storage.shape[dim] == bitpack.packed_size(shape[dim], fmt.bits, layout)
    assert torch.equal(p.codes, q.codes) and p.codes.dtype == q.codes.dtype
    assert torch.equal(p.dequantize(), q.dequantize())
    assert torch.equal(p.unpack().storage, q.codes)
    if layout == "dense":
        assert torch.equal(fpx.quantize(x, fmt, axis=axis, group_size=group_size, packed=True).storage, p.storage)


def test_packed_e2m1_puts_element_0_in_the_low_nibble():
    q = fpx.quantize(torch.tensor([[0.5, -6.0, 1.0, 0.0]]), fpx.E2M1, axis=-1, packed=True)
    assert q.storage.tolist() == [[0x1 | (0xF << 4), 0x2 | (0x0 << 4)]]
    assert q.nbytes == 2 + 4


def test_packed_int4_weight_along_k():
    w = torch.randn(16, 128)
    q = fpx.quantize(w, fpx.INT4, group_size=32, packed=True)
    assert q.storage.shape == (16, 64) and q.scale.shape == (16, 4)
    assert torch.equal(bitpack.unpack(q.storage, 4, 128, signed=True), q.codes)


# ---- compile -------------------------------------------------------------------------------------


def test_quantize_and_dequantize_compile_fullgraph():
    from tests.codegen import compile_and_code, kernel_count

    x = torch.randn(32, 128)
    eager = fpx.quantize(x, fpx.UINT4, group_size=32, packed=True)
    compiled, source = compile_and_code(lambda t: fpx.quantize(t, fpx.UINT4, group_size=32, packed=True), x)
    assert torch.equal(compiled.storage, eager.storage)
    assert torch.equal(compiled.scale, eager.scale) and torch.equal(compiled.zero_point, eager.zero_point)
    out, source = compile_and_code(lambda q: q.dequantize(torch.bfloat16), eager)
    assert torch.equal(out, eager.dequantize(torch.bfloat16))
    assert kernel_count(source, "cpu") == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scales_are_correctly_rounded_quotients(dtype):
    """scale = amax / 7 and its reciprocal are IEEE-rounded (computed in float64 for float32 input:
    CUDA's eager tensor / scalar and Triton's float32 division are not)."""
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(0), dtype=dtype)
    q = fpx.quantize(x, fpx.INT4, group_size=32)
    amax = x.abs().unflatten(1, (8, 32)).amax(-1)
    exact = (amax.double() / 7).to(dtype)  # float64 then float32: correctly rounded (53 >= 2 * 24 + 2)
    assert torch.equal(q.scale, exact)


CUDA_QUANTIZE_CASES = [
    (fpx.INT4, dict(group_size=32)),
    (fpx.UINT4, dict()),
    (fpx.INT8, dict(axis=0)),
    (fpx.E4M3, dict(axis=None)),
    (fpx.E2M1, dict(block="mx")),
]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("fmt, kwargs", CUDA_QUANTIZE_CASES, ids=[f"{f.name}-{k}" for f, k in CUDA_QUANTIZE_CASES])
def test_cuda_quantize_matches_cpu(fmt, kwargs, dtype):
    """Eager and compiled CUDA give the CPU's codes, scales and zero-points bit for bit."""
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(0)).to(dtype)
    expected = fpx.quantize(x, fmt, **kwargs)
    quantize = lambda t: fpx.quantize(t, fmt, **kwargs)  # noqa: E731
    for q in (quantize(x.cuda()), torch.compile(quantize, fullgraph=True)(x.cuda())):
        assert torch.equal(q.codes.cpu(), expected.codes)
        assert torch.equal(q.scale.cpu().view(torch.uint8), expected.scale.view(torch.uint8))
        if expected.zero_point is not None:
            assert torch.equal(q.zero_point.cpu(), expected.zero_point)
        assert torch.equal(q.dequantize().cpu().view(torch.uint8), expected.dequantize().view(torch.uint8))


# ---- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: fpx.quantize(torch.randn(4, 30), fpx.INT4, group_size=8), ValueError, r"group_size=8 .*x.shape\[1\]=30"),
        (lambda: fpx.quantize(torch.randn(4, 32), fpx.INT4, group_size=0), ValueError, "group_size must be positive, got group_size=0"),
        (lambda: fpx.quantize(torch.randn(4, 32), fpx.INT4, group_size=8.0), TypeError, "group_size must be an int or None, got 8.0"),
        (lambda: fpx.quantize(torch.randn(4, 32), fpx.INT4, axis=2), ValueError, "axis=2 is out of range"),
        (lambda: fpx.quantize(torch.randn(4, 32), fpx.INT4, axis=-3), ValueError, "axis=-3 is out of range"),
        (lambda: fpx.quantize(torch.randn(4, 32), fpx.INT4, axis="rows"), TypeError, "axis must be an int or None, got 'rows'"),
        (lambda: fpx.quantize(torch.randn(4, 32), fpx.INT4, axis=None, group_size=8), ValueError, "group_size=8 needs an axis"),
        (lambda: fpx.quantize(torch.arange(8), fpx.INT4), TypeError, "x must have a floating-point dtype, got x.dtype=torch.int64"),
        (lambda: fpx.quantize([1.0, 2.0], fpx.INT4), TypeError, "x must be a torch.Tensor, got list"),
        (lambda: fpx.quantize(torch.randn(4), "int4"), TypeError, "fmt must be an fpx.IntFormat or fpx.FloatFormat, got 'int4'"),
        (lambda: fpx.quantize(torch.randn(4), fpx.E8M0), ValueError, "fmt=fpx.E8M0"),
        (lambda: fpx.quantize(torch.randn(4, 32), fpx.INT4, block="mx"), ValueError, "block='mx' needs a float format.*fpx.INT4"),
        (lambda: fpx.quantize(torch.randn(4, 32), fpx.E2M1, block="nv"), ValueError, "block must be None or 'mx', got 'nv'"),
        (lambda: fpx.quantize(torch.randn(4, 48), fpx.E2M1, block="mx"), ValueError, r"group_size=32 .*x.shape\[1\]=48"),
        (lambda: fpx.quantize(torch.randn(4, 32), fpx.E2M1, block="mx", clip_search=True), ValueError, "clip_search"),
        (lambda: fpx.quantize(torch.randn(4, 32), fpx.INT4, clip_search=-2), ValueError, "clip_search must be .* got -2"),
        (lambda: fpx.quantize(torch.randn(4, 0), fpx.INT4), ValueError, "no elements along axis=1"),
        (lambda: fpx.quantize(torch.randn(0, 3), fpx.INT4, axis=None), ValueError, "x is empty"),
        (lambda: fpx.quantize(torch.tensor(1.0), fpx.INT4), ValueError, "axis=-1 is out of range"),
        (lambda: fpx.dequantize(torch.randn(3)), TypeError, "q must be a QuantizedTensor, got Tensor"),
        (lambda: fpx.dequantize(fpx.quantize(torch.randn(4), fpx.INT4), torch.int32), TypeError,
         "dtype must be a floating-point torch.dtype or None, got torch.int32"),
        (lambda: fpx.quantize(torch.randn(4), fpx.INT4).dequantize("float16"), TypeError, "dtype must be .* got 'float16'"),
        (lambda: fpx.quantize(torch.randn(4, 32), fpx.INT4, packed="yes"), TypeError, "packed must be a bool, got 'yes'"),
        (lambda: fpx.quantize(torch.randn(4, 32), fpx.INT4, packed=1), TypeError, "packed must be a bool, got 1"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_zero_dim_input_per_tensor():
    q = fpx.quantize(torch.tensor(-3.0), fpx.INT8, axis=None)
    assert q.scale.shape == () and q.dequantize().item() == -3.0
    with pytest.raises(ValueError, match="0-d"):
        q.pack()
