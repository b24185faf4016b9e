"""The sign-off margin table: a characterized circuit (fitted Nonidealities) against the spec.

Inputs are what notebooks 01 and 04 write: the fitted :class:`~aanntwin.config.Nonidealities`
(``characterization/nonidealities.json``) and the spec table (``specs/spec_table.csv``).

Units (the assumption every comparison rests on): the characterization maps the circuit's full
scales onto the twin's units (a twin input of 1 V is the multiplier's input full scale, a weight
of 1.0 its weight full scale, an output of 1 V its output full scale); the spec is derived on
the ideal model normalized so each stage's output full scale is 1 V. So a spec limit in V and a
characterized value in V are the same unit **if the deployed network is the normalized model**
(each stage's signal swing equals the circuit's full scale). Under that assumption noise and
offset stds (V) compare directly, gain mismatch (relative std) compares directly (scale free),
weight bits compare as counts, and the spec's input voltage range is checked against the
characterized multiplier input clip (V, the input stage is not rescaled). A quantity whose two
units differ is marked ``not comparable`` with the units named, never compared.

Direction: noise, mismatch and offset must be at most the limit (``ratio = limit / value``);
weight bits and the input clip must be at least the requirement (``ratio = value / limit``). A
ratio >= 1 passes in both cases: it is the factor of headroom.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..config import Nonidealities, unit
from ..errors import AanntwinError

COLUMNS = ["stage", "quantity", "characterized", "limit", "unit", "must_be", "ratio", "status"]
"""The margin table's columns: ``characterized`` and ``limit`` in ``unit``; ``must_be``:
``<= limit`` or ``>= limit``; ``ratio``: headroom factor (>= 1 passes); ``status``: ``pass``,
``FAIL``, ``not characterized``, ``not comparable (why)``, ``characterized, not spec'd``."""
SPEC_COLUMNS = ("stage", "quantity", "limit", "unit")
COUNTS = ("MACs", "multipliers")
"""Spec rows that are hardware counts (design facts of the geometry, not circuit margins)."""
INPUT_RANGE = "input voltage range"
NOT_MARGINS = ("chip_seed", "saturation", "weight_zero_level")
"""Fitted fields that are choices or shapes, not characterized magnitudes."""
_AT_LEAST = ("_weight_bits",)


@dataclass
class Margins:
    """The margin table and its verdict (``PASS``, ``FAIL`` or ``INCOMPLETE``) with the reason."""

    table: pd.DataFrame
    verdict: str
    reason: str

    def spec_rows(self) -> pd.DataFrame:
        """The rows of spec'd quantities (every row but ``characterized, not spec'd``)."""
        return self.table[self.table["status"] != "characterized, not spec'd"]


def _base_unit(spec_unit: str) -> str:
    """``V (std)`` -> ``V``; ``bits (min, not counting sign)`` -> ``bits``."""
    return spec_unit.split("(")[0].strip()


def _number(v: Any) -> float | None:
    """A float, or None for a blank/NaN cell."""
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    f = float(v)
    return None if math.isnan(f) else f


def _judge(value: float | None, limit: float | None, at_least: bool) -> tuple[float | None, str]:
    """(ratio, status) of one comparison in one unit; ``limit`` None: no tolerable value."""
    if value is None:
        return None, "not characterized"
    if limit is None:  # the spec search found no tolerable value: only an absent effect passes
        return None, "pass" if value == 0 else "FAIL"
    if at_least:
        ratio = math.inf if limit == 0 else value / limit
    else:
        ratio = math.inf if value == 0 else limit / value
    return ratio, "pass" if ratio >= 1 else "FAIL"


def _row(stage: str, quantity: str, value: Any, limit: Any, unit_: str, at_least: bool,
         ratio: float | None, status: str) -> dict[str, Any]:  # fmt: skip
    must = ">= limit" if at_least else "<= limit"
    return dict(zip(COLUMNS, (stage, quantity, value, limit, unit_, must, ratio, status),
                    strict=True))  # fmt: skip


