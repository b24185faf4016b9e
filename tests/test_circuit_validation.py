"""A trained run simulated at transistor level against its twins (``validate-circuit``).

Netlist generation and the unit mapping run without ngspice. The simulations (a 5-image run
through the CLI, resume after an interruption, the bias and weight mapping through ngspice) are
skipped without ngspice, and fail when the environment variable CI is set (CI installs it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from aanntwin.characterization import spice
from aanntwin.characterization.circuits import MAC, RELU, topology
from aanntwin.circuit_validation.chips import offsets
from aanntwin.circuit_validation.compare import summarize
from aanntwin.circuit_validation.netlist import (
    CellBench,
    conv_index,
    mac_chunks,
    run_stage,
    stage_netlist,
)
from aanntwin.circuit_validation.run import ensure_characterization, full_scales
from aanntwin.circuit_validation.simulate import Circuit, check_geometry
from aanntwin.cli import main
from aanntwin.config import ModelParams
from aanntwin.errors import DataError
from aanntwin.model import Main

from .conftest import in_ci


def _need_ngspice() -> None:
    if shutil.which(os.environ.get("AANNTWIN_NGSPICE", "ngspice")) is None:
        message = "ngspice is not installed (apt-get install ngspice)"
        if in_ci(os.environ):
            pytest.fail(message + ": CI must run the simulator tests", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def bench() -> CellBench:
    return CellBench.from_mac(spice.Netlist.load(MAC))


# ------------------------------------------------------------------ without ngspice
def test_bench_takes_bias_lines_and_scales_from_the_mac_testbench(bench):
    assert bench.subckt == "gilbert"
    assert (bench.xfs, bench.wfs, bench.yfs) == (0.1, 0.2, pytest.approx(1e-5))
    assert "IREF" in bench.header and ".options" in bench.header
    assert not re.search(r"^(X|VX|VW|VSP|EY)\w*\s", bench.header, re.M | re.I)  # no cells
    sub = CellBench.from_mac(spice.Netlist.load(topology("subthreshold").mac))
    assert sub.subckt == "gilbert_sub"
    assert [d.name for d in bench.cell_devices()] == [f"m.x0_0.m{i}" for i in range(1, 8)]


def test_conv_index_matches_the_twins_unfold():
    """Cell n of MAC m reads the pixel torch's unfold puts there (padding: -1)."""
    shape, k, s, p, ch = (2, 8, 8), 6, 2, 1, 3
    index, side = conv_index(shape, k, s, p, ch)
    assert side == (3, 3) and index.shape == (ch * 9, 2 * k * k)
    pixels = torch.arange(1, 1 + 2 * 64, dtype=torch.float64).reshape(1, *shape)
    cols = F.unfold(pixels, k, padding=p, stride=s)[0].T.numpy()  # (positions, N), 0 = pad
    want = np.where(cols > 0, cols - 1, -1).astype(int)
    assert (index[:9] == want).all() and (index[9:18] == want).all()


def test_netlist_maps_twin_units_to_volts_and_amperes(bench):
    x = np.array([[0.0, 0.5], [1.0, 0.25]])  # 2 images, 2 inputs
    index = np.array([[0, 1, -1]])
    w = np.array([[0.5, -2.0, 1.0]])  # -2 is beyond the weight range: clipped to -1
    text = stage_netlist(bench, x, index, w, np.array([0.3]), weight_range=1.0)
    assert "VXPZ xpz 0 DC {XCM}" in text  # padding: a real 0 V differential input
    assert "EXP0 xp0 0 VOL={XCM + 0.05*v(x0)}" in text  # x * XFS / 2 on each side
    assert re.search(r"BX0 x0 0 V = pwl\(v\(vcv_sel\),\s*\+ 0,0, 1,1\)", text)
    assert "VWP0_0 wp0_0 0 DC {WCM + 0.05}" in text  # w * WFS / 2
    assert "VWN0_1 wn0_1 0 DC {WCM - -0.1}" in text  # clipped to -1
    assert "IB0 sp0 0 DC 3e-06" in text  # bias b * YFS drawn from the positive node
    assert text.count(" gilbert\n") == 3


