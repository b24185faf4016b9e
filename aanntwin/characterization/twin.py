"""From fitted circuit models to the twin: the Nonidealities file it writes.

Units: the twin's volts are the characterization's normalized units (a twin input of 1 V is
``x_full_scale`` at a multiplier, a weight of 1.0 is ``w_full_scale``, a MAC output of 1 V is
``y_full_scale``). Mapping onto :class:`~aanntwin.config.Nonidealities` (conv2d and linear
stages are built from the same multiplier):

- ``*_input_clip`` = the largest characterized |x|: the twin clips beyond it, as nothing was
  measured there;
- ``*_weight_range`` = the largest characterized |w| (the weight sweep's full scale, twin weight
  units): training, normalization and export keep every weight inside it;
- the input and weight transfers, written either as polynomials (``*_input_nonlin``: degree 7
  by default, of ``G Xs tanh((x + a2 x^2 + a3 x^3) / Xs)``; ``*_weight_nonlin`` =
  ``(0, 1, c2, c3)``) or as tables (``*_input_table``, ``*_weight_table``) that follow any
  monotone measured transfer; :func:`choose_transfer` picks by the error of the twin as
  written against the data;
- ``*_gain_mismatch`` = spread of the per-instance gain; ``*_offset_mismatch`` =
  ``sqrt(fan_in)`` x the per-multiplier equivalent output offset (output, input and weight
  offsets referred to the output, RMS over the characterized grid; independent per multiplier);
- ``*_out_noise`` = ``sqrt(fan_in)`` x the per-multiplier output noise (uncorrelated);
- ``relu_cutoff``, ``relu_gain``, ``relu_threshold``, ``relu_softness`` = the soft-ReLU fit;
  ``relu_out_noise`` = the ReLU's output noise. Readout (TIA) noise, offset and swing are not in
  the shipped circuits: ``*_out_saturation`` stays off.

What the twin does not represent (the systematic offset) is listed with its size in the report.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..config import ModelParams, Nonidealities, RunConfig
from ..runs import run_geometry
from . import TRANSFERS
from .fidelity import cell_fidelity, monotone
from .fit import Fit, polynomial_fit
from .separable import SeparableModel

STAGE_KINDS = ("conv2d", "linear")


def fan_ins(dataset: str = "digits", model: ModelParams | None = None) -> dict[str, int]:
    """Multipliers per MAC of the conv and final linear stages of a geometry (count)."""
    g = run_geometry(RunConfig(dataset=dataset, model=model or ModelParams()))
    return {"conv2d": g.stages[0].fan_in, "linear": g.stages[-1].fan_in}


def to_nonidealities(
    mult: Fit | None,
    relu: Fit | None,
    noise: dict[str, dict[str, Any]],
    mismatch: dict[str, Any] | None,
    fan_in: dict[str, int],
    degree: int = 7,
    separable: SeparableModel | None = None,
    transfer: str = "auto",
) -> tuple[Nonidealities, dict[str, Any], list[dict[str, Any]]]:
    """The fitted Nonidealities, how each field was derived, and what the twin lacks.

    ``separable``: the tabulated fit of the multiplier data (tables come from it; None: from the
    parametric fit); ``transfer``: ``auto``, ``polynomial`` or ``table`` (see
    :func:`choose_transfer`)."""
    fields: dict[str, Any] = {}
    how: dict[str, Any] = {}
    lacking: list[dict[str, Any]] = []
    if mult is not None:
        mfields, how["transfer"] = choose_transfer(mult, separable, degree, transfer)
        fields.update(mfields)
        clip, w_span = fields["linear_input_clip"], fields["linear_weight_range"]
        how["input_range"] = {"from": "multiplier data: largest |x| (the twin clips beyond it)",
                              "clip": clip}  # fmt: skip
        how["weight_range"] = {
            "from": "multiplier data: largest |w| of the weight sweep (1.0 = w full scale); "
            "training, normalization and export keep every weight inside it",
            "range": w_span,
        }
        b = how["transfer"]["offset"]
        lacking.append({
            "quantity": "systematic multiplier offset b", "value": b, "size": abs(b),
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
    if relu is not None:
        # An undetermined parameter is written as the default the summary names (None: the
        # twin's own default, see fit.DEFAULTS), never as the fit's arbitrary value.
        p = {k: None if k in relu.undetermined else v for k, v in relu.params.items()}
        fields.update(relu_cutoff=p["floor"], relu_gain=p["gain"], relu_threshold=p["knee"],
                      relu_softness=p["softness"])  # fmt: skip
        how["relu"] = {"from": "soft ReLU fit", "residual_rms": relu.rms,
                       "residual_max": relu.max_abs}  # fmt: skip
        for k, default in relu.defaults().items():
            how["relu"][k] = f"undetermined ({relu.undetermined[k]}): {default}"
    if "relu" in noise:
        fields["relu_out_noise"] = noise["relu"]["sigma"]
    return Nonidealities(**fields), how, lacking


INPUT_TABLE_POINTS, WEIGHT_TABLE_POINTS = 257, 129
"""Table sizes: equally spaced over +-input_clip and +-weight_range (straight lines between)."""
TABLE_BETTER = 1.5
"""``auto`` takes the table when its per-cell error is this many times below the polynomial's."""


