"""From fitted circuit models to the twin: a Nonidealities file, and the fidelity check.

Units: the twin's volts are the characterization's normalized units (a twin input of 1 V is
``x_full_scale`` at a multiplier, a weight of 1.0 is ``w_full_scale``, a MAC output of 1 V is
``y_full_scale``). Mapping onto the existing :class:`~aanntwin.config.Nonidealities` fields
(conv2d and linear stages are built from the same multiplier):

- ``*_input_clip`` = the largest characterized |x| (the polynomial is not trusted beyond it);
- ``*_weight_range`` = the largest characterized |w| (the weight sweep's full scale, twin weight
  units): training keeps every weight inside it, where the weight transfer was measured;
- ``*_input_nonlin`` = least-squares polynomial (degree 7 by default) of the input transfer
  ``G S(x + a2 x^2 + a3 x^3)`` on ``[-clip, clip]`` (gain and input saturation folded in);
- ``*_gain_mismatch`` = spread of the per-instance gain; ``*_offset_mismatch`` =
  ``sqrt(fan_in)`` x the per-multiplier equivalent output offset (output, input and weight
  offsets referred to the output, RMS over the characterized grid; independent per multiplier);
- ``*_out_noise`` = ``sqrt(fan_in)`` x the per-multiplier output noise (uncorrelated);
- ``relu_cutoff`` = the ``max(cutoff, y)`` closest to the ReLU data; ``relu_out_noise`` = the
  ReLU's output noise. Readout (TIA) noise, offset and swing are not in the shipped circuits:
  ``*_out_saturation`` stays off.

What the twin cannot represent yet (weight nonlinearity, systematic offset, ReLU gain, knee and
softness) is listed with its size in the report.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..config import ModelParams, Nonidealities, RunConfig
from ..layers import AnalogLinear
from ..runs import run_geometry
from .fit import Fit, polynomial_fit

STAGE_KINDS = ("conv2d", "linear")


def fan_ins(dataset: str = "digits", model: ModelParams | None = None) -> dict[str, int]:
    """Multipliers per MAC of the conv and final linear stages of a geometry (count)."""
    g = run_geometry(RunConfig(dataset=dataset, model=model or ModelParams()))
    return {"conv2d": g.stages[0].fan_in, "linear": g.stages[-1].fan_in}


def extended(name: str) -> bool:
    """Whether the twin has the proposed field ``name`` (``weight_nonlin``: per stage kind;
    ``relu_softness``: the soft ReLU), so the fit maps onto it instead of reporting it."""
    fields = Nonidealities.field_names()
    return name in fields or f"linear_{name}" in fields


def to_nonidealities(
    mult: Fit | None,
    relu: Fit | None,
    noise: dict[str, dict[str, Any]],
    mismatch: dict[str, Any] | None,
    fan_in: dict[str, int],
    degree: int = 7,
) -> tuple[Nonidealities, dict[str, Any], list[dict[str, Any]]]:
    """The fitted Nonidealities, how each field was derived, and what the twin lacks."""
    fields: dict[str, Any] = {}
    how: dict[str, Any] = {}
    lacking: list[dict[str, Any]] = []
    if mult is not None:
        m, clip = mult.model, float(mult.extra["x_span"])
        coeffs, p_rms, p_max = polynomial_fit(m.input, clip, degree)
        for st in STAGE_KINDS:
            fields[f"{st}_input_clip"] = clip
            fields[f"{st}_input_nonlin"] = coeffs
        how["input_nonlin"] = {
            "from": "multiplier dc: G * Xs * tanh((x + a2 x^2 + a3 x^3) / Xs)",
            "degree": degree,
            "clip": clip,
            "polynomial_rms": p_rms,
            "polynomial_max": p_max,
        }
        w_span = float(np.max(np.abs(mult.extra["w_range"])))
        for st in STAGE_KINDS:
            fields[f"{st}_weight_range"] = w_span
        how["weight_range"] = {
            "from": "multiplier data: largest |w| of the weight sweep (1.0 = w full scale)",
            "range": w_span,
        }
        w = np.linspace(*mult.extra["w_range"], 401)
        if extended("weight_nonlin"):
            for st in STAGE_KINDS:
                fields[f"{st}_weight_nonlin"] = (0.0, 1.0, m.c2, m.c3)
        else:
            top = float(np.max(np.abs(m.input(np.array([-clip, clip])))))
            lacking.append({
                "quantity": "weight nonlinearity", "value": {"c2": m.c2, "c3": m.c3},
                "size": float(np.max(np.abs(m.weight(w) - w))) * top,
                "unit": "y (largest error per multiplier)",
                "proposal": "conv2d_weight_nonlin / linear_weight_nonlin (weight polynomial)",
            })  # fmt: skip
        lacking.append({
            "quantity": "systematic multiplier offset b", "value": m.b, "size": abs(m.b),
            "unit": "y per multiplier (fan_in x b per MAC)",
            "proposal": "none needed: the trained bias absorbs it",
        })  # fmt: skip
    if mismatch is not None:
        for st in STAGE_KINDS:
            fields[f"{st}_gain_mismatch"] = mismatch["gain_sigma"]
            fields[f"{st}_offset_mismatch"] = (
                math.sqrt(fan_in[st]) * mismatch["equivalent_offset_sigma"]
            )
        how["mismatch"] = {
            "gain": "std of per-instance gain",
            "offset": "sqrt(fan_in) * equivalent per-multiplier output offset",
            "fan_in": fan_in,
        }
    if "multiplier" in noise:
        for st in STAGE_KINDS:
            fields[f"{st}_out_noise"] = math.sqrt(fan_in[st]) * noise["multiplier"]["sigma"]
        how["out_noise"] = {"per_multiplier": noise["multiplier"]["sigma"], "fan_in": fan_in,
                            "band_hz": noise["multiplier"]["band_hz"]}  # fmt: skip
    if relu is not None and extended("relu_softness"):
        p = relu.params
        fields.update(relu_cutoff=p["floor"], relu_gain=p["gain"], relu_threshold=p["knee"],
                      relu_softness=p["softness"])  # fmt: skip
        how["relu"] = {"from": "soft ReLU fit", "residual_rms": relu.rms,
                       "residual_max": relu.max_abs}  # fmt: skip
    elif relu is not None:
        fields["relu_cutoff"] = relu.extra["twin_relu_cutoff"]
        how["relu_cutoff"] = {"from": "least-squares max(cutoff, x) to the ReLU data",
                              "residual_rms": relu.extra["twin_residual_rms"],
                              "residual_max": relu.extra["twin_residual_max"]}  # fmt: skip
        p = relu.params
        lacking.append({
            "quantity": "ReLU gain, knee and softness",
            "value": {k: p[k] for k in ("gain", "knee", "softness")},
            "size": relu.extra["twin_residual_max"], "unit": "y (largest error of max(cutoff, x))",
            "proposal": "relu_gain, relu_threshold, relu_softness (soft ReLU)",
        })  # fmt: skip
    if "relu" in noise:
        fields["relu_out_noise"] = noise["relu"]["sigma"]
    return Nonidealities(**fields), how, lacking


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
    off: the nominal circuit). ``weight`` maps programmed to effective weights (the proposed
    weight nonlinearity; None = linear); ``offset`` is the MAC's systematic offset (as bias).
    """
    x, w = np.atleast_2d(x), np.atleast_2d(w)
    k, n = x.shape
    s = dataclasses.replace(
        nl.stage(stage), gain_mismatch=None, offset_mismatch=None, out_noise=None, out_bits=None
    )
    w_eff = weight(w) if weight is not None else w
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


