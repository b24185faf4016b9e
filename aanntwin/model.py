"""The Main network (DESIGN.md §1): geometry checks, hardware counts, named weights.

``Normalize -> [DAC] -> input noise -> AnalogConv2d -> AnalogReLU -> MaxPool -> Flatten
-> [hidden AnalogLinear -> AnalogReLU]* -> AnalogLinear -> class scores``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Callable

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor

from . import functional as AF
from .config import (
    MISMATCH_FIELDS,
    TEMPORAL_NOISE,
    ModelParams,
    Nonidealities,
    Normalization,
    StageSettings,
)
from .errors import AanntwinError
from .geometry import Geometry, StageCount, geometry  # noqa: F401 (re-exported)
from .io import write_bytes_atomic
from .layers import (
    AnalogConv2d,
    AnalogLinear,
    AnalogReLU,
    Noise,
    Normalize,
    Quantize,
)
from .seeds import NoiseSource, derive_seed

NOISE_AFTER = {f.replace("conv2d", "conv").removesuffix("_noise"): f for f in TEMPORAL_NOISE}
"""The temporal-noise field (V, std) drawn first after each tap (``input``: ``input_noise``,
``conv_out``: ``conv2d_out_noise`` ...; :data:`~aanntwin.config.TEMPORAL_NOISE`):
``forward_from(h, tap)`` starts with that draw (taps ``features`` and ``linear_in`` have none)."""


def weight_bound(settings: StageSettings) -> float | None:
    """The largest ``|w|`` a stage can be programmed to (weight units; None: unlimited):
    ``min(weight_range, weight_ref)``, ``weight_ref`` only when weights are quantized
    (``weight_bits``) with a fixed reference. Training projects onto it
    (:meth:`Main.project_weights`); normalization and export keep weights inside it."""
    ref = settings.weight_ref if settings.weight_bits is not None else None
    bounds = [float(b) for b in (settings.weight_range, ref) if b is not None]
    return min(bounds) if bounds else None


class Main(nn.Module):
    """The analog CNN twin. Weights are ``conv.*``, ``hidden{i}.*``, ``linear.*``.

    Args:
        params: geometry.
        in_shape: input ``(C, H, W)``.
        n_classes: number of class scores.
        nonidealities: circuit nonidealities (default: all off).
        normalization: pixel-to-voltage map.
        noise_seed: seed of the temporal-noise generator (see :meth:`reseed`).
    """

    def __init__(
        self,
        params: ModelParams | None = None,
        in_shape: tuple[int, int, int] = (1, 28, 28),
        n_classes: int = 10,
        nonidealities: Nonidealities | None = None,
        normalization: Normalization | None = None,
        noise_seed: int = 0,
    ) -> None:
        super().__init__()
        self.params = params or ModelParams()
        self.in_shape = tuple(in_shape)
        self.n_classes = n_classes
        self.geometry = geometry(self.params, self.in_shape, n_classes)  # validates first
        self.noise_source = NoiseSource(noise_seed)
        rng = self.noise_source
        p = self.params
        self.normalize = Normalize(normalization)
        self.dac = Quantize()
        self.input_noise = Noise(None, rng)
        self.conv = AnalogConv2d(
            in_shape[0], p.channels, p.kernel, p.stride, p.padding, in_size=in_shape[1:], rng=rng
        )
        self.relu = AnalogReLU(rng=rng)
        self.pool = nn.MaxPool2d(p.pool) if p.pool > 1 else nn.Identity()
        self.flatten = nn.Flatten()
        self.hidden_names: list[str] = []
        fan_in = self.geometry.features
        for i, width in enumerate(p.hidden):
            self.add_module(f"hidden{i}", AnalogLinear(fan_in, width, rng=rng))
            self.add_module(f"hidden{i}_relu", AnalogReLU(rng=rng))
            self.hidden_names.append(f"hidden{i}")
            fan_in = width
        self.linear = AnalogLinear(fan_in, n_classes, rng=rng)
        self.set_nonidealities(nonidealities or Nonidealities())

    # ----------------------------------------------------------------- configuration
    def stage_names(self) -> list[str]:
        """Names of the MAC stages in signal order: ``conv``, ``hidden0`` ..., ``linear``."""
        return ["conv", *self.hidden_names, "linear"]

    def mac_stages(self) -> list[AnalogConv2d | AnalogLinear]:
        """The MAC stages in the order of :meth:`stage_names`."""
        return [getattr(self, n) for n in self.stage_names()]

    def relus(self) -> list[AnalogReLU]:
        """The ReLU circuits in signal order: ``relu``, ``hidden0_relu`` ..."""
        return [self.relu, *(getattr(self, f"{n}_relu") for n in self.hidden_names)]

    def set_nonidealities(self, nl: Nonidealities) -> None:
        """Switch nonidealities; weights are kept. Mismatch is (re)drawn from ``nl.chip_seed``."""
        self.nonidealities = nl
        norm = self.normalize.norm
        self.dac.bits, self.dac.lo, self.dac.hi = nl.input_bits, norm.min_out, norm.max_out
        self.input_noise.sigma = nl.input_noise
        self.conv.configure(nl.stage("conv2d"))
        hidden = dataclasses.replace(nl.stage("linear"), out_bits=None, out_full_scale=None)
        for name in self.hidden_names:
            getattr(self, name).configure(hidden)
        self.linear.configure(nl.stage("linear"))
        for relu in self.relus():
            relu.cutoff = nl.relu_cutoff
            relu.gain, relu.threshold = nl.relu_gain, nl.relu_threshold
            relu.softness = nl.relu_softness
            relu.noise.sigma = nl.relu_out_noise
            relu.adc.bits, relu.adc.hi = nl.relu_out_bits, nl.relu_out_full_scale or 1.0
        if self.has_mismatch():
            self.draw_mismatch(nl.chip_seed)

    def has_mismatch(self) -> bool:
        """Whether any fixed-pattern mismatch field is on (a chip must be drawn)."""
        return any(getattr(self.nonidealities, f) for f in MISMATCH_FIELDS)

    def draw_mismatch(self, chip_seed: int) -> None:
        """Draw a chip instance: fixed-pattern errors of every stage from one seed."""
        for i, stage in enumerate(self.mac_stages()):
            stage.draw_mismatch(derive_seed(chip_seed, "mismatch", i))

    def reseed(self, seed: int) -> None:
        """Restart the temporal-noise stream: the same seed repeats the same noisy forward."""
        self.noise_source.reseed(seed)

    def without_temporal_noise(self) -> Main:
        """A deep copy with every temporal noise off (the :data:`~aanntwin.config.TEMPORAL_NOISE`
        fields None); weights, the drawn chip and every other setting are kept as they are (no
        redraw), and ``self`` is untouched."""
        quiet = copy.deepcopy(self)
        quiet.nonidealities = self.nonidealities.replace(**dict.fromkeys(TEMPORAL_NOISE))
        quiet.input_noise.sigma = None
        for relu in quiet.relus():
            relu.noise.sigma = None
        for stage in quiet.mac_stages():
            stage.configure(dataclasses.replace(stage.settings, out_noise=None))
        return quiet

    # ----------------------------------------------------------------- forward
    def _steps(self) -> list[tuple[str | None, Callable[[Tensor], Tensor] | None]]:
        """The signal chain as (tap, step) pairs; a tap names the value after its step."""
        steps: list[tuple[str | None, Callable[[Tensor], Tensor] | None]] = [
            ("input", lambda x: self.dac(self.normalize(x))),
            (None, self.input_noise),
            ("conv_out", self.conv.mac),
            (None, self.conv.finish),
            ("relu_out", self.relu.core),
            (None, self.relu.finish),
            ("features", lambda r: self.flatten(self.pool(r))),
        ]
        for name in self.hidden_names:
            stage, relu = getattr(self, name), getattr(self, f"{name}_relu")
            steps += [(None, stage), (None, relu)]
        steps += [("linear_in", None), ("linear_out", self.linear.mac), (None, self.linear.finish)]
        return steps

    def _reusing(self) -> set[Callable[..., Tensor]]:
        """The steps taking ``reuse=True``: those that may write into a handed-over input."""
        return {self.conv.mac, self.relu.core, self.linear.mac}

    def _run(self, h: Tensor, start: str | None, stop: str | None, owned: bool = False) -> Tensor:
        """The steps from tap ``start`` to tap ``stop`` (None: the ends). ``owned``: ``h`` is a
        buffer of this pass (else the caller's, never written). A step's fresh output belongs to
        the pass, and the steps that can (:meth:`_reusing`) write into such a buffer: fewer
        buffers, the same numbers."""
        steps = self._steps()
        named = start is not None or stop is not None
        names = [t for t, _ in steps if t] if named else []  # checked only when a tap is named
        for tap in (start, stop):
            if tap is not None and tap not in names:
                raise ValueError(f"unknown tap {tap!r}; taps: {', '.join(names)}")
        running = start is None
        reusing = self._reusing()
        for tap, step in steps:
            if running and step is not None:
                reuse = owned and step in reusing
                out = step(h, reuse=True) if reuse else step(h)  # type: ignore[call-arg]
                # A step returns its input, a view of it, or a fresh tensor (then the pass's).
                owned = owned or out.untyped_storage().data_ptr() != h.untyped_storage().data_ptr()
                h = out
            if tap is not None and tap == stop:
                return h
            if tap is not None and tap == start:
                running = True
        return h

    def forward_until(self, x: Tensor, tap: str) -> Tensor:
        """The noiseless signal at ``tap`` (before that point's temporal noise).

        Taps: ``input`` (input volts), ``conv_out`` (conv MAC outputs), ``relu_out`` (first ReLU
        outputs), ``features`` (after pool and flatten), ``linear_in`` (input of the final
        stage), ``linear_out`` (final MAC outputs). Studies compute a prefix once and vary only
        what follows it.
        """
        return self._run(x, None, tap)

    def forward_from(
        self, h: Tensor, tap: str, *, unit_noise: Tensor | None = None, sigma: float | None = None
    ) -> Tensor:
        """Continue the forward pass from the signal ``h`` at ``tap`` (its noise included).

        ``unit_noise`` (a unit draw of ``h``'s shape): the noise site right after ``tap``
        (:data:`NOISE_AFTER`) adds ``unit_noise * sigma`` (sigma in V;
        :func:`~aanntwin.functional.inject_noise`) instead of drawing; the model's own level of
        that field must be off (ValueError otherwise). Where
        :func:`~aanntwin.functional.injectable` holds this equals the model's own draw at that
        level from the same generator state, bit for bit.
        """
        if unit_noise is not None:
            field = NOISE_AFTER.get(tap)
            if field is None or getattr(self.nonidealities, field):
                why = "has no noise site" if field is None else f"draws its own {field}"
                raise ValueError(f"cannot inject noise after tap {tap!r}: the model {why}")
            injected = AF.inject_noise(h, unit_noise, sigma)
            return self._run(injected, tap, None, owned=injected is not h)
        return self._run(h, tap, None)

    def mac_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """One forward pass of ``x``; each MAC stage's ``mac`` output (V: after offset and
        saturation, before its temporal noise and ADC), keyed by :meth:`stage_names`. Noise is
        drawn as set: use :meth:`without_temporal_noise` for the noiseless outputs."""
        stages: dict[object, str] = dict(zip(self.mac_stages(), self.stage_names(), strict=True))
        macs = {stage.mac: name for stage, name in stages.items()}
        out: dict[str, Tensor] = {}
        h = x
        for _, step in self._steps():
            if step in stages:  # a hidden stage is one step: split it at its MAC output
                out[stages[step]] = h = step.mac(h)  # type: ignore[union-attr]
                h = step.finish(h)  # type: ignore[union-attr]
            elif step is not None:
                h = step(h)
                if step in macs:
                    out[macs[step]] = h
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x, None, None)

    # ----------------------------------------------------------------- init and weights
    @torch.no_grad()
    def reset_parameters(self, seed: int) -> None:
        """Default PyTorch init (uniform +-1/sqrt(fan_in)) from an explicit seed, on the CPU
        and then copied, so a seed gives the same weights on every device."""
        gen = torch.Generator().manual_seed(seed)
        for stage in self.mac_stages():
            bound = 1.0 / math.sqrt(stage.weight[0].numel())
            for t in (stage.weight, stage.bias):
                if t is not None:
                    u = torch.rand(t.shape, generator=gen, dtype=torch.float64) * 2 - 1
                    t.copy_(u * bound)

    @torch.no_grad()
    def project_weights(self) -> None:
        """Keep the latent weights programmable: clamp each stage's weights in place to
        ``+-min(weight_range, weight_ref)`` (weight units; ``weight_ref`` only when a fixed
        reference is quantized with). Called after every optimizer step, so no trained weight
        lies where the circuit cannot be programmed or was never characterized. Bounds are
        Python numbers: no host sync, any device."""
        for stage in self.mac_stages():
            bound = weight_bound(stage.settings)
            if bound is not None:
                stage.weight.clamp_(-bound, bound)

    def weight_bounds(self, nl: Nonidealities | None = None) -> dict[str, float | None]:
        """Per stage name, the largest programmable ``|w|`` (:func:`weight_bound`, weight units;
        None: unlimited): under the stages' present settings, or under ``nl`` (conv stage from
        its ``conv2d_*`` fields, hidden and final stages from ``linear_*``, as
        :meth:`set_nonidealities`) without changing the model."""
        if nl is None:
            return {n: weight_bound(getattr(self, n).settings) for n in self.stage_names()}
        conv, rest = weight_bound(nl.stage("conv2d")), weight_bound(nl.stage("linear"))
        return {n: conv if n == "conv" else rest for n in self.stage_names()}

    def extra_repr(self) -> str:
        g = self.geometry
        return f"in_shape={self.in_shape}, macs={g.macs}, multipliers={g.multipliers}"


WEIGHTS_FILE = "weights.safetensors"


def save_weights(model: Main, path: str | os.PathLike[str], metadata: dict | None = None) -> None:
    """Write the named weights (``conv.weight`` ...) as safetensors, atomically; the same weights
    and metadata give the same bytes."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # One metadata entry: safetensors writes its metadata map in no fixed order, so several
    # entries made identical weights into files of different bytes.
    meta = {
        "aanntwin": json.dumps({"format": "aanntwin-weights", **(metadata or {})}, sort_keys=True)
    }
    # serialized in memory and written by us: save_file ignores a failed write (disk full)
    write_bytes_atomic(path, save(tensors, metadata=meta))


def load_weights(model: Main, path: str | os.PathLike[str]) -> None:
    """Load named weights into ``model``; its nonidealities are left as they are.

    Missing, extra or wrongly shaped tensors are an error naming the file and the key.
    """
    try:
        tensors = load_file(os.fspath(path))
    except FileNotFoundError:
        raise AanntwinError(f"{path}: weights file not found") from None
    except (SafetensorError, OSError) as exc:
        raise AanntwinError(f"{path}: not a readable safetensors file ({exc})") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise AanntwinError(
            f"{path}: weights do not match the model geometry (missing {missing}, unexpected {extra})"
        )
    for key, value in tensors.items():
        if value.shape != own[key].shape:
            raise AanntwinError(
                f"{path}: {key} has shape {tuple(value.shape)}, the model needs {tuple(own[key].shape)}"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise AanntwinError(
                f"{path}: {key} has {bad} non-finite value(s) (NaN or inf); weights must be finite"
            )
    model.load_state_dict(tensors)
