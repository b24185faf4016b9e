"""Weights stay programmable (issue 9): the quantizer's gradient is the clip's, the layers clip
to the programmable range, training projects the latent weights, characterization writes the
range it measured."""

from __future__ import annotations

import json

import pytest
import torch

from aanntwin import functional as AF
from aanntwin.config import ModelParams, Nonidealities, StageSettings
from aanntwin.errors import ConfigError
from aanntwin.layers import AnalogLinear
from aanntwin.model import WEIGHTS_FILE, Main, weight_bound
from tests.conftest import SMALL

F32 = lambda v: float(torch.tensor(v, dtype=torch.float32))  # noqa: E731


@pytest.mark.parametrize("zero_level", [True, False])
@pytest.mark.parametrize("ref", [0.4, torch.tensor(0.4)])
def test_weight_quantizer_gradient_is_the_clips(zero_level, ref):
    """Regression: the straight-through gradient was 1 everywhere, also beyond +-ref."""
    w = torch.tensor([-3.4, -0.41, -0.4, -0.1, 0.0, 0.25, 0.4, 0.41, 3.4], requires_grad=True)
    AF.quantize_weights(w, 1, ref, zero_level).sum().backward()
    expected = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    assert torch.equal(w.grad, expected)


def test_activation_quantizer_gradient_is_the_clips():
    x = torch.tensor([-0.5, 0.0, 0.3, 1.0, 1.5], requires_grad=True)
    AF.quantize_uniform(x, 2, 0.0, 1.0).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))


def test_range_is_validated_and_reaches_the_stage():
    nl = Nonidealities(conv2d_weight_range=0.5, linear_weight_range=1.0)
    assert nl.stage("conv2d").weight_range == 0.5 and nl.stage("linear").weight_range == 1.0
    assert Nonidealities().stage("linear").weight_range is None  # unlimited by default
    for bad in (0.0, -1.0):
        with pytest.raises(ConfigError, match="linear_weight_range"):
            Nonidealities(linear_weight_range=bad)


