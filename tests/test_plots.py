"""Report figures: each returns a Figure whose axes are all labelled; nothing leaks into pyplot."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from aanntwin.config import Nonidealities
from aanntwin.report import notebook as nb
from aanntwin.report import plots
from aanntwin.report.explorer import TAPS, range_markers

RNG = np.random.default_rng(0)
NL = Nonidealities(
    input_noise=0.1,
    conv2d_input_clip=1.0,
    conv2d_input_nonlin=(0.0, 1.0, 0.1),
    conv2d_out_saturation=3.0,
    conv2d_gain_mismatch=0.02,
    relu_cutoff=-0.1,
    linear_input_clip=2.0,
    linear_out_full_scale=4.0,
    linear_out_bits=6,
)


def labelled(fig: Figure) -> list:
    """The figure's plot axes (colorbars excluded), after checking every axis is labelled."""
    assert isinstance(fig, Figure)
    main = []
    for ax in fig.get_axes():
        if hasattr(ax, "_colorbar"):  # a colorbar carries one label
            assert ax.get_ylabel() or ax.get_xlabel()
            continue
        assert ax.get_xlabel(), ax.get_title()
        assert ax.get_ylabel(), ax.get_title()
        main.append(ax)
    assert main
    return main


def acts() -> dict[str, np.ndarray]:
    return {tap: RNG.normal(size=200) for tap in TAPS}


def quant_frame() -> pd.DataFrame:
    rows = []
    for layer in ("conv", "linear"):
        for s in (0.5, 1.0, 2.0):
            base = {"layer": layer, "param": "weight", "ref_sigma": s, "ref": 0.3 * s, "n": 10}
            rows.append({**base, "bits": None, "zero_level": None, "mode": "clipped",
                         "accuracy": 0.5 + 0.1 * s, "loss": 1.0})  # fmt: skip
            for b in range(3):
                for z in (True, False):
                    rows.append({**base, "bits": b, "zero_level": z, "mode": "quantized",
                                 "accuracy": 0.3 + 0.1 * b, "loss": 1.0})  # fmt: skip
    return pd.DataFrame(rows)


def noise_frame() -> pd.DataFrame:
    rows = []
    for kind in ("input", "relu_out"):
        for train in (None, 0.1):
            for level in (0.0, 0.1, 0.2, 0.3):
                drop = level * (0.05 if kind == "input" else 0.2) * (0.5 if train else 1.0)
                rows.append({"kind": kind, "train_level": train, "test_level": level,
                             "accuracy_mean": 0.9 - drop, "accuracy_std": 0.01})  # fmt: skip
    return pd.DataFrame(rows)


def test_learning_curves():
    hist = [{"epoch": e, "test_accuracy": 0.5 + 0.1 * e, "train_loss": 1 / e} for e in (1, 2, 3)]
    no_test = [{**h, "test_accuracy": None} for h in hist]
    (acc, loss) = labelled(plots.learning_curves({"ideal": hist, "hw": no_test}))
    assert "%" in acc.get_ylabel() and acc.get_xlabel() == "epoch"
    assert len(acc.lines) == 2 and len(loss.lines) == 2


def test_confusion_matrix_single_and_several():
    cm = np.eye(3, dtype=int) * 5
    cm[0, 1] = 2
    labelled(plots.confusion_matrix(cm))
    axes = labelled(plots.confusion_matrix({"a": cm, "b": cm.T}))
    assert [ax.get_title() for ax in axes] == ["a", "b"]


def test_activation_histograms_mark_the_ranges():
    markers = range_markers(NL)
    assert ("conv input clip", 1.0) in markers["input"] and ("ReLU cutoff", -0.1) in markers[
        "relu_out"
    ]
    axes = labelled(plots.activation_histograms(acts(), markers))
    assert len(axes) == len(TAPS)
    assert all("(V)" in ax.get_xlabel() for ax in axes)
    clip_lines = [ln for ln in axes[0].lines if ln.get_xdata()[0] in (-1.0, 1.0)]
    assert len(clip_lines) == 2
    overlay = labelled(plots.activation_histograms({"ideal": acts(), "hw": acts()}, markers))
    assert len(overlay) == len(TAPS)


