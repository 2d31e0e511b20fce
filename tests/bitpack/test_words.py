"""The int32-word form of the dense stream (bitpack.words), against the bit-by-bit reference.

pack / unpack take the word form on CUDA only, so the CPU tests call it directly (the same
tensor code) or through pack / unpack with the device choice patched, and the CUDA tests go
through pack / unpack. Every case is one the word form takes (checked with ``words_fit`` or by
counting the word kernels' calls), so a wrong word kernel fails against the reference, not
against the byte-at-a-time form it replaces.
"""

import contextlib
import importlib
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from unittest import mock

from bitpack import pack, unpack
from bitpack.words import (
    GROUP,
    chunks_per_word,
    pack_bit_words,
    pack_gather_stream,
    pack_gather_words,
    pack_padded3_gather,
    pack_padded3_words,
    pack_words,
    unpack_padded3_spread,
    unpack_padded3_words,
    unpack_spread_stream,
    unpack_spread_words,
    unpack_words,
    words_fit,
)

from ..codegen import allocations, compile_and_code, kernel_count, vectorizes
from .reference import reference_pack
from .test_pack import random_values

WORD_BITS = [1, 2, 3, 4, 5, 6, 7]


def word_pack(x, bits):
    """pack(x, bits) through the word form, on any device (x: uint8 or int8, last dim)."""
    assert words_fit(x, GROUP)
    return pack_words(x.view(torch.int32), bits).view(torch.uint8)


def word_unpack(packed, bits, signed=False):
    assert words_fit(packed, 4 * bits)
    return unpack_words(packed.view(torch.int32), bits, signed).view(torch.int8 if signed else torch.uint8)


def values(shape, bits, signed, seed):
    """Random values in 1-byte lanes, the ones the word form reads."""
    return random_values(shape, bits, signed, torch.int8 if signed else torch.uint8, seed)


def values_along(shape, bits, signed, seed, dim_first):
    """values() with the packed dim (``shape``'s last) moved first when ``dim_first``, still
    contiguous; returns them and that dim."""
    x = values(shape, bits, signed, seed)
    return (x.movedim(-1, 0).contiguous(), 0) if dim_first else (x, -1)


def expected_bytes(x, bits, signed, dim=-1, layout="dense"):
    return torch.from_numpy(np.ascontiguousarray(reference_pack(x.numpy(), bits, layout, dim, signed)))


@st.composite
def word_cases(draw, widths=tuple(WORD_BITS), group=GROUP, most_groups=5):
    """(bits, signed, shape, seed): whole groups of ``group`` values along the last dim."""
    bits = draw(st.sampled_from(widths))
    signed = draw(st.booleans())
    lead = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=2)))
    groups = draw(st.integers(1, most_groups))
    seed = draw(st.integers(0, 2**31 - 1))
    return bits, signed, lead + (group * groups,), seed


@given(word_cases())
def test_word_form_matches_reference_and_round_trips(case):
    bits, signed, shape, seed = case
    x = values(shape, bits, signed, seed)
    packed = word_pack(x, bits)
    assert torch.equal(packed, expected_bytes(x, bits, signed))
    assert torch.equal(word_unpack(packed, bits, signed), x)


@pytest.mark.parametrize("bits", WORD_BITS)
@pytest.mark.parametrize("signed", [False, True])
def test_every_value_in_every_position(bits, signed):
    # Each of the 32 positions of a group takes every value of the format.
    codes = torch.arange(1 << bits).repeat_interleave(GROUP)
    x = (codes.view(-1, GROUP) + torch.arange(GROUP)) % (1 << bits)  # rows: shifted sequences
    if signed:
        x = x - (1 << (bits - 1))
    x = x.to(torch.int8 if signed else torch.uint8)
    packed = word_pack(x, bits)
    assert torch.equal(packed, expected_bytes(x, bits, signed))
    assert torch.equal(word_unpack(packed, bits, signed), x)


