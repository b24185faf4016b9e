"""Epoch checkpoint cache: resume training exactly where it stopped, reuse finished runs.

Layout: ``<root>/checkpoints/<key>/epoch-NNNN.pt``, one file per finished epoch (the older one is
removed once the newer is safely written). ``key`` hashes everything that changes the weights
(dataset content, model, training params, training nonidealities, normalization, seed, dtype).
Files are written atomically and read with ``torch.load(weights_only=True)``: nothing is
unpickled.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .errors import AanntwinError, FaultError
from .io import write_bytes_atomic

CACHE_ENV = "AANNTWIN_CACHE"
_EPOCH_FILE = re.compile(r"^epoch-(\d{4,})\.pt$")


def cache_root() -> Path:
    """``$AANNTWIN_CACHE``, else ``$XDG_CACHE_HOME/aanntwin``, else ``~/.cache/aanntwin``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "aanntwin"


class CheckpointCache:
    """Per-key folders of epoch checkpoints."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "checkpoints"
        self.writable = True
        """False once a write failed for a reason other than a full disk: training goes on
        without checkpoints (with one warning) instead of losing its finished work."""

    def folder(self, key: str) -> Path:
        return self.root / key

    def _epochs(self, key: str) -> list[tuple[int, Path]]:
        folder = self.folder(key)
        if not folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH_FILE.match(p.name))]
        return sorted(found)

    def save(self, key: str, epoch: int, state: dict[str, Any]) -> Path | None:
        """Write the checkpoint after ``epoch`` atomically, then drop older ones. A cache that
        cannot be written (a file in the way, no permission, read-only) warns once and is
        skipped from then on (None); a full disk is raised (the run's output could not be
        written either), the last checkpoint kept."""
        if not self.writable:
            return None
        path = self.folder(key) / f"epoch-{epoch:04d}.pt"
        buffer = io.BytesIO()  # serialized in memory: a write error is an OSError of ours, not
        torch.save(state, buffer)  # one from inside torch's zip writer
        try:
            write_bytes_atomic(path, buffer.getvalue())  # makes the folders; errors as ours
        except FaultError:
            raise
        except AanntwinError as exc:
            self.writable = False
            warnings.warn(f"checkpoint cache {self.root}: {exc}; training goes on without "
                          f"checkpoints (set ${CACHE_ENV} to a writable folder, or pass "
                          "--no-cache)", stacklevel=2)  # fmt: skip
            return None
        for e, old in self._epochs(key):
            if e < epoch:
                old.unlink(missing_ok=True)
        return path

    def readable(
        self, key: str, map_location: torch.device | str = "cpu"
    ) -> Iterator[tuple[int, Any]]:
        """The readable checkpoints ``(epoch, what the file holds)``, newest first, each loaded
        when asked for. An unreadable file (e.g. from a crashed older version) is skipped;
        whether what a file holds is a checkpoint of this run is for the caller to check."""
        for epoch, path in reversed(self._epochs(key)):
            try:
                state = torch.load(path, map_location=map_location, weights_only=True)
            except Exception:  # noqa: BLE001 - a damaged checkpoint is recomputed, not fatal
                continue
            yield epoch, state

    def latest(self, key: str, map_location: torch.device | str = "cpu") -> tuple[int, Any] | None:
        """The newest readable checkpoint ``(epoch, state)``, or None (see :meth:`readable`)."""
        return next(self.readable(key, map_location), None)
