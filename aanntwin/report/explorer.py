"""Interactive explorer: a control per kind of nonideality re-evaluates a trained model.

``Explorer(model, data, base=ctx.nonidealities)`` builds ipywidgets: :attr:`Explorer.controls`
(control key -> widget, from :func:`~aanntwin.report.explorer_controls.control_specs`: sliders
over spec-scale values with an ``off`` position, a chip-seed box, the saturation shape and the
weight zero level), grouped in tabs per part of the signal chain (input, conv stage, ReLU, final
stage, chip / shared), starting from ``base`` (the parameters' nonidealities, so the header and
the controls agree); "reset to parameters" and "all off" buttons; :attr:`Explorer.accuracy_label`
(an ``ipywidgets.HTML`` reading ``test accuracy 92.00 % ± 0.31 % (mean ± std over 3 runs) ...``),
:attr:`Explorer.image` (PNG: confusion matrix and per-stage activation histograms) and
:attr:`Explorer.transfer_image` (PNG: each stage's transfer curve from the layers' own code,
:mod:`~aanntwin.report.transfer`), both re-rendered on every change. Display
:attr:`Explorer.widget`. Evaluation goes through :func:`aanntwin.training.evaluate` on the
model's device. :meth:`Explorer.figure` and :meth:`Explorer.transfer_figure` draw the same views
as Figures for static reports.
"""

from __future__ import annotations

import copy
import hashlib
import time
from typing import Any

import torch

from ..config import Nonidealities
from ..training import EvalResult, evaluate
from . import plots
from .explorer_controls import ControlSpec, apply, control_specs
from .notebook import png_bytes
from .transfer import transfer_curves

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


def accuracy_text(result: EvalResult) -> str:
    """The label text: accuracy, its std over runs and the loss (changes with any draw)."""
    return (
        f"<b>test accuracy {100 * result.accuracy:.2f} % ± {100 * result.accuracy_std:.2f} %</b>"
        f" (mean ± std over {result.runs} runs of {result.n} images), "
        f"loss {result.loss:.4f} ± {result.loss_std:.4f}"
    )


def label_of(spec: ControlSpec, value: Any) -> str:
    """The option label of ``value`` in a ``select`` or ``choice`` control."""
    for label, v in spec.options:
        if v == value and type(v) is type(value):
            return label
    raise KeyError(f"{spec.key}: {value!r} is not among its options")


def _widget(w: Any, spec: ControlSpec, value: Any) -> Any:
    """The ipywidget of one control, at ``value``; CSS class ``aanntwin-control-<key>``."""
    common = {"description": spec.label, "style": {"description_width": "24em"},
              "layout": w.Layout(width="44em")}  # fmt: skip
    if spec.kind == "select":
        labels = [label for label, _ in spec.options]
        widget = w.SelectionSlider(options=labels, value=label_of(spec, value),
                                   continuous_update=False, **common)  # fmt: skip
    elif spec.kind == "choice":
        widget = w.Dropdown(options=[label for label, _ in spec.options],
                            value=label_of(spec, value), **common)  # fmt: skip
    elif spec.kind == "seed":
        widget = w.BoundedIntText(value=value, min=0, max=2**53 - 1, **common)
    elif spec.kind == "bool":
        widget = w.Checkbox(value=bool(value), **common)
    else:
        raise ValueError(f"{spec.key}: unknown control kind {spec.kind!r}")
    widget.add_class(f"aanntwin-control-{spec.key}")
    return widget


