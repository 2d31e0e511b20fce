"""fpx.fake_quantize: equality with quantize().dequantize(), idempotence, straight-through
gradients (against torch's fake quantization), compile (forward and backward) and codegen."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fpx
from tests.codegen import compile_and_code, kernel_count
from tests.fpx.test_quantize import (
    ALL_FMTS,
    FLOAT_DTYPES,
    FLOAT_FMTS,
    INT_FMTS,
    broadcast_scale,
    layouts,
    tensors,
)

BIT_VIEW = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float64: torch.int64}


def assert_bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal bit patterns (so -0.0 != 0.0 and NaN == NaN), same dtype and shape."""
    assert a.dtype == b.dtype and a.shape == b.shape
    assert torch.equal(a.contiguous().view(BIT_VIEW[a.dtype]), b.contiguous().view(BIT_VIEW[b.dtype]))


@st.composite
def configs(draw):
    """(x, fmt, kwargs) covering every format, granularity, dtype, clip search and MX."""
    shape, axis, group_size = draw(layouts())
    fmt = draw(st.sampled_from(ALL_FMTS))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    kwargs = dict(axis=axis, group_size=group_size)
    if isinstance(fmt, fpx.FloatFormat) and axis is not None and draw(st.booleans()):
        kwargs["block"] = "mx"
        kwargs["group_size"] = group_size or shape[axis]  # MX blocks of any size here, not only 32
    elif draw(st.integers(0, 3)) == 0:
        kwargs["clip_search"] = draw(st.sampled_from((True, 3)))
    return draw(tensors(shape, dtype)), fmt, kwargs


# ---- forward -------------------------------------------------------------------------------------


@given(configs())
def test_equals_quantize_then_dequantize_bitwise(config):
    x, fmt, kwargs = config
    out = fpx.fake_quantize(x, fmt, **kwargs)
    assert_bitwise_equal(out, fpx.quantize(x, fmt, **kwargs).dequantize())
    # the same with autograd recording (the straight-through Function's forward)
    assert_bitwise_equal(fpx.fake_quantize(x.clone().requires_grad_(), fmt, **kwargs).detach(), out)


@given(configs())
def test_idempotent(config):
    """fq(fq(x)) == fq(x) bitwise for symmetric integers, INT1, floats and MX.

    UINT is not exactly idempotent: the range of fq(x) is [-zero_point, max_code - zero_point]
    * scale, rounded, so the re-derived scale moves by an ulp or so (and in bf16/fp16, whose
    rounding of fq(x) is coarser, a code can move by one step). The codes survive in float32.
    """
    x, fmt, kwargs = config
    kwargs.pop("clip_search", None)  # a clipped scale is re-searched on fq(x): not a fixed point
    once = fpx.fake_quantize(x, fmt, **kwargs)
    twice = fpx.fake_quantize(once, fmt, **kwargs)
    if not (isinstance(fmt, fpx.IntFormat) and not fmt.signed):
        assert_bitwise_equal(twice, once)
        return
    q_once, q_twice = fpx.quantize(x, fmt, **kwargs), fpx.quantize(once, fmt, **kwargs)
    step = broadcast_scale(q_once, q_once.scale).double()
    slack = once.double().abs() * torch.finfo(x.dtype).eps * 2
    if x.dtype == torch.float32:
        assert torch.equal(q_twice.codes, q_once.codes)
        assert bool(((twice.double() - once.double()).abs() <= step * 1e-5 + slack).all())
    else:
        assert bool(((twice.double() - once.double()).abs() <= step * 1.0001 + slack).all())


# ---- straight-through gradient -------------------------------------------------------------------


