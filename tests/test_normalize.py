"""Normalization study: full scales hit their targets, the network function is unchanged."""

import argparse
import copy
import json

import pytest
import torch

from aanntwin.cli.studies import add_normalize_parser as add_parser
from aanntwin.cli.studies import run_normalize as run
from aanntwin.config import Nonidealities
from aanntwin.errors import AanntwinError
from aanntwin.runs import load_run, write_model
from aanntwin.studies.noise import _normalized
from aanntwin.studies.normalize import (
    apply,
    calibrate,
    normalize,
    normalize_run,
    tightest,
)
from aanntwin.training import evaluate
from tests.conftest import SMALL, SMALL_HIDDEN

CONFIG = SMALL


@pytest.fixture(scope="module")
def model(trained_run):
    return trained_run(CONFIG).model.eval()


@pytest.fixture(scope="module")
def hidden_model(trained_run):
    return trained_run(SMALL_HIDDEN).model.eval()


def _mac_outputs(model, x):
    """Each stage's MAC output, computed independently of the module under test."""
    with torch.no_grad():
        out = {"conv": model.forward_until(x, "conv_out")}
        h = model.forward_until(x, "features")
        for name in model.hidden_names:
            out[name] = getattr(model, name).mac(h)
            h = getattr(model, f"{name}_relu")(out[name])
        out["linear"] = model.forward_until(x, "linear_out")
    return out


@pytest.mark.parametrize("which", ["model", "hidden_model"])
def test_calibration_matches_the_max_and_quantile_of_each_stage_output(which, digits, request):
    m, x = request.getfixturevalue(which), digits.x_train
    outputs = _mac_outputs(m, x)
    peak = calibrate(m, x, batch_size=97)  # several uneven batches
    q = calibrate(m, x, quantile=0.9, batch_size=97)
    assert list(peak) == list(q) == m.stage_names() == list(outputs)
    for name, y in outputs.items():
        assert peak[name] == pytest.approx(float(y.abs().max()), rel=1e-6)
        assert q[name] == pytest.approx(float(torch.quantile(y.abs().flatten(), 0.9)), rel=1e-5)
        assert q[name] < peak[name]


@pytest.mark.parametrize("which", ["model", "hidden_model"])
def test_signed_max_restores_the_reference_full_scale(which, digits, request):
    """``signed=True`` (``--signed-max``): the reference tool's max y, not max |y|."""
    m, x = request.getfixturevalue(which), digits.x_train
    outputs = _mac_outputs(m, x)
    signed = calibrate(m, x, batch_size=97, signed=True)
    for name, y in outputs.items():
        assert signed[name] == pytest.approx(float(y.max()), rel=1e-6)
    peak = calibrate(m, x)
    assert all(signed[name] <= peak[name] for name in peak)
    result = normalize(m, x, signed=True)
    assert result.signed and result.after == pytest.approx(result.targets, rel=1e-5)


@pytest.mark.parametrize("which", ["model", "hidden_model"])
def test_function_is_unchanged_and_scores_scale_by_the_last_factor(which, digits, request):
    m = request.getfixturevalue(which)
    result = normalize(m, digits.x_train)
    assert any(abs(a - 1) > 0.1 for a in result.scales.values())  # a real rescaling
    new = apply(m, result)
    with torch.no_grad():
        before, after = m(digits.x_test), new(digits.x_test)
    assert torch.equal(before.argmax(1), after.argmax(1))
    a = result.scales["linear"]
    torch.testing.assert_close(after, before * a, rtol=1e-4, atol=1e-5 * a)


def test_per_stage_targets_are_met_with_a_hidden_stage(hidden_model, digits):
    targets = {"conv": 0.5, "hidden0": 0.8, "linear": 2.0}
    result = normalize(hidden_model, digits.x_train, targets)
    assert result.targets == targets
    outputs = _mac_outputs(apply(hidden_model, result), digits.x_train)
    for name, volts in targets.items():
        assert result.after[name] == pytest.approx(volts, rel=1e-4)
        assert float(outputs[name].abs().max()) == pytest.approx(volts, rel=1e-4)
        a = volts / result.before[name]
        assert result.scales[name] == pytest.approx(a, rel=1e-12)


