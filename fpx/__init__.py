"""fpx: low-bit number formats for PyTorch (formats, exact conversion, quantization, linear)."""

from .formats import (
    E2M1, E2M3, E3M2, E4M3, E5M2, E8M0,
    INT1, INT2, INT3, INT4, INT5, INT6, INT7, INT8,
    UINT1, UINT2, UINT3, UINT4, UINT5, UINT6, UINT7, UINT8,
    FloatFormat, IntFormat, exmy,
)
from .convert import decode, encode, mx_scale_exponent, round_to
from .draws import hashed_uniform
from .storage import pack_fp4, pack_fp6, unpack_fp4, unpack_fp6
from .quantize import QuantizedTensor, dequantize, quantize
from .fake_quantize import fake_quantize, fake_quantize_lsq
from .nn import LowBitLinear, quantize_
from . import nn

__version__ = "0.1.0"
