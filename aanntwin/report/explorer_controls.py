"""The explorer's controls: one per kind of nonideality, derived from the field metadata.

:func:`control_specs` turns every :class:`~aanntwin.config.Nonidealities` field of
:data:`~aanntwin.config.FIELD_GROUPS` into :class:`ControlSpec` s from its type, unit and bounds,
so a new field gets a control without edits here (a field that cannot have one is listed in
:data:`NOT_CONTROLLED` with the reason). Value ranges reach the spec scale: noise and offset
std from 0.1 mV to 1 V, mismatch from 0.01 % to 50 %, in 1-2-5 steps, each with an ``off``
position, and any value of the parameters (the starting point) is added to its options.
Polynomial fields (``*_nonlin``) get one control per coefficient that matters (2nd and 3rd
order); the constant and linear terms are kept as the parameters have them.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any

from ..config import FIELD_GROUPS, INPUT_POLY, Nonidealities
from ..errors import AanntwinError

SECTIONS = {"input": "input", "conv2d": "conv stage", "relu": "ReLU", "linear": "final stage",
            "shared": "chip / shared"}  # fmt: skip
"""Section title of each :data:`~aanntwin.config.FIELD_GROUPS` group (signal order)."""
NOT_CONTROLLED: dict[str, str] = {
    f"{kind}_{what}_table": "a measured transfer table: kept as the parameters have it"
    for kind in ("conv2d", "linear")
    for what in ("input", "weight")
}
"""Fields without a control, with the reason (the tables: a curve of hundreds of points)."""
COEFFICIENTS = (2, 3)
"""Polynomial orders with a control: the bending terms (a_0 and a_1 stay as the parameters)."""


def series(lo_exp: int, hi_exp: int, mantissas: tuple[float, ...] = (1, 2, 5)) -> list[float]:
    """``m * 10**e`` for each exponent in ``[lo_exp, hi_exp]`` and mantissa, up to ``10**hi_exp``."""
    out = [round(m * 10.0**e, 12) for e in range(lo_exp, hi_exp) for m in mantissas]
    return [*out, 10.0**hi_exp]


def fmt_volts(v: float) -> str:
    """``1 mV``, ``-50 mV``, ``2 V``, ``0 V`` (mV below 1 V)."""
    if v == 0:
        return "0 V"
    return f"{v * 1e3:.4g} mV" if abs(v) < 1 else f"{v:.4g} V"


def fmt_percent(v: float) -> str:
    return f"{100 * v:.4g} %"


def fmt_number(v: float) -> str:
    return f"{v:.4g}"


@dataclass(frozen=True)
class ControlSpec:
    """One control: the field it sets (``index``: the polynomial coefficient), its widget kind
    (``select``: a slider over ``options``; ``seed``: an integer box; ``choice``: a dropdown;
    ``bool``: a checkbox) and its description (unit and what ``off`` means included)."""

    key: str
    """Unique name: the field, or ``<field>_a<k>`` for coefficient k of a polynomial."""
    field: str
    label: str
    kind: str
    options: tuple[tuple[str, Any], ...] = ()
    """``(label, value)`` pairs of a ``select`` or ``choice`` control (``None``: off)."""
    index: int | None = None
    fmt: Any = field(default=fmt_number, compare=False, repr=False)
    """Formats a value of this control for its option labels."""

    def with_value(self, value: Any) -> ControlSpec:
        """This spec with ``value`` among its options (added in order when missing)."""
        if self.kind != "select" or any(v == value and type(v) is type(value)
                                        for _, v in self.options):  # fmt: skip
            return self
        if value is None:
            return ControlSpec(self.key, self.field, self.label, self.kind,
                               (("off", None), *self.options), self.index, self.fmt)  # fmt: skip
        values = sorted({v for _, v in self.options if v is not None} | {value})
        off = [o for o in self.options if o[1] is None]
        opts = (*off, *((self.fmt(v), v) for v in values))
        return ControlSpec(self.key, self.field, self.label, self.kind, opts, self.index, self.fmt)

    def value_of(self, nl: Nonidealities) -> Any:
        """This control's value in ``nl`` (a coefficient: 0 when absent; ints stay ints)."""
        value = getattr(nl, self.field)
        if self.index is None:
            return value
        coeffs = value or ()
        return float(coeffs[self.index]) if self.index < len(coeffs) else 0.0


def _select(key: str, label: str, values: list[Any], fmt: Any, off: str | None = "off",
            index: int | None = None, name: str | None = None) -> ControlSpec:  # fmt: skip
    opts = ([(off, None)] if off else []) + [(fmt(v), v) for v in values]
    return ControlSpec(key, name or key, label, "select", tuple(opts), index, fmt)


