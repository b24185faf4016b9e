"""Shared fixtures: an isolated cache per test, the real MNIST folder beside the checkout, the
"every nonideality on" settings and the trained digits runs every module shares."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from aanntwin.config import ModelParams, RunConfig, TrainParams
from aanntwin.model import Main

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

SMALL = RunConfig(train=TrainParams(epochs=3, batch_size=32))
"""The shared small digits run (3 epochs, about a second): :func:`trained_run`'s default."""
SMALL_HIDDEN = SMALL.replace(model=ModelParams(hidden=(8,)))
""":data:`SMALL` with one hidden stage of 8 neurons."""
HIDDEN16 = RunConfig(model=ModelParams(hidden=(16,)), train=TrainParams(epochs=2, batch_size=64))
"""A quicker run with one hidden stage of 16 neurons (2 epochs of 64-image batches)."""


@pytest.fixture(scope="session")
def _dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decoded-dataset cache for the session: its entries are content-keyed and immutable."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, _dataset_cache: Path
):
    monkeypatch.setenv("AANNTWIN_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("AANNTWIN_DATASET_CACHE", str(_dataset_cache))
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


@dataclass(frozen=True)
class TrainedRun:
    """A trained digits run: its configuration, its folder and a model of its own."""

    config: RunConfig
    folder: Path
    """What ``aanntwin train`` wrote (weights, config, metrics, timing); share it read-only."""
    model: Main
    """A fresh copy per :func:`trained_run` call, with the run's training nonidealities on."""


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., TrainedRun]:
    """Factory: ``trained_run(config=SMALL)`` is the digits run of ``config``, trained once per
    session through ``aanntwin train`` (no checkpoint cache) and shared by every module asking
    for the same configuration; each call loads its own model from the folder."""
    from aanntwin.cli import main
    from aanntwin.runs import load_run

    folders: dict[str, Path] = {}

    def make(config: RunConfig = SMALL) -> TrainedRun:
        key = config.to_json()
        if key not in folders:
            folder = tmp_path_factory.mktemp("run")
            (folder / "run.json").write_text(key)
            argv = ["train", "--config", str(folder / "run.json"), "--out", str(folder / "run")]
            assert main([*argv, "--no-progress", "--no-cache"]) == 0
            folders[key] = folder / "run"
        _, model = load_run(folders[key], config.nonidealities)
        return TrainedRun(config, folders[key], model)

    return make
