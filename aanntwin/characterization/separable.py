"""The separable (tabulated) multiplier model: what a twin with a tabulated transfer can follow.

    y = f(w) g(x) + b

with ``g`` known at each distinct characterized input and ``f`` at each distinct weight, joined
by monotone cubics (PCHIP: no overshoot, a monotone table stays monotone). No shape is assumed,
so a flat or hard saturation, or any other monotone transfer, is followed as measured; the fit
residual is what no separable twin (polynomial or table) can beat. ``f`` is scaled so it matches
``w`` in least squares (the effective weight of the twin), ``g`` carries the gain (y per w).

Solved by alternating least squares on the data points (every step closed-form and vectorized
by ``bincount``), started from the parametric :class:`~aanntwin.characterization.fit.MultiplierModel`.
Needs repeated inputs and weights (a grid, as DC sweeps are): :func:`fit_separable` returns None
when every distinct x or w has fewer than ``min_repeats`` points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator

from .fit import MultiplierModel


@dataclass(frozen=True)
class SeparableModel:
    """``y = f(w) g(x) + b``, tabulated (normalized units: x, w, y)."""

    x: np.ndarray
    """Distinct characterized inputs, ascending (x units)."""
    g: np.ndarray
    """Input transfer at ``x`` (y per w: the gain is in g)."""
    w: np.ndarray
    """Distinct characterized weights, ascending (w units)."""
    f: np.ndarray
    """Effective weight at ``w`` (w units; least-squares closest to w)."""
    b: float
    """Output offset (y units)."""
    rms: float
    """Residual RMS over the data (y units)."""
    max_abs: float
    """Largest residual over the data (y units)."""

    def input(self, x: np.ndarray) -> np.ndarray:
        """``g(x)`` between the characterized inputs (monotone cubic; y per w)."""
        return PchipInterpolator(self.x, self.g, extrapolate=True)(x)

    def weight(self, w: np.ndarray) -> np.ndarray:
        """``f(w)`` between the characterized weights (monotone cubic; w units)."""
        return PchipInterpolator(self.w, self.f, extrapolate=True)(w)

    def __call__(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return self.weight(w) * self.input(x) + self.b


def _solve(idx: np.ndarray, coef: np.ndarray, r: np.ndarray, n: int) -> np.ndarray:
    """Per group k: the t minimizing sum (r_i - coef_i t)^2 over the points i of group k."""
    den = np.bincount(idx, coef * coef, minlength=n)
    return np.bincount(idx, coef * r, minlength=n) / np.where(den > 0, den, 1.0)


def fit_separable(
    x: np.ndarray,
    w: np.ndarray,
    y: np.ndarray,
    start: MultiplierModel,
    min_repeats: int = 3,
    iterations: int = 200,
) -> SeparableModel | None:
    """Least-squares ``f``, ``g``, ``b`` (see the module docstring); None without a grid."""
    xs, xi = np.unique(np.round(x, 12), return_inverse=True)
    ws, wi = np.unique(np.round(w, 12), return_inverse=True)
    if len(xs) < 5 or len(ws) < 3:
        return None
    if np.bincount(xi).min() < min_repeats or np.bincount(wi).min() < min_repeats:
        return None
    f, g, b = start.weight(ws), start.input(xs), float(start.b)
    prev = np.inf
    for _ in range(iterations):
        g = _solve(xi, f[wi], y - b, len(xs))
        f = _solve(wi, g[xi], y - b, len(ws))
        b = float(np.mean(y - f[wi] * g[xi]))
        cost = float(np.sum((f[wi] * g[xi] + b - y) ** 2))
        if prev - cost <= 1e-14 * max(cost, 1e-300):
            break
        prev = cost
    scale = float(f @ ws / (ws @ ws))  # f closest to w; the product is unchanged
    if scale != 0.0:
        f, g = f / scale, g * scale
    r = f[wi] * g[xi] + b - y
    rms, mx = float(np.sqrt(np.mean(r**2))), float(np.max(np.abs(r)))
    return SeparableModel(xs, g, ws, f, b, rms, mx)
