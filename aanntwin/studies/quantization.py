"""Quantization study (DESIGN.md §2): accuracy with one layer's weights clipped or quantized.

For one MAC stage (``conv``, ``hidden0`` ..., ``linear``) and parameter (``weight``/``bias``) each
point sets ``ref = ref_sigma * std`` (population std of that parameter, weight units) and tests
with the parameter ``clipped`` (``clamp(w, -ref, ref)``) or ``quantized`` by
:func:`aanntwin.functional.quantize_weights` (DESIGN.md §1 levels; clipped rows have empty
``bits``/``zero_level``). Other layers keep their trained values. When the weight is studied, the
point's clip or quantizer replaces the stage's own ``*_weight_bits``/``*_weight_ref`` (both off);
a bias point keeps them. Every other nonideality applies as the layer applies it
(``weight_range``, ``weight_nonlin``, gain and offset mismatch, saturation, noise, ADC ...).

Every row equals run 0 of :func:`aanntwin.training.evaluate` (same ``seed`` and ``batch_size``)
on a copy of the model changed that way: the class scores are evaluate's bit for bit, so the
accuracy is exactly evaluate's; the loss agrees to float32 rounding (relative difference about
1e-7, summed in another order: see :func:`_score`). How:

- slices: evaluate's (1000 images on the CPU, 16384 on a GPU); the signal up to the studied
  stage (the prefix) runs once per slice, the rest of the network once per point and slice;
- noise: evaluate's stream ``noise_seed(seed, 0)``. Its state is saved after a slice's prefix
  and restored before each point's rest; draws do not depend on the signal, so every point
  draws what evaluate draws on the changed model, and the next slice's prefix continues from
  where evaluate's would;
- final stage: :meth:`~aanntwin.layers.AnalogLinear.mac_variants` shares the input transfer
  and the weight transform (the layer's own: range clip, polynomial, gain mismatch) across the
  points, then runs one matrix product per point, the forward's own, and the layer's offset,
  saturation, noise and ADC (``finish``). One product over all points at once would be about
  twice as fast but sums in another order: last-bit differences in the scores can move argmax
  ties and ADC levels (rarely: none in 2.7 million MNIST predictions tried, but nothing
  guarantees it);
- points with equal parameter values (e.g. every 0-bit zero-level point) are evaluated once.

The caller's model is never changed (a copy is used).
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
import os
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import functional as AF
from ..config import load_config
from ..errors import AanntwinError
from ..model import Main
from ..runs import load_run, weights_sha256
from ..schema import FLOAT32_MAX
from ..training import eval_batch_size, noise_seed, summed_cross_entropy
from .common import cached_dataset, resolve_device
from .runner import ResultStore, Task, run_tasks

COLUMNS = ["layer", "param", "ref_sigma", "ref", "bits", "zero_level", "mode", "accuracy"]
COLUMNS += ["loss", "n"]
PARAMS = ("weight", "bias")
MAX_BITS = 24
_CHUNK_BYTES = 2**28  # a chunk of points: their parameter values (+ final-stage outputs of a slice)
Variants = Iterator[tuple[dict[str, Any], Tensor]]


def reference_sigmas(top: float = 6.0) -> list[float]:
    """The reference grid: 0.1..``top`` in steps of 0.1 (default 60 values, out to 6 weight
    stds: trained weights reach 4-5 stds, and a grid that stops short clips every point;
    rounded to 1e-10 so they print cleanly)."""
    return [round(float(v), 10) for v in np.linspace(0.1, top, round(top / 0.1))]


def _listed(name: str, values: Any, ok: Callable[[Any], bool], allowed: str, cast=None) -> list:
    """De-duplicated ``values``; AanntwinError naming the option when empty or one is bad."""
    try:
        out = [] if isinstance(values, str) else list(dict.fromkeys(values))
    except TypeError:  # not iterable, or unhashable items
        raise AanntwinError(f"{name} = {values!r}: not a list; allowed: {allowed}") from None
    bad = [v for v in out if not ok(v)]
    if isinstance(values, str) or not out or bad:
        got = (f"{values!r} is not a list" if isinstance(values, str)
               else f"{bad[0]!r} is not allowed" if bad else "the list is empty")  # fmt: skip
        raise AanntwinError(f"{name}: {got}; allowed: {allowed}")
    return [cast(v) for v in out] if cast else out


def _validate(layers: Any, allowed: list[str], params: Any, refs: Any, bits: Any, zeros: Any):
    real = lambda r: isinstance(r, numbers.Real) and not isinstance(r, bool)  # noqa: E731
    integer = lambda b: isinstance(b, numbers.Integral) and not isinstance(b, bool)  # noqa: E731
    refs = reference_sigmas() if refs is None else refs
    positive = lambda r: real(r) and 0 < r <= FLOAT32_MAX  # noqa: E731
    bit_count = lambda b: integer(b) and 0 <= b <= MAX_BITS  # noqa: E731
    boolean = lambda z: isinstance(z, (bool, np.bool_))  # noqa: E731
    return (
        _listed("layers", layers, allowed.__contains__, f"one or more of {', '.join(allowed)}"),
        _listed("params", params, PARAMS.__contains__, " and/or ".join(PARAMS)),
        _listed("ref_sigmas", refs, positive, "finite numbers > 0 and <= 3.4e38 (in stds)", float),
        _listed("bits", bits, bit_count, f"integers 0..{MAX_BITS}", int),
        _listed("zero_levels", zeros, boolean, "True and/or False", bool),
    )


def _variants(w: Tensor, refs: list[float], bits: list[int], zeros: list[bool]) -> Variants:
    """(row fields, modified parameter) of every point, in row order."""
    std = float(w.double().std(correction=0)) if w.numel() > 1 else 0.0
    if std == 0:
        raise AanntwinError("this parameter has zero spread (std 0): no reference can be derived")
    for s in refs:
        ref = s * std
        if ref > FLOAT32_MAX:
            raise AanntwinError(f"ref_sigmas: {s:g} x std {std:.4g} = {ref:.4g} is beyond the "
                                "float32 range of the weights (|x| <= 3.4e38)")  # fmt: skip
        row = {"ref_sigma": s, "ref": ref, "bits": None, "zero_level": None, "mode": "clipped"}
        yield row, w.clamp(-ref, ref)
        for b in bits:
            for z in zeros:
                row = {**row, "bits": b, "zero_level": z, "mode": "quantized"}
                yield row, AF.quantize_weights(w, b, ref, z)


def _score(z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Correct counts and summed cross-entropy (float64) per point of class scores ``(P, N, C)``.

    The predictions and the loss are evaluate's exactly (``max`` returns the first maximal
    index, as ``argmax``; :func:`~aanntwin.training.summed_cross_entropy`, one log-sum-exp pass
    over all points).
    """
    top, pred = z.max(-1)
    return (pred == y).sum(1), summed_cross_entropy(z, y, top)