def test_full_scales_and_scale_check(bench):
    report = {"fits": {"multiplier": {"full_scale": 1.25}, "relu": {"full_scale": 2.0}}}

    class G:  # the geometry's fan-ins
        class geometry:  # noqa: N801
            stages = (type("S", (), {"fan_in": 36})(), type("S", (), {"fan_in": 36})())

    assert full_scales(report, G()) == {"conv": 45.0, "relu": 2.0, "linear": 45.0}
    with pytest.raises(DataError, match="full_scale"):
        full_scales({"fits": {}}, G())
    circuit = Circuit(bench, spice.Netlist.load(RELU))
    circuit.check({"multiplier dc": {"x": "100 mV", "y": "10 uA"}, "relu dc": {"x": "10 uA"}})
    with pytest.raises(DataError, match="x_full_scale is 0.2 V"):
        circuit.check({"multiplier dc": {"x": "0.2 V"}})


def test_unsupported_geometry_and_missing_characterization_are_named(tmp_path):
    hidden = Main(ModelParams(hidden=(8,)), (1, 8, 8))
    with pytest.raises(DataError, match="hidden stages"):
        check_geometry(hidden)
    check_geometry(Main(ModelParams(), (1, 8, 8)))
    with pytest.raises(DataError, match="no nonidealities.json"):
        ensure_characterization(tmp_path, tmp_path, hidden, "gilbert")


def test_summary_counts_agreement_and_stage_errors():
    rows = []
    for image, (c, t) in enumerate([((1.0, 0.0), (0.9, 0.1)), ((0.0, 1.0), (0.6, 0.4))]):
        for u in range(2):
            rows.append({"image": image, "label": 0, "stage": "linear", "unit": u,
                         "circuit": c[u], "twin": t[u], "ideal": c[u], "twin_local": t[u],
                         "ideal_local": c[u]})  # fmt: skip
    s = summarize(pd.DataFrame(rows), {"linear": 10.0})
    assert s["twin"]["agreement"] == 1 and s["ideal"]["agreement"] == 2
    assert s["twin"]["disagreeing"][0]["image"] == 1
    assert s["twin"]["disagreeing"][0]["twin_margin"] == pytest.approx(0.2)
    e = np.array([0.1, 0.1, 0.6, 0.6])
    assert s["twin"]["stage_rms_pct_fs"]["linear"] == pytest.approx(10 * np.sqrt(np.mean(e**2)))
    assert s["accuracy"] == {"circuit": 0.5, "twin": 1.0, "ideal": 0.5}


def test_chip_offsets_are_pelgrom_draws_per_device_and_seeded(bench):
    lines = offsets(bench, 3, 4, 5.0, seed=7, stage="conv")
    assert len(lines) == 3 * 4 * 7 and lines[0].startswith("alter @m.x0_0.m1[delvto] = ")
    assert lines == offsets(bench, 3, 4, 5.0, seed=7, stage="conv")
    assert lines != offsets(bench, 3, 4, 5.0, seed=8, stage="conv")
    values = np.array([float(ln.rsplit("=", 1)[1]) for ln in offsets(bench, 40, 36, 5.0, 0, "c")])
    m1 = values.reshape(40, 36, 7)[:, :, 0]  # W = L = 1 um: sigma = 5 mV / sqrt(2)
    assert np.std(m1) == pytest.approx(5e-3 / np.sqrt(2), rel=0.05)


# ------------------------------------------------------------------ with ngspice
def test_stage_output_is_the_bias_with_zero_weights_and_scales_with_yfs(bench):
    """Zero weights: each MAC outputs its bias (the current source b * YFS, read back / YFS)."""
    _need_ngspice()
    x = np.array([[0.5, -0.5], [1.0, 0.0]])
    y, _ = run_stage(bench, x, np.array([[0, 1], [1, 0]]), np.zeros((2, 2)), np.array([0.7, -1.2]))
    assert np.allclose(y, [[0.7, -1.2], [0.7, -1.2]], atol=1e-6)
    # one cell at w = 1: the multiplier's own testbench gives the same output
    y1, _ = run_stage(bench, np.array([[1.0]]), np.array([[0]]), np.array([[1.0]]), None)
    ref = spice.dc_transfer(spice.Netlist.load(topology().multiplier), [1.0], [1.0])
    assert y1[0, 0] == pytest.approx(ref["y"].iloc[0], abs=1e-5)


