"""Weight analysis: statistics of each MAC stage's weights, per output channel and per layer.

One row per (layer, param, output channel) and one per (layer, param) for the whole layer, with
``channel = -1`` (kept numeric so the column stays integer: ``df[df.channel >= 0]`` are the
channels). An output channel is a conv output channel (its ``C x k x k`` kernel) or a linear
output (its fan-in row). Statistics of ``|w|`` (min, mean, median, max, std) and of the signed
``w`` (mean, std); every std is the population std (``correction=0``), the same one the
quantization study scales its reference values by. ``unique`` counts distinct values (a
quantized layer has at most ``2**(bits + 1)`` of them).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd
import torch

from ..model import Main
from ..runs import load_run

COLUMNS = [
    "layer",
    "param",
    "channel",
    "count",
    "unique",
    "min_abs",
    "mean_abs",
    "median_abs",
    "max_abs",
    "std_abs",
    "mean",
    "std",
]
ALL_CHANNELS = -1
"""``channel`` of the row that covers the whole layer."""


def stage_names(model: Main) -> list[str]:
    """Names of the MAC stages in signal order (:meth:`Main.stage_names`)."""
    return model.stage_names()


def _stats(rows: torch.Tensor) -> dict[str, list]:
    """Per-row statistics of a 2-D tensor (float64), reduced along dim 1."""
    a = rows.abs()
    s = rows.sort(dim=1).values
    unique = (s[:, 1:] != s[:, :-1]).sum(1) + 1
    return {
        "count": [rows.shape[1]] * rows.shape[0],
        "unique": unique.tolist(),
        "min_abs": a.amin(1).tolist(),
        "mean_abs": a.mean(1).tolist(),
        "median_abs": a.quantile(0.5, dim=1).tolist(),
        "max_abs": a.amax(1).tolist(),
        "std_abs": a.std(1, correction=0).tolist(),
        "mean": rows.mean(1).tolist(),
        "std": rows.std(1, correction=0).tolist(),
    }


def weight_stats(model: Main, params: Sequence[str] = ("weight",)) -> object:
    """A pandas DataFrame of weight statistics (see the module docstring for the columns)."""
    frames = []
    for name, stage in zip(model.stage_names(), model.mac_stages(), strict=True):
        for param in params:
            t = getattr(stage, param)
            if t is None:
                continue
            w = t.detach().to("cpu", torch.float64)
            per_channel = w.reshape(w.shape[0], -1)
            for channels, rows in (
                (list(range(w.shape[0])), per_channel),
                ([ALL_CHANNELS], w.reshape(1, -1)),
            ):
                frame = pd.DataFrame({"channel": channels, **_stats(rows)})
                frame.insert(0, "param", param)
                frame.insert(0, "layer", name)
                frames.append(frame)
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def weights_run(run_dir: str | os.PathLike[str], params: Sequence[str] = ("weight",)) -> object:
    """:func:`weight_stats` of a folder written by ``aanntwin train``."""
    _, model = load_run(run_dir)
    return weight_stats(model, params)
