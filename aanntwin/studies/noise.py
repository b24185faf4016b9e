"""Noise-tolerance sweep: training-noise levels x test-noise levels x nonideality kind x runs.

For each training level one model is trained (through the checkpoint cache, so reruns and other
sweeps reuse it), optionally normalized, then evaluated at every test level of every kind.
The grid and its runner are :mod:`aanntwin.studies.noise_sweep`; this module evaluates.

What a point is: run ``r`` of (kind, level) is exactly what :func:`aanntwin.training.evaluate`
computes for its run ``r`` on the model with that level set (``base`` for everything else):
temporal noise from ``noise_seed(seed, r)`` and, for mismatch kinds, chip instance
``chip_seed = seed + r`` (:func:`run_chip_seed`). So ``aanntwin evaluate RUN --seed S
--nonidealities F`` (F: the level, ``chip_seed`` S) reproduces a ``--runs 1`` point of a sweep
at ``--seed S`` to the last digit, RUN trained with ``aanntwin train --threads 1`` (sweeps train on
:data:`~aanntwin.studies.common.TRAIN_THREADS` threads whatever the executor).

How levels share a pass without changing a digit: the signal up to the earliest tap where
anything that differs between levels or runs acts (the kind's field on every stage it acts on,
hidden stages included; every temporal noise that is on; for mismatch kinds every mismatch that
is on, the chip changing with the run) is computed once per model, in the batch slices
``evaluate`` uses; only the rest runs per level. Common random numbers (the default): the noise
of run ``r`` is reseeded identically for every level. Where the kind's noise is drawn at one site
and no other temporal noise is on, the unit draw ``z`` is made once per run (batch by batch, from
a generator seeded like the model's) and each level injects ``z * sigma + x`` there through
the model's injection point (``Main.forward_from(h, tap, unit_noise=z, sigma=level)``), which is
bit-identical to the model's own draw on the CPU (:func:`injectable`); elsewhere the model
draws. Stacking levels on the batch dimension was not used: on CPUs it only adds memory traffic,
the work per level being the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..config import MISMATCH_FIELDS, Nonidealities, RunConfig
from ..finite import check_finite, describe
from ..functional import injectable, injectable_kind
from ..model import NOISE_AFTER, Main
from ..seeds import NoiseSource, derive_seed
from ..training import eval_batch_size, noise_seed, summed_cross_entropy
from .common import cached_dataset, train_cached
from .normalize import apply, normalize, tightest

TEMPORAL = dict(NOISE_AFTER)
"""Temporal-noise kinds and their Nonidealities fields (V, std): a kind is named by the tap its
noise is drawn right after (:data:`~aanntwin.model.NOISE_AFTER`)."""
MISMATCH = {f.replace("conv2d", "conv").removesuffix("_mismatch"): f for f in MISMATCH_FIELDS}
"""Fixed-pattern kinds (a run = a chip instance) and their fields (``conv_gain``:
``conv2d_gain_mismatch`` ..., :data:`~aanntwin.config.MISMATCH_FIELDS`)."""
KINDS = {**TEMPORAL, **MISMATCH}
TAPS = ("input", "conv_out", "relu_out", "features", "linear_in", "linear_out")
"""The model's taps in signal order (see :meth:`Main.forward_until`)."""

_FINAL_ONLY = ("linear_out_bits", "linear_out_full_scale")  # the class-score ADC
_OUTPUT_PART = ("_out_noise", "_out_bits", "_out_full_scale")  # after a stage's MAC or core


def run_chip_seed(seed: int, run: int) -> int:
    """Chip instance of run ``run`` of a sweep or spec check at ``seed``: ``seed + run`` (modulo
    2**63, the range of ``chip_seed``)."""
    return (seed + run) % 2**63


def stages_of(model: Main, field: str) -> list[str]:
    """The stages a :class:`Nonidealities` field acts on (names: ``input``, ``conv``, ``relu``,
    ``hidden{i}``, ``hidden{i}_relu``, ``linear``). Hidden stages share the ``linear_*`` and
    ``relu_*`` circuits; the class-score ADC is the final stage's only."""
    hidden = list(model.hidden_names)
    if field in _FINAL_ONLY:
        return ["linear"]
    if field.startswith("input_"):
        return ["input"]
    if field.startswith("conv2d_"):
        return ["conv"]
    if field.startswith("relu_"):
        return ["relu", *(f"{name}_relu" for name in hidden)]
    if field.startswith("linear_"):
        return [*hidden, "linear"]
    return ["conv", *hidden, "linear"]  # saturation, weight_zero_level, chip_seed: every MAC


