"""Decoded datasets as memory-mapped files, so the processes of a sweep share one copy.

Every study process decodes its dataset into float32 tensors (MNIST: about 220 MB); a sweep's
parent and workers would each hold their own copy. :func:`mapped` writes the tensors once as raw
files under ``<root>/<key>/`` (root: ``$AANNTWIN_DATASET_CACHE``, else
``<cache_root()>/datasets``) and returns the dataset with tensors mapped from them
(copy-on-write, ``MAP_PRIVATE``): the pages live once in the page cache whatever the number of
processes, and an in-place write to a tensor gets a private copy, never reaching the file.

``key`` hashes the dataset's name, content fingerprint, tensor dtypes and shapes and
:data:`FORMAT_VERSION`: an entry is immutable. It is written into a temporary sibling folder
that is renamed into place once complete (its manifest written last), so two processes starting
together never see half of one; an entry without a valid manifest is rewritten, not trusted.
A cache that cannot be written (read-only, full disk) leaves the dataset in memory, with a
warning; datasets under :data:`MIN_BYTES` are not worth a file and stay in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .cache import cache_root
from .data import Dataset
from .errors import AanntwinError
from .io import output_dir

DATASET_CACHE_ENV = "AANNTWIN_DATASET_CACHE"
FORMAT_VERSION = 1
"""Layout of an entry (raw little-endian tensor bytes + ``manifest.json``); part of the key."""
MIN_BYTES = 16 * 2**20
"""Datasets whose tensors total fewer bytes (16 MiB; the 8x8 digits: 0.5 MB) stay in memory."""
STALE_S = 3600.0
"""Age (s) after which a temporary entry folder counts as left by a killed writer."""
MANIFEST = "manifest.json"
TENSORS = ("x_train", "y_train", "x_test", "y_test")
_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8,
              torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)
}  # fmt: skip


def dataset_cache_root() -> Path:
    """``$AANNTWIN_DATASET_CACHE``, else ``<cache_root()>/datasets``."""
    env = os.environ.get(DATASET_CACHE_ENV)
    return Path(env) if env else cache_root() / "datasets"


def _specs(ds: Dataset) -> dict[str, dict[str, object]]:
    """Per tensor: dtype name, shape, byte count and file name (what the manifest records)."""
    specs = {}
    for field in TENSORS:
        t: Tensor = getattr(ds, field)
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in _DTYPES:
            raise TypeError(f"dataset {ds.name}: {field} has dtype {t.dtype}; cannot be mapped")
        nbytes = t.numel() * t.element_size()
        specs[field] = {"dtype": dtype, "shape": list(t.shape), "bytes": nbytes, "file": field}
    return specs


def entry_key(ds: Dataset) -> str:
    """The entry folder's name: a readable prefix of the dataset's name + a content-keyed hash."""
    identity = {"name": ds.name, "fingerprint": ds.fingerprint, "format": FORMAT_VERSION}
    text = json.dumps({**identity, "tensors": _specs(ds)}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(ds.name).name)[:40].strip("._") or "dataset"
    return f"{prefix}-{digest}"


def _complete(folder: Path, ds: Dataset) -> bool:
    """Whether ``folder`` holds a whole entry for ``ds``: its manifest matches and every tensor
    file has the byte count the manifest promises."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT_VERSION or manifest.get("tensors") != _specs(ds):
            return False
        return all(
            (folder / spec["file"]).stat().st_size == spec["bytes"]
            for spec in manifest["tensors"].values()
        )
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def _write_entry(folder: Path, ds: Dataset) -> None:
    """Write the entry into a temporary sibling of ``folder`` renamed into place
    (:func:`~aanntwin.io.output_dir`; an entry there, damaged or another process's identical
    one, is replaced: mappings of its files stay valid). Files are synced before the rename, the
    manifest last: its presence and matching sizes mark a whole entry."""
    _remove_stale(folder)
    specs = _specs(ds)
    manifest = {"format": FORMAT_VERSION, "name": ds.name, "fingerprint": ds.fingerprint,
                "n_classes": ds.n_classes, "source": ds.source, "verified": ds.verified,
                "tensors": specs}  # fmt: skip
    with output_dir(folder, "dataset cache", replaces=(MANIFEST, *TENSORS)) as tmp:
        for field, spec in specs.items():
            t = getattr(ds, field).detach().cpu().contiguous().reshape(-1)
            _write_synced(tmp / str(spec["file"]), memoryview(t.view(torch.uint8).numpy()))
        _write_synced(tmp / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())


def _write_synced(path: Path, data: memoryview | bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)  # raw bytes, no copy
        fh.flush()
        os.fsync(fh.fileno())


def _remove_stale(folder: Path) -> None:
    """Delete temporary folders of ``folder``'s entry left by a killed writer (older than
    :data:`STALE_S`; a younger one may still be being written by another process)."""
    now = time.time()
    for old in folder.parent.glob(f".{folder.name}.*-*"):
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > STALE_S:
                shutil.rmtree(old, ignore_errors=True)


def _map(folder: Path, ds: Dataset) -> Dataset:
    """``ds`` with its tensors mapped (``MAP_PRIVATE``) from the entry's files."""
    tensors = {}
    for field, spec in _specs(ds).items():
        dtype, shape = _DTYPES[str(spec["dtype"])], tuple(spec["shape"])  # type: ignore[arg-type]
        numel = getattr(ds, field).numel()
        if numel == 0:  # an empty file cannot be mapped
            tensors[field] = torch.empty(shape, dtype=dtype)
            continue
        # Copy-on-write bytes through numpy, reinterpreted: torch.from_file's storage keeps no
        # file descriptor, so pickling it for a worker (torch's fd sharing) failed with EBADF;
        # this one is copied into shared memory when it is sent, as any tensor.
        raw = np.memmap(folder / str(spec["file"]), dtype=np.uint8, mode="c")
        tensors[field] = torch.from_numpy(raw).view(dtype).view(shape)
    return dataclasses.replace(ds, **tensors)


def mapped(ds: Dataset, root: str | os.PathLike[str] | None = None) -> Dataset:
    """``ds`` equal in every field, its tensors mapped from a file of the dataset cache
    (:func:`dataset_cache_root`, or ``root``): written the first time, mapped after that.

    Datasets under :data:`MIN_BYTES` are returned as they are; so is ``ds`` (with a warning
    naming the folder and the reason) when the cache cannot be written or read.
    """
    if sum(getattr(ds, f).numel() * getattr(ds, f).element_size() for f in TENSORS) < MIN_BYTES:
        return ds
    if any(getattr(ds, f).device.type != "cpu" for f in TENSORS):
        return ds  # only host memory is worth sharing
    folder = (Path(root) if root is not None else dataset_cache_root()) / entry_key(ds)
    try:
        if not _complete(folder, ds):
            _write_entry(folder, ds)
        return _map(folder, ds)
    except (AanntwinError, OSError, ValueError) as exc:  # ValueError: numpy.memmap of a bad file
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        warnings.warn(
            f"dataset cache {folder}: cannot write or map {ds.name} ({reason}); "
            "keeping it in memory (every process holds its own copy)",
            stacklevel=2,
        )
        return ds
