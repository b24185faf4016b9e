"""Hardware export: codes on quantize_weights' grid, exact round trip, malformed exports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from aanntwin.config import Nonidealities
from aanntwin.errors import AanntwinError
from aanntwin.model import WEIGHTS_FILE, save_weights
from aanntwin.studies.export import MANIFEST, export_model, export_run, load_export
from aanntwin.training import evaluate
from tests.conftest import SMALL, SMALL_HIDDEN


@pytest.fixture(scope="module")
def trained(trained_run):
    """Per hidden widths: the shared small run's config and a model of this module's own."""
    return {cfg.model.hidden: (cfg, trained_run(cfg).model) for cfg in (SMALL, SMALL_HIDDEN)}


def quantized(model, manifest, zero_level):
    """The in-memory deployed model: the same Main with weight quantization on."""
    by = {s["name"]: s for s in manifest["stages"]}
    nl = Nonidealities(
        conv2d_weight_bits=by["conv"]["bits"],
        conv2d_weight_ref=manifest["refs_given"].get("conv"),
        linear_weight_bits=by["linear"]["bits"],
        linear_weight_ref=manifest["refs_given"].get("linear"),
        weight_zero_level=zero_level,
    )
    model.set_nonidealities(nl)
    return model


@pytest.mark.parametrize(
    "hidden, bits, refs, zero_level",
    [
        ((), 4, None, True),
        ((), 3, None, False),
        ((), {"conv": 2, "linear": 5}, {"conv": 0.3, "linear": 0.2}, True),
        ((8,), {"conv": 4, "linear": 3}, None, False),
        ((8,), 0, {"linear": 0.1}, True),
    ],
)
def test_round_trip_is_exact(trained, digits, tmp_path, hidden, bits, refs, zero_level):
    cfg, model = trained[hidden]
    manifest = export_model(model, cfg, tmp_path, bits=bits, refs=refs, zero_level=zero_level)
    # The in-memory model uses the exported (float32-rounded) refs: see the module docstring.
    snapped = {s["name"]: s["ref"] for s in manifest["stages"]}
    manifest["refs_given"] = {k: snapped[k] for k in (refs or {})}
    cfg2, loaded = load_export(tmp_path)
    assert cfg2 == cfg
    assert not loaded.nonidealities.active()
    ref_model = quantized(
        type(model)(cfg.model, (1, 8, 8), 10, None, cfg.normalization), manifest, zero_level
    )
    ref_model.load_state_dict(model.state_dict())
    # Without requires_grad quantize_weights returns its levels as they are: the straight-through
    # ``w + (q - w).detach()`` can move a level by one float32 ulp (see test_straight_through_ulp).
    ref_model.requires_grad_(False)
    for mine, theirs in zip(loaded.mac_stages(), ref_model.mac_stages(), strict=True):
        assert torch.equal(mine.weight, theirs.effective_weight().detach())
        assert torch.equal(mine.bias, theirs.bias)
    x, y = digits.x_test, digits.y_test
    assert evaluate(loaded, x, y).accuracy == evaluate(ref_model, x, y).accuracy


def test_user_refs_as_given_match_accuracy(trained, digits, tmp_path):
    cfg, model = trained[()]
    export_model(model, cfg, tmp_path, bits=3, refs={"conv": 0.3, "linear": 0.2})
    nl = Nonidealities(conv2d_weight_bits=3, conv2d_weight_ref=0.3, linear_weight_bits=3,
                       linear_weight_ref=0.2)  # fmt: skip
    deployed = type(model)(cfg.model, (1, 8, 8), 10, nl, cfg.normalization)
    deployed.load_state_dict(model.state_dict())
    x, y = digits.x_test, digits.y_test
    assert evaluate(load_export(tmp_path)[1], x, y).accuracy == evaluate(deployed, x, y).accuracy


def test_csv_codes_and_manifest(trained, tmp_path):
    cfg, model = trained[(8,)]
    m = export_model(model, cfg, tmp_path, bits={"conv": 3, "linear": 2}, bias_bits=6)
    assert m["schema_version"] == 1 and m["config_hash"] == cfg.content_hash()
    assert [s["name"] for s in m["stages"]] == ["conv", "hidden0", "linear"]
    assert set(m["units"]) >= {"ref", "step", "input_full_scale_V", "normalization_gain"}
    on_disk = json.loads((tmp_path / MANIFEST).read_text())
    assert on_disk == json.loads(json.dumps(m))
    for s in m["stages"]:
        assert s["bits"] == (3 if s["name"] == "conv" else 2)
        with open(tmp_path / s["csv"]) as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == torch.Size(s["shape"]).numel()
        codes = [int(r["code"]) for r in rows]  # integers, not "3.0"
        assert all(s["code_min"] <= c <= s["code_max"] for c in codes)
        assert max(map(abs, codes)) == s["code_max"]  # default ref = max |w|: the top code
        assert s["normalization_gain"] == 1.0 and s["output_full_scale_V"] is None
        with open(tmp_path / s["bias_csv"]) as fh:
            assert list(csv.DictReader(fh))[0].keys() == {"out", "code"}
    load_export(tmp_path)  # quantized biases load too


def test_export_run_reads_normalization(tmp_path, trained, digits):
    from aanntwin.studies.normalize import normalize_run

    cfg, model = trained[()]
    run = tmp_path / "run"
    save_weights(model, run / WEIGHTS_FILE)
    (run / "config.json").write_text(cfg.to_json())
    m = export_run(run, tmp_path / "plain", bits=4)
    assert m["full_scale_source"] == "calibration"
    assert all(s["output_full_scale_V"] > 0 for s in m["stages"])
    normalize_run(run, tmp_path / "norm", targets={"conv": 0.8, "linear": 1.0})
    m = export_run(tmp_path / "norm", tmp_path / "exp", bits=4)
    by = {s["name"]: s for s in m["stages"]}
    assert m["full_scale_source"] == "normalization.json"
    assert by["conv"]["output_full_scale_V"] == pytest.approx(0.8)
    assert by["linear"]["input_full_scale_V"] == pytest.approx(0.8)
    assert by["conv"]["normalization_gain"] != 1.0


def _break(folder: Path, edit) -> None:
    m = json.loads((folder / MANIFEST).read_text())
    edit(m, folder)
    (folder / MANIFEST).write_text(json.dumps(m))


def _set_code(folder: Path, value: str) -> None:
    path = folder / "conv_weights.csv"
    lines = path.read_text().splitlines()
    lines[1] = ",".join([*lines[1].split(",")[:-1], value])
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m, f: m["stages"].pop(1), r"manifest\.json.*missing \['linear'\]"),
        (lambda m, f: m["stages"][0].update(bits=99), r"manifest\.json: stage conv\.bits = 99"),
        (
            lambda m, f: m["stages"][0].update(bits=2),
            r"stage conv: code_min -15, code_max 15 do not match bits 2 with zero_level true",
        ),
        # the grid flipped was reported as a bits error
        (
            lambda m, f: m["stages"][0].update(zero_level=False),
            r"stage conv: code_min -15, code_max 15 do not match bits 4 with zero_level false",
        ),
        # a file outside the export was read as its codes
        (
            lambda m, f: m["stages"][1].update(csv="../run/linear_weights.csv"),
            r"stage linear\.csv = '\.\./run/linear_weights\.csv': must name a file of the export",
        ),
        (lambda m, f: m["stages"][0].update(bias_csv="/etc/passwd"), r"stage conv\.bias_csv"),
        (lambda m, f: m["stages"][0].update(shape=[4, 1, 5, 5]), r"stage conv\.shape"),
        (lambda m, f: m.update(schema_version=7), r"manifest\.json: schema_version = 7"),
        (lambda m, f: (f / "linear_weights.csv").unlink(), r"linear_weights\.csv.*missing"),
        (lambda m, f: _set_code(f, "16"), r"conv_weights\.csv: row 2, column code: '16'"),
        (lambda m, f: _set_code(f, "1.5"), r"conv_weights\.csv: row 2, column code"),
        (lambda m, f: m["config"]["model"].update(channels=5), r"config_hash"),
    ],
)
def test_malformed_export(trained, tmp_path, edit, match):
    cfg, model = trained[()]
    export_model(model, cfg, tmp_path, bits=4)
    _break(tmp_path, edit)
    with pytest.raises(AanntwinError, match=match):
        load_export(tmp_path)


def test_bad_arguments(trained, tmp_path):
    cfg, model = trained[()]
    with pytest.raises(AanntwinError, match="unknown stage"):
        export_model(model, cfg, tmp_path, bits={"conv": 4, "lin": 4})
    with pytest.raises(AanntwinError, match="bits for stage linear"):
        export_model(model, cfg, tmp_path, bits={"conv": 4})
    with pytest.raises(AanntwinError, match="manifest not found"):
        load_export(tmp_path / "nothing")


def test_straight_through_ulp_does_not_change_accuracy(trained, digits, tmp_path):
    """With gradients on, the twin's quantized weights are ``w + (q - w)``, which can differ from
    the level ``q`` by one float32 ulp; the exported (exact) levels give the same accuracy."""
    cfg, model = trained[(8,)]
    m = export_model(model, cfg, tmp_path, bits=2, zero_level=False, refs={"conv": 0.25})
    nl = Nonidealities(conv2d_weight_bits=2, conv2d_weight_ref=0.25, linear_weight_bits=2,
                       weight_zero_level=False)  # fmt: skip
    deployed = type(model)(cfg.model, (1, 8, 8), 10, nl, cfg.normalization)
    deployed.load_state_dict(model.state_dict())
    assert m["stages"][0]["ref"] == 0.25
    x, y = digits.x_test, digits.y_test
    assert evaluate(load_export(tmp_path)[1], x, y).accuracy == evaluate(deployed, x, y).accuracy


def test_cli_glue_and_evaluate_export(trained, tmp_path, capsys):
    import argparse

    from aanntwin.cli import export as export_cli
    from aanntwin.studies import export

    cfg, model = trained[(8,)]
    run = tmp_path / "run"
    save_weights(model, run / WEIGHTS_FILE)
    (run / "config.json").write_text(cfg.to_json())
    parser = argparse.ArgumentParser()
    export_cli.add_parser(parser.add_subparsers(dest="command"))
    argv = ["export", str(run), "--bits", "conv=4,linear=3", "--refs", "conv=0.5"]
    args = parser.parse_args(
        [*argv, "--no-zero-level", "--bias-bits", "8", "--out", str(tmp_path / "e")]
    )
    assert args.bits == {"conv": 4, "linear": 3} and args.refs == {"conv": 0.5}
    assert export_cli.run(args) == 0
    out = capsys.readouterr().out
    assert "hidden0" in out and "codes -8..7" in out and "manifest.json" in out
    report = export.evaluate_export(tmp_path / "e", runs=2, seed=1)
    assert 0.0 < report["accuracy_mean"] <= 1.0 and report["runs"] == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["export", str(run), "--bits", "conv=x", "--out", "o"])


def test_export_and_evaluate_export_from_the_command_line(trained_run, tmp_path, capsys):
    import json as _json

    from aanntwin.cli import main

    run = trained_run(SMALL).folder  # aanntwin train --epochs 3 --batch-size 32
    out = tmp_path / "export"
    assert main(["export", str(run), "--bits", "conv=3,linear=4", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--export", str(out)]) == 0
    exported = _json.loads(capsys.readouterr().out)
    nl = tmp_path / "q.json"
    nl.write_text(_json.dumps({"conv2d_weight_bits": 3, "linear_weight_bits": 4}))
    assert main(["evaluate", str(run), "--nonidealities", str(nl)]) == 0
    in_memory = _json.loads(capsys.readouterr().out)
    assert exported["accuracy_mean"] == in_memory["accuracy_mean"]


NOISY_RUN = {"conv2d_weight_bits": 3, "linear_weight_bits": 3, "input_noise": 0.2,
             "conv2d_weight_nonlin": (0.0, 1.0, 0.3), "relu_cutoff": 0.05}  # fmt: skip
"""The testers' run: quantized weights, a weight transfer, input noise and a ReLU cutoff."""


