"""Catalogue of bad output paths and write faults (issue 11): each case runs ``aanntwin.cli.main``
and checks the exit status, the one-line message (naming the flag or path) and that nothing was
left behind; plus the umask, a torn ``results.csv`` resumed byte for byte, the checkpoint cache
under a full disk and the workbook's kernels after a kill -9."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aanntwin.characterization.circuits import example_files
from aanntwin.cli import main
from aanntwin.errors import AanntwinError, FaultError
from aanntwin.studies import export as export_module
from aanntwin.studies.runner import ResultStore, Task, run_tasks
from tests.conftest import SMALL

TINY = SMALL.replace(train=SMALL.train.replace(epochs=2))


@pytest.fixture(scope="module")
def run_dir(trained_run) -> Path:
    return trained_run().folder


def _argv(command: str, run_dir: Path, tmp: Path, out: str) -> list[str]:
    """The argv of ``command`` writing to ``out`` (small and fast where it runs)."""
    config = tmp / "run.json"
    config.write_text(TINY.to_json())
    return {
        "train": ["train", "--config", str(config), "--no-progress", "--no-cache", "--out", out],
        "export": ["export", str(run_dir), "--bits", "4", "--calibration-images", "50",
                   "--out", out],  # fmt: skip
        "normalize": ["normalize", str(run_dir), "--calibration-images", "50", "--out", out],
        "characterize": ["characterize", "--csv", *map(str, example_files()), "--no-plots",
                         "--out", out],  # fmt: skip
        "specs": ["specs", str(run_dir), "--kinds", "input", "--runs", "2", "--out", out],
        "weights": ["weights", str(run_dir), "--out", out],
        "yield": ["yield", str(run_dir), "--nonidealities", str(config), "--out", out],
        "sweep": ["sweep", "quantization", str(run_dir), "--layers", "linear", "--ref-sigmas",
                  "2", "--bits", "2", "--zero-levels", "yes", "--no-progress", "--out", out],
        "workbook": ["workbook", "--notebooks", str(tmp / "none"), "--out", out],
    }[command]  # fmt: skip


DIR_COMMANDS = ["train", "export", "normalize", "characterize", "specs", "sweep", "workbook"]
ALL = [*DIR_COMMANDS, "weights"]


def _fails(capsys, argv: list[str], status: int, *needles: str) -> str:
    assert main(argv) == status
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


@pytest.mark.parametrize("command", DIR_COMMANDS)
def test_existing_file_as_out(command, run_dir, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    argv = _argv(command, run_dir, tmp_path, str(target))
    _fails(capsys, argv, 2, f"--out {target}", "a file exists")
    assert target.read_text() == "keep me" and not _siblings(tmp_path)


@pytest.mark.parametrize("command", ALL)
def test_path_below_a_file(command, run_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "sub" / "out"
    _fails(capsys, _argv(command, run_dir, tmp_path, str(target)), 2, "--out", "is a file")


@pytest.mark.parametrize("command", ALL)
def test_empty_out(command, run_dir, tmp_path, capsys, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    _fails(capsys, _argv(command, run_dir, tmp_path, ""), 2, "--out: empty path")
    assert not os.listdir(cwd)


def test_weights_out_is_a_folder(run_dir, tmp_path, capsys):
    _fails(capsys, _argv("weights", run_dir, tmp_path, str(tmp_path)), 2, "is a folder")


@pytest.mark.parametrize("command", ["train", "export", "normalize", "sweep", "weights"])
def test_read_only_parent(command, run_dir, tmp_path, capsys, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: Path(p) != tmp_path and real(p, m))
    argv = _argv(command, run_dir, tmp_path, str(tmp_path / "new" / "out"))
    _fails(capsys, argv, 2, "--out", "is not writable")
    assert not (tmp_path / "new").exists()


def test_foreign_folder_is_not_replaced(run_dir, tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    _fails(capsys, _argv("export", run_dir, tmp_path, str(home)), 2, "not an earlier output")
    assert (home / "thesis.tex").read_text() == "precious"


def test_export_error_leaves_nothing_and_keeps_the_old_export(
    run_dir, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "exp"
    assert main(_argv("export", run_dir, tmp_path, str(out))) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _fails(capsys, [*_argv("export", run_dir, tmp_path, str(out)), "--bits", "99"], 2, "99")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    fresh = tmp_path / "fresh" / "exp"
    real, calls = export_module._write_table, []

    def fail_midway(*args, **kw):  # an error after the first CSV was written
        calls.append(args)
        if len(calls) > 1:
            raise AanntwinError("stage linear: invalid")
        return real(*args, **kw)

    monkeypatch.setattr(export_module, "_write_table", fail_midway)
    _fails(capsys, _argv("export", run_dir, tmp_path, str(fresh)), 2, "stage linear: invalid")
    assert not (tmp_path / "fresh").exists() and not _siblings(tmp_path)


def test_a_rerun_replaces_its_own_output(run_dir, tmp_path):
    out = tmp_path / "norm"
    assert main(_argv("normalize", run_dir, tmp_path, str(out))) == 0
    (out / "weights.safetensors").write_bytes(b"damaged")
    assert main(_argv("normalize", run_dir, tmp_path, str(out))) == 0
    assert (out / "weights.safetensors").read_bytes() != b"damaged"
    assert not _siblings(tmp_path)


@pytest.mark.parametrize("command", ["train", "export", "normalize", "characterize", "specs"])
def test_an_earlier_output_holding_other_files_is_not_replaced(command, run_dir, tmp_path, capsys):
    """A user's notes or an export kept inside a run folder were deleted by a rerun."""
    out = tmp_path / "out"
    assert main(_argv(command, run_dir, tmp_path, str(out))) == 0
    capsys.readouterr()
    (out / "NOTES.txt").write_text("precious")
    (out / "sub").mkdir()
    (out / "sub" / "manifest.json").write_text("{}")
    before = sorted(p.name for p in out.iterdir())
    _fails(capsys, _argv(command, run_dir, tmp_path, str(out)), 2,
           f"--out {out}: holds NOTES.txt, sub beside an earlier output")  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == before
    assert (out / "NOTES.txt").read_text() == "precious" and not _siblings(tmp_path)


