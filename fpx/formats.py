"""Number formats as data: low-bit floats (OCP FP8, MX FP6/FP4, E8M0, any ExMy) and integers.

A format is a small frozen dataclass. Everything else (limits, special codes) is derived from
its fields, so a new format is one line.

==========  ====  =================  ==========  ============  =====  ===========  ====
format      bias  max (code)         min normal  min subnorm.  inf    NaN          -0
==========  ====  =================  ==========  ============  =====  ===========  ====
E4M3        7     448 (0x7E)         2^-6        2^-9          none   0x7F, 0xFF   0x80
E5M2        15    57344 (0x7B)       2^-14       2^-16         0x7C   0x7D-0x7F..  0x80
E3M2        3     28 (0x1F)          0.25        0.0625        none   none         0x20
E2M3        1     7.5 (0x1F)         1.0         0.125         none   none         0x20
E2M1        1     6.0 (0x7)          1.0         0.5           none   none         0x8
E8M0        127   2^127 (0xFE)       2^-127      -             none   0xFF         -
==========  ====  =================  ==========  ============  =====  ===========  ====

>>> E4M3.max, E4M3.min_normal, E4M3.min_subnormal, E4M3.bits
(448.0, 0.015625, 0.001953125, 8)
>>> exmy(3, 4).name, exmy(3, 4).max
('E3M4', 31.0)

A format built by :func:`exmy` with the fields of a named one is that format; other fields give
it another name, so that no two formats of different values share one:

>>> exmy(4, 3, special="fn") == E4M3, exmy(4, 3).name, exmy(3, 2, bias=2).name
(True, 'E4M3_finite', 'E3M2_bias2')
>>> exmy(4, 3)
fpx.exmy(4, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

SPECIALS = ("ieee", "fn", "finite")


def _is_int(value) -> bool:
    """Whether ``value`` is an int and not a bool (``True`` is an int to Python, never a count here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_field_types(fmt, ints: tuple[str, ...], bools: tuple[str, ...]) -> None:
    """A format's name is a str, its ``ints`` fields ints and its ``bools`` fields bools:
    a string bias or a truthy ``signed="no"`` would otherwise build a format that fails (or
    encodes wrongly) later, far from its definition."""
    kind = type(fmt).__name__
    if not isinstance(fmt.name, str):
        raise TypeError(f"{kind} name must be a str, got {fmt.name!r}")
    for field in ints:
        value = getattr(fmt, field)
        if not _is_int(value):
            raise TypeError(f"{kind} {field} must be an int, got {value!r}")
    for field in bools:
        value = getattr(fmt, field)
        if not isinstance(value, bool):
            raise TypeError(f"{kind} {field} must be a bool, got {value!r}")


@dataclass(frozen=True)
class FloatFormat:
    """A sign-exponent-mantissa float format of at most 8 bits.

    ``special`` says how the top of the exponent range is used:

    - "ieee": the all-ones exponent holds +-inf (mantissa 0) and NaN (mantissa != 0), as E5M2.
    - "fn": no inf; only the all-ones code (exponent and mantissa) is NaN, as E4M3 (e4m3fn).
    - "finite": every code is a finite number, as the MX FP6/FP4 formats.

    ``signed=False`` and ``has_zero=False`` describe E8M0: no sign bit, no zero, no subnormals.
    """

    name: str
    exponent_bits: int
    mantissa_bits: int
    bias: int
    special: str = "finite"
    signed: bool = True
    has_zero: bool = True

    def __post_init__(self):
        _check_field_types(self, ints=("exponent_bits", "mantissa_bits", "bias"), bools=("signed", "has_zero"))
        if self.special not in SPECIALS:
            raise ValueError(f"special must be one of {SPECIALS}, got {self.special!r}")
        if self.exponent_bits < 1 or self.mantissa_bits < 0:
            raise ValueError(
                f"need exponent_bits >= 1 and mantissa_bits >= 0, got {self.exponent_bits}, {self.mantissa_bits}"
            )
        if self.bits > 8:
            raise ValueError(f"{self.name} has {self.bits} bits; at most 8 are supported")

    # ---- layout -------------------------------------------------------------------------------
    @property
    def bits(self) -> int:
        return int(self.signed) + self.exponent_bits + self.mantissa_bits

    @property
    def sign_mask(self) -> int:
        """The sign bit within the code (0 for unsigned formats)."""
        return (1 << (self.bits - 1)) if self.signed else 0

    @property
    def magnitude_mask(self) -> int:
        return (1 << (self.exponent_bits + self.mantissa_bits)) - 1

    # ---- special values -----------------------------------------------------------------------
    @property
    def has_inf(self) -> bool:
        return self.special == "ieee"

    @property
    def has_nan(self) -> bool:
        return self.special in ("ieee", "fn") or not self.has_zero

    @property
    def has_subnormals(self) -> bool:
        return self.has_zero

    @property
    def max_code(self) -> int:
        """Positive code of the largest finite value."""
        all_ones = self.magnitude_mask
        if self.special == "ieee":
            return all_ones - (1 << self.mantissa_bits)  # exponent all-ones minus one, mantissa all-ones
        if self.special == "fn" or not self.has_zero:
            return all_ones - 1
        return all_ones

    @property
    def inf_code(self) -> int | None:
        """Positive infinity's code, or None."""
        if not self.has_inf:
            return None
        return ((1 << self.exponent_bits) - 1) << self.mantissa_bits

    @property
    def nan_code(self) -> int | None:
        """The canonical (positive, highest) NaN code, or None."""
        return self.magnitude_mask if self.has_nan else None

    # ---- limits -------------------------------------------------------------------------------
    def code_value(self, code: int) -> float:
        """The value of one code (a Python float; exact). Used for limits and documentation."""
        sign = -1.0 if (code & self.sign_mask) else 1.0
        magnitude = code & self.magnitude_mask
        if self.nan_code is not None and magnitude == self.nan_code:
            return float("nan")
        if self.has_inf and magnitude == self.inf_code:
            return sign * float("inf")
        if self.has_inf and magnitude > self.inf_code:
            return float("nan")
        exponent = magnitude >> self.mantissa_bits
        mantissa = magnitude & ((1 << self.mantissa_bits) - 1)
        if exponent == 0 and self.has_subnormals:
            return sign * mantissa * 2.0 ** (1 - self.bias - self.mantissa_bits)
        return sign * (1 + mantissa / (1 << self.mantissa_bits)) * 2.0 ** (exponent - self.bias)

    @property
    def max(self) -> float:
        return self.code_value(self.max_code)

    @property
    def min_normal(self) -> float:
        return 2.0 ** ((1 if self.has_subnormals else 0) - self.bias)

    @property
    def min_subnormal(self) -> float | None:
        if not self.has_subnormals:
            return None
        return 2.0 ** (1 - self.bias - self.mantissa_bits)

    @property
    def emax(self) -> int:
        """Exponent of the largest power of two in range (OCP MX's emax_elem)."""
        return (self.max_code >> self.mantissa_bits) - self.bias

    def __repr__(self) -> str:
        """``fpx.E4M3`` for fpx's own formats, else the call that builds it (``fpx.exmy(...)``
        or ``fpx.FloatFormat(...)``): a repr never names a module attribute that is not there."""
        if _FORMATS_BY_NAME.get(self.name) == self:
            return f"fpx.{self.name}"
        if self.signed and self.has_zero and self.name == _exmy_name(self.exponent_bits, self.mantissa_bits,
                                                                     self.special, self.bias):
            keywords = "".join([f", special={self.special!r}" if self.special != "finite" else "",
                                f", bias={self.bias}" if self.bias != _default_bias(self.exponent_bits) else ""])
            return f"fpx.exmy({self.exponent_bits}, {self.mantissa_bits}{keywords})"
        return (f"fpx.FloatFormat({self.name!r}, {self.exponent_bits}, {self.mantissa_bits}, {self.bias}, "
                f"special={self.special!r}, signed={self.signed}, has_zero={self.has_zero})")


def _default_bias(exponent_bits: int) -> int:
    """2^(e-1) - 1, IEEE's bias for e exponent bits (0 for an e that no format has: the fields'
    own check names it)."""
    return (1 << (exponent_bits - 1)) - 1 if exponent_bits >= 1 else 0


def _exmy_name(exponent_bits: int, mantissa_bits: int, special: str, bias: int) -> str:
    """``E{e}M{m}``, the name of fpx's format of those fields (E4M3, E5M2, ...) or of the default
    (no inf or NaN, bias 2^(e-1) - 1); ``_{special}`` and ``_bias{bias}`` appended where they
    differ from it."""
    bare = f"E{exponent_bits}M{mantissa_bits}"
    named = _FORMATS_BY_NAME.get(bare)
    usual_special, usual_bias = (named.special, named.bias) if named else ("finite", _default_bias(exponent_bits))
    return "".join([bare, f"_{special}" if special != usual_special else "", f"_bias{bias}" if bias != usual_bias else ""])


def exmy(exponent_bits: int, mantissa_bits: int, *, special: str = "finite", bias: int | None = None) -> FloatFormat:
    """Any signed ExMy float format with 1 + e + m <= 8 bits.

    ``bias`` defaults to 2**(e-1) - 1; ``special`` is "ieee" (inf and NaN, like E5M2),
    "fn" (NaN only, like E4M3) or "finite" (no inf, no NaN, like the MX FP6/FP4 formats).
    Its name is ``E{e}M{m}`` where it is fpx's format of that name (or none exists and the
    special values and bias are the defaults); else ``_{special}`` and ``_bias{bias}`` tell
    it apart.

    >>> exmy(2, 1) == E2M1
    True
    >>> exmy(4, 3, special="fn").max, exmy(4, 3).max
    (448.0, 480.0)
    >>> exmy(5, 2).name, exmy(3, 4, special="ieee", bias=5).name
    ('E5M2_finite', 'E3M4_ieee_bias5')
    """
    for name, value in (("exponent_bits", exponent_bits), ("mantissa_bits", mantissa_bits)):
        if not _is_int(value):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if bias is None:
        bias = _default_bias(exponent_bits)
    name = _exmy_name(exponent_bits, mantissa_bits, special, bias)
    return FloatFormat(name, exponent_bits, mantissa_bits, bias, special)


E4M3 = FloatFormat("E4M3", 4, 3, 7, special="fn")
E5M2 = FloatFormat("E5M2", 5, 2, 15, special="ieee")
E3M2 = FloatFormat("E3M2", 3, 2, 3)
E2M3 = FloatFormat("E2M3", 2, 3, 1)
E2M1 = FloatFormat("E2M1", 2, 1, 1)
E8M0 = FloatFormat("E8M0", 8, 0, 127, special="finite", signed=False, has_zero=False)


@dataclass(frozen=True)
class IntFormat:
    """A ``bits``-bit integer format: signed two's complement (INTb) or unsigned (UINTb).

    Signed formats quantize symmetrically by default (no zero-point); unsigned ones carry a
    zero-point (asymmetric).

    >>> INT4.min, INT4.max, UINT4.min, UINT4.max
    (-8, 7, 0, 15)
    """

    name: str
    bits: int
    signed: bool

    def __post_init__(self):
        _check_field_types(self, ints=(), bools=("signed",))
        if not _is_int(self.bits) or not 1 <= self.bits <= 8:
            raise ValueError(f"bits must be an int in 1..8, got {self.bits!r}")

    @property
    def min(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def __repr__(self) -> str:
        if _FORMATS_BY_NAME.get(self.name) == self:
            return f"fpx.{self.name}"
        return f"fpx.IntFormat({self.name!r}, {self.bits}, {self.signed})"


INT1, INT2, INT3, INT4, INT5, INT6, INT7, INT8 = (IntFormat(f"INT{b}", b, True) for b in range(1, 9))
UINT1, UINT2, UINT3, UINT4, UINT5, UINT6, UINT7, UINT8 = (IntFormat(f"UINT{b}", b, False) for b in range(1, 9))

FLOAT_FORMATS = (E4M3, E5M2, E3M2, E2M3, E2M1)
INT_FORMATS = (INT1, INT2, INT3, INT4, INT5, INT6, INT7, INT8)
UINT_FORMATS = (UINT1, UINT2, UINT3, UINT4, UINT5, UINT6, UINT7, UINT8)

# fpx's own formats by name: the ones a repr names as fpx.NAME, the ones exmy's names start
# from, and the ones a LowBitLinear state dict saved before its format's fields meant.
_FORMATS_BY_NAME = {fmt.name: fmt for fmt in (*FLOAT_FORMATS, E8M0, *INT_FORMATS, *UINT_FORMATS)}