class Explorer:
    """Controls over the nonidealities of a copy of ``model``, evaluated on ``data``'s test set.

    Args:
        model: a trained :class:`~aanntwin.model.Main` (not modified: a copy is used; it stays
            on the model's device, where ``data`` must be too).
        data: a :class:`~aanntwin.data.Dataset` (its test split is used).
        runs: noise draws per evaluation (mean ± std).
        base: the nonidealities the controls start from (the parameters'; default: all off).
        seed: seed of the evaluation noise (same settings, same numbers).
        chip_seed: chip instance of the mismatch draw (default: ``base.chip_seed``).
        hist_images: test images whose activations are histogrammed.
        dpi: resolution of the rendered PNGs.
    """

    def __init__(
        self,
        model: Any,
        data: Any,
        runs: int = 3,
        base: Nonidealities | None = None,
        seed: int = 0,
        chip_seed: int | None = None,
        hist_images: int = 1000,
        dpi: int = 80,
    ) -> None:
        import ipywidgets as w  # optional dependency (the notebooks extra): imported where used

        self.model = copy.deepcopy(model)
        self.x, self.y = data.x_test, data.y_test
        self.runs, self.seed, self.dpi = runs, seed, dpi
        base = base or Nonidealities()
        self.base = base if chip_seed is None else base.replace(chip_seed=chip_seed)
        self.origin = self.base
        """What fields and coefficients without a control are taken from (see :meth:`all_off`)."""
        self.hist_images = hist_images
        self.sections = control_specs(self.base)
        self.specs = {s.key: s for specs in self.sections.values() for s in specs}
        self.controls = {k: _widget(w, s, s.value_of(self.base)) for k, s in self.specs.items()}
        for control in self.controls.values():
            control.observe(self._changed, names="value")
        self._quiet = False
        tabs = w.Tab(children=[w.VBox([self.controls[s.key] for s in specs])
                               for specs in self.sections.values()])  # fmt: skip
        tabs.titles = tuple(self.sections)
        reset, off = w.Button(description="reset to parameters"), w.Button(description="all off")
        reset.on_click(lambda _: self.reset())
        off.on_click(lambda _: self.all_off())
        self.accuracy_label = w.HTML(value="test accuracy: not evaluated yet")
        self.accuracy_label.add_class("aanntwin-accuracy")
        self.image, self.transfer_image = w.Image(format="png"), w.Image(format="png")
        for image, name in ((self.image, "plot"), (self.transfer_image, "transfer")):
            image.add_class(f"aanntwin-{name}")
            image.layout = w.Layout(max_width="100%")
        self.widget = w.VBox([tabs, w.HBox([reset, off]), self.accuracy_label, self.image,
                              self.transfer_image])  # fmt: skip
        self.result: EvalResult | None = None
        self.seconds = self.render_seconds = 0.0
        """Wall time of the last :meth:`update` (s): evaluation up to the label, then renders."""
        self._transfer_key = ""
        self.update()

    def value(self, key: str) -> Any:
        """The value control ``key`` stands at (None: off)."""
        spec, widget = self.specs[key], self.controls[key]
        if spec.kind in ("select", "choice"):
            return dict(spec.options)[widget.value]
        return widget.value

    def set_value(self, key: str, value: Any) -> None:
        """Move control ``key`` to ``value`` (added to a slider's options when missing)."""
        spec = self.specs[key].with_value(value)
        widget = self.controls[key]
        if spec.kind in ("select", "choice"):
            if spec != self.specs[key]:
                self.specs[key] = spec
                with widget.hold_trait_notifications():
                    widget.options = [label for label, _ in spec.options]
            widget.value = label_of(spec, value)
        else:
            widget.value = value

    def nonidealities(self) -> Nonidealities:
        """The nonidealities the controls stand at (ConfigError for a combination the circuit
        model rejects, e.g. ADC bits without a full scale)."""
        return apply(self.origin, {self.specs[k]: self.value(k) for k in self.controls})

    def set_nonidealities(self, nl: Nonidealities) -> EvalResult | None:
        """Move every control to ``nl``'s value (one re-evaluation at the end)."""
        self._quiet = True
        try:
            self.origin = nl
            for key, spec in self.specs.items():
                self.set_value(key, spec.value_of(nl))
        finally:
            self._quiet = False
        return self._safe_update()

    def reset(self) -> EvalResult | None:
        """Back to the parameters' nonidealities (``base``)."""
        return self.set_nonidealities(self.base)

    def all_off(self) -> EvalResult | None:
        """Every nonideality off (the ideal circuit), the chip seed kept."""
        return self.set_nonidealities(Nonidealities(chip_seed=self.value("chip_seed")))

    def evaluate(self, nl: Nonidealities | None = None) -> EvalResult:
        """Accuracy of the model under ``nl`` (default: the controls' setting)."""
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

    def transfer_figure(self, nl: Nonidealities | None = None) -> Any:
        """Each stage's transfer curve under ``nl`` (default: the controls') against the ideal."""
        self.model.set_nonidealities(nl or self.nonidealities())
        return plots.transfer_curves(transfer_curves(self.model))

    def update(self) -> EvalResult:
        """Re-evaluate with the current control values; refresh the label first, then the
        histogram image, then the transfer image (only when a curve changed: noise, mismatch
        and the chip seed leave the curves as they are)."""
        start = time.perf_counter()
        nl = self.nonidealities()
        result = self.evaluate(nl)
        self.result = result
        self.accuracy_label.value = accuracy_text(result)
        self.seconds = time.perf_counter() - start
        self.image.value = png_bytes(self.figure(nl, result), self.dpi)
        curves = transfer_curves(self.model)
        key = hashlib.sha256(b"".join(c.y.tobytes() for c in curves)).hexdigest()
        if key != self._transfer_key:
            self.transfer_image.value = png_bytes(plots.transfer_curves(curves), self.dpi)
            self._transfer_key = key
        self.render_seconds = time.perf_counter() - start - self.seconds
        return result

    def _safe_update(self) -> EvalResult | None:
        try:
            return self.update()
        except Exception as exc:  # noqa: BLE001 - show it where the user looks, keep the widget
            self.accuracy_label.value = f"<b>test accuracy: error</b> ({type(exc).__name__}: {exc})"
            return None

    def _changed(self, change: dict[str, Any]) -> None:
        if not self._quiet:
            self._safe_update()
