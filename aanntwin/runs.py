"""The trained-run folder: what ``aanntwin train`` and the notebooks write for one model.

``weights.safetensors`` (named weights), ``config.json`` (the :class:`RunConfig`),
``metrics.json`` (test metrics, history, dataset, geometry, cache key, provenance) and
``timing.json`` (wall times and how many epochs came from the checkpoint cache). The first three
depend only on the inputs: identical inputs (configuration, data, torch version, device kind,
thread count) give byte-identical files, also after an interrupted run was resumed. What varies
from one execution to the next lives in ``timing.json`` alone.

This module is the one owner of the folder: it writes it (:func:`write_run`, or
:func:`write_model` for a derived model such as a normalized one), reads it (:func:`load_run`,
:func:`load_metrics`) and builds the model of a run configuration (:func:`build_model`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from .config import Nonidealities, RunConfig, load_config
from .data import Dataset
from .errors import AanntwinError
from .io import read_json_file, write_json_atomic
from .model import WEIGHTS_FILE, Geometry, Main, geometry, load_weights, save_weights
from .provenance import provenance
from .registry import info
from .training import EvalResult, TrainResult

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
TIMING_FILE = "timing.json"
# An existing folder holding one of these is an earlier run (or normalized) folder: replaceable.
RUN_FILES = (CONFIG_FILE, WEIGHTS_FILE)
RUN_OWNS = (*RUN_FILES, METRICS_FILE, TIMING_FILE, "normalization.json", "imported.json")
"""Everything a run folder can hold (``train``, ``normalize``, ``import-reference``): a folder
holding anything else is not replaced (:func:`~aanntwin.io.check_output_path`)."""


def build_model(
    config: RunConfig, nonidealities: Nonidealities | None = None, dataset: str | None = None
) -> Main:
    """The (untrained) :class:`Main` of a run: its geometry for ``dataset`` (default: the run's;
    shape and classes from the registry), its normalization, ``nonidealities`` (default: off)."""
    d = info(dataset or config.dataset)
    nl = nonidealities or Nonidealities()
    return Main(config.model, d.in_shape, d.n_classes, nl, config.normalization)


def run_geometry(config: RunConfig) -> Geometry:
    """The geometry and hardware counts of a run configuration on its dataset (validates it)."""
    d = info(config.dataset)
    return geometry(config.model, d.in_shape, d.n_classes)


def write_model(folder: str | os.PathLike[str], config: RunConfig, model: Main) -> Path:
    """Write the loadable part of a run folder: weights and ``config.json``; returns it."""
    out = Path(folder)
    save_weights(model, out / WEIGHTS_FILE, {"config": config.to_dict()})
    write_json_atomic(out / CONFIG_FILE, json.loads(config.to_json()))
    return out


def write_run(
    folder: str | os.PathLike[str],
    config: RunConfig,
    data: Dataset,
    result: TrainResult,
    test: EvalResult,
    device: torch.device | str = "cpu",
    wall_seconds: float | None = None,
) -> Path:
    """Write the run folder of a finished training (each file atomically); returns it."""
    out = write_model(folder, config, result.model)
    history = [dataclasses.asdict(h) for h in result.history]
    metrics = {
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "epochs": config.train.epochs,
        "per_class_accuracy": test.per_class_accuracy,
        "confusion": test.confusion,
        "history": [{k: v for k, v in h.items() if k != "seconds"} for h in history],
        "dataset": {
            "name": data.name,
            "source": data.source,
            "fingerprint": data.fingerprint,
            "verified": data.verified,
            "n_train": len(data.y_train),
            "n_test": len(data.y_test),
        },
        "geometry": result.model.geometry.to_dict(),
        "cache_key": result.key,
        "config": config.to_dict(),
        "provenance": provenance(device),
    }
    write_json_atomic(out / METRICS_FILE, metrics)
    timing = {
        "epoch_seconds": result.epoch_seconds,
        "train_seconds": sum(result.epoch_seconds),
        "wall_seconds": wall_seconds,
        "resumed_from_epoch": result.resumed_from,
    }
    write_json_atomic(out / TIMING_FILE, timing)
    return out


def load_metrics(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``metrics.json`` of a run folder."""
    return read_json_file(Path(folder) / METRICS_FILE, "metrics")


def check_trained_on(folder: str | os.PathLike[str], data: Dataset, hint: str = "") -> None:
    """Refuse ``data`` when the run in ``folder`` recorded (``metrics.json``) training on data of
    another content: its config names the dataset by path or name, and a relative ``.npz``
    path is taken from the current folder, so the same name can find another file. A folder
    without that record (a normalized one) is not checked. ``hint``: how else to go on."""
    try:
        trained = load_metrics(folder)["dataset"]
        name, fingerprint = str(trained["name"]), str(trained["fingerprint"])
    except (AanntwinError, KeyError, TypeError):
        return
    if fingerprint != data.fingerprint:
        raise AanntwinError(
            f"{folder}: trained on {name} of fingerprint {fingerprint} (metrics.json), but "
            f"{data.name} found now ({data.source}) has fingerprint {data.fingerprint}: another "
            "file, or a relative path taken from another folder; run from the folder it was "
            f"trained in{hint}"
        )


def check_fits(folder: str | os.PathLike[str], data: Dataset) -> None:
    """Refuse ``data`` whose image shape or class count is not the one the run's model takes
    (``metrics.json``'s geometry): the error names both, not a weight of the wrong shape."""
    try:
        g = load_metrics(folder)["geometry"]
        shape, classes = tuple(int(v) for v in g["in_shape"]), int(g["stages"][-1]["macs"])
    except (AanntwinError, KeyError, TypeError, IndexError, ValueError):
        return
    have = tuple(int(v) for v in data.x_test.shape[1:])
    if (shape, classes) != (have, data.n_classes):
        size = lambda s: "x".join(map(str, s))  # noqa: E731
        raise AanntwinError(
            f"{folder}: its model takes {size(shape)} images of {classes} classes (metrics.json); "
            f"{data.name} has {size(have)} images of {data.n_classes} classes"
        )


def is_run(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a loadable run (its ``config.json`` and weights)."""
    return (Path(folder) / CONFIG_FILE).exists() and (Path(folder) / WEIGHTS_FILE).exists()


def read_config(folder: str | os.PathLike[str]) -> RunConfig:
    """``config.json`` of a run folder."""
    return load_config(str(Path(folder) / CONFIG_FILE))


def weights_sha256(folder: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a run folder's weights file: identifies the trained weights."""
    return hashlib.sha256((Path(folder) / WEIGHTS_FILE).read_bytes()).hexdigest()


def load_run(
    run_dir: str | os.PathLike[str],
    nonidealities: Nonidealities | None = None,
    device: str | torch.device = "cpu",
    dataset: str | None = None,
) -> tuple[RunConfig, Main]:
    """The config and model of a folder written by ``aanntwin train`` (or ``normalize``).

    ``nonidealities`` replaces the ones it trained with (default: all off, the ideal model);
    ``dataset`` builds it for another dataset's images (default: the run's).
    """
    folder = Path(run_dir)
    if not is_run(folder):
        raise AanntwinError(
            f"{folder}: not a trained model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    cfg = read_config(folder)
    model = build_model(cfg, nonidealities, dataset)
    load_weights(model, folder / WEIGHTS_FILE)
    return cfg, model.to(device)
