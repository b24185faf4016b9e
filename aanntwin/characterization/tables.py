"""The tables of a characterization (notebook 01): sources, parameters, residuals, noise,
mismatch, fidelity, what the twin lacks, and its headline figures.

Residuals are in % of full scale (``% FS``: of the largest ``|y|`` of the fitted data); ``x``,
``w``, ``y`` are in the data's normalized units (multiples of their full scales).
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from .curves import CurveTable
from .fit import Fit


def sources(tables: list[CurveTable]) -> pd.DataFrame:
    """One row per table read: circuit, analysis, rows, file and what made it."""
    return pd.DataFrame([{"circuit": d.circuit, "analysis": d.analysis, "rows": len(d.frame),
                          "file": d.source, "made by": d.meta.get("source", "")}
                         for d in tables])  # fmt: skip


def normalization(result: Any) -> pd.DataFrame:
    """The full scales of each table read (one row per ``circuit analysis``; ``-``: none)."""
    return pd.DataFrame(result.normalization).T.rename_axis("data").fillna("-")


def parameters(path: str | os.PathLike[str]) -> pd.DataFrame:
    """``fit_parameters.csv`` with the standard errors as 3 significant digits (blank: none)."""
    table = pd.read_csv(path)
    table["stderr"] = [f"{v:.3g}" if v == v else "" for v in table["stderr"]]
    return table


def _residual_row(fit: str, points: int, rms: float, worst: float, full_scale: float) -> dict:
    return {"fit": fit, "points": points, "RMS (% FS)": 100 * rms / full_scale,
            "max (% FS)": 100 * worst / full_scale, "full scale (y)": full_scale}  # fmt: skip


def residuals(result: Any) -> pd.DataFrame:
    """RMS and max residual of each fit (% FS); for the ReLU also the twin's ``max(cutoff, x)``."""
    rows = [_residual_row(c, len(f.data), f.rms, f.max_abs, f.full_scale)
            for c, f in result.fits.items()]  # fmt: skip
    if "relu" in result.fits:
        r = result.fits["relu"]
        rows.append(_residual_row("relu, twin max(cutoff, x)", len(r.data),
                                  r.extra["twin_residual_rms"], r.extra["twin_residual_max"],
                                  r.full_scale))  # fmt: skip
    return pd.DataFrame(rows).round(4)


def per_weight(fit: Fit) -> pd.DataFrame:
    """The multiplier's residual per weight (% FS)."""
    g = fit.groups.assign(rms=100 * fit.groups["rms"] / fit.full_scale,
                          max=100 * fit.groups["max"] / fit.full_scale)  # fmt: skip
    return g.rename(columns={"rms": "RMS (% FS)", "max": "max (% FS)"}).round(4)


def noise(noise_fits: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per circuit: the fitted output noise sigma (y RMS), its range and band (Hz)."""
    return pd.DataFrame({c: {"sigma (y RMS)": nz["sigma"], "min": nz["min"], "max": nz["max"],
                             "band (Hz)": "{:g}..{:g}".format(*nz["band_hz"])}
                         for c, nz in noise_fits.items()}).T  # fmt: skip


def mismatch(mc: dict[str, Any]) -> pd.DataFrame:
    """The Monte Carlo spreads: sigma and unit of each."""
    return pd.DataFrame([{"spread": k, "sigma": mc[k], "unit": u} for k, u in mc["units"].items()])


def fidelity(fid: dict[str, Any]) -> pd.DataFrame:
    """The twin against the circuit's MAC (% FS), with and without the weight polynomial."""
    return pd.DataFrame({k: fid[k] for k in ("twin", "twin_existing_fields")}).T.round(4)


def lacking(result: Any) -> pd.DataFrame:
    """What the twin cannot represent yet, with its size."""
    return pd.DataFrame(result.lacking)


def mapping_lines(result: Any) -> list[str]:
    """How each field of the fitted Nonidealities was derived, one line per field."""
    return [f"{name}: " + "; ".join(f"{k} {v}" for k, v in how.items())
            for name, how in result.mapping.items()]  # fmt: skip


def headlines(result: Any) -> dict[str, tuple[Any, str]]:
    """The fidelity (RMS % FS; NaN without MAC data) and the count of active fitted fields
    (``chip_seed`` not counted), as ``{name: (value, unit)}``."""
    active = [k for k in result.nonidealities.active() if k != "chip_seed"]
    fid_rms = result.fidelity["twin"]["rms_pct_fs"] if result.fidelity else float("nan")
    return {
        "fidelity_rms_pct_fs": (fid_rms, "% FS"),
        "active_nonidealities": (len(active), "count"),
    }
