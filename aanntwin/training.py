"""Hardware-aware training and evaluation on in-memory tensors.

Training runs the twin's forward with the training nonidealities on (gradients flow through
clip and polynomial as autograd gives them; through quantizers by the straight-through
estimator). Every random draw has an explicit seed: the weight init from ``seed``, each epoch's
shuffle and noise from ``(seed, epoch)``, and with mismatch on each step's chip instance from
``(seed, epoch, step)`` (``train.chips``), so resuming after epoch k from the checkpoint cache
gives exactly the weights of an uninterrupted run on the same torch version, device kind and CPU
thread count (all part of the cache key).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .cache import CheckpointCache
from .config import RunConfig, TrainParams
from .data import Dataset, batches
from .errors import AanntwinError
from .finite import NonFiniteError, check_finite, describe  # noqa: F401 (re-exported)
from .model import Main
from .seeds import derive_seed


def noise_seed(seed: int, run: int) -> int:
    """Seed of the temporal noise of run ``run`` of :func:`evaluate` (``seed``: its argument).

    Public so studies that evaluate a model their own way (the noise sweep, the spec search)
    draw exactly the noise ``evaluate`` draws for that run.
    """
    return derive_seed(seed, "eval", run)


def summed_cross_entropy(logits: Tensor, y: Tensor, top: Tensor | None = None) -> Tensor:
    """``sum_n (log sum_c exp z_nc - z_n,y_n)`` (nats, float64) over the images of class scores
    ``logits`` ``(..., N, C)`` with labels ``y`` ``(N,)``: one sum per leading index.

    What :func:`evaluate`, the noise sweep and the quantization study report as the loss (the
    same arithmetic everywhere). ``F.cross_entropy(reduction="sum")`` agrees to float32 rounding
    but its log-softmax takes ~3x longer on CPUs for few classes (0.10 vs 0.03 ms per 1000
    images). ``top``: ``logits.amax(-1)`` when the caller has it (``max`` gives the predictions
    with it)."""
    if top is None:
        top = logits.amax(-1)
    lse = (logits - top[..., None]).exp_().sum(-1).log_().add_(top)
    picked = logits.gather(-1, y.expand(logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    return (lse - picked).double().sum(-1)


def eval_batch_size(device: torch.device) -> int:
    """Images per pass of :func:`evaluate` by default: 1000 on the CPU (cache-sized slices were
    fastest there), 16384 on a GPU (fewer kernel launches)."""
    return 1000 if device.type == "cpu" else 16384


@dataclass
class EvalResult:
    """Test metrics; with ``runs > 1`` noisy evaluations the mean and std over runs.

    ``confusion[t][p]`` counts images of true class t predicted as p, summed over runs.
    """

    accuracy: float
    accuracy_std: float
    loss: float
    loss_std: float
    runs: int
    n: int
    accuracies: list[float]
    losses: list[float]
    per_class_accuracy: list[float]
    confusion: list[list[int]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> dict[str, Any]:
        return {
            "accuracy_mean": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "loss_mean": self.loss,
            "loss_std": self.loss_std,
            "runs": self.runs,
            "n": self.n,
        }


@torch.no_grad()
def evaluate(
    model: Main,
    x: Tensor,
    y: Tensor,
    *,
    runs: int = 1,
    seed: int = 0,
    batch_size: int | None = None,
) -> EvalResult:
    """Accuracy and loss (cross-entropy weighted by sample count) over ``runs`` noise draws.

    Run r reseeds the model's temporal noise from ``(seed, r)``: the same call gives the same
    numbers. Work stays on the model's device; results come back once at the end.
    ``batch_size`` defaults to 1000 images on the CPU (cache-sized slices were fastest there)
    and 16384 on a GPU (fewer kernel launches).
    """
    if runs < 1:
        raise ValueError(f"runs = {runs}: must be >= 1")
    n, c = len(y), model.n_classes
    device = x.device
    if batch_size is None:
        batch_size = eval_batch_size(device)
    losses = torch.zeros(runs, dtype=torch.float64, device=device)
    correct = torch.zeros(runs, dtype=torch.int64, device=device)
    confusion = torch.zeros(c * c, dtype=torch.int64, device=device)
    was_training = model.training
    model.eval()
    for r in range(runs):
        model.reseed(noise_seed(seed, r))
        for start in range(0, n, batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            out = model(xb)
            top, pred = out.max(1)  # the first maximal index, as argmax
            losses[r] += summed_cross_entropy(out, yb, top)
            correct[r] += (pred == yb).sum()
            confusion += torch.bincount(yb * c + pred, minlength=c * c)
    model.train(was_training)
    check_finite(losses[None], lambda _: describe(model.nonidealities.active()))
    acc = (correct.double() / n).cpu()
    loss = (losses / n).cpu()
    conf = confusion.view(c, c).cpu()
    per_class = (conf.diag().double() / conf.sum(1).clamp(min=1)).tolist()
    std = lambda t: float(t.std()) if runs > 1 else 0.0  # noqa: E731
    return EvalResult(
        accuracy=float(acc.mean()),
        accuracy_std=std(acc),
        loss=float(loss.mean()),
        loss_std=std(loss),
        runs=runs,
        n=n,
        accuracies=acc.tolist(),
        losses=loss.tolist(),
        per_class_accuracy=per_class,
        confusion=conf.tolist(),
    )


@dataclass
class EpochMetrics:
    """One epoch: training loss/accuracy over its batches, test metrics after it."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float | None
    test_accuracy: float | None
    seconds: float
    """Wall time of the training steps of this epoch (s), evaluation excluded."""


