"""Importing the reference tool's work: weights (.pth state dict), parameter JSON, sweep results.

The reference network is computed here independently, with plain ``torch.nn.functional``, on a
state dict built in the reference layout; the imported run must give the same logits.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from aanntwin.cli import main
from aanntwin.config import load_config
from aanntwin.data import load_dataset
from aanntwin.errors import AanntwinError, ConfigError
from aanntwin.runs import load_run
from aanntwin.studies.reference_import import (
    REFERENCE_ALIASES,
    REFERENCE_TRAIN_DEFAULTS,
    load_reference_params,
)
from aanntwin.studies.reference_sweep import import_reference_sweep

DEFAULT = {"conv_out_channels": 4, "kernel_size": 6, "stride": 2, "padding": 1, "pool_size": 1,
           "additional_layers": []}  # fmt: skip
"""The default geometry (on digits 8x8: conv out 4x3x3, 36 features)."""
HIDDEN = {"conv_out_channels": 3, "kernel_size": 3, "stride": 1, "padding": 1, "pool_size": 2,
          "additional_layers": [16, 12]}  # fmt: skip
"""Pooling and two hidden stages (on digits: conv out 3x8x8, pooled 3x4x4 = 48 features)."""


def reference_state_dict(params: dict, in_ch: int, side: int, classes: int, seed: int) -> dict:
    """Random weights in the reference layout for ``params`` on ``in_ch x side x side`` images."""
    g = torch.Generator().manual_seed(seed)
    c, k, s, p, pool = (params[n] for n in ("conv_out_channels", "kernel_size", "stride",
                                            "padding", "pool_size"))  # fmt: skip
    out_side = ((side + 2 * p - k) // s + 1) // pool
    sd = {"conv2d_weight": torch.randn(c, in_ch, k, k, generator=g) * 0.3,
          "conv2d_bias": torch.randn(c, generator=g) * 0.1}  # fmt: skip
    fan_in = c * out_side * out_side
    for i, width in enumerate(params["additional_layers"]):
        sd[f"additional_linear_{i}_weight"] = torch.randn(width, fan_in, generator=g) * 0.3
        sd[f"additional_linear_{i}_bias"] = torch.randn(width, generator=g) * 0.1
        fan_in = width
    sd["linear_weight"] = torch.randn(classes, fan_in, generator=g) * 0.3
    sd["linear_bias"] = torch.randn(classes, generator=g) * 0.1
    return sd


def reference_logits(sd: dict, params: dict, x: torch.Tensor) -> torch.Tensor:
    """The reference forward, from its formulas: conv -> ReLU -> max-pool -> flatten (C, H, W)
    -> [linear -> ReLU]* -> linear."""
    h = F.conv2d(x, sd["conv2d_weight"], sd["conv2d_bias"], stride=params["stride"],
                 padding=params["padding"])  # fmt: skip
    h = F.max_pool2d(F.relu(h), params["pool_size"]).flatten(1)
    for i in range(len(params["additional_layers"])):
        h = F.relu(
            F.linear(h, sd[f"additional_linear_{i}_weight"], sd[f"additional_linear_{i}_bias"])
        )
    return F.linear(h, sd["linear_weight"], sd["linear_bias"])


def write_reference(
    tmp: Path, params: dict, sd: dict | None = None, seed: int = 0
) -> tuple[Path, Path]:
    """``model.pth`` and ``model_params.json`` in ``tmp`` (digits geometry unless ``sd`` given)."""
    sd = reference_state_dict(params, 1, 8, 10, seed) if sd is None else sd
    pth, js = tmp / "model.pth", tmp / "model_params.json"
    torch.save(sd, pth)
    js.write_text(json.dumps(params))
    return pth, js


def run_cli(argv: list[str], capsys) -> tuple[int, list[str], str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    cap = capsys.readouterr()
    return code, cap.err.strip().splitlines(), cap.out


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.parametrize("params", [DEFAULT, HIDDEN], ids=["default", "pool-hidden"])
def test_imported_logits_equal_the_reference_formulas(tmp_path, params, digits, capsys):
    sd = reference_state_dict(params, 1, 8, 10, seed=3)
    pth, js = write_reference(tmp_path, params, sd)
    out = tmp_path / "run"
    code, err, stdout = run_cli(["import-reference", pth, "--model-params", js, "--dataset",
                                 "digits", "--out", out], capsys)  # fmt: skip
    assert code == 0, err
    assert "imported" in stdout
    cfg, model = load_run(out)
    assert cfg.dataset == "digits" and cfg.model.hidden == tuple(params["additional_layers"])
    assert cfg.nonidealities.active() == {} and cfg.normalization.is_identity
    x = digits.x_test
    with torch.no_grad():
        ours, ref = model(x), reference_logits(sd, params, x)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)  # float32 rounding
    assert torch.equal(ours.argmax(1), ref.argmax(1))
    note = json.loads((out / "imported.json").read_text())
    assert note["sources"]["weights"]["sha256"] == hashlib.sha256(pth.read_bytes()).hexdigest()
    assert note["key_map"]["conv2d_weight"] == "conv.weight"
    # `aanntwin evaluate` reads the folder: its accuracy is the reference model's
    code, err, stdout = run_cli(["evaluate", out, "--ideal"], capsys)
    assert code == 0, err
    expected = float((ref.argmax(1) == digits.y_test).float().mean())
    assert json.loads(stdout)["accuracy_mean"] == pytest.approx(expected)


class Custom:  # pickled by reference: weights_only must refuse it
    def __reduce__(self):
        return (print, ("this would run",))


def _one_error(capsys, argv: list[str]) -> str:
    code, err, _ = run_cli(argv, capsys)
    assert code == 2
    assert len(err) == 1, err
    return err[0]


def test_a_file_that_needs_more_than_weights_only_is_refused(tmp_path, capsys):
    sd = reference_state_dict(DEFAULT, 1, 8, 10, 0)
    sd["conv2d_weight"] = Custom()
    pth, js = write_reference(tmp_path, DEFAULT, sd)
    out = tmp_path / "run"
    line = _one_error(capsys, ["import-reference", pth, "--model-params", js, "--dataset",
                               "digits", "--out", out])  # fmt: skip
    assert "may contain code and is not loaded" in line and "weights_only=True" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda sd: sd.update(conv2d_weight=torch.zeros(4, 1, 5, 5)),
         "conv2d_weight has shape (4, 1, 5, 5), expected (4, 1, 6, 6)"),
        (lambda sd: sd.update(linear_weight=torch.zeros(10, 35)),
         "linear_weight has shape (10, 35), expected (10, 36)"),
        (lambda sd: sd.pop("conv2d_bias"), "missing 'conv2d_bias' (shape (4,)"),
        (lambda sd: sd.update(additional_linear_0_weight=torch.zeros(3, 36)),
         "unexpected key 'additional_linear_0_weight' (a hidden stage beyond the 0"),
        (lambda sd: sd.update(optimizer_state=torch.zeros(1)), "unexpected key 'optimizer_state'"),
        (lambda sd: sd.update(epoch=3), "epoch holds a int, not a tensor"),
        (lambda sd: sd.update(linear_bias=torch.full((10,), float("nan"))),
         "linear_bias has 10 non-finite value(s)"),
        (lambda sd: sd.update(conv2d_bias=torch.zeros(4, dtype=torch.int64)), "conv2d_bias holds torch.int64"),
        # finite in float64, inf in the float32 model: imported with exit 0 (144 inf weights)
        (lambda sd: sd.update(linear_weight=torch.full((10, 36), 1e300, dtype=torch.float64)),
         "linear_weight has values up to 1e+300, beyond the float32 range"),
    ],
    ids=["conv-shape", "linear-shape", "missing", "extra-hidden", "extra-key", "not-a-tensor",
         "nan", "int", "beyond-float32"],
)  # fmt: skip
def test_bad_weights_are_one_line_naming_the_key(tmp_path, capsys, change, needle):
    sd = reference_state_dict(DEFAULT, 1, 8, 10, 0)
    change(sd)
    pth, js = write_reference(tmp_path, DEFAULT, sd)
    line = _one_error(capsys, ["import-reference", pth, "--model-params", js, "--dataset",
                               "digits", "--out", tmp_path / "run"])  # fmt: skip
    assert needle in line and str(pth) in line


def test_not_a_state_dict_and_not_a_torch_file(tmp_path, capsys):
    js = tmp_path / "m.json"
    js.write_text(json.dumps(DEFAULT))
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"PK\x03\x04 not a zip")
    base = ["--model-params", js, "--dataset", "digits", "--out", tmp_path / "o"]
    cmd = lambda name: ["import-reference", tmp_path / name, *base]  # noqa: E731
    assert "holds a list, not a named state dict" in _one_error(capsys, cmd("list.pth"))
    assert "junk.pth: not a readable PyTorch weight file" in _one_error(capsys, cmd("junk.pth"))
    assert "weights file not found" in _one_error(capsys, cmd("none.pth"))


def test_parameter_files_load_through_the_aliases(tmp_path):
    m, t = tmp_path / "m.json", tmp_path / "t.json"
    m.write_text(json.dumps(HIDDEN))
    t.write_text(json.dumps({"epochs": 7, "learning_rate": 0.01, "optimizer": "Adam", "seed": 5,
                             "batch_size": 64, "dataset": "CIFAR-10"}))  # fmt: skip
    cfg = load_reference_params(str(m), str(t))
    assert (cfg.model.channels, cfg.model.kernel, cfg.model.stride, cfg.model.padding,
            cfg.model.pool, cfg.model.hidden) == (3, 3, 1, 1, 2, (16, 12))  # fmt: skip
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.optimizer, cfg.train.seed,
            cfg.train.batch_size) == (7, 0.01, "adam", 5, 64)  # fmt: skip
    assert cfg.dataset == "cifar10"
    # what the training file leaves out is the reference tool's behaviour, not aanntwin's
    assert (cfg.train.schedule, cfg.train.nesterov, cfg.train.momentum) == ("constant", False, 0.0)
    assert REFERENCE_TRAIN_DEFAULTS["schedule"] == "constant"
    assert load_reference_params(str(m), dataset="digits").dataset == "digits"
    assert set(REFERENCE_ALIASES) >= {"conv_out_channels", "kernel_size", "pool_size",
                                      "additional_layers", "learning_rate", "lr"}  # fmt: skip


@pytest.mark.parametrize(
    ("model", "train", "needle"),
    [
        ({**DEFAULT, "dropout": 0.5}, None, "m.json: unknown reference parameter 'dropout'"),
        (DEFAULT, {"epochs": 3, "learning_rte": 0.1},
         "t.json: unknown reference parameter 'learning_rte'; did you mean 'learning_rate'?"),
        ({**DEFAULT, "kernel_size": 0}, None, "m.json: model.kernel = 0: out of range"),
        ({**DEFAULT, "additional_layers": [8, -1]}, None, "model.hidden[1] = -1"),
        (DEFAULT, {"optimizer": "rmsprop"}, "t.json: train.optimizer = 'rmsprop'"),
        (DEFAULT, {"lr": 0.1, "learning_rate": 0.2}, "'lr' and 'learning_rate' both set train.lr"),
        ({**DEFAULT, "dataset": "svhn"}, None, "m.json: dataset = 'svhn'"),
        ({**DEFAULT, "kernel_size": 5, "dataset": "mnist"}, None, "m.json: conv on input height 28"),
    ],
    ids=["unknown-model", "unknown-train", "range", "hidden", "optimizer", "twice", "dataset",
         "geometry"],
)  # fmt: skip
def test_bad_parameter_files_are_one_line_naming_file_and_key(
    tmp_path, capsys, model, train, needle
):
    m, t = tmp_path / "m.json", tmp_path / "t.json"
    m.write_text(json.dumps(model))
    argv = ["import-reference", "--model-params", m, "--out", tmp_path / "o"]
    if train is not None:
        t.write_text(json.dumps(train))
        argv += ["--train-params", t]
    line = _one_error(capsys, argv)
    assert needle in line, line
    kind = AanntwinError if "conv on input" in needle else ConfigError  # geometry: GeometryError
    with pytest.raises(kind, match=r"\.json: "):
        load_reference_params(str(m), str(t) if train is not None else None)
    if "unknown" in needle:
        assert "known aliases: conv_out_channels" in line


def test_parameters_alone_give_a_config_for_train(tmp_path, capsys):
    m, t = tmp_path / "m.json", tmp_path / "t.json"
    m.write_text(json.dumps(DEFAULT))
    t.write_text(json.dumps({"epochs": 2}))
    code, err, stdout = run_cli(["import-reference", "--model-params", m, "--train-params", t,
                                 "--dataset", "digits", "--out", tmp_path / "cfg"], capsys)  # fmt: skip
    assert code == 0, err
    cfg = load_config(str(tmp_path / "cfg" / "config.json"))
    assert cfg.train.epochs == 2 and cfg.train.lr == 1e-3 and cfg.train.batch_size == 1
    assert "note: train.lr = 0.001 (the reference tool's)" in stdout


SWEEP = {"results": {
    "0.0": {"0.0": [[0.1, 0.9], [0.3, 0.7]], "0.5": [[1.0, 0.5]]},
    "0.1": {"0.0": [[0.2, 0.8], [0.2, 0.8], [0.2, 0.8]], "0.5": [[0.5, 0.6], [0.7, 0.4]]},
}}  # fmt: skip


def test_sweep_results_become_the_tidy_results_csv(tmp_path, capsys):
    src, out = tmp_path / "sweep.json", tmp_path / "sweep"
    src.write_text(json.dumps(SWEEP))
    code, err, stdout = run_cli(["import-reference", "--sweep", src, "--dataset", "mnist",
                                 "--out", out], capsys)  # fmt: skip
    assert code == 0, err
    assert "4 points (8 runs" in stdout
    from aanntwin.studies.noise_sweep import COLUMNS

    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [*COLUMNS, "task_key"]
    assert [(float(r["train_level"]), float(r["test_level"])) for r in rows] == [
        (0.0, 0.0), (0.0, 0.5), (0.1, 0.0), (0.1, 0.5)]  # fmt: skip
    first = rows[0]
    assert first["kind"] == "input" and first["train_kinds"] == "input"
    assert first["dataset"] == "mnist" and first["runs"] == "2"
    assert float(first["accuracy_mean"]) == pytest.approx(0.8)
    assert float(first["accuracy_std"]) == pytest.approx(0.1414213562)  # sample std, as torch
    assert float(first["loss_mean"]) == pytest.approx(0.2)
    assert float(rows[1]["accuracy_std"]) == 0.0 and rows[1]["runs"] == "1"
    assert float(rows[2]["accuracy_std"]) == 0.0 and float(rows[3]["loss_mean"]) == pytest.approx(
        0.6
    )
    with open(out / "runs.csv", newline="") as fh:
        runs = list(csv.DictReader(fh))
    assert len(runs) == 8 and runs[1] == {"train_level": "0.0", "test_level": "0.0", "run": "1",
                                          "loss": "0.3", "accuracy": "0.7"}  # fmt: skip
    meta = json.loads((out / "config.json").read_text())
    assert meta["study"] == "noise" and meta["kinds"] == ["input"]
    assert meta["imported_from"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    # the report's plot reads it as a sweep of its own
    import pandas as pd

    from aanntwin.report.plots import tolerance_curves

    tolerance_curves(pd.read_csv(out / "results.csv"))


def test_sweep_in_percent_and_off_levels(tmp_path):
    src = tmp_path / "s.json"
    src.write_text(
        json.dumps({"results": {"None": {"None": [[0.1, 97.0]], "0.01": [[0.2, 95.0]]}}})
    )
    points, runs, percent = import_reference_sweep(src, tmp_path / "o", kind="conv_out")
    assert (points, runs, percent) == (2, 2, True)
    with open(tmp_path / "o" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["train_level"] == "" and rows[0]["test_level"] == ""
    assert float(rows[0]["accuracy_mean"]) == pytest.approx(0.97) and rows[1]["kind"] == "conv_out"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ([1, 2], "expected an object with results[train_level][test_level]"),
        ({"res": {}}, "found no 'results' key"),
        ({"results": {"0.0": [[0.1, 0.9]]}}, "results['0.0']: expected a non-empty object"),
        ({"results": {"abc": {"0.0": [[0.1, 0.9]]}}}, "results['abc']: level 'abc' is not a number"),
        ({"results": {"0.0": {"0.1": [[0.1]]}}}, "results['0.0']['0.1'][0] = [0.1]: expected [loss, accuracy]"),
        ({"results": {"0.0": {"0.1": [[0.1, "x"]]}}}, "results['0.0']['0.1'][0][1] (accuracy) = 'x'"),
        ({"results": {"0.0": {"0.1": []}}}, "results['0.0']['0.1']: expected a non-empty list"),
        ({"results": {"0.0": {"0.1": [[0.1, 101]]}}}, "accuracy in 0..1 (or 0..100 %)"),
        ({"results": {"0": {"0.1": [[0.1, 0.5]]}, "0.0": {"0.1": [[0.1, 0.5]]}}},
         "the same point as results['0']['0.1']"),
    ],
)  # fmt: skip
def test_bad_sweep_structure_is_one_line_naming_the_path(tmp_path, capsys, data, needle):
    src = tmp_path / "s.json"
    src.write_text(json.dumps(data))
    line = _one_error(capsys, ["import-reference", "--sweep", src, "--out", tmp_path / "o"])
    assert needle in line and str(src) in line
    assert not (tmp_path / "o").exists()
    with pytest.raises(AanntwinError):
        import_reference_sweep(src, tmp_path / "o2")


def test_sweep_with_weights_and_no_model_params_are_usage_errors(tmp_path, capsys):
    assert "drop WEIGHTS" in _one_error(capsys, ["import-reference", "w.pth", "--sweep", "s.json",
                                                 "--out", tmp_path / "o"])  # fmt: skip
    assert "--model-params: required" in _one_error(capsys, ["import-reference", "w.pth", "--out",
                                                             tmp_path / "o"])  # fmt: skip
