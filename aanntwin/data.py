"""Datasets as in-memory tensors: loaded once; an epoch is a permutation, a batch a slice.

- ``digits``: scikit-learn's bundled 8x8 digits (offline default), scaled to [0, 1], with a fixed
  stratified 75/25 train/test split.
- ``mnist``, ``fashion-mnist``: IDX files (gzipped or raw, torchvision's file names) from a folder
  (``data_dir`` or ``$AANNTWIN_DATA_DIR``), or downloaded into it with SHA-256 verification.

Images are float32 ``(N, C, H, W)`` in [0, 1]; labels int64 ``(N,)``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import DataError
from .io import atomic_path

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

SOURCES = {
    "mnist": {
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "sha256": {  # of the .gz files as served
            "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    },
    "fashion-mnist": {
        "url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "sha256": {
            "train-images-idx3-ubyte": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
            "train-labels-idx1-ubyte": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
            "t10k-images-idx3-ubyte": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
            "t10k-labels-idx1-ubyte": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
        },
    },
}

DATA_DIR_ENV = "AANNTWIN_DATA_DIR"
DATASET_NAMES = ("digits", *SOURCES)


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
    """SHA-256 prefix of the pixel and label bytes: a cache-key component."""
    source: str
    """Where it came from (a folder, or the scikit-learn package)."""

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Dataset:
        """A copy on ``device`` (images optionally cast to ``dtype``); done once, not per batch."""
        move = {"device": device, **({"dtype": dtype} if dtype else {})}
        return Dataset(
            self.name,
            self.x_train.to(**move),
            self.y_train.to(device),
            self.x_test.to(**move),
            self.y_test.to(device),
            self.n_classes,
            self.fingerprint,
            self.source,
        )

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first ``n_train``/``n_test`` samples (for quick runs and tests)."""
        return Dataset(
            self.name,
            self.x_train[:n_train],
            self.y_train[:n_train],
            self.x_test[:n_test],
            self.y_test[:n_test],
            self.n_classes,
            f"{self.fingerprint}:{n_train}:{n_test}",
            self.source,
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
        10,
        _fingerprint(x[tr], y[tr], x[te], y[te]),
        "scikit-learn",
    )


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped if it ends in .gz); errors name the file."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc}); delete it to re-download") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(
            f"{path}: truncated or corrupt IDX file: {len(raw)} bytes, dims {dims} need {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify_sums(folder: Path, files: list[Path]) -> None:
    """Check files against a ``SHA256SUMS`` in their folder, when there is one."""
    sums_file = folder / "SHA256SUMS"
    if not sums_file.exists():
        return
    sums = {}
    for line in sums_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0]
    for f in files:
        want = sums.get(f.name)
        if want is not None and _sha256(f) != want:
            raise DataError(f"{f}: SHA-256 does not match {sums_file}; the file is corrupt")


def _find(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).exists():
            return folder / name
    return None


def _download(name: str, folder: Path, stem: str) -> Path:
    src = SOURCES[name]
    url = f"{src['url']}{stem}.gz"
    target = folder / f"{stem}.gz"
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 (fixed https/http URL)
            payload = resp.read()
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(
            f"{name}: {stem}.gz is not in {folder} and downloading {url} failed ({exc}); "
            f"put the IDX files in a folder and pass --data-dir FOLDER (or set {DATA_DIR_ENV})"
        ) from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != src["sha256"][stem]:
        raise DataError(f"{url}: downloaded file fails its SHA-256 check (got {digest})")
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(payload)
    return target


def default_data_dir(name: str) -> Path:
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    from .cache import cache_root

    return cache_root() / "data" / name


def load_idx_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> Dataset:
    """MNIST-format dataset from ``data_dir`` (or ``data_dir/name``), downloading what is missing."""
    if name not in SOURCES:
        raise DataError(f"unknown IDX dataset {name!r}; known: {', '.join(SOURCES)}")
    base = Path(data_dir) if data_dir is not None else default_data_dir(name)
    candidates = [base, base / name]
    folder = next((c for c in candidates if _find(c, FILES["train_images"])), None)
    if folder is None:
        folder = base
        if not download:
            raise DataError(
                f"{name}: no {FILES['train_images']}[.gz] in {base}; pass --data-dir FOLDER "
                f"(or set {DATA_DIR_ENV}) to a folder with the four IDX files"
            )
    paths = {}
    for key, stem in FILES.items():
        found = _find(folder, stem)
        if found is None:
            if not download:
                raise DataError(f"{name}: {stem}[.gz] missing in {folder}")
            found = _download(name, folder, stem)
        paths[key] = found
    _verify_sums(folder, list(paths.values()))
    arrays = {k: read_idx(p) for k, p in paths.items()}
    for split in ("train", "test"):
        xi, yi = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if xi.ndim != 3 or yi.ndim != 1 or len(xi) != len(yi):
            raise DataError(
                f"{paths[f'{split}_images']}: {split} images {xi.shape} and labels {yi.shape} "
                "do not pair up (need N x H x W images and N labels)"
            )
        if yi.size and yi.max() > 9:
            raise DataError(f"{paths[f'{split}_labels']}: label {yi.max()} outside 0..9")

    def images(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0)[:, None]

    def labels(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return Dataset(
        name,
        images(arrays["train_images"]),
        labels(arrays["train_labels"]),
        images(arrays["test_images"]),
        labels(arrays["test_labels"]),
        10,
        _fingerprint(*arrays.values()),
        str(folder),
    )


def load_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> Dataset:
    """Load ``digits``, ``mnist`` or ``fashion-mnist`` into CPU tensors."""
    if name == "digits":
        return load_digits()
    if name in SOURCES:
        return load_idx_dataset(name, data_dir, download)
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")


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
