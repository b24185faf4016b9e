"""The spec pipeline ``aanntwin specs`` / ``aanntwin yield`` and notebook 04 share: derive the
specs, write the sign-off table, summarize, sample chips at the joint limits, headline figures.

Accuracies are fractions in the results and percent in the printed lines; limits are in the units
of :data:`~aanntwin.studies.specs.UNITS` (V std for noise and offsets, relative std for gains).
"""

from __future__ import annotations

import os
from concurrent.futures import Executor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import Tensor

from ..config import Nonidealities
from ..io import write_json_atomic, write_text_atomic
from ..model import Main
from .noise import KINDS, TEMPORAL
from .pools import owned
from .specs import SpecResult, Target, YieldResult, chip_yield, derive_specs

SHOWN = ["stage", "quantity", "limit", "unit", "limit_alone", "alone_accuracy_q"]
"""The spec table's columns shown in reports (every column is in ``spec_table.csv``)."""


def write_spec(res: SpecResult, out: str | os.PathLike[str], run: str | None = None,
               config_hash: str | None = None) -> Path:  # fmt: skip
    """Write ``spec_table.csv`` and ``spec_table.html`` into ``out`` and, with ``run`` (the
    model folder), ``spec.json`` (target, limits, checks, bits, tolerances, evaluations, s).
    Returns ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    table, search = res.table, res.search
    write_text_atomic(folder / "spec_table.csv", table.to_csv(index=False))
    write_text_atomic(folder / "spec_table.html", table.to_html(index=False, na_rep=""))
    if run is not None:
        write_json_atomic(folder / "spec.json", {
            "schema_version": 1, "run": run, "config_hash": config_hash,
            "target": asdict(search.target), "ideal_accuracy": search.ideal,
            "joint_limits": res.joint, "joint_check": asdict(res.joint_check),
            "joint_shrink_steps": res.shrink_steps, "weight_bits": res.bits,
            "tolerances": [asdict(t) for t in res.tolerances],
            "evaluations": search.evaluations, "seconds": res.seconds,
        })  # fmt: skip
    return folder


def derive_and_write(model: Main, x: Tensor, y: Tensor, target: Target, out: str | os.PathLike[str],
                     *, kinds: list[str] | None = None, seed: int = 0, progress: bool = False,
                     run: str | None = None, config_hash: str | None = None,
                     executor: Executor | str | None = "auto") -> SpecResult:  # fmt: skip
    """:func:`~aanntwin.studies.specs.derive_specs` on ``(x, y)``, then :func:`write_spec`.
    ``executor``: where the independent searches run; ``"auto"`` (default): one local process
    per core, started here and stopped at the end (None: in this process)."""
    with owned(executor, str(x.device)) as pool:
        res = derive_specs(model, x, y, target, kinds=kinds, seed=seed, progress=progress,
                           executor=pool)  # fmt: skip
    write_spec(res, out, run, config_hash)
    return res


def summary(res: SpecResult) -> str:
    """``ideal accuracy .. %, target >= .. % at .. % confidence; joint: .. % (met | NOT met)``."""
    search, check = res.search, res.joint_check
    return (f"ideal accuracy {100 * search.ideal:.2f} %, target >= "
            f"{100 * search.threshold:.2f} % at {100 * search.target.confidence:g} % confidence; "
            f"joint: {100 * check.quantile:.2f} % ({'met' if check.passed else 'NOT met'})")  # fmt: skip


def cost(res: SpecResult) -> str:
    """``N evaluations in S s`` (model evaluations of the search, wall time)."""
    return f"{res.search.evaluations} evaluations in {res.seconds:.1f} s"


def joint_nonidealities(res: SpecResult) -> Nonidealities:
    """Every joint limit on (the spec as a nonidealities set)."""
    return Nonidealities(**{KINDS[k]: v for k, v in res.joint.items()})


def joint_yield(res: SpecResult, instances: int, seed: int = 0) -> YieldResult:
    """Chip yield at the joint limits: ``instances`` chips (mismatch draws from ``seed``) on the
    search's test set, passing at the search's threshold."""
    s = res.search
    return chip_yield(s.model, s.x, s.y, joint_nonidealities(res), instances=instances,
                      threshold=s.threshold, confidence=s.target.confidence, seed=seed)  # fmt: skip


def headlines(res: SpecResult, chips: YieldResult | None = None) -> dict[str, tuple[Any, str]]:
    """Each searched kind's joint limit, the fewest weight bits per stage (``weight_bits_conv``,
    ``weight_bits_linear``: the one weight-bits recommendation, see
    :mod:`~aanntwin.studies.weight_bits`), the joint accuracy quantile (%) and the chip yield (%),
    as ``{name: (value, unit)}``."""
    out: dict[str, tuple[Any, str]] = {
        f"tolerable_{t.kind}_{'noise' if t.kind in TEMPORAL else 'mismatch'}":
        (res.joint.get(t.kind), "V" if t.unit.startswith("V") else "relative")
        for t in res.tolerances
    }  # fmt: skip
    for stage, bits in res.bits.items():  # the one weight-bits recommendation (03 quotes it)
        out[f"weight_bits_{stage.replace('2d', '')}"] = (bits, "bits")
    out["joint_accuracy_q"] = (100 * res.joint_check.quantile, "%")
    if chips is not None:
        out["yield"] = (100 * chips.yield_, "%")
    return out
