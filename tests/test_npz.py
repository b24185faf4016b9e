"""Your own data as a .npz file: the format, its errors, the registry's shape and class count
from the headers, and a 16x16, 4-class dataset that trains, sweeps and exports through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aanntwin.cli import main
from aanntwin.config import ModelParams, RunConfig, TrainParams, load_config
from aanntwin.data import load_dataset
from aanntwin.errors import ConfigError, DataError
from aanntwin.registry import info
from aanntwin.runs import run_geometry
from tests.synthetic_data import shapes_npz


def _npz(path: Path, **arrays) -> str:
    rng = np.random.default_rng(0)
    base = dict(
        x_train=rng.integers(0, 256, (12, 2, 5, 7), dtype=np.uint8),
        y_train=np.arange(12) % 3,
        x_test=rng.integers(0, 256, (6, 2, 5, 7), dtype=np.uint8),
        y_test=np.arange(6) % 3,
    )
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return str(path)


def test_info_reads_shape_and_classes_from_the_headers(tmp_path):
    p = _npz(tmp_path / "a.npz")
    d = info(p)
    assert (d.in_shape, d.n_classes, d.title) == ((2, 5, 7), 3, "a.npz")
    grey = _npz(tmp_path / "g.npz", x_train=np.zeros((12, 9, 9), np.float32),
                x_test=np.ones((6, 9, 9), np.float32), y_test=np.array([0, 1, 2, 3, 0, 1]),
                y_train=np.arange(12) % 4)  # fmt: skip
    assert (info(grey).in_shape, info(grey).n_classes) == ((1, 9, 9), 4)


def test_info_does_not_read_the_images(tmp_path, monkeypatch):
    p = _npz(tmp_path / "a.npz")
    real = np.lib.npyio.NpzFile.__getitem__

    def guarded(self, key):
        assert not key.startswith("x_"), f"info() loaded {key}"
        return real(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", guarded)
    assert info(p).in_shape == (2, 5, 7)


def test_loads_uint8_scaled_and_float_as_is(tmp_path):
    d = load_dataset(_npz(tmp_path / "a.npz", x_train=np.full((12, 2, 5, 7), 255, np.uint8)))
    assert d.x_train.dtype.is_floating_point and float(d.x_train.max()) == 1.0
    assert tuple(d.x_train.shape) == (12, 2, 5, 7) and d.n_classes == 3 and d.in_shape == (2, 5, 7)
    f = load_dataset(_npz(tmp_path / "f.npz", x_train=np.full((12, 5, 7), 0.25),
                          x_test=np.zeros((6, 5, 7), np.float32)))  # fmt: skip
    assert tuple(f.x_train.shape) == (12, 1, 5, 7) and float(f.x_train.max()) == 0.25
    assert str(f.y_train.dtype) == "torch.int64"


BAD = [
    (dict(x_test=None), "missing array x_test (has: x_train, y_test, y_train)"),
    (dict(y_train=np.array([{}] * 12, dtype=object)), "y_train has object dtype"),
    (dict(x_train=np.zeros((12, 1, 1, 5, 7), np.uint8)), "x_train of shape (12, 1, 1, 5, 7); allowed: N x C x H x W or N x H x W"),
    (dict(y_train=np.zeros((12, 1), np.int64)), "y_train of shape (12, 1); allowed: N integer labels"),
    (dict(y_test=np.arange(5) % 3), "x_test has 6 images but y_test 5 labels"),
    (dict(x_train=np.full((12, 2, 5, 7), np.nan, np.float32)), "x_train has NaN or infinite values"),
    (dict(x_train=np.full((12, 2, 5, 7), 2.0)), "x_train has values in [2, 2]; allowed"),
    (dict(x_train=np.zeros((12, 2, 5, 7), np.int16)), "x_train of dtype int16"),
    (dict(y_train=np.arange(12) % 3 + 0.0), "y_train of dtype float64; allowed: N integer labels"),
    (dict(y_test=np.array([0, 1, -1, 0, 1, 2])), "y_test has label -1"),
    (dict(y_train=np.arange(12) % 3 * 2), "y_train has no sample of class 1, 3"),
    (dict(x_test=np.zeros((6, 2, 7, 5), np.uint8)), "x_train images are 2x5x7 (C x H x W) but x_test 2x7x5"),
    (dict(x_train=np.zeros((0, 2, 5, 7), np.uint8), y_train=np.zeros(0, np.int64)), "x_train of shape (0, 2, 5, 7) is empty"),
    # a traceback (OverflowError), an 8 TB count reported as out of memory, the wrong split blamed
    (dict(y_train=np.array([0, 1, 2] * 3 + [0, 1, 2**63 + 5], np.uint64)), "y_train has label 9223372036854775813 but 12 samples"),
    (dict(y_test=np.array([0, 1, 2, 0, 1, 2**40])), "y_test has label 1099511627776; y_train has classes 0..2"),
    (dict(y_test=np.array([0, 1, 2, 0, 1, 7])), "y_test has label 7; y_train has classes 0..2"),
]  # fmt: skip


@pytest.mark.parametrize(("arrays", "needle"), BAD)
def test_every_problem_is_one_clear_error_naming_file_and_array(tmp_path, arrays, needle):
    p = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as err:
        load_dataset(p)
    assert str(err.value).startswith(f"{p}: ") and needle in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_not_a_zip_and_a_missing_file(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_dataset(str(p))
    with pytest.raises(DataError, match="junk.npz: not a readable .npz file"):
        info(str(p))
    with pytest.raises(DataError, match="no such .npz dataset file"):
        load_dataset(str(tmp_path / "gone.npz"))


def test_config_json_and_notebook_form_name_a_npz_path(tmp_path):
    p = _npz(tmp_path / "a.npz")
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(
        json.dumps({"dataset": p, "model": {"kernel": 3, "stride": 1, "padding": 1}})
    )
    cfg = load_config(str(cfg_file))
    assert cfg.dataset == p
    assert run_geometry(cfg).stages[-1].macs == 3  # 3 classes
    assert run_geometry(cfg).stages[0].fan_in == 3 * 3 * 2  # 2 channels
    with pytest.raises(ConfigError, match="no such .npz file"):
        RunConfig(dataset=str(tmp_path / "gone.npz"))


def test_the_fingerprint_and_the_cache_key_cover_the_file_content(tmp_path):
    a = load_dataset(_npz(tmp_path / "a.npz"))
    x = np.random.default_rng(0).integers(0, 256, (12, 2, 5, 7), dtype=np.uint8)
    x[0, 0, 0, 0] ^= 1
    b = load_dataset(_npz(tmp_path / "b.npz", x_train=x))
    assert a.fingerprint != b.fingerprint
    cfg = RunConfig()
    assert cfg.cache_key(a.fingerprint) != cfg.cache_key(b.fingerprint)


def test_the_architecture_sweep_counts_the_datasets_classes(tmp_path):
    """Regression: the sweep enumerated geometries for 10 classes whatever the dataset, so a
    multiplier budget that fits a 4-class geometry found none."""
    from aanntwin.studies.architecture import run_architecture_sweep

    p = str(shapes_npz(tmp_path / "s.npz", n_train=40, n_test=20))
    base = RunConfig(dataset=p, train=TrainParams(epochs=1, batch_size=20))
    budget = run_geometry(base.replace(model=ModelParams(channels=1, kernel=7, stride=1, padding=0,
                                                         pool=5))).multipliers  # fmt: skip
    df = run_architecture_sweep(base, str(tmp_path / "arch"), space={"channels": [1], "kernel": [7],
                                "stride": [1], "pool": [5]}, max_multipliers=budget,
                                progress=False)  # fmt: skip
    assert len(df) >= 1 and int(df["multipliers"].min()) <= budget


def test_a_16x16_4_class_npz_trains_sweeps_and_exports_through_the_cli(tmp_path, capsys):
    data = str(shapes_npz(tmp_path / "shapes.npz"))
    run = tmp_path / "run"
    common = ["--no-progress", "--threads", "1"]
    assert main(["train", "--dataset", data, "--epochs", "8", "--optimizer", "adam", "--lr", "0.01",
                 "--batch-size", "32", "--out", str(run), *common]) == 0  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    assert (
        metrics["geometry"]["in_shape"] == [1, 16, 16]
        and metrics["geometry"]["stages"][-1]["macs"] == 4
    )
    assert metrics["test_accuracy"] > 0.5  # chance is 0.25
    assert metrics["dataset"]["name"] == data and len(metrics["confusion"]) == 4
    sweep = tmp_path / "sweep"
    assert main(["sweep", "noise", "--dataset", data, "--epochs", "1", "--train-levels", "none",
                 "--test-levels", "0,0.2", "--kinds", "input", "--runs", "2", "--out", str(sweep),
                 *common]) == 0  # fmt: skip
    rows = (sweep / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith(f"{data},")
    export = tmp_path / "export"
    assert main(["export", str(run), "--bits", "4", "--out", str(export)]) == 0
    manifest = json.loads((export / "manifest.json").read_text())
    shapes = {s["name"]: s["shape"] for s in manifest["stages"]}
    assert shapes["conv"][1] == 1 and shapes["linear"][0] == 4
    capsys.readouterr()
    assert main(["evaluate", "--export", str(export)]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy_mean"] > 0.5


def test_a_rewritten_npz_is_reloaded_by_the_study_cache(tmp_path):
    """Regression: the per-process dataset cache served the old arrays of a rewritten file."""
    import os

    from aanntwin.studies.common import cached_dataset

    p = _npz(tmp_path / "a.npz")
    first = cached_dataset(p, None)
    _npz(tmp_path / "a.npz", x_train=np.zeros((12, 2, 5, 7), np.uint8))
    os.utime(p, ns=(1, 1))  # a different modification time whatever the clock's resolution
    second = cached_dataset(p, None)
    assert first.fingerprint != second.fingerprint and float(second.x_train.max()) == 0.0


def test_a_relative_npz_path_found_from_another_folder_is_refused(tmp_path, capsys, monkeypatch):
    """config.json names the .npz as given; from another folder a relative path found another
    file of the same name and the run was evaluated on it (another accuracy, exit 0)."""
    (tmp_path / "a" / "data").mkdir(parents=True)
    (tmp_path / "b" / "data").mkdir(parents=True)
    shapes_npz(tmp_path / "a" / "data" / "set.npz", n_train=40, n_test=16, side=8)
    shapes_npz(tmp_path / "b" / "data" / "set.npz", n_train=40, n_test=16, side=8, seed=1)
    monkeypatch.chdir(tmp_path / "a")
    assert main(["train", "--dataset", "data/set.npz", "--epochs", "1", "--kernel", "3",
                 "--stride", "1", "--padding", "1", "--no-progress", "--threads", "1",
                 "--out", "run"]) == 0  # fmt: skip
    assert main(["evaluate", "run"]) == 0  # where it trained: the same file
    monkeypatch.chdir(tmp_path / "b")
    capsys.readouterr()
    for argv in (["evaluate", "../a/run"], ["specs", "../a/run", "--out", "sp"],
                 ["export", "../a/run", "--bits", "4", "--out", "ex"]):  # fmt: skip
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "../a/run: trained on data/set.npz of fingerprint" in err, err
        assert ("pass --dataset" in err) == (argv[0] == "evaluate")
        assert not Path(argv[-1]).exists() or argv[0] == "evaluate"
    assert main(["evaluate", "../a/run", "--dataset", "data/set.npz"]) == 0  # deliberately


def test_evaluate_on_data_of_another_shape_names_both(trained_run, tmp_path, capsys):
    """A 4-class .npz given to a 10-class run blamed 'linear.bias has shape (10,)'."""
    data = str(shapes_npz(tmp_path / "four.npz", n_train=40, n_test=16, side=8))
    run = trained_run().folder
    capsys.readouterr()
    assert main(["evaluate", str(run), "--dataset", data]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{run}: its model takes 1x8x8 images of 10 classes (metrics.json); "
                        f"{data} has 1x8x8 images of 4 classes"), err  # fmt: skip


def test_a_folder_named_like_a_npz_is_called_a_folder(tmp_path, capsys):
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(SystemExit):
        main(["train", "--dataset", str(tmp_path / "d.npz"), "--out", str(tmp_path / "r")])
    assert "d.npz': a folder, not a .npz file" in capsys.readouterr().err


def test_a_geometry_from_a_config_file_names_the_file(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text('{"model": {"kernel": 20}}')
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{config}: model (kernel 20, stride 2, padding 1, pool 1): conv on input" in err, err
