"""Characterization plots a designer reads (physical units, the twin as written, every weight,
noise) and the comparison of two characterizations (issue 13 item 5)."""

import numpy as np
import pytest

from aanntwin.characterization import compare as cmp
from aanntwin.characterization import plots as cp
from aanntwin.characterization.circuits import DATA_DIR, example_files
from aanntwin.characterization.curves import read_all
from aanntwin.characterization.fidelity import relu_curve, stage_curves
from aanntwin.characterization.pipeline import characterize, write_outputs
from aanntwin.characterization.plots_axes import Scale, eng, quantity, scales
from aanntwin.errors import AanntwinError


@pytest.fixture(scope="module")
def gilbert():
    return characterize(read_all(example_files()))


@pytest.fixture(scope="module")
def subthreshold():
    return characterize(read_all(example_files("subthreshold")))


def _gid(ax, prefix):
    return [ln for ln in ax.lines if (ln.get_gid() or "").startswith(prefix)]


def _secondary_labels(ax):
    return [c.get_xlabel() + c.get_ylabel() for c in ax.child_axes]


def test_engineering_units_and_the_full_scales_of_the_csv_headers(gilbert):
    assert eng(1e-5, "A") == (pytest.approx(1e6), "uA")
    assert eng(0.1, "V") == (pytest.approx(1e3), "mV") and eng(0.0, "V") == (1.0, "V")
    assert quantity(1.243279e-5, "A") == "12.4 uA" and quantity(1e7, "Hz") == "10 MHz"
    s = scales(gilbert, "multiplier")
    assert (s["x"].full_scale, s["x"].unit) == (pytest.approx(0.1), "V")
    assert (s["w"].text(), s["y"].text(), s["y"].display()[1]) == ("200 mV", "10 uA", "uA")
    assert scales(gilbert, "relu")["x"].unit == "A"
    bare = Scale("y")  # data without a full scale stays normalized
    assert not bare.known and bare.display() == (1.0, "y, normalized") and bare.text(0.5) == "0.5 y"


def test_multiplier_figure_draws_the_twin_as_written_for_every_weight_in_physical_units(gilbert):
    fig = cp.multiplier_figure(gilbert)
    ax, rx = fig.axes[:2]
    twins = _gid(ax, "twin")
    assert len(twins) == 17 == gilbert.fits["multiplier"].data["w"].nunique()  # was 9 of 17
    assert "uA" in ax.get_ylabel() and "mV" in rx.get_xlabel()
    assert any("normalized (1 = 100 mV)" in t for t in _secondary_labels(ax))
    assert "% of max |y| of the data = 12.4 uA" in rx.get_ylabel()  # one full scale, stated
    # the lines are the written twin (its own layer), not the fit: check the w = 1 line
    d = gilbert.fits["multiplier"].data.assign(twin=cp.multiplier_prediction(gilbert))
    top = d[d["w"] == d["w"].max()].sort_values("x")
    line = next(ln for ln in twins if ln.get_gid() == f"twin w={top['w'].iloc[0]:g}")
    np.testing.assert_allclose(line.get_xdata(), top["x"] * 100.0)  # mV
    np.testing.assert_allclose(line.get_ydata(), top["twin"] * 10.0)  # uA
    assert "twin as written (table" in ax.get_title()
    assert len(fig.axes) == 3 and "weight w (mV)" in fig.axes[2].get_ylabel()  # the colorbar


def test_transfers_figure_draws_the_written_stage_curves_against_the_separable_samples(gilbert):
    fig = cp.transfers_figure(gilbert)
    gx, fx = fig.axes[0], fig.axes[1]
    (g_line,) = _gid(gx, "twin")
    x = g_line.get_xdata() / 100.0  # mV -> normalized
    g, _ = stage_curves(gilbert.nonidealities, x, np.zeros(1))
    np.testing.assert_allclose(g_line.get_ydata(), g * 10.0)
    dots = [ln for ln in gx.lines if ln.get_label() == "separable fit"]
    np.testing.assert_allclose(dots[0].get_ydata(), gilbert.separable.g * 10.0)
    assert "uA" in gx.get_ylabel() and "mV" in fx.get_ylabel()


