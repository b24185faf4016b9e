"""What every study task needs, loaded once per worker process: the datasets (trained runs are
read by :mod:`aanntwin.runs`), and the device resolver."""

from __future__ import annotations

import functools

from ..data import Dataset, load_dataset
from ..device import resolve_device as checked_device


@functools.lru_cache(maxsize=4)
def cached_dataset(name: str, data_dir: str | None, device: str = "cpu") -> Dataset:
    """The dataset on ``device``, loaded once per process (tasks of a sweep share it)."""
    return load_dataset(name, data_dir).to(device)


def resolve_device(device: str | None) -> str:
    """``auto`` / None: CUDA when present, else the CPU; validated (:mod:`aanntwin.device`)."""
    return str(checked_device(device, "device"))
