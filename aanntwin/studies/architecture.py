"""Architecture sweep: every valid geometry, trained and tested, ordered by multiplier count.

The reference space: channels 1..128 by powers of 2, kernel 1..7, stride 1..7, padding < kernel,
pool 1..7. A geometry is valid when the conv and pool outputs are whole numbers (DESIGN.md §1).
The result is the area/accuracy trade-off; :func:`pareto_front` keeps the geometries that no
other beats on both multipliers and accuracy.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

from ..cache import CheckpointCache
from ..config import ModelParams, RunConfig
from ..errors import AanntwinError, GeometryError
from ..model import geometry
from ..registry import info
from ..training import evaluate, train
from .common import cached_dataset, training_threads
from .grid import parse_ints
from .runner import ResultStore, Task, run_tasks

REFERENCE_SPACE: dict[str, tuple[int, ...]] = {
    "channels": tuple(2**i for i in range(8)),
    "kernel": tuple(range(1, 8)),
    "stride": tuple(range(1, 8)),
    "pool": tuple(range(1, 8)),
}

COLUMNS = [
    "dataset", "channels", "kernel", "stride", "padding", "pool", "conv_out", "features",
    "conv_macs", "macs", "multipliers", "epochs", "seed", "accuracy", "loss", "train_seconds",
]  # fmt: skip


def enumerate_geometries(
    in_shape: tuple[int, int, int],
    n_classes: int = 10,
    *,
    channels: Sequence[int] = REFERENCE_SPACE["channels"],
    kernels: Sequence[int] = REFERENCE_SPACE["kernel"],
    strides: Sequence[int] = REFERENCE_SPACE["stride"],
    pools: Sequence[int] = REFERENCE_SPACE["pool"],
    max_multipliers: int | None = None,
) -> list[tuple[ModelParams, Any]]:
    """Every valid ``(ModelParams, Geometry)``, by multiplier count then parameters."""
    found = []
    for c, k, s, p in itertools.product(channels, kernels, strides, pools):
        for pad in range(k):
            params = ModelParams(channels=c, kernel=k, stride=s, padding=pad, pool=p)
            try:
                g = geometry(params, in_shape, n_classes)
            except GeometryError:
                continue
            if max_multipliers is None or g.multipliers <= max_multipliers:
                found.append((params, g))
    found.sort(key=lambda pg: (pg[1].multipliers, pg[0].channels, pg[0].kernel, pg[0].stride,
                               pg[0].padding, pg[0].pool))  # fmt: skip
    return found


GEOMETRY_COLUMNS = [
    "channels", "kernel", "stride", "padding", "pool", "conv_out", "pool_out", "features",
    "conv_macs", "conv_multipliers_per_mac", "conv_multipliers", "linear_macs",
    "linear_multipliers", "macs", "multipliers",
]  # fmt: skip
"""What :func:`hardware_row` gives per geometry (sides as ``HxW``; counts)."""


def hardware_row(params: ModelParams, g: Any) -> dict[str, Any]:
    """One geometry's parameters and hardware counts (conv MACs counted before pooling)."""
    conv, rest = g.stages[0], g.stages[1:]
    return {
        "channels": params.channels, "kernel": params.kernel, "stride": params.stride,
        "padding": params.padding, "pool": params.pool,
        "conv_out": "x".join(map(str, g.conv_out)), "pool_out": "x".join(map(str, g.pool_out)),
        "features": g.features, "conv_macs": conv.macs, "conv_multipliers_per_mac": conv.fan_in,
        "conv_multipliers": conv.multipliers, "linear_macs": sum(s.macs for s in rest),
        "linear_multipliers": sum(s.multipliers for s in rest), "macs": g.macs,
        "multipliers": g.multipliers,
    }  # fmt: skip


