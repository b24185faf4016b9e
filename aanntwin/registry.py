"""The one dataset registry: every dataset name the package knows, with what it promises
(image shape, classes) known without loading it."""

from __future__ import annotations

from dataclasses import dataclass


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
)}  # fmt: skip
"""The one dataset registry: every dataset name the package knows, in this order."""
DATASETS = tuple(DATASET_REGISTRY)
IN_SHAPES = {name: d.in_shape for name, d in DATASET_REGISTRY.items()}
"""Image shape (C, H, W) of each dataset, known without loading it."""