def test_missing_stages_default_to_one_volt_and_a_number_applies_to_all(model, digits):
    result = normalize(model, digits.x_train, {"linear": 2.5})
    assert result.after == pytest.approx({"conv": 1.0, "linear": 2.5}, rel=1e-4)
    result = normalize(model, digits.x_train, 0.3)
    assert result.after == pytest.approx({"conv": 0.3, "linear": 0.3}, rel=1e-4)


def test_the_callers_model_and_tensors_are_never_modified(hidden_model, digits):
    noisy = apply(hidden_model, normalize(hidden_model, digits.x_train))  # a copy to dirty
    noisy.set_nonidealities(Nonidealities(input_noise=0.2, linear_out_noise=0.1))
    saved = {k: v.clone() for k, v in noisy.state_dict().items()}
    result = normalize(noisy, digits.x_train, {"conv": 0.5})
    apply(noisy, result)
    for key, value in noisy.state_dict().items():
        assert torch.equal(value, saved[key]), key
        assert value.data_ptr() != result.state[key].data_ptr()
    assert noisy.input_noise.sigma == 0.2 and noisy.linear.settings.out_noise == 0.1
    # calibration is of the noiseless signal: noise settings do not change it
    ideal = apply(noisy, result)
    ideal.set_nonidealities(Nonidealities())
    assert calibrate(apply(noisy, result), digits.x_train) == calibrate(ideal, digits.x_train)


def test_quantile_full_scale_is_smaller_and_its_quantile_hits_the_target(model, digits):
    x = digits.x_train
    peak = calibrate(model, x)
    result = normalize(model, x, {"conv": 0.7, "linear": 1.5}, quantile=0.99, batch_size=300)
    assert result.quantile == 0.99
    for name in ("conv", "linear"):
        assert result.before[name] < peak[name]
    new = apply(model, result)
    q = calibrate(new, x, quantile=0.99)
    assert q == pytest.approx({"conv": 0.7, "linear": 1.5}, rel=1e-4)
    assert result.after == pytest.approx(q, rel=1e-6)
    assert calibrate(new, x)["conv"] > 0.7  # the max lies above the quantile full scale


@pytest.mark.parametrize(
    ("targets", "needle"),
    [({"conv2": 1.0}, "conv2"), ({"linear": -1.0}, "linear"), ({"conv": 0.0}, "conv")],
)
def test_bad_targets_name_the_stage_and_the_allowed_ones(model, digits, targets, needle):
    with pytest.raises(AanntwinError, match=needle) as err:
        normalize(model, digits.x_train[:10], targets)
    assert "conv, linear" in str(err.value)


def test_dead_stage_and_bad_quantile_are_errors(model, digits):
    dead = apply(model, normalize(model, digits.x_train[:50]))
    with torch.no_grad():
        dead.conv.weight.zero_()
        dead.conv.bias.zero_()
    with pytest.raises(AanntwinError, match="stage conv.*dead"):
        normalize(dead, digits.x_train[:50])
    with pytest.raises(AanntwinError, match="quantile"):
        calibrate(model, digits.x_train[:50], quantile=1.5)


