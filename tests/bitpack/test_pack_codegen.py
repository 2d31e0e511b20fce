"""pack and unpack compile to exactly one kernel with one output buffer, padding included."""

import numpy as np
import pytest
import torch

from bitpack import pack, packbits, packed_size, unpack

from ..codegen import allocations, compile_and_code, kernel_count

# Every bit width in the dense layout, the straddling widths in the padded one, both dims, and a
# length (13) that is a multiple of neither 8 nor k, so the padding has to live in the kernel.
CASES = [(bits, "dense", -1) for bits in range(1, 9)] + [
    (3, "padded", -1),
    (5, "padded", 0),
    (6, "dense", 0),
    (7, "padded", 0),
]


# A length that is a multiple of 8 takes the grouped form (kernels write (..., groups, 8) or
# (..., groups, bytes per group) and the output is a view of that buffer): every bit width, both
# dims.
WHOLE_GROUP_CASES = [(bits, "dense", -1) for bits in range(1, 9)] + [
    (3, "padded", 0),
    (5, "dense", 0),
    (6, "padded", -1),
    (7, "dense", 0),
]


def check_one_kernel(bits, layout, dim, device, dynamic=False, shape=(5, 13)):
    x = torch.randint(0, 2**bits, shape, device=device)
    n = x.shape[dim]

    packed, source = compile_and_code(lambda t: pack(t, bits, dim=dim, layout=layout), x, dynamic=dynamic)
    assert torch.equal(packed, pack(x, bits, dim=dim, layout=layout))
    assert kernel_count(source, device) == 1, source
    assert len(allocations(source)) == 1, allocations(source)

    values, source = compile_and_code(
        lambda p: unpack(p, bits, n, dim=dim, layout=layout), packed, dynamic=dynamic
    )
    assert torch.equal(values.long(), x)
    assert kernel_count(source, device) == 1, source
    assert len(allocations(source)) == 1, allocations(source)


@pytest.mark.parametrize("bits, layout, dim", CASES)
def test_one_kernel_cpu(bits, layout, dim):
    check_one_kernel(bits, layout, dim, "cpu")


@pytest.mark.parametrize("bits, layout, dim", WHOLE_GROUP_CASES)
def test_one_kernel_cpu_whole_groups(bits, layout, dim):
    check_one_kernel(bits, layout, dim, "cpu", shape=(16, 24) if dim == 0 else (3, 24))


@pytest.mark.parametrize("bits, layout", [(3, "dense"), (5, "padded")])
def test_one_kernel_cpu_dynamic(bits, layout):
    check_one_kernel(bits, layout, -1, "cpu", dynamic=True)
    check_one_kernel(bits, layout, -1, "cpu", dynamic=True, shape=(5, 16))


def test_dynamic_lengths_share_one_compiled_graph():
    compiled = torch.compile(lambda t: pack(t, 3), fullgraph=True, dynamic=True)
    for n in (9, 13, 24, 31):
        x = torch.randint(0, 8, (2, n))
        assert torch.equal(compiled(x), pack(x, 3))
        assert compiled(x).shape[-1] == packed_size(n, 3)


@pytest.mark.parametrize("x", [[0, 0xFF, 0, 0x1F3, 0], [0, 0xFF, 0, -1, 0x1F3, 0, 0, 9]])
def test_compiled_pack_masks_out_of_range_values(x):
    x = torch.tensor(x)
    compiled = torch.compile(lambda t: pack(t, 3), fullgraph=True)
    assert torch.equal(compiled(x), pack(x & 7, 3))


@pytest.mark.cuda
@pytest.mark.parametrize("bits, layout, dim", CASES)
def test_one_kernel_cuda(bits, layout, dim):
    check_one_kernel(bits, layout, dim, "cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("bits, layout, dim", WHOLE_GROUP_CASES)
def test_one_kernel_cuda_whole_groups(bits, layout, dim):
    check_one_kernel(bits, layout, dim, "cuda", shape=(16, 24) if dim == 0 else (3, 24))


@pytest.mark.cuda
@pytest.mark.parametrize("bits, layout", [(3, "dense"), (5, "padded")])
def test_one_kernel_cuda_dynamic(bits, layout):
    check_one_kernel(bits, layout, -1, "cuda", dynamic=True)
    check_one_kernel(bits, layout, -1, "cuda", dynamic=True, shape=(5, 16))


# Bytes read 8 at a time as int64 words (bitpack.words.pack_bit_words) on CPU: packbits of a
# bool tensor whose length fills the words (64; 13 keeps the byte loads) and 1-bit pack of uint8
# values. The word form's mask, 0x0101010101010101, is a literal of its kernel.
WORD_MASK = str(0x0101010101010101)


@pytest.mark.parametrize("n", [64, 13])
@pytest.mark.parametrize("bitorder", ["big", "little"])
def test_packbits_of_bools_is_one_kernel_cpu(n, bitorder):
    x = torch.rand(5, n, generator=torch.Generator().manual_seed(n)) < 0.5
    packed, source = compile_and_code(lambda t: packbits(t, -1, bitorder=bitorder), x)
    np.testing.assert_array_equal(packed.numpy(), np.packbits(x.numpy(), axis=-1, bitorder=bitorder))
    assert kernel_count(source, "cpu") == 1, source
    assert (WORD_MASK in source) == (n % 8 == 0), source
    if n % 8 == 0:  # (the partial byte's form concatenates into a second buffer)
        assert len(allocations(source)) == 1, allocations(source)


def test_one_bit_pack_of_bytes_reads_words_cpu():
    x = torch.randint(0, 2, (5, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    packed, source = compile_and_code(lambda t: pack(t, 1), x)
    assert torch.equal(packed, pack(x.long(), 1))  # the byte form's result
    assert kernel_count(source, "cpu") == 1, source
    assert WORD_MASK in source, source


def test_packbits_keeps_byte_loads_where_inductor_cannot_view_bools_cpu(monkeypatch):
    # torch 2.11's inductor failed on a view of a bool tensor: there compiled packbits keeps
    # its byte loads (eager takes the words on any version).
    import bitpack.bits

    monkeypatch.setattr(bitpack.bits, "_inductor_views_bools", lambda: False)
    x = torch.rand(5, 64, generator=torch.Generator().manual_seed(1)) < 0.5
    packed, source = compile_and_code(lambda t: packbits(t, -1), x)
    np.testing.assert_array_equal(packed.numpy(), np.packbits(x.numpy(), axis=-1))
    assert WORD_MASK not in source, source
