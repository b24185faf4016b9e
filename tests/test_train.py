import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from aanntwin.cache import CheckpointCache
from aanntwin.config import Nonidealities, Normalization, RunConfig, TrainParams
from aanntwin.model import Main
from aanntwin.training import evaluate, train
from tests.conftest import EVERYTHING

QUICK = RunConfig(train=TrainParams(epochs=3, batch_size=64))


def _weights(result):
    return {k: v.clone() for k, v in result.model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_learns_digits(digits):
    result = train(QUICK.replace(train=QUICK.train.replace(epochs=8)), digits, progress=False)
    assert [h.epoch for h in result.history] == list(range(1, 9))
    assert result.history[-1].test_accuracy > 0.85
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_same_seed_gives_identical_weights_and_another_seed_differs(digits):
    a = _weights(train(QUICK, digits, progress=False))
    b = _weights(train(QUICK, digits, progress=False))
    c = _weights(train(QUICK.replace(train=QUICK.train.replace(seed=1)), digits, progress=False))
    assert _same(a, b)
    assert not _same(a, c)


@pytest.mark.parametrize(
    "nl",
    [
        Nonidealities(),
        Nonidealities(
            input_noise=0.1, relu_out_noise=0.05, conv2d_weight_bits=3, linear_gain_mismatch=0.05
        ),
    ],
)
def test_resume_after_interruption_equals_an_uninterrupted_run(digits, tmp_path, nl):
    cfg = QUICK.replace(train=QUICK.train.replace(epochs=4), nonidealities=nl)
    full = _weights(train(cfg, digits, progress=False))
    cache = CheckpointCache(tmp_path)
    part = train(cfg, digits, cache=cache, progress=False, stop_after=2)
    assert len(part.history) == 2
    resumed = train(cfg, digits, cache=cache, progress=False)
    assert resumed.resumed_from == 2 and len(resumed.history) == 4
    assert _same(_weights(resumed), full)
    again = train(cfg, digits, cache=cache, progress=False)  # finished: read back, no training
    assert again.resumed_from == 4 and _same(_weights(again), full)


def test_a_damaged_checkpoint_is_recomputed_not_trusted(digits, tmp_path):
    cache = CheckpointCache(tmp_path)
    first = train(QUICK, digits, cache=cache, progress=False, stop_after=1)
    (cache.folder(first.key) / "epoch-0001.pt").write_bytes(b"torn write")
    result = train(QUICK, digits, cache=cache, progress=False)
    assert result.resumed_from == 0
    assert _same(_weights(result), _weights(train(QUICK, digits, progress=False)))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda folder: torch.save({}, folder / "epoch-0001.pt"),  # loads, holds nothing
        lambda folder: (folder / "epoch-0001.pt").rename(folder / "epoch-0003.pt"),
        lambda folder: torch.save(
            {"model": {}, "history": [], "optimizer": {}, "scheduler": {}}, folder / "epoch-0002.pt"
        ),  # fmt: skip
    ],
    ids=["empty", "renamed", "wrong-model"],
)
def test_a_checkpoint_that_is_not_of_this_run_is_recomputed(digits, tmp_path, tamper):
    """A file that loads but holds something else crashed training (KeyError: 'model'); one
    renamed to epoch 3 was taken as 3 finished epochs ('3 epoch(s) from cache')."""
    cache = CheckpointCache(tmp_path)
    first = train(QUICK, digits, cache=cache, progress=False, stop_after=1)
    tamper(cache.folder(first.key))
    result = train(QUICK, digits, cache=cache, progress=False)
    assert result.resumed_from in (0, 1) and [h.epoch for h in result.history] == [1, 2, 3]
    assert _same(_weights(result), _weights(train(QUICK, digits, progress=False)))


def test_an_unwritable_cache_warns_and_training_goes_on(digits, tmp_path):
    """A cache root that cannot be written (here a file) failed the run after its training,
    losing it, with a message that named neither the cache nor --no-cache."""
    (tmp_path / "cachefile").write_text("x")
    cache = CheckpointCache(tmp_path / "cachefile" / "checkpoints")
    with pytest.warns(UserWarning, match=r"checkpoint cache .*cachefile.*--no-cache") as caught:
        result = train(QUICK, digits, cache=cache, progress=False)
    assert len([w for w in caught if "checkpoint cache" in str(w.message)]) == 1  # once
    assert _same(_weights(result), _weights(train(QUICK, digits, progress=False)))


