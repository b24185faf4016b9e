"""The trained-run folder: what ``aanntwin train`` and the notebooks write for one model.

``weights.safetensors`` (named weights), ``config.json`` (the :class:`RunConfig`),
``metrics.json`` (test metrics, history, dataset, geometry, cache key, provenance) and
``timing.json`` (wall times and how many epochs came from the checkpoint cache). The first three
depend only on the inputs: identical inputs (configuration, data, torch version, device kind,
thread count) give byte-identical files, also after an interrupted run was resumed. What varies
from one execution to the next lives in ``timing.json`` alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch

from .config import RunConfig
from .data import Dataset
from .io import write_json_atomic
from .model import WEIGHTS_FILE, save_weights
from .provenance import provenance
from .training import EvalResult, TrainResult

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
TIMING_FILE = "timing.json"


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
    out = Path(folder)
    save_weights(result.model, out / WEIGHTS_FILE, {"config": config.to_dict()})
    write_json_atomic(out / CONFIG_FILE, json.loads(config.to_json()))
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
    return json.loads((Path(folder) / METRICS_FILE).read_text(encoding="utf-8"))


def load_timing(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``timing.json`` of a run folder (wall times, epochs read from the cache)."""
    return json.loads((Path(folder) / TIMING_FILE).read_text(encoding="utf-8"))
