"""Noise-tolerance sweep: training-noise levels x test-noise levels x nonideality kind x runs.

For each training level one model is trained (through the checkpoint cache, so reruns and other
sweeps reuse it), optionally normalized, then evaluated at every test level of every kind.

How many levels share a pass: the signal up to the first point a kind acts on (its *tap*) is
computed once per model and reused by every level and run (for ``linear_out`` only the last MAC
is recomputed). With common random numbers (the default) each run draws one unit noise tensor
``z`` at the tap and every level uses ``sigma * z``, so curves are smooth in sigma and the draw
is paid once per run instead of once per level; later occurrences of the same kind (hidden
stages) and the other noise sources are reseeded identically for every level. Stacking levels
on the batch dimension was not used: on CPUs it only adds memory traffic, the work per level
being the same.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cache import CheckpointCache
from ..config import Nonidealities, RunConfig
from ..layers import derive_seed
from ..model import Main
from ..training import train
from .common import cached_dataset
from .grid import parse_choices, parse_levels
from .runner import ResultStore, Task, run_tasks

TEMPORAL = {
    "input": "input_noise",
    "conv_out": "conv2d_out_noise",
    "relu_out": "relu_out_noise",
    "linear_out": "linear_out_noise",
}
"""Temporal-noise kinds and their Nonidealities fields (V, std)."""
MISMATCH = {
    "conv_gain": "conv2d_gain_mismatch",
    "conv_offset": "conv2d_offset_mismatch",
    "linear_gain": "linear_gain_mismatch",
    "linear_offset": "linear_offset_mismatch",
}
"""Fixed-pattern kinds (a run = a chip instance) and their fields."""
KINDS = {**TEMPORAL, **MISMATCH}
_TAP = {
    "input": "input",
    "conv_out": "conv_out",
    "relu_out": "relu_out",
    "linear_out": "linear_out",
    "conv_gain": "input",
    "conv_offset": "input",
    "linear_gain": "linear_in",
    "linear_offset": "linear_in",
}

COLUMNS = [
    "dataset", "train_level", "train_kinds", "kind", "test_level", "accuracy_mean",
    "accuracy_std", "loss_mean", "loss_std", "runs", "seed", "common_random_numbers",
    "normalized",
]  # fmt: skip


def _tap(model: Main, kind: str, base: Nonidealities) -> tuple[str, bool]:
    """Where the prefix ends, and whether the unit draw can be injected there by hand.

    A prefix is computed once, so it must hold no temporal noise: with other noise on in
    ``base`` the prefix stops before the input noise.
    """
    if any(getattr(base, f) for k, f in TEMPORAL.items() if k != kind):
        return "input", kind == "input"
    if kind == "linear_out" and model.hidden_names:
        return "features", False  # hidden stages are linear stages too: start before them
    return _TAP[kind], kind in TEMPORAL


def _first_noise_off(model: Main, kind: str) -> None:
    """Switch off the model's own noise at the tap (the sweep injects ``sigma * z`` there)."""
    if kind == "input":
        model.input_noise.sigma = None
    elif kind == "relu_out":
        model.relu.noise.sigma = None
    elif kind in ("conv_out", "linear_out"):
        stage = model.conv if kind == "conv_out" else model.linear
        stage.configure(dataclasses.replace(stage.settings, out_noise=None))


@torch.no_grad()
def _score(
    model: Main, h: Tensor, y: Tensor, tap: str, batch: int, z: Tensor | None, sigma: float
) -> tuple[float, float]:
    loss = torch.zeros((), dtype=torch.float64, device=h.device)
    correct = torch.zeros((), dtype=torch.int64, device=h.device)
    for s in range(0, len(y), batch):
        hb = h[s : s + batch]
        if z is not None and sigma:
            hb = torch.add(hb, z[s : s + batch], alpha=sigma)
        out = model.forward_from(hb, tap)
        yb = y[s : s + batch]
        loss += F.cross_entropy(out, yb, reduction="sum").double()
        correct += (out.argmax(1) == yb).sum()
    return float(correct) / len(y), float(loss) / len(y)


