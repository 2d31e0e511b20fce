"""Uniform draws from a counter-based hash: the ``uniform`` argument of stochastic rounding,
computed from a seed and each element's position instead of read from a random-number generator
(``fpx.encode(x, fmt, rounding="stochastic", seed=seed)`` is the short form).

Why: compiled stochastic rounding drew ``torch.rand_like``'s Philox output per element (ten
rounds of 32-bit multiplies), and that bound the whole encode: 0.27x of clone's bandwidth on an
H100 for float32 input (``rand_like`` alone 0.39x), where the rounding itself runs at 0.9x. A hash
of the element's index costs a handful of integer operations, and under ``torch.compile`` the
index (an ``arange``) and the hash fuse into the consumer's kernel: nothing is read or written.
The same seed gives the same draws on every device, eager or compiled.

Draw ``i`` (``i`` the element's row-major position, from 0) is ``(h >> 8) / 2**24`` with
``h = fmix32((i * 0x9E3779B9 mod 2**32) XOR key)``: ``fmix32`` is MurmurHash3's 32-bit
finalizer, and ``key`` folds the 64-bit seed into 32 bits with it (:func:`seed_key`). For one
seed, ``i -> h`` is a bijection of 32-bit integers (an odd multiplier, an XOR, and the
finalizer's steps are each invertible): no two elements of a tensor share a hash. Draws are
multiples of 2^-24 in [0, 1), the resolution stochastic rounding compares at (``fpx.convert``).

Not for cryptography, and 32 bits of state: streams of different seeds are permutations of one
another's 2^32 hashes, so tensors of more than 2^32 elements are refused.
"""

from __future__ import annotations

import math

import torch

_WEYL = 0x9E3779B9  # odd: i -> i * _WEYL is a bijection mod 2^32 that spreads consecutive indices
_FMIX_MULTIPLIERS = (0x85EBCA6B, 0xC2B2AE35)  # MurmurHash3's fmix32
_MAX_ELEMENTS = 1 << 32
_RESOLUTION_BITS = 24


def _as_int32(value: int) -> int:
    """A 32-bit pattern as the int32 of the same bits (torch's int32 arithmetic wraps)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's finalizer on int32 tensors holding uint32 bit patterns. Products wrap
    modulo 2^32 (two's complement), and the right shifts are masked to be logical."""
    return _fmix32_after_first_step(h ^ ((h >> 16) & 0xFFFF))


def _fmix32_after_first_step(h: torch.Tensor) -> torch.Tensor:
    """:func:`_fmix32` of a value whose first step, ``h ^ (h >> 16)``, is done."""
    h = h * _as_int32(_FMIX_MULTIPLIERS[0])
    h = h ^ ((h >> 13) & 0x7FFFF)
    h = h * _as_int32(_FMIX_MULTIPLIERS[1])
    return h ^ ((h >> 16) & 0xFFFF)


def _fmix32_int(h: int) -> int:
    """:func:`_fmix32` on a Python int (a uint32)."""
    h ^= h >> 16
    h = (h * _FMIX_MULTIPLIERS[0]) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _FMIX_MULTIPLIERS[1]) & 0xFFFFFFFF
    return h ^ (h >> 16)


def seed_key(seed):
    """The 32-bit key of a 64-bit seed: ``fmix32(low XOR fmix32(high))`` of its two 32-bit
    halves. A Python int in [0, 2^64) gives a Python int (a uint32); an integer tensor of one
    element (its value as a 64-bit two's complement pattern) gives a 0-d int32 tensor with the
    same bits, computed with tensor operations, so that a compiled caller takes a new seed
    without recompiling.

    >>> seed_key(0) == seed_key(torch.tensor(0)).item() & 0xFFFFFFFF
    True
    """
    if isinstance(seed, torch.Tensor):
        seed = seed.reshape(()).to(torch.int64)
        low = (seed & 0xFFFFFFFF).to(torch.int32)  # the value below 2^32 wraps into int32's bits
        high = ((seed >> 32) & 0xFFFFFFFF).to(torch.int32)
        return _fmix32(low ^ _fmix32(high))
    return _fmix32_int((seed & 0xFFFFFFFF) ^ _fmix32_int(seed >> 32))


def _check_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list, torch.Size)) or not all(
        isinstance(size, int) and not isinstance(size, bool) for size in shape
    ):
        raise TypeError(f"shape must be an int or a sequence of ints, got {shape!r}")
    if any(size < 0 for size in shape):
        raise ValueError(f"shape must not have negative sizes, got {tuple(shape)}")
    return tuple(shape)


