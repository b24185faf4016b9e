"""What every study task needs, loaded once per worker process: datasets and trained runs."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from ..config import IN_SHAPES, Nonidealities, RunConfig, load_config
from ..data import Dataset, load_dataset
from ..errors import AanntwinError
from ..model import WEIGHTS_FILE, Main, load_weights


@functools.lru_cache(maxsize=4)
def cached_dataset(name: str, data_dir: str | None, device: str = "cpu") -> Dataset:
    """The dataset on ``device``, loaded once per process (tasks of a sweep share it)."""
    return load_dataset(name, data_dir).to(device)


def load_run(
    run_dir: str | os.PathLike[str],
    nonidealities: Nonidealities | None = None,
    device: str | torch.device = "cpu",
) -> tuple[RunConfig, Main]:
    """The config and model of a folder written by ``aanntwin train`` (or ``normalize``).

    ``nonidealities`` replaces the ones it trained with (default: all off, the ideal model).
    """
    folder = Path(run_dir)
    if not (folder / "config.json").exists() or not (folder / WEIGHTS_FILE).exists():
        raise AanntwinError(
            f"{folder}: not a trained model folder (needs config.json and {WEIGHTS_FILE})"
        )
    cfg = load_config(str(folder / "config.json"))
    model = Main(
        cfg.model, IN_SHAPES[cfg.dataset], 10, nonidealities or Nonidealities(), cfg.normalization
    )
    load_weights(model, folder / WEIGHTS_FILE)
    return cfg, model.to(device)


def resolve_device(device: str | None) -> str:
    """``auto`` / None: CUDA when present, else the CPU."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
