"""Reaching a Dask scheduler (``--dask-scheduler``): the address form is checked first
(:func:`check_dask_address`), then the scheduler is asked who it is within
:data:`DASK_CONNECT_TIMEOUT` seconds (:func:`probe_scheduler`): nothing there, a server that
says nothing (an HTTP server) or something else, or any failure of the handshake is one
``AanntwinError`` line, never a hang."""

from __future__ import annotations

import re
import threading
from concurrent.futures import Executor

from ..errors import AanntwinError

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
