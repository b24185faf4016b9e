"""Normalization: scale each analog stage so its output full scale equals its reference voltage.

``a_k = target_k / FS_k``; stage k: ``W_k <- W_k a_k / a_{k-1}``, ``b_k <- b_k a_k`` (``a_0 = 1``),
where ``FS_k`` is the full scale of stage k's noiseless MAC output over a calibration pass
(``max |y|``, or its ``q``-quantile). ReLU (cutoff 0) and max-pool are positively homogeneous,
so stage k's output is multiplied by ``a_k`` and stage k+1, divided by ``a_k``, computes the same
function; the class scores come out multiplied by ``a_last`` (the argmax is unchanged).

Weights stay programmable: where stage k's scaled weights would exceed its bound ``B_k``
(:func:`~aanntwin.model.weight_bound`, the characterized weight range or a fixed quantizer
reference), ``a_k`` is lowered to ``B_k a_{k-1} / max |W_k|`` so the largest ``|w|`` equals
``B_k``; the stage then reaches less than its target (recorded in ``limited``), and the next
stage, dividing by the lower ``a_k``, still computes the same function.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import AanntwinError
from ..io import write_json_atomic
from ..model import Main
from ..runs import load_run, write_model
from .common import resolve_device, run_dataset


@dataclass
class NormalizationResult:
    """A normalized state and how it was made (full scales in V).

    ``state``: new weights and biases (fresh tensors); ``scales``: per stage, the factor ``a_k``
    its output is multiplied by; ``before`` / ``after``: calibrated full scales (V) before and
    after (``after`` equals ``targets``); ``targets``: reference full scales (V); ``quantile``:
    the full scale is this quantile of ``|y|`` (None: ``max |y|``); ``signed``: of ``y`` instead
    of ``|y|`` (the reference tool's signed max); ``bounds``: per stage, the largest ``|w|``
    allowed (weight units; None: unlimited); ``limited``: the stages whose target could not be
    reached without a weight beyond its bound, with that bound (their ``after`` is below the
    target and their largest ``|w|`` equals the bound).
    """

    state: dict[str, Tensor]
    scales: dict[str, float]
    before: dict[str, float]
    after: dict[str, float]
    targets: dict[str, float]
    quantile: float | None
    signed: bool = False
    bounds: dict[str, float | None] = field(default_factory=dict)
    limited: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:  # everything but the tensors (JSON-ready)
        keys = ("targets", "scales", "before", "after", "quantile", "signed", "limited")
        return {**{k: getattr(self, k) for k in keys}, "weight_bounds": self.bounds}


@torch.no_grad()
def calibrate(
    model: Main,
    x: Tensor,
    *,
    quantile: float | None = None,
    batch_size: int = 1000,
    signed: bool = False,
) -> dict[str, float]:
    """Full scale (V) of every stage's noiseless MAC output over the images ``x``.

    ``FS = max |y|`` over all images and MACs of the stage (running max over batches), or the
    ``q``-quantile of ``|y|`` (linear interpolation, as ``torch.quantile``). The quantile keeps a
    running top-``m`` buffer, ``m = n - floor(q (n - 1))`` of the ``n`` values, so it is exact and
    holds only ``(1 - q) n`` values (no list of activations, no 16M-element limit). Temporal noise
    is off (on a copy; the caller's model is untouched); other nonidealities are as in ``model``.
    ``signed``: the max (or quantile) of ``y`` itself, as the reference tool did, instead of ``|y|``
    (differs where a stage swings further negative than positive).
    """
    if quantile is not None and not 0.0 < quantile <= 1.0:
        raise AanntwinError(f"quantile = {quantile}: must be in (0, 1] (None = max |y|)")
    n_images = len(x)
    if n_images == 0 or batch_size < 1:
        raise AanntwinError(f"calibrate: {n_images} images, batch_size {batch_size}: need >= 1")
    quiet = model.without_temporal_noise().eval()
    like = quiet.conv.weight
    peak: dict[str, Tensor] = {}  # per stage: running max |y|
    top: dict[str, Tensor] = {}  # per stage: the largest m values of |y| so far
    total: dict[str, int] = {}  # per stage: n, the count of |y| over all images
    for start in range(0, n_images, batch_size):
        xb = x[start : start + batch_size].to(device=like.device, dtype=like.dtype)
        for name, y in quiet.mac_outputs(xb).items():
            v = y.flatten() if signed else y.abs().flatten()
            if quantile is None:
                m = v.max()
                peak[name] = m if name not in peak else torch.maximum(peak[name], m)
                continue
            total.setdefault(name, n_images * (v.numel() // len(xb)))
            keep = total[name] - math.floor(quantile * (total[name] - 1))
            if name in top:
                v = torch.cat((top[name], v))
            top[name] = v if v.numel() <= keep else v.topk(keep, sorted=False).values
    if quantile is None:
        return {name: float(p) for name, p in peak.items()}
    return {name: _from_top(t, total[name], quantile) for name, t in top.items()}


def _from_top(top: Tensor, n: int, q: float) -> float:
    """The q-quantile of n values from their largest ``n - floor(q (n - 1))``."""
    frac = (q * (n - 1)) % 1.0  # linear interpolation between the two smallest kept values
    low = top.topk(min(2, top.numel()), largest=False).values.tolist()  # ascending
    return low[0] + (low[-1] - low[0]) * frac


def _targets(targets: float | dict[str, float], names: list[str]) -> dict[str, float]:
    """Per-stage targets (V): a number for every stage, or a dict (missing stages: 1.0 V)."""
    given = targets if isinstance(targets, dict) else dict.fromkeys(names, targets)
    for name, volts in given.items():
        if name not in names or not (math.isfinite(volts) and volts > 0):
            raise AanntwinError(
                f"normalization target {name} = {volts!r} V: stages are {', '.join(names)}, "
                "each with a positive number of volts"
            )
    return {name: float(given.get(name, 1.0)) for name in names}


def tightest(*bounds: dict[str, float | None]) -> dict[str, float | None]:
    """Per stage, the smallest of several weight bounds (weight units; None where all are None),
    e.g. of the nonidealities a model was trained with and those it is evaluated with."""
    names = dict.fromkeys(name for b in bounds for name in b)
    out: dict[str, float | None] = {}
    for name in names:
        given = [v for b in bounds if (v := b.get(name)) is not None]
        out[name] = min(given) if given else None
    return out


def normalize(
    model: Main,
    x: Tensor,
    targets: float | dict[str, float] = 1.0,
    *,
    quantile: float | None = None,
    batch_size: int = 1000,
    signed: bool = False,
    bounds: dict[str, float | None] | None = None,
) -> NormalizationResult:
    """Rescale weights and biases so each stage's full scale equals its target (V).

    ``a_k = target_k / FS_k`` (``FS_k`` from :func:`calibrate` on ``x``); stage k's weights are
    multiplied by ``a_k / a_{k-1}`` and its bias by ``a_k``, so every hidden signal is ``a_k``
    times the original and the class scores are ``a_last`` times the original (same argmax).
    ``targets``: volts for every stage, or ``{stage: volts}`` (missing stages 1.0 V). Returns a
    new state; the caller's model and tensors are never modified.

    ``bounds``: per stage, the largest ``|w|`` (weight units; None or missing: unlimited);
    default the model's own (:meth:`~aanntwin.model.Main.weight_bounds`: characterized range,
    fixed quantizer reference). A stage whose scaled weights would exceed it gets the largest
    ``a_k`` that keeps them inside (``max |w| = bound``), is listed in ``limited`` and falls short
    of its target; the later stages still reach theirs and the function is unchanged.

    The function is preserved exactly only with ReLU cutoff 0 (positive homogeneity) and no
    input-side or output nonlinearities (clip, polynomial, saturation, ADC/DAC, offsets are not
    homogeneous): normalize the ideal model, then apply nonidealities. That is the purpose: set
    each stage's signal swing to the circuit's voltage range. ``after`` is measured on the
    normalized model, so any departure shows there.
    """
    names = model.stage_names()
    goal = _targets(targets, names)
    before = calibrate(model, x, quantile=quantile, batch_size=batch_size, signed=signed)
    for name, fs in before.items():
        if not (math.isfinite(fs) and fs > 0):
            raise AanntwinError(f"stage {name}: full scale {fs:g} V; cannot normalize a dead stage")
    limits = model.weight_bounds() if bounds is None else bounds
    limits = {name: limits.get(name) for name in names}
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    scales: dict[str, float] = {}
    limited: dict[str, float] = {}
    prev = 1.0
    for name in names:
        w, a, bound = state[f"{name}.weight"], goal[name] / before[name], limits[name]
        if bound is not None:
            peak = float(w.abs().max())  # one host sync per stage
            if peak * a / prev > bound:
                a, limited[name] = bound * prev / peak, bound
        w.mul_(a / prev)
        if bound is not None:
            w.clamp_(-bound, bound)  # rounding of the product: at most one ulp
        if f"{name}.bias" in state:
            state[f"{name}.bias"].mul_(a)
        scales[name] = prev = a
    result = NormalizationResult(state, scales, before, {}, goal, quantile, signed, limits, limited)
    after = calibrate(
        apply(model, result), x, quantile=quantile, batch_size=batch_size, signed=signed
    )
    result.after = after
    return result


def apply(model: Main, result: NormalizationResult) -> Main:
    """A deep copy of ``model`` with the normalized weights (nonidealities and chip kept)."""
    new = copy.deepcopy(model)
    new.load_state_dict(result.state)
    return new


def normalize_run(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    targets: float | dict[str, float] = 1.0,
    quantile: float | None = None,
    calibration_images: int = 10000,
    data_dir: str | None = None,
    device: str = "cpu",
    signed: bool = False,
) -> NormalizationResult:
    """Normalize a trained folder (ideal model) on its first training images; write ``out``.

    ``out`` gets ``weights.safetensors``, ``config.json`` (the run's) and ``normalization.json``
    (targets, scales, before/after full scales in V, quantile, weight bounds, limited stages,
    images, source): a folder that ``aanntwin evaluate`` and :func:`~aanntwin.runs.load_run`
    read. Weights stay within the bounds of the nonidealities the run was trained with (its
    characterized weight range, a fixed quantizer reference), as training kept them.
    """
    src, dst = Path(run_dir), Path(out)
    if dst.resolve() == src.resolve():
        raise AanntwinError(f"{dst}: the output folder must differ from the trained folder")
    if calibration_images < 1:
        raise AanntwinError(f"calibration_images = {calibration_images}: must be >= 1")
    dev = resolve_device(device)
    cfg, model = load_run(src, device=dev)
    _targets(targets, model.stage_names())  # fail before loading any data
    data = run_dataset(src, cfg, data_dir, dev)
    x = data.x_train[:calibration_images]
    bounds = model.weight_bounds(cfg.nonidealities)
    result = normalize(model, x, targets, quantile=quantile, signed=signed, bounds=bounds)
    record = {**result.to_dict(), "calibration_images": len(x), "dataset": cfg.dataset}
    record["source"] = str(src.resolve())
    write_model(dst, cfg, apply(model, result))
    write_json_atomic(dst / "normalization.json", record)
    return result
