"""Plots of characterization data against the fits (matplotlib).

``*_figure`` functions return a new ``Figure`` (built with ``matplotlib.figure.Figure``, so no
pyplot state and nothing left open; the notebooks display them); ``plot_*`` write the same
figure as a PNG file (``aanntwin characterize``). Axes are in the data's normalized units
(multiples of the full scales in the CSV headers: ``x``, ``w``, ``y``) or in % of full scale.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from .fit import Fit

Y_LABEL = "y (normalized: 1 = y full scale)"
X_LABEL = "x (normalized: 1 = x full scale)"


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out


def multiplier_figure(fit: Fit, max_curves: int = 9) -> Figure:
    """y against x per weight (data dots, fit lines) and the residuals in % of full scale."""
    d = fit.data
    weights = np.unique(d["w"].to_numpy())
    shown = weights[np.unique(np.linspace(0, len(weights) - 1, max_curves).round().astype(int))]
    fig = Figure(figsize=(7, 7), layout="constrained")
    ax, rx = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.4])
    colors = colormaps["coolwarm"](np.linspace(0, 1, len(shown)))
    for wv, c in zip(shown, colors, strict=True):
        s = d[d["w"] == wv].sort_values("x")
        ax.plot(s["x"], s["y"], "o", ms=3, color=c)
        ax.plot(s["x"], s["fit"], "-", lw=1, color=c, label=f"w = {wv:g}")
        rx.plot(s["x"], 100 * s["residual"] / fit.full_scale, "-", lw=1, color=c)
    ax.set_ylabel(Y_LABEL)
    rms, mx = 100 * fit.rms / fit.full_scale, 100 * fit.max_abs / fit.full_scale
    ax.set_title(f"multiplier: data (dots) vs fit, residual RMS {rms:.3f} % FS, max {mx:.3f} % FS")
    ax.legend(fontsize=7, ncol=3)
    rx.set_xlabel(X_LABEL)
    rx.set_ylabel("residual (% FS)")
    for a in (ax, rx):
        a.grid(alpha=0.3)
    return fig


def plot_multiplier(fit: Fit, path: str | os.PathLike[str], max_curves: int = 9) -> Path:
    """:func:`multiplier_figure` as a PNG file."""
    return _save(multiplier_figure(fit, max_curves), path)


def relu_figure(fit: Fit) -> Figure:
    """ReLU data, the soft-ReLU fit and the twin's present ``max(cutoff, x)``, with residuals."""
    d = fit.data.sort_values("x")
    x = d["x"].to_numpy()
    cutoff = fit.extra["twin_relu_cutoff"]
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax, rx = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.4])
    ax.plot(x, d["y"], "o", ms=3, label="data")
    ax.plot(x, d["fit"], "-", label="soft ReLU fit")
    ax.plot(x, np.maximum(cutoff, x), "--", label=f"twin max({cutoff:.3g}, x)")
    ax.set_ylabel(Y_LABEL)
    ax.set_title("ReLU: " + ", ".join(f"{k} {v:.3g}" for k, v in fit.params.items()))
    ax.legend(fontsize=8)
    rx.plot(x, 100 * d["residual"] / fit.full_scale, "-", label="soft ReLU fit")
    rx.plot(x, 100 * (np.maximum(cutoff, x) - d["y"]) / fit.full_scale, "--", label="twin")
    rx.set_xlabel(X_LABEL)
    rx.set_ylabel("residual (% FS)")
    rx.legend(fontsize=8)
    for a in (ax, rx):
        a.grid(alpha=0.3)
    return fig


def plot_relu(fit: Fit, path: str | os.PathLike[str]) -> Path:
    """:func:`relu_figure` as a PNG file."""
    return _save(relu_figure(fit), path)


MC_COLUMNS = {
    "gain_error": "gain error (relative)",
    "offset": "output offset (y)",
    "input_offset": "input offset (x)",
    "weight_offset": "weight offset (w)",
}


def montecarlo_figure(mc: dict[str, Any]) -> Figure:
    """Histograms of the per-instance gain error and offsets (normalized units)."""
    per = mc["per_instance"]
    fig = Figure(figsize=(12, 3.2), layout="constrained")
    axes = fig.subplots(1, len(MC_COLUMNS))
    for ax, (col, label) in zip(axes, MC_COLUMNS.items(), strict=True):
        ax.hist(per[col], bins=max(5, len(per) // 3))
        ax.set_title(f"{col}: sigma {per[col].std(ddof=1):.3g}", fontsize=9)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("instances")
    fig.suptitle(f"Monte Carlo mismatch, {mc['instances']} instances", fontsize=10)
    return fig


def plot_montecarlo(mc: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """:func:`montecarlo_figure` as a PNG file."""
    return _save(montecarlo_figure(mc), path)


def fidelity_figure(y: np.ndarray, pred: np.ndarray, fs: float) -> Figure:
    """Twin prediction against the circuit on held-out MAC conditions, and the error histogram."""
    err = 100 * (pred - y) / fs
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax, hx = fig.subplots(1, 2)
    ax.plot(y, pred, ".", ms=4)
    lim = [float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))]
    ax.plot(lim, lim, "k-", lw=0.8)
    ax.set_xlabel("circuit (ngspice) MAC output y (normalized)")
    ax.set_ylabel("twin MAC output y (normalized)")
    ax.set_title(f"MAC held-out: RMS {np.sqrt(np.mean(err**2)):.3f} % FS")
    hx.hist(err, bins=30)
    hx.set_xlabel("twin - circuit (% of full scale)")
    hx.set_ylabel("conditions")
    for a in (ax, hx):
        a.grid(alpha=0.3)
    return fig


def plot_fidelity(y: np.ndarray, pred: np.ndarray, fs: float, path: str | os.PathLike[str]) -> Path:
    """:func:`fidelity_figure` as a PNG file."""
    return _save(fidelity_figure(y, pred, fs), path)


def _point_label(p: dict[str, Any]) -> str:
    return ", ".join(f"{k} {p[k]:g}" for k in ("x", "w") if k in p)


def noise_figure(noise: dict[str, dict[str, Any]]) -> Figure:
    """Integrated output noise per operating point (bars, one panel per circuit) and the RMS
    over the points (the fitted sigma, dashed); the band (Hz) is in each title."""
    fig = Figure(figsize=(5 * max(len(noise), 1), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(len(noise), 1)))
    for ax, (circuit, nz) in zip(axes, noise.items(), strict=False):
        points = nz["points"]
        ax.bar(range(len(points)), [1e3 * p["noise_rms"] for p in points])
        ax.axhline(1e3 * nz["sigma"], color="k", ls="--", lw=1, label="sigma (RMS over points)")
        ax.set_xticks(range(len(points)), [_point_label(p) for p in points], rotation=60,
                      fontsize=7)  # fmt: skip
        lo, hi = nz["band_hz"]
        ax.set_title(f"{circuit}: output noise, {lo:g}..{hi:g} Hz", fontsize=9)
        ax.set_xlabel("operating point (normalized x, w)")
        ax.set_ylabel("integrated output noise (1e-3 y RMS)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    return fig
