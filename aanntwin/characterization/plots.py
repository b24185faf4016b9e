"""Plots of a characterization a designer reads: the data against the twin as written.

``*_figure(result)`` take a :class:`~aanntwin.characterization.pipeline.Characterization` and
return a new ``Figure`` (built with ``matplotlib.figure.Figure``: no pyplot state, nothing left
open; the notebooks display them); :func:`write_plots` writes them as PNGs (``aanntwin
characterize``). Axes are in physical units from the CSV headers' full scales (``mV``, ``uA``),
the normalized units on the secondary (top or right) axis. Residuals are in % of one stated
full scale: the largest ``|y|`` of the data, given in amperes in the axis label. The curves
drawn as "twin" are the written Nonidealities run through the twin's own layers
(:mod:`aanntwin.characterization.fidelity`), not the fits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .fidelity import predict_mac, relu_curve, stage_curves
from .plots_axes import Scale, physical, quantity, save, scales

CMAP = "coolwarm"
"""Colormap of the weights (blue: negative, red: positive)."""


def _pct_label(what: str, fs: float, scale: Scale) -> str:
    """``what (% of max |y| of the data = 12.4 uA)``: the one full scale of a residual axis."""
    return f"{what} (% of max |y| of the data = {scale.text(fs)})"


def _errors(e: np.ndarray, fs: float) -> str:
    return (
        f"RMS {100 * np.sqrt(np.mean(e**2)) / fs:.3f} %, max {100 * np.max(np.abs(e)) / fs:.3f} %"
    )


def _grid(*axes: Any) -> None:
    for a in axes:
        a.grid(alpha=0.3)


def _shared_x(top: Any, bottom: Any, scale: Scale, what: str) -> float:
    """Physical x of two stacked axes: the normalized axis on top, the label at the bottom."""
    k = physical(top, "x", scale, what)
    bottom.set_xlabel(top.get_xlabel())
    top.set_xlabel("")
    return k


def multiplier_prediction(result: Any) -> np.ndarray:
    """The twin as written (one multiplier, its own layer and fields) at each multiplier data
    point (y units, in the order of ``result.fits["multiplier"].data``)."""
    d = result.fits["multiplier"].data
    x, w = d["x"].to_numpy(float), d["w"].to_numpy(float)
    off = result.mapping["transfer"]["offset"]
    return predict_mac(result.nonidealities, x[:, None], w[:, None], offset=off)


def multiplier_figure(result: Any) -> Figure:
    """Output against input for every characterized weight (colour: weight, see the colorbar):
    data (dots) and the twin as written (lines); below, twin minus data in % of max |y|."""
    fit, sc = result.fits["multiplier"], scales(result, "multiplier")
    d = fit.data.assign(twin=multiplier_prediction(result)).sort_values(["w", "x"])
    fig = Figure(figsize=(8, 7.5), layout="constrained")
    ax, rx = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.4])
    fw, w_unit = sc["w"].display()
    weights = np.unique(d["w"].to_numpy())
    norm = Normalize(weights.min() * fw, weights.max() * fw)
    cmap = colormaps[CMAP]
    fx, fy = _shared_x(ax, rx, sc["x"], "input x"), physical(ax, "y", sc["y"], "output y")
    for wv, s in d.groupby("w", sort=True):
        c = cmap(norm(wv * fw))
        ax.plot(s["x"] * fx, s["y"] * fy, "o", ms=2.5, color=c)
        t = s.drop_duplicates("x")  # pooled instances (Monte Carlo data): one twin line
        ax.plot(t["x"] * fx, t["twin"] * fy, "-", lw=1, color=c, gid=f"twin w={wv:g}")
        style = "." if len(t) < len(s) else "-"
        rx.plot(s["x"] * fx, 100 * (s["twin"] - s["y"]) / fit.full_scale, style, lw=1, color=c)
    bar = fig.colorbar(ScalarMappable(norm, cmap), ax=[ax, rx], shrink=0.8)
    bar.set_label(f"weight w ({w_unit}); w = 1 is {sc['w'].text()}")
    transfer = result.mapping["transfer"]["chosen"]
    e = d["twin"].to_numpy() - d["y"].to_numpy()
    ax.set_title(f"multiplier, {len(weights)} weights: data (dots), twin as written ({transfer}, "
                 f"lines)\ntwin - data: {_errors(e, fit.full_scale)} of max |y|", fontsize=10)  # fmt: skip
    rx.set_ylabel(_pct_label("twin - data", fit.full_scale, sc["y"]), fontsize=8)
    _grid(ax, rx)
    return fig


def transfers_figure(result: Any) -> Figure:
    """The twin's input transfer g(x) and effective weight f(w) as written (table or
    polynomial, lines) against the samples of the separable fit (dots; of the parametric fit
    without a grid), and their difference."""
    fit, sc, nl = result.fits["multiplier"], scales(result, "multiplier"), result.nonidealities
    sep = result.separable
    if sep is not None:
        xs, gs, ws, fs, ref = sep.x, sep.g, sep.w, sep.f, "separable fit"
    else:
        xs, ws = (np.unique(fit.data[c].to_numpy(float)) for c in "xw")
        gs, fs, ref = fit.model.input(xs), fit.model.weight(ws), "parametric fit"
    clip = nl.linear_input_clip or float(np.max(np.abs(xs)))
    span = nl.linear_weight_range or float(np.max(np.abs(ws)))
    g, f = stage_curves(nl, np.linspace(-clip, clip, 401), np.linspace(-span, span, 201))
    g_at, f_at = stage_curves(nl, xs, ws)
    fig = Figure(figsize=(11, 6), layout="constrained")
    (gx, fx_), (gr, fr) = fig.subplots(2, 2, sharex="col", height_ratios=[3, 1.4])
    kx = _shared_x(gx, gr, sc["x"], "input x")
    ky = physical(gx, "y", sc["y"], "g(x): output at w = 1")
    gx.plot(
        np.linspace(-clip, clip, 401) * kx, g * ky, "-", lw=1.2, label="twin as written", gid="twin"
    )
    gx.plot(xs * kx, gs * ky, "o", ms=3, label=ref)
    g_fs = float(np.max(np.abs(gs)))
    gr.plot(xs * kx, 100 * (g_at - gs) / g_fs, ".-", lw=1)
    gr.set_ylabel(f"twin - fit\n(% of max |g| = {sc['y'].text(g_fs)})", fontsize=8)
    kw = _shared_x(fx_, fr, sc["w"], "weight w")
    kf = physical(fx_, "y", sc["w"], "f(w): effective weight")
    wd = np.linspace(-span, span, 201)
    fx_.plot(wd * kw, wd * kf, ":", color="gray", lw=1, label="ideal f(w) = w")
    fx_.plot(wd * kw, f * kf, "-", lw=1.2, label="twin as written", gid="twin")
    fx_.plot(ws * kw, fs * kf, "o", ms=3, label=ref)
    fr.plot(ws * kw, 100 * (f_at - fs) / span, ".-", lw=1)
    fr.set_ylabel(f"twin - fit\n(% of w range = {sc['w'].text(span)})", fontsize=8)
    for a in (gx, fx_):
        a.legend(fontsize=8)
    transfer = result.mapping["transfer"]["chosen"]
    fig.suptitle(f"multiplier transfers as the twin writes them ({transfer}) against the {ref}",
                 fontsize=10)  # fmt: skip
    _grid(gx, fx_, gr, fr)
    return fig


def relu_figure(result: Any) -> Figure:
    """ReLU data (dots), the twin's ReLU as written (soft ReLU of the Nonidealities, line) and
    twin minus data in % of max |y|."""
    fit, sc = result.fits["relu"], scales(result, "relu")
    d = fit.data.sort_values("x")
    x, y = d["x"].to_numpy(float), d["y"].to_numpy(float)
    xd = np.linspace(x.min(), x.max(), 601)
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax, rx = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.4])
    kx = _shared_x(ax, rx, sc["x"], "input current x")
    ky = physical(ax, "y", sc["y"], "output y")
    ax.plot(x * kx, y * ky, "o", ms=3, label="data")
    ax.plot(xd * kx, relu_curve(result.nonidealities, xd) * ky, "-", label="twin as written",
            gid="twin")  # fmt: skip
    e = relu_curve(result.nonidealities, x) - y
    rx.plot(x * kx, 100 * e / fit.full_scale, "-", lw=1)
    rx.set_ylabel(_pct_label("twin - data", fit.full_scale, sc["y"]), fontsize=8)
    nl = result.nonidealities
    fields = ", ".join(f"{k} {getattr(nl, k):.3g}" for k in ("relu_cutoff", "relu_gain",
                       "relu_threshold", "relu_softness") if getattr(nl, k, None) is not None)  # fmt: skip
    ax.set_title(f"ReLU: twin {fields}\ntwin - data: {_errors(e, fit.full_scale)} of max |y|",
                 fontsize=10)  # fmt: skip
    ax.legend(fontsize=8)
    _grid(ax, rx)
    return fig


def noise_figure(result: Any) -> Figure:
    """Output noise integrated over the band per operating point (one panel per circuit,
    against the input, one line per weight), and the sigma the twin uses (dashed)."""
    noise = result.noise
    fig = Figure(figsize=(6 * max(len(noise), 1), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(len(noise), 1)))
    nl = result.nonidealities
    for ax, (circuit, nz) in zip(axes, noise.items(), strict=False):
        sc = scales(result, "mac" if circuit == "mac" else circuit)
        p = pd.DataFrame(nz["points"])
        kx = physical(ax, "x", sc["x"], "input x")
        ky = physical(ax, "y", sc["y"], "output noise, RMS", reference=float(p["noise_rms"].max()))
        groups = p.groupby("w") if "w" in p else [(None, p)]
        cmap = colormaps[CMAP]
        ws = np.unique(p["w"]) if "w" in p else np.zeros(1)
        for i, (wv, s) in enumerate(groups):
            s = s.sort_values("x")
            c = "C0" if wv is None else cmap((wv - ws.min()) / max(np.ptp(ws), 1e-12))
            label = "data" if wv is None else f"w = {sc['w'].text(wv)}"
            ax.plot(s["x"] * kx, s["noise_rms"] * ky, "-", marker="osD^v"[i % 5], ms=9 - 2 * (i % 3),
                    color=c, lw=1, alpha=0.85, label=label)  # fmt: skip
        twin = f"twin: {sc['y'].text(nz['sigma'])} RMS"
        if circuit == "multiplier":
            per_mac = nl.linear_out_noise or 0.0
            twin += f" per multiplier (linear MAC: {sc['y'].text(per_mac)})"
        ax.axhline(nz["sigma"] * ky, color="k", ls="--", lw=1, label=twin, gid="twin")
        lo, hi = nz["band_hz"]
        band = f"{quantity(lo, 'Hz')}..{quantity(hi, 'Hz')}"
        ax.set_title(f"{circuit}: output noise integrated over {band}", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return fig


MC_COLUMNS = {
    "gain_error": ("gain error", None),
    "offset": ("output offset", "y"),
    "input_offset": ("input offset", "x"),
    "weight_offset": ("weight offset", "w"),
}
"""Per-instance Monte Carlo column -> (label, the axis whose full scale it is in)."""


def montecarlo_figure(result: Any) -> Figure:
    """Histograms of the per-instance gain error (%) and offsets (physical units)."""
    mc, sc = result.mismatch, scales(result, "multiplier")
    per = mc["per_instance"]
    fig = Figure(figsize=(13, 3.6), layout="constrained")
    axes = fig.subplots(1, len(MC_COLUMNS))
    for ax, (col, (label, axis)) in zip(axes, MC_COLUMNS.items(), strict=True):
        v = per[col].to_numpy(float)
        sigma = float(np.std(v, ddof=1))
        if axis is None:
            k = 100.0
            ax.set_xlabel(f"{label} (%)")
            text = f"{100 * sigma:.3g} %"
        else:
            k = physical(ax, "x", sc[axis], label, reference=max(sigma, 1e-12))
            text = sc[axis].text(sigma)
        ax.hist(v * k, bins=max(5, len(per) // 3))
        ax.set_title(f"{col}: sigma {text}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("instances")
    fig.suptitle(f"Monte Carlo mismatch, {mc['instances']} instances", fontsize=10)
    return fig


def fidelity_figure(result: Any) -> Figure:
    """The twin as written against the circuit's MAC on held-out conditions, and the error
    histogram in % of the MAC's full scale (fan-in x the multiplier's max |y|, stated)."""
    fid, sc = result.fidelity, scales(result, "mac")
    y, pred, fs = fid["_y"], fid["_pred_twin"], fid["full_scale"]
    err = 100 * (pred - y) / fs
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax, hx = fig.subplots(1, 2)
    kx = physical(ax, "x", sc["y"], "circuit (ngspice) MAC output")
    physical(ax, "y", sc["y"], "twin MAC output")
    ax.plot(y * kx, pred * kx, ".", ms=4)
    lim = np.array([min(y.min(), pred.min()), max(y.max(), pred.max())]) * kx
    ax.plot(lim, lim, "k-", lw=0.8)
    ax.set_title(f"MAC of {fid['inputs']}, {fid['conditions']} held-out conditions: "
                 f"RMS {np.sqrt(np.mean(err**2)):.3f} %, max {np.max(np.abs(err)):.3f} % of MAC FS",
                 fontsize=10)  # fmt: skip
    hx.hist(err, bins=30)
    hx.set_xlabel(f"twin - circuit (% of MAC full scale = {fid['inputs']} x max |y| of one "
                  f"multiplier = {sc['y'].text(fs)})", fontsize=8)  # fmt: skip
    hx.set_ylabel("conditions")
    _grid(ax, hx)
    return fig


def write_plots(result: Any, folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Every figure the result has data for as ``folder/<name>.png``; ``{plot_<name>: path}``."""
    out = Path(folder)
    has = {
        "multiplier": "multiplier" in result.fits,
        "transfers": "multiplier" in result.fits,
        "relu": "relu" in result.fits,
        "noise": bool(result.noise),
        "montecarlo": result.mismatch is not None,
        "fidelity": result.fidelity is not None,
    }
    figures = {"multiplier": multiplier_figure, "transfers": transfers_figure,
               "relu": relu_figure, "noise": noise_figure, "montecarlo": montecarlo_figure,
               "fidelity": fidelity_figure}  # fmt: skip
    return {f"plot_{k}": save(figures[k](result), out / f"{k}.png") for k, ok in has.items() if ok}


__all__ = [
    "fidelity_figure",
    "montecarlo_figure",
    "multiplier_figure",
    "multiplier_prediction",
    "noise_figure",
    "relu_figure",
    "transfers_figure",
    "write_plots",
]