def test_float64(hidden_model, digits):
    m = apply(hidden_model, normalize(hidden_model, digits.x_train[:10])).double()
    x = digits.x_train.double()
    result = normalize(m, x, {"conv": 0.5, "linear": 2.0})
    assert result.state["conv.weight"].dtype == torch.float64
    assert result.after == pytest.approx({"conv": 0.5, "hidden0": 1.0, "linear": 2.0}, rel=1e-12)
    with torch.no_grad():
        before, after = m(digits.x_test.double()), apply(m, result)(digits.x_test.double())
    assert torch.equal(before.argmax(1), after.argmax(1))
    torch.testing.assert_close(after, before * result.scales["linear"], rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def run_dir(trained_run):
    return trained_run(CONFIG).folder


def test_normalize_run_writes_a_loadable_folder_with_the_same_accuracy(run_dir, tmp_path, digits):
    out = tmp_path / "norm"
    result = normalize_run(run_dir, out, targets={"conv": 0.8}, calibration_images=500)
    record = json.loads((out / "normalization.json").read_text())
    assert record["targets"] == {"conv": 0.8, "linear": 1.0}
    assert record["calibration_images"] == 500 and record["quantile"] is None
    assert record["after"] == pytest.approx(result.after) and record["source"].endswith(
        run_dir.name
    )
    _, original = load_run(run_dir)
    cfg, normalized = load_run(out)
    assert cfg == CONFIG
    assert calibrate(normalized, digits.x_train[:500]) == pytest.approx(record["targets"], rel=1e-4)
    acc = evaluate(original, digits.x_test, digits.y_test).accuracy
    assert evaluate(normalized, digits.x_test, digits.y_test).accuracy == acc
    with pytest.raises(AanntwinError, match="must differ"):
        normalize_run(run_dir, run_dir)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="aanntwin")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["normalize", *argv])


