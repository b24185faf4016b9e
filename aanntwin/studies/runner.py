"""Sweep engine: independent, idempotent tasks; results appended to CSV as they finish; resume.

A sweep is a list of :class:`Task` s. Each task computes the rows of one or more points and is
keyed by the hash of everything that determines them. :func:`run_tasks` skips tasks whose rows
are already in the result CSV, runs the rest on any ``concurrent.futures.Executor`` (in-process
when None, a ``ProcessPoolExecutor``, or a Dask ``Client(...).get_executor()``), appends each
finished task's rows to the CSV (flushed and fsynced), and at the end rewrites the CSV in task
order, so a run that was killed and resumed ends with the same file as an uninterrupted one.

The executors themselves (local worker processes, Dask) are :mod:`aanntwin.studies.pools`.
Results do not depend on the executor: evaluation is thread-count independent, and the studies
train with a fixed thread count (:data:`aanntwin.studies.common.TRAIN_THREADS`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from ..errors import AanntwinError
from ..io import atomic_path, write_error, write_json_atomic
from ..schema import stable_hash
from .pools import sized

KEY_COLUMN = "task_key"


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(**kwargs)`` returns the rows (dicts) of its points.

    ``fn`` must be a module-level function and ``kwargs`` picklable, so that process pools and
    Dask workers can run it; ``points`` is how many result rows it yields (for progress).
    """

    fn: Callable[..., list[dict[str, Any]]]
    kwargs: dict[str, Any]
    points: int = 1
    key: str = field(default="")

    def __post_init__(self) -> None:
        if not self.key:
            ident = {"fn": f"{self.fn.__module__}.{self.fn.__qualname__}", "kwargs": self.kwargs}
            object.__setattr__(self, "key", stable_hash(_jsonable(ident)))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def check_sweep_folder(folder: str | os.PathLike[str], study: str | None) -> None:
    """Refuse ``folder`` when it holds a ``config.json`` that is not a ``study`` sweep's (a
    trained run's, another study's): a sweep writes its own there. A missing or unreadable one
    is no earlier output worth keeping."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    found = config.get("study") if isinstance(config, dict) else None
    if found != study:
        what = f"a {found} sweep's" if isinstance(found, str) else "not a sweep's"
        hint = " (a trained run's?)" if isinstance(config, dict) and "model" in config else ""
        raise AanntwinError(
            f"{path}: {what} config{hint}, not a {study} sweep's: a sweep writes its own "
            "config.json there; give a new or empty folder, or the folder of an earlier "
            f"{study} sweep to resume it"
        )


class ResultStore:
    """``folder/results.csv`` (one row per point, a ``task_key`` column) + ``folder/config.json``."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        columns: Sequence[str],
        config: dict[str, Any],
        name: str = "results",
    ) -> None:
        self.folder = Path(folder)
        self.columns = [*columns, KEY_COLUMN]
        self.csv = self.folder / f"{name}.csv"
        self.config_path = self.folder / "config.json"
        self.config = _jsonable(config)

    def open(self, resume: bool = True, points: dict[str, int] | None = None) -> None:
        """Prepare the folder; without ``resume`` earlier results are discarded. ``points``
        (rows per task key): a task whose rows in the file are not exactly that many (cut by a
        kill, a line lost or damaged, a row repeated) has them all dropped, so that it runs
        again."""
        check_sweep_folder(self.folder, self.config.get("study"))
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(exc, self.folder) from exc
        if not resume and self.csv.exists():
            self.csv.unlink()
        if self.csv.exists():
            self._drop_partial_line()
            rows = self._read()
            header = rows[0] if rows else None
            if header is not None and header != self.columns:
                raise AanntwinError(
                    f"{self.csv}: its columns differ from this sweep's; use another --out or "
                    "--no-resume"
                )
            self._drop_unfinished_tasks(rows, points or {})
        write_json_atomic(self.config_path, self.config)

    def _drop_partial_line(self) -> None:
        """A kill mid-write can leave a last line without its newline: cut it off."""
        data = self.csv.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut != len(data):
            with open(self.csv, "r+b") as fh:
                fh.truncate(cut)

    def _read(self) -> list[list[str]]:
        """The CSV's rows, header first; bytes that are not UTF-8 (a damaged line) read as
        U+FFFD, which marks their row as damaged (:meth:`_whole`)."""
        with open(self.csv, newline="", encoding="utf-8", errors="replace") as fh:
            return list(csv.reader(fh))

    def _whole(self, rows: list[list[str]]) -> list[list[str]]:
        """The data rows that are intact: the header's field count, no undecodable byte."""
        n = len(self.columns)
        return [r for r in rows[1:] if len(r) == n and not any("\ufffd" in c for c in r)]

    def _drop_unfinished_tasks(self, rows: list[list[str]], points: dict[str, int]) -> None:
        """Keep the rows of whole tasks only: a task with fewer intact rows than its ``points``
        or with a row twice (no task yields the same row twice) runs again. Rows of tasks this
        sweep does not have stay (:meth:`finalize` leaves them out of the final file)."""
        whole = self._whole(rows)
        seen: dict[str, set[tuple[str, ...]]] = {}
        broken = set()
        for r in whole:
            mine = seen.setdefault(r[-1], set())
            if tuple(r) in mine:
                broken.add(r[-1])
            mine.add(tuple(r))
        broken |= {k for k, n in points.items() if k in seen and len(seen[k]) < n}
        keep = [r for r in whole if r[-1] not in broken]
        if len(keep) + 1 < len(rows):
            with atomic_path(self.csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerows([rows[0], *keep])

    def _rows(self) -> list[list[str]]:
        return self._whole(self._read()) if self.csv.exists() else []

    def done_keys(self) -> set[str]:
        return {r[-1] for r in self._rows()}

    def append(self, key: str, rows: Iterable[dict[str, Any]]) -> None:
        """Append one task's rows durably (flush + fsync); the header comes first.

        The rows go out in one write, so a kill leaves a task's rows whole or a torn last line
        (cut on resume); a failed write (disk full) is undone and raised as one line."""
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        if not self.csv.exists() or self.csv.stat().st_size == 0:
            writer.writerow(self.columns)
        for row in rows:
            missing = set(self.columns[:-1]) - row.keys()
            if missing:
                raise ValueError(f"row lacks columns {sorted(missing)}")  # a bug, not input
            writer.writerow([_cell(row[c]) for c in self.columns[:-1]] + [key])
        data = buffer.getvalue().encode("utf-8")
        try:
            with open(self.csv, "ab") as fh:
                start = fh.tell()
                try:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                except OSError:
                    fh.truncate(start)
                    raise
        except OSError as exc:
            raise write_error(exc, self.csv) from exc

    def finalize(self, order: Sequence[str]) -> None:
        """Rewrite the CSV atomically with rows in task order (rows of a task keep their order)."""
        rank = {k: i for i, k in enumerate(order)}
        rows = [r for r in self._rows() if r[-1] in rank]
        rows.sort(key=lambda r: rank[r[-1]])  # stable: keeps each task's row order
        with atomic_path(self.csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.columns)
            writer.writerows(rows)

    def frame(self) -> Any:
        return pd.read_csv(self.csv) if self.csv.exists() else pd.DataFrame(columns=self.columns)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value  # csv writes repr() of floats: exact round trip


def run_tasks(
    tasks: Sequence[Task],
    store: ResultStore,
    executor: Executor | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    desc: str = "sweep",
) -> Any:
    """Run what is not done yet, append results as tasks finish, return the DataFrame."""
    store.open(resume, {t.key: t.points for t in tasks})
    done = store.done_keys()
    pending = [t for t in tasks if t.key not in done]
    total = sum(t.points for t in tasks)
    bar = tqdm(
        total=total,
        initial=total - sum(t.points for t in pending),
        desc=desc,
        unit="point",
        disable=not progress,
    )
    try:
        executor = sized(executor, len(pending))
        if executor is None:
            for task in pending:
                store.append(task.key, task.fn(**task.kwargs))
                bar.update(task.points)
        else:
            futures = {executor.submit(t.fn, **t.kwargs): t for t in pending}
            for fut in as_completed(futures):
                task = futures[fut]
                store.append(task.key, fut.result())
                bar.update(task.points)
    finally:
        bar.close()
    store.finalize([t.key for t in tasks])
    return store.frame()
