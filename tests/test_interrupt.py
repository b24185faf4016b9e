"""kill -9 in the middle of training loses at most the epoch in progress."""

import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from aanntwin.cli import main
from tests.conftest import REPO

# Same thread count everywhere: reductions in another order round differently.
ARGS = [
    "train",
    "--dataset",
    "digits",
    "--epochs",
    "30",
    "--batch-size",
    "16",
    "--no-progress",
    "--threads",
    "1",
]


def test_sigkill_mid_training_then_rerun_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    env = {**os.environ, "AANNTWIN_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aanntwin", *ARGS, "--out", str(tmp_path / "a")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name >= "epoch-0003.pt" for p in cache.glob("checkpoints/*/epoch-*.pt")):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "a" / "metrics.json").exists()

    monkeypatch.setenv("AANNTWIN_CACHE", str(cache))
    assert main([*ARGS, "--out", str(tmp_path / "a")]) == 0
    import json

    timing = json.loads((tmp_path / "a" / "timing.json").read_text())
    assert 3 <= timing["resumed_from_epoch"] < 30
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert len(metrics["history"]) == 30
    assert main([*ARGS, "--no-cache", "--out", str(tmp_path / "b")]) == 0
    a = load_file(tmp_path / "a" / "weights.safetensors")
    b = load_file(tmp_path / "b" / "weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Identical inputs give byte-identical run files, interrupted or not (timings aside).
    for name in ("weights.safetensors", "config.json", "metrics.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
