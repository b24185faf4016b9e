"""Noise sweep: level semantics, prefix reuse, resume, validation before work."""

import functools

import pytest

from aanntwin.config import Nonidealities, RunConfig, TrainParams
from aanntwin.errors import AanntwinError
from aanntwin.layers import derive_seed
from aanntwin.studies import noise
from aanntwin.studies.grid import REFERENCE_TEST_LEVELS, REFERENCE_TRAIN_LEVELS, parse_levels
from aanntwin.studies.noise import NoiseSweep, evaluate_levels, run_noise_sweep
from aanntwin.training import evaluate, train

QUICK = RunConfig(train=TrainParams(epochs=4, batch_size=64))


@pytest.fixture(scope="module")
def model(digits):
    return train(QUICK, digits, progress=False).model


def test_reference_grids():
    assert len(REFERENCE_TRAIN_LEVELS) == 12 and len(REFERENCE_TEST_LEVELS) == 102
    assert REFERENCE_TEST_LEVELS[:3] == (None, 0.0, 0.01) and REFERENCE_TEST_LEVELS[-1] == 1.0
    assert parse_levels("none,0:0.3:0.1,0.5", "x") == [None, 0.0, 0.1, 0.2, 0.3, 0.5]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"test_levels": "-0.1"}, "test levels: -0.1 is out of range, allowed >= 0.0"),
        ({"train_levels": ""}, "train levels: the list is empty"),
        ({"test_levels": "0:1"}, "must be start:stop:step"),
        ({"test_levels": "loud"}, "'loud' is not a number, none or a range"),
        ({"kinds": "input,thermal"}, "kinds: unknown 'thermal'"),
        ({"train_kinds": "conv_gain"}, "train kinds: unknown 'conv_gain'"),
        ({"runs": 0}, "runs = 0: must be an integer >= 1"),
    ],
)
def test_bad_grids_are_refused_before_any_work(kwargs, needle):
    with pytest.raises(AanntwinError) as err:
        NoiseSweep(**kwargs)
    assert needle in str(err.value)


def test_off_and_zero_levels_give_the_ideal_accuracy(model, digits):
    ideal = evaluate(model, digits.x_test, digits.y_test).accuracy
    for kind in noise.KINDS:
        rows = evaluate_levels(model, digits.x_test, digits.y_test, kind, [None, 0.0])
        assert [r["accuracy_mean"] for r in rows] == [ideal, ideal], kind


def test_huge_noise_is_chance_and_results_are_reproducible(model, digits):
    args = (model, digits.x_test, digits.y_test, "input", [0.0, 0.2, 50.0])
    a = evaluate_levels(*args, runs=3, seed=4)
    assert a == evaluate_levels(*args, runs=3, seed=4)
    assert a[2]["accuracy_mean"] < 0.25
    assert a[1]["accuracy_std"] > 0


def test_mismatch_kinds_equal_a_direct_evaluation_of_the_same_chips(model, digits):
    rows = evaluate_levels(model, digits.x_test, digits.y_test, "conv_gain", [0.3], runs=2, seed=1)
    accs = []
    for r in range(2):
        chip = Nonidealities(conv2d_gain_mismatch=0.3, chip_seed=derive_seed(1, "run", r))
        model.set_nonidealities(chip)
        accs.append(evaluate(model, digits.x_test, digits.y_test).accuracy)
    model.set_nonidealities(Nonidealities())
    assert rows[0]["accuracy_mean"] == pytest.approx(sum(accs) / 2, abs=1e-12)


@pytest.mark.parametrize("kind", ["input", "conv_out", "relu_out", "linear_out"])
def test_temporal_kinds_agree_with_the_full_noisy_model(model, digits, kind):
    sigma = {"input": 0.5, "conv_out": 0.5, "relu_out": 0.5, "linear_out": 2.0}[kind]
    row = evaluate_levels(model, digits.x_test, digits.y_test, kind, [sigma], runs=8)[0]
    model.set_nonidealities(Nonidealities(**{noise.KINDS[kind]: sigma}))
    direct = evaluate(model, digits.x_test, digits.y_test, runs=8, seed=99)
    model.set_nonidealities(Nonidealities())
    assert row["accuracy_mean"] == pytest.approx(direct.accuracy, abs=0.03)
    assert row["accuracy_mean"] < evaluate(model, digits.x_test, digits.y_test).accuracy


def test_common_random_numbers_make_curves_smooth(model, digits):
    levels = [0.3 + 0.002 * i for i in range(6)]
    args = (model, digits.x_test, digits.y_test, "input", levels)
    crn = [r["accuracy_mean"] for r in evaluate_levels(*args, common_random_numbers=True)]
    free = [r["accuracy_mean"] for r in evaluate_levels(*args, common_random_numbers=False)]
    wiggle = lambda v: sum(abs(a - b) for a, b in zip(v[:-1], v[1:], strict=True))  # noqa: E731
    assert wiggle(crn) < wiggle(free)


def test_sweep_writes_a_tidy_csv_and_resumes_without_recomputing(digits, tmp_path, monkeypatch):
    sweep = NoiseSweep(
        QUICK,
        train_levels=[None, 0.1],
        test_levels=[None, 0.1, 0.5],
        kinds=["input", "linear_out"],
        normalize_target=None,
    )
    df = run_noise_sweep(sweep, str(tmp_path), progress=False)
    assert len(df) == 2 * 3 * 2
    assert set(df.columns) >= {
        "train_level",
        "kind",
        "test_level",
        "accuracy_mean",
        "accuracy_std",
        "loss_mean",
        "runs",
        "seed",
    }
    assert df["accuracy_mean"].between(0, 1).all()
    calls = []
    original = noise._noise_task

    @functools.wraps(original)
    def counting(**kw):
        calls.append(kw)
        return original(**kw)

    monkeypatch.setattr(noise, "_noise_task", counting)
    again = run_noise_sweep(sweep, str(tmp_path), progress=False)
    assert calls == [] and again.equals(df)
    bigger = NoiseSweep(
        QUICK,
        train_levels=[None, 0.1, 0.2],
        test_levels=[None, 0.1, 0.5],
        kinds=["input", "linear_out"],
        normalize_target=None,
    )
    run_noise_sweep(bigger, str(tmp_path), progress=False)
    assert [c["train_level"] for c in calls] == [0.2, 0.2]  # only the new points
