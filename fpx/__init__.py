"""fpx: low-bit number formats for PyTorch (formats, exact conversion, quantization, linear)."""

__version__ = "0.1.0"
