"""Training answers a user can trust: one cache key per behaviour and per determinism domain,
byte-identical run files for identical inputs, and mismatch-aware training for every chip."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aanntwin.cache import CheckpointCache
from aanntwin.cli import main
from aanntwin.config import Nonidealities, RunConfig, TrainParams
from aanntwin.model import Main, save_weights
from aanntwin.studies.specs import chip_yield
from aanntwin.training import train
from tests.conftest import EVERYTHING

QUICK = RunConfig(train=TrainParams(epochs=2, batch_size=64))

SAME_CIRCUIT = [  # (spelling, canonical spelling): the same behaviour
    (dict(relu_cutoff=0.0), {}),
    (dict(input_noise=0.0, conv2d_out_noise=0.0, relu_out_noise=0.0, linear_out_noise=0.0), {}),
    (dict(conv2d_gain_mismatch=0.0, linear_offset_mismatch=0.0, chip_seed=7), {}),
    (dict(relu_gain=1.0, relu_threshold=0.0), {}),
    (dict(relu_cutoff=0.1, saturation="tanh", chip_seed=3), dict(relu_cutoff=0.1)),
    (dict(relu_cutoff=0.1, relu_gain=1.0, relu_threshold=0.1), dict(relu_cutoff=0.1)),
    (
        dict(relu_cutoff=-0.05, relu_threshold=-0.05, relu_softness=0.1),
        dict(relu_cutoff=-0.05, relu_softness=0.1),
    ),
    (dict(conv2d_input_nonlin=(0.0, 1.0)), {}),
    (dict(linear_input_nonlin=(0.0, 1.0, 0.2, 0.0)), dict(linear_input_nonlin=(0.0, 1.0, 0.2))),
    (dict(conv2d_weight_nonlin=(0.0, 1.0, 0.0)), {}),
    (dict(saturation="tanh"), {}),
    (dict(weight_zero_level=False), {}),
    (dict(relu_out_full_scale=2.0, linear_out_full_scale=3.0), {}),
]


@pytest.mark.parametrize("spelled,canonical", SAME_CIRCUIT)
def test_settings_that_are_off_have_one_cache_key_and_are_not_active(spelled, canonical):
    a, b = Nonidealities(**spelled), Nonidealities(**canonical)
    assert a.canonical() == b.canonical() == b
    assert a.active() == b.active()
    key = lambda nl: RunConfig(nonidealities=nl).cache_key("data")  # noqa: E731
    assert key(a) == key(b)


def test_canonical_form_computes_bit_identical_outputs():
    """The canonical form is a claim about behaviour: the model computes the same numbers."""
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    on = dict(EVERYTHING, relu_gain=1.0, conv2d_input_nonlin=(0.0, 1.0, 0.1, 0.0))
    for spelled in [on, *(s for s, _ in SAME_CIRCUIT)]:
        nl = Nonidealities(**spelled)
        outs = []
        for variant in (nl, nl.canonical()):
            model = Main(in_shape=(1, 8, 8), nonidealities=variant, noise_seed=3)
            model.reset_parameters(0)
            outs.append(model(x))
        assert torch.equal(*outs), spelled


def test_settings_that_act_keep_their_own_cache_keys():
    key = lambda **kw: RunConfig(nonidealities=Nonidealities(**kw)).cache_key("d")  # noqa: E731
    keys = {key(), key(relu_cutoff=0.01), key(input_noise=0.01), key(relu_gain=1.01),
            key(conv2d_input_nonlin=(0.0, 1.0, 1e-6)), key(conv2d_gain_mismatch=0.1),
            key(conv2d_gain_mismatch=0.1, chip_seed=1)}  # fmt: skip
    assert len(keys) == 7


def test_cache_key_holds_the_thread_count(digits):
    """A run with another thread count sums in another order: it is never served the other's
    checkpoint (before, a 1-thread run after a 2-thread run got the 2-thread weights)."""
    cache, threads = CheckpointCache(), torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = train(QUICK, digits, cache=cache, progress=False, eval_each_epoch=False)
        torch.set_num_threads(1)
        one = train(QUICK, digits, cache=cache, progress=False, eval_each_epoch=False)
        again = train(QUICK, digits, cache=cache, progress=False, eval_each_epoch=False)
    finally:
        torch.set_num_threads(threads)
    assert one.key != two.key and one.resumed_from == 0
    assert again.key == one.key and again.resumed_from == QUICK.train.epochs


def test_identical_weights_give_identical_weight_files(tmp_path):
    model = Main(in_shape=(1, 8, 8))
    model.reset_parameters(0)
    meta = {"config": RunConfig().to_dict(), "note": {"a": 1}}
    files = []
    for i in range(8):  # safetensors wrote several metadata entries in no fixed order
        save_weights(model, tmp_path / f"w{i}.safetensors", meta)
        files.append((tmp_path / f"w{i}.safetensors").read_bytes())
    assert all(f == files[0] for f in files)


def test_two_identical_trainings_write_byte_identical_run_files(tmp_path):
    args = ["train", "--dataset", "digits", "--epochs", "2", "--no-progress", "--threads", "1"]
    for name in ("a", "b"):
        assert main([*args, "--no-cache", "--out", str(tmp_path / name)]) == 0
    for name in ("weights.safetensors", "config.json", "metrics.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


MISMATCH = Nonidealities(
    conv2d_gain_mismatch=0.5, conv2d_offset_mismatch=0.3,
    linear_gain_mismatch=0.5, linear_offset_mismatch=0.3,
)  # fmt: skip


def _mismatch_trained(digits, chips: str):
    cfg = RunConfig(train=TrainParams(epochs=6, batch_size=64, chips=chips), nonidealities=MISMATCH)
    return train(cfg, digits, progress=False, eval_each_epoch=False)


def test_chip_agnostic_training_yields_more_chips_than_training_for_one_chip(digits):
    """Yield over chips never seen in training: a model trained for chip 0 alone fits chip 0;
    the default draws a fresh chip per batch and serves the population."""
    x, y = digits.x_test, digits.y_test
    yields = {}
    for chips in ("fixed", "batch"):
        model = _mismatch_trained(digits, chips).model
        r = chip_yield(model, x, y, MISMATCH, instances=20, threshold=0.6, seed=1)
        yields[chips] = (r.yield_, sum(r.accuracies) / len(r.accuracies))
    assert TrainParams().chips == "batch"
    assert yields["batch"][1] > yields["fixed"][1] + 0.05
    assert yields["batch"][0] > yields["fixed"][0]


def test_chip_sampling_follows_the_seeds_and_hands_back_the_configured_chip(digits):
    a = _mismatch_trained(digits, "batch").model
    b = _mismatch_trained(digits, "batch").model
    e = _mismatch_trained(digits, "epoch").model
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.conv.weight, e.conv.weight)
    fresh = Main(in_shape=(1, 8, 8), nonidealities=MISMATCH)
    assert torch.equal(a.conv.gain_error, fresh.conv.gain_error)  # chip_seed 0 again


def test_chip_sampling_resumes_exactly(digits):
    cache = CheckpointCache()
    cfg = RunConfig(train=TrainParams(epochs=4, batch_size=64), nonidealities=MISMATCH)
    train(cfg, digits, cache=cache, progress=False, eval_each_epoch=False, stop_after=2)
    resumed = train(cfg, digits, cache=cache, progress=False, eval_each_epoch=False)
    whole = train(cfg, digits, progress=False, eval_each_epoch=False)
    assert resumed.resumed_from == 2
    sa, sb = resumed.model.state_dict(), whole.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_chips_setting_without_mismatch_does_not_change_the_cache_key():
    fixed = RunConfig(train=dataclasses.replace(TrainParams(), chips="fixed"))
    assert fixed.cache_key("d") == RunConfig().cache_key("d")
    mm = RunConfig(nonidealities=MISMATCH)
    assert mm.replace(train=fixed.train).cache_key("d") != mm.cache_key("d")
