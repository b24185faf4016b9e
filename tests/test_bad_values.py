"""Bad values, refused before any work (issue 11): bounds on every count and size flag, finite
sweep ranges, ``--device`` on every command, NaN weights, diverged training, tampered exports.

Each case goes through :func:`aanntwin.cli.main` and asserts exit status 2, one line on stderr
naming the flag/field and the value given, no traceback, and nothing written under ``--out``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from aanntwin.cli import main
from aanntwin.studies.export import MANIFEST, export_run

BIG = str(2**63)

# argv (with {run}, {out}, {nl} and {exp} filled in), then the texts the one line must hold.
PARSE_TIME = [
    (["train", "--threads", "100000", "--out", "{out}"], ["--threads", "100000", "allowed 1.."]),
    (["train", "--threads", "0", "--out", "{out}"], ["--threads", "0", ">= 1"]),
    (["evaluate", "{run}", "--runs", "1000000000"], ["--runs", "1000000000", "100 MB"]),
    (["sweep", "noise", "--runs", "1000000000", "--out", "{out}"], ["--runs", "1000000000"]),
    (["specs", "{run}", "--runs", "2000000", "--out", "{out}"], ["--runs", "2000000"]),
    (
        ["yield", "{run}", "--nonidealities", "{nl}", "--instances", "1000000000"],
        ["--instances", "1000000000", "allowed 1..1000000"],
    ),
    (
        ["characterize", "--simulate", "--out", "{out}", "--instances", "100000"],
        ["--instances", "100000", "3..10000"],
    ),
    (["train", "--epochs", "0", "--out", "{out}"], ["--epochs", "0: trains nothing; use >= 1"]),
    (["sweep", "noise", "--epochs", "0", "--out", "{out}"], ["--epochs", "trains nothing"]),
    (["train", "--epochs", "1000001", "--out", "{out}"], ["--epochs", "1000001", "1..100000"]),
    (["train", "--batch-size", "0", "--out", "{out}"], ["--batch-size", "0", ">= 1"]),
    (["train", "--batch-size", "10000000", "--out", "{out}"], ["--batch-size", "10000000"]),
    (["evaluate", "{run}", "--batch-size", "-3"], ["--batch-size", "-3"]),
    (["sweep", "noise", "--workers", "0", "--out", "{out}"], ["--workers", "0", ">= 1"]),
    (["sweep", "noise", "--workers", "100000", "--out", "{out}"], ["--workers", "100000"]),
    (["sweep", "noise", "--threads", "100000", "--out", "{out}"], ["--threads", "100000"]),
    (["train", "--seed", "-1", "--out", "{out}"], ["--seed", "-1", ">= 0"]),
    (["train", "--seed", BIG, "--out", "{out}"], ["--seed", BIG, str(2**63 - 1)]),
    (["evaluate", "{run}", "--seed", BIG], ["--seed", BIG]),
    (["sweep", "noise", "--seed", "-5", "--out", "{out}"], ["--seed", "-5"]),
    (["characterize", "--simulate", "--out", "{out}", "--seed", "-1"], ["--seed", "-1"]),
    (["yield", "{run}", "--nonidealities", "{nl}", "--seed", BIG], ["--seed", BIG]),
    (
        ["normalize", "{run}", "--out", "{out}", "--calibration-images", "0"],
        ["--calibration-images", "0"],
    ),
    (
        ["export", "{run}", "--out", "{out}", "--calibration-images", "-1"],
        ["--calibration-images", "-1"],
    ),
    (["export", "{run}", "--out", "{out}", "--bias-bits", "99"], ["--bias-bits", "99", "0..24"]),
    (
        ["sweep", "quantization", "{run}", "--out", "{out}", "--bits", ""],
        ["--bits", "'': the list is empty"],
    ),
    (["sweep", "quantization", "{run}", "--out", "{out}", "--bits", "0:99"], ["--bits", "0..24"]),
    (
        ["sweep", "quantization", "{run}", "--out", "{out}", "--ref-sigmas", "0:nan:1"],
        ["--ref-sigmas", "'0:nan:1'", "finite"],
    ),
    (
        ["sweep", "quantization", "{run}", "--out", "{out}", "--ref-sigmas", "inf"],
        ["--ref-sigmas", "'inf'"],
    ),
    (
        ["sweep", "quantization", "{run}", "--out", "{out}", "--ref-sigmas", ","],
        ["--ref-sigmas", "',': the list is empty"],
    ),
    (["sweep", "architecture", "--limit", "0", "--out", "{out}"], ["--limit", "0"]),
    (["specs", "{run}", "--target-drop", "nan", "--out", "{out}"], ["--target-drop", "nan"]),
    (["yield", "{run}", "--nonidealities", "{nl}", "--confidence", "1.5"], ["--confidence", "1.5"]),
    (["characterize", "--simulate", "--out", "{out}", "--band", "1,inf"], ["--band", "1,inf"]),
    (["characterize", "--simulate", "--out", "{out}", "--a-vt", "nan"], ["--a-vt", "nan"]),
    (["characterize", "--simulate", "--out", "{out}", "--degree", "1000"], ["--degree", "1000"]),
]

RUN_TIME = [
    (
        ["sweep", "noise", "--test-levels", "0:nan:0.1", "--out", "{out}"],
        ["--test-levels", "'0:nan:0.1'", "finite"],
    ),
    (
        ["sweep", "noise", "--train-levels", "0:inf:0.1", "--out", "{out}"],
        ["--train-levels", "'0:inf:0.1'"],
    ),
    (["sweep", "noise", "--test-levels=-inf:1:1", "--out", "{out}"], ["--test-levels", "-inf"]),
    (["sweep", "noise", "--test-levels", "0:1:nan", "--out", "{out}"], ["--test-levels", "nan"]),
    (["sweep", "noise", "--test-levels", "nan", "--out", "{out}"], ["--test-levels", "'nan'"]),
    (
        ["sweep", "noise", "--normalize-target", "inf", "--out", "{out}"],
        ["--normalize-target", "'inf'"],
    ),
    (
        ["sweep", "noise", "--test-levels", ",", "--out", "{out}"],
        ["--test-levels ','", "the list is empty"],
    ),
    (
        ["sweep", "architecture", "--kernel", "", "--out", "{out}"],
        ["--kernel ''", "the list is empty"],
    ),
    (
        ["sweep", "architecture", "--channels", "1:1000000000", "--out", "{out}"],
        ["--channels", "1:1000000000", "at most"],
    ),
    (["specs", "{run}", "--kinds", "", "--out", "{out}"], ["--kinds ''", "the list is empty"]),
    # Beyond float32: the model overflowed and the command printed a NaN-based accuracy, exit 0
    (
        ["sweep", "noise", "--test-levels", "1e39", "--out", "{out}"],
        ["--test-levels", "1e+39", "float32"],
    ),  # fmt: skip
    (
        ["sweep", "quantization", "{run}", "--out", "{out}", "--ref-sigmas", "1e39"],
        ["--ref-sigmas", "1e+39", "float32"],
    ),
    (["sweep", "noise", "--normalize-target", "1e39", "--out", "{out}"], ["1e+39", "float32"]),
    (["normalize", "{run}", "--out", "{out}", "--target", "1e39"], ["1e39", "float32"]),
    # Given twice: computed and reported twice (a duplicate row in the sign-off spec table)
    (
        ["specs", "{run}", "--kinds", "input,input", "--out", "{out}"],
        ["--kinds", "'input'", "twice"],
    ),  # fmt: skip
    (
        ["sweep", "noise", "--kinds", "conv_out,conv2d_out", "--out", "{out}"],
        ["'conv_out'", "twice"],
    ),  # fmt: skip
    (["sweep", "noise", "--test-levels", "0.1,0.10", "--out", "{out}"], ["0.1", "twice"]),
    (
        ["sweep", "noise", "--test-levels", "none,0:0.2:0.1,none", "--out", "{out}"],
        ["None", "twice"],
    ),  # fmt: skip
    (["sweep", "quantization", "{run}", "--bits", "2,2", "--out", "{out}"], ["--bits", "twice"]),
    (
        ["export", "{run}", "--bits", "conv=4,linear=6,conv=5", "--out", "{out}"],
        ["--bits", "conv", "twice"],
    ),  # fmt: skip
    (["normalize", "{run}", "--targets", "conv=1,conv=2", "--out", "{out}"], ["conv", "twice"]),
]

# Every command with --device: the one-line error names the flag and the text given.
DEVICE_COMMANDS = [
    ["train", "--out", "{out}"],
    ["evaluate", "{run}"],
    ["evaluate", "--export", "{exp}"],
    ["normalize", "{run}", "--out", "{out}"],
    ["specs", "{run}", "--out", "{out}"],
    ["yield", "{run}", "--nonidealities", "{nl}", "--out", "{out}"],
    ["sweep", "noise", "--out", "{out}"],
    ["sweep", "quantization", "{run}", "--out", "{out}"],
    ["sweep", "architecture", "--out", "{out}"],
]
BAD_DEVICES = [
    "cuda:99" if torch.cuda.is_available() else "cuda:3",
    "bogus",
    "meta",
]


@pytest.fixture(scope="module")
def paths(trained_run, tmp_path_factory):
    """A trained run, an export of it and an empty nonidealities file (all read-only)."""
    base = tmp_path_factory.mktemp("bad_values")
    run = trained_run().folder
    export_run(run, base / "exp", bits=4, bias_bits=6)
    (base / "nl.json").write_text("{}")
    return {"run": str(run), "exp": str(base / "exp"), "nl": str(base / "nl.json")}


def refused(argv: list[str], needles: list[str], capsys, out: Path | None = None) -> str:
    """Run ``argv``: exit 2, one stderr line holding every needle, no traceback, no ``out``."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own checks
        code = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:  # NaN or nan, Infinity or inf: the JSON or the Python spelling
        assert needle.lower() in lines[0].lower(), (needle, lines[0])
    if out is not None:
        assert not out.exists(), f"{out} was written"
    return lines[0]