def _expected_mask(x: torch.Tensor, q: fpx.QuantizedTensor) -> torch.Tensor:
    """In-range mask from the definitions: torch's integer rule, the float format's rounding range."""
    fmt = q.fmt
    scaled = x.float() * (1.0 / broadcast_scale(q, q.scale))
    if isinstance(fmt, fpx.FloatFormat):
        top_half_ulp = 2.0 ** (fmt.emax - fmt.mantissa_bits - 1)
        return scaled.abs() <= fmt.max + top_half_ulp
    if fmt == fpx.INT1:
        return scaled.abs() <= 2.0  # levels +-1, two apart: half a step beyond them
    rounded = torch.round(scaled)
    if q.zero_point is not None:
        rounded = rounded + broadcast_scale(q, q.zero_point).float()
    return (rounded >= fmt.min) & (rounded <= fmt.max)


@given(configs(), st.booleans())
def test_gradient_is_one_inside_and_zero_where_clamped(config, compare_upstream):
    x, fmt, kwargs = config
    x = x.clone().requires_grad_()
    out = fpx.fake_quantize(x, fmt, **kwargs)
    upstream = torch.randn(x.shape, dtype=x.dtype) if compare_upstream else torch.ones_like(x)
    out.backward(upstream)
    assert x.grad.dtype == x.dtype and out.dtype == x.dtype
    mask = _expected_mask(x.detach(), fpx.quantize(x.detach(), fmt, **kwargs))
    assert torch.equal(x.grad, torch.where(mask, upstream, 0))
    # min/max scales clamp nothing, except UINT (a rounded zero-point can push an extreme half a
    # step out) and MX (the spec's floor(log2(amax)) lets the largest elements saturate)
    unsigned = isinstance(fmt, fpx.IntFormat) and not fmt.signed
    if not (kwargs.get("clip_search") or kwargs.get("block") or unsigned):
        assert bool(mask.all())


@pytest.mark.parametrize("fmt", [fpx.INT8, fpx.UINT8, fpx.INT4, fpx.UINT4, fpx.INT2])
@pytest.mark.parametrize("group_size", [None, 16])
def test_gradient_matches_torch_fake_quantize(fmt, group_size):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(24, 64, generator=g) ** 3  # heavy tails: clip_search clamps them...
    x = torch.where(x.abs() > 2, x.abs(), x).requires_grad_()  # ...on the positive side (INT4 has -8)
    upstream = torch.randn(24, 64, generator=g)
    out = fpx.fake_quantize(x, fmt, group_size=group_size, clip_search=True)
    out.backward(upstream)
    q = fpx.quantize(x.detach(), fmt, group_size=group_size, clip_search=True)
    reference = x.detach().reshape(-1, q.group_size).clone().requires_grad_()
    zero_point = torch.zeros(q.scale.numel(), dtype=torch.int32) if q.zero_point is None else q.zero_point.reshape(-1).int()
    expected = torch.fake_quantize_per_channel_affine(reference, q.scale.reshape(-1), zero_point, 0, fmt.min, fmt.max)
    expected.backward(upstream.reshape(reference.shape))
    assert torch.equal(out.detach(), expected.detach().reshape(24, 64))
    assert torch.equal(x.grad, reference.grad.reshape(24, 64))
    clamped = int((x.grad == 0).sum())
    assert clamped < x.numel() // 4
    if fmt.bits <= 4:
        assert clamped > 0  # low-bit grids gain from clipping the tails; 8-bit ones keep them here


def test_float_gradient_zero_only_beyond_the_rounding_range():
    # E2M1: max 6, top ulp 2, so |x / scale| <= 7 passes; clip_search shrinks the scales of
    # this heavy-tailed data, and its tails clip
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(16, 64, generator=g) ** 3).requires_grad_()
    fpx.fake_quantize(x, fpx.E2M1, group_size=32).sum().backward()
    assert bool((x.grad == 1).all())
    x.grad = None
    fpx.fake_quantize(x, fpx.E2M1, group_size=32, clip_search=True).sum().backward()
    q = fpx.quantize(x.detach(), fpx.E2M1, group_size=32, clip_search=True)
    assert torch.equal(x.grad, (x.detach().abs() * (1.0 / broadcast_scale(q, q.scale)) <= 7.0).float())
    assert 0 < int((x.grad == 0).sum()) < x.numel() // 8


