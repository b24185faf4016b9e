"""The notebooks on other datasets: CIFAR-10 (synthetic binary batch files, 3 channels) through
the workbook, and a .npz path as the ``dataset`` parameter (resolved, checked, fingerprinted)."""

from __future__ import annotations

import json

import pytest

from aanntwin.errors import AanntwinError
from aanntwin.report import fingerprint as fp
from aanntwin.report.params import _check_keys
from aanntwin.report.workbook import _resolved, run_workbook
from tests.synthetic_data import shapes_npz, write_cifar


def test_the_notebooks_run_on_cifar10_from_a_data_dir(tmp_path):
    """Every study notebook (00 to 05) with ``dataset: cifar10`` on synthetic binary batch files
    (issue 14 acceptance; about 95 s): fan-ins from the 3-channel geometry, training on them."""
    data = write_cifar(tmp_path / "cifar", n=20)
    notebooks = ["00_explorer", "01_characterization", "02_training", "03_quantization",
                 "04_specs", "05_signoff"]  # fmt: skip
    run = run_workbook({"dataset": "cifar10", "data_dir": str(data), "quick": True, "seed": 0},
                       "c", tmp_path, only=notebooks, pdf=False, code_html=False)  # fmt: skip
    assert [nb.status for nb in run.notebooks] == ["ok"] * 6, [nb.error for nb in run.notebooks]
    out = tmp_path / "c" / "data"
    fan_in = json.loads((out / "characterization" / "fit_report.json").read_text())["fan_in"]
    assert fan_in == {"conv2d": 6 * 6 * 3, "linear": 4 * 15 * 15}
    metrics = json.loads(next(out.glob("model_*/metrics.json")).read_text())
    assert (
        metrics["geometry"]["in_shape"] == [3, 32, 32] and metrics["dataset"]["name"] == "cifar10"
    )
    assert metrics["dataset"]["n_train"] == 100


def test_a_npz_dataset_parameter_is_resolved_checked_and_fingerprinted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shapes_npz(tmp_path / "mine.npz", n_train=8, n_test=4)
    assert _resolved({"dataset": "mine.npz"})["dataset"] == str(tmp_path / "mine.npz")
    assert _resolved({"dataset": "mnist"})["dataset"] == "mnist"
    defaults = {"dataset": "digits"}
    _check_keys("p.yaml", {"dataset": "mine.npz"}, defaults)
    with pytest.raises(AanntwinError, match="p.yaml: dataset = 'other.npz': no such .npz file"):
        _check_keys("p.yaml", {"dataset": "other.npz"}, defaults)
    with pytest.raises(AanntwinError, match="p.yaml: dataset = 'cifar': unknown; use one of"):
        _check_keys("p.yaml", {"dataset": "cifar"}, defaults)
    params = {"dataset": str(tmp_path / "mine.npz")}
    before = fp.fingerprint(params, {}, [], [], {})
    shapes_npz(tmp_path / "mine.npz", n_train=8, n_test=4, seed=1)  # same path, new content
    assert fp.fingerprint(params, {}, [], [], {}) != before
