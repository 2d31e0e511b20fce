"""Argument checks shared by the bitpack functions.

Every check runs in eager mode only: under ``torch.compile`` they would add graph breaks or
host syncs, so compiled code relies on masking instead (see ``pack``).
"""

from __future__ import annotations

import torch

LAYOUTS = ("dense", "padded")

_UNSUPPORTED_INT_DTYPES = tuple(
    getattr(torch, name) for name in ("uint16", "uint32", "uint64") if hasattr(torch, name)
)


def check_bits(bits, *, low: int = 1, high: int = 8, name: str = "bits") -> int:
    """Return ``bits`` as a plain int after checking it is an integer in [low, high]."""
    if isinstance(bits, bool) or not isinstance(bits, (int, torch.SymInt)):
        raise TypeError(f"{name} must be an int in {low}..{high}, got {bits!r}")
    for candidate in range(low, high + 1):
        # Comparing with each candidate returns a plain int even when torch.compile made
        # ``bits`` symbolic (the equality guard specializes it): the bit width shapes the
        # kernel and must be a constant.
        if bits == candidate:
            return candidate
    raise ValueError(f"{name} must be in {low}..{high}, got {bits}")


def check_layout(layout) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def check_flag(value, name: str) -> bool:
    """Return ``value`` after checking it is a bool (a truthy string or 1 would pass unnoticed)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_tensor(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def check_integer_input(x: torch.Tensor, name: str) -> None:
    """Accept bool and integer tensors; refuse floats and complex ones."""
    if x.dtype.is_floating_point or x.dtype.is_complex:
        raise TypeError(f"{name} must have an integer or bool dtype, got {x.dtype}")


def normalize_dim(dim, ndim: int, name: str = "dim") -> int:
    """Map a possibly negative ``dim`` into [0, ndim), raising a ValueError when out of range."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{name} must be an int, got {dim!r}")
    if ndim == 0:
        raise ValueError(
            f"{name}={dim} needs a tensor with at least one dimension, got a 0-d tensor; "
            "reshape it to (1,) first"
        )
    if not -ndim <= dim < ndim:
        raise ValueError(f"{name}={dim} is out of range for a tensor with {ndim} dimensions")
    return dim % ndim


def first_bad_value(x: torch.Tensor, bad: torch.Tensor) -> tuple[int, tuple[int, ...]]:
    """Return (value, index) of the first True in ``bad`` (row-major order)."""
    flat_index = int(bad.reshape(-1).nonzero()[0, 0])
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index), bad.shape))
    return int(x[index]), index