def geometry_table(
    in_shape: tuple[int, int, int],
    n_classes: int,
    space: dict[str, Any] | None = None,
    max_multipliers: int | None = None,
) -> Any:
    """Every valid geometry of ``space`` (default :data:`REFERENCE_SPACE`; values as lists or
    ``1:7``/``2,4`` text) for images ``in_shape`` (C, H, W) and ``n_classes``, with its
    hardware counts, by multiplier count; at most ``max_multipliers``. No training."""
    import pandas as pd  # the CLI's table; pandas is a core dependency, imported where used

    space = {**REFERENCE_SPACE, **(space or {})}
    space = {name: parse_ints(values, f"--{name}", 1, 4096) for name, values in space.items()}
    geoms = enumerate_geometries(in_shape, n_classes, channels=space["channels"],
                                 kernels=space["kernel"], strides=space["stride"],
                                 pools=space["pool"], max_multipliers=max_multipliers)  # fmt: skip
    return pd.DataFrame([hardware_row(p, g) for p, g in geoms], columns=GEOMETRY_COLUMNS)


def _architecture_task(config: dict[str, Any], data_dir: str | None, device: str) -> list[dict]:
    cfg = RunConfig.from_dict(config)
    data = cached_dataset(cfg.dataset, data_dir, device)
    t0 = time.perf_counter()
    with training_threads():  # the same weights on any executor (TRAIN_THREADS)
        result = train(cfg, data, device=device, cache=CheckpointCache(), progress=False)
    seconds = sum(result.epoch_seconds) if result.resumed_from == 0 else time.perf_counter() - t0
    test = evaluate(result.model, data.x_test, data.y_test)
    g = result.model.geometry
    m = cfg.model
    return [{
        "dataset": cfg.dataset, "channels": m.channels, "kernel": m.kernel, "stride": m.stride,
        "padding": m.padding, "pool": m.pool, "conv_out": "x".join(map(str, g.conv_out)),
        "features": g.features, "conv_macs": g.stages[0].macs, "macs": g.macs,
        "multipliers": g.multipliers, "epochs": cfg.train.epochs, "seed": cfg.train.seed,
        "accuracy": test.accuracy, "loss": test.loss, "train_seconds": seconds,
    }]  # fmt: skip


def architecture_tasks(
    base: RunConfig, geometries: list[tuple[ModelParams, Any]], data_dir: str | None, device: str
) -> list[Task]:
    return [
        Task(_architecture_task,
             {"config": base.replace(model=params).to_dict(), "data_dir": data_dir,
              "device": device})
        for params, _ in geometries
    ]  # fmt: skip


def run_architecture_sweep(
    base: RunConfig,
    out: str,
    *,
    space: dict[str, Sequence[int]] | None = None,
    max_multipliers: int | None = None,
    limit: int | None = None,
    data_dir: str | None = None,
    device: str = "cpu",
    executor: Any = None,
    resume: bool = True,
    progress: bool = True,
) -> Any:
    """Train and test every valid geometry (the ``limit`` smallest); returns the DataFrame."""
    space = {**REFERENCE_SPACE, **(space or {})}
    for name, values in space.items():
        space[name] = parse_ints(values, f"--{name}", 1, 4096)
    d = info(base.dataset)
    geoms = enumerate_geometries(
        d.in_shape, d.n_classes, channels=space["channels"], kernels=space["kernel"],
        strides=space["stride"], pools=space["pool"], max_multipliers=max_multipliers,
    )  # fmt: skip
    if limit is not None:
        if limit < 1:
            raise AanntwinError(f"--limit {limit}: must be >= 1")
        geoms = geoms[:limit]
    if not geoms:
        raise AanntwinError(f"no valid geometry for {base.dataset} {d.in_shape} in this space")
    config = {
        "study": "architecture",
        "base": base.to_dict(),
        "space": space,
        "max_multipliers": max_multipliers,
        "limit": limit,
        "geometries": len(geoms),
    }
    store = ResultStore(out, COLUMNS, config)
    tasks = architecture_tasks(base, geoms, data_dir, device)
    return run_tasks(tasks, store, executor, resume=resume, progress=progress,
                     desc="architecture sweep")  # fmt: skip


def pareto_front(df: Any, cost: str = "multipliers", value: str = "accuracy") -> Any:
    """Rows no other row beats on both: lower (or equal) ``cost`` and higher ``value``."""
    ordered = df.sort_values([cost, value], ascending=[True, False])
    best_before = ordered[value].cummax().shift(fill_value=float("-inf"))
    return ordered[ordered[value] > best_before]