def test_train_does_not_replace_a_sweep_folder(run_dir, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert main(_argv("sweep", run_dir, tmp_path, str(sweep))) == 0
    results = (sweep / "results.csv").read_bytes()
    capsys.readouterr()
    _fails(capsys, _argv("train", run_dir, tmp_path, str(sweep)), 2, "holds results.csv")
    assert (sweep / "results.csv").read_bytes() == results


@pytest.mark.parametrize("study", ["quantization", "noise"])
def test_a_sweep_does_not_write_into_a_run_folder(study, run_dir, tmp_path, capsys):
    """A sweep's --out at a trained run overwrote its config.json: the run no longer loaded."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    argv = _argv("sweep", run_dir, tmp_path, str(run))
    if study == "noise":
        argv = ["sweep", "noise", "--config", str(tmp_path / "run.json"), "--train-levels",
                "none", "--test-levels", "none", "--kinds", "input", "--workers", "1",
                "--no-progress", "--out", str(run)]  # fmt: skip
    _fails(capsys, argv, 2, f"{run / 'config.json'}: not a sweep's config (a trained run's?)",
           f"not a {study} sweep's")  # fmt: skip
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    same = ["sweep", "quantization", str(run), *argv[3:-1], str(run)]  # its own input folder
    if study == "quantization":
        _fails(capsys, same, 2, "not a quantization sweep's")
        assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def _enospc_on_replace(monkeypatch, match):
    real = os.replace

    def replace(src, dst, *a, **kw):
        if match(Path(dst)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize(
    "command", ["train", "export", "normalize", "characterize", "specs", "weights"]
)
def test_disk_full(command, run_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    argv = _argv(command, run_dir, tmp_path, str(out))
    _enospc_on_replace(monkeypatch, lambda dst: dst.name != "out" and "out" in dst.parent.name
                       or dst == out)  # fmt: skip
    err = _fails(capsys, argv, 1, "disk full writing", f"{out}", "(No space left on device)")
    assert ".tmp" not in err
    assert not out.exists() and not _siblings(tmp_path)


def test_disk_full_in_a_sweep_keeps_the_finished_rows(tmp_path, capsys, monkeypatch):
    store = ResultStore(tmp_path / "s", ["x", "y"], {})
    tasks = [Task(_square, {"x": x}) for x in range(4)]
    run_tasks(tasks[:2], store, progress=False)
    good = store.csv.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", _raise_enospc)
        with pytest.raises(FaultError, match=r"disk full writing .*results.csv"):
            run_tasks(tasks, store, progress=False)
    assert store.csv.read_bytes() == good  # the failed append was undone
    full = run_tasks(tasks, store, progress=False)
    assert list(full["y"]) == [0, 1, -1, 4, 9, -3]


def _raise_enospc(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_checkpointing_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    config = tmp_path / "run.json"
    config.write_text(TINY.replace(train=TINY.train.replace(seed=11)).to_json())  # not cached
    out = tmp_path / "run"
    argv = ["train", "--config", str(config), "--no-progress", "--out", str(out)]
    with monkeypatch.context() as m:
        _enospc_on_replace(m, lambda dst: dst.name == "epoch-0002.pt")
        _fails(capsys, argv, 1, "disk full writing", "epoch-0002.pt")
    assert not out.exists() and not _siblings(tmp_path)
    assert main(argv) == 0
    assert "1 epoch(s) from cache" in capsys.readouterr().out


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        argv = _argv("train", None, tmp_path, str(tmp_path / "run"))
        assert main([a for a in argv if a != "--no-cache"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert files and {p.name: p.stat().st_mode & 0o777 for p in files} == {
        p.name: 0o644 for p in files
    }


def _square(x: int) -> list[dict]:
    return [{"x": x, "y": x * x}, {"x": x, "y": -x}][: 1 + (x % 2)]


def test_torn_last_line_resumes_byte_for_byte(tmp_path):
    tasks = [Task(_square, {"x": x}, points=1 + (x % 2)) for x in range(6)]
    whole = run_tasks(tasks, ResultStore(tmp_path / "whole", ["x", "y"], {}), progress=False)
    reference = (tmp_path / "whole" / "results.csv").read_bytes()
    assert len(whole) == 9
    last = reference.rstrip(b"\n").rfind(b"\n") + 1
    for cut in (last + 1, last + 3, len(reference) - 3, len(reference) - 1):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        (folder / "results.csv").write_bytes(reference[:cut])  # kill -9 mid-line
        run_tasks(tasks, ResultStore(folder, ["x", "y"], {}), progress=False)
        assert (folder / "results.csv").read_bytes() == reference, cut


WORKBOOK_NOTEBOOK = """import time, pathlib
pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)
(pathlib.Path(out_dir) / "started").write_text("x")
sum(range(10**12))  # holds the GIL: the kernel's own parent poller cannot run"""


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_kill_9_of_the_workbook_leaves_no_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    books = tmp_path / "nbs"
    books.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    params = nbformat.v4.new_code_cell("out_dir = '.'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(WORKBOOK_NOTEBOOK)]
    nbformat.write(nb, books / "01_sleep.ipynb")
    out = tmp_path / "reports"
    cmd = [sys.executable, "-m", "aanntwin", "workbook", "--notebooks", str(books),
           "--out", str(out), "--name", "k"]  # fmt: skip
    # Under a subreaper (as in containers and service managers) an orphaned kernel is not
    # reparented to init, so the kernel's own parent poller does not see the workbook die.
    reaper = subprocess.Popen([sys.executable, "-c", SUBREAPER, *cmd], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    proc = _Pid(int(reaper.stdout.readline()))
    started = out / "k" / "data" / "started"
    deadline = time.monotonic() + 90
    kernels: list[int] = []
    while time.monotonic() < deadline and not started.exists():
        kernels = _children_of(proc.pid) or kernels
        time.sleep(0.2)
    kernels = _children_of(proc.pid) or kernels
    try:
        assert started.exists() and kernels, "the notebook did not start"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
    time.sleep(2.0)
    alive = [k for k in kernels if _alive(k)]
    for k in alive:  # clean up before failing
        os.kill(k, signal.SIGKILL)
    reaper.kill()
    reaper.wait()
    assert not alive


SUBREAPER = """import ctypes, os, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
p = subprocess.Popen(sys.argv[1:])
print(p.pid, flush=True)
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.1)"""


class _Pid:
    def __init__(self, pid: int) -> None:
        self.pid = pid


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_disk_full_while_writing_the_weights(tmp_path, capsys, monkeypatch):
    """safetensors' ``save_file`` ignored a failed write: a truncated weights file, exit 0."""
    import builtins

    import aanntwin.io

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fake_open(file, mode="r", *args, **kw):
        fh = builtins.open(file, mode, *args, **kw)  # noqa: SIM115 - closed by the caller
        return Full(fh) if Path(file).name.startswith(".weights.safetensors") else fh

    monkeypatch.setattr(aanntwin.io, "open", fake_open, raising=False)
    out = tmp_path / "run"
    _fails(capsys, _argv("train", None, tmp_path, str(out)), 1,
           f"disk full writing {out}/weights.safetensors")  # fmt: skip
    assert not out.exists() and not _siblings(tmp_path)


def test_a_failed_replace_keeps_the_earlier_output(run_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "norm"
    assert main(_argv("normalize", run_dir, tmp_path, str(out))) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []
    real = os.replace

    def replace(src, dst, *a, **kw):  # the rename of the new folder onto --out fails once
        if Path(dst) == out and ".tmp-" in Path(src).name and not calls:
            calls.append(src)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    _fails(capsys, _argv("normalize", run_dir, tmp_path, str(out)), 1, f"disk full writing {out}")
    assert calls and {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not _siblings(tmp_path)


POOL = """import os, sys, time
from aanntwin.studies.pools import executor_from_args
pool = executor_from_args(2, None)
futures = [pool.submit(time.sleep, 120) for _ in range(2)]
while len(pool._processes) < 2:
    time.sleep(0.05)
print(*pool._processes, flush=True)
time.sleep(120)"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_kill_9_of_a_sweep_leaves_no_worker():
    reaper = subprocess.Popen([sys.executable, "-c", SUBREAPER, sys.executable, "-c", POOL],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    command = int(reaper.stdout.readline())
    workers = [int(w) for w in reaper.stdout.readline().split()]
    time.sleep(1.0)  # the workers are in their task
    os.kill(command, signal.SIGKILL)
    # A worker still starting (spawn imports take seconds on loaded cores) exits as soon as its
    # initializer sees the parent gone; one in its task dies at once. Wait for either.
    deadline = time.monotonic() + 30.0
    while (alive := [w for w in workers if _alive(w)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for w in alive:
        os.kill(w, signal.SIGKILL)
    reaper.kill()
    reaper.wait()
    assert len(workers) == 2 and not alive
