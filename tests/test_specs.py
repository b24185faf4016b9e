"""Spec derivation: limits confirmed independently (alone and jointly), yield = brute force."""

import json

import pytest

from aanntwin.cli import main
from aanntwin.config import Nonidealities
from aanntwin.errors import AanntwinError
from aanntwin.seeds import derive_seed
from aanntwin.studies.noise import KINDS
from aanntwin.studies.specs import (
    SpecSearch,
    Target,
    chip_yield,
    derive_specs,
    lower_quantile,
    wilson_interval,
)
from aanntwin.training import evaluate
from tests.conftest import HIDDEN16, SMALL


@pytest.fixture(scope="module")
def model(trained_run):
    return trained_run(SMALL).model


@pytest.fixture(scope="module")
def derived(model, digits):
    search = SpecSearch(model, digits.x_test, digits.y_test, Target(0.02, 0.9, runs=12), seed=3)
    tols = {k: search.tolerance(k) for k in KINDS}  # every row of the table
    joint, check, _ = search.joint({k: t.limit for k, t in tols.items()})
    return search, tols, joint, check


def test_each_limit_alone_meets_the_target_in_an_independent_evaluation(derived, model, digits):
    search, tols, _, _ = derived
    for kind, tol in tols.items():
        assert tol.limit and tol.limit > 0, kind
        fresh = search.check(kind, tol.limit, seed=987_654)  # other noise draws and chips
        assert fresh.passed, (kind, fresh)
        failed_above = [t["value"] for t in tol.trace if not t["passed"]]
        assert failed_above and min(failed_above) <= tol.limit / 0.7 * 1.6  # a tight bracket


def test_the_joint_limits_meet_the_target_together(derived, model, digits):
    search, tols, joint, check = derived
    assert check.passed
    assert all(joint[k] <= tols[k].limit for k in joint)
    nl = Nonidealities(**{KINDS[k]: v for k, v in joint.items()})
    independent = search.check_joint(nl, seed=55_555)
    assert independent.passed and independent.quantile >= search.threshold


def test_checks_are_evaluate_run_by_run_on_chips_seed_plus_r(trained_run, digits):
    """Regression (issue 9): sample r of ``check`` and ``check_joint`` at seed S is run r of
    ``evaluate(seed=S)`` on chip S + r, hidden stages included (was: other seeds and chips, and
    no linear mismatch in hidden stages)."""
    model = trained_run(HIDDEN16).model
    x, y = digits.x_test[:301], digits.y_test[:301]
    target = Target(0.02, 0.8, runs=3)
    base = Nonidealities(input_noise=0.1)
    search = SpecSearch(model, x, y, target, seed=4, base=base)

    def direct(nl, seed):
        accs = []
        for r in range(target.runs):
            model.set_nonidealities(nl.replace(chip_seed=seed + r))
            accs.append(evaluate(model, x, y, runs=target.runs, seed=seed).accuracies[r])
        model.set_nonidealities(Nonidealities())
        return accs

    for check, accs in [
        (search.check("linear_gain", 0.4), direct(base.replace(linear_gain_mismatch=0.4), 4)),
        (search.check_joint(nl := base.replace(linear_offset_mismatch=0.2, relu_out_noise=0.1),
                            seed=11), direct(nl, 11)),
    ]:  # fmt: skip
        assert check.quantile == lower_quantile(accs, 0.8)
        assert check.mean == pytest.approx(sum(accs) / len(accs), abs=1e-15)


def test_fewest_bits_is_the_smallest_passing_count(derived, model, digits):
    search = derived[0]
    bits = search.fewest_bits("linear")
    assert bits is not None

    def acc(b):
        model.set_nonidealities(Nonidealities(linear_weight_bits=b))
        a = evaluate(model, digits.x_test, digits.y_test).accuracy
        model.set_nonidealities(Nonidealities())
        return a

    assert acc(bits) >= search.threshold
    assert bits == 0 or acc(bits - 1) < search.threshold


def test_derive_specs_is_the_search_sequence(model, digits):
    target = Target(0.03, 0.9, runs=4)
    res = derive_specs(model, digits.x_test, digits.y_test, target, kinds=["linear_out"], seed=2)
    search = SpecSearch(model, digits.x_test, digits.y_test, target, seed=2)
    tol = search.tolerance("linear_out")
    assert [t.limit for t in res.tolerances] == [tol.limit]
    assert (res.joint, res.joint_check, res.shrink_steps) == search.joint({"linear_out": tol.limit})
    assert res.bits == {s: search.fewest_bits(s) for s in ("conv2d", "linear")}
    row = res.table.set_index("quantity").loc["linear_out_noise"]
    assert row["limit"] == res.joint["linear_out"] and row["limit_alone"] == tol.limit
    assert res.seconds > 0 and res.search.evaluations > 0


def test_yield_and_its_interval_match_a_brute_force_count(model, digits):
    nl = Nonidealities(conv2d_gain_mismatch=0.05, linear_offset_mismatch=0.05, input_noise=0.02)
    ideal = evaluate(model, digits.x_test, digits.y_test).accuracy
    res = chip_yield(model, digits.x_test, digits.y_test, nl, instances=12,
                     threshold=ideal - 0.01, seed=4)  # fmt: skip
    brute = []
    for i in range(12):
        chip = derive_seed(4, "chip", i)
        model.set_nonidealities(nl.replace(chip_seed=chip))
        brute.append(evaluate(model, digits.x_test, digits.y_test, seed=chip).accuracy)
    model.set_nonidealities(Nonidealities())
    assert res.accuracies == brute
    assert res.passing == sum(a >= ideal - 0.01 for a in brute)
    assert res.low <= res.yield_ <= res.high
    assert (res.low, res.high) == wilson_interval(res.passing, 12, 0.95)
    assert len({round(a, 6) for a in brute}) > 1  # chips differ