def _candidate(fields: dict[str, Any], offset: float, mult: Fit) -> dict[str, Any]:
    """Per-cell fidelity of one way of writing the multiplier (fields for both stage kinds)."""
    nl = Nonidealities(**{f"{st}_{k}": v for st in STAGE_KINDS for k, v in fields.items()})
    f = mult.data
    x, w, y = (f[c].to_numpy(float) for c in ("x", "w", "y"))
    out = cell_fidelity(nl, x, w, y, offset, mult.full_scale)
    out.pop("_pred")
    return out


def choose_transfer(
    mult: Fit, separable: SeparableModel | None, degree: int = 7, transfer: str = "auto"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The multiplier's Nonidealities fields (both stage kinds) and how they were chosen.

    Two ways to write the input and weight transfers, each checked through the twin's own layer
    against the DC data (per cell, % of the data's largest |y|):

    - ``polynomial``: degree-``degree`` least-squares polynomial of the parametric input
      transfer ``G Xs tanh(...)`` and the cubic weight polynomial ``(0, 1, c2, c3)``;
    - ``table``: the tabulated transfers (:data:`INPUT_TABLE_POINTS` and
      :data:`WEIGHT_TABLE_POINTS` points) of the separable fit (of the parametric one when the
      data is not a grid), which follow any monotone measured curve.

    ``auto`` keeps the polynomial unless it is non-monotone where the data is monotone or the
    table is :data:`TABLE_BETTER` times more accurate.
    """
    if transfer not in TRANSFERS:
        raise ValueError(f"transfer = {transfer!r}: one of {', '.join(TRANSFERS)}")
    m, clip = mult.model, float(mult.extra["x_span"])
    w_span = float(np.max(np.abs(mult.extra["w_range"])))
    ranges = {"input_clip": clip, "weight_range": w_span}
    coeffs, p_rms, p_max = polynomial_fit(m.input, clip, degree)
    poly = {**ranges, "input_nonlin": coeffs, "weight_nonlin": (0.0, 1.0, m.c2, m.c3)}
    src = separable if separable is not None else m
    xs, ws = (
        np.linspace(-clip, clip, INPUT_TABLE_POINTS),
        np.linspace(-w_span, w_span, WEIGHT_TABLE_POINTS),
    )
    table = {**ranges, "input_table": tuple(map(float, src.input(xs))),
             "weight_table": tuple(map(float, src.weight(ws)))}  # fmt: skip
    offsets = {"polynomial": float(m.b), "table": float(src.b)}
    found = {"polynomial": _candidate(poly, offsets["polynomial"], mult),
             "table": _candidate(table, offsets["table"], mult)}  # fmt: skip
    data_in = separable.g if separable is not None else m.input(np.unique(mult.data["x"]))
    data_w = separable.f if separable is not None else m.weight(np.unique(mult.data["w"]))
    data_monotone = {"input": monotone(data_in), "weight": monotone(data_w)}
    p, t = found["polynomial"], found["table"]
    bends = [k for k in ("input", "weight") if data_monotone[k] and not p[f"{k}_monotone"]]
    if transfer != "auto":
        chosen, reason = transfer, "asked for"
    elif bends:
        chosen, reason = "table", f"the polynomial {' and '.join(bends)} transfer is not " \
            "monotone where the data is"  # fmt: skip
    elif TABLE_BETTER * t["rms_pct_fs"] < p["rms_pct_fs"]:
        chosen = "table"
        reason = f"the table follows the data {p['rms_pct_fs'] / t['rms_pct_fs']:.1f}x closer"
    else:
        chosen, reason = "polynomial", "the polynomial follows the data as closely as the table"
    how = {
        "chosen": chosen,
        "reason": reason,
        "offset": offsets[chosen],
        "table_source": "separable (tabulated) fit" if separable is not None else "parametric fit",
        "polynomial": {
            "degree": degree,
            "clip": clip,
            "vs_parametric_rms": p_rms,
            "vs_parametric_max": p_max,
        },  # fmt: skip
        "data_monotone": data_monotone,
        "candidates": found,
    }
    chosen_fields = poly if chosen == "polynomial" else table
    return {f"{st}_{k}": v for st in STAGE_KINDS for k, v in chosen_fields.items()}, how