def test_layer_clips_to_the_range_before_quantization():
    layer = AnalogLinear(4, 2, settings=StageSettings(weight_range=0.3, weight_bits=2))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-1.0, -0.2, 0.1, 0.29], [0.31, 0.5, 2.0, 0.0]]))
    w = layer.effective_weight()
    # ref defaults to max |w| of the clipped weights, 0.3: levels k * 0.075 up to 0.225.
    assert w.abs().max().item() == pytest.approx(0.225)
    w.sum().backward()
    inside = torch.tensor([[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    assert torch.equal(layer.weight.grad, inside)


def test_project_weights_bounds():
    nl = Nonidealities(conv2d_weight_range=0.2, linear_weight_bits=1, linear_weight_ref=0.4,
                       linear_weight_range=0.5)  # fmt: skip
    model = Main(in_shape=(1, 8, 8), nonidealities=nl)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3.0)
    model.project_weights()
    assert model.conv.weight.max().item() == F32(0.2)  # the range
    assert model.linear.weight.max().item() == F32(0.4)  # min(range, fixed ref)
    assert model.linear.bias.max().item() == 3.0  # biases are not weights
    model.set_nonidealities(Nonidealities(linear_weight_bits=1))  # ref = max |w|: no bound
    model.project_weights()
    assert model.linear.weight.max().item() == F32(0.4)


def test_quantization_training_keeps_latent_weights_in_range(trained_run):
    """Regression: 1-bit weights at ref 0.4 drifted to |w| = 5.3 in 3 epochs (3.4 in the report),
    far beyond what the multiplier can be programmed to."""
    nl = Nonidealities(linear_weight_bits=1, linear_weight_ref=0.4, weight_zero_level=False,
                       conv2d_weight_bits=3)  # fmt: skip
    model = trained_run(SMALL.replace(nonidealities=nl)).model  # test_export's quantized_run
    assert model.linear.weight.abs().max().item() <= F32(0.4)
    assert model.linear.weight.abs().max().item() == F32(0.4)  # the bound was reached


def test_characterize_writes_the_weight_range(tmp_path):
    """Regression: nonidealities.json did not say over which weights the twin was fitted."""
    from aanntwin.characterization.circuits import example_files
    from aanntwin.cli import characterize as characterize_cli
    from aanntwin.cli.common import Parser as _Parser
    from aanntwin.config import load_nonidealities

    parser = _Parser(prog="aanntwin")
    characterize_cli.add_parser(parser.add_subparsers(dest="command", parser_class=_Parser))
    files = [str(p) for p in example_files()]
    args = parser.parse_args(
        ["characterize", "--csv", *files, "--out", str(tmp_path), "--no-plots"]
    )
    assert characterize_cli.run(args) == 0
    nl = load_nonidealities(str(tmp_path / "nonidealities.json"))
    # The shipped weight sweep spans -1..1 of the weight full scale (twin weight units).
    assert nl.conv2d_weight_range == nl.linear_weight_range == 1.0
    report = json.loads((tmp_path / "fit_report.json").read_text())
    assert report["mapping"]["weight_range"]["range"] == 1.0


def test_weight_bounds_are_the_projections(tmp_path):
    """One bound for training, normalization and export: min(range, fixed ref)."""
    nl = Nonidealities(conv2d_weight_range=0.2, linear_weight_bits=1, linear_weight_ref=0.4,
                       linear_weight_range=0.5)  # fmt: skip
    model = Main(in_shape=(1, 8, 8), nonidealities=nl)
    assert model.weight_bounds() == {"conv": 0.2, "linear": 0.4}
    hidden = Main(ModelParams(hidden=(4,)), in_shape=(1, 8, 8))
    assert hidden.weight_bounds() == {"conv": None, "hidden0": None, "linear": None}
    assert hidden.weight_bounds(nl) == {"conv": 0.2, "hidden0": 0.4, "linear": 0.4}
    assert weight_bound(StageSettings(weight_ref=0.1)) is None  # a ref without bits: unused


def test_training_keeps_every_saved_weight_in_range_and_says_so(tmp_path, capsys):
    """1 epoch on digits with a 0.05 range (the default init reaches +-1/3): every weight in
    the saved file lies within it, and ``aanntwin train`` names the bound and its stages."""
    from safetensors.torch import load_file

    from aanntwin.cli import main

    nl = Nonidealities(conv2d_weight_range=0.05, linear_weight_range=0.05)
    cfg = SMALL.replace(train=SMALL.train.replace(epochs=1), nonidealities=nl)
    (tmp_path / "run.json").write_text(cfg.to_json())
    argv = ["train", "--config", str(tmp_path / "run.json"), "--out", str(tmp_path / "run")]
    assert main([*argv, "--no-progress", "--no-cache"]) == 0
    assert "weights kept within +-0.05 (weight range): conv, linear" in capsys.readouterr().out
    saved = load_file(tmp_path / "run" / WEIGHTS_FILE)
    for name in ("conv.weight", "linear.weight"):
        assert saved[name].abs().max().item() <= F32(0.05), name
        assert saved[name].abs().max().item() == F32(0.05), name  # the bound was reached


def test_train_output_names_a_fixed_reference_bound():
    from aanntwin.cli.core import _weight_bound_lines

    nl = Nonidealities(conv2d_weight_range=1.0, linear_weight_bits=2, linear_weight_ref=0.4)
    model = Main(ModelParams(hidden=(4,)), in_shape=(1, 8, 8))
    assert _weight_bound_lines(model.weight_bounds(nl), nl) == [
        "weights kept within +-1 (weight range): conv",
        "weights kept within +-0.4 (2-bit weight_ref): hidden0, linear",
    ]
    assert _weight_bound_lines(model.weight_bounds(), Nonidealities()) == []


def test_export_of_weights_beyond_the_range_writes_none_beyond(trained_run, tmp_path, capsys):
    """A run folder whose latent weights lie far outside its range (an older run, a hand edit):
    ``aanntwin export`` writes codes whose weights all lie within the range."""
    from aanntwin.cli import main
    from aanntwin.runs import load_run, write_model
    from aanntwin.studies.export import MANIFEST, load_export

    nl = Nonidealities(conv2d_weight_range=0.05, conv2d_weight_bits=4, linear_weight_range=0.02,
                       linear_weight_bits=3)  # fmt: skip
    _, model = load_run(trained_run(SMALL).folder)
    with torch.no_grad():
        for stage in model.mac_stages():
            stage.weight.mul_(10.0)
    assert model.conv.weight.abs().max() > 0.5 and model.linear.weight.abs().max() > 0.2
    run = write_model(tmp_path / "run", SMALL.replace(nonidealities=nl), model)
    out = tmp_path / "export"
    argv = ["export", str(run), "--out", str(out), "--calibration-images", "100"]
    assert main(argv) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    _, loaded = load_export(out)
    for stage, bound in (("conv", 0.05), ("linear", 0.02)):
        entry = next(s for s in manifest["stages"] if s["name"] == stage)
        assert entry["weight_range"] == bound and entry["ref"] <= F32(bound)
        w = getattr(loaded, stage).weight
        assert w.abs().max().item() <= F32(bound), stage
    assert "conv" in capsys.readouterr().out


def test_evaluate_counts_and_warns_about_weights_and_inputs_beyond_the_limits(
    trained_run, tmp_path, capsys
):
    """Weights trained without a range, evaluated under a characterization: the twin clips them;
    ``aanntwin evaluate`` reports how many (``limits``) and warns, instead of a silent number."""
    from aanntwin.cli import main
    from aanntwin.config import Normalization
    from aanntwin.limits import limits, warnings
    from aanntwin.runs import load_run

    nl = Nonidealities(conv2d_input_clip=0.8, conv2d_weight_range=0.05, linear_weight_range=0.02)
    path = tmp_path / "char.json"
    path.write_text(nl.to_json())
    run = trained_run(SMALL).folder
    assert main(["evaluate", str(run), "--nonidealities", str(path)]) == 0
    printed = capsys.readouterr()
    report = json.loads(printed.out)
    _, model = load_run(run, nl)
    outside = int((model.conv.weight.abs() > 0.05).sum())
    assert outside > 0 and report["limits"]["conv"]["weights_outside"] == outside
    assert report["limits"]["linear"]["weight_bound"] == 0.02
    assert (
        f"conv: {outside} of {model.conv.weight.numel()} weights lie beyond +-0.05" in printed.err
    )
    # the normalization drives pixels to 1 V, beyond the 0.8 V input range
    assert "inputs to 1 V, beyond the characterized +-0.8 V" in printed.err
    inside = limits(model, Normalization(max_out=0.5))
    assert "inputs_reach" not in inside["conv"]
    model.project_weights()
    assert warnings(limits(model, Normalization(max_out=0.5))) == []
