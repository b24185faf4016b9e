"""Readable names and values of the headline figures (``headlines.json``) for the pages.

The identifiers (``joint_accuracy_q``) stay the keys machines read; pages show a label in words
with its unit (``Joint accuracy (lower quantile over draws)``) and values in engineering units
(a noise limit of 0.0429 V std reads ``42.9 mV RMS``). A notebook may record its own label with
a figure (``nb.headlines(ctx, {name: (value, unit, label)})``); else :data:`LABELS` and
:func:`label` name it.
"""

from __future__ import annotations

import math
from typing import Any

from .conclusions import volts

STAGES = {"input": "Input", "conv_out": "Conv MAC output", "relu_out": "ReLU output",
          "linear_out": "Final MAC output", "conv": "Conv stage", "linear": "Final stage",
          "conv2d": "Conv stage"}  # fmt: skip
"""Readable names of the spec kinds' stages and taps."""
LABELS = {
    "ideal_accuracy": "Ideal model test accuracy",
    "accuracy_under_nonidealities": "Ideal model accuracy under the nonidealities",
    "hw_aware_accuracy": "Hardware-aware model accuracy under the nonidealities",
    "joint_accuracy_q": "Joint accuracy at the spec limits (lower quantile over draws)",
    "yield": "Chip yield at the spec limits",
    "fidelity_rms_pct_fs": "Twin vs circuit error on held-out MACs (RMS)",
    "active_nonidealities": "Active nonidealities in the fitted file",
    "signoff_smallest_margin": "Smallest sign-off headroom factor (>= 1 passes)",
    "signoff_failing": "Spec'd quantities failing sign-off",
    "signoff_unverified": "Spec'd quantities not verified (not characterized or comparable)",
}
"""Labels of the fixed headline identifiers."""


def label(name: str) -> str:
    """The readable name of headline ``name`` (the identifier itself when unknown)."""
    if name in LABELS:
        return LABELS[name]
    if name.startswith("tolerable_") and name.endswith("_noise"):
        tap = name.removeprefix("tolerable_").removesuffix("_noise")
        return f"{STAGES.get(tap, tap)} noise limit (joint spec, stage full scale 1 V)"
    if name.startswith("tolerable_") and name.endswith("_mismatch"):
        stage, _, what = name.removeprefix("tolerable_").removesuffix("_mismatch").rpartition("_")
        return f"{STAGES.get(stage, stage)} {what} mismatch limit (joint spec)"
    for prefix, what in (("weight_bits_", "weight bits (fewest meeting the target alone)"),
                         ("tuned_ref_bits_", "weight bits with a tuned reference (grid)"),
                         ("recommended_bits_", "weight bits (recommended)")):  # fmt: skip
        if name.startswith(prefix):
            stage = name.removeprefix(prefix)
            return f"{STAGES.get(stage, stage)} {what}"
    return name


def value_text(value: Any, unit: str, name: str = "") -> str:
    """A headline value with its unit: volts in engineering units (a noise limit is an RMS, a
    mismatch limit (``name`` ``*_mismatch``) a std over chips), relative figures in %, others
    as ``4 significant digits unit``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if not isinstance(value, int | float) or isinstance(value, bool):
        return f"{value} {unit}".strip()
    if unit == "V":
        return f"{volts(float(value))} {'(std)' if name.endswith('_mismatch') else 'RMS'}"
    if unit == "relative":
        return f"{100 * value:.3g} % (std)"
    if unit in ("count", "ratio"):
        return f"{value:.3g}"
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{shown} {unit}".strip()
