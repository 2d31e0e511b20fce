"""packbits / unpackbits against numpy.packbits / numpy.unpackbits, the reference.

Values, shapes, dtype and error classes must all match numpy; the one documented difference is
that where numpy returns uninitialized memory (an empty input unpacked with a positive count)
we return zeros.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bitpack import packbits, unpackbits
from tests.codegen import compile_and_code, kernel_count

PACK_DTYPES = [np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint32, np.uint64]


def numpy_result(fn, *args, **kwargs):
    """(result, None) or (None, exception class) from a numpy call."""
    try:
        return fn(*args, **kwargs), None
    except Exception as error:  # noqa: BLE001 - the class is what we compare
        return None, type(error)


@st.composite
def arrays(draw, dtypes):
    """A numpy array of a drawn dtype and shape (0-d, empty, odd lengths), maybe a transposed view."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=20))
    if dtype == np.bool_:
        elements = st.booleans()
    else:  # mostly small values (many zeros), plus the extremes of the dtype
        info = np.iinfo(dtype)
        elements = st.one_of(st.integers(max(info.min, -2), 2), st.sampled_from([info.min, info.max]))
    a = draw(hnp.arrays(dtype, shape, elements=elements))
    if a.ndim >= 2 and draw(st.booleans()):
        a = a.swapaxes(0, -1)  # non-contiguous for numpy and torch alike
    return a


@st.composite
def dims(draw, a):
    """None or a dim valid for numpy (a 0-d array counts as 1-d), and whether to spell it axis=."""
    ndim = max(a.ndim, 1)
    dim = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1)))
    return dim, draw(st.booleans())


def call(fn, x, dim, use_axis, **kwargs):
    return fn(x, axis=dim, **kwargs) if use_axis else fn(x, dim, **kwargs)


@given(a=arrays(PACK_DTYPES), data=st.data(), bitorder=st.sampled_from(["big", "little"]))
def test_packbits_equals_numpy(a, data, bitorder):
    dim, use_axis = data.draw(dims(a))
    x = torch.from_numpy(a)
    expected = np.packbits(a, axis=dim, bitorder=bitorder)
    got = call(packbits, x, dim, use_axis, bitorder=bitorder)
    assert got.dtype == torch.uint8
    assert tuple(got.shape) == expected.shape
    assert torch.equal(got, torch.from_numpy(expected))
    assert got.is_contiguous()


@given(
    a=arrays([np.uint8]),
    data=st.data(),
    bitorder=st.sampled_from(["big", "little"]),
    count=st.one_of(st.none(), st.integers(-200, 200)),
)
def test_unpackbits_equals_numpy(a, data, bitorder, count):
    dim, use_axis = data.draw(dims(a))
    p = torch.from_numpy(a)
    expected, error = numpy_result(np.unpackbits, a, axis=dim, count=count, bitorder=bitorder)
    if error is not None:
        with pytest.raises(error):
            call(unpackbits, p, dim, use_axis, count=count, bitorder=bitorder)
        return
    got = call(unpackbits, p, dim, use_axis, count=count, bitorder=bitorder)
    if a.size == 0:  # numpy leaves this memory uninitialized; we promise zeros
        expected = np.zeros_like(expected)
    assert got.dtype == torch.uint8
    assert tuple(got.shape) == expected.shape
    assert torch.equal(got, torch.from_numpy(expected))
    assert got.is_contiguous()


@given(a=arrays([np.bool_, np.uint8]), data=st.data(), bitorder=st.sampled_from(["big", "little"]))
def test_round_trip(a, data, bitorder):
    dim, _ = data.draw(dims(a))
    x = torch.from_numpy(a)
    reference = x.reshape(-1) if dim is None or x.ndim == 0 else x  # numpy's view of x
    n = reference.shape[0 if dim is None else dim]
    back = unpackbits(packbits(x, dim, bitorder=bitorder), dim, count=n, bitorder=bitorder)
    assert torch.equal(back, (reference != 0).to(torch.uint8))


def test_empty_input_with_positive_count_gives_zeros():
    got = unpackbits(torch.zeros(0, 2, dtype=torch.uint8), 0, count=11)
    assert torch.equal(got, torch.zeros(11, 2, dtype=torch.uint8))
    assert np.unpackbits(np.zeros((0, 2), np.uint8), axis=0, count=11).shape == (11, 2)


def test_dim_and_axis_together_is_a_type_error():
    with pytest.raises(TypeError, match="axis"):
        packbits(torch.ones(3, dtype=torch.bool), 0, axis=0)
    with pytest.raises(TypeError, match="axis"):
        unpackbits(torch.ones(3, dtype=torch.uint8), 0, axis=0)


def test_numpy_integer_arguments_are_accepted():
    x = torch.tensor([[1, 0, 1]])
    assert torch.equal(packbits(x, axis=np.int64(1)), packbits(x, 1))
    assert torch.equal(unpackbits(packbits(x, 1), 1, count=np.int32(3)), x.to(torch.uint8))