def test_wilson_interval_and_quantile():
    assert wilson_interval(0, 10, 0.95)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_interval(10, 10, 0.95)[1] == pytest.approx(1.0, abs=1e-12)
    lo, hi = wilson_interval(50, 100, 0.95)
    assert lo == pytest.approx(0.404, abs=0.002) and hi == pytest.approx(0.596, abs=0.002)
    assert lower_quantile([0.1 * i for i in range(11)], 0.9) == pytest.approx(0.1)


@pytest.mark.parametrize(("kwargs", "needle"), [({"max_drop": -0.1}, "target drop"),
                                                ({"confidence": 1.0}, "confidence 1.0"),
                                                ({"runs": 1}, "runs 1")])  # fmt: skip
def test_bad_targets(kwargs, needle):
    with pytest.raises(AanntwinError, match=needle):
        Target(**kwargs)


def test_specs_and_yield_commands(trained_run, tmp_path, capsys):
    run = trained_run(SMALL).folder
    out = tmp_path / "spec"
    code = main(["specs", str(run), "--out", str(out), "--runs", "6", "--kinds",
                 "input,linear_out", "--target-drop", "0.03"])  # fmt: skip
    assert code == 0
    spec = json.loads((out / "spec.json").read_text())
    assert spec["joint_check"]["passed"] and set(spec["joint_limits"]) == {"input", "linear_out"}
    table = (out / "spec_table.csv").read_text()
    for needle in ("input_noise", "linear_out_noise", "conv2d_weight_bits", "multipliers"):
        assert needle in table
    assert "<table" in (out / "spec_table.html").read_text()
    nl = tmp_path / "nl.json"
    nl.write_text(json.dumps({"conv2d_gain_mismatch": 0.05}))
    capsys.readouterr()
    assert main(["yield", str(run), "--nonidealities", str(nl), "--instances", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["instances"] == 5 and 0 <= report["yield"] <= 1 and "yield_" not in report
    # the accuracy spread the README promises (it printed only the yield)
    assert report["accuracy_min"] <= report["accuracy_mean"] <= report["accuracy_max"]
    assert report["accuracy_std"] > 0 and "warning" not in capsys.readouterr().err
    nl.write_text(json.dumps({"input_noise": 0.05}))  # no mismatch: one chip, said so
    assert main(["yield", str(run), "--nonidealities", str(nl), "--instances", "3"]) == 0
    assert "sets no mismatch" in capsys.readouterr().err


def test_the_searches_on_worker_processes_give_the_same_table_and_count(model, digits):
    """Each kind's search and each stage's weight bits run as tasks on local workers by default
    (``aanntwin specs --workers auto``, notebook 04): the table, the joint check and the number
    of evaluations must be those of the in-process sequence."""
    from aanntwin.studies.pools import LocalPool

    target, kinds = Target(0.03, 0.9, runs=4), ["input", "linear_out", "conv_gain"]
    here = derive_specs(model, digits.x_test, digits.y_test, target, kinds=kinds, seed=5)
    pool = LocalPool(2)
    try:
        there = derive_specs(model, digits.x_test, digits.y_test, target, kinds=kinds, seed=5,
                             executor=pool)  # fmt: skip
        assert pool.pool is not None  # the searches did run on worker processes
    finally:
        pool.shutdown()
    assert there.table.equals(here.table)
    assert (there.joint, there.joint_check, there.bits) == (here.joint, here.joint_check, here.bits)
    assert [t.trace for t in there.tolerances] == [t.trace for t in here.tolerances]
    assert there.search.evaluations == here.search.evaluations


def test_conflicting_executors_are_named_before_any_data_is_read(
    trained_run, tmp_path, capsys, monkeypatch
):
    folder = trained_run(SMALL).folder

    def no_data(*args, **kwargs):
        raise AssertionError("the dataset was read before the options were checked")

    monkeypatch.setattr("aanntwin.studies.common.cached_dataset", no_data)  # run_dataset too
    argv = ["specs", str(folder), "--out", str(tmp_path / "s"), "--workers", "2",
            "--dask-scheduler", "tcp://127.0.0.1:9"]  # fmt: skip
    assert main(argv) == 2
    assert "--workers and --dask-scheduler exclude each other" in capsys.readouterr().err


def test_the_joint_check_in_blocks_on_workers_gives_the_same_samples(model, digits):
    from aanntwin.studies.pools import LocalPool
    from aanntwin.studies.specs import SpecSearch, _blocks

    assert _blocks(5, 2) == [(0, 3), (3, 2)] and _blocks(3, 8) == [(0, 1), (1, 1), (2, 1)]
    nl = Nonidealities(input_noise=0.05, conv2d_gain_mismatch=0.1)
    search = SpecSearch(model, digits.x_test, digits.y_test, Target(0.03, 0.9, runs=5), seed=2)
    here = search.check_joint(nl, seed=7)
    pool = LocalPool(2)
    try:
        there = search.check_joint(nl, seed=7, executor=pool)
        assert pool.pool is not None
    finally:
        pool.shutdown()
    assert there == here