@dataclass
class TrainResult:
    model: Main
    history: list[EpochMetrics]
    key: str
    resumed_from: int = 0
    """Epochs read back from the cache rather than computed in this call."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch_seconds(self) -> list[float]:
        return [h.seconds for h in self.history]


def determinism(device: torch.device | str) -> dict[str, Any]:
    """What bit-exact training depends on besides the configuration and the data: the torch
    version, the device kind (and GPU model) and, on CPUs, the thread count (reductions are
    split per thread, so another count sums in another order). Part of the cache key."""
    device = torch.device(device)
    info: dict[str, Any] = {"torch": torch.__version__, "device": device.type}
    if device.type == "cpu":
        info["threads"] = torch.get_num_threads()
    elif device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def chip_seed(tp: TrainParams, epoch: int, step: int) -> int | None:
    """The chip instance of one training step under ``tp.chips`` (None: the configured chip)."""
    if tp.chips == "batch":
        return derive_seed(tp.seed, "train-chip", epoch, step)
    if tp.chips == "epoch":
        return derive_seed(tp.seed, "train-chip", epoch)
    return None


def build_model(
    config: RunConfig,
    data: Dataset,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Main:
    """A freshly initialized Main for ``config`` and ``data`` (weights from ``config.train.seed``)."""
    model = Main(
        config.model,
        data.in_shape,
        data.n_classes,
        nonidealities=config.nonidealities,
        normalization=config.normalization,
    )
    model.reset_parameters(config.train.seed)
    return model.to(device=device, dtype=dtype)


def _optimizer(model: Main, tp: TrainParams, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    if tp.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(
            model.parameters(), lr=tp.lr, weight_decay=tp.weight_decay
        )
    else:
        opt = torch.optim.SGD(
            model.parameters(),
            lr=tp.lr,
            momentum=tp.momentum,
            nesterov=tp.nesterov and tp.momentum > 0,
            weight_decay=tp.weight_decay,
        )
    if tp.schedule == "onecycle" and steps > 0:
        sched: Any = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=tp.lr, total_steps=steps, cycle_momentum=False
        )
    else:
        sched = None
    return opt, sched


def _check_finite(model: Main, metrics: EpochMetrics, tp: TrainParams) -> None:
    """A run that diverged (NaN/inf loss or weights) is an error, never written or cached."""
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad or not math.isfinite(metrics.train_loss):
        raise AanntwinError(
            f"training diverged in epoch {metrics.epoch}: train loss {metrics.train_loss}, "
            f"non-finite weights in {bad or 'none'}; nothing written (lower train.lr = {tp.lr:g} "
            "or change the optimizer)"
        )


def _resumable(
    cache: CheckpointCache, key: str, device: torch.device, model: Main, tp: TrainParams
) -> tuple[int, dict[str, Any], list[EpochMetrics]] | None:
    """The newest checkpoint that is one of this run: after epoch ``e`` <= the run's epochs, a
    history of epochs 1..e, the model's parameter names and shapes, the optimizer's and the
    scheduler's state. Anything else (a file that loads but holds something else, one renamed
    to another epoch) is skipped, as an unreadable one is: recomputed, never trusted."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for epoch, state in cache.readable(key, map_location=device):
        try:
            history = [EpochMetrics(**h) for h in state["history"]]
            weights = state["model"]
            if not (
                1 <= epoch <= tp.epochs
                and [h.epoch for h in history] == list(range(1, epoch + 1))
                and {k: tuple(v.shape) for k, v in weights.items()} == shapes
                and isinstance(state["optimizer"], dict)
                and isinstance(state["scheduler"], dict)
            ):
                continue
        except (KeyError, TypeError, AttributeError):
            continue
        return epoch, state, history
    return None


