"""The real notebooks: committed clean, thin, parameterized; all run headless via the runner."""

import json

import nbformat
import pytest

from aanntwin.report.workbook import NOTEBOOKS_DIR, run_workbook

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
CONTRACT = ("dataset", "data_dir", "epochs", "seed", "nonidealities", "out_dir", "quick",
            "chip_seed", "device")  # fmt: skip


def test_the_five_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == ["00_explorer", "01_characterization", "02_training",
                                           "03_quantization", "04_specs"]  # fmt: skip


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_with_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for name in CONTRACT:
        assert f"{name} =" in params[0].source, name
    assert nb.cells[0].cell_type == "markdown"  # what it answers and for whom
    assert nb.metadata.kernelspec.name == "python3"
    assert all(len(c.source.splitlines()) <= 25 for c in code), "logic belongs in the library"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_thin_at_most_30_lines_of_code_besides_the_parameters(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"
            and "parameters" not in c.metadata.get("tags", [])]  # fmt: skip
    lines = sum(len(c.source.splitlines()) for c in code)  # every line, blank ones included
    assert lines <= 30, f"{path.stem}: {lines} lines of code; logic belongs in the library"


def test_the_workbook_runs_every_notebook_headless(tmp_path):
    run = run_workbook({"dataset": "digits", "quick": True, "seed": 0}, "quick", tmp_path)
    assert [nb.status for nb in run.notebooks] == ["ok"] * 5, [nb.error for nb in run.notebooks]
    folder = tmp_path / "quick"
    for nb in run.notebooks:
        executed = nbformat.read(folder / nb.executed, as_version=4)
        outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], nb.name
        assert not [o for o in outputs if o.get("name") == "stderr" and "Traceback" in o.text]
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{nb.name}: no figure"
        html = (folder / nb.report).read_text()
        assert "<img" in html, nb.name
    tables = (folder / "02_training.html").read_text()
    assert "<table" in tables
    assert {"ideal_accuracy", "active_nonidealities"} <= set(run.headlines)
    assert json.loads((folder / "run.json").read_text())["ok"]
    assert "seed" in (folder / "01_characterization.html").read_text()  # header: config + seed
