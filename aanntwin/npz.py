"""Your own dataset: one ``.npz`` file, any image size and class count.

The format (``np.savez`` or ``np.savez_compressed``; nothing pickled):

- ``x_train``, ``x_test``: images ``N x C x H x W`` or ``N x H x W`` (one channel), the same
  ``C x H x W`` in both; ``uint8`` (0..255, scaled to [0, 1]) or float in [0, 1] (no NaN).
- ``y_train``, ``y_test``: integer labels ``N`` (as many as images), 0..K-1 with K = the largest
  label + 1 over both splits; every class 0..K-1 occurs in the training set.

It is read with ``np.load(..., allow_pickle=False)``; every problem is one ``DataError`` naming the
file, the array and what is allowed. :func:`npz_info` reads the array headers and the labels only
(the shape and class count the geometry needs); :func:`load_npz_arrays` reads and checks all.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .io import read_bytes
from .pixels import unit_float32

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
"""The arrays a ``.npz`` dataset holds."""
IMAGES = "N x C x H x W or N x H x W images, uint8 (0..255) or float in [0, 1]"
LABELS = "N integer labels 0..K-1"


def _headers(path: Path, source: Any) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{array: (shape, dtype)}`` from the ``.npy`` headers of the four members of ``source``
    (a path or file object of the zip), without reading the data."""
    try:
        with zipfile.ZipFile(source) as zf:
            names = set(zf.namelist())
            missing = [a for a in ARRAYS if f"{a}.npy" not in names]
            if missing:
                have = ", ".join(sorted(n.removesuffix(".npy") for n in names)) or "none"
                raise DataError(
                    f"{path}: missing array {', '.join(missing)} (has: {have}); a .npz dataset "
                    f"holds {', '.join(ARRAYS)}"
                )
            out = {}
            for a in ARRAYS:
                with zf.open(f"{a}.npy") as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                    else:
                        raise DataError(f"{path}: {a}: .npy format version {version} unsupported")
                out[a] = (tuple(shape), np.dtype(dtype))
            return out
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise DataError(
            f"{path}: not a readable .npz file ({exc}); write it with np.savez(path, x_train=..., "
            "y_train=..., x_test=..., y_test=...)"
        ) from None


