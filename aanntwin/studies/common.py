"""What every study task needs, loaded once per worker process: the datasets (trained runs are
read by :mod:`aanntwin.runs`), the device resolver, the thread count the studies train with, and
training a run folder on it (what a notebook's child process does)."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

import torch

from ..cache import CheckpointCache
from ..config import RunConfig
from ..data import Dataset, load_dataset
from ..dataset_cache import load_mapped
from ..device import resolve_device as checked_device
from ..registry import is_npz
from ..runs import check_trained_on, write_run
from ..training import TrainResult, evaluate, train


def cached_dataset(name: str, data_dir: str | None, device: str = "cpu") -> Dataset:
    """The dataset on ``device``, loaded once per process (tasks of a sweep share it); a
    ``.npz`` file is loaded again when it changed (modification time or size). On the CPU its
    tensors are mapped from the dataset cache (:func:`aanntwin.dataset_cache.mapped`), so the
    processes of a sweep share one copy of the decoded images."""
    stamp = None
    if is_npz(name):
        try:
            st = os.stat(os.path.expanduser(name))
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            pass  # load_dataset names the missing file
    return _cached(name, data_dir, device, stamp)


def run_dataset(
    run_dir: str | os.PathLike[str], cfg: RunConfig, data_dir: str | None, device: str = "cpu"
) -> Dataset:
    """The dataset the run in ``run_dir`` (configuration ``cfg``) trained on, as
    :func:`cached_dataset` loads it, refused when its content is not what the run recorded
    (:func:`~aanntwin.runs.check_trained_on`: a relative ``.npz`` path from another folder)."""
    data = cached_dataset(cfg.dataset, data_dir, device)
    check_trained_on(run_dir, data)
    return data


@functools.lru_cache(maxsize=4)
def _cached(name: str, data_dir: str | None, device: str, stamp: object) -> Dataset:
    if torch.device(device).type == "cpu":  # one copy in the page cache for every process
        return load_mapped(name, data_dir)
    return load_dataset(name, data_dir).to(device)


def resolve_device(device: str | None) -> str:
    """``auto`` / None: CUDA when present, else the CPU; validated (:mod:`aanntwin.device`)."""
    return str(checked_device(device, "device"))


TRAIN_THREADS = 1
"""Torch CPU threads the studies train their models with (noise levels, geometries), whatever
the executor: CPU training sums in a thread-count dependent order (part of the checkpoint cache
key, :func:`aanntwin.training.determinism`), so a fixed count makes a sweep's results the same
in-process, on any number of workers and on Dask; one thread per worker also keeps
workers x threads within the cores. ``aanntwin train --threads 1`` trains the same weights."""


@contextlib.contextmanager
def training_threads() -> Iterator[None]:
    """Run the block (a study's training) on :data:`TRAIN_THREADS` torch threads, then restore."""
    before = torch.get_num_threads()
    if before != TRAIN_THREADS:
        torch.set_num_threads(TRAIN_THREADS)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def train_cached(cfg: RunConfig, data_dir: str | None, device: str,
                 progress: bool = False) -> tuple[TrainResult, Dataset]:  # fmt: skip
    """Train ``cfg`` on its dataset through the checkpoint cache on :data:`TRAIN_THREADS`
    threads (read back when the cache holds it): the studies' model, the same in every process.
    Returns the result and the dataset (on ``device``)."""
    data = cached_dataset(cfg.dataset, data_dir, device)
    with training_threads():
        return train(cfg, data, device=device, cache=CheckpointCache(), progress=progress), data


def train_to_folder(folder: str | os.PathLike[str], config: dict[str, Any], data_dir: str | None,
                    device: str) -> None:  # fmt: skip
    """:func:`train_cached` ``config``, then write the run folder ``folder`` (weights, config,
    metrics with the test accuracy; its provenance records :data:`TRAIN_THREADS` threads)."""
    cfg = RunConfig.from_dict(config)
    with training_threads():
        result, data = train_cached(cfg, data_dir, device)
        test = evaluate(result.model, data.x_test, data.y_test)
        write_run(folder, cfg, data, result, test, torch.device(device).type)
