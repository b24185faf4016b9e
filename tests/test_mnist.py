"""The headline promise: the default model trains to >= 98.0 % on real MNIST."""

import json

from aanntwin.cli import main


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
