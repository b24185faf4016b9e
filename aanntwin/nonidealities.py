"""Circuit nonidealities: what each analog stage of the chip does to the signal, with units.

:class:`Nonidealities` is the flat, validated record (the reference tool's field names, so its
JSON files load unchanged); :class:`StageSettings` is one MAC stage's view of it. Re-exported by
:mod:`aanntwin.config`, where the run configuration holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .errors import ConfigError
from .schema import Params, load_params, param

STAGES = ("conv2d", "linear")
"""Analog MAC stage kinds. Hidden linear stages use the ``linear_*`` settings (same circuit)."""


def _sigma(unit: str = "V") -> Any:
    return param(None, unit=unit, ge=0.0)


INPUT_POLY = "a_k in V^(1-k)"  # unit of an input-transfer polynomial (constant first)
WEIGHT_POLY = "c_k in 1/w^(k-1)"  # unit of a weight-transfer polynomial (w in weight units)


@dataclass(frozen=True)
class StageSettings:
    """Nonidealities of one analog MAC stage, taken from :class:`Nonidealities` by prefix."""

    input_clip: float | None = None
    input_nonlin: tuple[float, ...] | None = None
    gain_mismatch: float | None = None
    offset_mismatch: float | None = None
    out_saturation: float | None = None
    saturation: str = "hard"
    out_noise: float | None = None
    weight_bits: int | None = None
    weight_ref: float | None = None
    weight_range: float | None = None
    weight_zero_level: bool = True
    weight_nonlin: tuple[float, ...] | None = None
    input_table: tuple[float, ...] | None = None
    weight_table: tuple[float, ...] | None = None
    out_bits: int | None = None
    out_full_scale: float | None = None


@dataclass(frozen=True)
class Nonidealities(Params):
    """Circuit nonidealities; each ``None`` means off (ideal).

    Temporal noise (``*_noise``) is redrawn every forward pass. Fixed-pattern mismatch
    (``*_mismatch``) is drawn once per chip instance from ``chip_seed`` and stays constant.
    Hidden linear stages share the ``linear_*`` and ``relu_*`` settings: they are built from the
    same MAC and ReLU circuits as the final stage.
    """

    section = "nonidealities"

    input_noise: float | None = _sigma()
    """Std of Gaussian noise added to every input voltage, per forward (V)."""
    input_bits: int | None = param(None, unit="bits", ge=1, le=24)
    """Input DAC resolution (bits) over the normalization range [min_out, max_out]."""

    conv2d_input_clip: float | None = param(None, unit="V", gt=0.0)
    """Conv multiplier input range: inputs clip to +-this (V)."""
    conv2d_input_nonlin: tuple[float, ...] | None = param(None, unit=INPUT_POLY)
    """Conv multiplier input polynomial a_0, a_1, ... (constant first; a_k in V^(1-k))."""
    conv2d_input_table: tuple[float, ...] | None = param(None, unit="V", min_len=2)
    """Conv multiplier input transfer as a table (V): its values at n equally spaced inputs from
    -input_clip to +input_clip (needs ``conv2d_input_clip``), joined by straight lines; follows
    any measured curve (flat saturation included) where a polynomial cannot. Replaces
    ``conv2d_input_nonlin`` (set one of the two). None = no table."""
    conv2d_gain_mismatch: float | None = _sigma("relative")
    """Per-multiplier relative gain error std, fixed per chip (1 = 100 %)."""
    conv2d_offset_mismatch: float | None = _sigma()
    """Per-MAC output offset std, fixed per chip (V)."""
    conv2d_out_saturation: float | None = param(None, unit="V", gt=0.0)
    """Conv MAC output swing limit +-this (V), hard or tanh (see ``saturation``)."""
    conv2d_out_noise: float | None = _sigma()
    """Std of Gaussian noise on each conv MAC output, per forward (V)."""
    conv2d_weight_bits: int | None = param(None, unit="bits", ge=0, le=24)
    """Conv weight precision at deployment (bits, not counting sign)."""
    conv2d_weight_ref: float | None = param(None, unit="weight units", gt=0.0)
    """Conv weight reference/clip value; None = the layer's largest |w|."""
    conv2d_weight_range: float | None = param(None, unit="weight units", gt=0.0)
    """Conv programmable weight range: the largest |weight| the multiplier can be programmed to
    (and was characterized over); weights clip to +-this before quantization and training keeps
    them inside it. None = unlimited."""
    conv2d_weight_nonlin: tuple[float, ...] | None = param(None, unit=WEIGHT_POLY)
    """Conv multiplier weight transfer: effective weight = sum_k c_k w^k, ``(c_0, c_1, ...)``
    constant first (c_k in 1/w^(k-1); w in weight units, 1.0 = the weight full scale), applied to
    the programmed (quantized) weight before the gain mismatch. A Gilbert cell's weight pair
    fits ``(0, 1, c2, c3)`` with c3 < 0 (compression). None = linear."""
    conv2d_weight_table: tuple[float, ...] | None = param(None, unit="weight units", min_len=2)
    """Conv multiplier weight transfer as a table: effective weights at n equally spaced
    programmed weights from -weight_range to +weight_range (needs ``conv2d_weight_range``),
    joined by straight lines. Replaces ``conv2d_weight_nonlin`` (set one). None = no table."""

    relu_cutoff: float | None = param(None, unit="V")
    """ReLU circuit floor: output = max(cutoff, y) (V); None = 0."""
    relu_gain: float | None = param(None, unit="V/V", gt=0.0)
    """ReLU circuit gain above the knee (e.g. a current mirror's ratio) (V/V); None = 1."""
    relu_threshold: float | None = param(None, unit="V")
    """ReLU knee: output = cutoff + gain * max(0, y - threshold) (V); None = the cutoff."""
    relu_softness: float | None = param(None, unit="V", gt=0.0)
    """ReLU knee width (V): max(0, u) becomes softness * log(1 + exp(u / softness));
    None = a hard knee."""
    relu_out_noise: float | None = _sigma()
    """Std of Gaussian noise on each ReLU output, per forward (V)."""
    relu_out_bits: int | None = param(None, unit="bits", ge=1, le=24)
    """ADC after each ReLU (bits) over [0, relu_out_full_scale]."""
    relu_out_full_scale: float | None = param(None, unit="V", gt=0.0)
    """Full scale of the ReLU-output ADC (V)."""

    linear_input_clip: float | None = param(None, unit="V", gt=0.0)
    """Linear multiplier input range: inputs clip to +-this (V)."""
    linear_input_nonlin: tuple[float, ...] | None = param(None, unit=INPUT_POLY)
    """Linear multiplier input polynomial a_0, a_1, ... (constant first)."""
    linear_input_table: tuple[float, ...] | None = param(None, unit="V", min_len=2)
    """Linear multiplier input transfer table (as ``conv2d_input_table``; needs
    ``linear_input_clip``)."""
    linear_gain_mismatch: float | None = _sigma("relative")
    """Per-multiplier relative gain error std in linear stages, fixed per chip."""
    linear_offset_mismatch: float | None = _sigma()
    """Per-MAC output offset std in linear stages, fixed per chip (V)."""
    linear_out_saturation: float | None = param(None, unit="V", gt=0.0)
    """Linear MAC output swing limit +-this (V)."""
    linear_out_noise: float | None = _sigma()
    """Std of Gaussian noise on each linear MAC output, per forward (V)."""
    linear_weight_bits: int | None = param(None, unit="bits", ge=0, le=24)
    """Linear weight precision at deployment (bits, not counting sign)."""
    linear_weight_ref: float | None = param(None, unit="weight units", gt=0.0)
    """Linear weight reference/clip value; None = the layer's largest |w|."""
    linear_weight_range: float | None = param(None, unit="weight units", gt=0.0)
    """Linear programmable weight range (as ``conv2d_weight_range``); None = unlimited."""
    linear_weight_nonlin: tuple[float, ...] | None = param(None, unit=WEIGHT_POLY)
    """Linear multiplier weight transfer polynomial (as ``conv2d_weight_nonlin``)."""
    linear_weight_table: tuple[float, ...] | None = param(None, unit="weight units", min_len=2)
    """Linear multiplier weight transfer table (as ``conv2d_weight_table``; needs
    ``linear_weight_range``)."""
    linear_out_bits: int | None = param(None, unit="bits", ge=1, le=24)
    """ADC on the final class scores (bits) over [-full scale, +full scale]."""
    linear_out_full_scale: float | None = param(None, unit="V", gt=0.0)
    """Full scale of the class-score ADC (V)."""

    saturation: Literal["hard", "tanh"] = param("hard", unit="shape")
    """Saturation shape: ``hard`` clip, or ``tanh`` (s * tanh(y / s))."""
    weight_zero_level: bool = param(True, unit="bool")
    """Weight quantizer has a zero level (k * step) or not ((k + 1/2) * step)."""
    chip_seed: int = param(0, unit="seed", ge=0, le=2**63 - 1)
    """Chip instance: seed of the fixed-pattern mismatch draw."""

    def check(self) -> None:
        for stage in STAGES:
            for table, poly, span in (("input_table", "input_nonlin", "input_clip"),
                                      ("weight_table", "weight_nonlin", "weight_range")):  # fmt: skip
                if getattr(self, f"{stage}_{table}") is None:
                    continue
                if getattr(self, f"{stage}_{span}") is None:
                    raise ConfigError(f"nonidealities.{stage}_{table}: needs {stage}_{span} "
                                      "(the table spans -that..+that)")  # fmt: skip
                if getattr(self, f"{stage}_{poly}") is not None:
                    raise ConfigError(f"nonidealities.{stage}_{table} and {stage}_{poly}: both "
                                      "set; they describe the same transfer, set one")  # fmt: skip
            bits = getattr(self, f"{stage}_weight_bits")
            ref = getattr(self, f"{stage}_weight_ref")
            if ref is not None and bits is None:
                raise ConfigError(
                    f"nonidealities.{stage}_weight_ref = {ref}: needs {stage}_weight_bits"
                )
        for prefix in ("relu_out", "linear_out"):
            bits = getattr(self, f"{prefix}_bits")
            if bits is not None and getattr(self, f"{prefix}_full_scale") is None:
                raise ConfigError(
                    f"nonidealities.{prefix}_bits = {bits}: needs {prefix}_full_scale (V)"
                )

    def stage(self, kind: str) -> StageSettings:
        """The settings of one MAC stage kind (``conv2d`` or ``linear``)."""
        if kind not in STAGES:
            raise ValueError(f"unknown stage kind {kind!r}")
        per_stage = {name: getattr(self, f"{kind}_{name}") for name in STAGE_SETTINGS}
        final = kind == "linear"  # the class-score ADC belongs to the final stage kind
        return StageSettings(
            **per_stage,
            saturation=self.saturation,
            weight_zero_level=self.weight_zero_level,
            out_bits=self.linear_out_bits if final else None,
            out_full_scale=self.linear_out_full_scale if final else None,
        )

    def canonical(self) -> Nonidealities:
        """The same circuit with one spelling per behaviour: every setting that is off or has no
        effect becomes its default (``None``, ``"hard"``, ``True``, chip 0).

        Off: a zero noise or mismatch std, ``relu_cutoff`` 0, ``relu_gain`` 1, a ``relu_threshold``
        equal to the cutoff, polynomials ``(0, 1)`` (trailing zero coefficients dropped). Every
        merged spelling computes bit-identical outputs (the layers take the same path for it). No effect: a full scale without its ADC bits, the
        saturation shape without a saturation, the zero level without weight bits, the chip seed
        without mismatch. Cache keys and summaries use this form: ``relu_cutoff: 0.0`` and
        ``null`` are the same trained model.
        """
        d = self.to_dict()
        for f in TEMPORAL_NOISE + MISMATCH_FIELDS:
            if d[f] == 0:
                d[f] = None
        if d["relu_cutoff"] == 0:
            d["relu_cutoff"] = None
        if d["relu_gain"] == 1:
            d["relu_gain"] = None
        if d["relu_threshold"] is not None and d["relu_threshold"] == (d["relu_cutoff"] or 0.0):
            d["relu_threshold"] = None
        for f in [f"{k}_{p}_nonlin" for k in STAGES for p in ("input", "weight")]:
            if d[f] is not None:
                coeffs = list(d[f])
                while len(coeffs) > 1 and coeffs[-1] == 0:
                    coeffs.pop()
                d[f] = None if coeffs == [0, 1] else coeffs
        for prefix in ("relu_out", "linear_out"):
            if d[f"{prefix}_bits"] is None:
                d[f"{prefix}_full_scale"] = None
        if all(d[f"{k}_out_saturation"] is None for k in STAGES):
            d["saturation"] = "hard"
        if all(d[f"{k}_weight_bits"] is None for k in STAGES):
            d["weight_zero_level"] = True
        if all(d[f] is None for f in MISMATCH_FIELDS):
            d["chip_seed"] = 0
        return Nonidealities.from_dict(d)

    def active(self) -> dict[str, Any]:
        """The settings that change the circuit's behaviour (of :meth:`canonical`), for summaries."""
        defaults = Nonidealities()
        return {
            k: v
            for k, v in self.canonical().to_dict().items()
            if v is not None and v != getattr(defaults, k)
        }


