"""Where a sweep's tasks run: local worker processes, sized by the work, or a Dask cluster.

Local processes (:class:`LocalPool`, the CLI's default ``--workers auto``) start when work is
submitted, ``min(cores, tasks)`` of them (one task: in this process), each with
``max(1, cores // workers)`` torch threads, so workers x threads stays within the cores. They are
forked from a server that preloaded torch and the study modules (:func:`worker_context`), see
the command's environment, and end when the command ends, even by kill -9.

A Dask cluster: :func:`aanntwin.studies.dask_scheduler.dask_executor`.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from ..errors import AanntwinError
from .dask_scheduler import dask_executor


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


PRELOAD = ("aanntwin.studies.preload",)
"""What the fork server imports once (:mod:`aanntwin.studies.preload`: torch, torch._dynamo and
the study tasks' modules): its workers start without importing them again and share those pages
with it."""


def worker_context() -> multiprocessing.context.BaseContext:
    """How local workers start: forked from a fork server that preloaded :data:`PRELOAD` where
    the platform has one (Linux, macOS; it never ran torch, so no thread pool is forked), else
    spawned. Both start workers from a clean interpreter state, unlike a plain fork."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def in_child(fn: Callable[..., Any], /, *args: Any, threads: int = 1) -> Any:
    """``fn(*args)`` in a fresh interpreter that ends when it returns, on ``threads`` torch
    threads. What the call imports and allocates (training: torch.optim's ``torch._dynamo``,
    ~70 MB, and its working set) goes back to the system instead of staying in this long-lived
    process: a notebook kernel, whose next cells start ngspice or a pool beside it.

    A plain ``python`` subprocess, not a multiprocessing one: it does not import this process's
    main module again (a script calling this needs no ``__main__`` guard; a kernel's child does
    not load ipykernel), may be started from a daemon process (a Dask worker), and does not
    outlive the call as the fork server would. ``fn`` and ``args`` go to it pickled (``fn`` by
    its module path, found on this process's ``sys.path``); its result or exception comes back
    on a pipe of its own and is raised here. An interrupt here kills the child."""
    read_fd, write_fd = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                             pass_fds=(write_fd,))  # fmt: skip
    os.close(write_fd)
    try:
        try:
            with child.stdin:  # type: ignore[union-attr]
                pickle.dump((os.getpid(), threads, write_fd, sys.path), child.stdin)
                pickle.dump((fn, args), child.stdin)
        except BrokenPipeError:
            pass  # it ended before reading: reported below with its exit code
        with os.fdopen(read_fd, "rb") as replies:
            reply = replies.read()  # until the child closes it: it replied or it died
        child.wait()
    finally:  # interrupted here: the child is killed at once
        if child.poll() is None:
            child.kill()
            child.wait()
    if not reply:
        raise AanntwinError(
            f"the process running {getattr(fn, '__name__', fn)} ended without a result "
            f"(exit code {child.returncode}; killed for memory?)"
        )
    ok, value = pickle.loads(reply)  # noqa: S301 - written by our own child, just now
    if not ok:
        raise value
    return value


_CHILD = "from aanntwin.studies.pools import _child_main; _child_main()"


def _child_main() -> None:
    """The body of :func:`in_child`'s process: reads what to run on stdin, writes
    ``(True, result)`` or ``(False, exception)`` pickled to its reply pipe."""
    parent, threads, reply_fd, path = pickle.load(sys.stdin.buffer)
    sys.path[:] = path
    _init_worker(parent, threads, dict(os.environ))
    with os.fdopen(reply_fd, "wb") as out:
        try:
            fn, args = pickle.load(sys.stdin.buffer)
            reply: tuple[bool, Any] = (True, fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            reply = (False, exc)
        try:
            data = pickle.dumps(reply)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result or exception
            data = pickle.dumps((False, AanntwinError(f"{reply[1]!r} ({exc})")))
        out.write(data)


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
    work (``workers="auto"``), or a Dask client's executor (``scheduler`` not None: its address,
    see :func:`~aanntwin.studies.dask_scheduler.dask_executor`)."""
    if scheduler is not None:
        return dask_executor(scheduler)
    if workers == "auto":
        return LocalPool(None, threads) if cpu_cores() > 1 else None
    if isinstance(workers, int) and workers > 1:
        return process_pool(workers, threads)
    return None
