"""What every study task needs, loaded once per worker process: the datasets (trained runs are
read by :mod:`aanntwin.runs`), and the device resolver."""

from __future__ import annotations

import functools
import os

from ..data import Dataset, load_dataset
from ..device import resolve_device as checked_device
from ..registry import is_npz


def cached_dataset(name: str, data_dir: str | None, device: str = "cpu") -> Dataset:
    """The dataset on ``device``, loaded once per process (tasks of a sweep share it); a
    ``.npz`` file is loaded again when it changed (modification time or size)."""
    stamp = None
    if is_npz(name):
        try:
            st = os.stat(os.path.expanduser(name))
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            pass  # load_dataset names the missing file
    return _cached(name, data_dir, device, stamp)


@functools.lru_cache(maxsize=4)
def _cached(name: str, data_dir: str | None, device: str, stamp: object) -> Dataset:
    return load_dataset(name, data_dir).to(device)


def resolve_device(device: str | None) -> str:
    """``auto`` / None: CUDA when present, else the CPU; validated (:mod:`aanntwin.device`)."""
    return str(checked_device(device, "device"))