@pytest.mark.parametrize("bits", WORD_BITS)
def test_unchecked_high_bits_are_dropped_not_spilled(bits):
    # Every byte value, including those whose top bit makes the int32 word negative.
    x = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(8, GROUP)
    packed = word_pack(x, bits)
    assert torch.equal(packed, expected_bytes(x.long() & ((1 << bits) - 1), bits, False))


@pytest.mark.parametrize("bits", WORD_BITS)
def test_unpack_reads_every_stream_bit(bits):
    # Every byte pattern in the packed stream (all 256 values in every byte position).
    packed = (torch.arange(4 * bits * 64) * 37 % 256).to(torch.uint8).view(16, -1)
    n = packed.shape[-1] * 8 // bits
    stream = np.unpackbits(packed.numpy(), axis=-1, bitorder="little").reshape(16, n, bits)
    expected = (stream * (1 << np.arange(bits))).sum(-1)
    assert torch.equal(word_unpack(packed, bits).long(), torch.from_numpy(expected))
    signed = np.where(expected >= 1 << (bits - 1), expected - (1 << bits), expected)
    assert torch.equal(word_unpack(packed, bits, signed=True).long(), torch.from_numpy(signed))


@given(st.booleans(), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_padded_3_bit_words_match_reference(signed, words, seed):
    x = values((3, 8 * words), 3, signed, seed)
    packed = pack_padded3_words(x.view(torch.int32)).view(torch.uint8)
    assert torch.equal(packed, expected_bytes(x, 3, signed, layout="padded"))
    restored = unpack_padded3_words(packed.view(torch.int32), signed).view(x.dtype)
    assert torch.equal(restored, x)


def test_padded_3_bit_words_every_byte():
    # Unpack: every byte value (bits 6-7 are padding and ignored). Pack: every byte value as
    # input, whose bits above 3 are dropped.
    packed = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    expected = torch.stack([packed & 7, (packed >> 3) & 7], -1).flatten()
    assert torch.equal(unpack_padded3_words(packed.view(torch.int32)).view(torch.uint8), expected)
    signed = torch.where(expected >= 4, expected.to(torch.int16) - 8, expected.to(torch.int16))
    assert torch.equal(unpack_padded3_words(packed.view(torch.int32), True).view(torch.int8), signed.to(torch.int8))
    x = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    packed = pack_padded3_words(x.view(torch.int32)).view(torch.uint8)
    assert torch.equal(packed, expected_bytes(x.long() & 7, 3, False, layout="padded"))


def test_bit_words_every_pattern():
    # Every pattern of 8 bits, with random stray bits above bit 0 of each byte (dropped), and
    # bit 7 of the last byte set, which makes the int64 word negative.
    patterns = (torch.arange(256)[:, None] >> torch.arange(8)) & 1
    stray = torch.randint(0, 128, (256, 8), generator=torch.Generator().manual_seed(0)) << 1
    stray[:, 7] |= 0x80
    values = (patterns | stray).to(torch.uint8)
    packed = pack_bit_words(values.view(torch.int64))
    assert torch.equal(packed.view(-1), torch.arange(256).to(torch.uint8))
    assert torch.equal(packed, expected_bytes(patterns.to(torch.uint8), 1, False))


@contextlib.contextmanager
def words_everywhere():
    """pack / unpack take the word forms on CPU too (they are CUDA only by default); yields a
    dict counting the calls of each word kernel."""
    pack_module = importlib.import_module("bitpack.pack")  # the module, not bitpack.pack()
    words_module = importlib.import_module("bitpack.words")
    calls = {}

    def counted(name):
        original = getattr(pack_module, name)

        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return original(*args, **kwargs)

        return mock.patch.object(pack_module, name, wrapper)

    names = ("pack_words", "unpack_words", "pack_bit_words", "pack_padded3_words", "unpack_padded3_words")
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(counted(name))
        stack.enter_context(mock.patch.object(words_module, "words_pay_off", lambda device: True))
        yield calls


@given(case=word_cases(), dim_first=st.booleans())
def test_api_word_form_matches_reference(case, dim_first):
    bits, signed, shape, seed = case
    x = values(shape, bits, signed, seed)
    dim = -1
    if dim_first and x.ndim > 1:
        # Packed dim first with size-1 dims after it: contiguous, but torch's int32 view wants
        # whole-word strides on the size-1 dims too, which such tensors may or may not have.
        x, dim = x.reshape(-1, shape[-1])[0].reshape(shape[-1], *([1] * (x.ndim - 1))), 0
    with words_everywhere() as calls:
        packed = pack(x, bits, dim=dim, signed=signed)
        assert torch.equal(packed, expected_bytes(x, bits, signed, dim=dim))
        assert torch.equal(unpack(packed, bits, x.shape[dim], dim=dim, signed=signed), x)
    if dim == -1:
        assert calls.get("unpack_words") == 1
        assert calls.get("pack_words") == (1 if bits > 1 else None)
        assert calls.get("pack_bit_words") == (1 if bits == 1 else None)


@pytest.mark.parametrize("bits, layout, n", [(3, "dense", 31), (7, "dense", 28), (3, "padded", 7), (1, "dense", 30)])
@pytest.mark.parametrize("signed", [False, True])
def test_api_lengths_that_end_a_word_but_not_a_group(bits, layout, n, signed):
    # 31 3-bit values end on a word boundary (12 bytes), as do 7 padded 3-bit values (4 bytes);
    # the word forms would unpack 32 or 8 values of them, so these lengths take the byte form.
    x = values((2, n), bits, signed, n)
    with words_everywhere() as calls:
        packed = pack(x, bits, layout=layout, signed=signed)
        assert torch.equal(packed, expected_bytes(x, bits, signed, layout=layout))
        assert torch.equal(unpack(packed, bits, n, layout=layout, signed=signed), x)
    assert not calls


@pytest.mark.parametrize("signed", [False, True])
def test_api_padded_3_bits_in_words(signed):
    x = values((5, 8 * 7), 3, signed, 3)
    with words_everywhere() as calls:
        packed = pack(x, 3, layout="padded", signed=signed)
        assert torch.equal(packed, expected_bytes(x, 3, signed, layout="padded"))
        assert torch.equal(unpack(packed, 3, 8 * 7, layout="padded", signed=signed), x)
    assert calls == {"pack_padded3_words": 1, "unpack_padded3_words": 1}


def test_api_word_form_under_compile():
    # Rows packed as one flat stream (contiguous input): still one kernel writing only the
    # output, not an int32 buffer copied into the output's shape after.
    x = values((2, 2, 2 * GROUP), 5, False, 5)
    with words_everywhere() as calls:
        packed, source = compile_and_code(lambda t: pack(t, 5), x)
        assert torch.equal(packed, expected_bytes(x, 5, False))
        assert kernel_count(source, "cpu") == 1 and len(allocations(source)) == 1, source
        restored, source = compile_and_code(lambda p: unpack(p, 5, 2 * GROUP), packed)
        assert torch.equal(restored, x)
        assert kernel_count(source, "cpu") == 1 and len(allocations(source)) == 1, source
    assert calls == {"pack_words": 1, "unpack_words": 1}  # traced once each


def test_layouts_the_word_form_leaves_to_the_byte_form():
    x = values((4, 64), 3, False, 0)
    assert words_fit(x, GROUP)
    assert not words_fit(x[:, :40], GROUP)  # not whole groups
    assert not words_fit(x.t(), GROUP)  # packed dim not contiguous
    assert not words_fit(x[:, 1:33], GROUP)  # starts inside a word
    assert not words_fit(x.long(), GROUP)  # 8-byte lanes
    assert not words_fit(x[:, :0], GROUP)
    # Offset 0 of a storage that itself starts inside a word (from_numpy of a sliced array):
    # eager reads the address, not the storage offset.
    shifted = torch.from_numpy(np.zeros(4 + 2 * GROUP, np.uint8)[1 : 1 + 2 * GROUP])
    assert shifted.storage_offset() == 0 and shifted.data_ptr() % 4 == 1
    assert not words_fit(shifted, GROUP)
    flat = values((4 + 3 * GROUP,), 5, False, 1)
    for start in range(4):  # eager reads the storage offset: a slice inside a word falls back
        part = flat[start : start + 3 * GROUP]
        assert words_fit(part, GROUP) == (start % 4 == 0)
        assert torch.equal(pack(part, 5), expected_bytes(part, 5, False))
        stream = torch.cat([torch.zeros(start, dtype=torch.uint8), pack(part, 5)])[start:]
        assert words_fit(stream, 4 * 5) == (start % 4 == 0)
        assert torch.equal(unpack(stream, 5, 3 * GROUP), part)


@pytest.mark.parametrize("n", [8, 24, 40, 8 * 9])
def test_api_one_bit_pack_in_int64_words(n):
    # Any whole number of bytes (8 values each), not only groups of 32; eager reads the offset:
    # a slice starting inside an int64 word (even on an int32 boundary) falls back to bytes.
    flat = values((8 + 3 * n,), 1, False, n)
    for start in range(0, 9):
        part = flat[start : start + n]
        with words_everywhere() as calls:
            packed = pack(part, 1)
        assert torch.equal(packed, expected_bytes(part, 1, False))
        assert calls.get("pack_bit_words") == (1 if start % 8 == 0 else None), start
    rows = values((3, 2 * n), 1, True, n)[:, :n]  # signed, rows strided by whole words
    with words_everywhere() as calls:
        assert torch.equal(pack(rows, 1, signed=True), expected_bytes(rows, 1, True))
        assert torch.equal(pack(rows, 1, layout="padded", signed=True), expected_bytes(rows, 1, True))
    assert calls == {"pack_bit_words": 2}


@pytest.mark.parametrize("bits, start", [(1, 4), (3, 1)])
def test_compiled_slice_inside_a_word_raises(bits, start):
    # Under compile the offset cannot be read (see words_fit): a contiguous slice that starts
    # inside a word must fail loudly in torch's dtype view, never give wrong bytes.
    flat = values((start + 64,), bits, False, start)
    with words_everywhere():
        torch._dynamo.reset()
        with pytest.raises(Exception, match="storage_offset"):
            torch.compile(lambda t: pack(t, bits), fullgraph=True)(flat[start:])
    torch._dynamo.reset()


def test_chunks_per_word():
    # Counted by hand: chunks of 4 bits values tile a word exactly when bits divides 8 (8, 4,
    # 2); 12-bit chunks start at 24, 36, 48 and 60 and all touch stream bits [32, 64); 20-bit
    # chunks at 20, 40, 60 touch [32, 64); 24- and 28-bit chunks: never more than 2.
    assert [chunks_per_word(b) for b in WORD_BITS] == [8, 4, 4, 2, 3, 2, 2]


@pytest.mark.parametrize("bits, signed", [(3, False), (7, True)])
def test_word_form_compiles_to_one_kernel_cpu(bits, signed):
    x = values((4, 2 * GROUP), bits, signed, bits)
    packed, source = compile_and_code(lambda t: word_pack(t, bits), x)
    assert torch.equal(packed, expected_bytes(x, bits, signed))
    assert kernel_count(source, "cpu") == 1, source
    assert len(allocations(source)) == 1, allocations(source)
    restored, source = compile_and_code(lambda p: word_unpack(p, bits, signed), packed)
    assert torch.equal(restored, x)
    assert kernel_count(source, "cpu") == 1, source
    assert len(allocations(source)) == 1, allocations(source)


@pytest.mark.cuda
@pytest.mark.parametrize("bits", WORD_BITS)
@pytest.mark.parametrize("signed", [False, True])
def test_pack_and_unpack_take_the_word_form_on_cuda(bits, signed):
    x = values((3, 4 * GROUP + 4), bits, signed, bits).cuda()
    for part in (x[:, :-4], x[:, 1:-3]):  # the second starts inside a word: byte form
        assert words_fit(part, GROUP) == (part.storage_offset() == 0)
        packed = pack(part, bits, signed=signed)
        assert torch.equal(packed.cpu(), expected_bytes(part.cpu(), bits, signed))
        assert torch.equal(unpack(packed, bits, 4 * GROUP, signed=signed), part)


@pytest.mark.cuda
@pytest.mark.parametrize("signed", [False, True])
def test_padded_3_bits_take_the_word_form_on_cuda(signed):
    x = values((3, 4 * GROUP + 4), 3, signed, 7).cuda()
    for part in (x[:, :-4], x[:, 1:-3]):  # the second starts inside a word: byte form
        packed = pack(part, 3, layout="padded", signed=signed)
        assert torch.equal(packed.cpu(), expected_bytes(part.cpu(), 3, signed, layout="padded"))
        assert torch.equal(unpack(packed, 3, 4 * GROUP, layout="padded", signed=signed), part)
    whole = x[:, :-4].contiguous()
    packed, source = compile_and_code(lambda t: pack(t, 3, layout="padded", signed=signed), whole)
    assert torch.equal(packed.cpu(), expected_bytes(whole.cpu(), 3, signed, layout="padded"))
    assert kernel_count(source, "cuda") == 1 and "'*i32'" in source, source
    restored, source = compile_and_code(lambda p: unpack(p, 3, 4 * GROUP, layout="padded", signed=signed), packed)
    assert torch.equal(restored, whole)
    assert kernel_count(source, "cuda") == 1 and "'*i32'" in source, source


@pytest.mark.cuda
@pytest.mark.parametrize("bits", WORD_BITS)
def test_word_form_compiles_to_one_kernel_cuda(bits):
    x = values((64, 4 * GROUP), bits, False, bits).cuda()
    packed, source = compile_and_code(lambda t: pack(t, bits), x)
    assert torch.equal(packed.cpu(), expected_bytes(x.cpu(), bits, False))
    assert kernel_count(source, "cuda") == 1 and len(allocations(source)) == 1, source
    assert ("'*i64'" if bits == 1 else "'*i32'") in source, source  # values read as words
    restored, source = compile_and_code(lambda p: unpack(p, bits, 4 * GROUP), packed)
    assert torch.equal(restored, x)
    assert kernel_count(source, "cuda") == 1, source
    assert "'*i32'" in source, source


# ---- 1, 2 and 4 bits spread into int64 words (unpack's form on CPU) ----------------------------
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_spread_words_every_value_in_every_position(bits, signed):
    # Every value of the width at every position of a word, and words whose bit 31 is set
    # (negative int32s: their sign must not leak into the values), against the reference bytes.
    count = 32 // bits
    codes = torch.arange(1 << bits)
    x = ((torch.arange(count)[None, :] + codes[:, None]) % (1 << bits)).to(torch.uint8)  # (2^bits, count)
    x = torch.cat([x, torch.full((1, count), (1 << bits) - 1, dtype=torch.uint8)])  # all ones: -1
    if signed:
        x = ((x.to(torch.int16) ^ (1 << (bits - 1))) - (1 << (bits - 1))).to(torch.int8)
    packed = expected_bytes(x, bits, signed)
    assert packed.shape == (x.shape[0], 4)
    out = unpack_spread_words(packed.view(torch.int32), bits, signed)
    assert out.dtype == torch.int64 and out.shape == (x.shape[0], 4 // bits)
    assert torch.equal(out.view(torch.int8 if signed else torch.uint8), x)


@given(case=word_cases(), dim_first=st.booleans())
def test_api_unpack_spreads_words_on_cpu(case, dim_first):
    # bitpack.unpack on CPU: the spread form for every contiguous whole-word case of 1, 2, 4
    # bits, whatever the dim; against the reference bytes and values.
    bits, signed, shape, seed = case
    if bits not in (1, 2, 4):
        bits = 4
    x, dim = values_along(shape, bits, signed, seed, dim_first)
    packed = expected_bytes(x, bits, signed, dim)
    pack_module = importlib.import_module("bitpack.pack")
    with mock.patch.object(pack_module, "unpack_spread_words", wraps=unpack_spread_words) as spread:
        assert torch.equal(unpack(packed, bits, x.shape[dim], dim=dim, signed=signed), x)
    assert spread.call_count == (1 if packed.movedim(dim, -1).is_contiguous() else 0)


def test_spread_words_compile_to_one_kernel_cpu():
    x = values((4, 2 * GROUP), 4, False, 4)
    packed = expected_bytes(x, 4, False)
    restored, source = compile_and_code(lambda p: unpack(p, 4, x.shape[-1]), packed)
    assert torch.equal(restored, x)
    assert kernel_count(source, "cpu") == 1, source
    assert len(allocations(source)) == 1, allocations(source)
    # int32 words in, int64 words out: not the byte-at-a-time form (uint8 in and out)
    assert "const int32_t* in_ptr0" in source and "int64_t* out_ptr0" in source, source


@pytest.mark.parametrize("bits", [2, 4])
def test_gather_words_every_value_in_every_position(bits):
    # Every value at every position of an int32 output word, with stray high bits in every byte
    # (dropped) and words whose stream bit 31 is set (the int32's sign), against the reference.
    count = 32 // bits
    codes = torch.arange(1 << bits)
    x = ((torch.arange(count)[None, :] + codes[:, None]) % (1 << bits)).to(torch.uint8)
    x = torch.cat([x, torch.full((1, count), (1 << bits) - 1, dtype=torch.uint8)])
    stray = torch.randint(0, 256 >> bits, x.shape, generator=torch.Generator().manual_seed(bits)).to(torch.uint8) << bits
    words = pack_gather_words((x | stray).view(torch.int64), bits)
    assert words.dtype == torch.int32 and words.shape == (x.shape[0], 1)
    assert torch.equal(words.view(torch.uint8), expected_bytes(x, bits, False))


@given(case=word_cases(), dim_first=st.booleans())
def test_api_pack_gathers_words_on_cpu(case, dim_first):
    bits, signed, shape, seed = case
    if bits not in (2, 4):
        bits = 2
    x, dim = values_along(shape, bits, signed, seed, dim_first)
    pack_module = importlib.import_module("bitpack.pack")
    with mock.patch.object(pack_module, "pack_gather_words", wraps=pack_gather_words) as gather, \
            mock.patch.object(pack_module, "pack_gather_stream", wraps=pack_gather_stream) as stream:
        assert torch.equal(pack(x, bits, dim=dim, signed=signed), expected_bytes(x, bits, signed, dim))
    contiguous = x.movedim(dim, -1).is_contiguous()
    by_stream = bits == 2 and x.shape[dim] % 64 == 0  # 2 bits in whole groups of 64: the stream form
    assert gather.call_count == (1 if contiguous and not by_stream else 0)
    assert stream.call_count == (1 if contiguous and by_stream else 0)


def test_gather_words_compile_to_one_kernel_cpu():
    x = values((4, 2 * GROUP), 4, True, 5)
    packed, source = compile_and_code(lambda t: pack(t, 4, signed=True), x)
    assert torch.equal(packed, expected_bytes(x, 4, True))
    assert kernel_count(source, "cpu") == 1, source
    assert len(allocations(source)) == 1, allocations(source)
    # int64 words in, int32 words out: not the byte-at-a-time form (uint8 in and out)
    assert "const int64_t* in_ptr0" in source and "int32_t* out_ptr0" in source, source


# ---- 3, 5, 6 and 7 bits through int64 words of the stream, 64 values at a time (CPU) -----------
STREAM_BITS = [3, 5, 6, 7]


def every_value_everywhere(bits, count):
    """Rows of ``count`` values: every value at every position (rotated per row) and a row of
    all ones (-1 signed: the stream words' sign bits set)."""
    codes = torch.arange(1 << bits)
    x = ((torch.arange(count)[None, :] + codes[:, None]) % (1 << bits)).to(torch.uint8)
    return torch.cat([x, torch.full((1, count), (1 << bits) - 1, dtype=torch.uint8)])


@pytest.mark.parametrize("bits", [2] + STREAM_BITS)
def test_gather_stream_every_value_in_every_position(bits):
    # With stray high bits in every byte (dropped), against the reference bytes; 128 values:
    # two groups, so a chunk of the second lands in each word's place too.
    x = every_value_everywhere(bits, 128)
    stray = torch.randint(0, 256 >> bits, x.shape, generator=torch.Generator().manual_seed(bits)).to(torch.uint8) << bits
    words = pack_gather_stream((x | stray).view(torch.int64), bits)
    assert words.dtype == torch.int64 and words.shape == (x.shape[0], 2 * bits)
    assert torch.equal(words.view(torch.uint8), expected_bytes(x, bits, False))


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("bits", STREAM_BITS)
def test_spread_stream_every_value_in_every_position(bits, signed):
    x = every_value_everywhere(bits, 128)
    if signed:
        x = ((x.to(torch.int16) ^ (1 << (bits - 1))) - (1 << (bits - 1))).to(torch.int8)
    packed = expected_bytes(x, bits, signed)
    out = unpack_spread_stream(packed.view(torch.int64), bits, signed)
    assert out.dtype == torch.int64 and out.shape == (x.shape[0], 16)
    assert torch.equal(out.view(torch.int8 if signed else torch.uint8), x)


@given(case=word_cases(tuple(STREAM_BITS), 64, 3), dim_first=st.booleans())
def test_api_stream_in_int64_words_on_cpu(case, dim_first):
    # bitpack.pack / unpack on CPU: the stream form for every contiguous case of whole groups
    # of 64, whatever the dim (non-contiguous ones take the byte form); against the reference.
    bits, signed, shape, seed = case
    x, dim = values_along(shape, bits, signed, seed, dim_first)
    pack_module = importlib.import_module("bitpack.pack")
    with mock.patch.object(pack_module, "pack_gather_stream", wraps=pack_gather_stream) as gather, \
            mock.patch.object(pack_module, "unpack_spread_stream", wraps=unpack_spread_stream) as spread:
        packed = pack(x, bits, dim=dim, signed=signed)
        assert torch.equal(packed, expected_bytes(x, bits, signed, dim))
        assert torch.equal(unpack(packed, bits, x.shape[dim], dim=dim, signed=signed), x)
    contiguous = x.movedim(dim, -1).is_contiguous()
    assert gather.call_count == spread.call_count == (1 if contiguous else 0)


@pytest.mark.parametrize("n", [32, 96, 63])
def test_api_stream_leaves_partial_groups_to_the_byte_form(n):
    # 32 and 96 are whole int32 groups but not whole groups of 64; 63 is neither.
    x = values((3, n), 5, True, n)
    pack_module = importlib.import_module("bitpack.pack")
    with mock.patch.object(pack_module, "pack_gather_stream", wraps=pack_gather_stream) as gather, \
            mock.patch.object(pack_module, "unpack_spread_stream", wraps=unpack_spread_stream) as spread:
        packed = pack(x, 5, signed=True)
        assert torch.equal(packed, expected_bytes(x, 5, True))
        assert torch.equal(unpack(packed, 5, n, signed=True), x)
    assert gather.call_count == spread.call_count == 0


def numels(shapes):
    return sorted(int(np.prod(shape)) for shape in shapes)


@pytest.mark.parametrize("bits, signed", [(3, False), (7, True)])
def test_stream_compiles_to_a_vectorized_pass_and_a_group_pass_cpu(bits, signed):
    # Two loops by design (bitpack.words._inductor_buffer), in one C++ kernel: the word-by-word gather
    # or spread, which inductor vectorizes, and the pass over groups of 64 values. Allocated:
    # the output (in int64 words) and the chunks between the passes, one per 8 values.
    x = values((4, 2 * 64), bits, signed, bits)
    packed, source = compile_and_code(lambda t: pack(t, bits, signed=signed), x)
    assert torch.equal(packed, expected_bytes(x, bits, signed))
    assert kernel_count(source, "cpu") == 1, source
    assert numels(allocations(source)) == sorted([x.numel() // 8, packed.numel() // 8]), allocations(source)
    if vectorizes():
        assert re.search(r"Vectorized\w*<int64_t(, *\d+)?>::loadu\(in_ptr0", source), source
    restored, source = compile_and_code(lambda p: unpack(p, bits, 2 * 64, signed=signed), packed)
    assert torch.equal(restored, x)
    assert kernel_count(source, "cpu") == 1, source
    assert numels(allocations(source)) == [x.numel() // 8] * 2, allocations(source)
    if vectorizes():
        assert re.search(r"Vectorized\w*<int64_t", source), source


# ---- the padded 3-bit layout through int64 words of 8 values (CPU) ---------------------------
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_padded3_gather_and_spread_every_value_in_every_position(signed):
    # Stray bits above each value's 3 (pack drops them) and in the pad bits 6-7 of every
    # packed byte (unpack ignores them), against the reference bytes.
    x = every_value_everywhere(3, 16)
    stray = torch.randint(0, 32, x.shape, generator=torch.Generator().manual_seed(3)).to(torch.uint8) << 3
    words = pack_padded3_gather((x | stray).view(torch.int64))
    assert words.dtype == torch.int32 and words.shape == (x.shape[0], 2)
    packed = expected_bytes(x, 3, False, layout="padded")
    assert torch.equal(words.view(torch.uint8), packed)
    if signed:
        x = ((x.to(torch.int16) ^ 4) - 4).to(torch.int8)
    out = unpack_padded3_spread((packed | 0xC0).view(torch.int32), signed)
    assert out.dtype == torch.int64 and out.shape == (x.shape[0], 2)
    assert torch.equal(out.view(torch.int8 if signed else torch.uint8), x)


@given(signed=st.booleans(), lead=st.lists(st.integers(1, 3), max_size=2), words=st.integers(1, 5),
       seed=st.integers(0, 2**31 - 1), dim_first=st.booleans())
def test_api_padded3_in_int64_words_on_cpu(signed, lead, words, seed, dim_first):
    x, dim = values_along(tuple(lead) + (8 * words,), 3, signed, seed, dim_first)
    pack_module = importlib.import_module("bitpack.pack")
    with mock.patch.object(pack_module, "pack_padded3_gather", wraps=pack_padded3_gather) as gather, \
            mock.patch.object(pack_module, "unpack_padded3_spread", wraps=unpack_padded3_spread) as spread:
        packed = pack(x, 3, dim=dim, layout="padded", signed=signed)
        assert torch.equal(packed, expected_bytes(x, 3, signed, dim, layout="padded"))
        assert torch.equal(unpack(packed, 3, x.shape[dim], dim=dim, layout="padded", signed=signed), x)
    contiguous = x.movedim(dim, -1).is_contiguous()
    assert gather.call_count == spread.call_count == (1 if contiguous else 0)


def test_padded3_words_compile_to_one_vectorized_kernel_cpu():
    x = values((4, 64), 3, True, 7)
    packed, source = compile_and_code(lambda t: pack(t, 3, layout="padded", signed=True), x)
    assert torch.equal(packed, expected_bytes(x, 3, True, layout="padded"))
    assert kernel_count(source, "cpu") == 1 and len(allocations(source)) == 1, source
    assert "const int64_t* in_ptr0" in source and "int32_t* out_ptr0" in source, source
    if vectorizes():
        assert re.search(r"Vectorized\w*<int64_t(, *\d+)?>::loadu\(in_ptr0", source), source
    restored, source = compile_and_code(lambda p: unpack(p, 3, 64, layout="padded", signed=True), packed)
    assert torch.equal(restored, x)
    assert kernel_count(source, "cpu") == 1 and len(allocations(source)) == 1, source
    assert "const int32_t* in_ptr0" in source and "int64_t* out_ptr0" in source, source
