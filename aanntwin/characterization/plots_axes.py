"""Physical axes for the characterization plots: the CSV headers' full scales, engineering
prefixes, and the normalized units on a secondary axis.

Every quantity of a characterization is stored normalized (``x = 1`` is ``x_full_scale``, see
:mod:`aanntwin.characterization.curves`); a :class:`Scale` holds one axis's full scale in base
units (V or A) and draws it in engineering units (``mV``, ``uA``), with the normalized value
on a secondary axis, so a designer reads volts and amperes and an ML engineer the twin's units.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .units import FIELDS, parse_full_scale

ENG = {-15: "f", -12: "p", -9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G"}
"""Engineering exponent -> SI prefix (``u`` for micro: plain ASCII in labels and files)."""


def eng(value: float, unit: str) -> tuple[float, str]:
    """The factor that brings ``value`` (base units) to engineering units, and their symbol:
    ``eng(1e-5, "A") == (1e6, "uA")``; zero or non-finite: ``(1, unit)``."""
    if not (math.isfinite(value) and value != 0.0):
        return 1.0, unit
    exp = min(max(3 * math.floor(math.log10(abs(value)) / 3), -15), 9)
    return 10.0**-exp, ENG[exp] + unit


def quantity(value: float, unit: str, digits: int = 3) -> str:
    """``value`` (base units) as text in engineering units: ``quantity(1.24e-5, "A") == "12.4 uA"``."""
    factor, symbol = eng(value, unit)
    return f"{value * factor:.{digits}g} {symbol}"


@dataclass(frozen=True)
class Scale:
    """One axis of a circuit: normalized 1.0 = ``full_scale`` base units (``unit``: ``V`` or
    ``A``; ``""`` when the data has no full scale: then plots stay normalized)."""

    name: str
    """The axis: ``x``, ``w`` or ``y``."""
    full_scale: float = 1.0
    unit: str = ""

    @property
    def known(self) -> bool:
        return bool(self.unit)

    def text(self, normalized: float = 1.0) -> str:
        """A normalized value in physical units (``"100 mV"``), or ``"0.5 x"`` without a scale."""
        if not self.known:
            return f"{normalized:.3g} {self.name}"
        return quantity(normalized * self.full_scale, self.unit)

    def display(self, reference: float = 1.0) -> tuple[float, str]:
        """Normalized -> displayed factor and unit symbol, the prefix chosen for values near
        ``reference`` (normalized; default the full scale)."""
        if not self.known:
            return 1.0, f"{self.name}, normalized"
        factor, symbol = eng(reference * self.full_scale, self.unit)
        return factor * self.full_scale, symbol


def scales(result: Any, circuit: str) -> dict[str, Scale]:
    """The full scales of ``circuit`` (``multiplier``, ``relu``, ``mac``) from a
    :class:`~aanntwin.characterization.pipeline.Characterization`'s ``normalization`` (its DC data
    first); axes without a full scale stay normalized."""
    norm = getattr(result, "normalization", {}) or {}
    keys = sorted(
        (k for k in norm if k.split(" ")[0] == circuit), key=lambda k: k != f"{circuit} dc"
    )
    units = FIELDS.get(circuit, {})
    out = {a: Scale(a) for a in "xwy"}
    for key in reversed(keys):  # the DC data's scales last: they win
        for axis, text in norm[key].items():
            if axis in units:
                value, unit = parse_full_scale(text, units[axis], f"normalization[{key!r}][{axis}]")
                out[axis] = Scale(axis, value, unit)
    return out


def physical(ax: Any, which: str, scale: Scale, what: str, reference: float = 1.0) -> float:
    """Label axis ``which`` (``"x"`` or ``"y"``) of ``ax`` as ``what (unit)`` and add the
    normalized value on a secondary axis; returns the factor to multiply normalized data by."""
    factor, symbol = scale.display(reference)
    getattr(ax, f"set_{which}label")(f"{what} ({symbol})")
    if scale.known:
        functions = (lambda v: v / factor, lambda v: v * factor)
        side = "top" if which == "x" else "right"
        sec = getattr(ax, f"secondary_{which}axis")(side, functions=functions)
        getattr(sec, f"set_{which}label")(
            f"{scale.name} normalized (1 = {scale.text()})", fontsize=8
        )
        sec.tick_params(labelsize=7)
    return factor


def save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG (folders created); the path written."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out


__all__ = ["ENG", "Scale", "eng", "physical", "quantity", "save", "scales"]
