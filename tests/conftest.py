"""Shared fixtures: an isolated cache per test, the real MNIST folder beside the checkout."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("AANNTWIN_TEST_MNIST", REPO.parent / "shared" / "data" / "mnist"))

torch.set_num_threads(1)

EVERYTHING = dict(
    input_noise=0.1, input_bits=6, conv2d_input_clip=2.0, conv2d_input_nonlin=(0, 1, 0.1),
    conv2d_gain_mismatch=0.02, conv2d_offset_mismatch=0.01, conv2d_out_saturation=3.0,
    conv2d_out_noise=0.05, conv2d_weight_bits=4, relu_cutoff=0.01, relu_out_noise=0.05,
    relu_out_bits=6, relu_out_full_scale=4.0, linear_input_clip=2.0,
    linear_input_nonlin=(0, 1, 0.1), linear_gain_mismatch=0.02, linear_offset_mismatch=0.01,
    linear_out_saturation=5.0, linear_out_noise=0.05, linear_weight_bits=4, linear_out_bits=8,
    linear_out_full_scale=5.0, saturation="tanh",
)  # fmt: skip
"""Every nonideality on, at modest levels (Nonidealities(**EVERYTHING))."""  # steadier on shared cores; the tests are small


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AANNTWIN_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("AANNTWIN_DATA_DIR", raising=False)


def in_ci(env: Mapping[str, str]) -> bool:
    """Whether ``env`` says CI (``CI`` set, not empty, "false" or "0"): real-tool tests must run."""
    return env.get("CI", "").strip().lower() not in ("", "false", "0")


def require_mnist(folder: Path, env: Mapping[str, str]) -> Path:
    """``folder`` if it holds the four MNIST ``.gz`` files; else skip, or fail under CI."""
    from aanntwin.idx import FILES

    missing = [f"{s}.gz" for s in FILES.values() if not (folder / f"{s}.gz").exists()]
    if not missing:
        return folder
    message = (
        f"real MNIST not found at {folder} (missing {', '.join(missing)}); "
        "set AANNTWIN_TEST_MNIST to a folder with the four IDX .gz files"
    )
    if in_ci(env):
        pytest.fail(message + ": CI must run the real-MNIST tests", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return require_mnist(MNIST_DIR, os.environ)


@pytest.fixture(scope="session")
def digits():
    from aanntwin.data import load_digits

    return load_digits()


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path):
    from aanntwin.data import load_dataset

    return load_dataset("mnist", mnist_dir, download=False)
