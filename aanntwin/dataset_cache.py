"""Decoded datasets as memory-mapped files, so the processes of a sweep share one copy.

Every study process decodes its dataset into float32 tensors (MNIST: about 220 MB); a sweep's
parent and workers would each hold their own copy. :func:`mapped` writes the tensors once as raw
files under ``<root>/<key>/`` (root: ``$AANNTWIN_DATASET_CACHE``, else
``<cache_root()>/datasets``) and returns the dataset with tensors mapped from them
(copy-on-write, ``MAP_PRIVATE``): the pages live once in the page cache whatever the number of
processes, and an in-place write to a tensor gets a private copy, never reaching the file.
Where the training images are 8-bit pixels (IDX, CIFAR-10), the entry also holds their uint8
codes (:attr:`~aanntwin.data.Dataset.train_codes`): training reads 47 MB of MNIST per epoch
instead of 188 MB, and only that much of the dataset stays resident while models train.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .cache import cache_root
from .data import Dataset, load_dataset, source_files
from .errors import AanntwinError
from .idx import UnverifiedDataWarning
from .io import output_dir, write_json_atomic
from .pixels import unit_codes

DATASET_CACHE_ENV = "AANNTWIN_DATASET_CACHE"
FORMAT_VERSION = 3
"""Layout of an entry (raw little-endian tensor bytes + ``manifest.json``; 2: with the training
images' pixel codes where they are made of them; 3: with each file's stamp); part of the key."""
MIN_BYTES = 16 * 2**20
"""Datasets whose tensors total fewer bytes (16 MiB; the 8x8 digits: 0.5 MB) stay in memory."""
STALE_S = 3600.0
"""Age (s) after which a temporary entry folder counts as left by a killed writer."""
MANIFEST = "manifest.json"
SOURCES = "sources"
"""Folder of the root holding one small JSON per set of source files seen (their paths, inodes,
sizes and times): which entry they decode to, so :func:`load_mapped` skips the decoding."""
_CATEGORIES = {c.__name__: c for c in (UnverifiedDataWarning, UserWarning)}
TENSORS = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("train_codes",)
"""Tensors an entry holds when the dataset has them (:attr:`~aanntwin.data.Dataset.train_codes`)."""
_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8,
              torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)
}  # fmt: skip


def dataset_cache_root() -> Path:
    """``$AANNTWIN_DATASET_CACHE``, else ``<cache_root()>/datasets``."""
    env = os.environ.get(DATASET_CACHE_ENV)
    return Path(env) if env else cache_root() / "datasets"


def _spec(ds: Dataset, field: str) -> dict[str, object]:
    """What the manifest records of one tensor: dtype name, shape, byte count and file name."""
    t: Tensor = getattr(ds, field)
    dtype = str(t.dtype).removeprefix("torch.")
    if dtype not in _DTYPES:
        raise TypeError(f"dataset {ds.name}: {field} has dtype {t.dtype}; cannot be mapped")
    return {"dtype": dtype, "shape": list(t.shape), "bytes": t.numel() * t.element_size(),
            "file": field}  # fmt: skip


def _specs(ds: Dataset) -> dict[str, dict[str, object]]:
    """The manifest's record of the four tensors every dataset has (what the key covers)."""
    return {field: _spec(ds, field) for field in TENSORS}


def entry_key(ds: Dataset) -> str:
    """The entry folder's name: a readable prefix of the dataset's name + a content-keyed hash."""
    identity = {"name": ds.name, "fingerprint": ds.fingerprint, "format": FORMAT_VERSION}
    text = json.dumps({**identity, "tensors": _specs(ds)}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(ds.name).name)[:40].strip("._") or "dataset"
    return f"{prefix}-{digest}"