def test_five_images_through_the_cli_then_resume(trained_run, tmp_path, capsys):
    _need_ngspice()
    run = trained_run()
    out = tmp_path / "cv"
    argv = ["validate-circuit", str(run.folder), "--images", "5", "--out", str(out),
            "--batch", "2"]  # fmt: skip
    assert main([*argv, "--chips", "1"]) == 0
    text = capsys.readouterr().out
    assert "characterized twin: class decisions agree on" in text and "ideal twin" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 5 and summary["twin"]["agreement"] >= 4
    chips = summary["chips"]
    assert chips["chips"] == 1 and len(chips["accuracy_spice"]) == 1
    assert 0 < chips["deviation_std"]["conv"]["circuit"] < 1  # mismatch moves the outputs
    assert len(pd.read_csv(out / "chips" / "chips.csv")) == 5 * (36 + 36 + 10)
    for stage in ("conv", "relu", "linear"):
        assert summary["twin"]["stage_rms_pct_fs"][stage] < 1.0
    full = pd.read_csv(out / "results.csv")
    assert len(full) == 5 * (36 + 36 + 10)
    assert set(full.columns) >= {"image", "stage", "unit", "circuit", "twin", "ideal"}
    # an interruption: the last batch torn mid-row -> it is simulated again, nothing else
    data = (out / "results.csv").read_bytes()
    (out / "results.csv").write_bytes(data[: len(data) - len(data) // 5 - 7])
    assert main(argv) == 0
    summary2 = json.loads((out / "summary.json").read_text())
    assert 0 < summary2["timing"]["images_simulated_now"] < 5
    again = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(again, full, check_exact=False, atol=1e-9)


def test_a_dataset_found_through_data_dir_is_simulated(mnist_dir, tmp_path, monkeypatch, capsys):
    """``validate-circuit`` (and notebook 06 under the workbook) loaded the run's dataset without
    its folder: on MNIST outside the cache it tried to download and failed."""
    _need_ngspice()
    monkeypatch.delenv("AANNTWIN_DATA_DIR", raising=False)
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"dataset": "mnist", "train": {"epochs": 1}}))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data-dir", str(mnist_dir), "--out", str(run),
                 "--no-progress", "--no-cache"]) == 0  # fmt: skip
    out = tmp_path / "cv"
    argv = ["validate-circuit", str(run), "--images", "2", "--batch", "2", "--out", str(out),
            "--data-dir", str(mnist_dir)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 2 and summary["twin"]["agreement"] >= 1


def test_a_large_stage_splits_into_netlists_covering_every_mac_once_in_order(bench):
    """A stage above ``max_cells`` runs as several netlists (an MNIST conv stage of 24,336 cells
    took 55 s in one); their MACs, in order, are the stage's, none twice, each within the size."""
    parts = mac_chunks(676, 36, 400)
    assert len(parts) > 1 and all(len(p) * 36 <= 400 for p in parts)
    assert [m for p in parts for m in p] == list(range(676))
    assert [len(p) for p in mac_chunks(10, 676, 400)] == [1] * 10  # a MAC is never cut
    assert mac_chunks(36, 36, None) == [range(36)] == mac_chunks(36, 36, 5000)
    # a part keeps the whole stage's names (chip alter lines address cells by them)
    text = stage_netlist(bench, np.ones((1, 2)), np.array([[0, 1]]), np.ones((1, 2)), None,
                         first=7)  # fmt: skip
    assert "VSP7 sp7 0 DC {VSUM}" in text and "X7_1 xp1 xn1 wp7_1 wn7_1 sp7 sn7 nbias" in text


def test_split_stage_simulates_as_the_whole_netlist_with_and_without_chip_offsets(bench):
    """Parts on a pool give the one-netlist outputs in MAC order, chip offsets included."""
    _need_ngspice()
    rng = np.random.default_rng(0)
    macs, cells = 6, 4
    x = rng.uniform(-1, 1, (3, 5))
    index = rng.integers(-1, 5, (macs, cells))
    w, b = rng.uniform(-1, 1, (macs, cells)), rng.uniform(-0.5, 0.5, macs)
    alter = offsets(bench, macs, cells, 20.0, seed=3, stage="conv")
    with ThreadPoolExecutor(2) as pool:
        for prelude in (None, alter):
            whole, _ = run_stage(bench, x, index, w, b, prelude=prelude, max_cells=None)
            split, _ = run_stage(bench, x, index, w, b, prelude=prelude, max_cells=8, pool=pool)
            assert split.shape == (3, macs)
            np.testing.assert_allclose(split, whole, rtol=0, atol=1e-5)
    nominal_y, _ = run_stage(bench, x, index, w, b, max_cells=8)
    assert (np.abs(split - nominal_y).min(axis=0) > 1e-4).all()  # offsets reached every MAC
