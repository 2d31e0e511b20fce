"""pack and unpack compile to exactly one kernel with one output buffer, padding included."""

import pytest
import torch

from bitpack import pack, packed_size, unpack

from ..codegen import allocations, compile_and_code, kernel_count

# Every bit width in the dense layout, the straddling widths in the padded one, both dims, and a
# length (13) that is a multiple of neither 8 nor k, so the padding has to live in the kernel.
CASES = [(bits, "dense", -1) for bits in range(1, 9)] + [
    (3, "padded", -1),
    (5, "padded", 0),
    (6, "dense", 0),
    (7, "padded", 0),
]


def check_one_kernel(bits, layout, dim, device, dynamic=False):
    x = torch.randint(0, 2**bits, (5, 13), device=device)
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


@pytest.mark.parametrize("bits, layout", [(3, "dense"), (5, "padded")])
def test_one_kernel_cpu_dynamic(bits, layout):
    check_one_kernel(bits, layout, -1, "cpu", dynamic=True)


def test_dynamic_lengths_share_one_compiled_graph():
    compiled = torch.compile(lambda t: pack(t, 3), fullgraph=True, dynamic=True)
    for n in (9, 13, 24, 31):
        x = torch.randint(0, 8, (2, n))
        assert torch.equal(compiled(x), pack(x, 3))
        assert compiled(x).shape[-1] == packed_size(n, 3)


def test_compiled_pack_masks_out_of_range_values():
    x = torch.tensor([0, 0xFF, 0, 0x1F3, 0])
    compiled = torch.compile(lambda t: pack(t, 3), fullgraph=True)
    assert torch.equal(compiled(x), pack(x & 7, 3))


@pytest.mark.cuda
@pytest.mark.parametrize("bits, layout, dim", CASES)
def test_one_kernel_cuda(bits, layout, dim):
    check_one_kernel(bits, layout, dim, "cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("bits, layout", [(3, "dense"), (5, "padded")])
def test_one_kernel_cuda_dynamic(bits, layout):
    check_one_kernel(bits, layout, -1, "cuda", dynamic=True)
