"""packbits / unpackbits: numpy-compatible boolean packing, eight truth values per byte.

Same values, shapes, dtype (uint8) and error classes as ``numpy.packbits`` and
``numpy.unpackbits``. The "little" bit order is exactly the 1-bit layout of
:func:`~bitpack.pack` (element i in bit i mod 8 of byte i div 8); "big" (numpy's default) is
the same bytes with the bits of each byte reversed. Both directions are written as pointwise
reads of fixed offsets (the partial last byte and zero padding as a cat / pad that inductor
folds in), so under ``torch.compile`` each call is one kernel with no intermediate buffer.
Every check looks at metadata only (types, dtypes, dims, counts), never at tensor values, so
the checks cost nothing in a compiled graph.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from ._checks import check_tensor
from .words import pack_bit_words, words_fit

try:  # numpy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover - older numpy
    from numpy import AxisError

BITORDERS = ("big", "little")


def packbits(x: torch.Tensor, dim=None, *, bitorder: str = "big", axis=None) -> torch.Tensor:
    """Pack the truth values of ``x`` along ``dim`` into bytes, as ``numpy.packbits`` does.

    Contract:
      - ``x``: a bool or integer tensor (any integer dtype); every nonzero element is a 1 bit.
        Floating and complex tensors are a TypeError, as in numpy.
      - ``dim`` (alias ``axis``; giving both is a TypeError): the dim to pack along, negative
        allowed; None (default) packs the flattened tensor (row-major order). A 0-d tensor
        counts as shape (1,). An out-of-range dim raises ``numpy.exceptions.AxisError``
        (a ValueError and an IndexError).
      - ``bitorder``: "big" (default; the first element is the most significant bit of its
        byte) or "little"; anything else is a ValueError (a non-str a TypeError).
      - Returns a contiguous uint8 tensor shaped like ``x`` with ``shape[dim]`` replaced by
        ceil(shape[dim] / 8); the unused bits of the last byte are 0.

    >>> import torch
    >>> x = torch.tensor([1, 0, 1, 1, 0, 0, 0, 0, 1, 1])
    >>> packbits(x).tolist(), packbits(x, bitorder="little").tolist()
    ([176, 192], [13, 3])
    >>> packbits(torch.tensor([[True, False], [False, True]]), dim=0).tolist()
    [[128, 64]]
    """
    dim = _resolve_dim(dim, axis)
    check_tensor(x, "x")
    if x.dtype.is_floating_point or x.dtype.is_complex:
        raise TypeError(f"x must have an integer or bool dtype (as numpy.packbits), got {x.dtype}")
    little = _check_bitorder(bitorder, strict=True)
    bits, dim = _along_one_dim(x if x.dtype == torch.bool else x != 0, dim)
    return pack_bool_last(bits.movedim(dim, -1), little).movedim(-1, dim).contiguous()


def unpackbits(p: torch.Tensor, dim=None, *, count=None, bitorder: str = "big", axis=None) -> torch.Tensor:
    """Unpack the bits of a uint8 tensor along ``dim`` into 0/1 bytes, as ``numpy.unpackbits``.

    Contract:
      - ``p``: a torch.uint8 tensor (any other dtype is a TypeError, as in numpy).
      - ``dim`` / ``axis``, 0-d inputs and AxisError: as in :func:`packbits`; None unpacks
        the flattened tensor.
      - ``count``: how many bits to keep along ``dim``. None keeps all 8 * shape[dim];
        a count larger than that pads with zeros; a negative count drops that many bits from
        the end (ValueError when -count exceeds 8 * shape[dim]). A non-int is a TypeError.
      - ``bitorder``: "big" (default) or "little"; like numpy, any str starting with "b" or
        "l" is accepted (ValueError otherwise; TypeError for a non-str).
      - Returns a contiguous uint8 tensor of 0s and 1s with ``shape[dim]`` replaced by the
        count. Where numpy returns uninitialized memory (an empty input with a positive
        count) this returns zeros.

    >>> import torch
    >>> p = torch.tensor([176, 192], dtype=torch.uint8)
    >>> unpackbits(p, count=10).tolist()
    [1, 0, 1, 1, 0, 0, 0, 0, 1, 1]
    >>> unpackbits(p, count=-13, bitorder="little").tolist()
    [0, 0, 0]
    """
    dim = _resolve_dim(dim, axis)
    check_tensor(p, "p")
    if p.dtype != torch.uint8:
        raise TypeError(f"p must be a torch.uint8 tensor (as numpy.unpackbits), got {p.dtype}")
    little = _check_bitorder(bitorder, strict=False)
    p, dim = _along_one_dim(p, dim)
    n = _resolve_count(count, 8 * p.shape[dim])
    return bit_values(p, dim, n, little).contiguous()


def _packs_bool_bytes_apart(device: torch.device) -> bool:
    """Whether :func:`pack_bool_last` reads a bool tensor's bytes by 8 loads per output byte
    even where they can be read 8 at a time as an int64 word
    (:func:`bitpack.words.pack_bit_words`): on CUDA, where the word form gained nothing (H200,
    64 Mi bools: 0.037 ms either way, ``clone`` 0.032; ``benchmarks/mask.py --device cuda``).
    On the 2-core CPU the word form took 2.0 ms against 6.4 for the loads and 3.5 for
    numpy.packbits."""
    return device.type != "cpu"


def _inductor_views_bools() -> bool:
    """Whether inductor compiles a view of a bool tensor as another dtype: torch 2.13 does
    (bools count as 8 bits); torch 2.11's lowering asked ``torch.iinfo(torch.bool)`` and failed
    (2.12 untried, so left out)."""
    return torch.__version__ >= (2, 13)


def _pads_partial_bytes(device: torch.device) -> bool:
    """Whether :func:`pack_bool_last` pads a partial last byte with zeros instead of computing
    it apart: everywhere but CPU (see there)."""
    return device.type != "cpu"


def pack_bool_last(bits: torch.Tensor, little: bool) -> torch.Tensor:
    """Pack a bool tensor along its last dim: (..., n) -> uint8 (..., ceil(n / 8)).

    Byte j holds bits 8j .. 8j+7, the first in bit 0 (``little``) or bit 7. A contiguous bool
    tensor of whole words (n a multiple of 8) is read as int64 words on CPU and folded
    (:func:`bitpack.words.pack_bit_words`; see :func:`_packs_bool_bytes_apart`). Otherwise the
    whole bytes read eight fixed offsets of a (..., n // 8, 8) view, plain loads for inductor; a
    clamped gather (what :func:`pack` does for any length) compiled 10-20x slower on CPU. The
    partial last byte is computed apart and concatenated, which inductor keeps inside the same
    kernel on CPU; on other devices the bits are padded to whole bytes instead (see below).
    """
    words = bits.dtype == torch.bool and not _packs_bool_bytes_apart(bits.device)
    words = words and (_inductor_views_bools() or not torch.compiler.is_compiling())
    if words and words_fit(bits, 8, word_bytes=8):
        return pack_bit_words(bits.view(torch.uint8).view(torch.int64), little)
    n = bits.shape[-1]
    whole = n // 8
    if n % 8 and _pads_partial_bytes(bits.device):
        # Triton: pad with zeros instead. Inductor stores a long pointwise chain (over 30 ops:
        # six or more of the eight terms) in a buffer midway; shaped like the output it fuses
        # back into the one kernel, but the cat's inputs are one byte shorter, and that made a
        # second kernel. (On CPU the padded form hits an inductor C++ codegen error.)
        bits = F.pad(bits, (0, 8 - n % 8))
        return _or_shifted(bits.unflatten(-1, (whole + 1, 8)), little).to(torch.uint8)
    packed = _or_shifted(bits[..., : 8 * whole].unflatten(-1, (whole, 8)), little)
    if n % 8:
        tail = _or_shifted(bits[..., 8 * whole :].unsqueeze(-2), little)
        packed = torch.cat([packed, tail], dim=-1)
    return packed.to(torch.uint8)


def _or_shifted(groups: torch.Tensor, little: bool) -> torch.Tensor:
    """OR of groups[..., t] << (t or 7 - t) over the last dim (at most 8): one byte per group."""
    shifted = [groups[..., t].to(torch.int32) << (t if little else 7 - t) for t in range(groups.shape[-1])]
    packed = shifted[0]
    for term in shifted[1:]:
        packed = packed | term
    return packed


def bit_values(p: torch.Tensor, dim: int, n, little: bool, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """The first ``n`` bits of uint8 ``p`` along ``dim`` as 0/1 values of ``dtype`` (past the end: 0).

    Pointwise on ``p`` (bit t of every byte, then a reshape), so under ``torch.compile`` it
    fuses into whatever consumes it and nothing of the unpacked size is materialized there.
    ``dim`` must be non-negative; ``little`` picks the bit order. ``dtype``: uint8 compiles
    fastest for a byte output (unpackbits); int32 when the consumer works in 32-bit lanes (a
    float ``where``), measured 3x faster there than uint8 on CPU.
    """
    source = p.movedim(dim, -1)
    available = 8 * source.shape[-1]
    if available == 0 or n == 0:  # nothing to read: every requested bit is padding
        return torch.zeros(*source.shape[:-1], n, dtype=dtype, device=p.device).movedim(-1, dim)
    shifts = torch.arange(8, device=p.device, dtype=torch.int32)
    shifts = (shifts if little else 7 - shifts).to(dtype)
    bits = ((source.to(dtype).unsqueeze(-1) >> shifts) & 1).flatten(-2)
    bits = bits[..., :n] if n <= available else F.pad(bits, (0, n - available))  # count > available: zeros
    return bits.movedim(-1, dim)


def _resolve_dim(dim, axis):
    """Merge the ``dim`` / ``axis`` aliases; return None or a Python int (not yet range-checked)."""
    if axis is not None:
        if dim is not None:
            raise TypeError(f"give dim or its alias axis, not both (got dim={dim!r}, axis={axis!r})")
        dim = axis
    if dim is None:
        return None
    if isinstance(dim, bool):
        raise TypeError(f"dim must be an int or None, got {dim!r}")
    try:
        return operator.index(dim)
    except TypeError:
        raise TypeError(f"dim must be an int or None, got {dim!r}") from None


def _along_one_dim(t: torch.Tensor, dim):
    """Flatten for dim=None, view a 0-d tensor as (1,) (both as numpy), and normalize ``dim``."""
    if dim is None:
        return t.reshape(-1), 0
    ndim = max(t.ndim, 1)
    if not -ndim <= dim < ndim:
        raise AxisError(f"dim={dim} is out of bounds for a tensor of dimension {ndim}")
    return t.reshape(1) if t.ndim == 0 else t, dim % ndim


def _check_bitorder(bitorder, *, strict: bool) -> bool:
    """True for little bit order. numpy's packbits wants "big"/"little"; unpackbits a prefix."""
    if not isinstance(bitorder, str):
        raise TypeError(f"bitorder must be 'big' or 'little', got {bitorder!r}")
    accepted = bitorder in BITORDERS if strict else bitorder[:1] in ("b", "l")
    if accepted:
        return bitorder[:1] == "l"
    raise ValueError(f"bitorder must be 'big' or 'little', got {bitorder!r}")


def _resolve_count(count, available):
    """numpy's count rule: None -> all bits, >= 0 -> that many (zero-padded), < 0 -> drop from the end."""
    if count is None:
        return available
    if isinstance(count, bool):
        raise TypeError(f"count must be an int or None, got {count!r}")
    try:
        count = operator.index(count)
    except TypeError:
        raise TypeError(f"count must be an int or None, got {count!r}") from None
    if count >= 0:
        return count
    if available + count < 0:
        raise ValueError(f"count={count} drops more than the {available} bits available")
    return available + count
