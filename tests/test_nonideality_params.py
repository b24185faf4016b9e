"""Nonidealities as notebook parameters: a file, a mapping of fields, single fields; validated."""

import json
import subprocess
import sys

import nbformat
import pytest

from aanntwin.config import Nonidealities
from aanntwin.errors import AanntwinError
from aanntwin.report import notebook as nb
from aanntwin.report.nonideality_params import FIELD_PARAMETERS, resolve
from aanntwin.report.workbook import NOTEBOOKS_DIR, run_parameter_files

REFERENCE = nb.default_nonidealities_path()
BASE = dict(dataset="digits", quick=True, seed=0)


def test_a_single_field_overrides_the_file_and_keeps_its_other_fields():
    source = resolve(None, {"input_noise": 0.3}, REFERENCE)
    file = Nonidealities.from_dict(json.loads(REFERENCE.read_text()))
    assert source.nonidealities.input_noise == 0.3
    assert source.nonidealities.replace(input_noise=file.input_noise) == file
    assert "input_noise = 0.3" in source.describe() and str(REFERENCE) in source.describe()


@pytest.mark.parametrize("value", [{"relu_cutoff": 0.1}, '{"relu_cutoff": 0.1}'])
def test_a_mapping_is_a_whole_file_the_fields_not_named_are_off(value):
    source = resolve(value, {}, REFERENCE)
    assert source.nonidealities.active() == {"relu_cutoff": 0.1}
    assert source.path is None


@pytest.mark.parametrize(
    "value, overrides, message",
    [
        ({"input_nose": 0.1}, {}, "did you mean 'input_noise'"),
        (None, {"input_noise": -1.0}, "input_noise = -1.0: out of range"),
        (None, {"conv2d_weight_bits": 2.5}, "must be an integer"),
        ("no/such/file.json", {}, "no/such/file.json: no such file"),
        (3, {}, "expected a JSON file path, a mapping of fields"),
        ('{"input_noise": ', {}, "parameter nonidealities"),
    ],
)
def test_bad_nonidealities_parameters_are_one_clear_line(value, overrides, message):
    with pytest.raises(AanntwinError) as err:
        resolve(value, overrides, REFERENCE)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_setup_takes_single_fields_from_the_notebook_namespace(tmp_path):
    params = dict(BASE, out_dir=str(tmp_path), chip_seed=3, device="cpu")
    ctx = nb.setup(params, {"input_noise": 0.25, "unrelated": 1, "relu_cutoff": 0.05})
    assert ctx.nonidealities.input_noise == 0.25 and ctx.nonidealities.relu_cutoff == 0.05
    assert ctx.nonidealities.chip_seed == 3 and str(ctx.device) == "cpu"
    assert ctx.data is ctx.data  # moved to the device once per kernel, not per access
    assert "unrelated" not in ctx.extra and "input_noise" not in ctx.extra
    assert "overridden by parameters: input_noise = 0.25" in nb.header(ctx).data


def test_the_device_parameter_is_checked():
    with pytest.raises(AanntwinError, match="parameter device = 'gpu': not allowed: allowed cpu"):
        nb.setup(dict(BASE, device="gpu"))


def test_every_notebook_takes_the_device_parameter_and_passes_its_namespace():
    for path in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        book = nbformat.read(path, as_version=4)
        source = "\n".join(c.source for c in book.cells if c.cell_type == "code")
        assert 'device = "cpu"' in source and "globals())" in source, path.stem


def _params_file(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("input_noise: -0.1\n", "p.yaml: nonidealities.input_noise = -0.1: out of range"),
        ("input_nose: 0.1\n", "unknown parameter 'input_nose'; did you mean 'input_noise'?"),
        ("nonidealities: {relu_cutof: 0.1}\n", "unknown field 'relu_cutof'; did you mean"),
        ("nonidealities: [1, 2]\n", "expected a file path or a mapping of fields"),
        ("variants:\n  - name: a\n    linear_out_noise: x\n", "must be a number"),
        ("notebooks:\n  02_training:\n    input_noise: -1\n", "02_training: nonidealities.input"),
    ],
)
def test_a_params_file_with_a_bad_nonideality_stops_before_any_work(tmp_path, text, message):
    out = tmp_path / "out"
    with pytest.raises(AanntwinError) as err:
        run_parameter_files([_params_file(tmp_path, text)], out)
    assert message in str(err.value), str(err.value)
    assert not out.exists()


def test_a_params_file_naming_an_invalid_nonidealities_file_stops_before_any_work(tmp_path):
    bad = tmp_path / "nl.json"
    bad.write_text(json.dumps({"input_noise": -3}))
    out = tmp_path / "out"
    with pytest.raises(AanntwinError, match="input_noise = -3.*out of range"):
        run_parameter_files([_params_file(tmp_path, f"nonidealities: {bad}\n")], out)
    assert not out.exists()


def _papermill(tmp_path, name, *args):
    out = tmp_path / name
    out.mkdir()
    cmd = [sys.executable, "-m", "papermill", str(NOTEBOOKS_DIR / "02_training.ipynb"),
           str(out / "02.ipynb"), "-p", "quick", "True", "-p", "out_dir", str(out),
           "-p", "runs", "2", *args, "--cwd", str(NOTEBOOKS_DIR), "--no-progress-bar"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((out / "headlines.json").read_text())


def test_papermill_p_input_noise_changes_the_training_report(tmp_path):
    plain = _papermill(tmp_path, "plain")
    noisy = _papermill(tmp_path, "noisy", "-p", "input_noise", "0.3")
    ideal = "ideal_accuracy"
    assert plain[ideal] == noisy[ideal]  # the ideal model does not see the nonidealities
    under = "accuracy_under_nonidealities"
    assert noisy[under]["value"] < plain[under]["value"] - 1.0, (plain, noisy)
    header = nbformat.read(tmp_path / "noisy" / "02.ipynb", as_version=4).cells
    assert any("input_noise = 0.3" in str(c.get("outputs")) for c in header)


def test_field_parameters_are_every_nonidealities_field_but_the_chip_seed():
    assert set(FIELD_PARAMETERS) == set(Nonidealities.field_names()) - {"chip_seed"}
