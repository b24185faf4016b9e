"""Fits of the circuit models to characterization data (normalized units throughout).

Multiplier (one global model for all weights, :class:`MultiplierModel`)::

    y = G * (w + c2 w^2 + c3 w^3) * S(x + a2 x^2 + a3 x^3) + b,   S(z) = Xs * tanh(z / Xs)

``G``: gain (y per x per w); ``c2``, ``c3``: weight nonlinearity; ``a2``, ``a3``: input
polynomial; ``Xs``: input saturation (tanh full scale, in x units; ``inf`` = none), so the output
saturates at ``G f(w) Xs``, which depends on the weight; ``b``: output offset (y units).

ReLU (:class:`ReluModel`): ``y = c + g * s * softplus((x - t) / s)``, floor ``c``, gain ``g``,
knee ``t``, softness ``s`` (x units; s -> 0 is ``c + g max(0, x - t)``).

Noise: RMS over the operating points of the integrated output noise (y units, one band).
Mismatch: per instance ``y = (1 + gamma) F(x + dx, w + dw) + beta`` linearized around the nominal
model ``F``; the spreads of gain ``gamma``, output offset ``beta``, input offset ``dx`` and weight
offset ``dw``, and the output-referred equivalent offset (everything but the gain).
Least squares by :func:`scipy.optimize.least_squares`; everything vectorized over the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from ..errors import DataError
from . import MIN_INSTANCES
from .curves import CurveTable

DEFAULTS = {
    "multiplier": {"c2": "0 (no even weight term)", "c3": "0 (linear weight pair)",
                   "a2": "0 (no even input term)", "a3": "0 (no cubic input term)",
                   "Xs": "inf (no input saturation)", "b": "0 (no offset)"},
    "relu": {"floor": "0", "gain": "1", "knee": "the floor (relu_threshold unset)",
             "softness": "none (a hard knee): the twin takes it"},
}  # fmt: skip
"""What an undetermined parameter defaults to, per circuit."""
MULT_PARAMS = ("G", "c2", "c3", "a2", "a3", "u", "b")
MULT_UNITS = {"G": "y/(x w)", "c2": "1/w", "c3": "1/w^2", "a2": "1/x", "a3": "1/x^2",
              "Xs": "x", "b": "y"}  # fmt: skip


def _sat(z: np.ndarray, u: float) -> np.ndarray:
    """``tanh(u z) / u`` (``u = 1/Xs``), ``z`` at ``u = 0``."""
    return np.tanh(u * z) / u if u > 1e-9 else z


@dataclass(frozen=True)
class MultiplierModel:
    """The fitted multiplier transfer (see module docstring); ``u = 1 / Xs`` (1/x)."""

    G: float
    c2: float = 0.0
    c3: float = 0.0
    a2: float = 0.0
    a3: float = 0.0
    u: float = 0.0
    b: float = 0.0

    @property
    def Xs(self) -> float:  # noqa: N802 - the model's symbol
        return 1.0 / self.u if self.u > 0 else float("inf")

    def weight(self, w: np.ndarray) -> np.ndarray:
        """Effective weight ``w + c2 w^2 + c3 w^3`` (w units)."""
        return w + self.c2 * w**2 + self.c3 * w**3

    def input(self, x: np.ndarray) -> np.ndarray:
        """Input transfer ``G S(x + a2 x^2 + a3 x^3)`` (y per w)."""
        return self.G * _sat(x + self.a2 * x**2 + self.a3 * x**3, self.u)

    def __call__(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return self.weight(w) * self.input(x) + self.b

    def to_dict(self) -> dict[str, float]:
        d = {k: getattr(self, k) for k in MULT_PARAMS if k != "u"}
        return {**d, "Xs": self.Xs}


@dataclass(frozen=True)
class ReluModel:
    """``y = c + g s softplus((x - t) / s)`` (x, y units)."""

    c: float
    g: float
    t: float
    s: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.c + self.g * self.s * np.logaddexp(0.0, (x - self.t) / self.s)

    def to_dict(self) -> dict[str, float]:
        return {"floor": self.c, "gain": self.g, "knee": self.t, "softness": self.s}


@dataclass
class Fit:
    """A fit's parameters (with standard errors and units), residuals and fitted data.

    ``rms`` and ``max_abs`` are residuals in y units; ``full_scale`` is max |y| of the data, so
    ``100 * rms / full_scale`` is % of full scale. ``data``: the input table plus ``fit`` and
    ``residual`` columns. ``groups``: per-weight (or per-point) residual table.
    """

    circuit: str
    model: Any
    params: dict[str, float]
    stderr: dict[str, float]
    units: dict[str, str]
    rms: float
    max_abs: float
    full_scale: float
    data: pd.DataFrame
    groups: pd.DataFrame = field(default_factory=pd.DataFrame)
    extra: dict[str, Any] = field(default_factory=dict)
    undetermined: dict[str, str] = field(default_factory=dict)
    """Parameters the data cannot determine, with why (see :func:`_uncertainty`)."""
    source: str = "<memory>"
    """The file the data came from (for messages)."""

    def defaults(self) -> dict[str, str]:
        """What each undetermined parameter defaults to (value and meaning)."""
        return {k: DEFAULTS[self.circuit].get(k, "no default: more data needed")
                for k in self.undetermined}  # fmt: skip

    def summary(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "stderr": self.stderr,
            "units": self.units,
            "residual_rms": self.rms,
            "residual_max": self.max_abs,
            "full_scale": self.full_scale,
            "residual_rms_pct_fs": 100 * self.rms / self.full_scale,
            "residual_max_pct_fs": 100 * self.max_abs / self.full_scale,
            "points": len(self.data),
            "undetermined": {
                k: {"why": v, "default": self.defaults()[k]} for k, v in self.undetermined.items()
            },  # fmt: skip
            **self.extra,
        }


UNDETERMINED_REL = 0.5
"""A parameter whose standard error exceeds this fraction of its value is undetermined."""
ILL_CONDITIONED = 1e10
"""Condition number of the (column-scaled) normal matrix above which a fit is ill-conditioned."""


def _uncertainty(
    res: Any, names: tuple[str, ...], scale: np.ndarray | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """Standard errors (``s^2 (J^T J)^-1`` at the optimum) and, for each parameter the data
    cannot determine, why: at a bound of the fit (the Jacobian's error is meaningless there),
    in an ill-conditioned direction of the normal matrix, or a relative error above
    :data:`UNDETERMINED_REL`. ``scale``: per parameter, what the fitted value is multiplied by
    (a fit at unit scale): errors and reasons are of the scaled values."""
    j, r, p = np.asarray(res.jac, float), res.fun, np.asarray(res.x, float)
    unit = np.ones(len(names)) if scale is None else np.asarray(scale, float)
    dof = max(len(r) - len(names), 1)
    # Column-scaled normal matrix: a parameter the data barely feels (a tiny Jacobian column)
    # gets a huge error instead of being cut off by pinv as a null direction (error 0).
    norms = np.linalg.norm(j, axis=0)
    scaled = j / np.where(norms > 0, norms, 1.0)
    normal = scaled.T @ scaled
    cov_scaled = np.linalg.pinv(normal) * float(r @ r) / dof
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(norms > 0, np.diag(cov_scaled) / norms**2, np.inf)
    err = {k: float(unit[i] * np.sqrt(max(var[i], 0.0))) for i, k in enumerate(names)}
    p = p * unit
    why: dict[str, str] = {}
    vals, vecs = np.linalg.eigh(normal)
    weak = vecs[:, vals < max(vals.max(), 1e-300) / ILL_CONDITIONED]
    for i, k in enumerate(names):
        if getattr(res, "active_mask", None) is not None and res.active_mask[i] != 0:
            why[k] = "at the bound of the fit"
        elif norms[i] == 0 or np.any(np.abs(weak[i]) > 0.3):
            why[k] = "the data does not constrain it (ill-conditioned)"
        elif err[k] > UNDETERMINED_REL * abs(p[i]):
            why[k] = f"standard error {err[k]:.2g} > {UNDETERMINED_REL:.0%} of its value"
    return err, why


def _full_scale(ds: CurveTable, y: np.ndarray) -> float:
    """The data's largest |y| (> 0: an all-zero output has nothing to fit)."""
    fs = float(np.max(np.abs(y)))
    if not fs > 0:
        raise DataError(f"{ds.source}: {ds.label}: the output y is 0 on every row: nothing to fit")
    return fs


def fit_multiplier(ds: CurveTable) -> Fit:
    """Fit :class:`MultiplierModel` to a multiplier DC (or pooled Monte Carlo) table."""
    f = ds.frame
    x, w, y = (f[c].to_numpy(float) for c in ("x", "w", "y"))
    if len(np.unique(w)) < 3 or len(np.unique(x)) < 5:
        raise DataError(f"{ds.source}: {ds.label} needs >= 3 weights and >= 5 inputs to fit")
    fs = _full_scale(ds, y)
    y = y / fs  # fitted at unit scale: the optimizer's tolerances are absolute
    xw = x * w
    g0 = float(xw @ y / max(xw @ xw, 1e-30))
    lo = np.array([-np.inf, -np.inf, -np.inf, -np.inf, -np.inf, 0.0, -np.inf])
    hi = np.array([np.inf, np.inf, np.inf, np.inf, np.inf, 50.0, np.inf])
    span = float(np.max(np.abs(x)))

    def resid(p: np.ndarray) -> np.ndarray:
        return MultiplierModel(*p)(x, w) - y

    # a3 and Xs trade off (both bend the input transfer): a few starts of the saturation,
    # keep the best optimum.
    starts = [[g0 if g0 != 0 else 1.0, 0, 0, 0, 0, u0 / span, float(np.mean(y))]
              for u0 in (0.05, 0.3, 1.0, 2.0)]  # fmt: skip
    fits = [least_squares(resid, p0, bounds=(lo, hi), x_scale="jac") for p0 in starts]
    res = min(fits, key=lambda r: float(r.cost))
    model = MultiplierModel(*(float(v) * (fs if k in "Gb" else 1.0)
                              for k, v in zip(MULT_PARAMS, res.x, strict=True)))  # fmt: skip
    err, why = _uncertainty(res, MULT_PARAMS, [fs if k in "Gb" else 1.0 for k in MULT_PARAMS])
    resid_y = res.fun * fs
    err["Xs"] = err.pop("u") * model.Xs**2 if model.u > 0 else float("nan")
    if "u" in why:
        why["Xs"] = why.pop("u")
    data = f.assign(fit=model(x, w), residual=resid_y)
    groups = (
        data.groupby("w")["residual"]
        .agg(rms=lambda r: float(np.sqrt(np.mean(r**2))), max=lambda r: float(np.abs(r).max()))
        .reset_index()
    )
    groups["n"] = data.groupby("w").size().to_numpy()
    rms, mx = float(np.sqrt(np.mean(resid_y**2))), float(np.max(np.abs(resid_y)))
    extra = {"x_range": [float(x.min()), float(x.max())], "x_span": span}
    extra["w_range"] = [float(w.min()), float(w.max())]
    units = {k: MULT_UNITS[k] for k in model.to_dict()}
    return Fit("multiplier", model, model.to_dict(), err, units, rms, mx, fs, data, groups, extra,
               why, ds.source)  # fmt: skip


def fit_relu(ds: CurveTable) -> Fit:
    """Fit :class:`ReluModel` to a ReLU DC sweep."""
    x, y = ds.frame["x"].to_numpy(float), ds.frame["y"].to_numpy(float)
    fs = _full_scale(ds, y)
    y = y / fs  # fitted at unit scale: the optimizer's tolerances are absolute
    top = x >= np.quantile(x, 0.7)
    slope, icpt = np.polyfit(x[top], y[top], 1) if top.sum() >= 2 else (1.0, 0.0)
    c0 = float(np.min(y))
    p0 = np.array([c0, slope, (c0 - icpt) / slope if slope else 0.0, 0.05 * np.ptp(x)])
    lo, hi = [-np.inf, -np.inf, -np.inf, 1e-6 * np.ptp(x)], [np.inf, np.inf, np.inf, np.ptp(x)]

    def resid(p: np.ndarray) -> np.ndarray:
        return ReluModel(*p)(x) - y

    res = least_squares(resid, p0, bounds=(lo, hi), x_scale="jac", method="trf")
    c, g, t, soft = map(float, res.x)
    model = ReluModel(c * fs, g * fs, t, soft)
    raw, raw_why = _uncertainty(res, ("c", "g", "t", "s"), np.array([fs, fs, 1.0, 1.0]))
    resid_y = res.fun * fs
    names = {"c": "floor", "g": "gain", "t": "knee", "s": "softness"}
    err = {names[k]: v for k, v in raw.items()}
    why = {names[k]: v for k, v in raw_why.items()}
    units = {"floor": "y", "gain": "y/x", "knee": "x", "softness": "x"}
    data = ds.frame.assign(fit=model(x), residual=resid_y)
    rms, mx = float(np.sqrt(np.mean(resid_y**2))), float(np.max(np.abs(resid_y)))
    return Fit("relu", model, model.to_dict(), err, units, rms, mx, fs, data, undetermined=why,
               source=ds.source)  # fmt: skip


def fit_noise(ds: CurveTable) -> dict[str, Any]:
    """Noise sigma (y units, RMS over the operating points) for the stated band (Hz)."""
    f = ds.frame
    sigma = float(np.sqrt(np.mean(f["noise_rms"].to_numpy() ** 2)))
    cols = [c for c in ("x", "w", "noise_rms") if c in f.columns]
    return {
        "sigma": sigma,
        "unit": "y (RMS)",
        "band_hz": [float(f["f_low_hz"].iloc[0]), float(f["f_high_hz"].iloc[0])],
        "min": float(f["noise_rms"].min()),
        "max": float(f["noise_rms"].max()),
        "points": f[cols].to_dict(orient="records"),
    }


def fit_montecarlo(ds: CurveTable, nominal: MultiplierModel, step: float = 1e-4) -> dict[str, Any]:
    """Per-instance gain, output offset, input and weight offsets (linearized around
    ``nominal``), solved for all instances at once (normal equations by ``bincount``)."""
    f = ds.frame
    labels, inst = np.unique(f["instance"].astype(str).to_numpy(), return_inverse=True)
    if len(labels) < MIN_INSTANCES:
        raise DataError(
            f"{ds.source}: Monte Carlo needs >= {MIN_INSTANCES} instances, got {len(labels)}"
        )
    x, w, y = (f[c].to_numpy(float) for c in ("x", "w", "y"))
    F = nominal(x, w)
    fx = (nominal(x + step, w) - nominal(x - step, w)) / (2 * step)
    fw = (nominal(x, w + step) - nominal(x, w - step)) / (2 * step)
    A = np.stack([F, fx, fw, np.ones_like(F)], axis=1)  # unknowns: gamma, dx, dw, beta
    r = y - F
    k, n = A.shape[1], len(labels)
    ata = np.stack(
        [np.bincount(inst, A[:, i] * A[:, j], minlength=n) for i in range(k) for j in range(k)],
        axis=1,
    ).reshape(n, k, k)
    atr = np.stack([np.bincount(inst, A[:, i] * r, minlength=n) for i in range(k)], axis=1)
    try:
        theta = np.linalg.solve(ata, atr[..., None])[..., 0]
    except np.linalg.LinAlgError:
        raise DataError(
            f"{ds.source}: Monte Carlo sweeps do not separate gain and offsets (too few x/w)"
        ) from None
    # Mismatch error not explained by the gain, minus its mean over instances (the nominal
    # model's own error): output-referred, RMS over the grid and the instances.
    e = y - (1 + theta[inst, 0]) * F
    point = pd.MultiIndex.from_arrays([x.round(9), w.round(9)]).factorize()[0]
    counts = np.bincount(point)
    e_centered = e - (np.bincount(point, e) / counts)[point]
    scale = np.sqrt(n / (n - 1))  # unbiased over instances
    after = r - np.einsum("ij,ij->i", A, theta[inst])
    per = pd.DataFrame(theta, columns=["gain_error", "input_offset", "weight_offset", "offset"])
    per.insert(0, "instance", labels)
    sd = per.iloc[:, 1:].std(ddof=1)
    return {
        "instances": n,
        "gain_sigma": float(sd["gain_error"]),
        "offset_sigma": float(sd["offset"]),
        "input_offset_sigma": float(sd["input_offset"]),
        "weight_offset_sigma": float(sd["weight_offset"]),
        "equivalent_offset_sigma": float(scale * np.sqrt(np.mean(e_centered**2))),
        "units": {
            "gain_sigma": "relative",
            "offset_sigma": "y",
            "input_offset_sigma": "x",
            "weight_offset_sigma": "w",
            "equivalent_offset_sigma": "y",
        },  # fmt: skip
        "residual_rms_after": float(np.sqrt(np.mean(after**2))),
        "per_instance": per,
    }


def polynomial_fit(
    fn: Any, limit: float, degree: int, points: int = 2001
) -> tuple[tuple[float, ...], float, float]:
    """Least-squares polynomial ``a_0 + a_1 x + ...`` to ``fn`` on ``[-limit, limit]``:
    (coefficients, RMS error, max error)."""
    xs = np.linspace(-limit, limit, points)
    ys = fn(xs)
    coef = np.polynomial.polynomial.polyfit(xs, ys, degree)
    err = np.polynomial.polynomial.polyval(xs, coef) - ys
    return tuple(float(c) for c in coef), float(np.sqrt(np.mean(err**2))), float(np.abs(err).max())
