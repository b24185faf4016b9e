"""SIGKILL a sweep partway; the rerun finishes it, recomputes nothing, ends with the same CSV."""

import os
import signal
import subprocess
import sys
import time

from aanntwin.cli import main
from tests.conftest import REPO

SWEEP = [
    "sweep",
    "noise",
    "--epochs",
    "2",
    "--train-levels",
    "none,0.05,0.1,0.15,0.2,0.25",
    "--test-levels",
    "none,0:0.5:0.01",
    "--kinds",
    "input,relu_out",
    "--normalize-target",
    "none",
    "--no-progress",
]


def _rows(path):
    return path.read_text().splitlines() if path.exists() else []


def test_killed_sweep_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    env = {**os.environ, "AANNTWIN_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    monkeypatch.setenv("AANNTWIN_CACHE", str(tmp_path / "cache"))
    here = ["--workers", "1"]  # in this process: the resumed run's task calls are counted
    assert main([*SWEEP, *here, "--out", str(tmp_path / "whole")]) == 0  # trains the levels once
    whole = (tmp_path / "whole" / "results.csv").read_text()

    out = tmp_path / "killed"
    proc = subprocess.Popen(  # the default: one worker process per core
        [sys.executable, "-m", "aanntwin", *SWEEP, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline
        and proc.poll() is None
        and len(_rows(out / "results.csv")) < 52 * 3
    ):
        time.sleep(0.005)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _rows(out / "results.csv")
    assert 52 * 2 < len(partial) < 52 * 12 + 1  # some tasks done, not all

    from aanntwin.studies import noise

    calls = []
    original = noise._noise_task
    monkeypatch.setattr(noise, "_noise_task", _counting(original, calls))
    assert main([*SWEEP, *here, "--out", str(out)]) == 0
    assert (out / "results.csv").read_text() == whole
    finished = (len(partial) - 1) // 52
    assert len(calls) == 12 - finished  # only unfinished tasks ran again


def _counting(fn, calls):
    import functools

    @functools.wraps(fn)
    def wrapper(**kw):
        calls.append(kw)
        return fn(**kw)

    return wrapper
