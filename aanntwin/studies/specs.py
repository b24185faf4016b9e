"""Spec derivation: the largest tolerable nonideality, the fewest weight bits, chip yield.

Target: accuracy at most ``max_drop`` below the ideal model's, at ``confidence`` over noise draws
and chip instances. A setting *passes* when the lower ``1 - confidence`` quantile of the accuracy
over ``runs`` samples (each a fresh noise draw and, for mismatch, a fresh chip instance) is at
least ``ideal - max_drop``. Sample ``r`` of a check at ``seed`` is exactly run ``r`` of
``evaluate(model, x, y, runs=runs, seed=seed)`` with the setting on, on chip instance
``chip_seed = seed + r`` where each sample is a chip (mismatch kinds, joint checks): the noise
sweep's convention (:mod:`aanntwin.studies.noise`). Each nonideality is searched alone by
bracketing (doubling from ``start``) then bisection to a relative width ``rtol``; the result is
backed off by ``margin`` and re-verified on independent seeds. The joint check applies every
limit together and scales them all down until the joint setting passes too.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Executor, as_completed
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..config import Nonidealities, unit
from ..errors import AanntwinError
from ..model import Main
from ..seeds import derive_seed
from ..training import evaluate
from .noise import KINDS, MISMATCH, evaluate_levels, evaluate_settings
from .pools import sized

UNITS = {kind: f"{unit(field)} (std)" for kind, field in KINDS.items()}
"""Unit of each kind's limit: its field's (:func:`aanntwin.config.unit`), a standard deviation."""
STAGE = {kind: kind.split("_")[0] for kind in KINDS}
"""The stage each kind acts on (``input``, ``conv``, ``relu``, ``linear``: its name's first part)."""


@dataclass(frozen=True)
class Target:
    """What the chip must achieve."""

    max_drop: float = 0.01
    """Largest allowed accuracy loss against the ideal model (fraction: 0.01 = 1 point)."""
    confidence: float = 0.95
    """Fraction of noise draws / chip instances that must meet it."""
    runs: int = 20
    """Samples per evaluated setting (noise draws; chip instances for mismatch)."""

    def __post_init__(self) -> None:
        if not 0 <= self.max_drop < 1:
            raise AanntwinError(f"target drop {self.max_drop}: must be in [0, 1)")
        if not 0 < self.confidence < 1:
            raise AanntwinError(f"confidence {self.confidence}: must be in (0, 1)")
        if self.runs < 2:
            raise AanntwinError(f"runs {self.runs}: must be >= 2 to state a confidence")


def lower_quantile(samples: list[float] | Tensor, confidence: float) -> float:
    """The accuracy that a ``confidence`` fraction of samples reach (linear interpolation)."""
    t = torch.as_tensor(samples, dtype=torch.float64)
    return float(torch.quantile(t, 1.0 - confidence))


@dataclass
class Check:
    value: float | None
    quantile: float
    mean: float
    passed: bool


@dataclass
class Tolerance:
    """The largest value of one kind that meets the target alone."""

    kind: str
    limit: float | None
    """None: not even the smallest tried value passes."""
    unit: str
    verified: Check | None
    evaluations: int
    trace: list[dict[str, Any]] = field(default_factory=list)


class SpecSearch:
    """Evaluates settings of one model against a target (ideal accuracy computed once)."""

    def __init__(self, model: Main, x: Tensor, y: Tensor, target: Target, seed: int = 0,
                 base: Nonidealities | None = None) -> None:  # fmt: skip
        self.model, self.x, self.y, self.target, self.seed = model, x, y, target, seed
        self.base = base or Nonidealities()
        model.set_nonidealities(Nonidealities())
        self.ideal = evaluate(model, x, y).accuracy
        self.threshold = self.ideal - target.max_drop
        self.evaluations = 0

    def check(self, kind: str, value: float, seed: int | None = None) -> Check:
        """One kind at one value, the others as in ``base``: sample ``r`` is run ``r`` of
        ``evaluate`` at ``seed`` (default the search's), for mismatch kinds on chip ``seed + r``
        (:func:`~aanntwin.studies.noise.evaluate_levels`)."""
        self.evaluations += 1
        (row,) = evaluate_levels(self.model, self.x, self.y, kind, [value], base=self.base,
                                 runs=self.target.runs, seed=self.seed if seed is None else seed)  # fmt: skip
        q = lower_quantile(row["accuracies"], self.target.confidence)
        return Check(value, q, row["accuracy_mean"], q >= self.threshold)

    def check_joint(self, nl: Nonidealities, seed: int, executor: Executor | None = None) -> Check:
        """Several nonidealities together: sample ``r`` is run ``r`` of ``evaluate`` at ``seed``
        on its own chip instance ``chip_seed = seed + r``. ``executor``: blocks of runs go to
        its workers (:func:`_joint_runs`; the samples are the same, in the same order)."""
        runs = self.target.runs
        pool = sized(executor, runs) if self.x.device.type == "cpu" else None
        if pool is None:
            accs = _joint_runs(self.model, self.x, self.y, nl, seed, 0, runs)
        else:
            blocks = _blocks(runs, getattr(executor, "max_workers", None) or 4)
            futures = [pool.submit(_joint_runs, self.model, self.x, self.y, nl, seed, first, n)
                       for first, n in blocks]  # fmt: skip
            accs = [a for f in futures for a in f.result()]
        self.evaluations += runs
        self.model.set_nonidealities(Nonidealities())
        q = lower_quantile(accs, self.target.confidence)
        return Check(None, q, sum(accs) / len(accs), q >= self.threshold)

    def tolerance(self, kind: str, *, start: float = 0.01, ceiling: float = 100.0,
                  rtol: float = 0.05, margin: float = 0.7) -> Tolerance:  # fmt: skip
        """Bracket then bisect the largest passing value; back off by ``margin``; re-verify."""
        if kind not in KINDS:
            raise AanntwinError(f"kind {kind!r}: choose from {', '.join(KINDS)}")
        before = self.evaluations
        trace: list[dict[str, Any]] = []

        def probe(v: float) -> bool:
            c = self.check(kind, v)
            trace.append(asdict(c))
            return c.passed

        lo, hi = 0.0, start
        while probe(hi):  # bracket: double until it fails
            lo, hi = hi, hi * 2
            if hi > ceiling:
                return Tolerance(kind, None if lo == 0 else lo, UNITS[kind], None,
                                 self.evaluations - before, trace)  # fmt: skip
        if lo == 0.0:  # the first probe already failed: search below it
            while not probe(hi / 2) and hi > start * 1e-3:
                hi /= 2
            lo = hi / 2
            if hi <= start * 1e-3:
                return Tolerance(kind, None, UNITS[kind], None, self.evaluations - before, trace)
        while (hi - lo) / hi > rtol:
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if probe(mid) else (lo, mid)
        limit = lo * margin
        while True:  # independent draws must agree; else back off
            checks = [self.check(kind, limit, seed=derive_seed(self.seed, "verify", kind, i))
                      for i in range(2)]  # fmt: skip
            verified = min(checks, key=lambda c: c.quantile)
            if verified.passed or limit < lo * 1e-3:
                break
            limit *= margin
        return Tolerance(kind, _round(limit), UNITS[kind], verified, self.evaluations - before,
                         trace)  # fmt: skip

    def fewest_bits(self, stage: str, *, max_bits: int = 12, zero_level: bool = True) -> int | None:
        """Fewest weight bits of one stage (``conv2d`` or ``linear``) that meet the target
        alone (ideal otherwise; deterministic, so no confidence is involved)."""
        for bits in range(max_bits + 1):
            nl = Nonidealities(**{f"{stage}_weight_bits": bits}, weight_zero_level=zero_level)
            self.model.set_nonidealities(nl)
            acc = evaluate(self.model, self.x, self.y).accuracy
            self.evaluations += 1
            if acc >= self.threshold:
                self.model.set_nonidealities(Nonidealities())
                return bits
        self.model.set_nonidealities(Nonidealities())
        return None

    def joint(self, limits: dict[str, float], *, shrink: float = 0.8, max_steps: int = 10,
              executor: Executor | None = None) -> tuple[dict[str, float], Check, int]:  # fmt: skip
        """All limits together; scale every one by ``shrink`` until the target is met
        (``executor``: see :meth:`check_joint`)."""
        scale = 1.0
        for step in range(max_steps + 1):
            fields = {KINDS[k]: _round(v * scale) for k, v in limits.items()}
            check = self.check_joint(self.base.replace(**fields), derive_seed(self.seed, "joint"),
                                     executor)  # fmt: skip
            if check.passed:
                return {k: _round(v * scale) for k, v in limits.items()}, check, step
            scale *= shrink
        return {k: _round(v * scale) for k, v in limits.items()}, check, max_steps


def _round(v: float) -> float:
    """Three significant digits (a spec sheet value), rounded down so it stays conservative."""
    if v <= 0:
        return 0.0
    exp = math.floor(math.log10(v)) - 2
    return float(f"{math.floor(v / 10**exp)}e{exp}")  # via text: no binary tail (0.00711)


@dataclass
class YieldResult:
    instances: int
    passing: int
    yield_: float
    low: float
    high: float
    confidence: float
    threshold: float
    accuracies: list[float]


def wilson_interval(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Two-sided Wilson score interval of a binomial proportion k/n."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def chip_yield(model: Main, x: Tensor, y: Tensor, nl: Nonidealities, *, instances: int,
               threshold: float, confidence: float = 0.95, seed: int = 0) -> YieldResult:  # fmt: skip
    """Sample chip instances (mismatch seed ``derive_seed(seed, "chip", i)``, one noise draw
    each), evaluate each, and count those at or above ``threshold`` accuracy."""
    if instances < 1:
        raise AanntwinError(f"--instances {instances}: must be >= 1")
    accs = []
    for i in range(instances):
        chip = derive_seed(seed, "chip", i)
        model.set_nonidealities(nl.replace(chip_seed=chip))
        accs.append(evaluate(model, x, y, seed=chip).accuracy)
    model.set_nonidealities(Nonidealities())
    k = sum(a >= threshold for a in accs)
    low, high = wilson_interval(k, instances, confidence)
    return YieldResult(instances, k, k / instances, low, high, confidence, threshold, accs)


def spec_table(search: SpecSearch, tolerances: list[Tolerance], joint: dict[str, float],
               joint_check: Check, bits: dict[str, int | None]) -> Any:  # fmt: skip
    """The sign-off table: per stage and nonideality its limit (joint, and alone), unit, target,
    confidence, the measured accuracies; then weight bits, hardware counts and voltage ranges."""
    t = search.target
    common = {"target_drop": t.max_drop, "confidence": t.confidence, "runs": t.runs,
              "ideal_accuracy": search.ideal, "joint_accuracy_q": joint_check.quantile,
              "joint_accuracy_mean": joint_check.mean}  # fmt: skip

    def row(stage: str, quantity: str, limit: Any, unit: str, alone: Any = None,
            alone_q: float | None = None) -> dict[str, Any]:  # fmt: skip
        return {"stage": stage, "quantity": quantity, "limit": limit, "unit": unit,
                "limit_alone": alone, "alone_accuracy_q": alone_q, **common}  # fmt: skip

    rows = [row(STAGE[tol.kind], KINDS[tol.kind], joint.get(tol.kind), tol.unit, tol.limit,
                tol.verified.quantile if tol.verified else None) for tol in tolerances]  # fmt: skip
    rows += [row(st.replace("2d", ""), f"{st}_weight_bits", b, "bits (min, not counting sign)", b)
             for st, b in bits.items()]  # fmt: skip
    for s in search.model.geometry.stages:
        rows.append(row(s.name, "MACs", s.macs, "count"))
        rows.append(row(s.name, "multipliers", s.multipliers, "count"))
    norm = search.model.normalize.norm
    rows.append(row("input", "input voltage range", f"{norm.min_out:g}..{norm.max_out:g}", "V"))
    return pd.DataFrame(rows)


@dataclass
class SpecResult:
    """What :func:`derive_specs` found (``table``: the DataFrame of :func:`spec_table`)."""

    search: SpecSearch
    tolerances: list[Tolerance]
    joint: dict[str, float]
    """The limits that meet the target all together (the spec)."""
    joint_check: Check
    shrink_steps: int
    bits: dict[str, int | None]
    """Fewest weight bits per stage (``conv2d``, ``linear``) meeting the target alone."""
    table: Any
    seconds: float


BIT_STAGES = ("conv2d", "linear")
"""The stages whose fewest weight bits the sign-off reports."""


def _joint_runs(model: Main, x: Tensor, y: Tensor, nl: Nonidealities, seed: int, first: int,
                runs: int) -> list[float]:  # fmt: skip
    """Accuracies of runs ``first .. first + runs - 1`` of a joint check (each on its chip)."""
    acc, _ = evaluate_settings(model, x, y, [nl], runs=runs, seed=seed, chips=True,
                               first_run=first)  # fmt: skip
    return acc[0].tolist()


def _blocks(runs: int, parts: int) -> list[tuple[int, int]]:
    """``runs`` split into at most ``parts`` consecutive blocks ``(first, count)``."""
    parts = max(1, min(parts, runs))
    sizes = [runs // parts + (i < runs % parts) for i in range(parts)]
    return [(sum(sizes[:i]), n) for i, n in enumerate(sizes)]


def _tolerance_task(model: Main, x: Tensor, y: Tensor, target: Target, seed: int,
                    base: Nonidealities | None, kind: str) -> Tolerance:  # fmt: skip
    """One kind's :meth:`SpecSearch.tolerance` in a worker (its own search on a copy)."""
    return SpecSearch(model, x, y, target, seed=seed, base=base).tolerance(kind)


def _bits_task(model: Main, x: Tensor, y: Tensor, target: Target, seed: int,
               base: Nonidealities | None, stage: str) -> tuple[int | None, int]:  # fmt: skip
    """One stage's :meth:`SpecSearch.fewest_bits` in a worker, with its evaluation count."""
    search = SpecSearch(model, x, y, target, seed=seed, base=base)
    return search.fewest_bits(stage), search.evaluations


_SEARCH_COST = {"conv_gain": 4, "input": 2}
"""Relative cost of a kind's search on the default model (MNIST, seconds of one worker:
conv_gain 24, input 12, relu_out, conv_offset and conv_out 6, the linear mismatches 2-3,
linear_out 1; others 1 here): the order the searches are handed to workers in."""


def _searched(search: SpecSearch, kinds: list[str], executor: Executor | None,
              progress: bool) -> tuple[list[Tolerance], dict[str, int | None]]:  # fmt: skip
    """Each kind's tolerance and each stage's fewest bits: independent searches, run as tasks
    on ``executor`` (a :class:`~aanntwin.studies.pools.LocalPool` sizes itself; None: here, one
    after another). A search's result does not depend on where it runs (evaluation is
    thread-count independent; every draw is seeded), so the table is the same either way."""
    on_cpu = search.x.device.type == "cpu"  # a GPU: its own stream of work, no workers
    pool = sized(executor, len(kinds) + len(BIT_STAGES)) if on_cpu else None
    if pool is None:
        bar = tqdm(kinds, desc="tolerances", leave=False, disable=not progress)
        tolerances = [search.tolerance(k) for k in bar]
        return tolerances, {st: search.fewest_bits(st) for st in BIT_STAGES}
    args = (search.model, search.x, search.y, search.target, search.seed, search.base)
    # Longest first (a conv gain search evaluates the per-position convolution: ~2x the others),
    # so the last task to end does not start last; results are collected in the kinds' order.
    order = sorted(kinds, key=lambda k: -_SEARCH_COST.get(k, 1))
    submitted = {kind: pool.submit(_tolerance_task, *args, kind) for kind in order}
    tol_futures = [submitted[kind] for kind in kinds]
    bit_futures = [pool.submit(_bits_task, *args, stage) for stage in BIT_STAGES]
    bar = tqdm(total=len(kinds), desc="tolerances", leave=False, disable=not progress)
    for _ in as_completed(tol_futures):
        bar.update()
    bar.close()
    tolerances = [f.result() for f in tol_futures]
    bits = dict(zip(BIT_STAGES, (f.result() for f in bit_futures), strict=True))
    search.evaluations += sum(t.evaluations for t in tolerances) + sum(n for _, n in bits.values())
    return tolerances, {stage: b for stage, (b, _) in bits.items()}


def derive_specs(model: Main, x: Tensor, y: Tensor, target: Target, *,
                 kinds: list[str] | None = None, seed: int = 0, base: Nonidealities | None = None,
                 progress: bool = False, executor: Executor | None = None) -> SpecResult:  # fmt: skip
    """The sign-off: each kind's tolerance alone, the joint limits, the fewest weight bits per
    stage and the table (``kinds``: default all of ``KINDS``). ``executor``: where the
    independent searches run (see :func:`_searched`), then blocks of the joint check's runs."""
    t0 = time.perf_counter()
    search = SpecSearch(model, x, y, target, seed=seed, base=base)
    kinds = list(KINDS) if kinds is None else list(kinds)
    tolerances, bits = _searched(search, kinds, executor, progress)
    joint, joint_check, shrinks = search.joint({t.kind: t.limit for t in tolerances if t.limit},
                                               executor=executor)  # fmt: skip
    table = spec_table(search, tolerances, joint, joint_check, bits)
    return SpecResult(search, tolerances, joint, joint_check, shrinks, bits, table,
                      time.perf_counter() - t0)  # fmt: skip


__all__ = ["Target", "SpecSearch", "Tolerance", "SpecResult", "derive_specs", "chip_yield",
           "wilson_interval", "spec_table", "lower_quantile", "MISMATCH"]  # fmt: skip
