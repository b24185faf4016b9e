"""Where a sweep's tasks run: local worker processes, sized by the work, or a Dask cluster.

Local processes (:class:`LocalPool`, the CLI's default ``--workers auto``) start when work is
submitted, ``min(cores, tasks)`` of them (one task: in this process), each with
``max(1, cores // workers)`` torch threads, so workers x threads stays within the cores. They are
forked from a server that preloaded torch and the study modules (:func:`worker_context`), see
the command's environment, and end when the command ends, even by kill -9.

A Dask scheduler's address is checked for its form first (:func:`check_dask_address`), then the
scheduler is asked who it is within :data:`DASK_CONNECT_TIMEOUT` seconds
(:func:`probe_scheduler`): whatever else is there, or nothing, is one error line.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import pickle
import re
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


DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
"""The address schemes of Dask's communication backends; none given: ``tcp``."""
DASK_CONNECT_TIMEOUT = 10.0
"""Seconds to reach a Dask scheduler and hear it answer as one (connection and handshake)."""

_DASK_ADDRESS = re.compile(
    r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})"
)


def check_dask_address(text: str) -> str:
    """``text`` if it has the form of a Dask scheduler address, ``scheme://host:port`` (schemes
    :data:`DASK_SCHEMES`) or ``host:port`` (port 1..65535); else ``AanntwinError`` (one line)."""
    form = "give scheme://host:port or host:port, e.g. tcp://scheduler:8786"
    if not text.strip():
        raise AanntwinError(f"--dask-scheduler {text!r}: empty; {form}")
    m = _DASK_ADDRESS.fullmatch(text)
    if m is None and ":" not in text.rpartition("://")[2]:
        raise AanntwinError(f"--dask-scheduler {text!r}: no port number; {form}")
    if m is None:
        raise AanntwinError(f"--dask-scheduler {text!r}: not a scheduler address; {form}")
    scheme = m["scheme"]
    if scheme is not None and scheme.lower() not in DASK_SCHEMES:
        raise AanntwinError(
            f"--dask-scheduler {text}: unknown scheme {scheme}://; use one of "
            f"{', '.join(s + '://' for s in DASK_SCHEMES)}"
        )
    if not 1 <= int(m["port"]) <= 65535:
        raise AanntwinError(f"--dask-scheduler {text}: port {m['port']}; ports are 1..65535")
    return text


def _no_scheduler(address: str, reason: object) -> AanntwinError:
    if isinstance(reason, MemoryError):  # a junk length prefix: an "array" of exabytes
        reason = f"what it sent is not Dask's protocol ({reason})"
    text = " ".join(str(reason).split()) or type(reason).__name__
    if len(text) > 200:
        text = text[:200] + "..."
    return AanntwinError(
        f"--dask-scheduler {address}: cannot connect to a Dask scheduler there ({text})"
    )


async def _reach(address: str) -> None:
    """Open and close a TCP connection to ``address`` (not ``ucx://``): a refused connection or
    an unknown host fails at once, named, where Dask would retry until its timeout."""
    import asyncio
    import socket

    m = _DASK_ADDRESS.fullmatch(address)
    if m is None or (m["scheme"] or "tcp").lower() == "ucx":
        return
    host = m["host"].strip("[]")
    try:
        _, writer = await asyncio.open_connection(host, int(m["port"]))
    except ConnectionRefusedError:
        raise ConnectionRefusedError("connection refused: nothing listens on that port") from None
    except socket.gaierror as exc:
        raise OSError(f"host {host} not found ({exc.strerror})") from None
    writer.close()


async def _identify(address: str, timeout: float) -> object:
    """What the process at ``address`` says it is, asked as a Dask client asks."""
    from distributed.comm import connect
    from distributed.security import Security

    await _reach(address)
    args = Security().get_connection_args("client")
    comm = await connect(address, timeout=timeout, **args)
    try:
        await comm.write({"op": "identity", "reply": True})
        return await comm.read()
    finally:
        comm.abort()


def probe_scheduler(address: str, timeout: float | None = None) -> None:
    """``AanntwinError`` (one line) unless a Dask scheduler at ``address`` answers within
    ``timeout`` seconds (default :data:`DASK_CONNECT_TIMEOUT`): refused, unreachable, silent
    (an HTTP server), junk or any failure of the handshake. Asked on a thread of its own, so it
    works where an event loop runs (a notebook); the wait is bounded by the timeout (plus 5 s
    should the thread itself not return)."""
    import asyncio

    timeout = DASK_CONNECT_TIMEOUT if timeout is None else timeout
    outcome: list[object] = []

    def ask() -> None:
        try:
            coro = asyncio.wait_for(_identify(address, timeout), timeout)
            outcome.append(asyncio.run(coro))
        except asyncio.TimeoutError:
            outcome.append(TimeoutError(f"no answer within {timeout:g} s"))
        except BaseException as exc:  # noqa: BLE001 - any failure: reported as one line
            outcome.append(exc)

    thread = threading.Thread(target=ask, name="dask-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    reply = outcome[0] if outcome else TimeoutError(f"no answer within {timeout:g} s")
    if isinstance(reply, BaseException):
        raise _no_scheduler(address, reply)
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        kind = reply.get("type") if isinstance(reply, dict) else type(reply).__name__
        raise _no_scheduler(address, f"it answered as {kind}, not as a scheduler")


def dask_executor(address: str) -> Executor:
    """The executor of a Dask client of the scheduler at ``address`` (checked, then probed:
    :func:`probe_scheduler`); every failure to connect is one ``AanntwinError`` line."""
    check_dask_address(address)
    try:
        from distributed import Client  # optional dependency (the dask extra)
    except ImportError:
        raise AanntwinError("--dask-scheduler needs Dask: pip install 'aanntwin[dask]'") from None
    probe_scheduler(address)
    try:
        client = Client(address, timeout=DASK_CONNECT_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - it went away, or refused this client
        raise _no_scheduler(address, exc) from None
    return client.get_executor()


def executor_from_args(
    workers: int | str | None, scheduler: str | None, threads: int | None = None
) -> Executor | None:
    """None (in-process: ``workers`` None or 1), a process pool of ``workers`` (each with
    ``threads`` torch threads, default ``cores // workers``), a :class:`LocalPool` sized by the
    work (``workers="auto"``), or a Dask client's executor (``scheduler`` not None: its address,
    see :func:`dask_executor`)."""
    if scheduler is not None:
        return dask_executor(scheduler)
    if workers == "auto":
        return LocalPool(None, threads) if cpu_cores() > 1 else None
    if isinstance(workers, int) and workers > 1:
        return process_pool(workers, threads)
    return None
