"""Sweep engine: independent, idempotent tasks; results appended to CSV as they finish; resume.

A sweep is a list of :class:`Task` s. Each task computes the rows of one or more points and is
keyed by the hash of everything that determines them. :func:`run_tasks` skips tasks whose rows
are already in the result CSV, runs the rest on any ``concurrent.futures.Executor`` (in-process
when None, a ``ProcessPoolExecutor``, or a Dask ``Client(...).get_executor()``), appends each
finished task's rows to the CSV (flushed and fsynced), and at the end rewrites the CSV in task
order, so a run that was killed and resumed ends with the same file as an uninterrupted one.

Local processes (:class:`LocalPool`, the CLI's default ``--workers auto``) start when work is
submitted, ``min(cores, tasks)`` of them (one task: in this process), each with
``max(1, cores // workers)`` torch threads, so workers x threads stays within the cores. Results
do not depend on the executor: evaluation is thread-count independent, and the studies train
with a fixed thread count (:data:`aanntwin.studies.common.TRAIN_THREADS`).
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import io
import json
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from ..errors import AanntwinError
from ..io import atomic_path, write_error, write_json_atomic
from ..schema import stable_hash

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
        (rows per task key): the last task in the file with fewer rows was cut by a kill, its
        rows are dropped so that it runs again."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(exc, self.folder) from exc
        if not resume and self.csv.exists():
            self.csv.unlink()
        if self.csv.exists():
            self._drop_partial_line()
            with open(self.csv, newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), None)
            if header is not None and header != self.columns:
                raise AanntwinError(
                    f"{self.csv}: its columns differ from this sweep's; use another --out or "
                    "--no-resume"
                )
            self._drop_unfinished_task(points or {})
        write_json_atomic(self.config_path, self.config)

    def _drop_partial_line(self) -> None:
        """A kill mid-write can leave a last line without its newline: cut it off."""
        data = self.csv.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut != len(data):
            with open(self.csv, "r+b") as fh:
                fh.truncate(cut)

    def _drop_unfinished_task(self, points: dict[str, int]) -> None:
        """Cut torn rows (fewer fields) and the rows of a last task that has fewer than its
        ``points`` rows (a kill between its rows) off the end of the file."""
        with open(self.csv, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        keep = len(rows)
        while keep > 1 and len(rows[keep - 1]) != len(self.columns):
            keep -= 1
        if keep > 1:
            last = rows[keep - 1][-1]
            n = sum(1 for r in rows[1:keep] if len(r) == len(self.columns) and r[-1] == last)
            if n < points.get(last, 0):
                while keep > 1 and rows[keep - 1][-1] == last:
                    keep -= 1
        if keep < len(rows):
            with atomic_path(self.csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerows(rows[:keep])

    def _rows(self) -> list[list[str]]:
        if not self.csv.exists():
            return []
        with open(self.csv, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        return [r for r in rows[1:] if len(r) == len(self.columns)]

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


def die_with_parent(parent: int) -> None:
    """In a worker process: exit when the command that started it (pid ``parent``) dies, so
    that a kill -9 of a sweep leaves no worker computing on.

    A spawned worker is the command's child and gets SIGKILL with it (Linux
    ``prctl(PR_SET_PDEATHSIG)``). A worker forked by the fork server is that server's child, and
    the server lives as long as any of its workers: a thread watches the command instead (a
    pidfd where the kernel has them, else a check each second)."""
    if sys.platform.startswith("linux"):
        starter = os.getppid()
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != starter:  # it died before prctl took effect
            os._exit(1)
    if os.getppid() != parent:
        threading.Thread(target=_exit_after, args=(parent,), daemon=True).start()


def _exit_after(pid: int) -> None:
    """Block until process ``pid`` has ended, then end this process at once."""
    try:
        fd = os.pidfd_open(pid)  # readable once the process has exited (Linux >= 5.3)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd: poll
        while _alive(pid):
            time.sleep(1.0)
        os._exit(1)
    select.select([fd], [], [])
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _init_worker(parent: int, threads: int, environ: dict[str, str]) -> None:
    """A local worker process: dies with its parent, sees the command's environment as it was
    when the pool started (a fork server's children inherit the server's, from its own start),
    runs torch on ``threads`` threads."""
    die_with_parent(parent)
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    import torch

    torch.set_num_threads(threads)


PRELOAD = (
    "aanntwin.studies.noise_sweep",
    "aanntwin.studies.specs",
    "aanntwin.studies.quantization",
    "aanntwin.studies.architecture",
)
"""What the fork server imports once (torch and the study tasks' modules): its workers start
without importing them again, and share those pages with it (~100 MB less per worker)."""


def worker_context() -> multiprocessing.context.BaseContext:
    """How local workers start: forked from a fork server that preloaded :data:`PRELOAD` where
    the platform has one (Linux, macOS; it never ran torch, so no thread pool is forked), else
    spawned. Both start workers from a clean interpreter state, unlike a plain fork."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def process_pool(workers: int, threads: int | None = None) -> ProcessPoolExecutor:
    """``workers`` worker processes (:func:`worker_context`), each with ``threads`` torch threads
    (default ``max(1, cores // workers)``: no more threads than cores), killed with this
    process."""
    threads = threads or max(1, cpu_cores() // workers)
    return ProcessPoolExecutor(workers, mp_context=worker_context(),
                               initializer=_init_worker,
                               initargs=(os.getpid(), threads, dict(os.environ)))  # fmt: skip


class LocalPool(Executor):
    """Local worker processes started on first use, sized by the work (:func:`sized`):
    ``min(max_workers, tasks)`` processes, none for a single task (it runs in this process,
    with no start-up cost). Started once, the pool serves every later batch of tasks."""

    def __init__(self, max_workers: int | None = None, threads: int | None = None) -> None:
        self.max_workers = max_workers or cpu_cores()
        self.threads = threads
        self.pool: ProcessPoolExecutor | None = None

    def sized(self, tasks: int) -> Executor | None:
        """The executor for ``tasks`` independent tasks (None: run them in this process)."""
        if self.pool is None and (tasks <= 1 or self.max_workers <= 1):
            return None
        if self.pool is None:
            self.pool = process_pool(min(self.max_workers, tasks), self.threads)
        return self.pool

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        pool = self.sized(self.max_workers)
        if pool is None:  # one worker: an already finished future
            from concurrent.futures import Future

            fut: Future[Any] = Future()
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                fut.set_exception(exc)
            return fut
        return pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait, cancel_futures=cancel_futures)
            self.pool = None


@contextlib.contextmanager
def owned(executor: Executor | str | None, device: str = "cpu") -> Iterator[Executor | None]:
    """``executor`` as given, except ``"auto"``: a :class:`LocalPool` (one process per core) on
    the CPU, stopped when the block ends; on a GPU (None) the work stays in this process."""
    if executor != "auto":
        yield executor  # type: ignore[misc]
        return
    pool = LocalPool() if device.split(":")[0] == "cpu" else None
    try:
        yield pool
    finally:
        if pool is not None:
            pool.shutdown()


def sized(executor: Executor | None, tasks: int) -> Executor | None:
    """Where ``tasks`` independent tasks run: a :class:`LocalPool` sizes itself (None: in this
    process); any other executor is returned as it is."""
    return executor.sized(tasks) if isinstance(executor, LocalPool) else executor


def executor_from_args(
    workers: int | str | None, scheduler: str | None, threads: int | None = None
) -> Executor | None:
    """None (in-process: ``workers`` None or 1), a process pool of ``workers`` (each with
    ``threads`` torch threads, default ``cores // workers``), a :class:`LocalPool` sized by the
    work (``workers="auto"``), or a Dask client's executor."""
    if scheduler:
        try:
            from distributed import Client  # optional dependency (the dask extra)
        except ImportError:
            raise AanntwinError(
                "--dask-scheduler needs Dask: pip install 'aanntwin[dask]'"
            ) from None
        return Client(scheduler).get_executor()
    if workers == "auto":
        return LocalPool(None, threads) if cpu_cores() > 1 else None
    if isinstance(workers, int) and workers > 1:
        return process_pool(workers, threads)
    return None