def test_weight_histograms_and_quantization_figures():
    w = {"conv": RNG.normal(size=144), "linear": RNG.normal(size=360)}
    axes = labelled(plots.weight_histograms(w, {"conv": 0.5, "linear": None}))
    assert len(axes) == 2
    df = quant_frame()
    heat = labelled(plots.quantization_heatmap(df))
    assert [ax.get_title().split()[0] for ax in heat] == ["conv", "linear"]
    # a CSV read back has the zero_level column as strings / objects: same picture
    csv_like = df.assign(zero_level=df["zero_level"].map(lambda z: "" if z is None else str(z)))
    assert len(labelled(plots.quantization_heatmap(csv_like))) == 2
    (ax,) = labelled(plots.clipped_curves(df))
    assert len(ax.lines) == 2


def test_tolerance_curves_and_levels():
    df = noise_frame()
    axes = labelled(plots.tolerance_curves(df, reference=0.9))
    assert [ax.get_title() for ax in axes] == ["input", "relu_out"]
    assert all("(V)" in ax.get_xlabel() and "(%)" in ax.get_ylabel() for ax in axes)
    tol = nb.tolerable_levels(df, max_drop=0.01).set_index("kind")
    # input: drop 0.005/0.1 V (ideal) -> 0.2 V ok, 0.3 V not; relu_out: 0.02/0.1 V -> only 0
    assert tol.loc["input", "tolerable level (V), trained at none"] == pytest.approx(0.2)
    assert tol.loc["input", "tolerable level (V), trained at 0.1 V"] == pytest.approx(0.3)
    assert tol.loc["relu_out", "tolerable level (V), trained at none"] == 0.0
    assert tol.loc["relu_out", "ideal accuracy (%)"] == pytest.approx(90.0)


def test_nonidealities_table_units():
    table = nb.nonidealities_table(NL).set_index("field")
    assert table.loc["input_noise", "unit"] == "V" and table.loc["input_bits", "value"] == "off"
    assert table.loc["linear_out_bits", "unit"] == "bits"
    assert "Gaussian noise" in table.loc["input_noise", "meaning"]


def test_yield_histogram_marks_the_threshold_and_states_the_yield():
    from aanntwin.studies.specs import YieldResult

    accs = [0.95, 0.96, 0.97, 0.93, 0.965]
    res = YieldResult(5, 4, 0.8, 0.38, 0.96, 0.95, 0.94, accs)
    (ax,) = labelled(plots.yield_histogram(accs, 0.94, res))
    assert "%" in ax.get_xlabel() and "count" in ax.get_ylabel()
    assert "yield 80.0 %" in ax.get_title() and "38.0..96.0 %" in ax.get_title()
    assert any(line.get_xdata()[0] == pytest.approx(94.0) for line in ax.lines)
    (ax,) = labelled(plots.yield_histogram([0.5], 0.9))  # no result: still a figure
    assert "1 chip" in ax.get_title()


def test_explorer_figure_and_no_pyplot_leak():
    before = plt.get_fignums()
    fig = plots.explorer_figure(np.eye(10) * 3, acts(), range_markers(NL), "title")
    axes = labelled(fig)
    assert len(axes) == 1 + len(TAPS)
    assert nb.png_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == before


def test_headlines_are_recorded_and_tabled(tmp_path):
    ctx = nb.setup({"out_dir": str(tmp_path)})
    table = nb.headlines(ctx, {"yield": (95.0, "%"), "tolerable_input_noise": (None, "V")})
    assert list(table.columns) == ["figure", "value", "identifier"]
    assert list(table["identifier"]) == ["yield", "tolerable_input_noise"]
    rows = table.set_index("identifier")
    assert (
        rows.loc["yield", "value"] == "95 %" and rows.loc["tolerable_input_noise", "value"] == "n/a"
    )
    assert rows.loc["tolerable_input_noise", "figure"] != "tolerable_input_noise"  # readable
    assert nb.load_headlines(tmp_path)["yield"] == {"value": 95.0, "unit": "%"}


def test_record_headlines(tmp_path):
    nb.record(tmp_path, "ideal_accuracy", np.float64(91.5), "%")
    nb.record(tmp_path, "recommended_bits_conv", 3, "bits")
    nb.record(tmp_path, "tolerable_input_noise", math.nan, "V")
    assert nb.load_headlines(tmp_path) == {
        "ideal_accuracy": {"value": 91.5, "unit": "%"},
        "recommended_bits_conv": {"value": 3, "unit": "bits"},
        "tolerable_input_noise": {"value": None, "unit": "V"},
    }