def test_no_autograd_function_without_grad():
    x = torch.randn(4, 8, requires_grad=True)
    with torch.no_grad():
        assert fpx.fake_quantize(x, fpx.INT4).grad_fn is None
    assert fpx.fake_quantize(x, fpx.INT4).grad_fn is not None


# ---- compile and codegen -------------------------------------------------------------------------

# (fmt, shape, dtype, kwargs): each compiles to ONE fused CPU kernel (the amax/min reduction and
# the elementwise rounding share the loop over the group), per-tensor and along dim 0 included.
SINGLE_KERNEL_CASES = [
    (fpx.INT4, (64, 256), torch.float32, dict(group_size=32)),
    (fpx.UINT4, (64, 256), torch.float32, dict()),
    (fpx.INT8, (64, 256), torch.float32, dict(axis=0)),
    (fpx.INT4, (64, 256), torch.bfloat16, dict(group_size=128)),
    (fpx.E4M3, (64, 256), torch.float32, dict(axis=None)),
    (fpx.E2M1, (64, 256), torch.bfloat16, dict(block="mx")),
    (fpx.E3M2, (4, 64, 48), torch.float16, dict(axis=1, group_size=16)),
    (fpx.UINT3, (32, 128), torch.float32, dict(group_size=32, clip_search=True)),
]


def _case_id(case):
    fmt, shape, dtype, kwargs = case
    return f"{fmt.name}-{'x'.join(map(str, shape))}-{str(dtype)[6:]}-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


@pytest.mark.parametrize("case", SINGLE_KERNEL_CASES, ids=_case_id)
def test_forward_compiles_to_one_kernel_and_matches_eager(case):
    fmt, shape, dtype, kwargs = case
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    out, source = compile_and_code(lambda t: fpx.fake_quantize(t, fmt, **kwargs), x)
    assert kernel_count(source, "cpu") == 1
    assert_bitwise_equal(out, fpx.fake_quantize(x, fmt, **kwargs))


@pytest.mark.parametrize("fmt, kwargs", [(fpx.UINT4, dict(group_size=32)), (fpx.E2M1, dict(block="mx"))])
def test_forward_and_backward_compile_fullgraph(fmt, kwargs):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 64, generator=g)
    inputs = torch.randn(8, 64, generator=g)

    def loss_fn(weight, inp):
        return (inp @ fpx.fake_quantize(weight, fmt, **kwargs).t()).square().sum()

    w_eager = w.clone().requires_grad_()
    loss_fn(w_eager, inputs).backward()
    torch._dynamo.reset()
    w_compiled = w.clone().requires_grad_()
    loss = torch.compile(loss_fn, fullgraph=True)(w_compiled, inputs)
    loss.backward()
    assert torch.allclose(loss, loss_fn(w, inputs))  # the matmul may sum in another order
    torch.testing.assert_close(w_compiled.grad, w_eager.grad)
    mask = (fpx.fake_quantize(w.clone().requires_grad_(), fmt, **kwargs).sum().backward(), None)
    assert mask  # eager straight-through mask and the compiled gradient agree (above)


