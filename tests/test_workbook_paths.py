"""Workbook parameters naming files or folders (``characterization``, ``compare_with`` and the
rest of ``PATH_PARAMETERS``): their contents are in the rerun key, relative paths are taken from
where the workbook starts, and they are checked before anything runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aanntwin.cli import main
from aanntwin.report.params import PATH_PARAMETERS, notebook_defaults, validate
from aanntwin.report.workbook import NOTEBOOKS_DIR, notebook_paths, run_parameter_files
from tests.test_workbook import _notebook

PARAMS = "seed = 0\ncharacterization = None\ncompare_with = 'subthreshold'\nout_dir = '.'"
USES = """from pathlib import Path
if characterization is not None:
    assert (Path(characterization) / "nonidealities.json").is_file(), characterization
if compare_with != "subthreshold":
    assert Path(compare_with).is_dir(), compare_with
print("inputs found")"""


@pytest.fixture
def book(tmp_path) -> Path:
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(folder / "06_uses.ipynb", USES, params=PARAMS)
    return folder


@pytest.fixture
def inputs(tmp_path) -> tuple[Path, Path]:
    """A characterize-like folder and a folder of CSVs."""
    char, cmp = tmp_path / "chX", tmp_path / "cmp"
    (char / "data").mkdir(parents=True)
    (char / "nonidealities.json").write_text('{"input_noise": 0.1}')
    (char / "fit_report.json").write_text("{}")
    (char / "data" / "multiplier_x.csv").write_text("x,y\n0,0\n")
    cmp.mkdir()
    (cmp / "a.csv").write_text("x,y\n0,0\n")
    return char, cmp


def _run(book: Path, params: Path, out: Path):
    return run_parameter_files([str(params)], out, notebooks_dir=book)[0]


def test_changing_the_content_of_a_named_folder_reruns(book, inputs, tmp_path):
    char, cmp = inputs
    params = tmp_path / "p.yaml"
    params.write_text(f"notebooks:\n  06_uses: {{characterization: {char}}}\ncompare_with: {cmp}\n")
    out = tmp_path / "out"
    assert _run(book, params, out).ok
    assert _run(book, params, out).skipped
    (char / "nonidealities.json").write_text('{"input_noise": 0.2}')  # another characterize
    assert not _run(book, params, out).skipped
    assert _run(book, params, out).skipped
    (char / "data" / "multiplier_x.csv").write_text("x,y\n0,1\n")  # a file deeper down
    assert not _run(book, params, out).skipped
    assert _run(book, params, out).skipped
    (cmp / "a.csv").write_text("x,y\n0,2\n")  # the CSVs compared with
    assert not _run(book, params, out).skipped
    assert _run(book, params, out).skipped
    (cmp / "b.csv").write_text("x,y\n0,3\n")
    assert not _run(book, params, out).skipped


def test_a_data_file_rewritten_in_place_reruns(book, tmp_path):
    """Same name, size and modification time, other bytes: the content is in the key."""
    data = tmp_path / "data"
    data.mkdir()
    f = data / "train-images-idx3-ubyte"
    f.write_bytes(b"\x00" * 64)
    params = tmp_path / "p.yaml"
    params.write_text(f"data_dir: {data}\n")
    _notebook(book / "06_uses.ipynb", USES, params=PARAMS + "\ndata_dir = None")
    out = tmp_path / "out"
    assert _run(book, params, out).ok
    assert _run(book, params, out).skipped
    stat = f.stat()
    f.write_bytes(b"\x01" * 64)
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not _run(book, params, out).skipped


def test_relative_folders_are_taken_from_where_the_workbook_starts(
    book, inputs, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "p.yaml"
    params.write_text("characterization: chX\ncompare_with: cmp\n")
    run = _run(book, params, tmp_path / "out")
    assert run.ok, run.notebooks[0].error
    assert run.parameters["characterization"] == str(tmp_path / "chX")
    assert run.parameters["compare_with"] == str(tmp_path / "cmp")


def test_the_shipped_notebooks_take_null_and_paths_for_compare_with(inputs, tmp_path):
    char, cmp = inputs
    defaults = notebook_defaults(notebook_paths(NOTEBOOKS_DIR))
    for value in (None, "gilbert", str(cmp), str(cmp / "a.csv"), [str(cmp / "a.csv")]):
        validate("p.yaml", {"notebooks": {"01_characterization": {"compare_with": value}}},
                 defaults)  # fmt: skip
    validate("p.yaml", {"characterization": str(char)}, defaults)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("characterization: nowhere\n", "characterization = nowhere: no such folder"),
        (
            "characterization: cmp\n",
            "characterization = cmp: no nonidealities.json or fit_report.json in this folder",
        ),
        ("characterization: [a]\n", 'characterization = ["a"]: expected a folder path'),
        ("compare_with: nowhere\n", "compare_with = nowhere: no such file or folder"),
        ("compare_with: chX\n", "compare_with = chX: no CSV files in this folder"),
        ("compare_with: 3\n", "compare_with = 3: expected a topology (gilbert, subthreshold)"),
        ("characterized: 3\n", "characterized = 3: expected a file path"),
    ],
)
def test_bad_paths_exit_2_before_anything_runs(inputs, tmp_path, monkeypatch, capsys, text,
                                               needle):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "p.yaml"
    params.write_text(text)
    assert main(["workbook", "--params", str(params), "--out", "reports"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"aanntwin workbook: error: {params}") and needle in err, err
    assert not (tmp_path / "reports").exists()


def test_every_path_parameter_of_the_notebooks_is_known():
    """A parameter whose comment says it names a file or folder is in PATH_PARAMETERS (so
    resolved, checked and fingerprinted): a new one cannot be forgotten silently."""
    import nbformat

    defaults = notebook_defaults(notebook_paths(NOTEBOOKS_DIR))
    for path in notebook_paths(NOTEBOOKS_DIR):
        cell = next(c for c in nbformat.read(path, as_version=4).cells
                    if "parameters" in c.metadata.get("tags", []))  # fmt: skip
        comments: dict[str, str] = {}
        for line in cell.source.splitlines():
            if line.startswith("#") and comments:  # a comment continued on the next line
                comments[list(comments)[-1]] += line.lower()
            elif "=" in line:
                name, _, rest = line.partition("=")
                comments[name.strip()] = rest.partition("#")[2].lower()
        for name, comment in comments.items():
            takes_text = defaults[path.stem][name] is None or isinstance(
                defaults[path.stem][name], str
            )  # a flag or a number names no file
            if takes_text and any(w in comment for w in ("file", "folder", "path", ".json")):
                assert name in (*PATH_PARAMETERS, "dataset", "out_dir"), (path.name, name)


def test_notebook_06_names_a_wrong_characterization_folder(tmp_path):
    """Run directly (papermill, Voila: no workbook check first), a folder without
    nonidealities.json is named as the characterization parameter, not as nonidealities."""
    from types import SimpleNamespace

    from aanntwin.errors import AanntwinError
    from aanntwin.report import circuit

    ctx = SimpleNamespace(out_dir=tmp_path / "data", quick=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AanntwinError, match=r"parameter characterization = .*nowhere: no such "):
        circuit.load(ctx, characterization=str(tmp_path / "nowhere"))
    with pytest.raises(AanntwinError, match=r"characterization = .*empty: no nonidealities.json"):
        circuit.load(ctx, characterization=str(tmp_path / "empty"))


def test_notebook_01_run_directly_takes_compare_with_as_csv_files_does(tmp_path):
    """papermill runs 01 in notebooks/: a relative compare_with folder is found as csv_files
    are (the current folder, else the checkout root), not only from notebooks/."""
    import subprocess
    import sys

    import nbformat

    executed = tmp_path / "01.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(NOTEBOOKS_DIR / "01_characterization.ipynb"),
           str(executed), "-p", "quick", "True", "-p", "simulate", "False",
           "-p", "out_dir", str(tmp_path / "data"),
           "-p", "compare_with", "aanntwin/characterization/circuits/data/subthreshold",
           "--cwd", str(NOTEBOOKS_DIR), "--no-progress-bar"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    cell = next(c for c in nbformat.read(executed, as_version=4).cells
                if "compare.against" in c.source)  # fmt: skip
    shown = str(cell.outputs)
    assert "subthreshold" in shown and "no comparison" not in shown, shown[:500]
