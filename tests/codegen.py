"""Helpers for codegen tests: compile a function, run it, and read the kernels inductor wrote.

CPU kernels are the ``cpp_fused_*`` functions; CUDA kernels are counted by their launches
(``.run(`` in the wrapper code).
"""

from __future__ import annotations

import math
import re

import torch
from torch._inductor.utils import run_and_get_code


def compile_and_code(fn, *args, dynamic=False, **compile_options):
    """Run ``torch.compile(fn, fullgraph=True)`` on ``args``; return (output, generated source)."""
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, dynamic=dynamic, **compile_options)
    out, codes = run_and_get_code(compiled, *args)
    return out, "\n".join(codes)


def kernel_count(source: str, device: str) -> int:
    """Number of kernels the generated wrapper launches on ``device`` ("cpu" or "cuda")."""
    if device == "cpu":
        return len(set(re.findall(r"\bcpp_fused_\w+", source)))
    return len(re.findall(r"\.run\(", source))


def allocations(source: str) -> list[tuple[int, ...]]:
    """Shapes of the buffers the wrapper allocates (``empty_strided*((shape), ...)``)."""
    return [shape for shape, _ in typed_allocations(source)]


def typed_allocations(source: str) -> list[tuple[tuple[int, ...], str]]:
    """(shape, dtype name such as ``"torch.float32"``, or None where the call names none in
    third place) of each buffer the wrapper allocates."""
    found = []
    for match in re.finditer(r"= empty_strided\w*\(\((.*?)\), \(.*?\)(?:, (torch\.\w+))?", source):
        dims = [d.strip() for d in match.group(1).split(",") if d.strip()]
        found.append((tuple(int(d) if d.isdigit() else d for d in dims), match.group(2)))
    return found


def weight_sized_allocations(source: str, elements: int) -> list[tuple[tuple[int, ...], str]]:
    """(shape, dtype) of each buffer of static shape and at least ``elements`` elements that the
    wrapper allocates (:func:`typed_allocations`): a dequantized weight, where none should be."""
    return [(shape, dtype) for shape, dtype in typed_allocations(source)
            if all(isinstance(d, int) for d in shape) and math.prod(shape) >= elements]


def vector_bits() -> int:
    """The width in bits of the vectors inductor's C++ backend writes on this machine, 0 for
    none (read from inductor, independently of the package's own reading)."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    isa = pick_vec_isa()
    return isa.bit_width() if isa else 0


def vectorizes() -> bool:
    """Whether inductor's C++ backend vectorizes on this machine (it needs AVX2, AVX-512, NEON
    or the like; without one every loop is scalar)."""
    return vector_bits() > 0