def _check_headers(path: Path, heads: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """dtype, ndim and counts of the four arrays (from their headers)."""
    for a, (shape, dtype) in heads.items():
        if dtype.hasobject:
            raise DataError(f"{path}: {a} has object dtype (pickled); allowed: numeric arrays")
        images = a.startswith("x_")
        if images:
            if len(shape) not in (3, 4):
                raise DataError(f"{path}: {a} of shape {shape}; allowed: {IMAGES}")
            if dtype != np.uint8 and dtype.kind != "f":
                raise DataError(f"{path}: {a} of dtype {dtype}; allowed: {IMAGES}")
        else:
            if len(shape) != 1:
                raise DataError(f"{path}: {a} of shape {shape}; allowed: {LABELS}")
            if dtype.kind not in "iu":
                raise DataError(f"{path}: {a} of dtype {dtype}; allowed: {LABELS}")
        if 0 in shape:
            allowed = IMAGES if images else LABELS
            raise DataError(f"{path}: {a} of shape {shape} is empty; allowed: {allowed}, N >= 1")
    for split in ("train", "test"):
        nx, ny = heads[f"x_{split}"][0][0], heads[f"y_{split}"][0][0]
        if nx != ny:
            raise DataError(
                f"{path}: x_{split} has {nx} images but y_{split} {ny} labels; they must pair"
            )
    shapes = [_chw(heads[f"x_{s}"][0]) for s in ("train", "test")]
    if shapes[0] != shapes[1]:
        raise DataError(
            f"{path}: x_train images are {'x'.join(map(str, shapes[0]))} (C x H x W) but x_test "
            f"{'x'.join(map(str, shapes[1]))}; both splits need the same image shape"
        )


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (1, *shape[1:]) if len(shape) == 3 else tuple(shape[1:])  # type: ignore[return-value]


def _classes(path: Path, y_train: np.ndarray, y_test: np.ndarray) -> int:
    """K (largest label + 1 over both splits), after checking 0..K-1 with no gap in training."""
    for a, y in (("y_train", y_train), ("y_test", y_test)):
        if int(y.min()) < 0:
            raise DataError(f"{path}: {a} has label {int(y.min())}; allowed: {LABELS}")
    top = int(y_train.max())
    if top >= len(y_train):  # checked before counting: a huge label would size the count
        raise DataError(
            f"{path}: y_train has label {top} but {len(y_train)} samples; labels must be 0..K-1 "
            "with every class in the training set"
        )
    k = top + 1
    if int(y_test.max()) >= k:
        raise DataError(
            f"{path}: y_test has label {int(y_test.max())}; y_train has classes 0..{k - 1} "
            "(a class the model never trained on)"
        )
    absent = np.flatnonzero(np.bincount(y_train.astype(np.int64), minlength=k) == 0)
    if absent.size:
        raise DataError(
            f"{path}: y_train has no sample of class {', '.join(map(str, absent[:10]))} (labels "
            f"go up to {k - 1}); labels must be 0..K-1 with every class in the training set"
        )
    return k


def _key(name: str) -> tuple[str, int, int]:
    st = Path(name).expanduser().stat()
    return str(Path(name).expanduser().resolve()), st.st_mtime_ns, st.st_size


def npz_info(name: str) -> tuple[tuple[int, int, int], int]:
    """Image shape ``(C, H, W)`` and class count of a ``.npz`` dataset from its headers and
    labels (cached per file version); ``DataError`` when it breaks the format."""
    try:
        key = _key(name)
    except OSError:
        raise DataError(f"{name}: cannot read the .npz dataset file") from None
    return _cached_info(key)


@functools.lru_cache(maxsize=16)
def _cached_info(key: tuple[str, int, int]) -> tuple[tuple[int, int, int], int]:
    path = Path(key[0])
    heads = _headers(path, path)
    _check_headers(path, heads)
    with np.load(path, allow_pickle=False) as f:
        k = _classes(path, f["y_train"], f["y_test"])
    return _chw(heads["x_train"][0]), k


def _images(path: Path, a: str, x: np.ndarray) -> np.ndarray:
    """float32 ``N x C x H x W`` in [0, 1]; NaN, infinities and values outside refused."""
    if x.dtype == np.uint8:
        out = unit_float32(x)
    else:
        if not np.isfinite(x).all():
            raise DataError(f"{path}: {a} has NaN or infinite values; allowed: {IMAGES}")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(f"{path}: {a} has values in [{lo:g}, {hi:g}]; allowed: {IMAGES}")
        out = x.astype(np.float32, copy=False)  # float32 stays as read: no second copy
    return out[:, None] if out.ndim == 3 else out


def load_npz_arrays(
    path: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], int, str]:
    """The checked arrays of a ``.npz`` dataset (images float32 ``N x C x H x W`` in [0, 1],
    labels int64), its class count K and the SHA-256 prefix of the file's bytes (the cache-key
    component: it covers the content)."""
    p = Path(path).expanduser()
    raw = read_bytes(p, ".npz dataset", DataError)
    fingerprint = hashlib.sha256(raw).hexdigest()[:16]
    heads = _headers(p, io.BytesIO(raw))
    _check_headers(p, heads)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as f:
            arrays = {a: f[a] for a in ARRAYS}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{p}: cannot read the arrays ({exc})") from None
    del raw  # the file's bytes go before the images are converted (a lower peak)
    k = _classes(p, arrays["y_train"], arrays["y_test"])
    out = {}
    for split in ("train", "test"):  # each array leaves ``arrays`` once converted: freed early
        out[f"x_{split}"] = _images(p, f"x_{split}", arrays.pop(f"x_{split}"))
        out[f"y_{split}"] = arrays.pop(f"y_{split}").astype(np.int64)
    return out, k, fingerprint