def test_relu_figure_draws_the_written_soft_relu_not_max_cutoff_x(gilbert):
    fig = cp.relu_figure(gilbert)
    ax, rx = fig.axes[:2]
    (twin,) = _gid(ax, "twin")
    x = twin.get_xdata() / 10.0  # uA -> normalized
    np.testing.assert_allclose(twin.get_ydata(), 10.0 * relu_curve(gilbert.nonidealities, x))
    cutoff = gilbert.nonidealities.relu_cutoff or 0.0  # None: the floor is 0
    assert np.max(np.abs(twin.get_ydata() / 10.0 - np.maximum(cutoff, x))) > 1e-3
    assert "uA" in ax.get_ylabel() and "uA" in rx.get_xlabel()
    assert "% of max |y| of the data = 20.2 uA" in rx.get_ylabel()


def test_noise_fidelity_and_montecarlo_figures_in_physical_units(gilbert):
    noise = cp.noise_figure(gilbert)
    m, r = noise.axes
    assert "nA" in m.get_ylabel() and "mV" in m.get_xlabel() and "1 kHz..10 MHz" in m.get_title()
    (twin,) = _gid(m, "twin")
    sigma = gilbert.noise["multiplier"]["sigma"]
    assert twin.get_ydata()[0] == pytest.approx(sigma * 1e4)  # y -> nA (1 = 10 uA)
    assert len(m.lines) == 4  # three weights and the twin's sigma
    fid = cp.fidelity_figure(gilbert)
    assert "uA" in fid.axes[0].get_xlabel() and "= 99.5 uA" in fid.axes[1].get_xlabel()
    mc = cp.montecarlo_figure(gilbert)
    assert [a.get_xlabel() for a in mc.axes] == ["gain error (%)", "output offset (nA)",
                                                "input offset (mV)", "weight offset (mV)"]  # fmt: skip


def test_write_outputs_writes_the_noise_and_transfer_plots(tmp_path, gilbert):
    paths = write_outputs(gilbert, tmp_path)
    for name in ("multiplier", "transfers", "relu", "noise", "montecarlo", "fidelity"):
        assert paths[f"plot_{name}"] == tmp_path / "plots" / f"{name}.png"
        assert paths[f"plot_{name}"].stat().st_size > 10_000, name


def test_compare_two_topologies_side_by_side(gilbert, subthreshold):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    c = cmp.compare(gilbert, subthreshold, ("gilbert", "subthreshold"))
    t = c.table.set_index("quantity")
    g = t.loc["multiplier G"]
    assert g["subthreshold / gilbert"] == pytest.approx(g["subthreshold"] / g["gilbert"])
    assert g["gilbert stderr"] > 0 and g["unit"] == "y/(x w)"
    assert t.loc["multiplier x", "gilbert"] == pytest.approx(0.1)
    assert t.loc["multiplier w", "subthreshold"] == pytest.approx(0.08)
    assert {"noise", "mismatch", "twin as written", "MAC fidelity"} <= set(c.table["group"])
    assert t.loc["multiplier transfer", "gilbert"] == "table"
    assert np.isnan(t.loc["multiplier transfer", "subthreshold / gilbert"])
    assert c.differing == ["multiplier x: 100 mV vs 120 mV", "multiplier w: 200 mV vs 80 mV"]
    title = c.figure.get_suptitle()
    assert "full scales differ" in title and "100 mV vs 120 mV" in title
    g_ax, f_ax, r_ax, _ = c.figure.axes
    assert [len(_gid(a, "twin")) for a in (g_ax, f_ax, r_ax)] == [2, 2, 2]
    assert "mV" in g_ax.get_xlabel() and "uA" in g_ax.get_ylabel() and "uA" in r_ax.get_xlabel()
    # subthreshold's x full scale is 120 mV and its clip 1.5: its input curve spans +-180 mV
    assert np.max(_gid(g_ax, "twin subthreshold")[0].get_xdata()) == pytest.approx(180.0)
    assert plt.get_fignums() == before


def test_compare_with_itself_and_acquiring_the_second(gilbert):
    same = cmp.compare(gilbert, gilbert)
    assert same.differing == [] and "same full scales" in same.figure.get_suptitle()
    ratios = same.table.iloc[:, -2].dropna()
    assert len(ratios) > 20 and np.allclose(ratios, 1.0)
    assert cmp.against(gilbert, None) is None
    with pytest.raises(AanntwinError, match="topology name .*gilbert, subthreshold"):
        cmp.second("nope")
    name, other = cmp.second(DATA_DIR / "subthreshold", gilbert.fan_in)  # a folder of CSVs
    assert name == "subthreshold" and other.fan_in == gilbert.fan_in and "relu" not in other.fits
    c = cmp.against(gilbert, "subthreshold")
    assert c.names == ("this run", "subthreshold") and c.table.shape[0] > 40