def evaluate_levels(
    model: Main,
    x: Tensor,
    y: Tensor,
    kind: str,
    levels: list[float | None],
    *,
    base: Nonidealities | None = None,
    runs: int = 1,
    seed: int = 0,
    common_random_numbers: bool = True,
    batch_size: int | None = None,
) -> list[dict[str, Any]]:
    """Accuracy and loss of ``model`` at each level of one kind, mean/std over ``runs``.

    ``base`` holds the other nonidealities during the test (default: none). For temporal kinds a
    run is an independent noise draw; for mismatch kinds a run is a chip instance.
    """
    base = base or Nonidealities()
    field = KINDS[kind]
    batch = batch_size or (1000 if x.device.type == "cpu" else 16384)
    tap, inject = _tap(model, kind, base)
    model.set_nonidealities(base.replace(**{field: None}))
    h = torch.cat([model.forward_until(x[s : s + batch], tap) for s in range(0, len(y), batch)])
    acc = torch.zeros(len(levels), runs, dtype=torch.float64)
    loss = torch.zeros_like(acc)
    for r in range(runs):
        run_seed = derive_seed(seed, "run", r)
        z = None
        if inject and common_random_numbers:
            gen = torch.Generator(device=h.device).manual_seed(run_seed)
            z = torch.empty_like(h).normal_(generator=gen)
        for i, level in enumerate(levels):
            nl = base.replace(**{field: level})
            if kind in MISMATCH:
                nl = nl.replace(chip_seed=run_seed)
            model.set_nonidealities(nl)
            level_seed = run_seed if common_random_numbers else derive_seed(seed, r, level)
            zz = z
            if inject:
                _first_noise_off(model, kind)
                if zz is None:
                    gen = torch.Generator(device=h.device).manual_seed(level_seed)
                    zz = torch.empty_like(h).normal_(generator=gen)
            model.reseed(level_seed)
            acc[i, r], loss[i, r] = _score(model, h, y, tap, batch, zz, level or 0.0)
    model.set_nonidealities(base)
    std = lambda t: t.std(1) if runs > 1 else torch.zeros(len(levels))  # noqa: E731
    acc_std, loss_std = std(acc), std(loss)
    return [
        {
            "kind": kind,
            "test_level": level,
            "accuracy_mean": float(acc[i].mean()),
            "accuracy_std": float(acc_std[i]),
            "loss_mean": float(loss[i].mean()),
            "loss_std": float(loss_std[i]),
            "runs": runs,
            "seed": seed,
            "common_random_numbers": common_random_numbers,
            "accuracies": acc[i].tolist(),  # per run (not a CSV column): for quantiles
        }
        for i, level in enumerate(levels)
    ]


def training_config(base: RunConfig, level: float | None, train_kinds: list[str]) -> RunConfig:
    """The run config of one training level: ``level`` on every kind in ``train_kinds``."""
    changes = {TEMPORAL[k]: level for k in train_kinds}
    return base.replace(nonidealities=base.nonidealities.replace(**changes))


def trained_model(
    config: dict[str, Any], data_dir: str | None, device: str, progress: bool = False
) -> Main:
    """Train (or read back from the checkpoint cache) the model of ``config``."""
    cfg = RunConfig.from_dict(config)
    data = cached_dataset(cfg.dataset, data_dir, device)
    return train(cfg, data, device=device, cache=CheckpointCache(), progress=progress).model


def _train_level(config: dict[str, Any], data_dir: str | None, device: str) -> None:
    """Phase 1 of a sweep in a worker: make sure the checkpoint cache holds this model."""
    trained_model(config, data_dir, device)


def _normalized(model: Main, x: Tensor, target: float) -> Main:
    from .normalize import apply, normalize

    return apply(model, normalize(model, x, target))


