"""fpx.hashed_uniform: bits against a numpy uint32 reference written here, on every device,
eager and compiled; its statistics; stochastic rounding with it; fusion; bad input."""

import numpy as np
import pytest
import torch
import torch._dynamo.testing
from hypothesis import given
from hypothesis import strategies as st

import fpx
from fpx import E4M3, E5M2, hashed_uniform

from ..codegen import compile_and_code, kernel_count, typed_allocations

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def reference(count: int, seed: int) -> np.ndarray:
    """The documented hash in numpy's uint32 arithmetic (wrapping, logical shifts), as float64."""
    def fmix32(h):
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x85EBCA6B)
        h = h ^ (h >> np.uint32(13))
        h = h * np.uint32(0xC2B2AE35)
        return h ^ (h >> np.uint32(16))

    with np.errstate(over="ignore"):
        key = fmix32(np.uint32(seed & 0xFFFFFFFF) ^ fmix32(np.uint32(seed >> 32)))
        index = np.arange(count, dtype=np.uint64).astype(np.uint32)
        h = fmix32((index * np.uint32(0x9E3779B9)) ^ key)
    return (h >> np.uint32(8)).astype(np.float64) / 2.0**24


SEEDS = [0, 1, 2, 12345, 2**31, 2**32 - 1, 2**32, 2**40 + 3, 2**63 - 1, 2**63, 2**64 - 1]


@pytest.mark.parametrize("device", DEVICES)
def test_draws_match_the_reference_for_every_seed_kind(device):
    for seed in SEEDS:
        expected = reference(4099, seed)
        actual = hashed_uniform(4099, seed, device=device)
        assert actual.dtype == torch.float32 and actual.device.type == device
        np.testing.assert_array_equal(actual.cpu().double().numpy(), expected, err_msg=f"seed {seed}")
        # the same seed as a tensor (int64 holds values below 2**63; others by their bits)
        as_tensor = torch.tensor(seed if seed < 2**63 else seed - 2**64, dtype=torch.int64, device=device)
        assert torch.equal(hashed_uniform(4099, as_tensor), actual), seed
        if seed < 2**31:
            assert torch.equal(hashed_uniform(4099, as_tensor.to(torch.int32)), actual), seed


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_draws_equal_eager_and_a_new_seed_tensor_does_not_recompile(device):
    # one compile (the C++ or Triton build is the expensive part), three seeds through it
    compiled = torch.compile(lambda seed: hashed_uniform((7, 13), seed), fullgraph=True, dynamic=False)
    for seed in [5, 2**40 + 1, 0]:
        out = compiled(torch.tensor(seed, device=device))
        np.testing.assert_array_equal(out.cpu().double().numpy().ravel(), reference(91, seed))
    counter = torch._dynamo.testing.CompileCounter()
    counted = torch.compile(lambda seed: hashed_uniform(10, seed), backend=counter, fullgraph=True)
    for seed in range(4):
        counted(torch.tensor(seed, device=device))
    assert counter.frame_count == 1


@given(shape=st.lists(st.integers(0, 9), min_size=0, max_size=4), seed=st.integers(0, 2**64 - 1))
def test_draws_depend_on_the_seed_and_row_major_position_only(shape, seed):
    count = int(np.prod(shape)) if shape else 1
    actual = hashed_uniform(tuple(shape), seed)
    assert actual.shape == tuple(shape)
    np.testing.assert_array_equal(actual.double().numpy().ravel(), reference(count, seed))


def test_draws_are_uniform_and_uncorrelated():
    n = 1 << 20
    u = hashed_uniform(n, 2024).double().numpy()
    assert u.min() >= 0 and u.max() < 1 and np.all(u * 2**24 == np.floor(u * 2**24))
    # mean and variance of U[0, 1) within 5 standard errors
    assert abs(u.mean() - 0.5) < 5 * (1 / 12 / n) ** 0.5
    assert abs(u.var() - 1 / 12) < 5 * (1 / 180 / n) ** 0.5
    # the top and the bottom 8 of the 24 bits spread over 256 buckets: chi-square (255 degrees of
    # freedom) below its 1e-6 upper tail
    draws = (u * 2**24).astype(np.int64)
    for buckets in (draws >> 16, draws & 0xFF):
        counts = np.bincount(buckets, minlength=256)
        assert ((counts - n / 256) ** 2 / (n / 256)).sum() < 380
    # neighbours and other seeds: correlations of about 1/sqrt(n) = 0.001
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.005
    assert abs(np.corrcoef(u, hashed_uniform(n, 2025).double().numpy())[0, 1]) < 0.005
    assert abs(np.corrcoef(u, hashed_uniform(n, 2024 + 2**32).double().numpy())[0, 1]) < 0.005


def test_stochastic_rounding_with_hashed_draws_is_unbiased():
    # 1.1 lies between E4M3's 1.0 and 1.125: up with probability 0.8; -300.5 between -288 and
    # -320 (step 32): up in magnitude with probability 12.5 / 32
    n = 1 << 20
    for value, low, high in [(1.1, 1.0, 1.125), (-300.5, -288.0, -320.0)]:
        x = torch.full((n,), value)
        rounded = fpx.round_to(x, E4M3, rounding="stochastic", uniform=hashed_uniform(n, 7)).double()
        assert set(rounded.unique().tolist()) == {low, high}
        p = (float(torch.tensor(value)) - low) / (high - low)
        assert abs(((rounded == high).double().mean().item()) - p) < 5 * (p * (1 - p) / n) ** 0.5


