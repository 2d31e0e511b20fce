"""PackedMask: every operation equals the same operation on bool tensors (the reference).

The packed bytes are checked against numpy.packbits of the reference bool tensor, which pins both
the layout and the rule that padding bits stay 0 after every operation.
"""

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bitpack import PackedMask
from tests.codegen import allocations, compile_and_code, kernel_count, vectorizes

BITORDERS = ["little", "big"]


@st.composite
def mask_pairs(draw):
    """Two bool tensors of one shape (1..3 dims, sides 0..20), a packed dim and a bit order."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=20))
    a = torch.from_numpy(draw(hnp.arrays(np.bool_, shape)))
    b = torch.from_numpy(draw(hnp.arrays(np.bool_, shape)))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    return a, b, dim, draw(st.sampled_from(BITORDERS))


def expected_bytes(reference: torch.Tensor, dim: int, bitorder: str) -> torch.Tensor:
    """The packed bytes of a bool tensor, from numpy (padding bits 0)."""
    return torch.from_numpy(np.packbits(reference.numpy(), axis=dim, bitorder=bitorder))


def assert_mask_equals(mask: PackedMask, reference: torch.Tensor, dim: int, bitorder: str):
    assert isinstance(mask, PackedMask)
    assert mask.shape == reference.shape
    assert mask.bitorder == bitorder
    assert mask.dim == dim % reference.ndim
    assert torch.equal(mask.to_bool(), reference)
    assert torch.equal(mask.data, expected_bytes(reference, dim, bitorder))  # padding bits are 0


@given(mask_pairs())
def test_from_bool_round_trip_and_layout(case):
    a, _, dim, bitorder = case
    mask = PackedMask.from_bool(a, dim, bitorder)
    assert_mask_equals(mask, a, dim, bitorder)
    assert mask.nbytes == expected_bytes(a, dim, bitorder).numel()
    assert mask.numel() == a.numel() and mask.ndim == a.ndim and len(mask) == len(a)


@given(mask_pairs())
def test_from_bool_of_a_transposed_tensor(case):
    a, _, dim, bitorder = case
    t = a.mT if a.ndim >= 2 else a.flip(0)
    assert_mask_equals(PackedMask.from_bool(t, dim, bitorder), t.contiguous(), dim, bitorder)


@given(mask_pairs())
def test_logic_ops_equal_bool_ops(case):
    a, b, dim, bitorder = case
    pa, pb = PackedMask.from_bool(a, dim, bitorder), PackedMask.from_bool(b, dim, bitorder)
    assert_mask_equals(pa & pb, a & b, dim, bitorder)
    assert_mask_equals(pa | pb, a | b, dim, bitorder)
    assert_mask_equals(pa ^ pb, a ^ b, dim, bitorder)
    assert_mask_equals(~pa, ~a, dim, bitorder)
    assert_mask_equals(pa.logical_not(), ~a, dim, bitorder)
    assert_mask_equals(pa.and_not(pb), a & ~b, dim, bitorder)
    assert_mask_equals(pa == pb, a == b, dim, bitorder)
    assert_mask_equals(pa != pb, a != b, dim, bitorder)
    assert_mask_equals(~(pa & ~pb) | (pa ^ pb), ~(a & ~b) | (a ^ b), dim, bitorder)
    assert pa.equal(pb) == torch.equal(a, b)
    assert pa.equal(PackedMask.from_bool(a.clone(), dim, bitorder))


@given(mask_pairs())
def test_counts_equal_bool_sums(case):
    a, b, dim, bitorder = case
    pa = PackedMask.from_bool(a, dim, bitorder)
    assert torch.equal(pa.count(), a.sum())
    assert torch.equal((~pa).count(), (~a).sum())  # padding is not counted after ~
    ndim = a.ndim
    for d in range(-ndim, ndim):
        assert torch.equal(pa.count(d), a.sum(d))
        assert torch.equal((~pa).count(d), (~a).sum(d))
    for d in [(0, ndim - 1), tuple(range(ndim)), (-1,)]:
        if len(set(x % ndim for x in d)) == len(d):
            assert torch.equal(pa.count(d), a.sum(d))
    assert torch.equal(pa.any(), a.any())
    assert torch.equal(pa.all(), a.all())
    assert torch.equal((~pa).all(), (~a).all())
    assert torch.equal((pa | ~pa).all(), torch.tensor(True))


@given(mask_pairs(), st.data())
def test_indexing_leading_dims(case, data):
    a, _, dim, bitorder = case
    pa = PackedMask.from_bool(a, dim, bitorder)
    leading = dim % a.ndim
    key = []
    for d in range(data.draw(st.integers(0, leading))):
        size = a.shape[d]
        if size and data.draw(st.booleans()):
            key.append(data.draw(st.integers(-size, size - 1)))
        else:
            start, stop = data.draw(st.integers(-25, 25)), data.draw(st.integers(-25, 25))
            key.append(slice(start, stop, data.draw(st.integers(1, 3))))
    key = tuple(key)
    expected = a[key]
    new_dim = leading - sum(isinstance(k, int) for k in key)
    assert_mask_equals(pa[key], expected, new_dim, bitorder)
    if len(key) == 1:
        assert_mask_equals(pa[key[0]], expected, new_dim, bitorder)


@given(mask_pairs(), st.floats(-10, 10, allow_nan=False, width=32))
def test_where_and_masked_fill_equal_torch(case, fill):
    a, _, dim, bitorder = case
    pa = PackedMask.from_bool(a, dim, bitorder)
    values = torch.randn(a.shape)
    other = torch.randn(a.shape)
    assert torch.equal(pa.where(values, other), torch.where(a, values, other))
    assert torch.equal(pa.where(values, fill), torch.where(a, values, fill))
    assert torch.equal(pa.masked_fill(values, fill), values.masked_fill(a, fill))
    ints = torch.arange(a.numel()).reshape(a.shape)
    assert torch.equal(pa.masked_fill(ints, -1), ints.masked_fill(a, -1))


def test_where_broadcasts_like_torch():
    a = torch.rand(3, 1, 12) < 0.5
    pa = PackedMask.from_bool(a, bitorder="big")
    values = torch.randn(3, 5, 12)
    assert torch.equal(pa.where(values, 0.0), torch.where(a, values, 0.0))
    assert torch.equal(pa.masked_fill(values, float("-inf")), values.masked_fill(a, float("-inf")))


def test_masked_fill_keeps_nan_values_and_fills_nan():
    a = torch.tensor([[True, False, True]])
    values = torch.tensor([[1.0, float("nan"), 3.0]])
    out = PackedMask.from_bool(a).masked_fill(values, float("nan"))
    assert torch.isnan(out).tolist() == [[True, True, True]]


@pytest.mark.parametrize("bitorder", BITORDERS)
def test_invert_counts_ignore_padding(bitorder):
    a = torch.zeros(3, 13, dtype=torch.bool)
    pa = PackedMask.from_bool(a, -1, bitorder)
    assert int((~pa).count()) == 39
    assert (~pa).count(1).tolist() == [13, 13, 13]
    assert bool((~pa).all())
    assert int((~~pa).count()) == 0
    assert torch.equal((~pa).data, expected_bytes(~a, -1, bitorder))


MISMATCHES = [  # (shape, dim, bitorder) of a, of b, and what the message must name (both sides)
    (((2, 10), -1, "little"), ((2, 11), -1, "little"), r"\(2, 10\).*\(2, 11\)"),
    (((2, 10), -1, "little"), ((2, 10), 0, "little"), r"dim 1 vs .*dim 0"),
    (((2, 10), -1, "little"), ((2, 10), -1, "big"), r"'little' vs 'big'"),
    (((4, 8), 1, "big"), ((8, 4), 1, "big"), r"\(4, 8\).*\(8, 4\)"),
]


@pytest.mark.parametrize("first, second, message", MISMATCHES)
def test_mismatched_masks_raise_naming_both(first, second, message):
    pa = PackedMask.from_bool(torch.ones(first[0], dtype=torch.bool), first[1], first[2])
    pb = PackedMask.from_bool(torch.ones(second[0], dtype=torch.bool), second[1], second[2])
    operations = [
        lambda: pa & pb,
        lambda: pa | pb,
        lambda: pa ^ pb,
        lambda: pa == pb,
        lambda: pa != pb,
        lambda: pa.and_not(pb),
        lambda: pa.equal(pb),
    ]
    for operation in operations:
        with pytest.raises(ValueError, match=message):
            operation()


def test_bad_arguments():
    ones = torch.ones(2, 10, dtype=torch.bool)
    pa = PackedMask.from_bool(ones)
    with pytest.raises(TypeError, match="torch.bool"):
        PackedMask.from_bool(torch.ones(2, 10))
    with pytest.raises(ValueError, match="at least one dimension"):
        PackedMask.from_bool(torch.tensor(True))
    with pytest.raises(ValueError, match="bitorder"):
        PackedMask.from_bool(ones, bitorder="l")
    with pytest.raises(ValueError, match="dim=2"):
        PackedMask.from_bool(ones, dim=2)
    with pytest.raises(TypeError):
        pa & ones  # noqa: B018 - a bool tensor is not a mask
    with pytest.raises(TypeError, match="ambiguous"):
        bool(pa == pa)
    with pytest.raises(IndexError, match="first 1 dims"):
        pa[0, 1]
    with pytest.raises(TypeError, match="ints or slices"):
        pa[None]
    with pytest.raises(ValueError, match="repeated"):
        pa.count((1, -1))
    with pytest.raises(ValueError, match="out of range"):
        pa.count(2)


def test_constructor_checks_raw_bytes():
    data = torch.tensor([[255, 3]], dtype=torch.uint8)
    mask = PackedMask(data, (1, 10))
    assert mask.count().item() == 10
    with pytest.raises(ValueError, match="padding"):
        PackedMask(torch.tensor([[255, 4]], dtype=torch.uint8), (1, 10))
    with pytest.raises(ValueError, match="padding"):
        PackedMask(torch.tensor([[255, 1]], dtype=torch.uint8), (1, 10), bitorder="big")
    with pytest.raises(ValueError, match=r"expected \(1, 2\)"):
        PackedMask(torch.zeros(1, 3, dtype=torch.uint8), (1, 10))
    with pytest.raises(TypeError, match="uint8"):
        PackedMask(torch.zeros(1, 2, dtype=torch.int8), (1, 10))


def test_state_saves_and_loads_weights_only():
    a = torch.rand(3, 5, 19) < 0.3
    mask = PackedMask.from_bool(a, dim=1, bitorder="big")
    buffer = io.BytesIO()
    torch.save({"mask": mask.state()}, buffer)
    buffer.seek(0)
    loaded = PackedMask.from_state(torch.load(buffer, weights_only=True)["mask"])
    assert_mask_equals(loaded, a, 1, "big")
    with pytest.raises(ValueError, match="keys"):
        PackedMask.from_state({"data": mask.data})


def test_object_saves_and_loads_with_safe_globals():
    a = torch.rand(4, 9) < 0.5
    buffer = io.BytesIO()
    torch.save(PackedMask.from_bool(a, 0), buffer)
    buffer.seek(0)
    with torch.serialization.safe_globals([PackedMask]):
        loaded = torch.load(buffer, weights_only=True)
    assert_mask_equals(loaded, a, 0, "little")


def test_to_device_keeps_the_mask():
    a = torch.rand(2, 17) < 0.5
    moved = PackedMask.from_bool(a, bitorder="big").to("cpu")
    assert moved.device.type == "cpu"
    assert_mask_equals(moved, a, -1, "big")
    assert "PackedMask(shape=(2, 17)" in repr(moved)


# ---------------------------------------------------------------------------------- compile


def _masks(device, shape=(6, 5, 37), dim=-1, bitorder="little"):
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(shape, generator=generator) < 0.5
    b = torch.rand(shape, generator=generator) < 0.5
    pa = PackedMask.from_bool(a.to(device), dim, bitorder)
    pb = PackedMask.from_bool(b.to(device), dim, bitorder)
    return a, b, pa, pb


def _check_and_count_one_kernel(device):
    a, b, pa, pb = _masks(device, bitorder="big")
    out, source = compile_and_code(lambda x, y: (x & y).count(), pa, pb)
    assert torch.equal(out.cpu(), (a & b).sum())
    assert kernel_count(source, device) == 1, source


def _check_where_one_kernel(device):
    # 37 bits along dim 1 (a partial byte) and 64 along the last dim (whole bytes: the by-byte
    # form, which inductor's C++ vectorizes).
    for shape, dim in (((6, 37, 5), 1), ((6, 5, 64), -1)):
        a, _, pa, _ = _masks(device, shape, dim=dim)
        values = torch.randn(a.shape, device=device)
        out, source = compile_and_code(lambda m, v: m.where(v, float("-inf")), pa, values)
        assert torch.equal(out.cpu(), torch.where(a, values.cpu(), float("-inf")))
        assert kernel_count(source, device) == 1, source
        # only the output (by byte: as (..., bytes, 8)), no bool tensor
        assert [math.prod(shape) for shape in allocations(source)] == [a.numel()], source
        if device == "cpu" and pa._in_whole_bytes() and vectorizes():
            assert "Vectorized<float>" in source, source


def _check_masked_fill_one_kernel(device):
    a, _, pa, _ = _masks(device, bitorder="big")
    values = torch.randn(a.shape, device=device)
    out, source = compile_and_code(lambda m, v: m.masked_fill(v, 0.0), pa, values)
    assert torch.equal(out.cpu(), values.cpu().masked_fill(a, 0.0))
    assert kernel_count(source, device) == 1, source


def test_and_count_compiles_to_one_kernel_cpu():
    _check_and_count_one_kernel("cpu")


def test_where_compiles_to_one_kernel_cpu():
    _check_where_one_kernel("cpu")


def test_masked_fill_compiles_to_one_kernel_cpu():
    _check_masked_fill_one_kernel("cpu")


def test_masks_go_in_and_out_of_compiled_functions():
    a, b, pa, pb = _masks("cpu", dim=-1)

    def combine(x, y):
        z = x.and_not(y).logical_not() | (x == y)
        return z, z.count(0), z[1:3], z.any()

    z, counts, sliced, anything = torch.compile(combine, fullgraph=True)(pa, pb)
    reference = ~(a & ~b) | (a == b)
    assert_mask_equals(z, reference, -1, "little")
    assert torch.equal(counts, reference.sum(0))
    assert_mask_equals(sliced, reference[1:3], -1, "little")
    assert torch.equal(anything, reference.any())


@pytest.mark.cuda
def test_and_count_compiles_to_one_kernel_cuda():
    _check_and_count_one_kernel("cuda")


@pytest.mark.cuda
def test_where_compiles_to_one_kernel_cuda():
    _check_where_one_kernel("cuda")


@pytest.mark.cuda
def test_masked_fill_compiles_to_one_kernel_cuda():
    _check_masked_fill_one_kernel("cuda")


@pytest.mark.cuda
def test_cuda_ops_equal_bool_ops():
    a, b, pa, pb = _masks("cuda", dim=1, bitorder="big")
    assert pa.device.type == "cuda"
    assert torch.equal((pa & pb).to_bool().cpu(), a & b)
    assert torch.equal((~pa).count(1).cpu(), (~a).sum(1))
    assert torch.equal(pa.to("cpu").to_bool(), a)


@pytest.mark.parametrize("bitorder", BITORDERS)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_where_and_masked_fill_in_whole_bytes_broadcast_like_torch(dim, bitorder):
    # Packed lengths of whole bytes take the by-byte form (bitpack.mask._bits_by_byte): values
    # and other of lower rank, size-1 dims, a tensor other, a mask smaller than values.
    a = torch.rand(16, 8, 24, generator=torch.Generator().manual_seed(dim % 3)) < 0.5
    pa = PackedMask.from_bool(a, dim, bitorder)
    assert pa._in_whole_bytes()
    values = torch.randn(24)
    other = torch.randn(16, 1, 1)
    assert torch.equal(pa.where(values, other), torch.where(a, values, other))
    assert torch.equal(pa.where(values, -1.5), torch.where(a, values, -1.5))
    assert torch.equal(pa.where(2, other), torch.where(a, 2, other))
    wide = torch.randn(2, 16, 8, 24)
    assert torch.equal(pa.where(wide, 0.0), torch.where(a, wide, 0.0))
    assert torch.equal(pa.masked_fill(wide, float("nan")).isnan(), wide.masked_fill(a, float("nan")).isnan())
    ints = torch.arange(a.numel()).reshape(a.shape)
    assert torch.equal(pa.masked_fill(ints, -1), ints.masked_fill(a, -1))
