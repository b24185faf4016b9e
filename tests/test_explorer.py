"""The explorer on a tiny trained digits model (controls, transfer curves), and the notebook
model orchestration."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from aanntwin import functional as AF
from aanntwin.config import (
    FIELD_GROUPS,
    MISMATCH_FIELDS,
    TEMPORAL_NOISE,
    ModelParams,
    Nonidealities,
    load_nonidealities,
)
from aanntwin.model import Main
from aanntwin.report import notebook as nb
from aanntwin.report.explorer import Explorer
from aanntwin.report.explorer_controls import NOT_CONTROLLED, control_specs, field_controls
from aanntwin.report.transfer import transfer_curves
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


def test_notebook_models_are_the_sweeps_models(tmp_path, monkeypatch):
    """A notebook's model trains on the studies' thread count whatever the kernel's (its own
    default was every core), so the noise sweep of notebook 04 reads notebook 02's ideal model
    from the checkpoint cache instead of training it again (and two threads trained these small
    models 2-3x slower than one on two shared cores)."""
    from aanntwin.studies.common import TRAIN_THREADS
    from aanntwin.studies.noise import trained_model

    monkeypatch.setenv("AANNTWIN_CACHE", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS + 1)
    try:
        folder = nb.ensure_model(tmp_path / "out", "digits", epochs=1, seed=0)
        assert torch.get_num_threads() == TRAIN_THREADS + 1  # the kernel's setting is restored
    finally:
        torch.set_num_threads(before)
    assert nb.load_metrics(folder)["provenance"]["threads"] == TRAIN_THREADS
    sweep_model = trained_model(nb.run_config("digits", 1, 0, None).to_dict(), None, "cpu")
    _, notebook_model = load_run(folder)
    for name, value in notebook_model.state_dict().items():
        assert torch.equal(value, sweep_model.state_dict()[name]), name


def test_a_notebook_kernel_trains_its_models_in_a_child_that_ends(tmp_path):
    """ensure_model trains in a child process: the kernel that called it holds neither the
    optimizer's torch._dynamo (~70 MB) nor the training's memory while its next cells run
    ngspice or a worker pool (06's peak was the kernel after training beside two ngspice)."""
    code = (
        "import sys\n"
        "from aanntwin.report import notebook as nb\n"
        f"folder = nb.ensure_model({str(tmp_path / 'out')!r}, 'digits', epochs=1, seed=0)\n"
        "print(nb.load_metrics(folder)['epochs'], 'torch._dynamo' in sys.modules)\n"
    )
    env = {**os.environ, "AANNTWIN_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "False"]


REFERENCE = load_nonidealities(str(nb.default_nonidealities_path()))


def _options(spec):
    return [v for _, v in spec.options]


def test_every_field_has_a_control_or_a_stated_reason():
    specs = [s for group in control_specs().values() for s in group]
    covered = {s.field for s in specs} | set(NOT_CONTROLLED)
    assert covered == set(Nonidealities.__dataclass_fields__)
    assert all(NOT_CONTROLLED.values())  # each exclusion says why
    grouped = [f for fields in FIELD_GROUPS.values() for f in fields]
    assert sorted(grouped) == sorted(Nonidealities.__dataclass_fields__)
    assert list(control_specs()) == ["input", "conv stage", "ReLU", "final stage", "chip / shared"]
    keys = [s.key for s in specs]
    assert len(keys) == len(set(keys))
    # polynomials: one control per bending coefficient; bits, seed, shape, zero level
    assert {"conv2d_input_nonlin_a2", "conv2d_input_nonlin_a3", "linear_weight_nonlin_c3"} <= set(
        keys
    )
    kinds = {s.key: s.kind for s in specs}
    assert (kinds["chip_seed"], kinds["saturation"], kinds["weight_zero_level"]) == (
        "seed",
        "choice",
        "bool",
    )
    assert _options(field_controls("conv2d_weight_bits")[0])[:3] == [None, 1, 2]


def test_ranges_reach_the_spec_scale_and_the_reference_values():
    specs = {s.key: s for group in control_specs().values() for s in group}
    for name in TEMPORAL_NOISE + ("conv2d_offset_mismatch", "linear_offset_mismatch"):
        values = _options(specs[name])
        assert values[0] is None and {1e-4, 1e-3, 0.05, 1.0} <= set(values), name
        assert "1 mV" in dict(specs[name].options) and "(V)" not in specs[name].label
    for name in MISMATCH_FIELDS[::2]:
        assert {None, 1e-3, 0.01, 0.5} <= set(_options(specs[name])), name
        assert "0.1 %" in dict(specs[name].options)
    assert {-0.001, 0.001, 0.1, -1.0} <= set(_options(specs["conv2d_input_nonlin_a2"]))
    assert {-0.005, 0.0} <= set(_options(specs["relu_cutoff"]))
    for spec in specs.values():  # the reference design's values are options without adding them
        if spec.kind == "select":
            assert spec.value_of(REFERENCE) in _options(spec), spec.key
    odd = control_specs(Nonidealities(input_noise=0.0123))["input"][0]
    assert 0.0123 in _options(odd) and "12.3 mV" in dict(odd.options)


def test_explorer_starts_from_the_parameters_and_each_control_acts(tiny):
    _, model, data = tiny
    base = REFERENCE.replace(chip_seed=2)
    ex = Explorer(model, data, runs=2, base=base)
    assert ex.nonidealities() == base  # header and controls agree
    assert ex.value("input_noise") == 0.1 and ex.value("conv2d_input_nonlin_a2") == 0.1
    assert ex.value("conv2d_gain_mismatch") is None and ex.value("chip_seed") == 2
    assert ex.controls["input_noise"].value == "100 mV"
    assert all(getattr(c, "continuous_update", False) is False for c in ex.controls.values())
    text, image, transfer = ex.accuracy_label.value, ex.image.value, ex.transfer_image.value
    assert "accuracy" in text and "%" in text and image[:8] == PNG and transfer[:8] == PNG
    ex.controls["conv2d_gain_mismatch"].value = "20 %"  # a mismatch control
    assert ex.nonidealities().conv2d_gain_mismatch == 0.2 and ex.accuracy_label.value != text
    assert ex.image.value != image and ex.transfer_image.value == transfer  # curves unchanged
    text, gain = ex.accuracy_label.value, ex.model.conv.gain_error.clone()
    ex.set_value("chip_seed", 7)  # another chip: the mismatch is re-drawn
    assert ex.nonidealities().chip_seed == 7 and ex.accuracy_label.value != text
    assert not torch.equal(ex.model.conv.gain_error, gain)
    text = ex.accuracy_label.value
    ex.set_value("conv2d_input_nonlin_a2", -0.5)  # a polynomial control
    assert ex.nonidealities().conv2d_input_nonlin == (0.0, 1.0, -0.5)
    assert ex.accuracy_label.value != text and ex.transfer_image.value != transfer
    ex.set_value("conv2d_input_nonlin_a3", 0.02)
    assert ex.nonidealities().conv2d_input_nonlin == (0.0, 1.0, -0.5, 0.02)
    assert ex.seconds < 5 and ex.result.runs == 2
    ex.set_value("relu_out_bits", 4)  # needs a full scale: the label says so, nothing breaks
    assert "error" in ex.accuracy_label.value and "relu_out_full_scale" in ex.accuracy_label.value
    ex.set_value("relu_out_full_scale", 2.0)
    assert "error" not in ex.accuracy_label.value and ex.nonidealities().relu_out_bits == 4
    ex.all_off()
    assert ex.nonidealities() == Nonidealities(chip_seed=7)
    ex.reset()
    assert ex.nonidealities() == base
    assert model.nonidealities == Nonidealities()  # the caller's model is left alone


def test_explorer_draws_static_views(tiny):
    _, model, data = tiny
    ex = Explorer(model, data, runs=1, base=Nonidealities(input_noise=0.1), chip_seed=3)
    assert ex.nonidealities().chip_seed == 3
    fig = ex.figure(Nonidealities())
    assert len(fig.get_axes()) >= 5 and "ideal" in fig._suptitle.get_text()
    fig = ex.transfer_figure(REFERENCE)
    titles = [ax.get_title() for ax in fig.get_axes()]
    assert len(titles) == 8 and titles[0].startswith("input") and "ReLU" in titles[4]


def _curves(nl: Nonidealities):
    model = Main(ModelParams(channels=2), in_shape=(1, 8, 8), nonidealities=nl)
    return model, {(c.stage, c.title.split(" ")[0]): c for c in transfer_curves(model)}


def test_transfer_curves_are_the_layer_functions():
    nl = Nonidealities(input_bits=3, conv2d_input_clip=1.5, conv2d_input_nonlin=(0, 1, 0.2, -0.05),
                       conv2d_out_saturation=1.0, saturation="tanh", conv2d_weight_bits=2,
                       conv2d_gain_mismatch=0.1, conv2d_offset_mismatch=0.01, relu_cutoff=-0.1,
                       relu_gain=1.5, relu_softness=0.05, relu_out_bits=4, relu_out_full_scale=2.0,
                       linear_weight_nonlin=(0, 1, 0, -0.3), linear_out_bits=4,
                       linear_out_full_scale=3.0)  # fmt: skip
    model, c = _curves(nl)
    t = lambda a: torch.as_tensor(a)  # noqa: E731
    close = lambda a, b: np.testing.assert_allclose(a, np.asarray(b), rtol=1e-6, atol=1e-6)  # noqa: E731
    x = t(c["input", "DAC"].x)
    close(c["input", "DAC"].y, AF.quantize_uniform(x, 3, 0.0, 1.0))
    x = t(c["conv stage", "input"].x)
    close(c["conv stage", "input"].y, AF.polynomial(AF.clip(x, 1.5), (0, 1, 0.2, -0.05)))
    w = t(c["conv stage", "weight"].x)
    ref = float(model.conv.weight.detach().abs().max())
    close(c["conv stage", "weight"].y, AF.quantize_weights(w, 2, ref))
    y = t(c["conv stage", "MAC"].x)  # mismatch is per element: not part of the curve
    close(c["conv stage", "MAC"].y, AF.saturate(y, 1.0, "tanh"))
    y = t(c["ReLU", "cutoff,"].x)
    close(c["ReLU", "cutoff,"].y,
          AF.quantize_uniform(AF.soft_relu(y, -0.1, 1.5, None, 0.05), 4, 0.0, 2.0))  # fmt: skip
    close(c["ReLU", "cutoff,"].ideal, np.maximum(c["ReLU", "cutoff,"].x, 0))
    w = t(c["final stage", "weight"].x)
    close(c["final stage", "weight"].y, AF.polynomial(w, (0, 1, 0, -0.3)))
    y = t(c["final stage", "MAC"].x)
    close(c["final stage", "MAC"].y, AF.quantize_uniform(y, 4, -3.0, 3.0))
    _, ideal = _curves(Nonidealities())
    for curve in ideal.values():
        close(curve.y, curve.ideal)


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