def test_the_command_line_shows_a_warning_as_one_line(tmp_path):
    import os

    (tmp_path / "cachefile").write_text("x")
    env = {**os.environ, "AANNTWIN_CACHE": str(tmp_path / "cachefile")}
    argv = ["train", "--epochs", "1", "--threads", "1", "--no-progress", "--out",
            str(tmp_path / "run")]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "aanntwin", *argv], env=env, text=True,
                          capture_output=True, timeout=300)  # fmt: skip
    assert done.returncode == 0 and (tmp_path / "run" / "weights.safetensors").exists()
    err = done.stderr.strip()
    assert err.startswith("aanntwin train: warning: checkpoint cache ") and "\n" not in err, err


def test_cache_key_covers_what_changes_the_weights(digits):
    base = QUICK.cache_key(digits.fingerprint)
    assert QUICK.cache_key(digits.fingerprint) == base
    changed = [
        QUICK.replace(normalization=Normalization(max_out=0.5)),
        QUICK.replace(nonidealities=Nonidealities(input_noise=0.01)),
        QUICK.replace(train=QUICK.train.replace(seed=9)),
        QUICK.replace(train=QUICK.train.replace(lr=0.02)),
        QUICK.replace(model=QUICK.model.replace(channels=8)),
    ]
    keys = {c.cache_key(digits.fingerprint) for c in changed}
    assert base not in keys and len(keys) == len(changed)
    assert QUICK.cache_key("other data") != base


def test_evaluate_weights_loss_by_sample_count_and_builds_the_confusion(digits):
    model = Main(in_shape=(1, 8, 8))
    model.reset_parameters(0)
    x, y = digits.x_test, digits.y_test
    res = evaluate(model, x, y, batch_size=7)  # uneven last batch
    with torch.no_grad():
        out = model(x)
    assert res.loss == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-5)
    assert res.accuracy == pytest.approx((out.argmax(1) == y).double().mean().item())
    conf = torch.tensor(res.confusion)
    assert conf.sum().item() == len(y)
    assert conf.sum(1).tolist() == torch.bincount(y, minlength=10).tolist()
    assert res.per_class_accuracy[3] == pytest.approx(conf[3, 3].item() / conf[3].sum().item())


def test_noisy_evaluation_over_runs_is_reproducible(digits):
    model = Main(in_shape=(1, 8, 8), nonidealities=Nonidealities(input_noise=0.5))
    model.reset_parameters(0)
    a = evaluate(model, digits.x_test, digits.y_test, runs=5, seed=1)
    b = evaluate(model, digits.x_test, digits.y_test, runs=5, seed=1)
    c = evaluate(model, digits.x_test, digits.y_test, runs=5, seed=2)
    assert a.accuracies == b.accuracies and a.accuracies != c.accuracies
    assert a.runs == 5 and a.accuracy_std > 0
    assert a.accuracy == pytest.approx(sum(a.accuracies) / 5)
    assert sum(map(sum, a.confusion)) == 5 * len(digits.y_test)


def test_hardware_aware_training_with_every_kind_on(digits):
    nl = Nonidealities(**EVERYTHING)
    cfg = QUICK.replace(nonidealities=nl, train=QUICK.train.replace(epochs=6))
    result = train(cfg, digits, progress=False)
    assert result.history[-1].test_accuracy > 0.6  # it learns through every nonideality


def test_a_finished_run_is_read_back_without_building_an_optimizer(digits, tmp_path):
    """A finished checkpoint is read back without an optimizer: building one imports
    torch._dynamo (~70 MB and ~1 s in every process that only loads models, e.g. sweep and spec
    workers, notebook kernels). Checked in a fresh interpreter, as this one imported it."""
    done = train(QUICK, digits, cache=CheckpointCache(tmp_path), progress=False)
    code = (
        "import sys, torch\n"
        "torch.set_num_threads(1)  # as this process (part of the cache key)\n"
        "from aanntwin.cache import CheckpointCache\n"
        "from aanntwin.config import RunConfig, TrainParams\n"
        "from aanntwin.data import load_digits\n"
        "from aanntwin.training import train\n"
        "cfg = RunConfig(train=TrainParams(epochs=3, batch_size=64))\n"
        f"r = train(cfg, load_digits(), cache=CheckpointCache({str(tmp_path)!r}),"
        " progress=False)\n"
        f"torch.save(r.model.state_dict(), {str(tmp_path / 'w.pt')!r})\n"
        "print(r.resumed_from, len(r.history), 'torch._dynamo' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["3", "3", "False"]
    read_back = torch.load(tmp_path / "w.pt", weights_only=True)
    assert _same(read_back, _weights(done))