def _check_seed(seed):
    if isinstance(seed, torch.Tensor):
        if seed.dtype.is_floating_point or seed.dtype.is_complex or seed.dtype == torch.bool or seed.numel() != 1:
            raise TypeError(f"seed must be an int or an integer tensor of one element, got {seed.dtype} of shape {tuple(seed.shape)}")
        return seed
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or an integer tensor of one element, got {type(seed).__name__}")
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed


def hashed_uniform(shape, seed, *, device=None) -> torch.Tensor:
    """float32 draws in [0, 1), multiples of 2^-24, hashed from ``seed`` and each element's
    position: the ``uniform`` of stochastic rounding at the cost of a few integer operations.

    Contract:
      - ``shape``: an int or a sequence of ints (at most 2^32 elements in all); ``seed``: an int
        in [0, 2^64), or an integer tensor of one element (under ``torch.compile`` a tensor
        seed, on the draws' device, takes new values without recompiling; an int is a constant
        of the compiled code). ``device``: where the draws are (default: the seed tensor's
        device, else torch's default device).
      - The draws depend only on the seed, the shape's element count and each element's
        row-major position: the same on CPU and CUDA, in eager and compiled code, and a seed
        int equals the same value as a tensor. See the module docstring for the hash.
      - Compiled together with its consumer (``fpx.encode(x, fmt, rounding="stochastic",
        uniform=hashed_uniform(x.shape, seed, device=x.device))``), inductor computes the draws
        inside the consumer's kernel: no tensor of draws is written.
      - TypeError for a shape or seed of the wrong type; ValueError for negative sizes, more
        than 2^32 elements or a seed out of range.

    >>> import torch, fpx
    >>> u = hashed_uniform((2, 3), seed=7)
    >>> u.dtype, u.shape, bool(((u >= 0) & (u < 1)).all())
    (torch.float32, torch.Size([2, 3]), True)
    >>> torch.equal(u, hashed_uniform(6, seed=torch.tensor(7)).view(2, 3))
    True
    >>> x = torch.full((4,), 1.1)  # between E4M3's 1.0 and 1.125: rounds up with probability 0.8
    >>> codes = fpx.encode(x, fpx.E4M3, rounding="stochastic", uniform=hashed_uniform(x.shape, 0))
    >>> sorted(set(codes.tolist()) - {56, 57})
    []
    """
    return _hashed_counts(shape, seed, device).to(torch.float32) * 2.0**-_RESOLUTION_BITS


def _hashed_counts(shape, seed, device=None) -> torch.Tensor:
    """:func:`hashed_uniform`'s draws times 2^24: int32 integers in [0, 2^24) of ``shape`` (its
    checks and errors). Stochastic rounding compares these with its threshold directly
    (``fpx.convert`` takes them from ``seed=``), saving the scaling to [0, 1) and back."""
    shape = _check_shape(shape)
    seed = _check_seed(seed)
    count = math.prod(shape)
    if count > _MAX_ELEMENTS:
        raise ValueError(f"hashed_uniform draws at most 2**32 elements (32-bit counters), got shape {shape}: {count}")
    if device is None:
        device = seed.device if isinstance(seed, torch.Tensor) else torch.get_default_device()
    key = seed_key(seed.to(device) if isinstance(seed, torch.Tensor) else seed)
    # fmix32's first step is linear in XOR: (p ^ key) ^ ((p ^ key) >> 16) = p ^ (p >> 16) ^
    # (key ^ (key >> 16)), so the key's part is computed once, not per element (one
    # instruction fewer per element on CUDA: the three-way XOR is one LOP3).
    if isinstance(key, torch.Tensor):
        key_mixed = key ^ ((key >> 16) & 0xFFFF)
    else:
        key_mixed = _as_int32(key ^ (key >> 16))
    # int64 positions cast to int32 keep the low 32 bits; int32 positions where they fit
    # (cheaper index arithmetic in the kernel).
    index_dtype = torch.int32 if count <= 1 << 31 else torch.int64
    index = torch.arange(count, device=device, dtype=index_dtype).to(torch.int32)
    position = index * _as_int32(_WEYL)
    h = _fmix32_after_first_step(position ^ ((position >> 16) & 0xFFFF) ^ key_mixed)
    shift = 32 - _RESOLUTION_BITS
    return ((h >> shift) & ((1 << _RESOLUTION_BITS) - 1)).view(shape)
