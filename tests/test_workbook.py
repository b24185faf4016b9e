"""Workbook runner on small fixture notebooks: execution, HTML, index, skip, failure, variants."""

import json
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from aanntwin.cli import main
from aanntwin.errors import AanntwinError
from aanntwin.report.workbook import load_parameters, run_parameter_files, run_workbook

PLOT = """import json, pathlib
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.plot([0, 1, 2], [0, scale, 4 * scale])
ax.set_xlabel("input (V)"); ax.set_ylabel("output (V)")
plt.show()
out = pathlib.Path(out_dir); out.mkdir(parents=True, exist_ok=True)
(out / "headlines.json").write_text(json.dumps({"scale": {"value": scale, "unit": "V"}}))
print("SECRET-CODE-MARKER" if False else "done")"""


def _notebook(
    path: Path, *cells: str, params: str = "scale = 1.0\nseed = 0\nout_dir = '.'"
) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Fixture"), p,
                *(nbformat.v4.new_code_cell(c) for c in cells)]  # fmt: skip
    nbformat.write(nb, path)


@pytest.fixture
def books(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(folder / "01_plot.ipynb", PLOT)
    _notebook(
        folder / "02_table.ipynb",
        "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [scale, 2 * scale]})",
    )
    return folder


def test_runs_renders_and_indexes(books, tmp_path):
    run = run_workbook({"scale": 2.0, "seed": 3}, "demo", tmp_path / "reports",
                       notebooks_dir=books)  # fmt: skip
    folder = tmp_path / "reports" / "demo"
    assert run.ok and [nb.status for nb in run.notebooks] == ["ok", "ok"]
    report = (folder / "01_plot.html").read_text()
    assert "<img" in report and "image/png" in report
    assert "set_xlabel" not in report  # designers' version hides the code
    assert "set_xlabel" in (folder / "01_plot.code.html").read_text()
    assert "<table" in (folder / "02_table.html").read_text()
    executed = nbformat.read(folder / "executed" / "01_plot.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    index = (folder / "index.html").read_text()
    for needle in (
        'href="01_plot.html"',
        'href="02_table.code.html"',
        "seed 3",
        "scale",
        "torch",
        "papermill",
    ):
        assert needle in index
    assert run.headlines == {"scale": {"value": 2.0, "unit": "V"}}
    assert json.loads((folder / "run.json").read_text())["ok"] is True


def test_identical_rerun_is_skipped_and_changes_rerun(books, tmp_path):
    first = run_workbook({"scale": 1.0}, "x", tmp_path, notebooks_dir=books)
    again = run_workbook({"scale": 1.0}, "x", tmp_path, notebooks_dir=books)
    assert again.skipped and again.fingerprint == first.fingerprint
    assert not run_workbook({"scale": 1.5}, "x", tmp_path, notebooks_dir=books).skipped
    assert not run_workbook({"scale": 1.5}, "x", tmp_path, notebooks_dir=books, force=True).skipped


def test_a_failing_notebook_stops_the_run_and_is_marked(books, tmp_path, capsys):
    _notebook(books / "01_plot.ipynb", "raise ValueError('bad sigma in cell')")
    argv = ["workbook", "--notebooks", str(books), "--out", str(tmp_path), "--name", "f"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("aanntwin workbook: error: 01_plot failed: ValueError: bad sigma")
    folder = tmp_path / "f"
    assert (folder / "executed" / "01_plot.ipynb").exists()  # kept for inspection
    run = json.loads((folder / "run.json").read_text())
    assert [nb["status"] for nb in run["notebooks"]] == ["failed", "not run"]
    assert "FAILED" in (folder / "index.html").read_text()


def test_variants_run_into_their_own_folders_and_are_compared(books, tmp_path):
    params = tmp_path / "study.yaml"
    params.write_text(
        "seed: 1\nvariants:\n  - name: small\n    scale: 1.0\n"
        "  - name: large\n    scale: 3.0\nnotebooks:\n  02_table:\n    scale: 9\n"
    )
    runs = run_parameter_files([str(params)], tmp_path / "out", notebooks_dir=books)
    assert [r.name for r in runs] == ["small", "large"] and all(r.ok for r in runs)
    top = (tmp_path / "out" / "index.html").read_text()
    assert 'href="small/index.html"' in top and 'href="large/index.html"' in top
    assert "3 V" in top and "1 V" in top
    table = nbformat.read(tmp_path / "out" / "small" / "executed" / "02_table.ipynb", 4)
    assert "scale = 9" in "".join(c.source for c in table.cells)  # per-notebook override


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("variants: [{scale: 1}]", "each with a 'name'"),
        ("notebooks: [1, 2]", "'notebooks' must map"),
        ("scale: [", "not valid YAML"),
    ],
)
def test_bad_parameter_files_are_clear_errors(tmp_path, text, needle):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(AanntwinError, match=needle):
        load_parameters(path)


def test_unknown_notebook_in_only(books, tmp_path):
    with pytest.raises(AanntwinError, match="--only 07_none: no such notebook"):
        run_workbook({}, "x", tmp_path, notebooks_dir=books, only=["07_none"])


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(
    CHROMIUM is None and not __import__("os").environ.get("CI"),
    reason="Debian's chromium is not installed (CI installs it)",
)
def test_a_report_renders_in_headless_chromium(books, tmp_path):
    import numpy as np
    from PIL import Image

    run_workbook({"scale": 2.0}, "shot", tmp_path, notebooks_dir=books)
    page = tmp_path / "shot" / "01_plot.html"
    png = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'ud'}",
         f"--screenshot={png}", "--window-size=1000,1200", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.std() > 5  # not a blank page
    assert (pixels < 128).mean() > 0.001  # some dark ink: axes, text, the curve