# ---- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(group_size=5), ValueError, r"group_size=5 .*x.shape\[1\]=32"),
        (dict(axis=3), ValueError, "axis=3 is out of range"),
        (dict(block="mx", fmt=fpx.UINT8), ValueError, "block='mx' needs a float format"),
        (dict(fmt=torch.float8_e4m3fn), TypeError, "fmt must be an fpx.IntFormat or fpx.FloatFormat"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    fmt = kwargs.pop("fmt", fpx.INT4)
    with pytest.raises(error, match=match):
        fpx.fake_quantize(torch.randn(4, 32), fmt, **kwargs)


def test_integer_input_is_a_type_error():
    with pytest.raises(TypeError, match="x must have a floating-point dtype, got x.dtype=torch.int32"):
        fpx.fake_quantize(torch.ones(4, 32, dtype=torch.int32), fpx.INT4)


# ---- learnable scales (LSQ) ----------------------------------------------------------------------


@st.composite
def lsq_configs(draw):
    shape, axis, group_size = draw(layouts())
    fmt = draw(st.sampled_from([f for f in ALL_FMTS if f != fpx.INT1]))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    return draw(tensors(shape, dtype)), fmt, dict(axis=axis, group_size=group_size)


@given(lsq_configs())
def test_lsq_forward_at_the_minmax_scale_equals_fake_quantize(config):
    x, fmt, kwargs = config
    q = fpx.quantize(x, fmt, **kwargs)
    out = fpx.fake_quantize_lsq(x, q.scale, fmt, zero_point=q.zero_point, **kwargs)
    assert_bitwise_equal(out, fpx.fake_quantize(x, fmt, **kwargs))


@given(lsq_configs(), st.floats(0.3, 1.5))
def test_lsq_gradients(config, shrink):
    x, fmt, kwargs = config
    x = x.float()  # gradients compared in float32 (the scale's dtype)
    q = fpx.quantize(x, fmt, **kwargs)
    scale = (q.scale * shrink).requires_grad_()  # shrink < 1 clamps the tails
    xr = x.clone().requires_grad_()
    fpx.fake_quantize_lsq(xr, scale, fmt, zero_point=q.zero_point, grad_scale=1.0, **kwargs).sum().backward()
    # LSQ by its definition, per element, then summed per group like the scale
    s = broadcast_scale(q, scale.detach())
    v = x * (1.0 / s)
    if isinstance(fmt, fpx.FloatFormat):
        low, high = torch.full_like(v, -fmt.max), torch.full_like(v, fmt.max)
        rounded = fpx.round_to(v, fmt)
    else:
        shift = 0.0 if q.zero_point is None else broadcast_scale(q, q.zero_point).float()
        low, high = fmt.min - shift, fmt.max - shift
        low, high = torch.as_tensor(low).expand_as(v), torch.as_tensor(high).expand_as(v)
        rounded = torch.round(v)
    inside = (v >= low) & (v <= high)
    assert torch.equal(xr.grad, inside.float())
    per_element = torch.where(inside, rounded - v, torch.where(v < low, low, high))
    if q.axis is None:
        expected = per_element.sum().reshape(scale.shape)
    else:
        grouped = per_element.unflatten(q.axis, (scale.shape[q.axis], q.group_size))
        expected = grouped.sum(q.axis + 1)
    torch.testing.assert_close(scale.grad, expected, rtol=1e-5, atol=1e-5 * float(v.abs().max()) + 1e-6)


def test_lsq_default_grad_scale_and_training_step_compile():
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(0))
    q = fpx.quantize(w, fpx.INT4, group_size=32)

    def step(weight, scale):
        return fpx.fake_quantize_lsq(weight, scale, fpx.INT4, group_size=32).square().sum()

    grads = []
    for fn in (step, torch.compile(step, fullgraph=True)):
        weight, scale = w.clone().requires_grad_(), q.scale.clone().requires_grad_()
        fn(weight, scale).backward()
        grads.append((weight.grad, scale.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0])
    torch.testing.assert_close(grads[1][1], grads[0][1])
    # the default grad_scale is 1 / sqrt(32 * 7): compare with grad_scale=1
    scale = q.scale.clone().requires_grad_()
    step(w, scale).backward()
    unscaled = q.scale.clone().requires_grad_()
    fpx.fake_quantize_lsq(w, unscaled, fpx.INT4, group_size=32, grad_scale=1.0).square().sum().backward()
    torch.testing.assert_close(scale.grad, unscaled.grad / (32 * 7) ** 0.5)


