"""One weight-bits recommendation: the spec's number, and what notebook 03's grid adds to it.

The recommendation is the spec's (:meth:`~aanntwin.studies.specs.SpecSearch.fewest_bits`, the
function behind 04's spec table): per stage kind, the fewest weight bits (not counting the sign)
with the reference at the stage's largest |w| (nothing clipped) and a zero level, everything else
ideal, whose accuracy is at least the ideal model's minus ``max_drop``. Hidden linear stages share
the ``linear`` bits. The quantization grid (03) holds each layer to the same criterion but lets
the reference (clip) vary: a tuned reference can need fewer bits, at the price of programming
that reference; that is the only reason its number can differ from the spec's.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
from torch import Tensor

from ..config import Nonidealities
from ..model import Main
from ..training import evaluate
from .quantization import recommend
from .specs import SpecSearch, Target

SOURCE = ("the spec's criterion (04): fewest bits with ref = the stage's largest |w| and a zero "
          "level, accuracy within target_drop of the ideal model")  # fmt: skip


def spec_kind(layer: str) -> str:
    """The spec's stage name of a layer: ``conv``, else ``linear`` (hidden stages share it)."""
    return "conv" if layer == "conv" else "linear"


def spec_bits(model: Main, x: Tensor, y: Tensor, max_drop: float = 0.01) -> tuple[dict, float]:
    """``({"conv": bits, "linear": bits}, ideal accuracy)``: the spec's fewest weight bits
    (None: none up to 12 met the target), by the spec's own function on a copy of ``model``."""
    search = SpecSearch(copy.deepcopy(model), x, y, Target(max_drop))
    bits = {"conv": search.fewest_bits("conv2d"), "linear": search.fewest_bits("linear")}
    return bits, search.ideal


def baseline(model: Main, x: Tensor, y: Tensor, nl: Nonidealities | None) -> float:
    """The unchanged model's accuracy (fraction) with ``nl`` on (run 0 of ``evaluate``, as each
    quantization point): the reference a study with nonidealities holds its points to."""
    work = copy.deepcopy(model)
    work.set_nonidealities(nl or Nonidealities())
    return evaluate(work, x, y).accuracy


def recommendations(df: Any, model: Main, x: Tensor, y: Tensor, max_drop: float = 0.01,
                    nl: Nonidealities | None = None) -> tuple[dict, dict, float]:  # fmt: skip
    """``(rec, spec, reference)`` of a quantization study ``df`` of ``model`` (evaluated with
    ``nl``, None: ideal): the grid's recommendation per layer held to ``reference`` (the
    unchanged model's accuracy: the ideal one, or with ``nl`` on) and the spec's bits."""
    spec, ideal = spec_bits(model, x, y, max_drop)
    reference = ideal if nl is None else baseline(model, x, y, nl)
    return recommend(df, max_drop=max_drop, baseline=reference), spec, reference


def table(rec: dict[str, dict | None], spec: dict[str, int | None]) -> pd.DataFrame:
    """Per layer: the spec's bits (the recommendation) and the grid's fewest bits with a tuned
    reference (ref_sigma in weight stds, ref in weight units), its accuracy and the grid edge."""
    rows = []
    for layer, r in rec.items():
        r = r or {}
        rows.append({"layer": layer, "weight bits (spec)": spec.get(spec_kind(layer)),
                     "bits at tuned ref": r.get("bits"), "ref_sigma": r.get("ref_sigma"),
                     "ref": r.get("ref"), "accuracy": r.get("accuracy"),
                     "held to": r.get("reference"), "grid edge": r.get("edge", "")})  # fmt: skip
    return pd.DataFrame(rows).round(4)


def sentences(rec: dict[str, dict | None], spec: dict[str, int | None], reference: float,
              max_drop: float) -> list[str]:  # fmt: skip
    """03's conclusion in words: the one recommendation per stage (the spec's), what a tuned
    reference saves and why it differs, and any grid-edge flag."""
    floor = 100 * (reference - max_drop)
    out = [f"Weight bits (not counting the sign), by {SOURCE}: "
           + ", ".join(f"{k} {'none up to 12' if b is None else b}" for k, b in spec.items())
           + f" (every point held to >= {floor:.2f} %)."]  # fmt: skip
    for layer, r in rec.items():
        want = spec.get(spec_kind(layer))
        if r is None:
            out.append(f"{layer}: no point of the grid stays within {100 * max_drop:g} points of "
                       f"{100 * reference:.2f} %: widen ref_sigmas or bits.")  # fmt: skip
            continue
        tuned = (f"{layer}: with the reference tuned to {r['ref_sigma']:g} std ({r['ref']:.4g} "
                 f"weight units) {r['bits']} bit{'' if r['bits'] == 1 else 's'} reach {100 * r['accuracy']:.2f} %")  # fmt: skip
        if want is not None and r["bits"] < want:
            tuned += (f", {want - r['bits']} fewer than the spec's {want}: clipping the largest "
                      "weights shrinks the step; the spec keeps ref at the largest |w|")  # fmt: skip
        elif want is not None and r["bits"] > want:
            tuned += f", more than the spec's {want}: the grid has no ref near the largest |w|"
        out.append(tuned + ".")
        if r["edge"]:
            out.append(f"{layer} is at the edge of the grid ({r['edge']}).")
    return out


def headlines(rec: dict[str, dict | None]) -> dict[str, tuple[Any, str]]:
    """The grid's fewest bits with a tuned reference per layer (``tuned_ref_bits_<layer>``): the
    weight-bits spec itself is 04's ``weight_bits_<stage>``."""
    return {f"tuned_ref_bits_{k}": (v["bits"] if v else None, "bits") for k, v in rec.items()}
