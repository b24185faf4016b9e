"""Datasets as in-memory tensors: loaded once; an epoch is a permutation, a batch a slice.

- ``digits``: scikit-learn's bundled 8x8 digits (offline default), scaled to [0, 1], with a fixed
  stratified 75/25 train/test split.
- ``mnist``, ``fashion-mnist``: IDX files (gzipped or raw, torchvision's file names) from a folder
  (``data_dir`` or ``$AANNTWIN_DATA_DIR``), or downloaded into it with SHA-256 verification.
- ``cifar10``: the binary version's batch files (3x32x32 colour images), from a folder or
  downloaded with SHA-256 verification: :mod:`aanntwin.cifar`.
- a path to a ``.npz`` file: your own data, any image size and class count: :mod:`aanntwin.npz`.

A folder is checked against what its dataset name promises (image size and channels, counts,
labels) and its content against the known SHA-256 digests: :mod:`aanntwin.idx` (the IDX reading
and checks). Files that are another dataset's are an error naming both; files matching no known
digest load with one ``UnverifiedDataWarning`` and ``Dataset.verified = False``.

Images are float32 ``(N, C, H, W)`` in [0, 1]; labels int64 ``(N,)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import DataError
from .idx import (
    FILES,
    SOURCES,
    SPECS,
    UnverifiedDataWarning,
    content_fingerprint,
    locate,
    read_checked,
)
from .pixels import decode_unit, unit_float32
from .registry import DATASETS, choices_text, info, is_npz

DATASET_NAMES = DATASETS
"""Every registered dataset :func:`load_dataset` knows (:data:`aanntwin.registry.DATASETS`);
a ``.npz`` path names any other."""


@dataclass
class Dataset:
    """A dataset held in memory as tensors."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    fingerprint: str
    """SHA-256 prefix of the content (digits: the arrays; IDX: the files' content digests, so raw
    and gzipped copies agree): a cache-key component."""
    source: str
    """Where it came from (a folder, or the scikit-learn package)."""
    verified: bool = True
    """Whether the content matched the SHA-256 digests known for ``name`` (``SOURCES``,
    ``CONTENT_SHA256``; CIFAR-10: a ``SHA256SUMS`` from the verified archive and the real record
    counts, see :func:`aanntwin.cifar.load_cifar10_arrays`); False loads came
    with an ``UnverifiedDataWarning``, except a ``.npz`` (own data: nothing to verify against)."""
    train_codes: Tensor | None = None
    """``x_train`` as uint8 pixel codes (``x_train == decode_unit(train_codes)`` bit for bit), or
    None. The dataset cache adds them (:mod:`aanntwin.dataset_cache`): training gathers its
    batches from them (:meth:`train_images`), so the float32 images, four times the bytes, are
    not read every epoch."""

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def train_images(self, idx: Tensor) -> Tensor:
        """``x_train[idx]``, gathered from :attr:`train_codes` when there are any (the same bits)."""
        if self.train_codes is None:
            return self.x_train[idx]
        return decode_unit(self.train_codes[idx])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Dataset:
        """A copy on ``device`` (images optionally cast to ``dtype``); done once, not per batch.
        The codes stay only where the images stay as they are (the same CPU float32 tensor)."""
        move = {"device": device, **({"dtype": dtype} if dtype else {})}
        x_train = self.x_train.to(**move)
        return dataclasses.replace(
            self,
            x_train=x_train,
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(**move),
            y_test=self.y_test.to(device),
            train_codes=self.train_codes if x_train is self.x_train else None,
        )

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first ``n_train``/``n_test`` samples (for quick runs and tests)."""
        return dataclasses.replace(
            self,
            x_train=self.x_train[:n_train],
            y_train=self.y_train[:n_train],
            train_codes=None if self.train_codes is None else self.train_codes[:n_train],
            x_test=self.x_test[:n_test],
            y_test=self.y_test[:n_test],
            fingerprint=f"{self.fingerprint}:{n_train}:{n_test}",
        )


def _fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _stratified_split(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a per-class random split (fixed by ``seed``), each part sorted."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test.append(idx[: round(len(idx) * test_fraction)])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx, test_idx


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 16 grey levels) scaled to [0, 1]."""
    # Imported here: scikit-learn takes over a second to import and only the digits need it.
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    y = bunch.target.astype(np.int64)
    tr, te = _stratified_split(y, 0.25, seed=0)
    return Dataset(
        "digits",
        torch.from_numpy(x[tr]),
        torch.from_numpy(y[tr]),
        torch.from_numpy(x[te]),
        torch.from_numpy(y[te]),
        info("digits").n_classes,
        _fingerprint(x[tr], y[tr], x[te], y[te]),
        "scikit-learn",
    )


