"""Analog circuit layers: thin ``nn.Module`` wrappers over :mod:`aanntwin.functional`.

Stage order inside a MAC stage (conv or linear), as the signal flows through the circuit::

    x -> clip(+-input_clip) -> p(x) or table -> MAC with effective weights -> + bias -> + offset mismatch
      -> saturation -> + N(0, out_noise) [-> ADC, final stage only]

Effective weight = quantize(w) * (1 + gain mismatch of each physical multiplier). Scalar settings
are Python numbers (device- and dtype-free); mismatch draws are non-persistent buffers, so they
move with ``.to()`` and stay out of the saved weights. Temporal noise is drawn from a
:class:`~aanntwin.seeds.NoiseSource` shared by the network, so an evaluation is reproducible from its seed.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import functional as AF
from .config import Normalization, StageSettings, unit
from .seeds import NoiseSource


def _off(sigma: float | Tensor | None) -> bool:
    """A noise level that adds nothing: None or 0 (a tensor of levels is always applied)."""
    return sigma is None or (not isinstance(sigma, Tensor) and sigma == 0)


def _fmt(value: object, unit: str) -> str:
    return f"{value:g} {unit}".strip() if isinstance(value, float) else f"{value} {unit}".strip()


class Normalize(nn.Module):
    """Pixel values to input voltages (see :class:`~aanntwin.config.Normalization`)."""

    def __init__(self, norm: Normalization | None = None) -> None:
        super().__init__()
        self.norm = norm or Normalization()

    def forward(self, x: Tensor) -> Tensor:
        n = self.norm
        if n.is_identity:
            return x
        return AF.normalize(x, n.min_in, n.max_in, n.min_out, n.max_out)

    def extra_repr(self) -> str:
        n = self.norm
        return f"[{n.min_in:g}, {n.max_in:g}] -> [{n.min_out:g} V, {n.max_out:g} V]"


class Noise(nn.Module):
    """Additive Gaussian temporal noise ``x + N(0, sigma^2)``, redrawn every forward (sigma in V)."""

    def __init__(self, sigma: float | None = None, rng: NoiseSource | None = None) -> None:
        super().__init__()
        self.sigma = sigma
        self.rng = rng or NoiseSource()

    def forward(self, x: Tensor) -> Tensor:
        if _off(self.sigma):
            return x
        return AF.gaussian_noise(x, self.sigma, self.rng.generator(x.device))

    def extra_repr(self) -> str:
        if isinstance(self.sigma, Tensor):
            return f"sigma=<{tuple(self.sigma.shape)} tensor> V"
        return "sigma=off" if self.sigma is None else f"sigma={_fmt(self.sigma, 'V')}"


class Quantize(nn.Module):
    """ADC/DAC with ``2**bits`` levels over ``[lo, hi]`` volts (``bits=None``: ideal)."""

    def __init__(self, bits: int | None = None, lo: float = 0.0, hi: float = 1.0) -> None:
        super().__init__()
        self.bits, self.lo, self.hi = bits, lo, hi

    def forward(self, x: Tensor) -> Tensor:
        if self.bits is None:
            return x
        return AF.quantize_uniform(x, self.bits, self.lo, self.hi)

    def extra_repr(self) -> str:
        if self.bits is None:
            return "bits=off"
        return f"bits={self.bits}, range=[{self.lo:g} V, {self.hi:g} V]"


class AnalogReLU(nn.Module):
    """ReLU circuit: ``max(cutoff, y) + N(0, out_noise^2)``, then optional ADC ``[0, full scale]``.

    With ``gain``, ``threshold`` or ``softness`` set the core is
    :func:`~aanntwin.functional.soft_relu` (``cutoff + gain * soft max(0, y - threshold)``).
    """

    def __init__(
        self,
        cutoff: float | None = None,
        out_noise: float | None = None,
        out_bits: int | None = None,
        out_full_scale: float | None = None,
        rng: NoiseSource | None = None,
        gain: float | None = None,
        threshold: float | None = None,
        softness: float | None = None,
    ) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.gain, self.threshold, self.softness = gain, threshold, softness
        self.noise = Noise(out_noise, rng)
        self.adc = Quantize(out_bits, 0.0, out_full_scale or 1.0)

    def core(self, y: Tensor, reuse: bool = False) -> Tensor:
        """The noiseless circuit: ``max(cutoff, y)`` (or the soft ReLU, see the class).
        ``reuse``: ``y`` is handed over and may hold the result
        (see :func:`~aanntwin.functional.clip`)."""
        plain = self.threshold is None or self.threshold == (self.cutoff or 0.0)
        if plain and self.gain in (None, 1.0) and self.softness is None:  # max(cutoff, y) exactly
            return AF.analog_relu(y, self.cutoff, reuse)
        return AF.soft_relu(y, self.cutoff, self.gain, self.threshold, self.softness)

    def finish(self, r: Tensor) -> Tensor:
        """Output noise, then the ADC."""
        return self.adc(self.noise(r))

    def forward(self, y: Tensor) -> Tensor:
        return self.finish(self.core(y))

    def extra_repr(self) -> str:
        text = "cutoff=0 V (ideal)" if self.cutoff is None else f"cutoff={_fmt(self.cutoff, 'V')}"
        for name in ("gain", "threshold", "softness"):
            if getattr(self, name) is not None:
                text += f", {name}={_fmt(getattr(self, name), unit(f'relu_{name}'))}"
        return text


def _largest(w: Tensor, dims: int) -> Tensor:
    """Largest |w| over the last ``dims`` dimensions (one value per leading variant), detached."""
    a = w.detach().abs()
    if a.dim() == dims:
        return a.max()
    return a.amax(dim=tuple(range(a.dim() - dims, a.dim())), keepdim=True)


class _AnalogMAC:
    """Shared nonideality handling of a MAC stage; subclasses supply the weighted sum."""

    weight: Tensor
    bias: Tensor | None
    gain_error: Tensor | None
    _input_table: Tensor | None
    _weight_table: Tensor | None
    offset_error: Tensor | None

    def _init_analog(self, settings: StageSettings | None, rng: NoiseSource | None) -> None:
        self.rng = rng or NoiseSource()
        self.register_buffer("gain_error", None, persistent=False)
        self.register_buffer("offset_error", None, persistent=False)
        self.configure(settings or StageSettings())

    def configure(self, settings: StageSettings) -> None:
        """Apply new nonideality settings (weights and drawn mismatch are kept). Transfer tables
        become non-persistent buffers on the weight's device, so forward builds no tensor."""
        self.settings = settings
        like = {"device": self.weight.device, "dtype": self.weight.dtype}
        for name in ("input_table", "weight_table"):
            values = getattr(settings, name)
            table = None if values is None else torch.tensor(values, **like)
            self.register_buffer(f"_{name}", table, persistent=False)

    # Shapes of the per-multiplier gain and per-MAC offset draws.
    def _mismatch_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        raise NotImplementedError

    def draw_mismatch(self, seed: int) -> None:
        """Draw this chip instance's fixed-pattern errors (unit normals, scaled in forward).

        Drawn on the CPU from ``seed`` and copied to the weight's device once, so a chip
        instance is the same on every device.
        """
        gain_shape, offset_shape = self._mismatch_shapes()
        gen = torch.Generator().manual_seed(seed)
        like = {"device": self.weight.device, "dtype": self.weight.dtype}
        if self.weight.device.type == "meta":
            self.gain_error = torch.empty(gain_shape, **like)
            self.offset_error = torch.empty(offset_shape, **like)
            return
        self.gain_error = torch.randn(gain_shape, generator=gen).to(**like)
        self.offset_error = torch.randn(offset_shape, generator=gen).to(**like)

    def input_transfer(self, x: Tensor, reuse: bool = False) -> Tensor:
        """The stage's elementwise input path (V -> V): clip to ``+-input_clip``, then the input
        polynomial ``input_nonlin`` or table ``input_table``; what every multiplier input sees.
        ``reuse``: ``x`` is handed over and may hold the result (see
        :func:`~aanntwin.functional.clip`); each step's own fresh buffer is reused by the next."""
        s = self.settings
        if s.input_clip is not None:
            x, reuse = AF.clip(x, s.input_clip, reuse), True
        if s.input_nonlin is not None:
            x, reuse = AF.polynomial(x, s.input_nonlin, reuse), True
        if self._input_table is not None:  # the table spans +-input_clip (checked in config)
            x = AF.table(x, self._input_table, s.input_clip)
        return x

    def effective_weight(self, weight: Tensor | None = None) -> Tensor:
        """Weights as the multipliers apply them: clipped to the programmable range
        ``+-weight_range`` (the weight DAC cannot program more; gradient of the clip), quantized
        when ``weight_bits`` is set, then through the weight transfer polynomial
        ``weight_nonlin`` or table ``weight_table`` when set.

        ``weight``: programmed values to use instead of the stage's own, of its shape or a stack
        ``(P, *shape)`` of P variants (each quantized against its own largest |w| when
        ``weight_ref`` is None); elementwise, so variant p equals the single-weight result.
        """
        s = self.settings
        w = self.weight if weight is None else weight
        if s.weight_range is not None:
            w = AF.clip(w, s.weight_range)
        if s.weight_bits is not None:
            # Default reference: the largest |w|, kept as a tensor (no host sync in forward).
            ref = s.weight_ref if s.weight_ref is not None else _largest(w, self.weight.dim())
            w = AF.quantize_weights(w, s.weight_bits, ref, s.weight_zero_level)
        if s.weight_nonlin is not None:  # the weight pair's transfer, after the weight DAC
            w = AF.polynomial(w, s.weight_nonlin)
        if self._weight_table is not None:  # spans +-weight_range (checked in config)
            w = AF.table(w, self._weight_table, s.weight_range)
        return w

    def _gain(self) -> Tensor | None:
        sigma = self.settings.gain_mismatch
        if not sigma:
            return None
        if self.gain_error is None:
            raise RuntimeError(
                "gain mismatch is on but no chip was drawn: call draw_mismatch(seed)"
            )
        return self.gain_error * sigma + 1.0

    def output_transfer(self, y: Tensor) -> Tensor:
        """Per-MAC offset, then saturation (everything between the sum and the output noise)."""
        s = self.settings
        if s.offset_mismatch:
            if self.offset_error is None:
                raise RuntimeError(
                    "offset mismatch is on but no chip was drawn: call draw_mismatch"
                )
            y = y + self.offset_error * s.offset_mismatch
        if s.out_saturation is not None:
            y = AF.saturate(y, s.out_saturation, s.saturation)
        return y

    def _weighted_sum(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def mac(self, x: Tensor, reuse: bool = False) -> Tensor:
        """The noiseless MAC output (V): input range and polynomial, weighted sum, offset,
        saturation. ``forward(x) == finish(mac(x))``. ``reuse``: as :meth:`input_transfer`."""
        return self.output_transfer(self._weighted_sum(self.input_transfer(x, reuse)))

    def finish(self, y: Tensor) -> Tensor:
        """Temporal output noise, then the ADC (final stage only)."""
        s = self.settings
        if not _off(s.out_noise):
            y = AF.gaussian_noise(y, s.out_noise, self.rng.generator(y.device))
        if s.out_bits is not None:
            fs = s.out_full_scale or 1.0
            y = AF.quantize_uniform(y, s.out_bits, -fs, fs)
        return y

    def _settings_repr(self) -> str:
        s = self.settings  # units: the Nonidealities metadata (linear_* has every stage setting)
        on = [
            f"{k}={_fmt(getattr(s, k), unit(f'linear_{k}'))}"
            for k in s.__dataclass_fields__
            if getattr(s, k) is not None and k not in ("saturation", "weight_zero_level")
        ]
        if s.out_saturation is not None:
            on.append(f"saturation={s.saturation}")
        return ", ".join(on) or "ideal"


class AnalogConv2d(_AnalogMAC, nn.Conv2d):
    """Convolution stage of analog MACs, fully unrolled: one MAC per output position and channel.

    ``in_size`` (H, W) of the input is needed only for the per-position mismatch draws.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        in_size: tuple[int, int] | None = None,
        settings: StageSettings | None = None,
        rng: NoiseSource | None = None,
        **kwargs: object,
    ) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, **kwargs)
        self.in_size = in_size
        self._init_analog(settings, rng)

    def out_size(self) -> tuple[int, int]:
        if self.in_size is None:
            raise ValueError("AnalogConv2d needs in_size for per-position mismatch")
        k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
        return tuple((n + 2 * p - k) // s + 1 for n in self.in_size)  # type: ignore[return-value]

    def _mismatch_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        ho, wo = self.out_size()
        c, k = self.in_channels, self.kernel_size[0]
        return (self.out_channels, ho, wo, c, k, k), (self.out_channels, ho, wo)

    def _weighted_sum(self, x: Tensor) -> Tensor:
        w = self.effective_weight()
        gain = self._gain()
        if gain is None:
            return F.conv2d(x, w, self.bias, self.stride, self.padding)
        return AF.conv2d_per_position(x, w, self.bias, gain, self.stride[0], self.padding[0])

    def forward(self, x: Tensor) -> Tensor:
        return self.finish(self.mac(x))

    def extra_repr(self) -> str:
        return f"{nn.Conv2d.extra_repr(self)}, {self._settings_repr()}"


class AnalogLinear(_AnalogMAC, nn.Linear):
    """Linear stage of analog MACs: one MAC per output, ``in_features`` multipliers each."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        settings: StageSettings | None = None,
        rng: NoiseSource | None = None,
        **kwargs: object,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, **kwargs)
        self._init_analog(settings, rng)

    def _mismatch_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (self.out_features, self.in_features), (self.out_features,)

    def multiplier_weights(self, weight: Tensor | None = None) -> Tensor:
        """The effective weights times each multiplier's gain mismatch: what the weighted sum
        applies. ``weight``: as :meth:`effective_weight` (a stack of variants allowed)."""
        w = self.effective_weight(weight)
        gain = self._gain()
        return w if gain is None else w * gain

    def _weighted_sum(self, x: Tensor) -> Tensor:
        return F.linear(x, self.multiplier_weights(), self.bias)

    def mac_variants(
        self, x: Tensor, weights: Tensor | None = None, biases: Tensor | None = None
    ) -> Tensor:
        """Noiseless MAC outputs ``(P, N, out)`` (V) of ``x`` for P programmed variants:
        ``weights`` ``(P, out, in)`` and/or ``biases`` ``(P, out)`` (None: the stage's own).

        Output p equals ``mac(x)`` with ``weight = weights[p]``, ``bias = biases[p]`` bit for bit:
        the same operations (one matrix product per variant, as the forward's, then offset and
        saturation per variant); only the input transfer and the weight transform are shared.
        What-if studies (quantization) evaluate many variants without touching the parameters.
        """
        if weights is None and biases is None:
            raise ValueError("mac_variants needs weights and/or biases")
        x = self.input_transfer(x)
        count = len(weights) if weights is not None else len(biases)  # type: ignore[arg-type]
        w = self.multiplier_weights(weights)
        ws = w.unbind(0) if weights is not None else [w] * count
        bs = biases.unbind(0) if biases is not None else [self.bias] * count
        pairs = zip(ws, bs, strict=True)
        return torch.stack([self.output_transfer(F.linear(x, wp, bp)) for wp, bp in pairs])

    def forward(self, x: Tensor) -> Tensor:
        return self.finish(self.mac(x))

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self._settings_repr()}"