def _file_stamp(path: Path) -> list[int]:
    """What changes when a file is written to, replaced or copied: inode, size, mtime (ns)."""
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _whole(folder: Path) -> dict[str, Any] | None:
    """``folder``'s manifest if it marks a whole entry of this format: the four tensors (and
    only known optional ones), every file of the byte count the manifest promises and with the
    stamp it recorded (a file written to since, even at the same size, is not trusted: the
    entry is decoded again); else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        tensors = manifest.get("tensors") if manifest.get("format") == FORMAT_VERSION else None
        names = set(tensors) if isinstance(tensors, dict) else set()
        if not set(TENSORS) <= names <= {*TENSORS, *OPTIONAL}:
            return None
        stamps = manifest["stamps"]
        if all(
            _file_stamp(folder / f) == stamps[f] and stamps[f][1] == spec["bytes"]
            for f, spec in tensors.items()
        ):
            return manifest
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        pass
    return None


def _manifest(folder: Path, ds: Dataset) -> dict[str, dict[str, object]] | None:
    """The tensors recorded in ``folder``'s manifest if it holds a whole entry for ``ds`` (its
    four tensors as ``ds`` has them); None otherwise."""
    manifest = _whole(folder)
    if manifest is None or {f: manifest["tensors"][f] for f in TENSORS} != _specs(ds):
        return None
    return manifest["tensors"]


def _write_entry(folder: Path, ds: Dataset) -> None:
    """Write the entry, with ``x_train``'s pixel codes when it is made of them
    (:func:`~aanntwin.pixels.unit_codes`), into a temporary sibling of ``folder`` renamed into
    place (:func:`~aanntwin.io.output_dir`; an entry there, damaged or another process's
    identical one, is replaced: mappings of its files stay valid). Files are synced before the
    rename, the manifest last: its presence and matching sizes mark a whole entry."""
    _remove_stale(folder)
    codes = ds.train_codes if ds.train_codes is not None else unit_codes(ds.x_train)
    full = dataclasses.replace(ds, train_codes=codes)
    specs = {
        **_specs(full),
        **({"train_codes": _spec(full, "train_codes")} if codes is not None else {}),
    }
    manifest = {"format": FORMAT_VERSION, "name": ds.name, "fingerprint": ds.fingerprint,
                "n_classes": ds.n_classes, "source": ds.source, "verified": ds.verified,
                "tensors": specs}  # fmt: skip
    with output_dir(folder, "dataset cache", replaces=(MANIFEST, *TENSORS, *OPTIONAL)) as tmp:
        for field, spec in specs.items():
            t = getattr(full, field).detach().cpu().contiguous().reshape(-1)
            _write_synced(tmp / str(spec["file"]), memoryview(t.view(torch.uint8).numpy()))
        # the rename into place keeps inodes and times: the stamps hold for the final files
        manifest["stamps"] = {f: _file_stamp(tmp / str(s["file"])) for f, s in specs.items()}
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


def _map(folder: Path, ds: Dataset, tensors: dict[str, dict[str, object]]) -> Dataset:
    """``ds`` with its tensors, and the codes the entry holds, mapped (``MAP_PRIVATE``) from the
    entry's files (``tensors``: the manifest's record of them)."""
    mapped_tensors = {}
    for field, spec in tensors.items():
        dtype, shape = _DTYPES[str(spec["dtype"])], tuple(spec["shape"])  # type: ignore[arg-type]
        if spec["bytes"] == 0:  # an empty file cannot be mapped
            mapped_tensors[field] = torch.empty(shape, dtype=dtype)
            continue
        # Copy-on-write bytes through numpy, reinterpreted: torch.from_file's storage keeps no
        # file descriptor, so pickling it for a worker (torch's fd sharing) failed with EBADF;
        # this one is copied into shared memory when it is sent, as any tensor.
        raw = np.memmap(folder / str(spec["file"]), dtype=np.uint8, mode="c")
        mapped_tensors[field] = torch.from_numpy(raw).view(dtype).view(shape)
    return dataclasses.replace(ds, **mapped_tensors)


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
        tensors = _manifest(folder, ds)
        if tensors is None:
            _write_entry(folder, ds)
            tensors = _manifest(folder, ds)
        if tensors is None:
            raise AanntwinError("the entry just written does not read back whole")
        return _map(folder, ds, tensors)
    except (AanntwinError, OSError, ValueError) as exc:  # ValueError: numpy.memmap of a bad file
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        warnings.warn(
            f"dataset cache {folder}: cannot write or map {ds.name} ({reason}); "
            "keeping it in memory (every process holds its own copy)",
            stacklevel=2,
        )
        return ds


def _stamp(paths: list[Path]) -> list[list[object]]:
    """Each file's resolved path, inode, size, modification and change times (ns); an absent
    file (a ``SHA256SUMS`` that is not there) as its path alone."""
    out: list[list[object]] = []
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:
            out.append([str(p.resolve())])
            continue
        out.append([str(p.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    return out


@contextlib.contextmanager
def _exclusive(record: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``record`` (``flock``), so processes starting together
    decode the files once: the others wait, then map what the first wrote. Without a lock (a
    read-only folder, no ``fcntl``) each decodes for itself, as before."""
    try:
        import fcntl

        record.parent.mkdir(parents=True, exist_ok=True)
        fh = open(record.with_suffix(".lock"), "a")  # noqa: SIM115 - held until the block ends
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()  # releases the lock


