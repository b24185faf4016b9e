"""The one dataset registry: every dataset the package knows, with what it promises (image shape,
classes) known without loading it.

A dataset is named either by a registered name (:data:`DATASET_REGISTRY`) or by the path of a
``.npz`` file in the documented format (:mod:`aanntwin.npz`). :func:`info` answers for both (for a
``.npz`` it reads the array headers and the labels, never the images); :func:`check_name` is the
cheap check the CLI and the configuration run on a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset name promises, known without loading it."""

    name: str
    title: str
    in_shape: tuple[int, int, int]  # (C, H, W)
    n_classes: int


DATASET_REGISTRY = {d.name: d for d in (
    DatasetInfo("digits", "scikit-learn digits", (1, 8, 8), 10),
    DatasetInfo("mnist", "MNIST", (1, 28, 28), 10),
    DatasetInfo("fashion-mnist", "Fashion-MNIST", (1, 28, 28), 10),
    DatasetInfo("cifar10", "CIFAR-10", (3, 32, 32), 10),
)}  # fmt: skip
"""The registered datasets, in this order (a ``.npz`` path names any other)."""
DATASETS = tuple(DATASET_REGISTRY)
IN_SHAPES = {name: d.in_shape for name, d in DATASET_REGISTRY.items()}
"""Image shape (C, H, W) of each registered dataset, known without loading it."""

NPZ_FORM = "a path to a .npz file (x_train, y_train, x_test, y_test)"
"""How an own dataset is named (in error messages)."""


def is_npz(name: str) -> bool:
    """Whether ``name`` names a ``.npz`` file (by its suffix) rather than a registered dataset."""
    return isinstance(name, str) and name.lower().endswith(".npz")


def choices_text() -> str:
    """The allowed dataset names, for error and help texts."""
    return f"{', '.join(DATASETS)}, or {NPZ_FORM}"


def check_name(name: str) -> str:
    """``name`` if it is a registered dataset or an existing ``.npz`` file; else ``ConfigError``
    (one line: the value, the registered names and the ``.npz`` form). Reads no data."""
    if name in DATASET_REGISTRY:
        return name
    if is_npz(name):
        path = Path(name).expanduser()
        if path.is_dir():
            raise ConfigError(f"dataset = {name!r}: a folder, not a .npz file")
        if not path.is_file():
            raise ConfigError(f"dataset = {name!r}: no such .npz file")
        return name
    raise ConfigError(f"dataset = {name!r}: unknown; use one of {choices_text()}")


def info(name: str) -> DatasetInfo:
    """Shape and class count of any dataset: a registered name, or a ``.npz`` file (its array
    headers and labels are read, not its images). ``ConfigError`` for an unknown name,
    ``DataError`` for a ``.npz`` that breaks the format."""
    check_name(name)
    if name in DATASET_REGISTRY:
        return DATASET_REGISTRY[name]
    from .npz import npz_info  # imported here: the registry itself stays light

    shape, n_classes = npz_info(name)
    return DatasetInfo(name, Path(name).name, shape, n_classes)