def _fill(argv: list[str], paths: dict[str, str], out: Path) -> list[str]:
    return [a.format(out=out, **paths) if "{" in a else a for a in argv]


@pytest.mark.parametrize(("argv", "needles"), PARSE_TIME + RUN_TIME)
def test_bad_flag_values(argv, needles, paths, tmp_path, capsys):
    out = tmp_path / "out"
    refused(_fill(argv, paths, out), needles, capsys, out)


@pytest.mark.parametrize(
    "values",
    [{"input_noise": 3e38}, {"conv2d_input_nonlin": [0, 1, 1e38]}],
    ids=["noise", "polynomial"],
)
def test_outputs_that_overflow_are_an_error_not_an_accuracy(values, paths, tmp_path, capsys):
    """Values inside float32 whose products overflow: the command printed the accuracy of
    NaN outputs (9.8 %) and a NaN loss (invalid JSON) with exit status 0."""
    nl = tmp_path / "nl.json"
    nl.write_text(json.dumps(values))
    name = next(iter(values))
    refused(["evaluate", paths["run"], "--runs", "2", "--nonidealities", str(nl)],
            ["not finite", name, "float32"], capsys)  # fmt: skip


def test_a_sweep_level_that_overflows_is_named(trained_run, digits):
    from aanntwin.studies.noise import evaluate_levels
    from aanntwin.training import NonFiniteError

    model = trained_run().model
    with pytest.raises(NonFiniteError, match=r"relu_out_noise=3e\+38"):
        evaluate_levels(model, digits.x_test, digits.y_test, "relu_out", [None, 0.1, 3e38])
    with pytest.raises(NonFiniteError, match=r"input_noise=3e\+38"):  # the general path
        evaluate_levels(model, digits.x_test, digits.y_test, "input", [0.1, 3e38], runs=2,
                        common_random_numbers=False)  # fmt: skip