def fidelity(
    x: np.ndarray, w: np.ndarray, y: np.ndarray, nl: Nonidealities, mult: Fit
) -> dict[str, Any]:
    """Twin against circuit on MAC conditions: RMS and max error in % of full scale.

    Full scale = fan-in x the multiplier's largest characterized |y| (the MAC's output range).
    ``twin``: the fitted stage with the proposed weight nonlinearity; ``twin_existing_fields``:
    the present twin (linear weights). Errors also in % of the largest |y| seen.
    """
    n = x.shape[1]
    offset = n * mult.model.b
    fs = n * mult.full_scale
    seen = float(np.max(np.abs(y)))
    out: dict[str, Any] = {"conditions": len(y), "inputs": n, "full_scale": fs, "max_abs_y": seen}
    if getattr(nl, "linear_weight_nonlin", None) is not None:  # the twin has the field
        linear = nl.replace(linear_weight_nonlin=None)
        preds = {"twin": predict_mac(nl, x, w, None, offset)}
    else:  # emulate the proposed field: the same polynomial applied to the weights
        linear = nl
        preds = {"twin": predict_mac(nl, x, w, mult.model.weight, offset)}
    preds["twin_existing_fields"] = predict_mac(linear, x, w, None, offset)
    for name, pred in preds.items():
        err = pred - y
        rms, mx = float(np.sqrt(np.mean(err**2))), float(np.max(np.abs(err)))
        out[name] = {
            "rms_pct_fs": 100 * rms / fs,
            "max_pct_fs": 100 * mx / fs,
            "rms_pct_max_y": 100 * rms / seen,
            "max_pct_max_y": 100 * mx / seen,
        }
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