STAGE_SETTINGS = ("input_clip", "input_nonlin", "gain_mismatch", "offset_mismatch",
                  "out_saturation", "out_noise", "weight_bits", "weight_ref", "weight_range",
                  "weight_nonlin", "input_table", "weight_table")  # fmt: skip
"""The :class:`StageSettings` each MAC stage kind has its own field for (``{kind}_{name}``)."""
TEMPORAL_NOISE = ("input_noise", "conv2d_out_noise", "relu_out_noise", "linear_out_noise")
"""Temporal-noise fields of :class:`Nonidealities` (V, std; redrawn every forward)."""
MISMATCH_FIELDS = tuple(f"{k}_{m}_mismatch" for k in STAGES for m in ("gain", "offset"))
"""Fixed-pattern mismatch fields of :class:`Nonidealities` (drawn once per chip instance)."""
FIELD_GROUPS = {
    "input": ("input_noise", "input_bits"),
    "conv2d": tuple(f"conv2d_{n}" for n in STAGE_SETTINGS),
    "relu": tuple(f"relu_{n}" for n in ("cutoff", "gain", "threshold", "softness", "out_noise",
                                        "out_bits", "out_full_scale")),
    "linear": (*(f"linear_{n}" for n in STAGE_SETTINGS), "linear_out_bits", "linear_out_full_scale"),
    "shared": ("saturation", "weight_zero_level", "chip_seed"),
}  # fmt: skip
"""The :class:`Nonidealities` fields of each part of the signal chain, in signal order
(``shared``: every MAC stage's, and the chip instance)."""


def unit(field: str) -> str:
    """The unit of a :class:`Nonidealities` field (from its metadata)."""
    return Nonidealities.__dataclass_fields__[field].metadata["unit"]


def load_nonidealities(path: str) -> Nonidealities:
    """Read a flat nonidealities JSON (the reference tool's files load unchanged)."""
    return load_params(Nonidealities, path)
