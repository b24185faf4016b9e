"""Transfer curves of each stage of a configured model, computed by its own layers.

Each curve sweeps one stage's input and passes it through the layer code the forward pass uses
(the input DAC, :meth:`~aanntwin.layers._AnalogMAC.input_transfer`,
:meth:`~aanntwin.layers._AnalogMAC.effective_weight`, the MAC output path
(:meth:`~aanntwin.layers._AnalogMAC.output_transfer`, then its ADC), :meth:`AnalogReLU.core` and
its ADC), with temporal noise and per-element mismatch left out (they are not one curve). The
ideal is the identity, or ``max(0, y)`` for the ReLU. Volts in and out; weights in weight units.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import functional as AF
from ..layers import AnalogLinear

POINTS = 801
"""Points per swept curve."""


@dataclass(frozen=True)
class Curve:
    """One stage's transfer: ``y`` (the twin) and ``ideal`` against the swept ``x``."""

    stage: str
    title: str
    xlabel: str
    ylabel: str
    x: np.ndarray
    y: np.ndarray
    ideal: np.ndarray


def _sweep(lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    return torch.linspace(lo, hi, POINTS, dtype=like.dtype, device=like.device)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().flatten().cpu().numpy()


def _probe(stage: Any, **off: Any) -> AnalogLinear:
    """A 1x1 stage with ``stage``'s settings, ``off`` replaced: its layer code without shapes.
    Its weight is on the meta device (never used; no draw from the global generator)."""
    settings = dataclasses.replace(stage.settings, **off)
    return AnalogLinear(1, 1, bias=False, settings=settings, device="meta")


def _mac_curves(stage: Any, name: str, x_in: torch.Tensor) -> list[Curve]:
    """Input transfer (clip, polynomial), weight transfer and MAC output path of one stage."""
    s = stage.settings
    y_in = stage.input_transfer(x_in)  # the stage's own input path (elementwise)
    w = stage.weight.detach()
    w_top = s.weight_range if s.weight_range is not None else float(w.abs().max())
    clipped = w.clamp(-s.weight_range, s.weight_range) if s.weight_range is not None else w
    ref = s.weight_ref if s.weight_ref is not None else float(clipped.abs().max())  # its default
    probe = _probe(stage, weight_ref=ref if s.weight_bits is not None else None)
    ws = torch.linspace(-1.25 * w_top, 1.25 * w_top, POINTS).view(-1, 1)
    with torch.no_grad():
        w_eff = probe.effective_weight(ws)
    limits = [v for v in (s.out_saturation, s.out_full_scale) if v is not None]
    span = 1.5 * max([2.0, *limits])
    sums = torch.linspace(-span, span, POINTS)
    quiet = _probe(stage, gain_mismatch=None, offset_mismatch=None, out_noise=None)
    # saturation, then the ADC where the stage has one
    out = quiet.finish(quiet.output_transfer(sums))
    return [
        Curve(name, "input range and polynomial", "stage input (V)",
              "multiplier input (V)", _np(x_in), _np(y_in), _np(x_in)),
        Curve(name, "weight transfer", "programmed weight (weight units)",
              "effective weight (weight units)", _np(ws), _np(w_eff), _np(ws)),
        Curve(name, "MAC output" + (" and ADC" if s.out_bits else ""),
              "ideal weighted sum (V)", "MAC output (V)", _np(sums), _np(out), _np(sums)),
    ]  # fmt: skip


def transfer_curves(model: Any) -> list[Curve]:
    """Every stage's transfer curves of ``model`` (a :class:`~aanntwin.model.Main` with its
    nonidealities set), in signal order: input DAC, conv stage, ReLU, final stage."""
    like = model.conv.weight.detach()
    norm = model.normalize.norm
    with torch.no_grad():
        top = max(abs(norm.min_out), abs(norm.max_out))
        x = _sweep(-1.25 * top, 1.25 * top, like)
        dac = model.dac(x)
        conv_in = 1.25 * max(2.0, model.conv.settings.input_clip or 0.0)
        conv = _mac_curves(model.conv, "conv stage", _sweep(-conv_in, conv_in, like))
        relu = model.relu
        knee = [v for v in (relu.cutoff, relu.threshold) if v is not None]
        fs = relu.adc.hi if relu.adc.bits is not None else 2.0
        ys = _sweep(min([-1.0, *(k - 0.5 for k in knee)]), 1.25 * max(2.0, fs), like)
        r = relu.adc(relu.core(ys))  # the circuit without its temporal noise
        lin_in = 1.25 * max(2.0, model.linear.settings.input_clip or 0.0)
        final = _mac_curves(model.linear, "final stage", _sweep(-lin_in, lin_in, like))
    return [
        Curve("input", "DAC", "input voltage (V)", "DAC output (V)", _np(x), _np(dac),
              _np(x)),
        *conv,
        Curve("ReLU", "cutoff, gain, knee and ADC", "ReLU input (V)", "ReLU output (V)",
              _np(ys), _np(r), _np(AF.analog_relu(ys))),
        *final,
    ]  # fmt: skip
