"""Units of the characterization CSV's full scales: which quantity each is, SI prefixes, and the
rule that one quantity has one full scale across the files of a characterization.

A full scale is ``VALUE UNIT`` (``0.1 V``, ``100 mV``, ``10 uA``, ``10 µA``): the unit is ``V`` or
``A`` with an optional SI prefix (:data:`PREFIXES`); values are scaled to volts and amperes.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from ..errors import DataError

PREFIXES: dict[str, int] = {"f": -15, "p": -12, "n": -9, "u": -6, "µ": -6, "μ": -6, "m": -3,
                            "": 0, "k": 3, "M": 6, "G": 9}  # fmt: skip
"""SI prefix -> power of ten (``u``, ``µ`` (micro sign) and ``μ`` (Greek mu) are all micro)."""
QUANTITIES = {"V": "a voltage", "A": "a current"}
"""Base unit -> the quantity it measures."""
FIELDS: dict[str, dict[str, str]] = {
    "multiplier": {"x": "V", "w": "V", "y": "A"},
    "mac": {"x": "V", "w": "V", "y": "A"},
    "relu": {"x": "A", "y": "A"},
}
"""Circuit -> axis -> the base unit of its full scale (the shipped circuits' quantities)."""
SHARED: tuple[tuple[tuple[str, str], ...], ...] = (
    (("multiplier", "x"), ("mac", "x")),
    (("multiplier", "w"), ("mac", "w")),
    (("multiplier", "y"), ("mac", "y"), ("relu", "x")),
    (("relu", "y"),),
)
"""(circuit, axis) groups that must have one full scale across files: a MAC is multipliers
summed (its x, w, y are theirs; the fidelity check feeds its x, w to the multiplier fit and
compares y), and the ReLU's input is the MAC output (the twin applies the ReLU fit to MAC
outputs in ``y_full_scale`` units). Every analysis of a circuit shares its full scales."""
REL_TOL = 1e-9
"""Relative tolerance for full scales to count as equal (after scaling to base units)."""
_SPLIT = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(\S*)\s*$")


def allowed(unit: str) -> str:
    """The accepted spellings of ``unit`` (``V`` or ``A``), for error messages."""
    return ", ".join(p + unit for p in PREFIXES)


def parse_full_scale(text: str, unit: str, where: str) -> tuple[float, str]:
    """``VALUE UNIT[ | meaning]`` -> (value in ``unit``, ``unit``); ``unit``: ``V`` or ``A``.

    A missing, unknown or wrong-quantity unit, a missing number or a value that is not
    positive raises :class:`DataError` prefixed with ``where`` (file, line, field).
    """
    spec = text.split("|", 1)[0].strip()
    what = f"{QUANTITIES[unit]} in {unit} with an optional SI prefix ({allowed(unit)})"
    m = _SPLIT.match(spec)
    if not m:
        raise DataError(
            f"{where}: {spec!r} is not 'VALUE UNIT'; expected {what}, e.g. '0.1 {unit}'"
        )
    number, symbol = m.groups()
    if not symbol:
        raise DataError(f"{where}: {spec!r} has no unit; expected {what}")
    prefix, base = symbol[:-1], symbol[-1]
    if base not in QUANTITIES or prefix not in PREFIXES:
        raise DataError(f"{where}: unknown unit {symbol!r} in {spec!r}; expected {what}")
    if base != unit:
        raise DataError(f"{where}: {spec!r} is {QUANTITIES[base]}; expected {what}")
    try:
        value = float(Decimal(number).scaleb(PREFIXES[prefix]))
    except InvalidOperation:  # pragma: no cover - the pattern admits decimal numbers only
        raise DataError(f"{where}: {number!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise DataError(f"{where}: {spec!r}: a full scale must be a positive finite number")
    return value, unit


def same(a: float, b: float) -> bool:
    """Whether two full scales (base units) agree within :data:`REL_TOL`."""
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)


def group_of(circuit: str, axis: str) -> int | None:
    """The index in :data:`SHARED` of the group (circuit, axis) belongs to, or None."""
    for i, members in enumerate(SHARED):
        if (circuit, axis) in members:
            return i
    return None
