"""Small synthetic datasets in the exact on-disk formats: CIFAR-10 binary batch files and
``.npz`` files of your own data (no real files are needed, nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CIFAR_FILES = (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin")


def cifar_records(n: int, seed: int) -> bytes:
    """``n`` CIFAR-10 binary records: label byte, then 3x32x32 planes (R, G, B, row-major).

    Each class has its own colour (class c lights channel c % 3 at level 40 + 15 * c) plus noise,
    so a small network can learn it; labels cycle 0..9 so every file holds every class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    pixels = rng.integers(0, 40, size=(n, 3, 32, 32), dtype=np.uint8)
    for c in range(10):
        pixels[labels == c, c % 3] += np.uint8(40 + 15 * c)
    records = np.concatenate([labels[:, None].astype(np.uint8), pixels.reshape(n, -1)], axis=1)
    return records.tobytes()


def write_cifar(folder: Path, n: int = 20, sub: str | None = "cifar-10-batches-bin") -> Path:
    """The six batch files of ``n`` records each in ``folder`` (or its ``sub``); returns ``folder``."""
    out = folder / sub if sub else folder
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(CIFAR_FILES):
        (out / name).write_bytes(cifar_records(n, seed=i))
    return folder


def shapes_npz(path: Path, n_train: int = 200, n_test: int = 80, side: int = 16,
               seed: int = 0) -> Path:  # fmt: skip
    """A ``.npz`` of 4 classes of simple shapes on ``side`` x ``side`` uint8 images (N x H x W):
    0 horizontal bar, 1 vertical bar, 2 square, 3 diagonal; position jittered, noise added."""
    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 4
        x = rng.integers(0, 50, size=(n, side, side)).astype(np.uint8)
        off = rng.integers(2, side // 2 - 1, size=n)
        idx = np.arange(side)
        for i in range(n):  # a test helper: building a few hundred images
            o = off[i]
            if y[i] == 0:
                x[i, o : o + 3, 2:-2] = 250
            elif y[i] == 1:
                x[i, 2:-2, o : o + 3] = 250
            elif y[i] == 2:
                x[i, o : o + 6, o : o + 6] = 250
            else:
                x[i, idx, idx] = 250
        return x, y.astype(np.int64)

    x_train, y_train = make(n_train)
    x_test, y_test = make(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path
