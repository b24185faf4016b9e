"""The noise-tolerance sweep as a resumable study: its grid (:class:`NoiseSweep`) and
:func:`run_noise_sweep` (train every level, then evaluate every point as a task).

A point's work is :func:`aanntwin.studies.noise._noise_task` (what it computes: see
:mod:`aanntwin.studies.noise`); it stays there because its module path is part of each result's
task key, so folders written before this module existed resume.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import Nonidealities, RunConfig
from ..errors import AanntwinError
from . import noise
from .grid import parse_choices, parse_levels
from .noise import KINDS, TEMPORAL, trained_model, training_config
from .pools import owned, sized
from .runner import ResultStore, Task, run_tasks

COLUMNS = [
    "dataset", "train_level", "train_kinds", "kind", "test_level", "accuracy_mean",
    "accuracy_std", "loss_mean", "loss_std", "runs", "seed", "common_random_numbers",
    "normalized",
]  # fmt: skip


def _train_level(config: dict[str, Any], data_dir: str | None, device: str) -> None:
    """Phase 1 of a sweep in a worker: make sure the checkpoint cache holds this model."""
    trained_model(config, data_dir, device)


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
            raise AanntwinError(f"runs = {self.runs!r}: must be an integer >= 1")

    def tasks(self, data_dir: str | None, device: str) -> list[Task]:
        return [
            Task(
                noise._noise_task,  # looked up when called (tests count the calls)
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
    ``executor``: where the tasks run (None: here; ``"auto"``: one local process per core,
    started and stopped here, :func:`~aanntwin.studies.pools.owned`). The results are the same
    wherever they ran.
    """
    configs = [training_config(sweep.config, lv, sweep.train_kinds).to_dict()
               for lv in sweep.train_levels]  # fmt: skip
    with owned(executor, device) as pool:
        trainer = sized(pool, len(configs))  # one level: trained in this process
        if trainer is None:
            for cfg in configs:
                trained_model(cfg, data_dir, device, progress=progress)
        else:  # each level once, in parallel, before the evaluation tasks ask for it
            for fut in [trainer.submit(_train_level, cfg, data_dir, device) for cfg in configs]:
                fut.result()
        store = ResultStore(out, COLUMNS, sweep.to_dict())
        return run_tasks(sweep.tasks(data_dir, device), store, pool, resume=resume,
                         progress=progress, desc="noise sweep")  # fmt: skip