def load_idx_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> Dataset:
    """MNIST-format dataset from ``data_dir`` (or ``data_dir/name``), downloading what is missing."""
    if name not in SOURCES:
        raise DataError(f"unknown IDX dataset {name!r}; known: {', '.join(SOURCES)}")
    folder, paths = locate(name, data_dir, download)
    files, unverified = read_checked(name, folder, paths)
    if unverified:
        warnings.warn(
            f"{name}: content of {folder} is unverified: {', '.join(unverified)} match none of "
            f"the SHA-256 digests known for {SPECS[name].title} (served .gz or decompressed IDX)",
            UnverifiedDataWarning,
            stacklevel=3,
        )
    fingerprint = content_fingerprint(files)
    arrays = {key: f.array for key, f in files.items()}
    del files  # the uint8 arrays now live only in ``arrays``: each goes once it is converted
    t = {key: _tensor(arrays, key) for key in FILES}
    return Dataset(
        name,
        t["train_images"][:, None],
        t["train_labels"],
        t["test_images"][:, None],
        t["test_labels"],
        SPECS[name].n_classes,
        fingerprint,
        str(folder),
        verified=not unverified,
    )


def _tensor(arrays: dict[str, np.ndarray], key: str) -> Tensor:
    """``arrays[key]`` taken out of ``arrays`` (so its uint8 bytes are freed as soon as it is
    converted: a lower peak while loading) as a tensor: uint8 images float32 in [0, 1] (see
    :func:`aanntwin.pixels.unit_float32`), labels int64."""
    a = arrays.pop(key)
    if key.endswith("labels") or key.startswith("y_"):
        return torch.from_numpy(a.astype(np.int64))
    return torch.from_numpy(unit_float32(a))


def load_cifar10(data_dir: str | os.PathLike[str] | None = None, download: bool = True) -> Dataset:
    """CIFAR-10 (binary version) from ``data_dir`` (or downloaded): 3x32x32 images in [0, 1]."""
    from .cifar import ARCHIVE, load_cifar10_arrays

    arrays, fingerprint, folder, unverified = load_cifar10_arrays(data_dir, download)
    if unverified:
        warnings.warn(
            f"cifar10: content of {folder} is unverified: {unverified}; to have it checked, "
            f"put {ARCHIVE} in an empty folder and pass that",
            UnverifiedDataWarning,
            stacklevel=3,
        )

    t = {key: _tensor(arrays, key) for key in ("x_train", "y_train", "x_test", "y_test")}
    return Dataset(
        "cifar10",
        t["x_train"],
        t["y_train"],
        t["x_test"],
        t["y_test"],
        info("cifar10").n_classes,
        fingerprint,
        str(folder),
        verified=not unverified,
    )


def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """Your own dataset from a ``.npz`` file (format: :mod:`aanntwin.npz`); its ``name`` is the
    path as given, its fingerprint covers the file's bytes."""
    from .npz import load_npz_arrays

    arrays, n_classes, fingerprint = load_npz_arrays(path)
    t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return Dataset(
        str(path),
        t["x_train"],
        t["y_train"],
        t["x_test"],
        t["y_test"],
        n_classes,
        fingerprint,
        str(path),
        verified=False,
    )


def load_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> Dataset:
    """Load a registered dataset (``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``) or a
    ``.npz`` file (``name`` is its path; ``data_dir`` unused) into CPU tensors. A ``data_dir``
    given where it is not read (digits, ``.npz``) is named in a warning: the user may have meant
    another dataset."""
    if data_dir is not None and (name == "digits" or is_npz(name)):
        source = "bundled with scikit-learn" if name == "digits" else "read from its own file"
        warnings.warn(f"data folder {data_dir} is not used: the {name} dataset is {source}",
                      UserWarning, stacklevel=2)  # fmt: skip
    if name == "digits":
        return load_digits()
    if name in SOURCES:
        return load_idx_dataset(name, data_dir, download)
    if name == "cifar10":
        return load_cifar10(data_dir, download)
    if is_npz(name):
        if not Path(name).expanduser().is_file():
            raise DataError(f"{name}: no such .npz dataset file")
        return load_npz(name)
    raise DataError(f"unknown dataset {name!r}; use one of {choices_text()}")


def source_files(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path] | None:
    """The files :func:`load_dataset` reads for ``name`` (IDX and CIFAR-10: with the folder's
    ``SHA256SUMS``, present or not: it decides ``verified``), found without downloading or
    extracting anything; None for the bundled digits or when they are not all there (loading
    then fetches them or says what is missing)."""
    if name in SOURCES:
        try:
            folder, paths = locate(name, data_dir, download=False)
        except DataError:
            return None
        return [*paths.values(), folder / "SHA256SUMS"]
    if name == "cifar10":
        from .cifar import existing_files

        return existing_files(data_dir)
    if is_npz(name):
        path = Path(name).expanduser()
        return [path] if path.is_file() else None
    return None


def batches(
    n: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Iterator[Tensor]:
    """Index slices of one epoch: a seeded permutation (``generator``) or, without one, in order."""
    if generator is None:
        order = torch.arange(n, device=device)
    else:
        order = torch.randperm(n, generator=generator).to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