def test_evaluate_export_uses_the_runs_nonidealities(trained_run, tmp_path, capsys):
    """``evaluate --export`` evaluated the chip with every nonideality off (0.849 against the
    run's 0.608 in the tester's case), though the README promises the run's accuracy."""
    from aanntwin.cli import main

    run = trained_run(SMALL.replace(nonidealities=Nonidealities(**NOISY_RUN))).folder
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    of_run = _report(capsys, ["evaluate", str(run), "--runs", "3", "--seed", "2"])
    of_export = _report(capsys, ["evaluate", "--export", str(out), "--runs", "3", "--seed", "2"])
    assert of_export["accuracy_mean"] == of_run["accuracy_mean"]
    assert of_export["accuracy_std"] == of_run["accuracy_std"] > 0  # the noise is on
    assert of_export["nonidealities"]["input_noise"] == 0.2
    assert "conv2d_weight_bits" not in of_export["nonidealities"]  # the codes are the weights
    ideal = _report(capsys, ["evaluate", "--export", str(out), "--ideal", "--runs", "3"])
    assert ideal["nonidealities"] == {} and ideal["accuracy_std"] == 0


def test_evaluate_export_under_a_weight_table(trained_run, tmp_path, capsys):
    """A characterized file's weight table needs its weight range, which the export's reload
    dropped: 'conv2d_weight_table: needs conv2d_weight_range' though the file has it."""
    import json as _json

    from aanntwin.cli import main

    out = tmp_path / "export"
    assert main(["export", str(trained_run().folder), "--bits", "4", "--out", str(out)]) == 0
    nl = tmp_path / "fitted.json"
    nl.write_text(_json.dumps({"conv2d_weight_range": 2.0, "linear_weight_range": 2.0,
                               "conv2d_weight_table": [-1.8, -0.9, 0.0, 0.9, 1.8],
                               "linear_weight_table": [-2.0, 0.0, 2.0]}))  # fmt: skip
    report = _report(capsys, ["evaluate", "--export", str(out), "--nonidealities", str(nl)])
    assert report["nonidealities"]["conv2d_weight_range"] == 2.0
    assert 0.0 < report["accuracy_mean"] <= 1.0