def _stage_tap(stage: str, field: str) -> str | None:
    """The last tap before ``field`` acts in ``stage`` (None: it acts on the pixels' way in)."""
    output = field.endswith(_OUTPUT_PART) or field == "input_noise"
    if stage == "input":
        return "input" if output else None  # the input DAC comes before the first tap
    if stage in ("conv", "relu", "linear"):
        before = {"conv": ("input", "conv_out"), "relu": ("conv_out", "relu_out"),
                  "linear": ("linear_in", "linear_out")}[stage]  # fmt: skip
        return before[output]
    return "features"  # hidden stages and their ReLUs have no tap of their own


def prefix_tap(model: Main, fields: Iterable[str]) -> str | None:
    """The latest tap no field of ``fields`` can change: where the earliest stage any of them
    acts on begins (None: not even the input; no fields: the last tap)."""
    taps = [_stage_tap(st, f) for f in fields for st in stages_of(model, f)]
    if None in taps:
        return None
    return min(taps, key=TAPS.index, default=TAPS[-1])  # type: ignore[arg-type]


def _on(settings: Iterable[Nonidealities], group: dict[str, str]) -> set[str]:
    return {f for nl in settings for f in group.values() if getattr(nl, f)}


def _varying(settings: Sequence[Nonidealities], chips: bool) -> set[str]:
    """Fields whose effect differs between settings or runs: those that differ, every temporal
    noise that is on (redrawn each run) and, when each run is another chip, every mismatch."""
    names = [f.name for f in dataclasses.fields(Nonidealities)]
    differ = {n for n in names if len({repr(getattr(nl, n)) for nl in settings}) > 1}
    return differ | _on(settings, TEMPORAL) | (_on(settings, MISMATCH) if chips else set())


def _slices(n: int, batch: int) -> list[slice]:
    return [slice(s, s + batch) for s in range(0, n, batch)]


def _prefix(model: Main, x: Tensor, tap: str | None, slices: list[slice]) -> list[Tensor]:
    """The noiseless signal at ``tap`` per batch slice (the inputs themselves when None)."""
    return [x[s] if tap is None else model.forward_until(x[s], tap) for s in slices]


class _Scores:
    """Correct counts and summed losses per (setting, run), accumulated as ``evaluate`` does."""

    def __init__(self, settings: int, runs: int, device: torch.device) -> None:
        self.correct = torch.zeros(settings, runs, dtype=torch.int64, device=device)
        self.loss = torch.zeros(settings, runs, dtype=torch.float64, device=device)

    def add(self, i: int, r: int, out: Tensor, y: Tensor) -> None:
        top, pred = out.max(1)  # the first maximal index, as argmax
        self.loss[i, r] += summed_cross_entropy(out, y, top)
        self.correct[i, r] += (pred == y).sum()

    def result(self, n: int, label: Callable[[int], str]) -> tuple[Tensor, Tensor]:
        """Accuracy and mean loss [setting, run], float64 on the CPU; ``label(i)``: what
        setting ``i`` is, for the error when its outputs were not finite (:func:`check_finite`)."""
        check_finite(self.loss, label)
        return (self.correct.double() / n).cpu(), (self.loss / n).cpu()


@torch.no_grad()
def evaluate_settings(
    model: Main,
    x: Tensor,
    y: Tensor,
    settings: Sequence[Nonidealities],
    *,
    runs: int = 1,
    seed: int = 0,
    chips: bool = False,
    level_seeds: Sequence[int] | None = None,
    batch_size: int | None = None,
    first_run: int = 0,
) -> tuple[Tensor, Tensor]:
    """Accuracy and loss [setting, run] of ``model`` under each setting, run ``r`` of setting
    ``i`` being exactly run ``r`` of ``evaluate(model, x, y, runs=runs, seed=s)`` with
    ``s = level_seeds[i]`` (default ``seed``) on the model set to ``settings[i]``, on chip
    :func:`run_chip_seed` ``(seed, r)`` when ``chips``. The prefix no setting or run changes is
    computed once; the model draws its own noise. ``first_run``: the runs are
    ``first_run .. first_run + runs - 1`` (a block of a larger set: runs are independent, so
    blocks computed apart and put together equal the whole)."""
    batch = batch_size or eval_batch_size(x.device)
    slices = _slices(len(y), batch)
    entry, was_training = model.nonidealities, model.training
    model.eval()
    tap = prefix_tap(model, _varying(settings, chips))
    model.set_nonidealities(settings[0])
    hs = _prefix(model, x, tap, slices)
    scores = _Scores(len(settings), runs, x.device)
    for k in range(runs):
        r = first_run + k
        for i, nl in enumerate(settings):
            if chips:
                nl = nl.replace(chip_seed=run_chip_seed(seed, r))
            model.set_nonidealities(nl)
            model.reseed(noise_seed(seed if level_seeds is None else level_seeds[i], r))
            for s, h in zip(slices, hs, strict=True):
                out = model(h) if tap is None else model.forward_from(h, tap)
                scores.add(i, k, out, y[s])
    model.set_nonidealities(entry)
    model.train(was_training)
    return scores.result(len(y), lambda i: describe(settings[i].active()))