# Bad input: (function, input array, keyword arguments). numpy and bitpack must raise the same class.
BAD_CALLS = [
    ("packbits", np.array([1.0, 0.0], np.float32), {}),
    ("packbits", np.array([1.0, 0.0], np.float64), {"axis": 0}),
    ("packbits", np.array([1 + 0j]), {}),
    ("packbits", np.ones((2, 3), np.bool_), {"axis": 2}),
    ("packbits", np.ones((2, 3), np.bool_), {"axis": -3}),
    ("packbits", np.array(1), {"axis": 1}),
    ("packbits", np.ones(3, np.int32), {"axis": 0.0}),
    ("packbits", np.ones(3, np.int32), {"axis": True}),
    ("packbits", np.ones(3, np.int32), {"bitorder": "l"}),
    ("packbits", np.ones(3, np.int32), {"bitorder": "LITTLE"}),
    ("packbits", np.ones(3, np.int32), {"bitorder": None}),
    ("unpackbits", np.ones(3, np.int8), {}),
    ("unpackbits", np.ones(3, np.uint16), {}),
    ("unpackbits", np.ones(3, np.bool_), {}),
    ("unpackbits", np.ones(3, np.float32), {}),
    ("unpackbits", np.ones((2, 3), np.uint8), {"axis": 2}),
    ("unpackbits", np.ones(3, np.uint8), {"count": -25}),
    ("unpackbits", np.ones((2, 0), np.uint8), {"axis": 1, "count": -1}),
    ("unpackbits", np.ones(3, np.uint8), {"count": 2.0}),
    ("unpackbits", np.ones(3, np.uint8), {"count": True}),
    ("unpackbits", np.ones(3, np.uint8), {"count": "3"}),
    ("unpackbits", np.ones(3, np.uint8), {"bitorder": "x"}),
    ("unpackbits", np.ones(3, np.uint8), {"bitorder": ""}),
    ("unpackbits", np.ones(3, np.uint8), {"bitorder": 1}),
]


@pytest.mark.parametrize("name, a, kwargs", BAD_CALLS, ids=[f"{n}-{a.dtype}-{k}" for n, a, k in BAD_CALLS])
def test_bad_input_raises_like_numpy(name, a, kwargs):
    _, error = numpy_result(getattr(np, name), a, **kwargs)
    assert error is not None
    fn = {"packbits": packbits, "unpackbits": unpackbits}[name]
    with pytest.raises(error):
        fn(torch.from_numpy(a), **kwargs)


@pytest.mark.parametrize("bitorder", ["l", "little", "b", "big", "bx"])
def test_unpackbits_accepts_numpy_bitorder_prefixes(bitorder):
    a = np.array([5, 200], np.uint8)
    expected = np.unpackbits(a, bitorder=bitorder)
    assert torch.equal(unpackbits(torch.from_numpy(a), bitorder=bitorder), torch.from_numpy(expected))


def test_non_tensor_input_is_a_type_error():
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        packbits([1, 0, 1])
    with pytest.raises(TypeError, match="p must be a torch.Tensor"):
        unpackbits(np.zeros(3, np.uint8))


# ---------------------------------------------------------------------------------- codegen

PACK_CASES = [  # (shape, transposed, dim, bitorder)
    ((7, 21), True, None, "big"),
    ((5, 19), False, 0, "little"),
    ((3, 4, 13), False, -1, "big"),
]
UNPACK_CASES = [  # (shape, dim, count, bitorder)
    ((6, 3), -1, None, "big"),
    ((6, 3), 0, 60, "little"),  # more bits than available: zero padding inside the kernel
    ((4, 5), 1, -7, "big"),
]


def _check_packbits_one_kernel(device, shape, transposed, dim, bitorder):
    x = torch.randint(0, 3, shape, device=device)
    x = x.mT if transposed else x
    out, source = compile_and_code(lambda t: packbits(t, dim, bitorder=bitorder), x)
    expected = np.packbits(x.cpu().numpy(), axis=dim, bitorder=bitorder)
    assert torch.equal(out.cpu(), torch.from_numpy(expected))
    assert kernel_count(source, device) == 1, source


def _check_unpackbits_one_kernel(device, shape, dim, count, bitorder):
    p = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    out, source = compile_and_code(lambda t: unpackbits(t, dim, count=count, bitorder=bitorder), p)
    expected = np.unpackbits(p.cpu().numpy(), axis=dim, count=count, bitorder=bitorder)
    assert torch.equal(out.cpu(), torch.from_numpy(expected))
    assert kernel_count(source, device) == 1, source


@pytest.mark.parametrize("shape, transposed, dim, bitorder", PACK_CASES)
def test_packbits_compiles_to_one_kernel_cpu(shape, transposed, dim, bitorder):
    _check_packbits_one_kernel("cpu", shape, transposed, dim, bitorder)


@pytest.mark.parametrize("shape, dim, count, bitorder", UNPACK_CASES)
def test_unpackbits_compiles_to_one_kernel_cpu(shape, dim, count, bitorder):
    _check_unpackbits_one_kernel("cpu", shape, dim, count, bitorder)


@pytest.mark.cuda
@pytest.mark.parametrize("shape, transposed, dim, bitorder", PACK_CASES)
def test_packbits_compiles_to_one_kernel_cuda(shape, transposed, dim, bitorder):
    _check_packbits_one_kernel("cuda", shape, transposed, dim, bitorder)


@pytest.mark.cuda
@pytest.mark.parametrize("shape, dim, count, bitorder", UNPACK_CASES)
def test_unpackbits_compiles_to_one_kernel_cuda(shape, dim, count, bitorder):
    _check_unpackbits_one_kernel("cuda", shape, dim, count, bitorder)


@pytest.mark.cuda
def test_cuda_equals_numpy():
    a = np.random.default_rng(0).integers(0, 3, (9, 37))
    x = torch.from_numpy(a).cuda()
    for dim in (None, 0, 1):
        for bitorder in ("big", "little"):
            p = packbits(x, dim, bitorder=bitorder)
            assert p.device.type == "cuda"
            assert torch.equal(p.cpu(), torch.from_numpy(np.packbits(a, axis=dim, bitorder=bitorder)))
            r = np.packbits(a, axis=dim, bitorder=bitorder)
            for count in (None, 5, -3, 400):
                expected = np.unpackbits(r, axis=dim, count=count, bitorder=bitorder)
                got = unpackbits(p, dim, count=count, bitorder=bitorder)
                assert torch.equal(got.cpu(), torch.from_numpy(expected))
