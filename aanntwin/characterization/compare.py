"""Two characterizations side by side: a model card comparison (parameters and curves).

:func:`compare` puts two :class:`~aanntwin.characterization.pipeline.Characterization` side by
side: a table of the full scales, every fitted parameter with its standard error, noise,
mismatch, the twin as written against its data and the MAC fidelity (with ``B / A`` and
``B - A``), and a figure overlaying the two twins' input transfers, weight transfers and ReLUs
in physical units. :func:`against` acquires the second characterization from a notebook
parameter (a shipped topology name, CSV files, or None) and compares.

Fitted parameters are in each characterization's own normalized units: when the full scales
differ (the table's first rows; the figure's title says so) compare them in physical units.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..errors import AanntwinError
from .circuits import MULTIPLIERS, example_files
from .curves import read_all
from .fidelity import relu_curve, stage_curves
from .pipeline import Characterization, characterize
from .plots_axes import Scale, quantity, scales

Row = dict[str, Any]


@dataclass
class Comparison:
    """What :func:`compare` returns: the names, the side-by-side table and the overlay figure."""

    names: tuple[str, str]
    table: pd.DataFrame
    """Rows: group, quantity, unit, the two values (and standard errors), ``B / A`` and ``B - A``
    (columns named after ``names``)."""
    figure: Figure
    differing: list[str]
    """The full scales that differ (``"multiplier x: 100 mV vs 120 mV"``); empty: the same."""


def _fields(r: Characterization) -> dict[tuple[str, str], tuple[Any, Any, str]]:
    """(group, quantity) -> (value, stderr, unit) of one characterization."""
    out: dict[tuple[str, str], tuple[Any, Any, str]] = {}
    for circuit in ("multiplier", "relu"):
        for axis, s in scales(r, circuit).items():
            if s.known:
                out[("full scale", f"{circuit} {axis}")] = (s.full_scale, None, s.unit)
    for c, f in r.fits.items():
        for k, v in f.params.items():
            out[("fit", f"{c} {k}")] = (v, f.stderr.get(k), f.units.get(k, ""))
    for c, nz in r.noise.items():
        y = scales(r, c)["y"]
        out[("noise", f"{c} sigma")] = (nz["sigma"], None, "y RMS")
        if y.known:
            out[("noise", f"{c} sigma (physical)")] = (
                nz["sigma"] * y.full_scale,
                None,
                f"{y.unit} RMS",
            )
        band = "..".join(quantity(v, "Hz") for v in nz["band_hz"])
        out[("noise", f"{c} band")] = (band, None, "")
    for k, unit in (r.mismatch or {}).get("units", {}).items():
        out[("mismatch", k)] = (r.mismatch[k], None, unit)
    for c, tw in r.as_written.items():
        if "transfer" in tw:
            out[("twin as written", f"{c} transfer")] = (tw["transfer"], None, "")
        for k in ("rms_pct_fs", "max_pct_fs"):
            out[("twin as written", f"{c} {k[:3]}")] = (tw[k], None, "% of max |y|")
        for name, fit in tw["fits"].items():
            out[("twin as written", f"{c} {name} fit rms")] = (
                fit["rms_pct_fs"],
                None,
                "% of max |y|",
            )
    if r.fidelity is not None:
        for who in ("twin", "fit"):
            for k in ("rms_pct_fs", "max_pct_fs"):
                out[("MAC fidelity", f"{who} {k[:3]}")] = (r.fidelity[who][k], None, "% of MAC FS")
    for k, v in r.nonidealities.active().items():
        if isinstance(v, (int, float)) and k != "chip_seed":
            out[("twin field", k)] = (v, None, "")
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def table(
    a: Characterization, b: Characterization, names: tuple[str, str] = ("A", "B")
) -> pd.DataFrame:
    """The side-by-side parameter table (see :class:`Comparison`); a quantity one side lacks is
    blank on that side."""
    fa, fb = _fields(a), _fields(b)
    keys = list(fa) + [k for k in fb if k not in fa]
    na, nb = names
    rows: list[Row] = []
    for key in keys:
        (va, sa, ua), (vb, sb, ub) = fa.get(key, (None, None, "")), fb.get(key, (None, None, ""))
        both = _number(va) and _number(vb)
        rows.append({"group": key[0], "quantity": key[1], "unit": ua or ub,
                     na: va, f"{na} stderr": sa, nb: vb, f"{nb} stderr": sb,
                     f"{nb} / {na}": vb / va if both and va != 0 else None,
                     f"{nb} - {na}": vb - va if both else None})  # fmt: skip
    return pd.DataFrame(rows)


def differing(a: Characterization, b: Characterization) -> list[str]:
    """The full scales (multiplier and ReLU axes) that differ between ``a`` and ``b``."""
    out = []
    for circuit in ("multiplier", "relu"):
        sa, sb = scales(a, circuit), scales(b, circuit)
        for axis in "xwy":
            if (
                sa[axis].known
                and sb[axis].known
                and not math.isclose(sa[axis].full_scale, sb[axis].full_scale, rel_tol=1e-9)
            ):
                out.append(f"{circuit} {axis}: {sa[axis].text()} vs {sb[axis].text()}")
    return out


def _unit(items: list[Scale]) -> tuple[float, str]:
    """One display unit for several scales (chosen from the largest full scale)."""
    known = [s for s in items if s.known]
    if not known:
        return 1.0, f"{items[0].name}, normalized"
    top = max(known, key=lambda s: s.full_scale)
    k, symbol = top.display()
    return k / top.full_scale, symbol  # base units -> displayed


def _base(s: Scale) -> float:
    return s.full_scale if s.known else 1.0


def figure(a: Characterization, b: Characterization, names: tuple[str, str] = ("A", "B")) -> Figure:
    """The two twins as written, overlaid in physical units: input transfer g(x), effective
    weight f(w) and ReLU, and the weight nonlinearity f(w) - w normalized (it compares shapes
    whatever the full scales); the title lists the full scales that differ."""
    fig = Figure(figsize=(12, 8.5), layout="constrained")
    (gx, fx), (rx, dx) = fig.subplots(2, 2)
    both = [(r, n) for r, n in zip((a, b), names, strict=True)]
    mult = [(r, n, scales(r, "multiplier")) for r, n in both if "multiplier" in r.fits]
    if mult:
        kx, ux = _unit([s["x"] for _, _, s in mult])
        ky, uy = _unit([s["y"] for _, _, s in mult])
        kw, uw = _unit([s["w"] for _, _, s in mult])
        for (r, n, s), style in zip(mult, ("-", "--"), strict=False):
            nl = r.nonidealities
            x = (
                np.linspace(-nl.linear_input_clip, nl.linear_input_clip, 401)
                if nl.linear_input_clip
                else np.linspace(-1.5, 1.5, 401)
            )
            span = nl.linear_weight_range or 1.0
            w = np.linspace(-span, span, 201)
            g, f = stage_curves(nl, x, w)
            transfer = r.mapping.get("transfer", {}).get("chosen", "")
            gx.plot(
                x * _base(s["x"]) * kx,
                g * _base(s["y"]) * ky,
                style,
                label=f"{n} ({transfer})",
                gid=f"twin {n}",
            )
            fx.plot(w * _base(s["w"]) * kw, f * _base(s["w"]) * kw, style, label=n, gid=f"twin {n}")
            dx.plot(w, 100 * (f - w), style, label=n)
        gx.set(
            xlabel=f"input x ({ux})",
            ylabel=f"g(x): output at w = 1 (its own w full scale) ({uy})",
            title="input transfer (twin as written)",
        )
        fx.set(
            xlabel=f"weight w ({uw})",
            ylabel=f"f(w): effective weight ({uw})",
            title="weight transfer (twin as written)",
        )
    relus = [(r, n, scales(r, "relu")) for r, n in both if "relu" in r.fits]
    if relus:
        kx, ux = _unit([s["x"] for _, _, s in relus])
        ky, uy = _unit([s["y"] for _, _, s in relus])
        for (r, n, s), style in zip(relus, ("-", "--"), strict=False):
            d = r.fits["relu"].data["x"].to_numpy(float)
            x = np.linspace(d.min(), d.max(), 401)
            rx.plot(
                x * _base(s["x"]) * kx,
                relu_curve(r.nonidealities, x) * _base(s["y"]) * ky,
                style,
                label=n,
                gid=f"twin {n}",
            )
        rx.set(
            xlabel=f"input current x ({ux})",
            ylabel=f"output y ({uy})",
            title="ReLU (twin as written)",
        )
        dx.set(
            xlabel="weight w, normalized (1 = its own w full scale)",
            ylabel="f(w) - w (% of the w full scale)",
            title="weight nonlinearity, normalized",
        )
    for ax in (gx, fx, rx, dx):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.set(xlabel="(no data)", title="no data")
    diff = differing(a, b)
    head = f"{names[0]} vs {names[1]}: the twins as written"
    fig.suptitle(
        head + ("; full scales differ: " + "; ".join(diff) if diff else "; same full scales"),
        fontsize=10,
    )
    return fig


def compare(
    a: Characterization, b: Characterization, names: tuple[str, str] = ("A", "B")
) -> Comparison:
    """``a`` and ``b`` side by side: :func:`table`, :func:`figure` and the differing full scales."""
    if names[0] == names[1]:
        names = (f"{names[0]} (A)", f"{names[1]} (B)")
    return Comparison(names, table(a, b, names), figure(a, b, names), differing(a, b))


Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None


def second(
    value: Source,
    fan_in: dict[str, int] | None = None,
    resolve: Callable[[Any], Path] = Path,
) -> tuple[str, Characterization] | None:
    """The characterization to compare with, and its name, from ``value``: a shipped topology
    name (:data:`~aanntwin.characterization.circuits.MULTIPLIERS`: its committed CSVs), a CSV
    file, a folder of CSVs or a list of CSV files; None: no comparison. ``fan_in``: as the first
    characterization's (multipliers per MAC); ``resolve``: makes a path given absolute (the
    notebooks' rule for relative paths)."""
    if value is None:
        return None
    if isinstance(value, str) and value in MULTIPLIERS:
        return value, characterize(read_all(example_files(value)), fan_in)
    one = isinstance(value, (str, os.PathLike))
    paths = [resolve(value)] if one else [resolve(p) for p in value]  # type: ignore[union-attr]
    if len(paths) == 1 and paths[0].is_dir():
        paths = sorted(paths[0].glob("*.csv"))
    if not paths or not all(p.suffix == ".csv" for p in paths):
        raise AanntwinError(
            f"compare_with = {value!r}: a topology name ({', '.join(MULTIPLIERS)}), a CSV file, a "
            "folder of CSVs, a list of CSV files, or None"
        )
    name = paths[0].parent.name if len({p.parent for p in paths}) == 1 else "CSV files"
    return name, characterize(read_all(paths), fan_in)


def against(
    result: Characterization,
    value: Source,
    name: str = "this run",
    resolve: Callable[[Any], Path] = Path,
) -> Comparison | None:
    """``result`` compared with the characterization :func:`second` acquires from ``value``
    (with ``result``'s fan-ins; ``resolve`` as there); None when ``value`` is None."""
    other = second(value, result.fan_in, resolve)
    return None if other is None else compare(result, other[1], (name, other[0]))


__all__ = ["Comparison", "against", "compare", "differing", "figure", "second", "table"]
