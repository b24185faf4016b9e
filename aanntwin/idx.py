"""IDX files (MNIST's format) and what a dataset name promises about them: reading, SHA-256
identity, shape/label/count checks, download with checksum check.

A folder is checked against what its dataset name promises (``SPECS``): image size and channels,
train/test counts, labels in 0..n_classes-1 with every class present (else ``DataError``, one line:
file, field, value, requirement), and its content against the known SHA-256 digests (``SOURCES``:
the served ``.gz`` files; ``CONTENT_SHA256``: the decompressed IDX bytes, which do not change when
a file is re-compressed). :func:`aanntwin.data.load_idx_dataset` turns a checked folder into a
``Dataset``.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import cache_root
from .checksums import NAME as SUMS_NAME
from .checksums import check_sums
from .errors import DataError
from .io import atomic_path, read_bytes
from .registry import info

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

CONTENT_SHA256: dict[str, dict[str, str]] = {
    # SHA-256 of each file's decompressed IDX bytes (header + pixels/labels), what
    # `gunzip -c FILE.gz | sha256sum` prints: unlike the .gz digest, it survives re-compression.
    "mnist": {  # computed from ../shared/data/mnist (re-compressed copies of the served files)
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {},  # not computed yet (no copy here): the served .gz digests verify it
}


@dataclass(frozen=True)
class IdxSpec:
    """What a dataset name promises about its four IDX files."""

    title: str
    """Display name, as in error messages ("these files are MNIST, not Fashion-MNIST")."""
    in_shape: tuple[int, int, int]
    """(channels, height, width) of one image, pixels; IDX images are N x H x W, one channel."""
    n_classes: int
    """Labels are 0..n_classes-1 and the training labels use every one."""
    n_train: int
    n_test: int


SPECS = {
    name: IdxSpec(info(name).title, info(name).in_shape, info(name).n_classes, 60_000, 10_000)
    for name in ("mnist", "fashion-mnist")
}
"""The registry's IDX datasets (:func:`aanntwin.registry.info`) and their counts."""


class UnverifiedDataWarning(UserWarning):
    """A dataset folder's content matches none of the SHA-256 digests known for its name."""


DATA_DIR_ENV = "AANNTWIN_DATA_DIR"


@dataclass(frozen=True)
class IdxFile:
    """One IDX file as read: its array and the SHA-256 digests that identify it."""

    path: Path
    array: np.ndarray
    file_sha256: str
    """Of the bytes on disk (the .gz as stored, for a gzipped file)."""
    content_sha256: str
    """Of the decompressed IDX bytes (equal to ``file_sha256`` for a raw file)."""


def _parse_idx(raw: bytes, path: Path) -> np.ndarray:
    """The unsigned-byte array of an IDX payload; errors name ``path``."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if 0 in dims:
        raise DataError(f"{path}: IDX file with dims {dims}: no images or labels in it")
    expected = header + math.prod(dims)  # Python ints: no overflow on hostile dims
    if len(raw) != expected:
        raise DataError(
            f"{path}: truncated or corrupt IDX file: {len(raw)} bytes, dims {dims} need {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_file(path: str | os.PathLike[str]) -> IdxFile:
    """Read an IDX file (gzipped if it ends in .gz), hashing each byte once; errors name the file."""
    path = Path(path)
    stored = read_bytes(path, "IDX", DataError)
    try:
        raw = gzip.decompress(stored) if path.suffix == ".gz" else stored
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(
            f"{path}: cannot read IDX file: corrupt or truncated gzip ({exc}); delete it to "
            "re-download"
        ) from None
    content = hashlib.sha256(raw).hexdigest()
    stored_digest = content if raw is stored else hashlib.sha256(stored).hexdigest()
    return IdxFile(path, _parse_idx(raw, path), stored_digest, content)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped if it ends in .gz); errors name the file."""
    return read_idx_file(path).array


def _verify_sums(folder: Path, files: list[IdxFile]) -> None:
    """Check files against a ``SHA256SUMS`` in their folder, when there is one
    (:mod:`aanntwin.checksums`)."""
    check_sums(folder / SUMS_NAME, {f.path: f.file_sha256 for f in files})


def _known_digests() -> dict[str, tuple[str, str]]:
    """Every known SHA-256 (served .gz and decompressed content) -> (dataset name, file stem)."""
    known = {}
    for name, src in SOURCES.items():
        for table in (src["sha256"], CONTENT_SHA256.get(name, {})):
            known.update({digest: (name, stem) for stem, digest in table.items()})
    return known


