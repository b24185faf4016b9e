"""Multiplier topologies: the registry (``gilbert``, ``subthreshold``), the committed data of the
weak-inversion Gilbert cell (read, fitted, its saturating input and compressive weight), the
``--multiplier`` choice through the flow and the CLI, and a short ngspice run of the new netlists.

ngspice missing: the simulation test fails when the environment variable CI is set (CI installs
it), and is skipped elsewhere (as in tests/test_spice.py).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from aanntwin.characterization import spice
from aanntwin.characterization.circuits import (
    DATA_DIR,
    EXAMPLE_FILES,
    MAC,
    MULTIPLIER,
    MULTIPLIERS,
    example_files,
    topology,
    topology_files,
)
from aanntwin.characterization.curves import read_all
from aanntwin.characterization.flow import COMMITTED, acquire, ngspice_present
from aanntwin.characterization.pipeline import SimOptions, characterize, simulate
from aanntwin.cli import characterize as characterize_cli
from aanntwin.cli.common import Parser as _Parser
from aanntwin.errors import AanntwinError

SUB = "subthreshold"


@pytest.fixture(scope="module")
def sub_tables():
    return {(t.circuit, t.analysis): t for t in read_all(example_files(SUB))}


def test_registry_lookups():
    assert set(MULTIPLIERS) == {"gilbert", SUB}
    g = topology("gilbert")
    assert (g.multiplier, g.mac, g.data_dir) == (MULTIPLIER, MAC, DATA_DIR)
    assert example_files() == list(EXAMPLE_FILES.values()) == example_files("gilbert")
    s = topology(SUB)
    assert (
        s.multiplier.name == "multiplier_subthreshold.cir" and s.mac.name == "mac_subthreshold.cir"
    )
    assert s.data_dir == DATA_DIR / SUB
    files = topology_files(SUB)
    assert set(files) == set(EXAMPLE_FILES)
    for key, path in files.items():
        assert path.exists(), path
        # the ReLU is shared; the multiplier's and the MAC's files are the topology's own
        assert path.parent == (DATA_DIR if key[0] == "relu" else DATA_DIR / SUB)
        assert path.name == EXAMPLE_FILES[key].name


def test_unknown_topology_names_the_choices():
    for bad in ("gilbrt", "", None):
        with pytest.raises(
            AanntwinError, match=r"unknown multiplier topology.*gilbert, subthreshold"
        ):
            example_files(bad)  # type: ignore[arg-type]
    with pytest.raises(AanntwinError, match="gilbert, subthreshold"):
        topology("GILBERT")


def test_subthreshold_netlists_share_the_interface():
    mult = spice.Netlist.load(topology(SUB).multiplier)
    mac = spice.Netlist.load(topology(SUB).mac)
    for net in (mult, mac):
        assert {"XFS", "WFS", "YFS", "XCM", "WCM", "VSUM"} <= set(net.params)
    assert [d.name for d in mult.devices()] == [f"m.x1.m{i}" for i in range(1, 8)]
    assert len(mac.devices()) == 8 * 7
    for net in (mult, mac):  # every MOSFET carries AD/AS/PD/PS (BSIM3 warns per device otherwise)
        lines = [ln for p in (net.path, *map(type(net.path), net.included)) if p.suffix != ".lib"
                 for ln in p.read_text().splitlines() if ln[:1].upper() == "M"]  # fmt: skip
        assert lines and all(all(f"{k}=" in ln for k in ("AD", "AS", "PD", "PS")) for ln in lines)


def test_committed_subthreshold_data_reads_and_characterizes(sub_tables):
    assert set(sub_tables) == set(EXAMPLE_FILES)
    for (circuit, _), table in sub_tables.items():
        netlist = "relu.cir" if circuit == "relu" else f"{circuit}_subthreshold.cir"
        assert netlist in table.meta["source"], table.meta["source"]
    dc = sub_tables[("multiplier", "dc")]
    assert dc.full_scale("x") == (0.12, "V") and dc.full_scale("w") == (0.08, "V")
    result = characterize(read_all(example_files(SUB)))
    m = result.fits["multiplier"]
    assert 100 * m.rms / m.full_scale < 1.0  # tanh weight vs the cubic model: ~0.4 % FS
    assert m.params["Xs"] < 1.0  # the flat input saturation is seen by the fit
    assert result.fidelity is not None


def test_subthreshold_input_saturates_and_is_monotone(sub_tables):
    f = sub_tables[("multiplier", "dc")].frame
    curve = f[np.isclose(f["w"], 1.0)].sort_values("x")
    x, y = curve["x"].to_numpy(), curve["y"].to_numpy()
    assert np.all(np.diff(y) > 0)  # monotone over the whole |x| <= 1.5
    at = dict(zip(np.round(x, 6), y, strict=True))
    assert 1.0 < at[1.5] / at[1.0] < 1.08  # flat saturation inside the characterized range
    assert 0.5 < at[1.0] < 2.0  # y of order 1 at x = w = 1
    # the weight transfer is visibly compressive (tanh-like): f(0.5) / f(1) well above 0.5
    half = f[np.isclose(f["w"], 0.5) & np.isclose(f["x"], 1.0)]["y"].item()
    assert half / at[1.0] > 0.55


def test_subthreshold_cell_is_separable(sub_tables):
    """Translinear: y(x, w) / y(x, 1) depends on w only (away from x = 0)."""
    f = sub_tables[("multiplier", "dc")].frame
    grid = f.pivot(index="x", columns="w", values="y")
    grid = grid[np.abs(grid.index) >= 0.25]
    ratio = grid.div(grid[1.0], axis=0)
    assert float((ratio.max() - ratio.min()).max()) < 0.01


def test_committed_data_follow_the_chosen_topology():
    tables = acquire(None, False, options=SimOptions(multiplier=SUB))
    assert tables.source == COMMITTED
    sources = {(t.circuit, t.analysis): t.meta["source"] for t in tables.tables}
    assert "multiplier_subthreshold.cir" in sources[("multiplier", "dc")]
    default = {(t.circuit, t.analysis): t.meta["source"] for t in acquire(None, False).tables}
    assert "/multiplier.cir" in default[("multiplier", "dc")]


def _parse(argv: list[str]):
    parser = _Parser(prog="aanntwin")
    characterize_cli.add_parser(parser.add_subparsers(dest="command", parser_class=_Parser))
    return parser.parse_args(argv)


def test_cli_multiplier_choice(capsys):
    assert _parse(["characterize", "--simulate", "--out", "o"]).multiplier == "gilbert"
    assert (
        _parse(["characterize", "--simulate", "--multiplier", SUB, "--out", "o"]).multiplier == SUB
    )
    with pytest.raises(SystemExit):
        _parse(["characterize", "--simulate", "--multiplier", "bjt", "--out", "o"])
    assert "gilbert" in capsys.readouterr().err


def test_simulate_the_subthreshold_topology(tmp_path):
    if not ngspice_present():
        message = "ngspice is not installed (apt-get install ngspice)"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the simulator tests", pytrace=False)
        pytest.skip(message)
    tables, seconds = simulate(SimOptions(multiplier=SUB, instances=3, heldout=8), tmp_path)
    assert {(t.circuit, t.analysis) for t in tables} == set(EXAMPLE_FILES) and len(seconds) == 6
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in EXAMPLE_FILES.values()}
    by = {(t.circuit, t.analysis): t for t in tables}
    assert "mac_subthreshold.cir" in by[("mac", "dc")].meta["source"]
    assert by[("mac", "dc")].frame.shape[0] == 8
    # the simulated sweep reproduces the committed data (same netlist, same generic card)
    ref = read_all([topology_files(SUB)[("multiplier", "dc")]])[0].frame
    np.testing.assert_allclose(by[("multiplier", "dc")].frame["y"], ref["y"], atol=2e-5)