def _split(work: Main, layer: str) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """``(prefix, rest)`` of the forward pass around ``layer``: ``rest(prefix(x))`` runs the same
    steps in the same order as ``work(x)`` (the same noise draws); ``rest`` starts at the stage."""
    if layer in ("conv", "linear"):
        tap = "input" if layer == "conv" else "linear_in"
        return lambda x: work.forward_until(x, tap), lambda h: work.forward_from(h, tap)
    hidden = work.hidden_names
    k = hidden.index(layer)

    def run(h: Tensor, names: list[str]) -> Tensor:
        for name in names:
            h = getattr(work, f"{name}_relu")(getattr(work, name)(h))
        return h

    def prefix(x: Tensor) -> Tensor:
        return run(work.forward_until(x, "features"), hidden[:k])

    return prefix, lambda h: work.forward_from(run(h, hidden[k:]), "linear_in")


def _distinct(stack: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct variants of a stack ``(P, ...)`` and, per variant, its row among them:
    equal parameters give equal results, so each is evaluated once. Equal means equal values:
    quantizers return -0.0 or +0.0 by the weight's sign, and a zero's sign changes no sum it
    enters and no comparison, so no prediction and no loss."""
    distinct, inverse = torch.unique(stack.flatten(1), dim=0, return_inverse=True)
    return distinct.view(-1, *stack.shape[1:]), inverse


def _points(
    work: Main, layer: str, param: str, variants: Variants, x: Tensor, y: Tensor, bs: int, seed: int
) -> list[tuple]:
    """(fields, correct count, summed loss) of every point: evaluate's run 0, point by point.

    Slices outer, points inner: a slice's prefix runs once (right after the previous slice's
    draws, as in evaluate), then each point restores the stream state saved after it. Points go
    in chunks of about :data:`_CHUNK_BYTES`; later chunks reuse the saved prefixes and states.
    """
    stage = getattr(work, layer)
    target = getattr(stage, param)
    prefix, rest = _split(work, layer)
    work.reseed(noise_seed(seed, 0))
    gen = work.noise_source.generator(x.device)  # None on the meta device: nothing to draw
    slices = list(zip(x.split(bs), y.split(bs), strict=True))
    saved: list[tuple[Tensor, Tensor | None]] = []  # per slice: prefix signal, stream state
    size = target.numel() + (bs * stage.out_features if layer == "linear" else 0)
    per_chunk = max(1, _CHUNK_BYTES // (size * target.element_size()))
    results: list[tuple] = []
    for group in iter(lambda: list(islice(variants, per_chunk)), []):
        fields, values = zip(*group, strict=True)
        stack, inverse = _distinct(torch.stack(values))
        correct = torch.zeros(len(stack), dtype=torch.int64, device=x.device)
        loss = torch.zeros(len(stack), dtype=torch.float64, device=x.device)
        for s, (xb, yb) in enumerate(slices):
            if s == len(saved):  # first chunk: the stream is where evaluate's is here
                h = prefix(xb)
                saved.append((h, None if gen is None else gen.get_state()))
            h, state = saved[s]
            z = None
            if layer == "linear":  # all points' MAC outputs of this slice
                z = stage.mac_variants(h, **{"weights" if param == "weight" else "biases": stack})
            # Every point's class scores of this slice, in one buffer: a list of small tensors
            # left between each point's temporaries kept the heap fragmented (MNIST conv grid:
            # 2.3 GB peak, 1.2 GB still held after the study).
            outs: Tensor | None = None
            for p in range(len(stack)):
                if gen is not None:
                    gen.set_state(state)
                if z is not None:
                    out = stage.finish(z[p])
                else:
                    target.copy_(stack[p])
                    out = rest(h)
                if outs is None:
                    outs = out.new_empty((len(stack), *out.shape))
                outs[p] = out
            c, ls = _score(outs, yb)  # type: ignore[arg-type]
            correct += c
            loss += ls
        results += zip(fields, correct[inverse].tolist(), loss[inverse].tolist(), strict=True)
    return results


@torch.no_grad()
def quantization_points(
    model: Main,
    x: Tensor,
    y: Tensor,
    layer: str,
    *,
    param: str = "weight",
    ref_sigmas: Iterable[float] | None = None,
    bits: Iterable[int] = range(8),
    zero_levels: Iterable[bool] = (True, False),
    batch_size: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Rows (columns :data:`COLUMNS`) of every point of one layer and parameter, in process.

    ``ref_sigmas`` default to :func:`reference_sigmas`. Each row equals run 0 of
    ``evaluate(changed, x, y, seed=seed, batch_size=batch_size)`` exactly (see the module
    docstring); ``batch_size`` (images per pass) defaults to evaluate's.
    """
    names = model.stage_names()
    _, _, refs, bits_, zeros = _validate([layer], names, [param], ref_sigmas, bits, zero_levels)
    work = copy.deepcopy(model).eval()
    stage = getattr(work, layer)
    if param == "weight":  # the point's clip or quantizer replaces the stage's own
        stage.configure(dataclasses.replace(stage.settings, weight_bits=None, weight_ref=None))
    target = getattr(stage, param)
    if target is None:
        raise AanntwinError(f"layer {layer} has no {param}")
    variants = _variants(target.detach().clone(), refs, bits_, zeros)
    bs = batch_size or eval_batch_size(x.device)
    results = _points(work, layer, param, variants, x, y, bs, seed)
    n = len(y)
    head = {"layer": layer, "param": param}
    return [
        {**head, **f, "accuracy": int(c) / n, "loss": float(ls) / n, "n": n} for f, c, ls in results
    ]


