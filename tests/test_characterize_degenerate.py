"""Characterization on data that cannot be fitted as given: what is printed, written and
refused (knee outside the sweep, constant or overflowing outputs, fits that explain nothing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aanntwin.cli import main
from aanntwin.config import load_nonidealities
from tests.char_csv import relu_csv


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["characterize", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("offset", [0.1, None])  # a floor and knee below the sweep; y = x
def test_undetermined_relu_parameters_are_written_as_their_defaults(tmp_path, capsys, offset):
    x = np.linspace(0.5, 2.0, 31)
    y = x if offset is None else offset + np.maximum(0.0, x - 0.3)
    src = relu_csv(tmp_path / "relu.csv", x, y)
    rc, out, _ = _run(capsys, "--csv", str(src), "--out", str(tmp_path / "o"), "--no-plots")
    assert rc == 0
    assert "relu floor: undetermined" in out and "default 0" in out
    assert "relu knee: undetermined" in out
    nl = load_nonidealities(str(tmp_path / "o" / "nonidealities.json"))
    assert nl.relu_cutoff is None and nl.relu_threshold is None  # floor 0, knee at the floor
    assert nl.relu_gain == pytest.approx(1.0, abs=1e-6)
    report = json.loads((tmp_path / "o" / "fit_report.json").read_text())
    assert "undetermined" in report["mapping"]["relu"]["floor"]
