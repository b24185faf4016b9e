"""Configuration: model geometry, training, circuit nonidealities (:mod:`aanntwin.nonidealities`,
re-exported here) and input normalization.

Every field carries its unit; every value is validated on construction; every class round-trips
through JSON (``to_json`` / ``from_dict``) and has a stable ``content_hash`` for cache keys. The
nonideality names of the reference tool (``input_noise``, ``relu_cutoff``, ``conv2d_input_nonlin``
...) are kept so its JSON files load unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ConfigError
from .nonidealities import (  # noqa: F401 (re-exported)
    FIELD_GROUPS,
    INPUT_POLY,
    MISMATCH_FIELDS,
    STAGE_SETTINGS,
    STAGES,
    TEMPORAL_NOISE,
    WEIGHT_POLY,
    Nonidealities,
    StageSettings,
    load_nonidealities,
    unit,
)
from .registry import (  # noqa: F401 (re-exported)
    DATASET_REGISTRY,
    DATASETS,
    IN_SHAPES,
    DatasetInfo,
    check_name,
)
from .schema import Params, load_params, param, stable_hash


@dataclass(frozen=True)
class ModelParams(Params):
    """Geometry of the Main network (DESIGN.md §1)."""

    section = "model"

    channels: int = param(4, ge=1, le=4096)
    """Convolution output channels (count)."""
    kernel: int = param(6, ge=1, le=64)
    """Square convolution kernel side (pixels)."""
    stride: int = param(2, ge=1, le=64)
    """Convolution stride (pixels)."""
    padding: int = param(1, ge=0, le=64)
    """Zero padding on each image side (pixels); must be < kernel."""
    pool: int = param(1, ge=1, le=64)
    """Max-pool window and stride after the ReLU (1 = no pooling)."""
    hidden: tuple[int, ...] = param((), ge=1, le=1_000_000, min_len=0)
    """Widths of optional hidden analog linear stages (neurons each)."""

    def check(self) -> None:
        if self.padding >= self.kernel:
            raise ConfigError(
                f"model.padding = {self.padding}: must be < model.kernel = {self.kernel}"
            )


@dataclass(frozen=True)
class TrainParams(Params):
    """Optimizer and schedule for (hardware-aware) training."""

    section = "train"

    epochs: int = param(12, ge=0, le=100_000)
    """Passes over the training set."""
    batch_size: int = param(128, ge=1, le=1_000_000)
    """Images per optimizer step."""
    lr: float = param(0.1, gt=0.0, le=100.0)
    """Learning rate (peak rate under the one-cycle schedule)."""
    optimizer: Literal["adam", "sgd"] = param("sgd")
    """``adam`` or ``sgd``."""
    momentum: float = param(0.9, ge=0.0, le=0.999999)
    """SGD momentum (ignored by Adam); constant, also under the one-cycle schedule."""
    nesterov: bool = param(True)
    """Nesterov momentum for SGD (applies when momentum > 0)."""
    weight_decay: float = param(0.0, ge=0.0, le=1.0)
    """L2 weight decay coefficient."""
    schedule: Literal["onecycle", "constant"] = param("onecycle")
    """Learning-rate schedule over all steps: ``onecycle`` (PyTorch's OneCycleLR: cosine warm-up
    from lr/25 over 30 % of the steps, then cosine anneal to lr/25e4; momentum not cycled) or
    ``constant``."""
    seed: int = param(0, ge=0, le=2**63 - 1)
    """Seed of weight init, shuffling and training noise: same seed, same weights."""
    chips: Literal["batch", "epoch", "fixed"] = param("batch")
    """Chip instances seen by mismatch-aware training (no effect without mismatch): ``batch``
    draws a fresh chip for every optimizer step, ``epoch`` one per epoch (seeds derived from
    ``(seed, epoch, step)``, so a resumed run is exact), ``fixed`` trains for the one chip
    ``nonidealities.chip_seed`` only (the model then fits that chip, not the population)."""


@dataclass(frozen=True)
class Normalization(Params):
    """Linear map from pixel values to the input voltages of the analog array.

    ``v = min_out + (x - min_in) * (max_out - min_out) / (max_in - min_in)``.
    """

    section = "normalization"

    min_in: float = param(0.0)
    """Pixel value mapped to ``min_out`` (dataset units; datasets load in [0, 1])."""
    max_in: float = param(1.0)
    """Pixel value mapped to ``max_out`` (dataset units)."""
    min_out: float = param(0.0, unit="V")
    """Input voltage for the darkest pixel (V)."""
    max_out: float = param(1.0, unit="V")
    """Input voltage for the brightest pixel (V)."""

    def check(self) -> None:
        if self.max_in <= self.min_in:
            raise ConfigError(
                f"normalization.max_in = {self.max_in}: must be > min_in = {self.min_in}"
            )
        if self.max_out <= self.min_out:
            raise ConfigError(
                f"normalization.max_out = {self.max_out}: must be > min_out = {self.min_out}"
            )

    @property
    def is_identity(self) -> bool:
        return (self.min_in, self.max_in, self.min_out, self.max_out) == (0.0, 1.0, 0.0, 1.0)


@dataclass(frozen=True)
class RunConfig(Params):
    """Everything that determines a trained model: one file drives CLI, notebooks and library."""

    section = ""

    dataset: str = param("digits")
    """A registered dataset name (:data:`DATASETS`; ``digits`` is bundled with scikit-learn:
    works offline) or the path of a ``.npz`` file (your own data, :mod:`aanntwin.npz`)."""
    model: ModelParams = dataclasses.field(default_factory=ModelParams)
    """Network geometry."""
    train: TrainParams = dataclasses.field(default_factory=TrainParams)
    """Optimizer and schedule."""
    nonidealities: Nonidealities = dataclasses.field(default_factory=Nonidealities)
    """Nonidealities on during training (hardware-aware training); all off = ideal."""
    normalization: Normalization = dataclasses.field(default_factory=Normalization)
    """Pixel-to-voltage map."""

    def check(self) -> None:
        check_name(self.dataset)  # ConfigError: the value, the registered names, the .npz form

    def canonical(self) -> RunConfig:
        """The same run with canonical nonidealities (see :meth:`Nonidealities.canonical`) and
        training settings that cannot act reset to their defaults (``train.chips`` without
        mismatch)."""
        nl = self.nonidealities.canonical()
        train = self.train
        if not any(getattr(nl, f) for f in MISMATCH_FIELDS):
            train = train.replace(chips=TrainParams().chips)
        return self.replace(nonidealities=nl, train=train)

    def cache_key(self, data_fingerprint: str, determinism: dict[str, Any] | None = None) -> str:
        """Hash of everything that changes the trained weights: the canonical configuration,
        the dataset content and what bit-exactness depends on (``determinism``: torch version,
        device kind, CPU thread count; see :func:`aanntwin.training.determinism`)."""
        key = {"config": self.canonical().to_dict(), "data": data_fingerprint}
        if determinism is not None:
            key["determinism"] = determinism
        return stable_hash(key)


def load_config(path: str) -> RunConfig:
    """Read a run configuration JSON (nested sections, each optional)."""
    return load_params(RunConfig, path)
