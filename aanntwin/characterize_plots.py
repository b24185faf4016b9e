"""Plots of characterization data against the fits (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .characterize_fit import Fit


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return out


def plot_multiplier(fit: Fit, path: str | os.PathLike[str], max_curves: int = 9) -> Path:
    """y against x per weight (data dots, fit lines) and the residuals in % of full scale."""
    plt = _pyplot()
    d = fit.data
    weights = np.unique(d["w"].to_numpy())
    shown = weights[np.unique(np.linspace(0, len(weights) - 1, max_curves).round().astype(int))]
    fig, (ax, rx) = plt.subplots(2, 1, figsize=(7, 7), sharex=True, height_ratios=[3, 1.4])
    colors = plt.cm.coolwarm(np.linspace(0, 1, len(shown)))
    for wv, c in zip(shown, colors, strict=True):
        s = d[d["w"] == wv].sort_values("x")
        ax.plot(s["x"], s["y"], "o", ms=3, color=c)
        ax.plot(s["x"], s["fit"], "-", lw=1, color=c, label=f"w = {wv:g}")
        rx.plot(s["x"], 100 * s["residual"] / fit.full_scale, "-", lw=1, color=c)
    ax.set_ylabel("y (normalized)")
    rms, mx = 100 * fit.rms / fit.full_scale, 100 * fit.max_abs / fit.full_scale
    ax.set_title(f"multiplier: data (dots) vs fit, residual RMS {rms:.3f} % FS, max {mx:.3f} % FS")
    ax.legend(fontsize=7, ncol=3)
    rx.set_xlabel("x (normalized)")
    rx.set_ylabel("residual (% FS)")
    for a in (ax, rx):
        a.grid(alpha=0.3)
    return _save(fig, path)


def plot_relu(fit: Fit, path: str | os.PathLike[str]) -> Path:
    """ReLU data, the soft-ReLU fit and the twin's present ``max(cutoff, x)``."""
    plt = _pyplot()
    d = fit.data.sort_values("x")
    x = d["x"].to_numpy()
    cutoff = fit.extra["twin_relu_cutoff"]
    fig, (ax, rx) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, height_ratios=[3, 1.4])
    ax.plot(x, d["y"], "o", ms=3, label="data")
    ax.plot(x, d["fit"], "-", label="soft ReLU fit")
    ax.plot(x, np.maximum(cutoff, x), "--", label=f"twin max({cutoff:.3g}, x)")
    ax.set_ylabel("y (normalized)")
    ax.set_title("ReLU: " + ", ".join(f"{k} {v:.3g}" for k, v in fit.params.items()))
    ax.legend(fontsize=8)
    rx.plot(x, 100 * d["residual"] / fit.full_scale, "-", label="soft ReLU fit")
    rx.plot(x, 100 * (np.maximum(cutoff, x) - d["y"]) / fit.full_scale, "--", label="twin")
    rx.set_xlabel("x (normalized)")
    rx.set_ylabel("residual (% FS)")
    rx.legend(fontsize=8)
    for a in (ax, rx):
        a.grid(alpha=0.3)
    return _save(fig, path)


def plot_montecarlo(mc: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Histograms of the per-instance gain error and equivalent offsets."""
    plt = _pyplot()
    per = mc["per_instance"]
    cols = ["gain_error", "offset", "input_offset", "weight_offset"]
    fig, axes = plt.subplots(1, len(cols), figsize=(12, 3))
    for ax, col in zip(axes, cols, strict=True):
        ax.hist(per[col], bins=max(5, len(per) // 3))
        ax.set_title(f"{col}: sigma {per[col].std(ddof=1):.3g}", fontsize=9)
    fig.suptitle(f"Monte Carlo mismatch, {mc['instances']} instances", fontsize=10, y=1.04)
    return _save(fig, path)


def plot_fidelity(y: np.ndarray, pred: np.ndarray, fs: float, path: str | os.PathLike[str]) -> Path:
    """Twin prediction against the circuit on held-out MAC conditions."""
    plt = _pyplot()
    err = 100 * (pred - y) / fs
    fig, (ax, hx) = plt.subplots(1, 2, figsize=(10, 4))
    ax.plot(y, pred, ".", ms=4)
    lim = [float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))]
    ax.plot(lim, lim, "k-", lw=0.8)
    ax.set_xlabel("circuit (ngspice) y")
    ax.set_ylabel("twin y")
    ax.set_title(f"MAC held-out: RMS {np.sqrt(np.mean(err**2)):.3f} % FS")
    hx.hist(err, bins=30)
    hx.set_xlabel("twin - circuit (% of full scale)")
    for a in (ax, hx):
        a.grid(alpha=0.3)
    return _save(fig, path)
