"""The characterized ranges of a model, and what of its weights and inputs falls outside them.

A characterization writes ``*_input_clip`` (the largest characterized input, V) and
``*_weight_range`` (the largest characterized weight). The twin clips beyond both, as the circuit
does (it was never measured there); training keeps the weights inside. Evaluating weights
trained elsewhere (another characterization, none) against these limits silently clips some of
them: :func:`limits` counts them, and the pixel voltages the normalization sends beyond the
input range, so the CLI can say so.
"""

from __future__ import annotations

from typing import Any

from .config import Normalization
from .model import Main, weight_bound


def limits(model: Main, normalization: Normalization | None = None) -> dict[str, dict[str, Any]]:
    """Per MAC stage with a limit: ``input_clip`` (V), ``weight_bound`` (weight units),
    ``weights`` (count) and ``weights_outside`` (count of |w| beyond the bound: the twin clips
    them); for the conv stage also ``inputs_reach`` (V, the normalization's widest voltage)
    when it exceeds the clip."""
    out: dict[str, dict[str, Any]] = {}
    for name, stage in zip(model.stage_names(), model.mac_stages(), strict=True):
        entry: dict[str, Any] = {}
        clip = stage.settings.input_clip
        if clip is not None:
            entry["input_clip"] = clip
            if name == "conv" and normalization is not None:
                reach = max(abs(normalization.min_out), abs(normalization.max_out))
                if reach > clip:
                    entry["inputs_reach"] = reach
        bound = weight_bound(stage.settings)
        if bound is not None:
            w = stage.weight.detach().abs()
            entry.update(weight_bound=bound, weights=w.numel(),
                         weights_outside=int((w > bound * (1 + 1e-6)).sum()))  # fmt: skip
        if entry:
            out[name] = entry
    return out


def warnings(found: dict[str, dict[str, Any]]) -> list[str]:
    """One sentence per limit the model or its inputs cross (empty: everything inside)."""
    out = []
    for name, e in found.items():
        if e.get("weights_outside"):
            out.append(
                f"{name}: {e['weights_outside']} of {e['weights']} weights lie beyond "
                f"+-{e['weight_bound']:g} (the characterized weight range): the twin clips them as "
                "the circuit would; train with these nonidealities to keep them inside"
            )
        if "inputs_reach" in e:
            out.append(
                f"{name}: the normalization drives inputs to {e['inputs_reach']:g} V, beyond the "
                f"characterized +-{e['input_clip']:g} V: the twin clips them as the circuit would"
            )
    return out
