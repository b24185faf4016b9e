import json
import subprocess
import sys
from pathlib import Path

import pytest

from aanntwin.cli import main
from aanntwin.config import RunConfig, TrainParams
from tests.conftest import REPO


@pytest.fixture(scope="module")
def trained(trained_run):
    """``aanntwin train --dataset digits --epochs 4`` (the shared run factory trains via the CLI)."""
    return trained_run(RunConfig(train=TrainParams(epochs=4))).folder


def test_train_writes_weights_metrics_and_provenance(trained):
    assert (trained / "weights.safetensors").exists()
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "epochs", "history", "config", "provenance"):
        assert key in metrics
    assert metrics["epochs"] == 4 and len(metrics["history"]) == 4
    timing = json.loads((trained / "timing.json").read_text())
    assert len(timing["epoch_seconds"]) == 4 and timing["wall_seconds"] > 0
    assert metrics["test_accuracy"] > 0.5
    prov = metrics["provenance"]
    assert {"aanntwin", "torch", "device", "threads", "git_commit"} <= prov.keys()
    assert metrics["config"]["dataset"] == "digits"


def test_evaluate_prints_json_and_defaults_to_the_recorded_dataset(trained, capsys):
    assert main(["evaluate", str(trained), "--ideal"]) == 0
    ideal = json.loads(capsys.readouterr().out)
    metrics = json.loads((trained / "metrics.json").read_text())
    assert ideal["dataset"] == "digits"
    assert ideal["accuracy_mean"] == pytest.approx(metrics["test_accuracy"])
    nl = REPO / "examples" / "reference_nonidealities.json"
    assert main(["evaluate", str(trained), "--nonidealities", str(nl), "--runs", "3"]) == 0
    noisy = json.loads(capsys.readouterr().out)
    assert noisy["runs"] == 3 and noisy["accuracy_std"] > 0
    assert noisy["nonidealities"]["input_noise"] == 0.1


def test_info_prints_hardware_counts(capsys):
    assert main(["info", "--dataset", "mnist", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["macs"], info["multipliers"]) == (686, 31_096)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--epochs", "-1", "--out", "{tmp}/o"], "--epochs: must be >= 1, got -1"),
        (
            ["train", "--kernel", "5", "--dataset", "mnist", "--out", "{tmp}/o"],
            "not a whole number",
        ),
        (["train", "--out", "{tmp}/o", "--nonidealities", "{tmp}/none.json"], "file not found"),
        (
            ["train", "--out", "{tmp}/o", "--dataset", "mnist", "--data-dir", "{tmp}/nothing"],
            "--data-dir",
        ),
        (["train", "--out", "{tmp}/o", "--device", "cuda:7"], "--device cuda:7"),
        (["evaluate", "{tmp}/nowhere"], "no config.json here"),
        (["info", "--pool", "0"], "model.pool = 0: out of range"),
        (["train", "--epochs", "many", "--out", "x"], "argument --epochs: invalid int value"),
        (
            ["train", "--dataset", "cifar", "--out", "x"],
            "argument --dataset: 'cifar': unknown; use one of digits, mnist, fashion-mnist, "
            "cifar10, or a path to a .npz file",
        ),
        (["train", "--dataset", "{tmp}/mine.npz", "--out", "x"], "mine.npz': no such .npz file"),
        (
            ["train", "--out", "{tmp}/o", "--dataset", "cifar10", "--data-dir", "{tmp}/nothing"],
            "--data-dir FOLDER",
        ),
        (["evaluate", "x", "--runs", "0"], "--runs: must be >= 1"),
    ],
)
def test_user_errors_are_one_clear_line(tmp_path, argv, needle, monkeypatch, capsys):
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own checks
        code = exc.code
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert needle in lines[0]


def _offline(*a, **k):
    raise OSError("offline")


def test_a_user_error_in_a_real_process_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "aanntwin", "info", "--kernel", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "aanntwin info: error: model.kernel = 0: out of range, allowed >= 1 and <= 64"
    )


def test_help_for_every_command():
    proc = subprocess.run(
        [sys.executable, "-m", "aanntwin", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "usage: aanntwin" in proc.stdout
    for cmd in ("train", "evaluate", "info"):
        with pytest.raises(SystemExit) as done:
            main([cmd, "--help"])
        assert done.value.code == 0


def test_the_command_line_loads_no_notebook_or_fit_machinery_until_a_command_needs_it():
    """Every command (and every spawned sweep worker, which imports the ``aanntwin`` script)
    parsed its arguments after importing papermill, nbconvert, scipy and matplotlib: 5-6 s and
    ~100 MB per process before any work. They load inside the commands that use them."""
    heavy = ("papermill", "nbformat", "nbconvert", "scipy", "matplotlib", "sklearn")
    code = (
        "import sys, aanntwin.cli as c; c.build_parser().parse_args(['sweep', 'noise', '--out', 'o']); "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "", f"imported at start-up: {proc.stdout.strip()}"


def test_the_command_table_names_exactly_the_commands_the_parser_has():
    """``main`` builds only the named command's group (:data:`aanntwin.cli.COMMANDS`): a command
    missing from the table, or listed under the wrong module, would vanish from its own parser."""
    from aanntwin.cli import COMMANDS, build_parser

    def choices(parser):
        return list(next(a for a in parser._actions if a.dest == "command").choices)

    listed = [name for _, _, names in COMMANDS for name in names]
    assert choices(build_parser()) == listed
    for _, _, names in COMMANDS:
        for name in names:
            assert choices(build_parser(name)) == list(names)
    assert choices(build_parser("no-such-command")) == listed  # argparse names the choices


def test_importing_the_package_loads_torch_only_when_a_name_needs_it():
    """``import aanntwin`` (and the workbook runner, which only drives kernels) loaded torch,
    ~250 MB per process; the public names still resolve, on first use."""
    code = (
        "import sys, aanntwin, aanntwin.report.workbook\n"
        "before = 'torch' in sys.modules\n"
        "main = aanntwin.Main\n"
        "from aanntwin import train\n"
        "print(before, 'torch' in sys.modules, main.__module__, train.__module__,\n"
        "      'Main' in dir(aanntwin), sorted(set(aanntwin.__all__) - set(dir(aanntwin))))\n"
        "try:\n    aanntwin.nothing\nexcept AttributeError as exc:\n    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == [
        "False True aanntwin.model aanntwin.training True []",
        "module 'aanntwin' has no attribute 'nothing'",
    ]


def test_the_lazy_names_and_what_type_checkers_see_agree():
    """``aanntwin._EXPORTS`` (what loads on first use) and the ``TYPE_CHECKING`` imports (what
    type checkers and editors see) list the same names from the same modules."""
    import ast

    import aanntwin

    tree = ast.parse(Path(aanntwin.__file__).read_text())
    guarded = next(
        n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
    )
    seen = {a.name: node.module for node in guarded.body for a in node.names}
    assert seen == aanntwin._EXPORTS