# ----------------------------------------------------------------------------- sweep integration
def _quantization_task(
    run_dir: str,
    dataset: str,
    data_dir: str | None,
    device: str,
    layer: str,
    param: str,
    ref_sigmas: list[float],
    bits: list[int],
    zero_levels: list[bool],
    nonidealities: Any = None,
    weights_sha256: str = "",
) -> list[dict[str, Any]]:
    """One (layer, param) chunk (data loaded once per worker); ``weights_sha256`` keys the task."""
    _, model = load_run(run_dir, nonidealities, device)
    data = cached_dataset(dataset, data_dir, device)
    grid = {"ref_sigmas": ref_sigmas, "bits": bits, "zero_levels": zero_levels}
    return quantization_points(model, data.x_test, data.y_test, layer, param=param, **grid)


def quantization_tasks(
    run_dir: str | os.PathLike[str],
    *,
    layers: Iterable[str] | None = None,
    params: Iterable[str] = ("weight",),
    ref_sigmas: Iterable[float] | None = None,
    bits: Iterable[int] = range(8),
    zero_levels: Iterable[bool] = (True, False),
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    nonidealities: Any = None,
) -> list[Task]:
    """One :class:`Task` per (layer, param) of a trained folder (``layers=None``: every stage),
    evaluated with ``nonidealities`` (default: all off); the weights' hash enters each key."""
    cfg, model = load_run(run_dir)  # checks the folder; cheap
    names = model.stage_names()
    grid = (names if layers is None else layers, names, params, ref_sigmas, bits, zero_levels)
    layers, params, refs, bits, zeros = _validate(*grid)
    sha = weights_sha256(run_dir)
    kw = dict(run_dir=os.fspath(run_dir), dataset=cfg.dataset, device=resolve_device(device))
    kw.update(data_dir=None if data_dir is None else os.fspath(data_dir), ref_sigmas=refs)
    kw.update(bits=bits, zero_levels=zeros, nonidealities=nonidealities, weights_sha256=sha)
    size = len(refs) * (1 + len(bits) * len(zeros))
    pairs = [(la, p) for la in layers for p in params]
    return [Task(_quantization_task, {**kw, "layer": la, "param": p}, size) for la, p in pairs]