def test_cli_prints_one_line_per_stage(run_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    args = _parse(
        [
            str(run_dir),
            "--out",
            str(out),
            "--targets",
            "conv=0.8, linear=2",
            "--quantile",
            "0.999",
            "--calibration-images",
            "300",
            "--device",
            "cpu",
        ]
    )
    assert args.targets == {"conv": 0.8, "linear": 2.0}
    assert run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("conv ") and "-> 0.8 V" in lines[0]
    assert lines[1].startswith("linear ") and "-> 2 V" in lines[1]
    assert json.loads((out / "normalization.json").read_text())["quantile"] == 0.999


@pytest.mark.parametrize(
    "argv",
    [
        ["--targets", "conv"],
        ["--targets", "conv=-1"],
        ["--targets", "conv=abc"],
        ["--target", "0"],
        ["--quantile", "0"],
        ["--target", "1", "--targets", "conv=1"],
    ],
)
def test_cli_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _parse(["run", "--out", "x", *argv])
    assert exc.value.code == 2
    assert argv[0] in capsys.readouterr().err


def _peak(state, name):
    return float(state[f"{name}.weight"].abs().max())


def test_weight_bounds_limit_the_scale_and_the_function_is_kept(hidden_model, digits):
    """Regression (issue 13): ``W_k a_k / a_{k-1}`` could leave the stage's weight range."""
    m, x = hidden_model, digits.x_train
    free = normalize(m, x)
    bounds = {"conv": 0.5 * _peak(free.state, "conv"), "hidden0": None,
              "linear": 0.5 * _peak(free.state, "linear")}  # fmt: skip
    result = normalize(m, x, bounds=bounds)
    assert result.limited == {"conv": bounds["conv"], "linear": bounds["linear"]}
    assert result.bounds == bounds and result.to_dict()["limited"] == result.limited
    for name in ("conv", "linear"):
        assert _peak(result.state, name) <= bounds[name]  # never beyond, not even by an ulp
        assert _peak(result.state, name) == pytest.approx(bounds[name], rel=1e-6)
        assert result.scales[name] == pytest.approx(0.5 * free.scales[name], rel=1e-6)
    # conv reaches half its target; hidden0 (dividing by the lower a_conv) still reaches its own
    assert result.after == pytest.approx({"conv": 0.5, "hidden0": 1.0, "linear": 0.5}, rel=1e-4)
    new = apply(m, result)
    with torch.no_grad():
        before, after = m(digits.x_test), new(digits.x_test)
    assert torch.equal(before.argmax(1), after.argmax(1))
    a = result.scales["linear"]
    torch.testing.assert_close(after, before * a, rtol=1e-4, atol=1e-5 * a)


def _ranged(model, digits, n=300):
    """``model`` with a conv weight range of twice its largest conv |w| (nothing clipped), and
    the conv target that would need four times its weights (V)."""
    peak = float(model.conv.weight.detach().abs().max())
    ranged = copy.deepcopy(model)
    ranged.set_nonidealities(Nonidealities(conv2d_weight_range=2 * peak))
    return ranged, 2 * peak, 4 * calibrate(model, digits.x_train[:n])["conv"]


def test_the_models_own_weight_range_is_the_default_bound(model, digits):
    ranged, bound, target = _ranged(model, digits)
    x = digits.x_train[:300]
    result = normalize(ranged, x, {"conv": target})
    assert result.limited == {"conv": bound} and result.bounds == {"conv": bound, "linear": None}
    assert _peak(result.state, "conv") <= bound
    assert result.after["conv"] == pytest.approx(target / 2, rel=1e-4)
    assert result.after["linear"] == pytest.approx(1.0, rel=1e-4)
    # a fixed quantizer reference bounds the weights as training does (min(range, ref))
    ranged.set_nonidealities(Nonidealities(conv2d_weight_range=bound, conv2d_weight_bits=8,
                                           conv2d_weight_ref=bound / 2))  # fmt: skip
    assert ranged.weight_bounds() == {"conv": bound / 2, "linear": None}
    assert normalize(ranged, x, {"conv": target}).limited == {"conv": bound / 2}
    # the noise sweep bounds by the nonidealities it trained and tests with, the tighter one
    ranged.set_nonidealities(Nonidealities())
    wide, narrow = (Nonidealities(conv2d_weight_range=b) for b in (bound, bound / 4))
    normalized = _normalized(ranged, x, target, wide, narrow, Nonidealities())
    assert float(normalized.conv.weight.detach().abs().max()) <= bound / 4


def test_noise_sweep_normalizes_within_the_tested_weight_range(digits, monkeypatch):
    """``sweep noise --normalize-target``: the tested nonidealities' range bounds the weights."""
    from aanntwin.studies import noise

    seen = []
    monkeypatch.setattr(noise, "evaluate_levels", lambda model, *a, **k: seen.append(model) or [])
    cfg = SMALL.replace(train=SMALL.train.replace(epochs=1))
    base = Nonidealities(conv2d_weight_range=0.05, linear_weight_range=0.03)
    noise._noise_task(cfg.to_dict(), None, "cpu", None, [], "input", [None], base.to_dict(),
                      1, 0, True, 50.0, calibration_images=200)  # fmt: skip
    (model,) = seen
    assert float(model.conv.weight.detach().abs().max()) == pytest.approx(0.05, rel=1e-6)
    assert float(model.linear.weight.detach().abs().max()) <= 0.03


def test_tightest():
    got = tightest({"conv": 0.5, "linear": None}, {"conv": 0.2, "linear": None, "hidden0": 1.0})
    assert got == {"conv": 0.2, "linear": None, "hidden0": 1.0}
    assert tightest() == {}


def test_normalize_run_and_cli_keep_the_trained_weight_range(model, digits, tmp_path, capsys):
    """The run's training nonidealities bound the normalized weights; the CLI says so."""
    ranged, bound, target = _ranged(model, digits)
    run_dir = write_model(tmp_path / "run", CONFIG.replace(nonidealities=ranged.nonidealities),
                          ranged)  # fmt: skip
    out = tmp_path / "norm"
    args = _parse([str(run_dir), "--out", str(out), "--targets", f"conv={target}",
                   "--calibration-images", "300", "--device", "cpu"])  # fmt: skip
    assert run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    limited = [line for line in lines if "limited by the weight range" in line]
    assert len(limited) == 1 and limited[0].startswith("conv ")
    assert f"target {target:g} V" in limited[0] and f"+-{bound:g}" in limited[0]
    assert f"reached {target / 2:.4g} V" in limited[0]
    record = json.loads((out / "normalization.json").read_text())
    assert record["limited"] == {"conv": bound}
    assert record["weight_bounds"] == {"conv": bound, "linear": None}
    _, normalized = load_run(out)
    assert float(normalized.conv.weight.detach().abs().max()) <= bound


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda(model, digits):
    m = apply(model, normalize(model, digits.x_train[:10])).to("cuda")
    result = normalize(m, digits.x_train.to("cuda"), {"conv": 0.5}, quantile=0.99)
    assert result.state["conv.weight"].device.type == "cuda"
    assert result.after == pytest.approx({"conv": 0.5, "linear": 1.0}, rel=1e-4)
