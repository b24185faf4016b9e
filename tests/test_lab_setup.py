"""JupyterLab as a first-class entry: `make install` adds it and the nbstripout git filter, so saving
in JupyterLab (which autosaves outputs into the notebook) never dirties the tracked notebooks."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, in_ci
from tests.test_notebooks import NOTEBOOKS, clean_filter, notebook_problems

VENV = Path(sys.executable).parent.parent


def _configured_filter() -> str:
    """The checkout's clean filter command; skip (fail under CI) where it is not installed."""
    inside = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=REPO,
                            capture_output=True, text=True)  # fmt: skip
    if inside.returncode != 0 or Path(inside.stdout.strip()).resolve() != REPO.resolve():
        pytest.skip("not a git checkout: no nbstripout filter to check")
    command = clean_filter(REPO)
    if command is None:
        message = "git filter nbstripout not configured: run `make install`"
        pytest.fail(message) if in_ci(os.environ) else pytest.skip(message)
    return command


def _dirty(nb: dict) -> dict:
    """``nb`` as JupyterLab or papermill leave it after a run: outputs, counts, metadata, and
    papermill's injected-parameters cell."""
    nb = copy.deepcopy(nb)
    nb["metadata"]["papermill"] = {"duration": 3.2, "parameters": {"seed": 1}}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb["metadata"]["language_info"] = {
        "name": "python", "version": "3.11.2", "mimetype": "text/x-python",
        "file_extension": ".py", "pygments_lexer": "ipython3", "nbconvert_exporter": "python",
        "codemirror_mode": {"name": "ipython", "version": 3},
    }  # fmt: skip
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for n, cell in enumerate(code, 1):
        cell["execution_count"] = n
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "0.97\n"}]
        cell["metadata"]["papermill"] = {"status": "completed", "duration": 0.5}
        cell["metadata"]["execution"] = {"iopub.status.busy": "2026-11-01T10:00:00Z"}
    injected = {"cell_type": "code", "execution_count": 9, "id": "injected",
                "metadata": {"tags": ["injected-parameters"]}, "outputs": [],
                "source": "seed = 1\n"}  # fmt: skip
    params = next(
        i for i, c in enumerate(nb["cells"]) if "parameters" in c["metadata"].get("tags", [])
    )
    nb["cells"].insert(params + 1, injected)
    return nb


def test_the_configured_filter_strips_what_jupyterlab_and_papermill_add(tmp_path):
    command = _configured_filter()
    path = NOTEBOOKS[0]
    before = subprocess.run(["sh", "-c", command], cwd=REPO, input=path.read_bytes(),
                            capture_output=True, check=True).stdout  # fmt: skip
    dirty = _dirty(json.loads(before))
    assert notebook_problems(dirty), "the dirty copy must have something to strip"
    copy_path = tmp_path / path.name  # a copy: the tracked notebook is never touched
    copy_path.write_text(json.dumps(dirty, indent=1))
    done = subprocess.run(["sh", "-c", command], cwd=REPO, input=copy_path.read_bytes(),
                          capture_output=True)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert notebook_problems(json.loads(done.stdout)) == []
    assert done.stdout == before, "the filter must give back the clean notebook byte for byte"


def test_gitattributes_routes_the_notebooks_through_the_filter():
    lines = (REPO / ".gitattributes").read_text().splitlines()
    assert "notebooks/*.ipynb filter=nbstripout diff=ipynb" in lines


def _make_git_filter(folder: Path) -> subprocess.CompletedProcess:
    """``make git-filter`` run in ``folder`` (a copy of the Makefile and pyproject.toml, older than
    the venv's stamps) against this venv."""
    return subprocess.run(["make", "-s", f"VENV={VENV}", "git-filter"], cwd=folder,
                          capture_output=True, text=True)  # fmt: skip


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None,
                    reason="needs make and git")  # fmt: skip
def test_make_installs_the_filter_idempotently_and_only_in_a_git_work_tree(tmp_path):
    if not (VENV / ".installed-stamp").exists():
        pytest.skip(f"{VENV} was not set up by `make install`")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
        os.utime(tmp_path / name, (946684800, 946684800))  # 2000: the stamps are newer
    tarball = _make_git_filter(tmp_path)  # no .git: nothing to do, and no failure
    assert tarball.returncode == 0, tarball.stderr
    assert "not a git work tree" in tarball.stdout
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for _ in range(2):
        done = _make_git_filter(tmp_path)
        assert done.returncode == 0, done.stderr
    config = subprocess.run(["git", "config", "--get-all", "filter.nbstripout.clean"],
                            cwd=tmp_path, capture_output=True, text=True).stdout  # fmt: skip
    assert len(config.splitlines()) == 1, config  # set once, not appended
    for needed in ("nbstripout", "--drop-tagged-cells injected-parameters", "metadata.papermill",
                   "cell.metadata.papermill"):  # fmt: skip
        assert needed in config, needed


def test_make_lab_opens_jupyterlab_on_ignored_working_copies_bound_to_localhost():
    assert importlib.util.find_spec("jupyterlab") is not None, "`make install` adds the lab extra"
    if shutil.which("make") is None:
        pytest.skip("needs make")
    plan = subprocess.run(["make", "-n", "lab"], cwd=REPO, capture_output=True, text=True)
    line = next(x for x in plan.stdout.splitlines() if "jupyter lab" in x)
    assert "jupyter lab 'lab' --ip=127.0.0.1" in line
    assert ("--allow-root" in line) == (os.geteuid() == 0)
    assert "/lab/" in (REPO / ".gitignore").read_text().splitlines()  # autosaves stay out of git
