"""Can the data be fitted, and does the fit explain it? Checks before and after fitting.

Before (:func:`check_table`, an error naming the file): every value column inside the float32
range the twin computes in, and an output ``y`` that is neither constant (nothing to fit) nor
too small for float32 (every fitted value would be written as 0).

After (:func:`check_fits`): a fitted value the twin cannot take is an error that says the fit
of which file gave it and why (a decreasing ReLU: :func:`refused`); :func:`fit_warnings` names
the file of a fit that explains little of its data (RMS residual above
:data:`RESIDUAL_WARN_PCT` % of full scale), a dead circuit (its fitted output swing below
:data:`DEAD_PCT` % of full scale) and Monte Carlo instances that do not respond.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..errors import AanntwinError, DataError
from .curves import CurveTable
from .fit import Fit

FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
RESIDUAL_WARN_PCT = 10.0
"""A fit whose RMS residual exceeds this % of the data's full scale explains little: a warning."""
DEAD_PCT = 1.0
"""A fitted output swing (the multiplier's product term, the ReLU's rise) below this % of the
data's full scale is a dead circuit: a warning."""
NOT_VALUES = ("instance", "f_low_hz", "f_high_hz")


def check_table(ds: CurveTable) -> None:
    """Refuse a table the fit cannot use (see the module docstring)."""
    f = ds.frame
    for col in (c for c in f.columns if c not in NOT_VALUES):
        v = np.abs(f[col].to_numpy(float))
        if v.size and v.max() > FLOAT32_MAX:
            row = int(np.argmax(v > FLOAT32_MAX))
            raise DataError(
                f"{ds.where(row, col)}: {f[col].iloc[row]:.3g} is beyond the float32 range the "
                f"twin computes in (|value| <= {FLOAT32_MAX:.3g}); values are multiples of the "
                "header's full scales: is the full scale right?"
            )
    if "y" not in f.columns or ds.analysis == "noise":
        return
    y = f["y"].to_numpy(float)
    if np.ptp(y) == 0:
        raise DataError(
            f"{ds.source}: {ds.label}: the output y is constant ({y[0]:g} on every row): nothing "
            "to fit"
        )
    top = float(np.max(np.abs(y)))
    if top < FLOAT32_TINY:
        raise DataError(
            f"{ds.source}: {ds.label}: the output y is at most {top:.3g}, below the float32 "
            f"range the twin computes in (>= {FLOAT32_TINY:.3g}): every fitted value would be "
            "written as 0; values are multiples of the header's y_full_scale: is it right?"
        )


def check_fits(fits: dict[str, Fit]) -> None:
    """Refuse a fit whose parameters the twin cannot take (a ReLU gain <= 0)."""
    r = fits.get("relu")
    if r is not None and "gain" not in r.undetermined and r.params["gain"] <= 0:
        raise DataError(
            f"{r.source}: the fit of this ReLU data gives gain {r.params['gain']:.3g}: the data "
            "is decreasing (a ReLU's output rises with its input; the twin's relu_gain must be "
            "> 0)"
        )


def refused(exc: AanntwinError, sources: dict[str, str]) -> DataError:
    """A Nonidealities field the fits gave out of range: the error names the fitted file.

    ``sources``: field-name prefix -> the file its value was fitted from (longest match wins)."""
    text = str(exc)
    m = re.search(r"nonidealities\.(\w+)", text)
    name = m.group(1) if m else ""
    src = next((sources[p] for p in sorted(sources, key=len, reverse=True)
                if name.startswith(p)), ", ".join(sorted(set(sources.values()))))  # fmt: skip
    return DataError(
        f"{src}: the fit of this data gives {text} (a fitted value, not one you set: the data, "
        "or its header's full scales, are outside what the twin can represent)"
    )


def field_sources(by: dict[tuple[str, str], CurveTable]) -> dict[str, str]:
    """Nonidealities field-name prefix -> the file its value is fitted from."""
    mult = by.get(("multiplier", "dc")) or by.get(("multiplier", "montecarlo"))
    out = {f"{s}_": mult.source for s in ("conv2d", "linear")} if mult is not None else {}
    for (circuit, analysis), ds in by.items():
        if (circuit, analysis) == ("relu", "dc"):
            out["relu_"] = ds.source
        elif analysis == "noise":
            stages = ("relu",) if circuit == "relu" else ("conv2d", "linear")
            out.update({f"{s}_out_noise": ds.source for s in stages})
        elif analysis == "montecarlo":
            out.update({f"{s}_{k}_mismatch": ds.source for s in ("conv2d", "linear")
                        for k in ("gain", "offset")})  # fmt: skip
    return out


def _pct(value: float, fs: float) -> float:
    return 100.0 * value / fs


def fit_warnings(
    fits: dict[str, Fit], mismatch: dict[str, Any] | None, mc: CurveTable | None = None
) -> list[str]:
    """One warning per fit that explains little of its data or describes a dead circuit, and
    for the Monte Carlo instances of ``mc`` that do not respond; each names the file."""
    out: list[str] = []
    for c, f in fits.items():
        rms, mx = _pct(f.rms, f.full_scale), _pct(f.max_abs, f.full_scale)
        if rms > RESIDUAL_WARN_PCT:
            out.append(
                f"{f.source}: the {c} fit leaves {rms:.3g} % FS RMS (max {mx:.3g} %) of the data "
                f"unexplained (> {RESIDUAL_WARN_PCT:g} %): the data does not follow the {c} model "
                "(noise, a wrong column or full scale, a broken circuit?); the twin written from "
                "it does not describe the circuit"
            )
        x = f.data["x"].to_numpy(float)
        if c == "multiplier":
            w = f.data["w"].to_numpy(float)
            swing = float(np.max(np.abs(f.model(x, w) - f.model.b)))
            what = "product term G f(w) g(x)"
        else:
            swing = float(np.ptp(f.model(x)))
            what = "rise over the sweep"
        if _pct(swing, f.full_scale) < DEAD_PCT:
            out.append(
                f"{f.source}: the fitted {c}'s {what} reaches only "
                f"{_pct(swing, f.full_scale):.3g} % of the data's full scale "
                f"({f.full_scale:.3g}; < {DEAD_PCT:g} %): the twin's {c} is dead (its output "
                "hardly depends on its input)"
            )
    if mismatch is not None and mc is not None and "multiplier" in fits:
        swing = mc.frame.groupby(mc.frame["instance"].astype(str))["y"].agg(np.ptp)
        dead, n = int((swing < DEAD_PCT / 100 * fits["multiplier"].full_scale).sum()), len(swing)
        if dead:
            out.append(
                f"{mc.source}: {dead} of {n} Monte Carlo instances hardly respond "
                f"(output swing < {DEAD_PCT:g} % of the multiplier's full scale "
                f"{fits['multiplier'].full_scale:.3g}): the mismatch figures (gain sigma "
                f"{100 * mismatch['gain_sigma']:.3g} %) describe dead circuits, not the spread "
                "of a working multiplier"
            )
    return out


__all__ = ["DEAD_PCT", "RESIDUAL_WARN_PCT", "check_fits", "check_table", "field_sources",
           "fit_warnings", "refused"]  # fmt: skip