def _input_range(spec: pd.Series, nl: Nonidealities) -> dict[str, Any]:
    """The spec's input range (``lo..hi`` V) against the conv multiplier's input clip (V)."""
    lo, hi = (float(v) for v in re.split(r"\.\.", str(spec["limit"]).strip()))
    need = max(abs(lo), abs(hi))
    clip = nl.conv2d_input_clip
    ratio, status = _judge(clip, need, at_least=True)
    return _row(spec["stage"], "conv2d_input_clip (input range)", clip, need, "V", True, ratio,
                status)  # fmt: skip


def margin_table(nl: Nonidealities, spec: pd.DataFrame) -> Margins:
    """Each spec'd quantity of ``spec`` (the spec table: columns :data:`SPEC_COLUMNS`) against
    the characterized value in ``nl`` (None = not characterized), then every active field of
    ``nl`` the spec does not bound; the verdict: PASS only if every spec'd quantity is
    characterized and passes, FAIL if one fails, else INCOMPLETE. Hardware counts are skipped
    (not margins). Units: see the module docstring."""
    missing = [c for c in SPEC_COLUMNS if c not in spec.columns]
    if missing:
        raise AanntwinError(f"spec table: column {missing[0]!r} missing; needs {SPEC_COLUMNS}")
    fields = Nonidealities.field_names()
    rows, spec_d = [], set()
    for _, s in spec.iterrows():
        quantity = str(s["quantity"])
        if quantity in COUNTS:
            continue
        if quantity == INPUT_RANGE:
            rows.append(_input_range(s, nl))
            spec_d.add("conv2d_input_clip")
            continue
        if quantity not in fields:
            raise AanntwinError(f"spec table: quantity {quantity!r} is no Nonidealities field")
        spec_d.add(quantity)
        at_least = quantity.endswith(_AT_LEAST)
        value = getattr(nl, quantity)
        spec_unit, char_unit = _base_unit(str(s["unit"])), unit(quantity)
        limit = _number(s["limit"])
        if spec_unit != char_unit:
            why = f"not comparable (spec in {spec_unit}, characterized in {char_unit})"
            rows.append(_row(s["stage"], quantity, value, limit, f"{spec_unit} / {char_unit}",
                             at_least, None, why))  # fmt: skip
            continue
        ratio, status = _judge(None if value is None else float(value), limit, at_least)
        rows.append(_row(s["stage"], quantity, value, limit, spec_unit, at_least, ratio, status))
    for quantity, value in nl.active().items():
        if quantity in spec_d or quantity in NOT_MARGINS:
            continue
        stage = quantity.split("_")[0].replace("conv2d", "conv")
        shown = value if isinstance(value, (int, float)) else ", ".join(f"{c:.3g}" for c in value)
        rows.append({**_row(stage, quantity, shown, None, unit(quantity), False, None,
                            "characterized, not spec'd"), "must_be": None})  # fmt: skip
    table = pd.DataFrame(rows, columns=COLUMNS)
    return Margins(table, *verdict(table))


def verdict(table: pd.DataFrame) -> tuple[str, str]:
    """(``PASS`` | ``FAIL`` | ``INCOMPLETE``, the reason in words) of a margin table."""
    spec_d = table[table["status"] != "characterized, not spec'd"]
    if spec_d.empty:
        return "INCOMPLETE", "the spec table bounds no characterizable quantity"
    failing = spec_d.loc[spec_d["status"] == "FAIL", "quantity"].tolist()
    open_ = spec_d.loc[spec_d["status"] != "pass", "quantity"].tolist()
    if failing:
        return (
            "FAIL",
            f"{len(failing)} of {len(spec_d)} spec'd quantities fail: {', '.join(failing)}",
        )
    if open_:
        return "INCOMPLETE", (f"{len(open_)} of {len(spec_d)} spec'd quantities are unverified "
                              f"(not characterized or not comparable): {', '.join(open_)}")  # fmt: skip
    return "PASS", f"all {len(spec_d)} spec'd quantities are characterized and within their limits"


def weight_bits(spec: pd.DataFrame) -> dict[str, int | None]:
    """The spec's fewest weight bits per stage (``conv``, ``linear``; None: no count met the
    target) from the spec table: the one source of the weight-bits recommendation."""
    rows = spec[spec["quantity"].astype(str).str.endswith("_weight_bits")]
    out: dict[str, int | None] = {}
    for _, r in rows.iterrows():
        v = _number(r["limit"])
        out[str(r["stage"])] = None if v is None else int(v)
    return out
