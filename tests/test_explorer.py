"""The explorer widget on a tiny trained digits model, and the notebook model orchestration."""

from __future__ import annotations

import pytest

from aanntwin.config import Nonidealities
from aanntwin.report import notebook as nb
from aanntwin.report.explorer import SLIDERS, Explorer
from aanntwin.runs import load_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tiny(tmp_path, digits):
    folder = nb.ensure_model(tmp_path / "out", "digits", epochs=1, seed=0)
    return folder, load_run(folder)[1], digits.subset(n_test=120)


def test_ensure_model_writes_a_trained_folder_once(tiny, tmp_path):
    folder, _, _ = tiny
    assert folder == (tmp_path / "out" / nb.IDEAL).resolve()
    metrics = nb.load_metrics(folder)
    assert len(metrics["history"]) == 1 and 0 <= metrics["test_accuracy"] <= 1
    stamp = (folder / "weights.safetensors").stat().st_mtime_ns
    assert nb.ensure_model(tmp_path / "out", "digits", epochs=1) == folder
    assert (folder / "weights.safetensors").stat().st_mtime_ns == stamp  # reused, not rewritten
    # quick caps the epochs at 2: a 12-epoch quick request is the 2-epoch model
    quick = nb.ensure_model(tmp_path / "out", "digits", epochs=12, name="q", quick=True)
    assert nb.load_metrics(quick)["epochs"] == nb.QUICK_EPOCHS


def test_explorer_sliders_label_and_image(tiny):
    _, model, data = tiny
    ex = Explorer(model, data, runs=2)
    assert list(ex.sliders) == [s.name for s in SLIDERS] and SLIDERS[0].name == "input_noise"
    first = ex.sliders["input_noise"]
    assert (first.value, first.max, first.step) == (0.0, 1.0, 0.05)
    assert first.continuous_update is False and "(V)" in first.description
    assert all(not s.continuous_update for s in ex.sliders.values())
    assert ex.nonidealities() == Nonidealities()
    text, image = ex.accuracy_label.value, ex.image.value
    assert "accuracy" in text and "%" in text and image[:8] == PNG
    first.value = 0.5
    assert ex.accuracy_label.value != text and "accuracy" in ex.accuracy_label.value
    assert ex.image.value != image and ex.image.value[:8] == PNG
    assert ex.nonidealities().input_noise == 0.5 and ex.result.runs == 2
    assert model.nonidealities == Nonidealities()  # the caller's model is left alone


def test_explorer_starts_from_a_base_and_draws_static_views(tiny):
    _, model, data = tiny
    base = Nonidealities(input_noise=0.1, conv2d_gain_mismatch=0.05)
    ex = Explorer(model, data, runs=1, base=base, chip_seed=3)
    assert ex.sliders["input_noise"].value == pytest.approx(0.1)
    assert ex.nonidealities().chip_seed == 3
    ex.sliders["conv2d_gain_mismatch"].value = 0.0  # 0 = off
    assert ex.nonidealities().conv2d_gain_mismatch is None
    fig = ex.figure(Nonidealities())
    assert len(fig.get_axes()) >= 5 and "ideal" in fig._suptitle.get_text()


def test_header_shows_configuration_seed_and_chip(tmp_path):
    params = dict(dataset="digits", epochs=12, seed=7, out_dir=str(tmp_path), quick=True,
                  chip_seed=5, runs=9)  # fmt: skip
    ctx = nb.setup(params)
    assert ctx.epochs == nb.QUICK_EPOCHS and ctx.runs() == 2 and ctx.nonidealities.chip_seed == 5
    assert ctx.nonidealities_path == nb.default_nonidealities_path()
    html = nb.header(ctx).data
    for text in ("digits", "seed", "chip instance", "7", "5", "input_noise = 0.1", "runs"):
        assert text in html, text


def test_quick_caps_live_in_one_place(tmp_path):
    from aanntwin.report import plans

    params = dict(dataset="digits", out_dir=str(tmp_path), quick=True, spec_runs=20,
                  chip_instances=100, epochs=12)  # fmt: skip
    quick, full = nb.setup(params), nb.setup({**params, "quick": False})
    assert quick.epochs == plans.QUICK_CAPS["epochs"] == nb.QUICK_EPOCHS and full.epochs == 12
    assert (quick.capped("spec_runs", 5), full.capped("spec_runs", 5)) == (6, 20)
    assert (quick.capped("chip_instances", 5), full.capped("chip_instances", 5)) == (20, 100)
    assert quick.capped("runs", 1) == 1 and full.runs() == 5
    assert len(plans.spec_kinds(True)) < len(plans.spec_kinds(False))
    sweep = nb.noise_sweep(quick)
    assert sweep.runs == 2 and sweep.test_levels == plans.noise_plan(True)["test_levels"]