@pytest.mark.parametrize(
    "fmt, kwargs, error, match",
    [
        (fpx.INT4, dict(scale=torch.ones(4, 2)), ValueError, r"scale must have shape \(4, 1\).*got \(4, 2\)"),
        (fpx.INT1, dict(scale=torch.ones(4, 1)), ValueError, "INT1"),
        (fpx.UINT4, dict(scale=torch.ones(4, 1)), ValueError, "needs a zero_point"),
        (fpx.INT4, dict(scale=torch.ones(4, 1), zero_point=torch.zeros(4, 1)), ValueError, "zero_point is only for UINT"),
        (fpx.INT4, dict(scale=torch.ones(4, 1, dtype=torch.int32)), TypeError, "scale must be a floating-point"),
        (fpx.INT4, dict(scale=torch.ones(4, 1), grad_scale=-1.0), ValueError, "grad_scale must be .* got -1.0"),
        (fpx.INT4, dict(scale=torch.ones(4, 1), grad_scale=float("nan")), ValueError, "grad_scale must be .* got nan"),
        (fpx.INT4, dict(scale=torch.ones(4, 1), grad_scale="1"), ValueError, "grad_scale must be .* got '1'"),
        (fpx.INT4, dict(scale=torch.ones(4, 1), grad_scale=True), ValueError, "grad_scale must be .* got True"),
    ],
)
def test_lsq_bad_arguments(fmt, kwargs, error, match):
    scale = kwargs.pop("scale")
    with pytest.raises(error, match=match):
        fpx.fake_quantize_lsq(torch.randn(4, 32), scale, fmt, **kwargs)


# ---- CUDA (skipped where there is no GPU) --------------------------------------------------------

CUDA_CASES = [case for case in SINGLE_KERNEL_CASES if not case[3].get("clip_search") and case[3].get("axis", -1) == -1]


@pytest.mark.cuda
@pytest.mark.parametrize("case", CUDA_CASES, ids=_case_id)
def test_cuda_forward_is_one_kernel_and_matches_cpu(case):
    fmt, shape, dtype, kwargs = case
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    out, source = compile_and_code(lambda t: fpx.fake_quantize(t, fmt, **kwargs), x.cuda())
    assert kernel_count(source, "cuda") == 1
    reference = fpx.fake_quantize(x, fmt, **kwargs)
    assert_bitwise_equal(fpx.fake_quantize(x.cuda(), fmt, **kwargs).cpu(), reference)  # eager CUDA
    # Compiled too: scales and their reciprocals are divided in float64 (Triton's float32 "/"
    # is approximate, and inductor turns a division by a constant into a multiplication).
    assert_bitwise_equal(out.cpu(), reference)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("fmt, kwargs", [(fpx.INT4, dict(group_size=32)), (fpx.E4M3, dict())])
def test_backward_compiles(device, fmt, kwargs):
    # torch 2.11 handed a zero gradient to a compiled autograd.Function whose forward returned
    # the alias of a no-op .to(dtype): on CPU as on CUDA.
    w = torch.randn(32, 128, device=device, requires_grad=True)
    out = torch.compile(lambda t: fpx.fake_quantize(t, fmt, **kwargs), fullgraph=True)(w)
    out.backward(torch.full_like(out, 3.0))
    assert torch.equal(w.grad, torch.full_like(w, 3.0))  # min/max scales clamp nothing


def test_float16_grid_points_beyond_its_range_saturate_instead_of_becoming_inf():
    # UINT1 levels are {0, hi - lo}: 100000 does not fit float16, so it saturates at 65504.
    x = torch.tensor([[60000.0, -40000.0, 0.0, 1.0]], dtype=torch.float16)
    out = fpx.fake_quantize(x, fpx.UINT1)
    assert torch.isfinite(out).all()
    assert out.abs().max().item() == torch.finfo(torch.float16).max
    assert_bitwise_equal(out, fpx.quantize(x, fpx.UINT1).dequantize())