def _check_identity(name: str, folder: Path, files: dict[str, IdxFile]) -> list[str]:
    """Error if a file is another dataset's (or another file's); the files unknown to ``name``."""
    known = _known_digests()
    unverified = []
    for key, f in files.items():
        stem = FILES[key]
        hits = {known[d] for d in (f.file_sha256, f.content_sha256) if d in known}
        other = next((hit for hit in sorted(hits) if hit != (name, stem)), None)
        if other is not None and other[0] != name:
            title, other_title = SPECS[name].title, SPECS[other[0]].title
            raise DataError(
                f"{folder}: these files are {other_title}, not {title} ({f.path.name} has the "
                f"SHA-256 of {other_title}'s {other[1]}); load them as --dataset {other[0]}"
            )
        if other is not None:
            raise DataError(
                f"{f.path}: this is {SPECS[name].title}'s {other[1]} (by SHA-256), not {stem}"
            )
        if (name, stem) not in hits:
            unverified.append(f.path.name)
    return unverified


def _check_images(name: str, f: IdxFile) -> None:
    """Image shape (one channel) and size against what ``name`` promises."""
    channels, height, width = SPECS[name].in_shape
    a = f.array
    if a.ndim != 3:
        raise DataError(
            f"{f.path}: image shape {a.shape}; {name} requires N x {height} x {width} "
            f"({channels} channel)"
        )
    if a.shape[1:] != (height, width):
        size = "x".join(map(str, a.shape[1:]))
        raise DataError(f"{f.path}: image size {size}; {name} requires {height}x{width}")


def _check_labels(name: str, split: str, f: IdxFile, n_images: int) -> None:
    """Labels pair with the images, lie in 0..n_classes-1 and (training) use every class."""
    n_classes, y = SPECS[name].n_classes, f.array
    if y.ndim != 1 or len(y) != n_images:
        raise DataError(
            f"{f.path}: {split} labels of shape {y.shape} do not pair with {n_images} images "
            "(need N x H x W images and N labels)"
        )
    if y.size and int(y.max()) >= n_classes:
        raise DataError(
            f"{f.path}: label {int(y.max())}; {name} requires labels 0..{n_classes - 1}"
        )
    present = int(np.count_nonzero(np.bincount(y, minlength=n_classes)))
    if split == "train" and present != n_classes:
        raise DataError(f"{f.path}: class count {present}; {name} requires all {n_classes} classes")


def _check_spec(name: str, files: dict[str, IdxFile]) -> None:
    """Shapes, labels and counts of the four files against ``SPECS[name]`` (DataError if not)."""
    spec = SPECS[name]
    for split, n_required in (("train", spec.n_train), ("test", spec.n_test)):
        images, labels = files[f"{split}_images"], files[f"{split}_labels"]
        _check_images(name, images)
        _check_labels(name, split, labels, len(images.array))
        if len(images.array) != n_required:
            raise DataError(
                f"{images.path}: {split} count {len(images.array)}; {name} requires {n_required}"
            )


def content_fingerprint(files: dict[str, IdxFile]) -> str:
    """SHA-256 prefix over the content digests, in ``FILES`` order: a cache-key component that
    needs no second pass over the bytes and is the same for raw and gzipped copies."""
    h = hashlib.sha256()
    for key in FILES:
        h.update(files[key].content_sha256.encode())
    return h.hexdigest()[:16]


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
    return cache_root() / "data" / name


def locate(
    name: str, data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> tuple[Path, dict[str, Path]]:
    """The folder with ``name``'s four IDX files (``data_dir``, ``data_dir/name`` or the default
    folder) and each file's path (key as in ``FILES``), downloading what is missing."""
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
    return folder, paths


def read_checked(
    name: str, folder: Path, paths: dict[str, Path]
) -> tuple[dict[str, IdxFile], list[str]]:
    """Read the four files and check them against ``SHA256SUMS``, the known digests and
    ``SPECS[name]`` (``DataError`` if not met); also the names of the files no known digest
    verifies."""
    files = {key: read_idx_file(p) for key, p in paths.items()}
    _verify_sums(folder, list(files.values()))
    unverified = _check_identity(name, folder, files)
    _check_spec(name, files)
    return files, unverified