@pytest.mark.parametrize("device", BAD_DEVICES)
@pytest.mark.parametrize("argv", DEVICE_COMMANDS, ids=lambda a: "-".join(a[:2]))
def test_bad_device_on_every_command(argv, device, paths, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [*_fill(argv, paths, out), "--device", device]
    refused(argv, ["--device", device], capsys, out)


def test_train_epochs_zero_from_config(tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"train": {"epochs": 0}}))
    out = tmp_path / "out"
    argv = ["train", "--config", str(tmp_path / "c.json"), "--out", str(out)]
    refused(argv, ["train.epochs = 0", "c.json", "trains nothing"], capsys, out)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_weights_are_refused_on_load(value, paths, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(paths["run"], run)
    tensors = load_file(run / "weights.safetensors")
    key = sorted(k for k in tensors if k.endswith("weight"))[0]
    tensors[key].view(-1)[3] = value
    save_file(tensors, run / "weights.safetensors")
    refused(["evaluate", str(run)], ["weights.safetensors", key, "non-finite"], capsys)
    refused(["export", str(run), "--out", str(tmp_path / "o")], [key], capsys, tmp_path / "o")


def test_diverged_training_is_not_written(tmp_path, capsys, monkeypatch):
    import aanntwin.training as training

    real = training.F.cross_entropy
    monkeypatch.setattr(
        training.F, "cross_entropy", lambda *a, **k: real(*a, **k) * torch.tensor(math.nan)
    )
    out = tmp_path / "out"
    argv = ["train", "--epochs", "1", "--out", str(out), "--no-progress", "--no-cache"]
    refused(argv, ["diverged", "epoch 1", "nan"], capsys, out)


def _set(stage: int, **fields):
    return lambda m: m["stages"][stage].update(fields)


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (_set(0, ref=math.nan), ["ref = nan", "finite"]),
        (_set(0, ref=-0.5), ["stage conv.ref = -0.5"]),
        (_set(1, ref=0), ["stage linear.ref = 0"]),
        (_set(0, ref=1e300), ["stage conv.ref = 1e+300", "float32"]),
        (_set(0, ref=math.inf), ["ref = inf", "finite"]),
        (_set(0, step=0.125), ["stage conv.step = 0.125", "inconsistent", "ref / 2**bits"]),
        (_set(1, step=math.nan), ["step = nan"]),
        (_set(0, ref="0.5"), ["stage conv.ref", "'0.5'"]),
        (_set(0, bias_step=1.0), ["stage conv.bias_step = 1.0", "inconsistent"]),
        (_set(0, bias_ref=-1.0), ["stage conv.bias_ref = -1.0"]),
        (_set(0, bias_bits=30), ["stage conv.bias_bits = 30", "0..24"]),
        (_set(0, bias_bits=True), ["stage conv.bias_bits", "True"]),
        (_set(0, bits=25), ["stage conv.bits = 25"]),
    ],
)
def test_tampered_manifest(edit, needles, paths, tmp_path, capsys):
    exp = tmp_path / "exp"
    shutil.copytree(paths["exp"], exp)
    manifest = json.loads((exp / MANIFEST).read_text())
    edit(manifest)
    (exp / MANIFEST).write_text(json.dumps(manifest))
    refused(["evaluate", "--export", str(exp)], [str(exp / MANIFEST), *needles], capsys)


def test_out_of_range_code(paths, tmp_path, capsys):
    exp = tmp_path / "exp"
    shutil.copytree(paths["exp"], exp)
    lines = (exp / "conv_weights.csv").read_text().splitlines()
    lines[1] = ",".join([*lines[1].split(",")[:-1], "99"])
    (exp / "conv_weights.csv").write_text("\n".join(lines) + "\n")
    refused(["evaluate", "--export", str(exp)], ["conv_weights.csv", "'99'", "[-15, 15]"], capsys)