def _noise_task(
    config: dict[str, Any],
    data_dir: str | None,
    device: str,
    train_level: float | None,
    train_kinds: list[str],
    kind: str,
    test_levels: list[float | None],
    test_base: dict[str, Any],
    runs: int,
    seed: int,
    common_random_numbers: bool,
    normalize_target: float | None,
    calibration_images: int = 10_000,
) -> list[dict[str, Any]]:
    base = RunConfig.from_dict(config)
    cfg = training_config(base, train_level, train_kinds)
    data = cached_dataset(cfg.dataset, data_dir, device)
    model = trained_model(cfg.to_dict(), data_dir, device)
    model.set_nonidealities(Nonidealities())
    if normalize_target is not None:
        model = _normalized(model, data.x_train[:calibration_images], normalize_target)
    rows = evaluate_levels(
        model, data.x_test, data.y_test, kind, test_levels,
        base=Nonidealities.from_dict(test_base), runs=runs, seed=seed,
        common_random_numbers=common_random_numbers,
    )  # fmt: skip
    common = {
        "dataset": cfg.dataset,
        "train_level": train_level,
        "train_kinds": ",".join(train_kinds),
        "normalized": normalize_target is not None,
    }
    return [{**common, **row} for row in rows]


@dataclasses.dataclass(frozen=True)
class NoiseSweep:
    """A noise sweep's grid (validated on construction, before any work)."""

    config: RunConfig = dataclasses.field(default_factory=RunConfig)
    train_levels: list[float | None] = dataclasses.field(default_factory=lambda: [None])
    test_levels: list[float | None] = dataclasses.field(default_factory=lambda: [None])
    kinds: list[str] = dataclasses.field(default_factory=lambda: list(TEMPORAL))
    train_kinds: list[str] = dataclasses.field(default_factory=lambda: list(TEMPORAL))
    test_base: Nonidealities = dataclasses.field(default_factory=Nonidealities)
    runs: int = 1
    seed: int = 0
    common_random_numbers: bool = True
    normalize_target: float | None = 1.0

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("train_levels", parse_levels(self.train_levels, "train levels"))
        set_("test_levels", parse_levels(self.test_levels, "test levels"))
        set_("kinds", parse_choices(self.kinds, "kinds", list(KINDS)))
        set_("train_kinds", parse_choices(self.train_kinds, "train kinds", list(TEMPORAL)))
        if isinstance(self.runs, bool) or not isinstance(self.runs, int) or self.runs < 1:
            from ..errors import AanntwinError

            raise AanntwinError(f"runs = {self.runs!r}: must be an integer >= 1")

    def tasks(self, data_dir: str | None, device: str) -> list[Task]:
        return [
            Task(
                _noise_task,
                {
                    "config": self.config.to_dict(),
                    "data_dir": data_dir,
                    "device": device,
                    "train_level": level,
                    "train_kinds": self.train_kinds,
                    "kind": kind,
                    "test_levels": self.test_levels,
                    "test_base": self.test_base.to_dict(),
                    "runs": self.runs,
                    "seed": self.seed,
                    "common_random_numbers": self.common_random_numbers,
                    "normalize_target": self.normalize_target,
                },
                points=len(self.test_levels),
            )
            for level in self.train_levels
            for kind in self.kinds
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": "noise",
            "config": self.config.to_dict(),
            "train_levels": self.train_levels,
            "test_levels": self.test_levels,
            "kinds": self.kinds,
            "train_kinds": self.train_kinds,
            "test_base": self.test_base.to_dict(),
            "runs": self.runs,
            "seed": self.seed,
            "common_random_numbers": self.common_random_numbers,
            "normalize_target": self.normalize_target,
        }


def run_noise_sweep(
    sweep: NoiseSweep,
    out: str,
    *,
    data_dir: str | None = None,
    device: str = "cpu",
    executor: Any = None,
    resume: bool = True,
    progress: bool = True,
) -> Any:
    """Train every level (phase 1), then evaluate every point (phase 2); returns the DataFrame.

    Results go to ``out/results.csv`` (appended as tasks finish) next to ``out/config.json``.
    """
    configs = [training_config(sweep.config, lv, sweep.train_kinds).to_dict()
               for lv in sweep.train_levels]  # fmt: skip
    if executor is None:
        for cfg in configs:
            trained_model(cfg, data_dir, device, progress=progress)
    else:  # each level once, in parallel, before the evaluation tasks ask for it
        for fut in [executor.submit(_train_level, cfg, data_dir, device) for cfg in configs]:
            fut.result()
    store = ResultStore(out, COLUMNS, sweep.to_dict())
    return run_tasks(sweep.tasks(data_dir, device), store, executor, resume=resume,
                     progress=progress, desc="noise sweep")  # fmt: skip