@pytest.mark.parametrize("device", DEVICES)
def test_stochastic_encode_with_hashed_draws_is_one_kernel_without_a_draws_buffer(device):
    x = (torch.randn(4099, generator=torch.Generator().manual_seed(3)) * 1000).to(device)
    seed = torch.tensor(11, device=device)

    def fn(x, seed):
        return fpx.encode(x, E5M2, rounding="stochastic", uniform=hashed_uniform(x.shape, seed, device=x.device))

    out, source = compile_and_code(fn, x, seed)
    # The uint8 codes are the only buffer of x's size: no float32 draws written. On CUDA the
    # seed's key is a kernel of its own (a 0-d int32 buffer, computed once, not per element).
    buffers = typed_allocations(source)
    assert [b for b in buffers if b[0] != ()] == [((4099,), "torch.uint8")], source
    assert kernel_count(source, device) == 1 + len([b for b in buffers if b[0] == ()]), source
    assert len(buffers) <= 2, source
    assert torch.equal(out, fn(x, seed))


def test_encode_and_round_to_take_a_seed_for_hashed_draws():
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(2)) * 50
    for fn in (fpx.encode, fpx.round_to):
        for seed in (0, 2**40 + 5, torch.tensor(9)):
            expected = fn(x, E4M3, rounding="stochastic", uniform=hashed_uniform(x.shape, seed))
            assert torch.equal(fn(x, E4M3, rounding="stochastic", seed=seed), expected)
    # seed= hands the rounding integer draws: every input dtype and route takes them as the
    # same draws (float64 and E8M0 round by integers, the rest by the float scaling)
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        for fmt in (E4M3, E5M2, fpx.E2M1, fpx.E8M0):
            expected = fpx.encode(x.to(dtype), fmt, rounding="stochastic", uniform=hashed_uniform(x.shape, 3))
            assert torch.equal(fpx.encode(x.to(dtype), fmt, rounding="stochastic", seed=3), expected), (dtype, fmt)
    # compiled with a seed tensor: one graph for every seed (no inductor here: a counting backend)
    counter = torch._dynamo.testing.CompileCounter()
    counted = torch.compile(lambda x, s: fpx.encode(x, E4M3, rounding="stochastic", seed=s), backend=counter, fullgraph=True)
    for seed in range(3):
        assert torch.equal(counted(x, torch.tensor(seed)), fpx.encode(x, E4M3, rounding="stochastic", seed=seed))
    assert counter.frame_count == 1


def test_a_seed_traces_with_dynamic_shapes():
    # symbolic sizes pass the shape check; one graph for both lengths (dynamo only: no inductor)
    counter = torch._dynamo.testing.CompileCounter()
    fn = torch.compile(lambda x, s: fpx.round_to(x, E4M3, rounding="stochastic", seed=s), backend=counter,
                       fullgraph=True, dynamic=True)
    for n in (100, 257):
        x = torch.randn(n, 3, generator=torch.Generator().manual_seed(n)) * 10
        assert torch.equal(fn(x, torch.tensor(4)), fpx.round_to(x, E4M3, rounding="stochastic", seed=4))
    assert counter.frame_count == 1


def test_bad_arguments_name_the_argument():
    with pytest.raises(TypeError, match="shape must be an int or a sequence of ints, got 2.0"):
        hashed_uniform(2.0, 0)
    with pytest.raises(TypeError, match="shape must be"):
        hashed_uniform((2, True), 0)
    with pytest.raises(ValueError, match=r"shape must not have negative sizes, got \(2, -1\)"):
        hashed_uniform((2, -1), 0)
    with pytest.raises(ValueError, match=r"at most 2\*\*32 elements .* \(65536, 65536, 2\)"):
        hashed_uniform((2**16, 2**16, 2), 0)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\), got -1"):
        hashed_uniform(3, -1)
    with pytest.raises(ValueError, match="seed must be in"):
        hashed_uniform(3, 2**64)
    with pytest.raises(TypeError, match="seed must be an int or an integer tensor of one element, got float"):
        hashed_uniform(3, 1.0)
    with pytest.raises(TypeError, match="got bool"):
        hashed_uniform(3, True)
    with pytest.raises(TypeError, match=r"got torch.float32 of shape \(\)"):
        hashed_uniform(3, torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"got torch.int64 of shape \(2,\)"):
        hashed_uniform(3, torch.tensor([1, 2]))


def test_draws_of_an_empty_shape_and_as_uniform_for_encode():
    assert hashed_uniform(0, 1).shape == (0,)
    x = torch.tensor([0.3, 1.0, -2.5])
    codes = fpx.encode(x, E5M2, rounding="stochastic", uniform=hashed_uniform(x.shape, 9))
    down = fpx.encode(x, E5M2, rounding="stochastic", uniform=torch.full_like(x, 1 - 2.0**-24))
    up = fpx.encode(x, E5M2, rounding="stochastic", uniform=torch.zeros_like(x))
    assert bool(((codes == up) | (codes == down)).all())
