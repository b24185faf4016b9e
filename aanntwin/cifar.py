"""CIFAR-10, binary version only: its batch files from a folder, or downloaded with a SHA-256 check.

The binary version (``cifar-10-binary.tar.gz`` from https://www.cs.toronto.edu/~kriz/cifar.html)
holds ``data_batch_1.bin`` .. ``data_batch_5.bin`` (training) and ``test_batch.bin`` in
``cifar-10-batches-bin/``. Each file is a run of 3073-byte records: one label byte (0..9), then
3x32x32 pixel bytes (the red plane, then green, then blue, each row-major); 10,000 records per
file. The pickled "python version" is refused: unpickling a file can run arbitrary code.

A folder we extracted from the verified archive holds a ``SHA256SUMS`` of the six files: they
are checked against it. They load as verified when it lists all six and each holds the real
dataset's 10,000 records (50,000 training, 10,000 test images): the official per-file digests
are not known here, only the archive's. Any other folder loads with one
``UnverifiedDataWarning`` (``Dataset.verified = False``) saying why.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

import numpy as np

from .checksums import NAME as SUMS
from .checksums import check_sums
from .errors import DataError
from .idx import DATA_DIR_ENV, default_data_dir
from .io import atomic_path, read_bytes, write_bytes_atomic

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE = "cifar-10-binary.tar.gz"
ARCHIVE_SIZE = 170_052_171
"""Bytes of the served archive."""
ARCHIVE_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
SUBDIR = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
FILES = (*TRAIN_FILES, TEST_FILE)
SHAPE = (3, 32, 32)
N_CLASSES = 10
RECORD = 1 + 3 * 32 * 32
"""Bytes of one record: a label byte, then the red, green and blue 32x32 planes."""
RECORDS_PER_FILE = 10_000
"""Records in each file of the real dataset."""
PYTHON_VERSION = ("data_batch_1", "cifar-10-batches-py", "cifar-10-python.tar.gz")
"""What the refused pickled "python version" looks like in a folder."""
HOME = "https://www.cs.toronto.edu/~kriz/cifar.html"
_CHUNK = 1 << 20


def _refuse_python_version(where: Path) -> None:
    raise DataError(
        f'{where}: this is the CIFAR-10 "python version" (pickled batches); aanntwin never '
        f"unpickles data (unpickling can run arbitrary code): get the binary version {ARCHIVE} "
        f"from {HOME} and pass its folder (or {SUBDIR}/) with --data-dir"
    )


def _has_files(folder: Path) -> bool:
    return (folder / TRAIN_FILES[0]).is_file()


def _fetch(url: str, target: Path) -> None:
    """Download ``url`` into ``target`` (streamed; file:// works too)."""
    with urllib.request.urlopen(url, timeout=60) as resp, open(target, "wb") as out:  # noqa: S310
        while chunk := resp.read(_CHUNK):
            out.write(chunk)


def check_archive(path: Path, shown: str | None = None) -> None:
    """``DataError`` unless ``path`` has the served archive's size and SHA-256 (errors name
    ``shown``, default: the path)."""
    where = shown or str(path)
    size = path.stat().st_size
    if size != ARCHIVE_SIZE:
        raise DataError(f"{where}: {size} bytes; the CIFAR-10 binary archive has {ARCHIVE_SIZE}")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    if h.hexdigest() != ARCHIVE_SHA256:
        raise DataError(
            f"{where}: SHA-256 {h.hexdigest()} is not the CIFAR-10 binary archive's "
            f"({ARCHIVE_SHA256}); refused (corrupt or not the archive)"
        )


def extract(archive: Path, folder: Path) -> Path:
    """Verify ``archive`` (size, SHA-256), then write only the six batch files (regular files,
    by their expected names; links and absolute or ``..`` paths refused) and a ``SHA256SUMS`` of
    them into ``folder/cifar-10-batches-bin``; returns that folder."""
    check_archive(archive)
    wanted = {f"{SUBDIR}/{name}": name for name in FILES}
    out = folder / SUBDIR
    sums = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if m.name.startswith("/") or ".." in parts:
                    raise DataError(f"{archive}: member {m.name!r} has an unsafe path; refused")
            found = {m.name: m for m in members if m.name in wanted}
            missing = sorted(set(wanted) - set(found))
            if missing:
                raise DataError(f"{archive}: missing {', '.join(missing)}")
            for name, m in found.items():  # all checked before anything is written
                if not m.isreg():
                    raise DataError(f"{archive}: {name} is a link or special file; refused")
            for name, m in found.items():
                fh = tar.extractfile(m)
                data = fh.read() if fh is not None else b""
                write_bytes_atomic(out / wanted[name], data)
                sums.append(f"{hashlib.sha256(data).hexdigest()}  {wanted[name]}")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: cannot extract ({exc})") from None
    write_bytes_atomic(out / SUMS, ("\n".join(sorted(sums, key=lambda s: s[66:])) + "\n").encode())
    return out


def download(folder: Path) -> Path:
    """Download the archive into ``folder``, verify it, extract the batch files; returns their
    folder."""
    target = folder / ARCHIVE
    with atomic_path(target) as tmp:
        try:
            _fetch(URL, Path(tmp))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DataError(
                f"cifar10: no batch files in {folder} and downloading {URL} failed ({exc}); put "
                f"the binary version's {SUBDIR} files (or {ARCHIVE}) in a folder and pass "
                f"--data-dir FOLDER (or set {DATA_DIR_ENV})"
            ) from None
        # checked before it is renamed into place, and so before anything is extracted
        check_archive(Path(tmp), f"downloaded {URL}")
    return extract(target, folder)


def _candidates(data_dir: str | os.PathLike[str] | None) -> tuple[Path, list[Path], Path | None]:
    """The base folder, the folders :func:`locate` looks in, and the first holding the files."""
    base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir("cifar10")
    candidates = [base, base / SUBDIR, base / "cifar10", base / "cifar10" / SUBDIR]
    return base, candidates, next((c for c in candidates if _has_files(c)), None)


def existing_files(data_dir: str | os.PathLike[str] | None = None) -> list[Path] | None:
    """The six ``.bin`` files :func:`locate` would find there without extracting or downloading
    anything (and the folder's ``SHA256SUMS``, present or not), or None."""
    folder = _candidates(data_dir)[2]
    if folder is None or not all((folder / name).is_file() for name in FILES):
        return None
    return [*(folder / name for name in FILES), folder / "SHA256SUMS"]


def locate(data_dir: str | os.PathLike[str] | None = None, download_ok: bool = True) -> Path:
    """The folder holding the six ``.bin`` files: ``data_dir`` (or the default folder), its
    ``cifar-10-batches-bin/``, or its ``cifar10/`` (and that one's subfolder); an archive found
    there is verified and extracted; else it is downloaded (when ``download_ok``)."""
    base, candidates, folder = _candidates(data_dir)
    if base.name in PYTHON_VERSION:
        _refuse_python_version(base)
    if folder is not None:
        return folder
    for c in candidates:
        if any((c / marker).exists() for marker in PYTHON_VERSION):
            _refuse_python_version(c)
    archive = next((c / ARCHIVE for c in candidates if (c / ARCHIVE).is_file()), None)
    if archive is not None:
        return extract(archive, archive.parent)
    if not download_ok:
        raise DataError(
            f"cifar10: no {TRAIN_FILES[0]} in {base} (nor {base / SUBDIR}); pass --data-dir "
            f"FOLDER (or set {DATA_DIR_ENV}) to the binary version's {SUBDIR} folder"
        )
    return download(base)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """One batch file: pixels uint8 ``N x 3 x 32 x 32``, labels uint8 ``N``, the file's SHA-256."""
    raw = read_bytes(path, "CIFAR-10 batch", DataError)
    if not raw or len(raw) % RECORD:
        raise DataError(
            f"{path}: {len(raw)} bytes; a CIFAR-10 batch file is whole {RECORD}-byte records (1 "
            f"label + 3x32x32 pixels): {RECORDS_PER_FILE} records = {RECORDS_PER_FILE * RECORD} "
            "bytes in the real files; truncated or not the binary version"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0]
    if int(labels.max()) >= N_CLASSES:
        bad = int(np.argmax(labels >= N_CLASSES))
        raise DataError(
            f"{path}: record {bad} has label {int(labels[bad])}; CIFAR-10 labels are 0..9 "
            "(not the binary version, or a CIFAR-100 file)"
        )
    return records[:, 1:].reshape(-1, *SHAPE), labels, hashlib.sha256(raw).hexdigest()


def _unverified(folder: Path, digests: dict[str, str], counts: list[int]) -> str | None:
    """Why the files are not verified, or None: verified are the six files a ``SHA256SUMS``
    lists (as :func:`extract` writes it from the verified archive) holding the real dataset's
    :data:`RECORDS_PER_FILE` records each (the official per-file digests are not known here,
    only the archive's). ``DataError`` on a file the ``SHA256SUMS`` lists with another digest."""
    listed = check_sums(folder / SUMS, {folder / name: d for name, d in digests.items()})
    if len(listed) != len(digests):
        return f"no {SUMS} listing the six files, as extracting the verified archive writes"
    if any(n != RECORDS_PER_FILE for n in counts):
        return (
            f"records per file: {', '.join(map(str, counts))}; the real files hold "
            f"{RECORDS_PER_FILE} each ({len(TRAIN_FILES) * RECORDS_PER_FILE:,} training and "
            f"{RECORDS_PER_FILE:,} test images)"
        )
    return None


def load_cifar10_arrays(
    data_dir: str | os.PathLike[str] | None = None, download_ok: bool = True
) -> tuple[dict[str, np.ndarray], str, Path, str | None]:
    """The six batch files read and checked: ``{x_train, y_train, x_test, y_test}`` (pixels
    uint8 ``N x 3 x 32 x 32``, labels uint8), the content fingerprint (SHA-256 prefix over the
    files' digests), the folder and why the content is not verified (None: verified, see
    :func:`_unverified`)."""
    folder = locate(data_dir, download_ok)
    x_train, y_train, digests, counts = _read_split(folder, TRAIN_FILES)
    x_test, y_test, test_digests, test_counts = _read_split(folder, (TEST_FILE,))
    digests.update(test_digests)
    present = np.count_nonzero(np.bincount(y_train, minlength=N_CLASSES))
    if present != N_CLASSES:
        raise DataError(
            f"{folder}: the training files hold {present} of the 10 classes; CIFAR-10 needs all"
        )
    h = hashlib.sha256()
    for name in FILES:
        h.update(digests[name].encode())
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return arrays, h.hexdigest()[:16], folder, _unverified(folder, digests, counts + test_counts)


def _read_split(
    folder: Path, names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, dict[str, str], list[int]]:
    """The batch files ``names`` read one at a time into one preallocated pixel array (sized from
    the files' sizes; each file's bytes are freed before the next is read: the peak is the
    result plus one file), their labels, each file's SHA-256 and record count. One file is
    returned as read (views of its bytes): no copy, and no mid-sized buffer for glibc's heap to
    keep after it is freed."""
    if len(names) == 1:
        pixels, y, digest = read_batch(folder / names[0])
        return pixels, y, {names[0]: digest}, [len(y)]
    sizes = [_size(folder / name) for name in names]
    x = np.empty((sum(sizes) // RECORD, *SHAPE), np.uint8)
    labels: list[np.ndarray] = []
    digests: dict[str, str] = {}
    start = 0
    for name, size in zip(names, sizes, strict=True):
        pixels, y, digests[name] = read_batch(folder / name)
        if len(y) * RECORD != size:
            raise DataError(f"{folder / name}: changed while it was read; load it again")
        x[start : start + len(y)] = pixels
        labels.append(y.copy())  # a copy: a view would keep the whole file's bytes alive
        start += len(y)
        del pixels, y
    return x, np.concatenate(labels), digests, [len(y) for y in labels]


def _size(path: Path) -> int:
    """Bytes of ``path``; 0 when it cannot be read (:func:`read_batch` then says why)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0
