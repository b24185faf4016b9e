"""``--dask-scheduler``: the address form is checked as the command line is parsed; whatever
is at the address (nothing, a silent server such as an HTTP server, junk) is one error line
and exit 2 within the connect timeout, never a hang or a traceback; a real scheduler works
with and without its ``tcp://``. Every command runs on a thread of its own that the test
waits for a bounded time."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from aanntwin.cli import main
from aanntwin.errors import AanntwinError
from aanntwin.studies import dask_scheduler, pools

SWEEP = ["sweep", "architecture", "--dataset", "digits", "--epochs", "1", "--channels", "1",
         "--kernel", "3", "--stride", "1", "--pool", "1,2", "--limit", "2"]  # fmt: skip
COMMANDS = {
    "sweep architecture": SWEEP,
    "sweep noise": ["sweep", "noise", "--dataset", "digits", "--epochs", "1"],
    "specs": ["specs", "run"],
}
TIMEOUT = 2.0
"""The connect timeout the tests run with (the command's is DASK_CONNECT_TIMEOUT)."""


def _run(argv: list[str], limit: float = 30.0) -> tuple[int | None, float]:
    """``main(argv)``'s status (a SystemExit's code too) and seconds taken, on a daemon thread:
    a command still running after ``limit`` seconds fails the test instead of hanging it."""
    result: list[int | None] = []

    def target() -> None:
        try:
            result.append(main(argv))
        except SystemExit as exc:
            result.append(exc.code)  # type: ignore[arg-type]

    start = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"{' '.join(argv)}: still running after {limit} s (hangs)"
    return result[0], time.monotonic() - start


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("", "empty"),
        ("notanaddress", "no port number"),
        ("tcp://127.0.0.1", "no port number"),
        ("tcp://127.0.0.1:x", "not a scheduler address"),
        ("http://127.0.0.1:8786", "unknown scheme http://"),
        ("127.0.0.1:70000", "port 70000"),
    ],
)
def test_a_malformed_address_is_refused_as_the_command_line_is_parsed(
    tmp_path, capsys, command, address, message
):
    argv = [*COMMANDS[command], "--out", str(tmp_path / "o"), "--dask-scheduler", address]
    status, _ = _run(argv, limit=10)
    assert status == 2
    err = _error(capsys)
    assert "argument --dask-scheduler:" in err and message in err
    assert not (tmp_path / "o").exists()


def _server(reply: bytes | None) -> socket.socket:
    """A listening socket on 127.0.0.1 whose connections get ``reply`` (None: nothing, as an
    HTTP server waiting for a request line), then stay open."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            held.append(conn)
            if reply is not None:
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return server


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]  # nothing listens there once it is closed


@pytest.mark.parametrize("there", ["silent server", "junk", "nothing listening"])
def test_anything_but_a_scheduler_is_one_error_line_within_the_timeout(
    tmp_path, capsys, monkeypatch, there
):
    monkeypatch.setattr(dask_scheduler, "DASK_CONNECT_TIMEOUT", TIMEOUT)
    server = None
    if there == "nothing listening":
        port = _closed_port()
    else:
        server = _server(None if there == "silent server" else b"\x01\x02junk!\r\n")
        port = server.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    try:
        status, seconds = _run([*SWEEP, "--out", str(tmp_path / "o"), "--dask-scheduler", address])
    finally:
        if server is not None:
            server.close()
    assert status == 2 and seconds < TIMEOUT + 6
    err = _error(capsys)
    assert f"--dask-scheduler {address}: cannot connect to a Dask scheduler there (" in err
    assert not (tmp_path / "o").exists()
    if there == "nothing listening":  # said at once, not after Dask's retries
        assert "(connection refused: nothing listens on that port)" in err


def test_the_python_api_refuses_an_empty_address_instead_of_running_locally():
    with pytest.raises(AanntwinError, match="--dask-scheduler '': empty"):
        pools.executor_from_args("auto", "")


def test_a_real_scheduler_is_used_with_or_without_its_scheme():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        address = cluster.scheduler_address
        for given in (address, address.removeprefix("tcp://")):
            executor = pools.executor_from_args("auto", given)
            try:
                assert executor.submit(pow, 2, 5).result(timeout=30) == 32
            finally:
                executor._client.close()  # type: ignore[attr-defined]