def _report(capsys, argv: list[str]) -> dict:
    from aanntwin.cli import main

    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


QUANTIZED_RUN = {"conv2d_weight_bits": 3, "linear_weight_bits": 1, "linear_weight_ref": 0.4,
                 "weight_zero_level": False}  # fmt: skip
"""The user's report: 1-bit linear weights at a fixed ref 0.4 without a zero level."""


@pytest.fixture(scope="module")
def quantized_run(trained_run):
    """A digits run trained with weight quantization, through the CLI (3 epochs, ~3 s)."""
    return trained_run(SMALL.replace(nonidealities=Nonidealities(**QUANTIZED_RUN))).folder


def _accuracy(capsys, argv: list[str]) -> float:
    from aanntwin.cli import main

    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)["accuracy_mean"]


def test_export_without_flags_follows_the_trained_run(quantized_run, tmp_path, capsys):
    """Regression (issue 9): export took bits, ref and zero level from flags only (ref = max |w|,
    zero level on), so the 1-bit run fell from 75 % to 39 %; old code: --bits was required."""
    from aanntwin.cli import main

    run_acc = _accuracy(capsys, ["evaluate", str(quantized_run)])
    assert run_acc > 0.5  # the run learned something: the comparison below can fail
    assert main(["export", str(quantized_run), "--out", str(tmp_path / "e")]) == 0
    printed = capsys.readouterr().out
    assert "linear   10x36      1 bits (run config), ref 0.4 (run config)" in printed
    exported = _accuracy(capsys, ["evaluate", "--export", str(tmp_path / "e")])
    assert abs(exported - run_acc) <= 0.005
    by = {s["name"]: s for s in json.loads((tmp_path / "e" / MANIFEST).read_text())["stages"]}
    assert by["linear"]["ref"] == pytest.approx(0.4) and by["linear"]["zero_level"] is False
    assert by["conv"]["bits"] == 3 and by["conv"]["ref_source"] == "max |w|"
    assert {by["linear"][f"{k}_source"] for k in ("bits", "ref", "zero_level")} == {"run config"}