def _found(record: Path, root: Path) -> Dataset | None:
    """The dataset a source record points to, mapped, its load's warnings given again; None
    when the record or its entry is missing, damaged or of another format."""
    try:
        rec = json.loads(record.read_text(encoding="utf-8"))
        folder = root / str(rec["entry"])
        manifest = _whole(folder)
        if manifest is None or manifest["fingerprint"] != rec["fingerprint"]:
            return None
        empty = torch.empty(0)
        ds = Dataset(str(manifest["name"]), empty, empty, empty, empty,
                     int(manifest["n_classes"]), str(manifest["fingerprint"]),
                     str(manifest["source"]), verified=bool(manifest["verified"]))  # fmt: skip
        ds = _map(folder, ds, manifest["tensors"])
        # the entry is shared by every copy of the same content: where these very files are,
        # and whether they were verified, is the record's (it names the first copy decoded)
        ds = dataclasses.replace(ds, source=str(rec["source"]), verified=bool(rec["verified"]))
        warned = [(str(c), str(t)) for c, t in rec["warnings"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    for category, text in warned:
        warnings.warn(text, _CATEGORIES.get(category, UserWarning), stacklevel=3)
    return ds


def load_mapped(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
) -> Dataset:
    """``mapped(load_dataset(name, data_dir))``, without reading or decoding the source files
    again when a process already did for these very files (same paths, inodes, sizes and times:
    a record under ``<root>/sources/``): every study process after the first maps MNIST in
    milliseconds instead of decoding it (1.5 s and a transient 280 MB). Processes starting
    together (a sweep's workers) take turns: one decodes, the others map its entry. The load's
    warnings (unverified content, an unused data folder) are given again on every load."""
    base = Path(root) if root is not None else dataset_cache_root()
    sources = source_files(name, data_dir)
    if sources is None:
        return _load(name, data_dir, base, None)
    ident = {"name": name, "data_dir": None if data_dir is None else str(data_dir),
             "format": FORMAT_VERSION, "files": _stamp(sources)}  # fmt: skip
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]
    record = base / SOURCES / f"{digest}.json"
    ds = _found(record, base)
    if ds is not None:
        return ds
    with _exclusive(record):
        ds = _found(record, base)  # another process may have written it meanwhile
        return ds if ds is not None else _load(name, data_dir, base, record)


def _load(name: str, data_dir: str | os.PathLike[str] | None, base: Path,
          record: Path | None) -> Dataset:  # fmt: skip
    """Decode, map, and write ``record`` (when given and the dataset was mapped)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(name, data_dir)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    result = mapped(ds, base)
    if record is not None and result is not ds:  # mapped: its entry exists
        warned = [[w.category.__name__, str(w.message)] for w in caught]
        with contextlib.suppress(OSError, AanntwinError):
            record.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(record, {"entry": entry_key(ds), "fingerprint": ds.fingerprint,
                                       "source": ds.source, "verified": ds.verified,
                                       "warnings": warned})  # fmt: skip
    return result
