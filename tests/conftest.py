"""Shared fixtures: an isolated cache per test, the real MNIST folder beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("AANNTWIN_TEST_MNIST", REPO.parent / "shared" / "data" / "mnist"))

torch.set_num_threads(1)  # steadier on shared cores; the tests are small


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AANNTWIN_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("AANNTWIN_DATA_DIR", raising=False)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {MNIST_DIR} (set AANNTWIN_TEST_MNIST)")
    return MNIST_DIR


@pytest.fixture(scope="session")
def digits():
    from aanntwin.data import load_digits

    return load_digits()


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path):
    from aanntwin.data import load_dataset

    return load_dataset("mnist", mnist_dir, download=False)