def train(
    config: RunConfig,
    data: Dataset,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    cache: CheckpointCache | None = None,
    progress: bool = True,
    eval_each_epoch: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train ``config`` on ``data`` (moved to ``device`` once), resuming from ``cache``.

    ``stop_after`` ends the call after that many epochs in total (the checkpoint is kept, a
    later call resumes): what an interruption looks like, on purpose.
    """
    tp = config.train
    device = torch.device(device)
    key = config.cache_key(f"{data.fingerprint}:{dtype}", determinism(device))
    data = data.to(device, dtype)
    model = build_model(config, data, device, dtype)
    n = len(data.y_train)
    steps_per_epoch = -(-n // tp.batch_size)
    history: list[EpochMetrics] = []
    start, state = 0, None
    if cache is not None and (found := _resumable(cache, key, device, model, tp)) is not None:
        start, state, history = found
        model.load_state_dict(state["model"])
    end = tp.epochs if stop_after is None else min(tp.epochs, stop_after)
    if start >= end:  # finished: no optimizer (torch.optim imports torch._dynamo: ~70 MB, ~1 s)
        return TrainResult(model, history, key, resumed_from=start)
    opt, sched = _optimizer(model, tp, tp.epochs * steps_per_epoch)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
    bar = tqdm(
        total=(end - start) * steps_per_epoch,
        disable=not progress,
        desc=f"train {data.name}",
        unit="step",
        leave=False,
    )
    chunk = max(1, steps_per_epoch // 50)
    sample_chips = model.has_mismatch() and tp.chips != "fixed"
    # Settings do not change during training: clamp after each step only where a stage has a
    # bound (the check per step cost more than the clamp-free step's Python overhead allows).
    project = any(b is not None for b in model.weight_bounds().values())
    for epoch in range(start, end):
        model.train()
        model.reseed(derive_seed(tp.seed, "train-noise", epoch))
        shuffle = torch.Generator().manual_seed(derive_seed(tp.seed, "shuffle", epoch))
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        t0 = time.perf_counter()
        for step, idx in enumerate(batches(n, tp.batch_size, shuffle, device)):
            if sample_chips and (step == 0 or tp.chips == "batch"):
                model.draw_mismatch(chip_seed(tp, epoch, step))  # type: ignore[arg-type]
            xb, yb = data.train_images(idx), data.y_train[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if project:
                model.project_weights()  # latent weights stay in the programmable range
            if sched is not None:
                sched.step()
            loss_sum += loss.detach() * len(idx)
            correct += (out.detach().argmax(1) == yb).sum()
            if (step + 1) % chunk == 0:
                bar.update(chunk)
        seconds = time.perf_counter() - t0
        bar.update(steps_per_epoch - (steps_per_epoch // chunk) * chunk)
        if sample_chips:  # evaluate (and hand back) the configured chip
            model.draw_mismatch(config.nonidealities.chip_seed)
        test, nonfinite = None, None
        if eval_each_epoch and len(data.y_test):
            try:
                test = evaluate(model, data.x_test, data.y_test, seed=derive_seed(tp.seed, "test"))
            except NonFiniteError as exc:  # a diverged training says so first, below
                nonfinite = exc
        metrics = EpochMetrics(
            epoch=epoch + 1,
            train_loss=float(loss_sum) / n,
            train_accuracy=float(correct) / n,
            test_loss=test.loss if test else None,
            test_accuracy=test.accuracy if test else None,
            seconds=seconds,
        )
        _check_finite(model, metrics, tp)
        if nonfinite is not None:
            raise nonfinite
        history.append(metrics)
        bar.set_postfix(loss=f"{metrics.train_loss:.3f}", test_acc=metrics.test_accuracy)
        if cache is not None:
            state = {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else {},
                "history": [dataclasses.asdict(h) for h in history],
                "config": config.to_json(),
            }
            cache.save(key, epoch + 1, state)
    bar.close()
    return TrainResult(model, history, key, resumed_from=start)
