"""pack / unpack: bytes against an independent reference, round trips, errors."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bitpack
from bitpack import pack, packed_size, unpack

from .reference import reference_pack

INT_DTYPES = [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8]


def random_values(shape, bits, signed, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    low, high = bitpack.value_range(bits, signed)
    return torch.randint(low, high + 1, shape, generator=generator).to(dtype)


@st.composite
def pack_cases(draw):
    bits = draw(st.integers(1, 8))
    signed = draw(st.booleans())
    layout = draw(st.sampled_from(["dense", "padded"]))
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(0, 20) | st.sampled_from([33, 64, 100]), min_size=ndim, max_size=ndim)))
    dim = draw(st.integers(-ndim, ndim - 1))
    dtypes = list(INT_DTYPES)
    if signed:
        dtypes.remove(torch.uint8)  # holds no negative values
    elif bits == 8:
        dtypes.remove(torch.int8)  # holds no values above 127
    if bits == 1 and not signed:
        dtypes.append(torch.bool)
    dtype = draw(st.sampled_from(dtypes))
    transpose = ndim >= 2 and draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return bits, signed, layout, shape, dim, dtype, transpose, seed


@given(pack_cases())
def test_pack_matches_reference_and_round_trips(case):
    bits, signed, layout, shape, dim, dtype, transpose, seed = case
    x = random_values(shape, bits, signed, torch.int64, seed)
    if dtype == torch.bool:
        x = x.bool()
    else:
        x = x.to(dtype)
    if transpose:
        x = x.transpose(0, -1)  # a non-contiguous view
    packed = pack(x, bits, dim=dim, layout=layout, signed=signed)

    expected = reference_pack(x.to(torch.int64).numpy(), bits, layout, dim, signed)
    assert packed.dtype == torch.uint8
    assert packed.is_contiguous()
    assert packed.shape == expected.shape
    assert np.array_equal(packed.numpy(), expected)

    out_dtype = torch.int64
    restored = unpack(packed, bits, x.shape[dim], dim=dim, layout=layout, signed=signed, dtype=out_dtype)
    assert torch.equal(restored, x.to(torch.int64))
    default = unpack(packed, bits, x.shape[dim], dim=dim, layout=layout, signed=signed)
    assert default.dtype == (torch.int8 if signed else torch.uint8)
    assert torch.equal(default.to(torch.int64), x.to(torch.int64))


def test_eight_uint3_make_three_bytes():
    # byte 0: v2[1:0] v1[2:0] v0[2:0]; byte 1: v5[0] v4 v3 v2[2]; byte 2: v7 v6 v5[2:1]
    x = torch.tensor([1, 2, 3, 4, 5, 6, 7, 0])
    assert pack(x, 3).tolist() == [0b11_010_001, 0b0_101_100_0, 0b000_111_11]
    assert pack(x, 3, layout="padded").tolist() == [0b010_001, 0b100_011, 0b110_101, 0b000_111]


def test_pinned_bytes():
    assert pack(torch.tensor([1, 0, 1, 1, 0, 0, 0, 1, 1]), 1).tolist() == [0b10001101, 0b1]
    assert pack(torch.tensor([3, 0, 2, 1]), 2).tolist() == [0b01_10_00_11]
    assert pack(torch.tensor([0xA, 0x5, 0xF]), 4).tolist() == [0x5A, 0x0F]
    assert pack(torch.tensor([-1, -8, 7]), 4, signed=True).tolist() == [0x8F, 0x07]
    # five uint5 -> 25 bits -> 4 bytes (dense) or 5 bytes (padded)
    x = torch.tensor([31, 0, 31, 0, 1])
    assert pack(x, 5).tolist() == [0x1F, 0x7C, 0x10, 0x00]
    assert pack(x, 5, layout="padded").tolist() == [31, 0, 31, 0, 1]


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_layouts_agree_when_bits_divide_8(bits):
    x = random_values((3, 29), bits, False, torch.int64, bits)
    assert torch.equal(pack(x, bits, layout="dense"), pack(x, bits, layout="padded"))


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("layout", ["dense", "padded"])
def test_packed_size(bits, layout):
    for n in range(0, 40):
        expected = -(-n * bits // 8) if layout == "dense" else -(-n // (8 // bits))
        assert packed_size(n, bits, layout) == expected
        assert pack(torch.zeros(n, dtype=torch.int64), bits, layout=layout).shape == (expected,)


def test_empty_and_zero_length():
    x = torch.zeros(3, 0, dtype=torch.int64)
    assert pack(x, 3).shape == (3, 0)
    assert pack(x, 3, dim=0).shape == (2, 0)
    assert unpack(torch.zeros(3, 0, dtype=torch.uint8), 3, 0).shape == (3, 0)
    assert pack(torch.zeros(0, 5, dtype=torch.int64), 3, dim=0).shape == (0, 5)


def test_zero_dim_input_is_rejected():
    with pytest.raises(ValueError, match="0-d"):
        pack(torch.tensor(3), 3)


def test_out_of_range_values_are_reported_with_index():
    x = torch.tensor([[0, 1, 2], [3, 9, 1]])
    with pytest.raises(ValueError, match=r"value 9 at index \(1, 1\).*uint3 range \[0, 7\]"):
        pack(x, 3)
    with pytest.raises(ValueError, match=r"value -5 at index \(0,\).*int3 range \[-4, 3\]"):
        pack(torch.tensor([-5, 0]), 3, signed=True)
    with pytest.raises(ValueError, match=r"value -1"):
        pack(torch.tensor([1, -1]), 3)


@pytest.mark.parametrize("layout", ["dense", "padded"])
@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("x", [[0, 0xFF, 0, 0, 0x1F3, 0], [0, 0xFF, 0, -1, 0x1F3, 0, 0, 9] * 2])
def test_unchecked_values_are_masked_not_spilled(layout, bits, x):
    x = torch.tensor(x)
    packed = pack(x, bits, layout=layout, check=False)
    assert torch.equal(unpack(packed, bits, len(x), layout=layout).long(), x & ((1 << bits) - 1))


def test_bad_arguments():
    x = torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match="bits must be in 1..8, got 9"):
        pack(x, 9)
    with pytest.raises(ValueError, match="bits must be in 1..8, got 0"):
        unpack(torch.zeros(1, dtype=torch.uint8), 0, 1)
    with pytest.raises(TypeError, match="bits must be an int"):
        pack(x, 3.0)
    with pytest.raises(TypeError, match="x must have an integer or bool dtype, got torch.float32"):
        pack(x.float(), 3)
    with pytest.raises(TypeError, match="complex"):
        pack(x.to(torch.complex64), 3)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        pack([1, 2], 3)
    with pytest.raises(ValueError, match="dim=2 is out of range"):
        pack(x, 3, dim=2)
    with pytest.raises(ValueError, match="layout must be one of"):
        pack(x, 3, layout="planar")
    packed = pack(x, 3)
    with pytest.raises(ValueError, match=r"n=9 values of 3 bits take 4 bytes.*packed.shape\[0\] is 2"):
        unpack(packed, 3, 9)
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        unpack(packed, 3, -1)
    with pytest.raises(TypeError, match="packed must be a torch.uint8 tensor, got torch.int8"):
        unpack(packed.to(torch.int8), 3, 3)
    with pytest.raises(ValueError, match="dtype=torch.uint8 cannot hold signed"):
        unpack(packed, 3, 3, signed=True, dtype=torch.uint8)
    with pytest.raises(ValueError, match="dtype=torch.bool holds only unsigned 1-bit"):
        unpack(packed, 3, 3, dtype=torch.bool)
    # Flags are bools: a truthy string or 1 would silently pick the signed layout.
    for flag in ("no", 1, None):
        with pytest.raises(TypeError, match=f"signed must be a bool, got {flag!r}"):
            pack(x, 3, signed=flag)
        with pytest.raises(TypeError, match=f"signed must be a bool, got {flag!r}"):
            unpack(packed, 3, 3, signed=flag)
        with pytest.raises(TypeError, match=f"signed must be a bool, got {flag!r}"):
            bitpack.value_range(3, flag)
        with pytest.raises(TypeError, match=f"check must be a bool, got {flag!r}"):
            pack(x, 3, check=flag)
    for bits, error in ((0, ValueError), (9, ValueError), ("3", TypeError)):
        with pytest.raises(error, match=f"bits must be .*{bits}"):
            bitpack.values_per_byte(bits)
        with pytest.raises(error, match=f"bits must be .*{bits}"):
            bitpack.value_range(bits, False)


def test_unpack_to_float_and_bool():
    x = torch.tensor([-4, 3, -1, 0, 2])
    assert torch.equal(unpack(pack(x, 3, signed=True), 3, 5, signed=True, dtype=torch.float32), x.float())
    m = torch.tensor([True, False, True])
    assert torch.equal(unpack(pack(m, 1), 1, 3, dtype=torch.bool), m)


def test_padding_bits_of_input_are_ignored():
    # a corrupted padding bit must not change the values
    packed = pack(torch.tensor([5, 6, 7]), 3)
    packed[-1] |= 0x80
    assert unpack(packed, 3, 3).tolist() == [5, 6, 7]


@pytest.mark.parametrize("n", [13, 64, 128])
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("layout", ["dense", "padded"])
@pytest.mark.parametrize("bits", range(1, 8))
def test_every_padding_bit_set_changes_no_value(bits, layout, signed, n):
    # Every bit of every byte that holds no value set to 1 (the high bits of each padded byte,
    # the tail of the last dense byte), whatever route the length takes (bytes, or the word
    # forms at 64 and 128): the unpacked values are unchanged, in every output dtype.
    x = random_values((3, n), bits, signed, torch.int8 if signed else torch.uint8, bits + n)
    used = torch.from_numpy(reference_pack(np.ones((1, n), np.int64) * ((1 << bits) - 1), bits, layout, -1, False))
    packed = pack(x, bits, layout=layout, signed=signed) | ~used
    for dtype in (None, torch.int32, torch.float32):
        out = unpack(packed, bits, n, layout=layout, signed=signed, dtype=dtype)
        assert torch.equal(out.long(), x.long()), dtype


@pytest.mark.parametrize("lead", [(0,), (3, 0), (0, 2)], ids=str)
@pytest.mark.parametrize("bits", range(1, 9))
def test_no_rows_of_word_lengths_round_trip(bits, lead):
    # Lengths the word forms take (whole int32/int64 words and groups of 64) with no rows: the
    # forms that pack the rows as one flat stream must keep the (empty) row dims, either dim.
    for n in (16, 64, 128):
        for layout in ("dense", "padded"):
            for dtype, signed in ((torch.uint8, False), (torch.int8, True)):
                x = torch.zeros(*lead, n, dtype=dtype)
                for values, dim in ((x, -1), (x.movedim(-1, 0).contiguous(), 0)):
                    packed = pack(values, bits, dim=dim, layout=layout, signed=signed)
                    expected = list(values.shape)
                    expected[dim] = packed_size(n, bits, layout)
                    assert list(packed.shape) == expected
                    out = unpack(packed, bits, n, dim=dim, layout=layout, signed=signed)
                    assert out.shape == values.shape and out.dtype == dtype
