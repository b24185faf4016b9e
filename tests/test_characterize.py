"""Characterization without ngspice: the committed CSVs, the fits, the Nonidealities file, the
fidelity check on the committed held-out MAC data, bad data, the CLI and a training run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aanntwin.characterization.circuits import DATA_DIR, EXAMPLE_FILES, example_files
from aanntwin.characterization.curves import CurveTable, read_all, read_csv, validate
from aanntwin.characterization.fidelity import predict_mac
from aanntwin.characterization.fit import (
    MultiplierModel,
    ReluModel,
    fit_montecarlo,
    fit_multiplier,
    fit_relu,
    polynomial_fit,
)
from aanntwin.characterization.pipeline import characterize, write_outputs
from aanntwin.characterization.twin import fan_ins
from aanntwin.cli import characterize as characterize_cli
from aanntwin.cli.common import Parser as _Parser
from aanntwin.config import Nonidealities, load_nonidealities
from aanntwin.errors import AanntwinError, DataError

HEADER = "# x_full_scale: 0.1 V\n# w_full_scale: 0.2 V\n# y_full_scale: 1e-05 A\n"


@pytest.fixture(scope="module")
def fitted():
    return characterize(read_all(example_files()))


def _cli(argv: list[str]) -> int:
    parser = _Parser(prog="aanntwin")
    characterize_cli.add_parser(parser.add_subparsers(dest="command", parser_class=_Parser))
    return characterize_cli.run(parser.parse_args(argv))


def _ds(frame: pd.DataFrame, circuit: str = "multiplier", analysis: str = "dc") -> CurveTable:
    meta = {"x_full_scale": "0.1 V", "w_full_scale": "0.2 V", "y_full_scale": "1e-05 A"}
    if circuit == "relu":  # the ReLU's input is a current (the MAC output)
        meta["x_full_scale"] = "1e-05 A"
    return validate(CurveTable(circuit, analysis, frame, meta, "synthetic"))


def test_example_data_is_small_and_complete():
    files = example_files()
    assert {p.name for p in DATA_DIR.glob("*.csv")} == {p.name for p in files}
    assert sum(p.stat().st_size for p in files) < 200_000
    sets = read_all(files)
    assert {(d.circuit, d.analysis) for d in sets} == set(EXAMPLE_FILES)
    dc = next(d for d in sets if d.label == "multiplier dc")
    assert dc.full_scale("x") == (0.1, "V") and dc.full_scale("y") == (1e-05, "A")


def test_multiplier_fit_on_the_simulated_curves(fitted):
    m = fitted.fits["multiplier"]
    assert 100 * m.rms / m.full_scale < 0.2  # the global model fits within 0.2 % of FS
    assert 100 * m.max_abs / m.full_scale < 0.5
    assert 1.3 < m.params["G"] < 1.8 and 0.5 < m.params["Xs"] < 2.0
    assert -0.1 < m.params["c3"] < -0.03  # the weight pair compresses a few percent
    assert len(m.groups) == 17 and (m.groups["max"] <= m.max_abs + 1e-12).all()


def test_fits_recover_known_parameters():
    rng = np.random.default_rng(0)
    true = MultiplierModel(G=1.2, c2=0.01, c3=-0.05, a2=0.0, a3=-0.1, u=1 / 1.3, b=0.002)
    x, w = np.meshgrid(np.linspace(-1.5, 1.5, 31), np.linspace(-1, 1, 9))
    y = true(x.ravel(), w.ravel()) + rng.normal(0, 1e-4, x.size)
    fit = fit_multiplier(_ds(pd.DataFrame({"x": x.ravel(), "w": w.ravel(), "y": y})))
    for k in ("G", "c2", "c3", "b"):
        assert abs(fit.params[k] - getattr(true, k)) < 5e-3, k
    assert fit.rms < 2e-4
    relu = ReluModel(c=0.01, g=0.98, t=0.05, s=0.08)
    xr = np.linspace(-1, 2, 151)
    r = fit_relu(_ds(pd.DataFrame({"x": xr, "y": relu(xr)}), "relu"))
    for k, v in {"floor": 0.01, "gain": 0.98, "knee": 0.05, "softness": 0.08}.items():
        assert abs(r.params[k] - v) < 1e-4, k


def test_montecarlo_fit_recovers_the_spreads():
    rng = np.random.default_rng(1)
    nominal = MultiplierModel(G=1.5, u=1.0)
    n = 200
    gain, offset = rng.normal(0, 0.02, n), rng.normal(0, 0.01, n)
    x, w = np.meshgrid(np.linspace(-1.5, 1.5, 7), np.linspace(-1, 1, 5))
    x, w = np.tile(x.ravel(), n), np.tile(w.ravel(), n)
    inst = np.repeat(np.arange(n), 35)
    y = (1 + gain[inst]) * nominal(x, w) + offset[inst]
    frame = pd.DataFrame({"instance": inst.astype(str), "x": x, "w": w, "y": y})
    mc = fit_montecarlo(_ds(frame, analysis="montecarlo"), nominal)
    assert mc["gain_sigma"] == pytest.approx(gain.std(ddof=1), rel=1e-6)
    assert mc["offset_sigma"] == pytest.approx(offset.std(ddof=1), rel=1e-6)
    assert mc["equivalent_offset_sigma"] == pytest.approx(offset.std(ddof=1), rel=0.02)
    assert mc["residual_rms_after"] < 1e-9


def test_nonidealities_from_the_fits(fitted):
    nl, fan = fitted.nonidealities, fitted.fan_in
    assert fan == fan_ins("digits") == {"conv2d": 36, "linear": 36}
    assert nl.conv2d_input_clip == 1.5 and nl.conv2d_weight_range == 1.0
    # the shipped cell: the table follows the data 2.6x closer than the degree-7 polynomial
    assert fitted.mapping["transfer"]["chosen"] == "table"
    assert len(nl.conv2d_input_table) == 257 and nl.conv2d_input_nonlin is None
    assert nl.linear_input_table == nl.conv2d_input_table
    assert nl.linear_weight_table == nl.conv2d_weight_table
    sigma = fitted.noise["multiplier"]["sigma"]
    assert nl.conv2d_out_noise == pytest.approx(math.sqrt(36) * sigma)
    assert fitted.noise["multiplier"]["band_hz"] == [1e3, 1e7]
    eq = fitted.mismatch["equivalent_offset_sigma"]
    assert nl.linear_offset_mismatch == pytest.approx(6 * eq)
    assert 0.002 < nl.conv2d_gain_mismatch < 0.05
    assert "floor" in fitted.fits["relu"].undetermined  # 0.00017 +- 0.00025: written as 0
    assert nl.relu_cutoff is None and 0 < nl.relu_out_noise < 0.01
    assert nl.saturation == "hard" and nl.conv2d_out_saturation is None  # ideal readout
    poly = characterize(read_all(example_files()), transfer="polynomial").nonidealities
    coeffs = np.array(poly.conv2d_input_nonlin)  # the polynomial follows the fitted transfer
    assert len(coeffs) == 8 and poly.conv2d_input_table is None
    xs = np.linspace(-1.5, 1.5, 101)
    model = fitted.fits["multiplier"].model
    assert np.abs(np.polynomial.polynomial.polyval(xs, coeffs) - model.input(xs)).max() < 2e-3
    g = np.interp(xs, np.linspace(-1.5, 1.5, 257), nl.conv2d_input_table)
    f = np.interp(0.75, np.linspace(-1, 1, 129), nl.conv2d_weight_table)
    assert np.abs(f * g - model(xs, 0.75)).max() < 2e-3  # the tables: the same product
    lacking = {d["quantity"] for d in fitted.lacking}
    assert lacking == {"systematic multiplier offset b"}  # the twin has fields for the rest


def test_proposed_fields_carry_the_full_models(fitted):
    import torch

    from aanntwin.layers import AnalogReLU

    nl, m, r = fitted.nonidealities, fitted.fits["multiplier"].model, fitted.fits["relu"]
    poly = characterize(read_all(example_files()), transfer="polynomial").nonidealities
    assert poly.linear_weight_nonlin == poly.conv2d_weight_nonlin == (0.0, 1.0, m.c2, m.c3)
    assert (nl.relu_cutoff, nl.relu_gain) == (None, r.params["gain"])  # floor undetermined: 0
    relu = AnalogReLU(nl.relu_cutoff, gain=nl.relu_gain, threshold=nl.relu_threshold,
                      softness=nl.relu_softness)  # fmt: skip
    x = np.linspace(-1, 2, 61)
    floor = r.params["floor"]
    assert np.allclose(relu.core(torch.from_numpy(x)).numpy(), r.model(x) - floor, atol=1e-9)
    assert fitted.fidelity["twin"]["rms_pct_fs"] < 0.1  # through the layer, not emulated


def test_fidelity_on_committed_heldout_conditions(fitted):
    fid = fitted.fidelity
    assert fid["conditions"] == 200 and fid["inputs"] == 8
    assert fid["twin"]["rms_pct_fs"] <= 1.0  # acceptance: <= 1 % of full scale
    assert fid["twin"]["rms_pct_fs"] < 0.1 and fid["twin"]["max_pct_fs"] < 0.3
    assert fid["fit"]["rms_pct_fs"] <= 1.0
    # the twin as written is as close as its fitted cells summed (and within 2x of the cells)
    assert fid["twin"]["rms_pct_fs"] <= 2 * fid["fit"]["rms_pct_fs"]
    cell = fitted.as_written["multiplier"]
    assert cell["rms_pct_fs"] <= 2 * min(f["rms_pct_fs"] for f in cell["fits"].values())
    assert fitted.warnings == []


def test_predict_mac_is_the_twins_stage():
    nl = Nonidealities(linear_input_clip=1.0, linear_input_nonlin=(0.0, 2.0, 0.0, -0.5))
    rng = np.random.default_rng(2)
    x, w = rng.uniform(-1.5, 1.5, (300, 4)), rng.uniform(-1, 1, (300, 4))
    xc = np.clip(x, -1, 1)
    expected = (w * (2 * xc - 0.5 * xc**3)).sum(1) + 0.1
    assert np.allclose(predict_mac(nl, x, w, offset=0.1), expected)
    assert np.allclose(predict_mac(nl, x, w, lambda v: 2 * v), 2 * (expected - 0.1))


def test_polynomial_fit_is_exact_for_a_polynomial():
    coeffs, rms, mx = polynomial_fit(lambda v: 1 + 2 * v - v**3, 1.5, 3)
    assert np.allclose(coeffs, (1, 2, 0, -1)) and mx < 1e-12


def _edit(tmp_path: Path, name: str, fn) -> Path:
    text = (EXAMPLE_FILES[("multiplier", "dc")]).read_text()
    out = tmp_path / name
    out.write_text(fn(text))
    return out


def _row(text: str, k: int, fn) -> str:
    """Apply ``fn`` to the cells of data row k (file line 10 + k)."""
    lines = text.splitlines()
    assert lines[8] == "x,w,y"  # 8 header lines, then the column names
    lines[9 + k] = ",".join(fn(lines[9 + k].split(",")))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "name, edit, message",
    [
        ("nan.csv", lambda t: _row(t, 1, lambda c: [c[0], c[1], "nan"]),
         r"nan\.csv, line 11, column 'y': not a finite number"),
        ("text.csv", lambda t: _row(t, 1, lambda c: [c[0], "oops", c[2]]),
         r"text\.csv, line 11, column 'w': not a finite number \('oops'\)"),
        ("nocol.csv", lambda t: re.sub(r"^x,w,y$", "x,weight,y", t, flags=re.M),
         r"nocol\.csv: multiplier dc data has no column 'w'"),
        ("order.csv", lambda t: _row(t, 1, lambda c: ["-1.5", c[1], c[2]]),
         r"order\.csv, line 11, column 'x': the x sweep is not monotonic"),
        ("back.csv", lambda t: _row(t, 30, lambda c: ["-2", c[1], c[2]]),
         r"back\.csv, line 40, column 'x': the x sweep is not monotonic"),
        ("fs.csv", lambda t: re.sub(r"^# y_full_scale.*\n", "", t, flags=re.M),
         r"fs\.csv: header has no 'y_full_scale'"),
        ("few.csv", lambda t: "\n".join(t.splitlines()[:12]),
         r"few\.csv: multiplier dc has 3 row\(s\); at least 6"),
        ("circ.csv", lambda t: t.replace("# circuit: multiplier", "# circuit: adder"),
         r"circ\.csv, line 10, column 'circuit': unknown circuit/analysis 'adder dc'"),
    ],
)  # fmt: skip
def test_bad_data_names_file_line_and_column(tmp_path, name, edit, message):
    path = _edit(tmp_path, name, edit)
    with pytest.raises(DataError, match=message):
        read_csv(path)


def test_noise_band_must_be_one(tmp_path):
    text = EXAMPLE_FILES[("multiplier", "noise")].read_text().splitlines()
    text[-1] = re.sub(r",1e\+07$", ",1e+06", text[-1])
    (tmp_path / "n.csv").write_text("\n".join(text) + "\n")
    where = rf"n\.csv, line {len(text)}, column 'f_low_hz': the band"
    with pytest.raises(DataError, match=where):
        read_csv(tmp_path / "n.csv")


def test_long_format_and_inferred_analysis(tmp_path):
    rows = ["circuit,x,w,y"]
    rows += [f"multiplier,{x:g},{w:g},{x * w:g}" for w in (-1, 0, 1) for x in (-1, -0.5, 0, 0.5, 1)]
    rows += [f"relu,{x:g},,{max(x, 0):g}" for x in np.linspace(-1, 1, 9)]
    path = tmp_path / "long.csv"
    path.write_text(HEADER + "# x_full_scale.relu: 1e-05 A\n" + "\n".join(rows) + "\n")
    sets = {d.label: d for d in read_csv(path)}
    assert set(sets) == {"multiplier dc", "relu dc"}
    assert sets["relu dc"].full_scale("x") == (1e-05, "A")
    assert sets["multiplier dc"].full_scale("x") == (0.1, "V")
    mc = tmp_path / "mc.csv"
    mc.write_text(
        "# circuit: multiplier\n"
        + HEADER
        + "instance,x,w,y\n"
        + "\n".join(
            f"{i},{x:g},{w:g},{x * w:g}" for i in range(3) for w in (-1, 1) for x in (-1, 0, 1)
        )
    )
    assert [d.analysis for d in read_csv(mc)] == ["montecarlo"]


def test_chip_instances_alone_give_the_transfer_and_the_spreads(fitted):
    mc = read_all([EXAMPLE_FILES[("multiplier", "montecarlo")]])
    result = characterize(mc)  # no dc file: the transfer is fitted to all instances pooled
    pooled, nominal = result.fits["multiplier"].params, fitted.fits["multiplier"].params
    assert pooled["G"] * pooled["Xs"] == pytest.approx(nominal["G"] * nominal["Xs"], rel=0.02)
    assert result.nonidealities.conv2d_gain_mismatch > 0 and result.fidelity is None


def test_duplicate_data_is_refused():
    dc = EXAMPLE_FILES[("multiplier", "dc")]
    with pytest.raises(DataError, match="multiplier dc data also in"):
        read_all([dc, dc])


def test_the_data_source_and_the_tables_of_notebook_01(tmp_path):
    from aanntwin.characterization import flow, tables

    committed = flow.acquire(simulate_circuits=False)
    assert committed.source == flow.COMMITTED and committed.line() == "data: committed CSVs"
    given = flow.acquire([EXAMPLE_FILES[("relu", "dc")]], simulate_circuits=True)
    assert given.source == flow.CSV_FILES and len(given.tables) == 1
    assert len(tables.sources(committed.tables)) == len(example_files())
    result, paths = flow.fit_and_write(committed, "digits", tmp_path, plots=False)
    assert result.fan_in == fan_ins("digits") and flow.wrote(paths, tmp_path).startswith("wrote")
    res = tables.residuals(result)
    assert list(res["fit"]) == [
        "multiplier fit",
        "multiplier tabulated fit",
        "relu fit",
        "multiplier twin as written (table)",
        "relu twin as written",
    ]
    assert tables.parameters(paths["parameters"])["stderr"].map(type).eq(str).all()
    assert set(tables.headlines(result)) == {"fidelity_rms_pct_fs", "active_nonidealities"}


def test_cli_fits_csvs_and_training_uses_the_result(tmp_path, capsys):
    from aanntwin.cli import main

    out = tmp_path / "char"
    files = [str(p) for p in example_files()]
    assert _cli(["characterize", "--csv", *files, "--out", str(out), "--linear-fan-in", "100"]) == 0
    printed = capsys.readouterr().out
    mac = r"fidelity, twin as written \(MAC of 8, 200 held-out conditions\): RMS 0\.0\d\d % FS"
    assert re.search(mac, printed)
    assert re.search(r"multiplier twin as written \(table\): RMS 0\.0\d\d % FS", printed)
    for name in ("nonidealities.json", "fit_report.json", "fit_parameters.csv",
                 "fit_residuals.csv", "fidelity.csv", "plots/multiplier.png", "plots/relu.png",
                 "plots/montecarlo.png", "plots/fidelity.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    nl = load_nonidealities(str(out / "nonidealities.json"))
    assert nl.linear_out_noise == pytest.approx(10 * nl.conv2d_out_noise / 6)
    report = json.loads((out / "fit_report.json").read_text())
    assert report["fidelity"]["twin"]["rms_pct_fs"] <= 1.0
    assert len(report["fits"]["multiplier"]["per_weight"]) == 17
    params = pd.read_csv(out / "fit_parameters.csv")
    assert {"G", "Xs", "softness", "noise_sigma", "gain_sigma"} <= set(params["parameter"])
    why = dict(zip(params["parameter"], params["undetermined"].fillna(""), strict=True))
    assert why["G"] == "" and "50%" in why["c2"]  # c2 is zero within its error (symmetric cell)
    argv = ["train", "--dataset", "digits", "--epochs", "2", "--nonidealities",
            str(out / "nonidealities.json"), "--out", str(tmp_path / "run"), "--no-progress",
            "--no-cache"]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["nonidealities"]["conv2d_input_clip"] == 1.5


def test_cli_errors_are_one_line(tmp_path):
    with pytest.raises(DataError, match=r"missing\.csv: cannot read"):
        _cli(["characterize", "--csv", str(tmp_path / "missing.csv"), "--out", str(tmp_path)])
    noise_only = [str(EXAMPLE_FILES[("relu", "noise")])]
    out = tmp_path / "o"
    assert _cli(["characterize", "--csv", *noise_only, "--out", str(out), "--no-plots"]) == 0
    assert load_nonidealities(str(out / "nonidealities.json")).relu_out_noise > 0
    with pytest.raises(AanntwinError, match="--model-card"):
        _cli(["characterize", "--simulate", "--model-card", "nope.lib", "--out", str(out)])
    with pytest.raises(SystemExit):
        _cli(["characterize", "--out", str(out)])  # neither --simulate nor --csv


def test_write_outputs_without_plots(tmp_path, fitted):
    paths = write_outputs(fitted, tmp_path, plots=False)
    assert not any(k.startswith("plot") for k in paths)


def test_figures_for_the_notebook_are_labelled_and_leave_no_pyplot_figure(tmp_path, fitted):
    import matplotlib.pyplot as plt

    from aanntwin.characterization import plots as cp

    before = plt.get_fignums()
    figs = [cp.multiplier_figure(fitted), cp.relu_figure(fitted), cp.noise_figure(fitted),
            cp.montecarlo_figure(fitted), cp.fidelity_figure(fitted)]  # fmt: skip
    for fig in figs:
        for ax in fig.axes:
            assert ax.get_ylabel() or ax.get_xlabel(), ax.get_title()
    noise_axes = figs[2].axes
    assert len(noise_axes) == 2 and "1 kHz..10 MHz" in noise_axes[0].get_title()
    assert plt.get_fignums() == before