@torch.no_grad()
def _injected(
    model: Main,
    x: Tensor,
    y: Tensor,
    kind: str,
    levels: Sequence[float | None],
    base: Nonidealities,
    runs: int,
    seed: int,
    batch: int,
) -> tuple[Tensor, Tensor] | None:
    """The fast path of :func:`evaluate_levels` for a kind with one noise site and no other
    temporal noise: one unit draw per run and batch, injected at the site by
    :meth:`Main.forward_from` with the model's own draw off. None where that is not
    bit-identical (see :func:`injectable`).

    Batch by batch: a batch's prefix is computed once for every run and level, its unit draw
    serves every level while in cache, and no draw of the whole test set is held (MNIST: ~60 MB
    less per task). Each run's generator draws in batch order and each (level, run) sums its
    batches in order, as run by run over all batches would: the same numbers."""
    if not injectable_kind(x.device, model.conv.weight.dtype):
        return None  # decided before the prefix is computed: no work done twice
    field = KINDS[kind]
    slices = _slices(len(y), batch)
    if not slices:
        return None
    tap = prefix_tap(model, [field])
    entry, was_training = model.nonidealities, model.training
    model.eval()
    model.set_nonidealities(base.replace(**{field: None}))  # the sweep draws at the site
    try:
        first = _prefix(model, x, tap, slices[:1])[0]
        smallest = (len(y) - slices[-1].start) * first[0].numel()  # the last batch's elements
        if not injectable([first]) or smallest < 16:
            return None  # the smallest batch draws otherwise (see injectable): before any work
        scores = _Scores(len(levels), runs, x.device)
        # one generator per run, as the model's after reseed, each drawing in batch order
        gens = [NoiseSource(noise_seed(seed, r)).generator(x.device) for r in range(runs)]
        for j, s in enumerate(slices):  # a batch's noiseless prefix serves every run and level
            h = first if j == 0 else _prefix(model, x, tap, [s])[0]
            if not injectable([h]):
                return None
            for r, gen in enumerate(gens):
                z = torch.empty_like(h).normal_(0.0, 1.0, generator=gen)
                for i, level in enumerate(levels):
                    scores.add(i, r, model.forward_from(h, tap, unit_noise=z, sigma=level), y[s])
        return scores.result(
            len(y), lambda i: describe(base.replace(**{field: levels[i]}).active())
        )
    finally:
        model.set_nonidealities(entry)
        model.train(was_training)


def _one_site(model: Main, kind: str, base: Nonidealities) -> bool:
    """Whether ``kind``'s noise is drawn at one site with no other temporal noise on."""
    others = any(getattr(base, f) for k, f in TEMPORAL.items() if k != kind)
    return kind in TEMPORAL and len(stages_of(model, KINDS[kind])) == 1 and not others


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

    ``base`` holds the other nonidealities during the test (default: none). Run ``r`` at a
    level is run ``r`` of ``evaluate(model, x, y, runs=runs, seed=seed)`` on the model set to
    ``base`` with the level, and for mismatch kinds ``chip_seed = seed + r`` (a run is a chip
    instance; temporal kinds keep ``base.chip_seed``). With ``common_random_numbers=False`` the
    evaluation seed of a level is ``derive_seed(seed, "level", level)`` instead of ``seed``.
    """
    base = base or Nonidealities()
    field = KINDS[kind]
    batch = batch_size or eval_batch_size(x.device)
    result = None
    if common_random_numbers and _one_site(model, kind, base):
        result = _injected(model, x, y, kind, levels, base, runs, seed, batch)
    if result is None:
        level_seeds = None
        if not common_random_numbers:
            level_seeds = [derive_seed(seed, "level", level) for level in levels]
        settings = [base.replace(**{field: level}) for level in levels]
        result = evaluate_settings(model, x, y, settings, runs=runs, seed=seed,
                                   chips=kind in MISMATCH, level_seeds=level_seeds,
                                   batch_size=batch)  # fmt: skip
    acc, loss = result
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
    """Train (or read back from the checkpoint cache) the model of ``config``, on
    :data:`~aanntwin.studies.common.TRAIN_THREADS` CPU threads."""
    return train_cached(RunConfig.from_dict(config), data_dir, device, progress)[0].model


def _normalized(model: Main, x: Tensor, target: float, *nls: Nonidealities) -> Main:
    """``model`` normalized to ``target`` (V), its weights within every ``nls``' weight bounds."""
    bounds = tightest(*(model.weight_bounds(nl) for nl in nls))
    return apply(model, normalize(model, x, target, bounds=bounds))


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
        x_cal, test_nl = data.x_train[:calibration_images], Nonidealities.from_dict(test_base)
        model = _normalized(model, x_cal, normalize_target, cfg.nonidealities, test_nl)
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
