"""The twin as written against the circuit: per multiplier, per ReLU and per MAC.

What reaches the user is the :class:`~aanntwin.config.Nonidealities` file, not the fit, so every
figure here runs the twin's own layers (:class:`~aanntwin.layers.AnalogLinear`,
:class:`~aanntwin.layers.AnalogReLU`) with the written fields, noise and mismatch off, and
compares with the characterization data. Errors are in % of one full scale per circuit: the
largest |y| of the multiplier (or ReLU) data, and ``fan_in`` times that for a MAC (its output
range), so a per-cell and a MAC figure read on the same scale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..config import Nonidealities, StageSettings
from ..layers import AnalogLinear, AnalogReLU

MONOTONE_TOL = 1e-4
"""Relative dip (of the curve's range) tolerated before a curve counts as non-monotone."""


def _quiet(nl: Nonidealities, stage: str) -> StageSettings:
    """The stage settings of ``nl`` with mismatch, noise and ADC off (the nominal circuit)."""
    return dataclasses.replace(
        nl.stage(stage), gain_mismatch=None, offset_mismatch=None, out_noise=None, out_bits=None
    )


def predict_mac(
    nl: Nonidealities,
    x: np.ndarray,
    w: np.ndarray,
    weight: Callable[[np.ndarray], np.ndarray] | None = None,
    offset: float = 0.0,
    stage: str = "linear",
) -> np.ndarray:
    """The twin's noiseless MAC output for K conditions (``x``, ``w``: (K, N), normalized).

    Runs :meth:`AnalogLinear.mac` with the stage settings of ``nl`` (mismatch, noise and ADC
    off: the nominal circuit). ``weight`` maps programmed to effective weights before the layer
    (None = the layer's own weight path only); ``offset`` is the MAC's systematic offset (as bias).
    """
    x, w = np.array(np.atleast_2d(x), float), np.array(np.atleast_2d(w), float)  # own copies
    k, n = x.shape
    s = _quiet(nl, stage)
    w_eff = np.array(weight(w), float) if weight is not None else w
    out = np.empty(k)
    with torch.no_grad():
        # Condition j is output j of a layer whose row j holds its weights (diagonal).
        for j in range(0, k, 256):
            xs, ws = torch.from_numpy(x[j : j + 256]), torch.from_numpy(w_eff[j : j + 256])
            layer = AnalogLinear(n, len(ws), bias=True, settings=s).double()
            layer.weight.copy_(ws)
            layer.bias.fill_(offset)
            out[j : j + 256] = torch.diagonal(layer.mac(xs)).numpy()
    return out


def stage_curves(
    nl: Nonidealities, x: np.ndarray, w: np.ndarray, stage: str = "linear"
) -> tuple[np.ndarray, np.ndarray]:
    """The written twin's input transfer at ``x`` (V -> V) and effective weight at ``w``."""
    layer = AnalogLinear(1, 1, bias=False, settings=_quiet(nl, stage)).double()
    with torch.no_grad():
        g = layer.input_transfer(torch.from_numpy(np.array(x, float))).numpy()
        f = layer.effective_weight(torch.from_numpy(np.array(w, float))).numpy()
    return g, f


def relu_curve(nl: Nonidealities, x: np.ndarray) -> np.ndarray:
    """The written twin's noiseless ReLU circuit at ``x`` (its own normalized units)."""
    relu = AnalogReLU(nl.relu_cutoff, gain=nl.relu_gain, threshold=nl.relu_threshold,
                      softness=nl.relu_softness)  # fmt: skip
    with torch.no_grad():
        return relu.core(torch.from_numpy(np.array(x, float))).numpy()


def monotone(values: np.ndarray, tol: float = MONOTONE_TOL) -> bool:
    """Whether a sampled curve only rises or only falls (dips below ``tol`` x its range allowed)."""
    d = np.diff(np.asarray(values, float))
    allowed = tol * max(float(np.ptp(values)), 1e-300)
    return bool(np.all(d >= -allowed) or np.all(d <= allowed))


def errors(pred: np.ndarray, y: np.ndarray, full_scale: float) -> dict[str, float]:
    """RMS and largest error of ``pred`` against ``y``, in % of ``full_scale``."""
    e = np.asarray(pred) - np.asarray(y)
    return {
        "rms_pct_fs": float(100 * np.sqrt(np.mean(e**2)) / full_scale),
        "max_pct_fs": float(100 * np.max(np.abs(e)) / full_scale),
    }


def cell_fidelity(
    nl: Nonidealities, x: np.ndarray, w: np.ndarray, y: np.ndarray, offset: float, fs: float
) -> dict[str, Any]:
    """One multiplier of the written twin against its DC data (``offset``: the cell's
    systematic offset, y units; ``fs``: full scale, y units): errors and monotonicity."""
    pred = predict_mac(nl, np.asarray(x)[:, None], np.asarray(w)[:, None], offset=offset)
    out = errors(pred, y, fs)
    clip = nl.linear_input_clip or float(np.max(np.abs(x)))
    span = nl.linear_weight_range or float(np.max(np.abs(w)))
    g, f = stage_curves(nl, np.linspace(-clip, clip, 1001), np.linspace(-span, span, 401))
    out.update(input_monotone=monotone(g), weight_monotone=monotone(f))
    out["_pred"] = pred
    return out


def fidelity(
    x: np.ndarray,
    w: np.ndarray,
    y: np.ndarray,
    nl: Nonidealities,
    cell: Callable[[np.ndarray, np.ndarray], np.ndarray],
    cell_full_scale: float,
    offset: float,
) -> dict[str, Any]:
    """The written twin's MAC against circuit MAC data (``x``, ``w``: (K, N); ``y``: (K,)).

    ``twin``: the twin as written (its layer, its fields); ``fit``: the fitted single-cell model
    ``cell(x, w)`` summed over the N cells (what the fit alone predicts; an ideal summing node).
    Full scale = N x ``cell_full_scale`` (the MAC's output range); also in % of the largest |y|.
    ``offset``: the systematic offset per cell (y units).
    """
    n = x.shape[1]
    fs = n * cell_full_scale
    seen = float(np.max(np.abs(y)))
    out: dict[str, Any] = {"conditions": len(y), "inputs": n, "full_scale": fs, "max_abs_y": seen}
    preds = {"twin": predict_mac(nl, x, w, None, n * offset), "fit": cell(x, w).sum(axis=1)}
    for name, pred in preds.items():
        out[name] = errors(pred, y, fs)
        pct_seen = errors(pred, y, seen)
        out[name].update(rms_pct_max_y=pct_seen["rms_pct_fs"], max_pct_max_y=pct_seen["max_pct_fs"])
        out[f"_pred_{name}"] = pred
    return out


def heldout_conditions(
    count: int, inputs: int, x_span: float, w_span: float = 1.0, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Random MAC conditions, uniform over the characterized ranges (off the fit grids)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-x_span, x_span, (count, inputs))
    w = rng.uniform(-w_span, w_span, (count, inputs))
    return x, w
