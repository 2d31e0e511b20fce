"""An obviously-correct numpy reference of the two bit layouts (one row at a time, bit by bit)."""

import numpy as np


def reference_pack_row(values, bits: int, layout: str) -> np.ndarray:
    """Pack a 1-d sequence of unsigned ``bits``-bit ints into bytes, following DESIGN.md literally."""
    values = [int(v) for v in values]
    stream = []  # little-endian bit stream: stream[j] is bit (j mod 8) of byte (j div 8)
    if layout == "dense":
        for v in values:
            stream.extend((v >> i) & 1 for i in range(bits))
    else:
        k = 8 // bits
        for start in range(0, len(values), k):
            chunk = values[start : start + k]
            byte_bits = []
            for v in chunk:
                byte_bits.extend((v >> i) & 1 for i in range(bits))
            stream.extend(byte_bits + [0] * (8 - len(byte_bits)))
    stream.extend([0] * (-len(stream) % 8))
    return np.packbits(np.array(stream, dtype=np.uint8), bitorder="little")


def reference_pack(array: np.ndarray, bits: int, layout: str, dim: int, signed: bool) -> np.ndarray:
    """Apply ``reference_pack_row`` along ``dim`` of a numpy array."""
    unsigned = array.astype(np.int64) & ((1 << bits) - 1) if signed else array.astype(np.int64)
    moved = np.moveaxis(unsigned, dim, -1)
    n = moved.shape[-1]
    rows = moved.reshape(int(np.prod(moved.shape[:-1])), n)
    nbytes = (n * bits + 7) // 8 if layout == "dense" else -(-n // (8 // bits))
    out = np.zeros((rows.shape[0], nbytes), dtype=np.uint8)
    for r, row in enumerate(rows):
        out[r] = reference_pack_row(row, bits, layout)
    return np.moveaxis(out.reshape(moved.shape[:-1] + (nbytes,)), -1, dim)
