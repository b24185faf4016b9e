"""The headline promise: the default model trains to >= 98.0 % on real MNIST; and the real-MNIST
tests cannot vanish in CI (a missing folder fails there, and is skipped elsewhere)."""

import json

import pytest

from aanntwin.cli import main
from aanntwin.idx import FILES
from tests.conftest import require_mnist


def test_default_training_on_mnist_reaches_98_percent(mnist_dir, tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "mnist",
                "--data-dir",
                str(mnist_dir),
                "--out",
                str(out),
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.980
    assert metrics["geometry"]["multipliers"] == 31_096
    assert metrics["dataset"]["n_train"] == 60_000


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({"CI": "true"}, pytest.fail.Exception),
        ({"CI": "1"}, pytest.fail.Exception),
        ({"CI": "yes"}, pytest.fail.Exception),
        ({"CI": "false"}, pytest.skip.Exception),
        ({"CI": "0"}, pytest.skip.Exception),
        ({"CI": ""}, pytest.skip.Exception),
        ({}, pytest.skip.Exception),
    ],
)
def test_missing_mnist_fails_under_ci_and_skips_elsewhere(tmp_path, env, outcome):
    folder = tmp_path / "no-mnist"
    with pytest.raises(outcome) as info:
        require_mnist(folder, env)
    assert type(info.value) is outcome  # Failed and Skipped are siblings: no subclass passes
    assert str(folder) in str(info.value) and "AANNTWIN_TEST_MNIST" in str(info.value)


def test_a_complete_mnist_folder_is_used_even_under_ci(tmp_path):
    for stem in FILES.values():
        (tmp_path / f"{stem}.gz").touch()
    assert require_mnist(tmp_path, {"CI": "true"}) == tmp_path
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(pytest.fail.Exception, match="missing t10k-labels-idx1-ubyte.gz"):
        require_mnist(tmp_path, {"CI": "true"})
