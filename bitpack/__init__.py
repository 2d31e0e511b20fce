"""bitpack: sub-byte integers <-> bytes, as plain tensor code that torch.compile fuses.

>>> import torch, bitpack
>>> x = torch.randint(0, 8, (4, 10))
>>> p = bitpack.pack(x, 3)                       # 10 uint3 per row -> 4 bytes per row
>>> p.shape, bitpack.packed_size(10, 3)
(torch.Size([4, 4]), 4)
>>> torch.equal(bitpack.unpack(p, 3, n=10).long(), x)
True
"""

from .bits import packbits, unpackbits
from .layout import packed_size, values_per_byte
from .mask import PackedMask
from .pack import pack, unpack, value_range

__all__ = ["pack", "unpack", "packed_size", "values_per_byte", "value_range"]
__all__ += ["packbits", "unpackbits", "PackedMask"]
__version__ = "0.1.0"
