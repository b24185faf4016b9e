"""Workbook parameters validated before any work, and honest reruns (issue 12, items 1 and 4).

Validation cases run the CLI on the checkout's notebooks: each must fail before a kernel starts
(one line, exit 2, nothing written). Rerun cases execute small fixture notebooks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import papermill
import pytest

from aanntwin.cli import main
from aanntwin.errors import AanntwinError
from aanntwin.report import fingerprint
from aanntwin.report.params import load_parameters, notebook_defaults, validate
from aanntwin.report.workbook import NOTEBOOKS_DIR, notebook_paths, run_parameter_files
from tests.test_workbook import PLOT, _notebook

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("epoch: 3\n", "unknown parameter 'epoch'; did you mean 'epochs'?"),
        ("chipseed: 1\n", "unknown parameter 'chipseed'; did you mean 'chip_seed'?"),
        (
            "notebooks:\n  04_spec: {quick: true}\n",
            "no notebook '04_spec'; did you mean "
            "'04_specs'? (known: 00_explorer, 01_characterization",
        ),
        ("nonidealities: nowhere/nl.json\n", "nonidealities = nowhere/nl.json: no such file"),
        ("csv_files: [nowhere.csv]\n", "csv_files = nowhere.csv: no such file"),
        ("csv_files: nowhere.csv\n", "expected a list of CSV file paths"),
        ("data_dir: nowhere\n", "data_dir = nowhere: no such folder"),
        ("seed: [1, 2]\n", "seed = [1, 2]: expected an integer"),
        ("epochs: 2.5\n", "epochs = 2.5: expected an integer"),
        ("quick: 'yes'\n", 'quick = "yes": expected true or false'),
        ("dataset: 3\n", "dataset = 3: expected a string"),
        ("simulate: {a: 1}\n", "expected a single value"),
        (
            "notebooks:\n  04_specs: {target_drop: x}\n",
            '04_specs: target_drop = "x": expected a number',
        ),
        (
            "notebooks:\n  02_training: {target_drop: 0.1}\n",
            "02_training: unknown parameter 'target_drop'",
        ),
        (
            "variants:\n  - {name: a, epcohs: 2}\n",
            "variant a: unknown parameter 'epcohs'; did you mean 'epochs'?",
        ),
        ("variants:\n  - {name: ../../escape}\n", "'../../escape' is not a safe folder name"),
        ("variants:\n  - {name: ..}\n", "'..' is not a safe folder name"),
        ("name: a/b\n", "'a/b' is not a safe folder name"),
        ("out_dir: x\n", "'out_dir' is set by the workbook"),
        ("notebooks:\n  02_training: 3\n", "each entry of 'notebooks' must be a mapping"),
        ("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", "aliases are not allowed"),
    ],
)
def test_bad_parameters_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, text, needle):
    params = tmp_path / "p.yaml"
    params.write_text(text)
    out = tmp_path / "reports"
    assert main(["workbook", "--params", str(params), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"aanntwin workbook: error: {params}"), err
    assert needle in err, err
    assert not out.exists()


def test_a_billion_laughs_file_is_refused_quickly(tmp_path, capsys):
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    params = tmp_path / "bomb.yaml"
    params.write_text("\n".join(lines) + "\n")
    assert main(["workbook", "--params", str(params), "--out", str(tmp_path / "r")]) == 2
    assert "aliases are not allowed" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_an_oversized_parameters_file_is_refused_unread(tmp_path):
    params = tmp_path / "big.yaml"
    params.write_text("seed: 0\n" + "#" * 1_000_001 + "\n")
    with pytest.raises(AanntwinError, match="larger than 1000000 bytes"):
        load_parameters(params)


def test_an_unsafe_name_flag_is_refused(tmp_path, capsys):
    assert main(["workbook", "--name", "../x", "--out", str(tmp_path / "r")]) == 2
    assert "--name: name '../x' is not a safe folder name" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_valid_values_and_the_shipped_examples_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    defaults = notebook_defaults(notebook_paths(NOTEBOOKS_DIR))
    assert defaults["04_specs"]["target_drop"] == 0.01 and defaults["02_training"]["runs"] == 5
    ok = {"epochs": 2, "seed": 1, "quick": True, "simulate": True, "target_drop": 0.5,
          "nonidealities": "examples/reference_nonidealities.json", "csv_files": [],
          "notebooks": {"04_specs": {"confidence": 0.9, "spec_runs": 3}},
          "variants": [{"name": "a-1.b_2", "chip_seed": 3}]}  # fmt: skip
    validate("ok.yaml", ok, defaults)
    for example in ("workbook.yaml", "workbook-variants.yaml", "workbook-mnist.yaml"):
        data = load_parameters(ROOT / "examples" / example)
        if example.endswith("mnist.yaml") and not Path(data["data_dir"]).is_dir():
            continue  # the shared MNIST copy beside the checkout is absent here
        validate(example, data, defaults)


# --- honest reruns ------------------------------------------------------------------------


@pytest.fixture
def book(tmp_path) -> Path:
    folder = tmp_path / "nbs"
    folder.mkdir()
    params = "scale = 1.0\nseed = 0\nnonidealities = None\ncsv_files = None\nout_dir = '.'"
    _notebook(folder / "01_plot.ipynb", PLOT, params=params)
    _notebook(folder / "02_table.ipynb", "print(scale)", params=params)
    return folder


def _run(book: Path, params: Path, out: Path, **kw):
    return run_parameter_files([str(params)], out, notebooks_dir=book, **kw)[0]


def test_editing_a_named_file_reruns(book, tmp_path):
    nl, csv = tmp_path / "nl.json", tmp_path / "c.csv"
    nl.write_text('{"input_noise": 0.1}')
    csv.write_text("a\n1\n")
    params = tmp_path / "p.yaml"
    params.write_text(f"nonidealities: {nl}\ncsv_files: [{csv}]\n")
    out = tmp_path / "out"
    assert not _run(book, params, out, only=["02_table"]).skipped
    assert _run(book, params, out, only=["02_table"]).skipped
    nl.write_text('{"input_noise": 0.2}')  # same path, new content
    assert not _run(book, params, out, only=["02_table"]).skipped
    assert _run(book, params, out, only=["02_table"]).skipped
    csv.write_text("a\n2\n")
    assert not _run(book, params, out, only=["02_table"]).skipped
    params.write_text(params.read_text() + "# a comment\n")  # the parameters file itself
    assert not _run(book, params, out, only=["02_table"]).skipped


def test_editing_the_package_source_reruns(book, tmp_path, monkeypatch):
    src = tmp_path / "pkg"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    params = tmp_path / "p.yaml"
    params.write_text("seed: 0\n")
    out = tmp_path / "out"
    monkeypatch.setattr(fingerprint, "PACKAGE", src)
    assert not _run(book, params, out, only=["02_table"]).skipped
    assert _run(book, params, out, only=["02_table"]).skipped
    (src / "a.py").write_text("x = 2\n")  # uncommitted library edit
    assert not _run(book, params, out, only=["02_table"]).skipped


def test_a_killed_rerun_is_not_ok_and_the_next_run_repairs_it(book, tmp_path, monkeypatch):
    params = tmp_path / "p.yaml"
    params.write_text("scale: 2.0\n")
    out = tmp_path / "out"
    assert _run(book, params, out).ok
    real = papermill.execute_notebook

    def killed(path, target, **kw):
        if Path(path).stem == "02_table":
            shutil.copy(path, target)  # half-executed: no outputs
            raise KeyboardInterrupt  # the runner dies here (as under kill -9: no cleanup)
        return real(path, target, **kw)

    monkeypatch.setattr(papermill, "execute_notebook", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(book, params, out, force=True)
    record = json.loads((out / "p" / "run.json").read_text())
    assert record["ok"] is False and record["finished"] is False
    assert "NOT FINISHED" in (out / "p" / "index.html").read_text()
    monkeypatch.setattr(papermill, "execute_notebook", real)
    run = _run(book, params, out)  # a plain rerun: not "unchanged", it repairs the report
    assert not run.skipped and run.ok
    record = json.loads((out / "p" / "run.json").read_text())
    assert record["ok"] is True and record["finished"] is True
    table = nbformat.read(out / "p" / "executed" / "02_table.ipynb", as_version=4)
    assert any(c.get("outputs") for c in table.cells if c.cell_type == "code")