def test_flags_override_the_run_per_stage(quantized_run, tmp_path, capsys):
    from aanntwin.cli import main

    argv = ["export", str(quantized_run), "--bits", "linear=2", "--zero-level"]
    assert main([*argv, "--out", str(tmp_path / "e")]) == 0
    by = {s["name"]: s for s in json.loads((tmp_path / "e" / MANIFEST).read_text())["stages"]}
    assert (by["linear"]["bits"], by["linear"]["bits_source"]) == (2, "flag")
    assert (by["conv"]["bits"], by["conv"]["bits_source"]) == (3, "run config")
    assert by["linear"]["ref_source"] == "run config" and by["linear"]["zero_level"] is True
    assert by["conv"]["zero_level_source"] == "flag"


def test_refs_in_sigmas(trained, tmp_path):
    """``--refs linear=2.5sigma``: 2.5 population stds of the stage's weights (the quantization
    study's unit); old code: not a float, an argparse error."""
    import argparse

    from aanntwin.cli import export as export_cli

    cfg, model = trained[(8,)]
    parser = argparse.ArgumentParser()
    export_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", "r", "--bits", "3", "--refs", "linear=2.5sigma,conv=0.3",
                              "--out", "o"])  # fmt: skip
    assert args.refs == {"linear": "2.5sigma", "conv": 0.3}
    m = export_model(model, cfg, tmp_path, bits=3, refs=args.refs)
    by = {s["name"]: s for s in m["stages"]}
    for name in ("hidden0", "linear"):  # hidden stages take the linear entry
        std = float(getattr(model, name).weight.detach().double().std(correction=0))
        assert by[name]["ref"] == pytest.approx(2.5 * std, rel=1e-6)
        assert by[name]["ref_sigmas"] == 2.5 and by[name]["ref_source"] == "flag"
    assert by["conv"]["ref"] == pytest.approx(0.3) and by["conv"]["ref_sigmas"] is None
    for bad in ("linear=xsigma", "-1sigma", "linear=0"):
        with pytest.raises(SystemExit):
            parser.parse_args(["export", "r", "--refs", bad, "--out", "o"])


