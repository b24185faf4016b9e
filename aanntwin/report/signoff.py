"""Notebook 05 (sign-off): read what 01 and 04 wrote, show the margin table, its chart, the
conclusion and the headline figures. The comparison itself is :mod:`aanntwin.studies.margins`
(its docstring states the unit assumption)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import load_nonidealities
from ..studies.margins import Margins, margin_table, weight_bits
from .conclusions import show
from .notebook import resolve_path

FITTED = Path("characterization") / "nonidealities.json"
SPEC = Path("specs") / "spec_table.csv"
BITS_SOURCE = ("04's spec table: the fewest weight bits (not counting the sign) with the reference "
               "at the stage's largest |w| and a zero level, within target_drop of the ideal "
               "accuracy")  # fmt: skip
"""Where the one weight-bits number per stage comes from (quoted in the conclusion)."""
ASSUMPTION = ("Units: the characterized values are in the twin's units (1 V = the circuit's full "
              "scale) and the spec's in V of the ideal model normalized to 1 V per stage full "
              "scale, so they compare directly if the deployed network is that normalized model.")  # fmt: skip


@dataclass
class SignOff:
    """What 05 signs off: the margins, or ``missing`` (one line: what to run first)."""

    margins: Margins | None
    spec: pd.DataFrame | None
    missing: str | None
    sources: dict[str, Path]


def load(out_dir: str | os.PathLike[str], characterized: str | None = None) -> SignOff:
    """Read ``characterized`` (default ``out_dir/characterization/nonidealities.json``, written
    by 01) and ``out_dir/specs/spec_table.csv`` (written by 04), print one line (what was read,
    or which notebook to run first) and compute the margins."""
    out = Path(out_dir)
    fitted = resolve_path(characterized) if characterized else out / FITTED
    spec_path = out / SPEC
    need = [(p, why) for p, why in ((fitted, "run 01_characterization first" if not characterized
                                     else "check the characterized parameter"),
                                    (spec_path, "run 04_specs first")) if not p.exists()]  # fmt: skip
    sources = {"characterized": fitted, "spec": spec_path}
    if need:
        line = "; ".join(f"{p} is missing: {why}" for p, why in need)
        print(f"Not signed off: {line}.")
        return SignOff(None, None, line, sources)
    spec = pd.read_csv(spec_path)
    res = margin_table(load_nonidealities(str(fitted)), spec)
    print(f"characterized: {fitted}; spec: {spec_path}")
    return SignOff(res, spec, None, sources)


def table(so: SignOff) -> pd.DataFrame | None:
    """The margin table (rounded for reading), or None when inputs are missing."""
    if so.margins is None:
        return None
    t = so.margins.table
    return t.assign(characterized=t["characterized"].map(_cell), limit=t["limit"].map(_cell),
                    ratio=t["ratio"].map(_ratio_text))  # fmt: skip


def _cell(v: Any) -> str:
    """A value for reading: blank when absent, numbers to 4 significant digits."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.4g}" if isinstance(v, (int, float)) else str(v)


def _ratio_text(r: Any) -> str:
    if r is None or (isinstance(r, float) and math.isnan(r)):
        return ""
    return "inf" if math.isinf(r) else f"{r:.3g}"


def figure(so: SignOff) -> Any:
    """Horizontal bars of each compared quantity's headroom ratio (log scale), the pass line at
    1; None when nothing was compared."""
    if so.margins is None:
        return None
    t = so.margins.table.dropna(subset=["ratio"])
    if t.empty:
        return None
    from matplotlib.figure import Figure  # no pyplot: nothing left open for the inline backend
    from matplotlib.ticker import FuncFormatter, NullFormatter

    finite = t["ratio"].replace(math.inf, math.nan)
    top = float(finite.max()) * 4 if finite.notna().any() else 10.0
    ratios = t["ratio"].clip(upper=top).astype(float)
    fig = Figure(figsize=(7, 0.45 * len(t) + 1.2))
    ax = fig.subplots()
    colors = ["tab:green" if s == "pass" else "tab:red" for s in t["status"]]
    ax.barh(t["quantity"], ratios, color=colors)
    ax.axvline(1.0, color="k", ls="--", lw=1, label="pass line (ratio 1)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.invert_yaxis()
    ax.set_xlabel("headroom ratio (>= 1 passes)")
    ax.set_title(f"Sign-off margins: {so.margins.verdict}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def sentences(so: SignOff) -> tuple[list[str], str]:
    """The conclusion (sentences in words and units) and the verdict."""
    if so.margins is None:
        return [f"Not signed off: {so.missing}."], "INCOMPLETE"
    m, t = so.margins, so.margins.spec_rows()
    out = [f"{m.reason[0].upper()}{m.reason[1:]}."]
    compared = t.dropna(subset=["ratio"])
    if not compared.empty:
        w = compared.loc[compared["ratio"].astype(float).idxmin()]
        out.append(f"The smallest headroom is {w['quantity']} ({w['stage']}): characterized "
                   f"{_value(w['characterized'], w['unit'])} against a limit of "
                   f"{_value(w['limit'], w['unit'])} ({w['must_be']}), ratio {_ratio_text(w['ratio'])}.")  # fmt: skip
    bits = weight_bits(so.spec)
    if bits:
        said = ", ".join(f"{st} {'none met the target' if b is None else f'>= {b} bits'}"
                         for st, b in bits.items())  # fmt: skip
        out.append(f"Weight bits: {said} (from {BITS_SOURCE}).")
    extra = (m.table["status"] == "characterized, not spec'd").sum()
    if extra:
        out.append(f"{extra} characterized quantities have no spec limit (listed in the table).")
    out.append(ASSUMPTION)
    return out, m.verdict


def conclude(so: SignOff) -> None:
    """Show the conclusion (:func:`aanntwin.report.conclusions.show`)."""
    show(*sentences(so))


def headlines(so: SignOff) -> dict[str, tuple[Any, str]]:
    """The smallest headroom ratio and the counts of failing and unverified spec'd quantities."""
    if so.margins is None:
        return {"signoff_smallest_margin": (None, "ratio")}
    t = so.margins.spec_rows()
    ratios = t["ratio"].dropna().astype(float)
    low = float(ratios.min()) if len(ratios) else math.nan
    return {
        "signoff_smallest_margin": (low if math.isfinite(low) else None, "ratio"),
        "signoff_failing": (int((t["status"] == "FAIL").sum()), "quantities"),
        "signoff_unverified": (int(t["status"].isin(["not characterized"]).sum()
                                   + t["status"].str.startswith("not comparable").sum()),
                               "quantities"),
    }  # fmt: skip


def _value(v: Any, unit_: str) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{f:.3g} {unit_}"