def _signed(values: list[float]) -> list[float]:
    return [-v for v in reversed(values)] + [0.0] + values


def field_controls(name: str) -> list[ControlSpec]:
    """The controls of one Nonidealities field, from its type, unit and bounds."""
    f = Nonidealities.__dataclass_fields__[name]
    meta, hint = f.metadata, typing.get_type_hints(Nonidealities)[name]
    unit, args = meta["unit"], typing.get_args(hint)
    label = name.replace("_", " ")
    if "tuple" in str(hint):  # a transfer polynomial: the bending coefficients
        var = "V" if meta["unit"] == INPUT_POLY else "w"
        sym = "a" if var == "V" else "c"
        coeffs = _signed(series(-3, 0))
        return [
            _select(
                f"{name}_{sym}{k}",
                f"{label} {sym}{k} (1/{var}^{k - 1}; 0 = off)",
                coeffs,
                fmt_number,
                off=None,
                index=k,
                name=name,
            )  # fmt: skip
            for k in COEFFICIENTS
        ]
    if hint is bool:
        return [ControlSpec(name, name, f"{label} (on/off)", "bool")]
    if typing.get_origin(hint) is typing.Literal:
        return [ControlSpec(name, name, f"{label} ({unit})", "choice",
                            tuple((str(a), a) for a in args))]  # fmt: skip
    if unit == "seed":
        return [ControlSpec(name, name, f"{label} (re-draws the mismatch)", "seed")]
    if int in args:  # bits
        lo = max(int(meta["ge"] if meta["ge"] is not None else 1), 1)
        hi = min(int(meta["le"] if meta["le"] is not None else 16), 16)
        return [_select(name, f"{label} (bits)", list(range(lo, hi + 1)), str)]
    if unit == "relative":
        return [_select(name, f"{label} (std, % of the gain)", series(-4, -1) + [0.2, 0.5],
                        fmt_percent)]  # fmt: skip
    if unit == "V" and meta["ge"] == 0:  # a noise or offset std
        return [_select(name, f"{label} (std)", series(-4, 0), fmt_volts)]
    if unit == "V" and meta["gt"] is not None:  # a range, swing, full scale or knee width
        return [_select(name, label, series(-3, 1), fmt_volts)]
    if unit == "V":  # a signed level (cutoff, threshold)
        return [_select(name, f"{label} (off = default)", _signed(series(-3, 0)), fmt_volts)]
    if unit == "V/V":
        return [_select(name, f"{label} (V/V; off = 1)", series(-1, 1, (1, 1.2, 1.5, 2, 2.5, 3, 4,
                                                                          5, 6, 8)), fmt_number)]  # fmt: skip
    if unit == "weight units":
        return [_select(name, f"{label} (weight units)", series(-2, 1), fmt_number)]
    raise AanntwinError(f"nonidealities.{name}: no explorer control for unit {unit!r} "
                        "(add one in aanntwin/report/explorer_controls.py or to NOT_CONTROLLED)")  # fmt: skip


def control_specs(base: Nonidealities | None = None) -> dict[str, list[ControlSpec]]:
    """Section title -> its controls in signal order; each ``select`` includes ``base``'s value."""
    base = base or Nonidealities()
    out: dict[str, list[ControlSpec]] = {}
    for group, fields in FIELD_GROUPS.items():
        specs = [s for n in fields if n not in NOT_CONTROLLED for s in field_controls(n)]
        out[SECTIONS.get(group, group)] = [s.with_value(s.value_of(base)) for s in specs]
    return out


def apply(base: Nonidealities, values: dict[ControlSpec, Any]) -> Nonidealities:
    """``base`` with each control's value (polynomial coefficients set, trailing zeros dropped;
    all-zero bending on an identity polynomial is off). Raises the field's ConfigError."""
    changes: dict[str, Any] = {}
    polys: dict[str, list[float]] = {}
    for spec, value in values.items():
        if spec.index is None:
            changes[spec.field] = value
            continue
        coeffs = polys.setdefault(spec.field, list(getattr(base, spec.field) or (0.0, 1.0)))
        coeffs.extend([0.0] * (spec.index + 1 - len(coeffs)))
        coeffs[spec.index] = float(value or 0.0)
    for name, coeffs in polys.items():
        while len(coeffs) > 2 and coeffs[-1] == 0:
            coeffs.pop()
        same = getattr(base, name) is not None and tuple(coeffs) == tuple(getattr(base, name))
        changes[name] = tuple(coeffs) if same or coeffs != [0.0, 1.0] else None
    return base.replace(**changes)
