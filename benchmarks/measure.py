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


class TreePeaks:
    """Samples the process tree of ``root`` while the ``with`` block runs: peak summed RSS
    (``rss``) and the largest ``VmHWM`` (``hwm``) every ``interval`` s, peak summed PSS
    (``pss``) every ``pss_every`` samples, MB. A PSS sample walks every process's page tables
    (~12 ms for a 650 MB process): at every 0.2 s over a study's five processes that took ~20 %
    of a core from the command measured on two cores. A process or peak that lasts less than
    an interval can be missed."""

    def __init__(self, root: int, interval: float = 0.2, pss_every: int = 5) -> None:
        self.root, self.interval, self.pss_every = root, interval, pss_every
        self.rss = self.pss = self.hwm = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        n = 0
        while not self._done.wait(self.interval):
            tree = _tree(self.root)
            self.rss = max(self.rss, tree_rss_mb(self.root, tree))
            self.hwm = max(self.hwm, largest_hwm_mb(tree))
            if n % self.pss_every == 0:
                self.pss = max(self.pss, tree_pss_mb(self.root, tree))
            n += 1

    def __enter__(self) -> TreePeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def measured(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Run ``argv``: wall seconds, the peak RSS of its largest process (``peak_rss_mb``: the
    largest ``VmHWM`` seen), the peak summed RSS of its tree (``tree_rss_mb``) and the peak summed
    PSS of its tree (``tree_pss_mb``: shared pages counted once, sampled each second), all MB
    (:class:`TreePeaks`).
    Not ``wait4``'s ru_maxrss: a child spawned with vfork starts from this process's peak there
    (this benchmark's own MNIST copy); it is the fallback off Linux. The command's output goes to
    stderr; a failure raises with its exit code."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=sys.stderr)
    with TreePeaks(proc.pid) as peak:
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}")
    return {"seconds": seconds, "peak_rss_mb": peak.hwm or usage.ru_maxrss / 1024,
            "tree_rss_mb": peak.rss, "tree_pss_mb": peak.pss}  # fmt: skip


def isolated_env(tmp: str) -> dict[str, str]:
    """The environment of a subprocess figure: an empty checkpoint cache of its own."""
    return {**os.environ, "AANNTWIN_CACHE": str(Path(tmp) / "cache"), "OMP_WAIT_POLICY": "passive"}
