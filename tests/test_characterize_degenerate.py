"""Characterization on data that cannot be fitted as given: what is printed, written and
refused (knee outside the sweep, constant or overflowing outputs, fits that explain nothing)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from aanntwin.cli import main
from aanntwin.config import load_nonidealities
from tests.char_csv import montecarlo_csv, multiplier_csv, relu_csv


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


X = np.linspace(-1.0, 2.0, 31)
REFUSED = {  # data -> what the one-line error says
    "mult_zero": (lambda d: multiplier_csv(d, lambda x, w: 0.0), r"y is constant \(0 on every"),
    "mult_const": (lambda d: multiplier_csv(d, lambda x, w: 0.5), "constant.*nothing to fit"),
    "mult_1e200": (lambda d: multiplier_csv(d, lambda x, w: 1e200 * x * w),
                   r"line 8, column 'y': 1.5e\+200 is beyond the float32 range"),
    "mult_1e40": (lambda d: multiplier_csv(d, lambda x, w: 1e40 * x * w), "beyond the float32"),
    "mult_1e-200": (lambda d: multiplier_csv(d, lambda x, w: 1e-200 * x * w),
                    r"at most 1.5e-200, below the float32 range"),
    "relu_const": (lambda d: relu_csv(d, X, 0.0 * X), "constant.*nothing to fit"),
    "relu_inverted": (lambda d: relu_csv(d, X, -np.maximum(0.0, X)),
                      r"fit of this ReLU data gives gain -1: the data is decreasing"),
    "relu_1e40": (lambda d: relu_csv(d, X, 1e40 * np.maximum(0.0, X)), "beyond the float32"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_data_that_cannot_be_fitted_is_a_one_line_error_naming_the_file(tmp_path, capsys, case):
    make, message = REFUSED[case]
    src = make(tmp_path / f"{case}.csv")
    rc, _, err = _run(capsys, "--csv", str(src), "--out", str(tmp_path / "o"), "--no-plots")
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{case}.csv" in err and re.search(message, err), err
    assert "nonidealities.relu_gain" not in err  # the data is named, not a setting


def test_a_fitted_value_out_of_range_names_the_fit_that_gave_it(tmp_path, capsys, monkeypatch):
    from aanntwin.characterization import pipeline

    monkeypatch.setattr(pipeline, "check_fits", lambda fits: None)  # let the value through
    src = relu_csv(tmp_path / "falling.csv", X, -np.maximum(0.0, X))
    rc, _, err = _run(capsys, "--csv", str(src), "--out", str(tmp_path / "o"), "--no-plots")
    assert rc == 2
    assert re.search(r"falling\.csv: the fit of this data gives nonidealities\.relu_gain = -1", err)
    assert "a fitted value, not one you set" in err


FLAT = {  # data -> the warning (stderr and fit_report.json)
    "random": (lambda x, w: np.random.default_rng(0).normal(size=x.shape),
               r"random\.csv: the multiplier fit leaves 32.\d % FS RMS .* unexplained"),
    "dead": (lambda x, w: 0.5 + 1e-9 * x * w,
             r"dead\.csv: the fitted multiplier's product term .* the twin's multiplier is dead"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(FLAT))
def test_a_fit_that_explains_nothing_is_a_warning(tmp_path, capsys, case):
    y, message = FLAT[case]
    src = multiplier_csv(tmp_path / f"{case}.csv", y)
    rc, _, err = _run(capsys, "--csv", str(src), "--out", str(tmp_path / "o"), "--no-plots")
    assert rc == 0 and re.search("warning: .*" + message, err), err
    report = json.loads((tmp_path / "o" / "fit_report.json").read_text())
    assert any(re.search(message, w) for w in report["warnings"])


def test_dead_monte_carlo_instances_are_a_warning(tmp_path, capsys):
    dc = multiplier_csv(tmp_path / "dc.csv", lambda x, w: np.tanh(x) * w)
    mc = montecarlo_csv(tmp_path / "mc.csv", [0.0, 0.0, 0.0, 1e-9])
    rc, out, err = _run(capsys, "--csv", str(dc), str(mc), "--out", str(tmp_path / "o"),
                        "--no-plots")  # fmt: skip
    assert rc == 0 and "mismatch: gain" in out
    assert re.search(r"warning: .*mc\.csv: 4 of 4 Monte Carlo instances hardly respond", err)


def test_the_shipped_data_gives_no_such_warning(tmp_path, capsys):
    from aanntwin.characterization.circuits import example_files

    files = [str(p) for p in example_files()]
    rc, _, err = _run(capsys, "--csv", *files, "--out", str(tmp_path / "o"), "--no-plots")
    assert rc == 0 and "warning" not in err


@pytest.mark.parametrize(("flag", "low"), [("--instances", 3), ("--heldout", 6)])
def test_simulation_counts_are_checked_at_parse_time_against_the_real_minimum(
    tmp_path, capsys, flag, low
):
    argv = ["characterize", "--simulate", "--out", str(tmp_path / "o"), flag, str(low - 1)]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: must be >= {low}, got {low - 1}" in err and "data/" not in err
    with pytest.raises(SystemExit):
        main(["characterize", "--help"])
    assert re.search(rf"{flag} \w+\s+[^\n]*{low}\.\.\d+", capsys.readouterr().out)


@pytest.mark.parametrize("kind", ["missing", "not executable"])
def test_a_bad_aanntwin_ngspice_is_named(tmp_path, capsys, monkeypatch, kind):
    exe = tmp_path / "ngspice"
    if kind == "not executable":
        exe.write_text("#!/bin/sh\n")
    monkeypatch.setenv("AANNTWIN_NGSPICE", str(exe))
    rc, _, err = _run(capsys, "--simulate", "--out", str(tmp_path / "o"), "--no-plots")
    what = "does not exist" if kind == "missing" else "is not executable"
    assert rc == 2 and f"AANNTWIN_NGSPICE={exe} {what}" in err
    assert "not found on the PATH" not in err


def test_a_comment_inside_the_table_is_named_as_one(tmp_path, capsys):
    src = multiplier_csv(tmp_path / "m.csv", lambda x, w: np.tanh(x) * w, tail="# a note\n")
    rc, _, err = _run(capsys, "--csv", str(src), "--out", str(tmp_path / "o"), "--no-plots")
    assert rc == 2 and "m.csv, line 287: a '#' comment inside the table" in err
    assert "fewer than" not in err


def test_an_interrupted_characterize_says_nothing_was_written(tmp_path, capsys, monkeypatch):
    from aanntwin.characterization import flow

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(flow, "fit_and_write", interrupt)
    src = multiplier_csv(tmp_path / "m.csv", lambda x, w: np.tanh(x) * w)
    rc, _, err = _run(capsys, "--csv", str(src), "--out", str(tmp_path / "o"), "--no-plots")
    assert rc == 130 and "nothing was written" in err and "resume" not in err
    assert not (tmp_path / "o").exists() and [p.name for p in tmp_path.iterdir()] == ["m.csv"]


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_the_fit_does_not_depend_on_the_unit_of_y(tmp_path, capsys, scale):
    """y in another unit (a full scale off by 1e30) fits as well as y of order 1: the fit runs
    at unit scale (the optimizer's tolerances are absolute: 1e-30 data stopped at 5.8 % FS)."""
    reports = []
    for s in (1.0, scale):
        src = multiplier_csv(tmp_path / f"m{s:g}.csv", lambda x, w, s=s: s * np.tanh(x) * w)
        out = tmp_path / f"o{s:g}"
        assert _run(capsys, "--csv", str(src), "--out", str(out), "--no-plots")[0] == 0
        reports.append(json.loads((out / "fit_report.json").read_text())["fits"]["multiplier"])
    unit, other = reports
    assert other["residual_rms_pct_fs"] == pytest.approx(unit["residual_rms_pct_fs"], abs=1e-6)
    assert other["params"]["G"] == pytest.approx(scale * unit["params"]["G"], rel=1e-6)
    assert other["stderr"]["G"] == pytest.approx(scale * unit["stderr"]["G"], rel=1e-3)
    assert other["undetermined"].keys() == unit["undetermined"].keys()
