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
    """RMS and max residual of each fit (% FS), the multiplier's tabulated (separable) fit and,
    per circuit, the twin as written (its own layers and fields against the same data)."""
    rows = [_residual_row(f"{c} fit", len(f.data), f.rms, f.max_abs, f.full_scale)
            for c, f in result.fits.items()]  # fmt: skip
    m = result.fits.get("multiplier")
    if m is not None and result.separable is not None:
        sep = result.separable
        rows.insert(1, _residual_row("multiplier tabulated fit", len(m.data), sep.rms,
                                     sep.max_abs, m.full_scale))  # fmt: skip
    for c, tw in result.as_written.items():
        fs = tw["full_scale"]
        label = f"{c} twin as written" + (f" ({tw['transfer']})" if "transfer" in tw else "")
        rows.append(_residual_row(label, len(result.fits[c].data), tw["rms_pct_fs"] * fs / 100,
                                  tw["max_pct_fs"] * fs / 100, fs))  # fmt: skip
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
    """The circuit's MAC against the twin as written and against its fitted cells summed (% FS)."""
    names = {"twin": "twin as written", "fit": "fitted cells summed"}
    return pd.DataFrame({names[k]: fid[k] for k in names}).T.round(4)


def undetermined(result: Any) -> pd.DataFrame:
    """The parameters the data cannot determine: circuit, parameter, why, default."""
    return pd.DataFrame([{"circuit": c, "parameter": k, "why": why, "default": f.defaults()[k]}
                         for c, f in result.fits.items() for k, why in f.undetermined.items()],
                        columns=["circuit", "parameter", "why", "default"])  # fmt: skip


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