def test_a_stage_without_trained_or_given_bits_names_the_flag(trained, tmp_path, capsys):
    from aanntwin.cli import main

    cfg, model = trained[()]
    run = tmp_path / "run"
    save_weights(model, run / WEIGHTS_FILE)
    (run / "config.json").write_text(cfg.to_json())
    assert main(["export", str(run), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "bits for stage conv" in err and "conv2d_weight_bits" in err
    assert "--bits conv=N" in err


def test_export_clips_to_the_trained_weight_range(trained, digits, tmp_path):
    """Weights beyond the programmable range are exported as the twin programs them."""
    cfg, model = trained[()]
    nl = Nonidealities(linear_weight_bits=4, linear_weight_range=0.1, conv2d_weight_bits=4)
    cfg = cfg.replace(nonidealities=nl)
    m = export_model(model, cfg, tmp_path)
    lin = {s["name"]: s for s in m["stages"]}["linear"]
    assert lin["weight_range"] == 0.1 and lin["ref"] == pytest.approx(0.1)
    deployed = type(model)(cfg.model, (1, 8, 8), 10, nl, cfg.normalization)
    deployed.load_state_dict(model.state_dict())
    deployed.requires_grad_(False)
    loaded = load_export(tmp_path)[1]
    assert torch.equal(loaded.linear.weight, deployed.linear.effective_weight())
    x, y = digits.x_test, digits.y_test
    assert evaluate(loaded, x, y).accuracy == evaluate(deployed, x, y).accuracy


def test_an_export_from_before_the_weight_range_fields_still_loads(trained, tmp_path):
    """New config fields (defaults) change ``content_hash``; the hash as written still counts."""
    from aanntwin.schema import stable_hash

    cfg, model = trained[()]
    export_model(model, cfg, tmp_path, bits=4)

    def older(m, folder):
        for k in ("conv2d_weight_range", "linear_weight_range"):
            del m["config"]["nonidealities"][k]
        m["config_hash"] = stable_hash(m["config"])

    _break(tmp_path, older)
    assert load_export(tmp_path)[0] == cfg


@pytest.mark.parametrize("flags", [["--refs", "1e30"], ["--bits", "0", "--zero-level"]])
def test_an_export_whose_stage_passes_nothing_warns(trained_run, tmp_path, capsys, flags):
    """--refs 1e30 or 0 bits with a zero level made every code 0 without a word."""
    from aanntwin.cli import main

    argv = ["export", str(trained_run().folder), "--bits", "4", "--out", str(tmp_path / "e")]
    assert main([*argv, *flags]) == 0
    err = capsys.readouterr().err
    assert "warning: stage conv: every weight has the same code" in err, err
    stages = json.loads((tmp_path / "e" / "manifest.json").read_text())["stages"]
    assert all(s["codes_used"] == 1 for s in stages)
    assert main([*argv[:-1], str(tmp_path / "ok")]) == 0
    assert "warning" not in capsys.readouterr().err
