"""Measuring a command as a subprocess: wall time and peak memory (RSS) of its process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path


def tree_rss_mb(root: int) -> float:
    """Summed RSS (MB) of ``root`` and its descendants now (Linux /proc; 0 elsewhere)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    pages = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                pages += int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measured(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Run ``argv``: wall seconds, the peak RSS of its largest process (``wait4``: the command and
    the descendants it waited for, MB) and the peak summed RSS of its tree (sampled every 0.2 s).
    The command's output goes to stderr; a failure raises with its exit code."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=sys.stderr)
    peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "tree_rss_mb": peak[0]}


def isolated_env(tmp: str) -> dict[str, str]:
    """The environment of a subprocess figure: an empty checkpoint cache of its own."""
    return {**os.environ, "AANNTWIN_CACHE": str(Path(tmp) / "cache"), "OMP_WAIT_POLICY": "passive"}
