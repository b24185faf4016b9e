"""Can the written twin be trusted? Its error per circuit beside the fit's, and warnings.

The fit's residual says how well a model follows the data; what the user gets is the written
:class:`~aanntwin.config.Nonidealities`, run through the twin's layers. :func:`as_written` puts the
two side by side per circuit (% of the circuit's full scale); :func:`trust_warnings` says, with
the fix, where the written twin is more than :data:`RATIO` times worse than the best fit (and
at least :data:`FLOOR_PCT` % FS worse: below that the difference does not matter), where its
transfer bends back although the data is monotone, and where the MAC departs from its cells.
"""

from __future__ import annotations

from typing import Any

from ..config import Nonidealities
from .fidelity import errors, relu_curve
from .fit import Fit

RATIO = 2.0
"""The written twin may be this many times worse than the best fit before a warning."""
FLOOR_PCT = 0.02
"""...and must be this much worse (% of full scale) too: smaller differences do not matter."""


def _pct(value: float, fs: float) -> float:
    return float(100 * value / fs)


def as_written(fits: dict[str, Fit], nl: Nonidealities, how: dict[str, Any]) -> dict[str, Any]:
    """Per circuit: the written twin's RMS and max error against the DC data and the fits'
    residuals, all in % of the data's largest |y|."""
    out: dict[str, Any] = {}
    m = fits.get("multiplier")
    if m is not None:
        t = how["transfer"]
        twin = t["candidates"][t["chosen"]]
        fits_pct = {"parametric": {"rms_pct_fs": _pct(m.rms, m.full_scale),
                                   "max_pct_fs": _pct(m.max_abs, m.full_scale)}}  # fmt: skip
        sep = m.extra.get("separable")
        if sep is not None:
            fits_pct["separable"] = {"rms_pct_fs": sep["residual_rms_pct_fs"],
                                     "max_pct_fs": sep["residual_max_pct_fs"]}  # fmt: skip
        out["multiplier"] = {
            "transfer": t["chosen"],
            "rms_pct_fs": twin["rms_pct_fs"],
            "max_pct_fs": twin["max_pct_fs"],
            "input_monotone": twin["input_monotone"],
            "weight_monotone": twin["weight_monotone"],
            "data_monotone": t["data_monotone"],
            "fits": fits_pct,
            "full_scale": m.full_scale,
        }
    r = fits.get("relu")
    if r is not None:
        x, y = (r.data[c].to_numpy(float) for c in ("x", "y"))
        out["relu"] = {
            **errors(relu_curve(nl, x), y, r.full_scale),
            "fits": {
                "soft relu": {
                    "rms_pct_fs": _pct(r.rms, r.full_scale),
                    "max_pct_fs": _pct(r.max_abs, r.full_scale),
                }
            },  # fmt: skip
            "full_scale": r.full_scale,
        }
    return out


def _best(fits: dict[str, dict[str, float]]) -> tuple[str, float]:
    name = min(fits, key=lambda k: fits[k]["rms_pct_fs"])
    return name, fits[name]["rms_pct_fs"]


def _worse(twin: float, best: float) -> bool:
    return twin > RATIO * best and twin - best > FLOOR_PCT


def trust_warnings(result: Any) -> list[str]:
    """Warnings for a :class:`~aanntwin.characterization.pipeline.Characterization`, each
    naming the circuit, the figures and the fix."""
    out: list[str] = []
    m = result.as_written.get("multiplier")
    if m is not None:
        name, best = _best(m["fits"])
        if _worse(m["rms_pct_fs"], best):
            fix = ("write the transfers as tables (--transfer table)"
                   if m["transfer"] == "polynomial"
                   else "characterize on a finer grid of inputs and weights")  # fmt: skip
            out.append(
                f"multiplier: the twin as written ({m['transfer']}) is off by "
                f"{m['rms_pct_fs']:.3g} % FS RMS (max {m['max_pct_fs']:.3g} %), "
                f"{m['rms_pct_fs'] / best:.1f}x the {name} fit's {best:.3g} %: {fix}"
            )
        for k in ("input", "weight"):
            if m["data_monotone"][k] and not m[f"{k}_monotone"]:
                out.append(
                    f"multiplier: the twin's {k} transfer ({m['transfer']}) rises and falls "
                    f"where the data is monotone: write it as a table (--transfer table)"
                )
    r = result.as_written.get("relu")
    if r is not None:
        name, best = _best(r["fits"])
        if _worse(r["rms_pct_fs"], best):
            out.append(
                f"relu: the twin as written is off by {r['rms_pct_fs']:.3g} % FS RMS "
                f"(max {r['max_pct_fs']:.3g} %), {r['rms_pct_fs'] / best:.1f}x the fit's "
                f"{best:.3g} %: the ReLU fields cannot follow this circuit"
            )
    fid = result.fidelity
    if fid is not None:
        twin, fit = fid["twin"]["rms_pct_fs"], fid["fit"]["rms_pct_fs"]
        if _worse(twin, fit):
            out.append(
                f"mac: the twin as written is off by {twin:.3g} % FS RMS on "
                f"{fid['conditions']} conditions, {twin / fit:.1f}x its fitted cells summed "
                f"({fit:.3g} %): check the multiplier warnings above"
            )
    return out


def lines(result: Any) -> list[str]:
    """The twin as written beside the fits, one line per circuit (for the CLI summary)."""
    out = []
    m = result.as_written.get("multiplier")
    if m is not None:
        fits = ", ".join(f"{k} fit {v['rms_pct_fs']:.3f} %" for k, v in m["fits"].items())
        out.append(
            f"multiplier twin as written ({m['transfer']}): RMS {m['rms_pct_fs']:.3f} % FS, max "
            f"{m['max_pct_fs']:.3f} % FS ({fits})"
        )
    r = result.as_written.get("relu")
    if r is not None:
        fit = r["fits"]["soft relu"]["rms_pct_fs"]
        out.append(
            f"relu twin as written: RMS {r['rms_pct_fs']:.3f} % FS, max {r['max_pct_fs']:.3f} % FS "
            f"(fit {fit:.3f} %)"
        )
    return out


__all__ = ["FLOOR_PCT", "RATIO", "as_written", "lines", "trust_warnings"]
