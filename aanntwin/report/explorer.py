"""Interactive explorer: one slider per nonideality re-evaluates a trained model on the test set.

``Explorer(model, data)`` builds ipywidgets: :attr:`Explorer.sliders` (name -> FloatSlider, in
:data:`SLIDERS` order, ``continuous_update=False``), :attr:`Explorer.accuracy_label` (an
``ipywidgets.HTML`` reading ``test accuracy 92.00 % ± 0.31 % (mean ± std over 3 runs), loss
0.3265 ...``) and :attr:`Explorer.image` (an ``ipywidgets.Image`` with a PNG of the confusion
matrix and per-stage activation histograms, replaced by new bytes on every change). Display
:attr:`Explorer.widget`. Evaluation goes through :func:`aanntwin.training.evaluate`; a slider at
0 means that nonideality is off. :meth:`Explorer.figure` draws the same view as a Figure for
static reports.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from ..config import Nonidealities, unit
from ..training import EvalResult, evaluate
from . import plots
from .notebook import png_bytes

TAPS = ("input", "conv_out", "relu_out", "linear_out")
"""The stages whose activations are shown (taps of :meth:`Main.forward_until`)."""


def range_markers(nl: Nonidealities, model: Any = None) -> dict[str, list[tuple[str, float]]]:
    """Per tap (``input``, ``conv_out``, ``relu_out``, ``linear_out``), the voltage limits that
    apply there as (label, V): input range and clips, saturation, ReLU cutoff, ADC full scale."""
    marks: dict[str, list[tuple[str, float]]] = {t: [] for t in TAPS}
    if model is not None:
        norm = model.normalize.norm
        marks["input"] += [("input range", norm.min_out), ("input range", norm.max_out)]
    sym = lambda tap, label, v: marks[tap].extend([(label, -v), (label, v)])  # noqa: E731
    if nl.conv2d_input_clip is not None:
        sym("input", "conv input clip", nl.conv2d_input_clip)
    if nl.conv2d_out_saturation is not None:
        sym("conv_out", "conv saturation", nl.conv2d_out_saturation)
    if nl.relu_cutoff is not None:
        marks["conv_out"].append(("ReLU cutoff", nl.relu_cutoff))
        marks["relu_out"].append(("ReLU cutoff", nl.relu_cutoff))
    if nl.relu_out_full_scale is not None:
        marks["relu_out"].append(("ReLU ADC full scale", nl.relu_out_full_scale))
    if nl.linear_input_clip is not None:
        sym("relu_out", "linear input clip", nl.linear_input_clip)
    if nl.linear_out_saturation is not None:
        sym("linear_out", "linear saturation", nl.linear_out_saturation)
    if nl.linear_out_full_scale is not None:
        sym("linear_out", "score ADC full scale", nl.linear_out_full_scale)
    return marks


def activations(model: Any, x: Any, taps: tuple[str, ...] = TAPS, seed: int = 0) -> dict:
    """Per tap, the signal (V) as a flat numpy array, upstream temporal noise included
    (reseeded from ``seed`` per tap, so each tap sees the same draws)."""
    out = {}
    with torch.no_grad():
        for tap in taps:
            model.reseed(seed)
            out[tap] = model.forward_until(x, tap).flatten().cpu().numpy()
    return out


def activations_under(models: dict[str, Any], x: Any, nl: Nonidealities, seed: int = 0) -> dict:
    """:func:`activations` of each model with ``nl`` on (left on), keyed ``"<name> model"``."""
    out = {}
    for name, model in models.items():
        model.set_nonidealities(nl)
        out[f"{name} model"] = activations(model, x, seed=seed)
    return out


@dataclass(frozen=True)
class SliderSpec:
    """One slider: the Nonidealities field, its label and range (in the field's unit)."""

    name: str
    label: str
    max: float
    step: float
    min: float = 0.0
    note: str = ""
    """Shown after the unit, e.g. ``0 = off``."""

    @property
    def description(self) -> str:
        """The label with the field's unit (:func:`aanntwin.config.unit`) and note."""
        return f"{self.label} ({', '.join(filter(None, (unit(self.name), self.note)))})"


SLIDERS = (
    SliderSpec("input_noise", "input noise σ", 1.0, 0.05),
    SliderSpec("conv2d_out_noise", "conv out noise σ", 1.0, 0.05),
    SliderSpec("relu_out_noise", "ReLU out noise σ", 1.0, 0.05),
    SliderSpec("linear_out_noise", "linear out noise σ", 1.0, 0.05),
    SliderSpec("relu_cutoff", "ReLU cutoff", 0.5, 0.05, -0.5),
    SliderSpec("conv2d_input_clip", "conv input clip", 3.0, 0.1, note="0 = off"),
    SliderSpec("conv2d_gain_mismatch", "conv gain mismatch σ", 0.5, 0.01),
    SliderSpec("linear_gain_mismatch", "linear gain mismatch σ", 0.5, 0.01),
)
"""The sliders, in display order (``input_noise`` first)."""


def accuracy_text(result: EvalResult) -> str:
    """The label text: accuracy, its std over runs and the loss (changes with any draw)."""
    return (
        f"<b>test accuracy {100 * result.accuracy:.2f} % ± {100 * result.accuracy_std:.2f} %</b>"
        f" (mean ± std over {result.runs} runs of {result.n} images), "
        f"loss {result.loss:.4f} ± {result.loss_std:.4f}"
    )


class Explorer:
    """Sliders over the nonidealities of a copy of ``model``, evaluated on ``data``'s test set.

    Args:
        model: a trained :class:`~aanntwin.model.Main` (not modified: a copy is used).
        data: a :class:`~aanntwin.data.Dataset` (its test split is used).
        runs: noise draws per evaluation (mean ± std).
        base: nonidealities held on besides the sliders (default: none); sliders start at its
            values.
        seed: seed of the evaluation noise (same settings, same numbers).
        chip_seed: chip instance of the mismatch draw.
        hist_images: test images whose activations are histogrammed.
        dpi: resolution of the rendered PNG.
    """

    def __init__(
        self,
        model: Any,
        data: Any,
        runs: int = 3,
        base: Nonidealities | None = None,
        seed: int = 0,
        chip_seed: int = 0,
        hist_images: int = 1000,
        dpi: int = 80,
    ) -> None:
        import ipywidgets as w  # optional dependency (the notebooks extra): imported where used

        self.model = copy.deepcopy(model)
        self.x, self.y = data.x_test, data.y_test
        self.runs, self.seed, self.dpi = runs, seed, dpi
        self.base = (base or Nonidealities()).replace(chip_seed=chip_seed)
        self.hist_images = hist_images
        self.sliders: dict[str, Any] = {}
        for s in SLIDERS:
            start = getattr(self.base, s.name) or 0.0
            self.sliders[s.name] = w.FloatSlider(
                value=min(max(start, s.min), s.max), min=s.min, max=s.max, step=s.step,
                description=s.description, continuous_update=False, readout_format=".2f",
                style={"description_width": "15em"}, layout=w.Layout(width="32em"),
            )  # fmt: skip
            self.sliders[s.name].observe(self._changed, names="value")
        self.accuracy_label = w.HTML(value="test accuracy: not evaluated yet")
        self.accuracy_label.add_class("aanntwin-accuracy")
        self.image = w.Image(format="png")
        self.image.add_class("aanntwin-plot")
        self.image.layout = w.Layout(max_width="100%")
        self.widget = w.VBox([w.VBox(list(self.sliders.values())), self.accuracy_label, self.image])
        self.result: EvalResult | None = None
        self.update()

    def nonidealities(self) -> Nonidealities:
        """The base nonidealities with the slider values (0 = off for sigmas and the clip)."""
        changes: dict[str, Any] = {}
        for name, slider in self.sliders.items():
            value = round(float(slider.value), 10)
            changes[name] = None if value == 0 else value
        return self.base.replace(**changes)

    def evaluate(self, nl: Nonidealities | None = None) -> EvalResult:
        """Accuracy of the model under ``nl`` (default: the sliders' setting)."""
        self.model.set_nonidealities(nl or self.nonidealities())
        return evaluate(self.model, self.x, self.y, runs=self.runs, seed=self.seed)

    def figure(self, nl: Nonidealities | None = None, result: EvalResult | None = None) -> Any:
        """Confusion matrix and per-stage activation histograms under ``nl`` as a Figure."""
        nl = nl or self.nonidealities()
        result = result or self.evaluate(nl)
        self.model.set_nonidealities(nl)
        acts = activations(self.model, self.x[: self.hist_images], TAPS, self.seed)
        on = ", ".join(f"{k} {v:g}" for k, v in nl.active().items() if isinstance(v, float))
        title = (f"accuracy {100 * result.accuracy:.2f} % ± {100 * result.accuracy_std:.2f} % "
                 f"over {result.runs} runs; on: {on or 'nothing (ideal)'}")  # fmt: skip
        return plots.explorer_figure(result.confusion, acts, range_markers(nl, self.model), title)

    def update(self) -> EvalResult:
        """Re-evaluate with the current slider values; refresh the label and the image."""
        nl = self.nonidealities()
        result = self.evaluate(nl)
        self.result = result
        self.accuracy_label.value = accuracy_text(result)
        self.image.value = png_bytes(self.figure(nl, result), self.dpi)
        return result

    def _changed(self, change: dict[str, Any]) -> None:
        try:
            self.update()
        except Exception as exc:  # noqa: BLE001 - show it where the user looks, keep the widget
            self.accuracy_label.value = f"<b>test accuracy: error</b> ({type(exc).__name__}: {exc})"
