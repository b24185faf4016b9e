"""Measuring a command as a subprocess: wall time and peak memory of its process tree (RSS, and
PSS: each shared page split among the processes that map it, so the tree's sum counts it once)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path


def _tree(root: int) -> set[int]:
    """``root`` and its descendants now (Linux /proc; just ``root`` elsewhere)."""
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
    return tree


def tree_rss_mb(root: int, tree: set[int] | None = None) -> float:
    """Summed RSS (MB) of ``root`` and its descendants now (Linux /proc; 0 elsewhere). Shared
    pages (the torch libraries every spawned worker maps) count once per process."""
    pages = 0
    for pid in _tree(root) if tree is None else tree:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                pages += int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def tree_pss_mb(root: int, tree: set[int] | None = None) -> float:
    """Summed PSS (MB) of ``root`` and its descendants now: each process's ``Pss:`` line of
    ``/proc/PID/smaps_rollup`` (kB; a page shared by n processes counts 1/n in each), so shared
    library pages count once over the tree: what the tree costs the machine. 0 without
    ``smaps_rollup`` (Linux 4.14+)."""
    kb = 0
    for pid in _tree(root) if tree is None else tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                kb += next((int(ln.split()[1]) for ln in fh if ln.startswith("Pss:")), 0)
        except (OSError, ValueError, IndexError):
            pass
    return kb / 1024


def largest_hwm_mb(tree: set[int]) -> float:
    """The largest ``VmHWM`` (MB: the peak RSS of a process since its last exec) among ``tree``;
    0 off Linux."""
    kb = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status") as fh:
                kb = max(kb, next((int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:")), 0))
        except (OSError, ValueError, IndexError):
            pass
    return kb / 1024


def measured(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Run ``argv``: wall seconds, the peak RSS of its largest process (``peak_rss_mb``: the
    largest ``VmHWM`` seen), the peak summed RSS of its tree (``tree_rss_mb``) and the peak summed
    PSS of its tree (``tree_pss_mb``: shared pages counted once), all MB, sampled every 0.2 s
    (a process that lives less than that can be missed). Not ``wait4``'s ru_maxrss: a child
    spawned with vfork starts from this process's peak there (this benchmark's own MNIST copy);
    it is the fallback off Linux. The command's output goes to stderr; a failure raises with its
    exit code."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=sys.stderr)
    peak, done = {"rss": 0.0, "pss": 0.0, "hwm": 0.0}, threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            tree = _tree(proc.pid)
            peak["rss"] = max(peak["rss"], tree_rss_mb(proc.pid, tree))
            peak["pss"] = max(peak["pss"], tree_pss_mb(proc.pid, tree))
            peak["hwm"] = max(peak["hwm"], largest_hwm_mb(tree))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}")
    return {"seconds": seconds, "peak_rss_mb": peak["hwm"] or usage.ru_maxrss / 1024,
            "tree_rss_mb": peak["rss"], "tree_pss_mb": peak["pss"]}  # fmt: skip


def isolated_env(tmp: str) -> dict[str, str]:
    """The environment of a subprocess figure: an empty checkpoint cache of its own."""
    return {**os.environ, "AANNTWIN_CACHE": str(Path(tmp) / "cache"), "OMP_WAIT_POLICY": "passive"}
