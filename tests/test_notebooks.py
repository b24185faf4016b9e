"""The real notebooks: committed clean, thin, parameterized; all run headless via the runner."""

import json
import subprocess
from pathlib import Path

import nbformat
import pytest

from aanntwin.report.workbook import NOTEBOOKS_DIR, run_workbook

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
CONTRACT = ("dataset", "data_dir", "epochs", "seed", "nonidealities", "out_dir", "quick",
            "chip_seed", "device")  # fmt: skip


def test_the_notebooks_00_to_06_exist_in_order():
    assert [p.stem for p in NOTEBOOKS] == ["00_explorer", "01_characterization", "02_training",
                                           "03_quantization", "04_specs", "05_signoff",
                                           "06_circuit_validation"]  # fmt: skip


def _git(args: list[str], cwd: Path, stdin: bytes | None = None) -> bytes | None:
    """``git ARGS`` run in ``cwd``: its stdout, or None when git is missing or fails."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def clean_filter(root: Path) -> str | None:
    """The checkout's ``filter.nbstripout.clean`` command (set by ``make install``), or None."""
    out = _git(["config", "--get", "filter.nbstripout.clean"], root)
    return out.decode().strip() or None if out else None


def committed_versions(path: Path) -> dict[str, str]:
    """What git would commit of notebook ``path``, by where it comes from.

    In a git checkout: the staged copy (if tracked) and what ``git add`` would stage, i.e. the
    working file through the nbstripout clean filter (JupyterLab's autosaved outputs never reach
    git), or the raw file when the filter is not installed or fails (git then stages it as is).
    Outside git: the file itself."""
    raw = path.read_bytes()
    top = _git(["rev-parse", "--show-toplevel"], path.parent)
    if top is None:
        return {"the file": raw.decode()}
    root = Path(top.decode().strip())
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    versions = {}
    staged = _git(["show", f":{rel}"], root)
    if staged is not None:
        versions["the staged copy"] = staged.decode()
    attr = _git(["check-attr", "filter", "--", rel], root) or b""
    command = clean_filter(root) if attr.decode().strip().endswith(": nbstripout") else None
    try:
        done = subprocess.run(["sh", "-c", command], cwd=root, input=raw, capture_output=True,
                              timeout=120) if command else None  # fmt: skip
    except subprocess.TimeoutExpired:
        done = None
    if done is not None and done.returncode == 0:
        versions["what `git add` stages (nbstripout filter)"] = done.stdout.decode()
    else:  # git stages the file as is
        versions["what `git add` stages (no working nbstripout filter)"] = raw.decode()
    return versions


def notebook_problems(nb: dict) -> list[str]:
    """What must not be committed in notebook JSON ``nb``: outputs, execution counts, papermill's
    metadata and injected-parameters cells (cells numbered from 0); empty when clean."""
    cells = nb.get("cells", [])

    def at(has) -> list[int]:
        return [i for i, c in enumerate(cells) if has(c)]

    found = {
        "outputs": at(lambda c: c.get("outputs")),
        "execution counts": at(lambda c: c.get("execution_count") is not None),
        "papermill cell metadata": at(lambda c: "papermill" in c.get("metadata", {})),
        "an injected-parameters cell": at(
            lambda c: "injected-parameters" in c.get("metadata", {}).get("tags", [])
        ),
    }
    problems = [f"{what} in cells {', '.join(map(str, at))}" for what, at in found.items() if at]
    if "papermill" in nb.get("metadata", {}):
        problems.append("papermill metadata in the notebook metadata")
    return problems


def commit_check_message(path: Path, source: str, problems: list[str]) -> str:
    """The failure message for notebook ``path`` whose ``source`` version has ``problems``."""
    return (
        f"{path.parent.name}/{path.name} ({source}): {'; '.join(problems)}. Fix: `make install` "
        "installs the nbstripout git filter, which strips notebooks on their way into git (then "
        "`git add` the notebook again); or strip the file itself with `make strip` "
        "(outputs are lost)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    for source, text in committed_versions(path).items():
        problems = notebook_problems(json.loads(text))
        assert not problems, commit_check_message(path, source, problems)


def test_the_commit_check_names_what_is_present_and_the_fix():
    dirty = {
        "metadata": {"papermill": {"duration": 1.0}},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# x"},
            {"cell_type": "code", "execution_count": 3, "metadata": {"papermill": {}},
             "outputs": [{"output_type": "stream", "name": "stdout", "text": "1"}], "source": "1"},
            {"cell_type": "code", "execution_count": None, "metadata": {"tags": [
                "injected-parameters"]}, "outputs": [], "source": "seed = 1"},
        ],
    }  # fmt: skip
    problems = notebook_problems(dirty)
    assert problems == ["outputs in cells 1", "execution counts in cells 1",
                        "papermill cell metadata in cells 1",
                        "an injected-parameters cell in cells 2",
                        "papermill metadata in the notebook metadata"]  # fmt: skip
    message = commit_check_message(NOTEBOOKS[0], "the staged copy", problems)
    assert message.startswith("notebooks/00_explorer.ipynb (the staged copy): outputs in cells 1")
    assert "`make install` installs the nbstripout git filter" in message
    assert "`make strip`" in message
    clean = json.loads(NOTEBOOKS[0].read_text())
    for cell in clean["cells"]:
        cell.pop("outputs", None), cell.pop("execution_count", None)
    assert notebook_problems(clean) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
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
    statuses = [nb.status for nb in run.notebooks]
    assert statuses == ["ok"] * len(NOTEBOOKS), [nb.error for nb in run.notebooks]
    folder = tmp_path / "quick"
    for nb in run.notebooks:
        executed = nbformat.read(folder / nb.executed, as_version=4)
        outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], nb.name
        assert not [o for o in outputs if o.get("name") == "stderr" and "Traceback" in o.text]
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{nb.name}: no figure"
        html = (folder / nb.report).read_text()
        assert "<img" in html, nb.name
        assert "aanntwin-banner" in html, f"{nb.name}: a quick demo run without its banner"
        assert html.index("Conclusion") < html.index("aanntwin-header"), nb.name  # opens with it
    signoff = (folder / "05_signoff.html").read_text()
    assert "characterized" in signoff and "ratio" in signoff  # the margin table
    tables = (folder / "02_training.html").read_text()
    assert "<table" in tables
    assert {"ideal_accuracy", "active_nonidealities"} <= set(run.headlines)
    assert json.loads((folder / "run.json").read_text())["ok"]
    assert "seed" in (folder / "01_characterization.html").read_text()  # header: config + seed
