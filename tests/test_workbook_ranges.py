"""Workbook parameter values are range-checked before anything runs, with the command line's
ranges: one line naming the parameters file, the notebook, the parameter and the allowed range,
exit 2, nothing written."""

from __future__ import annotations

import pytest

from aanntwin.cli import main
from aanntwin.report.params import notebook_defaults, validate
from aanntwin.report.workbook import NOTEBOOKS_DIR, notebook_paths
from tests.test_workbook_messages import _workbook


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("epochs: 0\nquick: true\n", "epochs = 0: out of range: allowed integers 1..100000"),
        ("epochs: -3\n", "epochs = -3: out of range: allowed integers 1..100000"),
        ("seed: -1\n", "seed = -1: out of range: allowed integers 0..9223372036854775807"),
        ("chip_seed: -1\n", "chip_seed = -1: out of range: allowed integers 0.."),
        ("runs: 0\n", "runs = 0: out of range: allowed integers 1..1000000"),
        ("images: -5\n", "images = -5: out of range: allowed integers 1..100000; a parameter "
                         "of notebook 06_circuit_validation"),
        ("chips: 100000\n", "chips = 100000: out of range: allowed integers 0..1000"),
        ("confidence: 1.5\n", "confidence = 1.5: out of range: allowed a fraction in (0, 1); a "
                              "parameter of notebook 04_specs"),
        ("target_drop: -0.2\n", "target_drop = -0.2: out of range: allowed a fraction in [0, 1)"),
        ("multiplier: nope\n", 'multiplier = "nope": not allowed: allowed gilbert, subthreshold'),
        ("device: tpu\n", 'device = "tpu": not allowed: allowed cpu, cuda, cuda:N, auto; a '
                          "parameter of every notebook"),
        ("simulate: nope\n", 'simulate = "nope": not allowed: allowed true, false or null'),
        ("spec_runs: 0\n", "spec_runs = 0: out of range"),
        ("chip_instances: 0\n", "chip_instances = 0: out of range"),
        ("notebooks:\n  02_training: {epochs: 0}\n",
         "notebooks: 02_training: epochs = 0: out of range: allowed integers 1..100000"),
        ("variants:\n  - {name: a, runs: 0}\n", "variant a: runs = 0: out of range"),
    ],
)  # fmt: skip
def test_out_of_range_values_exit_2_before_anything_runs(tmp_path, capsys, text, needle):
    params = tmp_path / "p.yaml"
    params.write_text(text)
    err = _workbook(tmp_path, capsys, str(params))  # exit 2, one line, nothing written
    assert err.startswith(f"aanntwin workbook: error: {params}: "), err
    assert needle in err, err


def test_values_inside_the_ranges_pass():
    defaults = notebook_defaults(notebook_paths(NOTEBOOKS_DIR))
    ok = {"epochs": 1, "seed": 0, "chip_seed": 2**63 - 1, "runs": 1, "device": "cpu",
          "notebooks": {"04_specs": {"confidence": 0.99, "target_drop": 0},
                        "06_circuit_validation": {"images": 100_000, "chips": 0,
                                                  "multiplier": "subthreshold"},
                        "01_characterization": {"simulate": None}}}  # fmt: skip
    validate("ok.yaml", ok, defaults)
    for device in ("auto", "cpu"):
        validate("ok.yaml", {"device": device}, defaults)


def test_a_cuda_device_the_machine_lacks_is_refused_before_anything_runs(tmp_path, capsys):
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    params = tmp_path / "p.yaml"
    params.write_text(f"device: cuda:{count}\n")
    out = tmp_path / "reports"
    assert main(["workbook", "--params", str(params), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    why = f"this machine has {count} CUDA device(s)" if count else "CUDA is not available"
    assert err.startswith(f'aanntwin workbook: error: {params}: device = "cuda:{count}": {why}')
    assert not out.exists()
    if count:  # the devices it has pass
        validate("ok.yaml", {"device": f"cuda:{count - 1}"},
                 notebook_defaults(notebook_paths(NOTEBOOKS_DIR)))  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "parameter", "value"),
    [
        (["train", "--epochs", "0"], "epochs", 0),
        (["validate-circuit", "r", "--out", "o", "--chips", "1001"], "chips", 1001),
        (["validate-circuit", "r", "--out", "o", "--images", "0"], "images", 0),
        (["specs", "r", "--confidence", "1"], "confidence", 1.0),
        (["specs", "r", "--target-drop", "1"], "target_drop", 1.0),
    ],
)
def test_the_command_line_and_the_workbook_refuse_the_same_values(capsys, argv, parameter,
                                                                   value):  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    capsys.readouterr()
    defaults = notebook_defaults(notebook_paths(NOTEBOOKS_DIR))
    with pytest.raises(Exception, match=f"{parameter} = .*out of range"):
        validate("p.yaml", {parameter: value}, defaults)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"quick": "false"}, "parameter quick = 'false': must be True or False"),
        ({"epochs": 1.9}, "parameter epochs = 1.9: must be an integer"),
        ({"epochs": "three"}, "parameter epochs = 'three': must be an integer"),
        ({"epochs": 0}, "parameter epochs = 0: out of range: allowed integers 1..100000"),
        ({"confidence": "high"}, "parameter confidence = 'high': has type str"),
    ],
)
def test_a_notebook_run_alone_checks_its_parameters(params, needle):
    """papermill -p quick false passed the string 'false' (a quick run of 2 epochs); -p
    epochs 1.9 trained 1 epoch; -p epochs three was a bare ValueError naming no parameter."""
    from aanntwin.errors import AanntwinError
    from aanntwin.report.notebook import setup

    with pytest.raises(AanntwinError) as err:
        setup({"out_dir": "unused", **params})
    assert needle in str(err.value), str(err.value)
