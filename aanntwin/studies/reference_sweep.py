"""Reference-tool sweep results -> the noise sweep's tidy ``results.csv``.

The reference tool writes ``{"results": {train_level: {test_level: [[loss, accuracy], ...]}}}``
(levels as strings such as ``"0.0"``, V; one ``[loss, accuracy]`` pair per run). This module
writes the columns of :data:`aanntwin.studies.noise_sweep.COLUMNS` (one row per point: mean and
std over its runs, ``std`` the sample std as the noise sweep's, 0 for one run) into
``results.csv``, every run into ``runs.csv`` (``train_level``, ``test_level``, ``run``, ``loss``,
``accuracy``) and the grid and source into ``config.json``, so the report's tables and plots read
an imported sweep as one of their own.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import statistics
from pathlib import Path
from typing import Any

from ..errors import AanntwinError
from ..io import read_json_file, write_text_atomic
from ..schema import stable_hash
from .noise import KINDS
from .noise_sweep import COLUMNS
from .runner import ResultStore

RUN_COLUMNS = ["train_level", "test_level", "run", "loss", "accuracy"]
"""Columns of ``runs.csv``: one row per reference run (levels in V, accuracy a fraction)."""
REFERENCE_TRAIN_KINDS = "input"
"""The reference tool trained with input noise only (README: differences from the reference)."""
_OFF = ("none", "null", "off")


def _level(text: str, where: str) -> float | None:
    """A level key: a finite number >= 0 (V) or none/null/off (the nonideality off)."""
    if text.strip().lower() in _OFF:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise AanntwinError(f"{where}: level {text!r} is not a number >= 0 (V) or none")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AanntwinError(f"{where} = {value!r}: must be a finite number")
    return float(value)


def parse_reference_sweep(
    data: Any, path: str
) -> list[tuple[float | None, float | None, list[tuple[float, float]]]]:
    """``(train_level, test_level, [(loss, accuracy), ...])`` per point, in the file's order;
    accuracies as the file has them. Errors name the path inside the JSON."""
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict):
        got = "no 'results' key" if isinstance(data, dict) else f"a {type(data).__name__}"
        raise AanntwinError(f"{path}: expected an object with results[train_level][test_level] "
                            f"= [[loss, accuracy], ...]; found {got}")  # fmt: skip
    if not results:
        raise AanntwinError(f"{path}: results is empty")
    points = []
    seen: dict[tuple[float | None, float | None], str] = {}
    for train, tests in results.items():
        where = f"{path}: results[{train!r}]"
        train_level = _level(train, where)
        if not isinstance(tests, dict) or not tests:
            raise AanntwinError(f"{where}: expected a non-empty object of test levels, found "
                                f"{type(tests).__name__}")  # fmt: skip
        for test, runs in tests.items():
            at = f"{where}[{test!r}]"
            test_level = _level(test, at)
            if (train_level, test_level) in seen:
                raise AanntwinError(f"{at}: the same point as {seen[train_level, test_level]}")
            seen[train_level, test_level] = f"results[{train!r}][{test!r}]"
            if not isinstance(runs, list) or not runs:
                raise AanntwinError(f"{at}: expected a non-empty list of [loss, accuracy] pairs")
            pairs = []
            for r, pair in enumerate(runs):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise AanntwinError(f"{at}[{r}] = {pair!r}: expected [loss, accuracy]")
                loss = _number(pair[0], f"{at}[{r}][0] (loss)")
                acc = _number(pair[1], f"{at}[{r}][1] (accuracy)")
                if loss < 0 or acc < 0 or acc > 100:
                    raise AanntwinError(f"{at}[{r}] = {pair!r}: loss must be >= 0 and accuracy "
                                        "in 0..1 (or 0..100 %)")  # fmt: skip
                pairs.append((loss, acc))
            points.append((train_level, test_level, pairs))
    return points


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value), computed exactly (equal values: std 0)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std


def import_reference_sweep(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    kind: str = "input",
    dataset: str | None = None,
) -> tuple[int, int, bool]:
    """Write ``out/results.csv``, ``out/runs.csv`` and ``out/config.json`` of a reference sweep
    file; ``kind``: the noise kind its test levels set (:data:`~aanntwin.studies.noise.KINDS`).

    Accuracies above 1 anywhere in the file mean the file holds percent: all are divided by 100.
    Returns (points, runs, percent). ``out`` is written in place (the CLI wraps it in
    :func:`~aanntwin.io.output_dir`).
    """
    if kind not in KINDS:
        raise AanntwinError(f"--kind {kind!r}: must be one of {', '.join(KINDS)}")
    where = os.fspath(path)
    raw = Path(where).read_bytes() if Path(where).is_file() else None
    points = parse_reference_sweep(read_json_file(where, "reference sweep"), where)
    percent = any(acc > 1 for *_, pairs in points for _, acc in pairs)
    scale = 0.01 if percent else 1.0
    sha = hashlib.sha256(raw or b"").hexdigest()
    by_train: dict[Any, list[dict[str, Any]]] = {}
    runs_csv = io.StringIO(newline="")
    writer = csv.writer(runs_csv)
    writer.writerow(RUN_COLUMNS)
    for train, test, pairs in points:
        losses = [loss for loss, _ in pairs]
        accs = [acc * scale for _, acc in pairs]
        acc_mean, acc_std = _mean_std(accs)
        loss_mean, loss_std = _mean_std(losses)
        by_train.setdefault(train, []).append({
            "dataset": dataset, "train_level": train, "train_kinds": REFERENCE_TRAIN_KINDS,
            "kind": kind, "test_level": test, "accuracy_mean": acc_mean, "accuracy_std": acc_std,
            "loss_mean": loss_mean, "loss_std": loss_std, "runs": len(pairs), "seed": None,
            "common_random_numbers": None, "normalized": None,
        })  # fmt: skip
        for r, (loss, acc) in enumerate(zip(losses, accs, strict=True)):
            writer.writerow(["" if v is None else v for v in (train, test, r, loss, acc)])
    config = {
        "study": "noise",
        "imported_from": {"tool": "reference", "path": os.path.abspath(where), "sha256": sha},
        "dataset": dataset,
        "train_levels": list(by_train),
        "test_levels": list(dict.fromkeys(t for _, t, _ in points)),
        "kinds": [kind],
        "train_kinds": [REFERENCE_TRAIN_KINDS],
        "accuracy_unit": "percent (divided by 100 here)" if percent else "fraction",
    }
    store = ResultStore(out, COLUMNS, config)
    store.open(resume=False)
    keys = []
    for train, rows in by_train.items():
        keys.append(stable_hash({"reference_sweep": sha, "train_level": train}))
        store.append(keys[-1], rows)
    store.finalize(keys)
    write_text_atomic(Path(out) / "runs.csv", runs_csv.getvalue())
    return len(points), sum(len(p) for *_, p in points), percent