def run_quantization(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    layers: Iterable[str] | None = None,
    params: Iterable[str] = ("weight",),
    ref_sigmas: Iterable[float] | None = None,
    bits: Iterable[int] = range(8),
    zero_levels: Iterable[bool] = (True, False),
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    executor: Any = None,
    resume: bool = True,
    progress: bool = True,
    nonidealities: Any = None,
) -> Any:
    """The study of a trained folder into ``out/results.csv`` + ``out/config.json``, resumable
    (see :func:`quantization_tasks`); returns the DataFrame."""
    kw = dict(layers=layers, params=params, ref_sigmas=ref_sigmas, bits=bits, device=device)
    kw.update(zero_levels=zero_levels, data_dir=data_dir, nonidealities=nonidealities)
    tasks = quantization_tasks(run_dir, **kw)
    config = {"study": "quantization", **tasks[0].kwargs}
    for key in ("layer", "param"):
        config[f"{key}s"] = list(dict.fromkeys(t.kwargs[key] for t in tasks))
        del config[key]
    config["run_config"] = load_config(os.path.join(run_dir, "config.json")).to_dict()
    store = ResultStore(out, COLUMNS, config)
    return run_tasks(tasks, store, executor, resume=resume, progress=progress, desc="quantization")


def recommend(df: Any, max_drop: float = 0.01, param: str = "weight",
              baseline: float | None = None) -> dict[str, dict | None]:  # fmt: skip
    """Per layer, the quantized point with the fewest bits whose accuracy is at most ``max_drop``
    below the reference (ties: highest accuracy, then smallest ref_sigma); None where no point
    qualifies.

    The reference is ``baseline``, the unchanged model's accuracy (fraction): the spec's
    criterion (:meth:`~aanntwin.studies.specs.SpecSearch.fewest_bits`, ``ideal - max_drop``).
    Without it, the layer's best clipped-only accuracy on the grid: that is the unchanged model's
    only when the grid's largest ref covers the layer's largest |w|; a grid that stops short
    clips every point, and "within 1 point" of a clipped reference can lose several points
    against the model (digits: 3 std against weights out to 5 std lost 6 points).

    Each recommendation also has ``reference`` (the accuracy it was held to) and ``edge``: ""
    or which grid edge the chosen point sits on (its ref_sigma the smallest or largest swept,
    or its bits the most swept), since a better point may lie beyond it.
    """
    out: dict[str, dict | None] = {}
    for layer, g in df[df["param"] == param].groupby("layer", sort=False):
        best = float(g.loc[g["mode"] == "clipped", "accuracy"].max())
        reference = best if baseline is None else float(baseline)
        ok = g[(g["mode"] == "quantized") & (g["accuracy"] >= reference - max_drop - 1e-12)]
        order = ["bits", "accuracy", "ref_sigma"]
        r = ok.sort_values(order, ascending=[True, False, True], kind="stable").head(1)
        out[str(layer)] = None
        if not r.empty:
            r = r.iloc[0]
            rec = {k: float(r[k]) for k in ("ref_sigma", "ref", "accuracy")}
            rec.update(bits=int(r["bits"]), zero_level=bool(r["zero_level"]), clipped_accuracy=best)
            out[str(layer)] = {**rec, "drop": reference - rec["accuracy"], "reference": reference,
                               "edge": grid_edge(g, rec["ref_sigma"], rec["bits"])}  # fmt: skip
    return out


def grid_edge(g: Any, ref_sigma: float, bits: int | None = None) -> str:
    """Which edge of one layer's swept grid (rows ``g``) a point is at: ``""`` when inside,
    else e.g. ``"ref_sigma 3 is the largest swept: widen ref_sigmas"`` (a point on the edge may
    have a better neighbour outside the grid)."""
    refs = g["ref_sigma"].astype(float)
    notes = []
    if len(refs.unique()) > 1 and ref_sigma >= refs.max():
        notes.append(f"ref_sigma {ref_sigma:g} is the largest swept: widen ref_sigmas")
    elif len(refs.unique()) > 1 and ref_sigma <= refs.min():
        notes.append(f"ref_sigma {ref_sigma:g} is the smallest swept: widen ref_sigmas")
    swept = g["bits"].dropna()
    if bits is not None and len(swept.unique()) > 1 and bits >= swept.max():
        notes.append(f"{bits} bits is the most swept: widen bits")
    return "; ".join(notes)
