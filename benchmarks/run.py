"""Core-twin benchmarks: one JSON object per line ({"figure", "value", "unit", ...context}).

Figures (MNIST from --data-dir, default ../shared/data/mnist beside the checkout):
- train_default_seconds / train_plain_torch_seconds / train_ratio: the twin's trainer
  (``train()``, the default TrainParams: model set-up, the steps, each epoch's training loss and
  accuracy and its test-set loss and accuracy) against a plain torch loop doing the same on a
  model of the same geometry, same optimizer, schedule and batches, alternated in one run
  (medians over --repeat); train_steps_ratio: the optimizer steps alone (the twin's epoch
  seconds against the plain loop's);
- eval_reference_seconds / eval_floor_seconds / eval_ratio: a 10k-image test pass with all the
  reference nonidealities on, against its floor (plain conv-ReLU-linear over the same weights plus
  drawing the same number of normal samples);
- reference_epoch_seconds: one epoch at the reference hyperparameters (batch 1, SGD lr 1e-3),
  beside a plain torch model doing the same (reference_epoch_plain_torch_seconds).

Run: ``make bench`` or ``python benchmarks/run.py [--threads N] [--repeat N] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from aanntwin import Nonidealities, RunConfig, TrainParams, load_dataset  # noqa: E402
from aanntwin.data import batches  # noqa: E402
from aanntwin.model import Main  # noqa: E402
from aanntwin.seeds import derive_seed  # noqa: E402
from aanntwin.training import evaluate, train  # noqa: E402

REFERENCE = Nonidealities(
    input_noise=0.1,
    conv2d_out_noise=0.05,
    relu_out_noise=0.05,
    linear_out_noise=0.05,
    conv2d_input_clip=2.0,
    linear_input_clip=2.0,
    conv2d_input_nonlin=(0.0, 1.0, 0.1),
    linear_input_nonlin=(0.0, 1.0, 0.1),
)


def emit(figure: str, value: float, unit: str, **context: object) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 6), "unit": unit, **context}))
    sys.stdout.flush()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_train(data, tp: TrainParams, device: torch.device) -> tuple[float, float, float]:
    """Plain torch, same geometry, optimizer, schedule and batches, doing what the twin's trainer
    does besides the steps: the epoch's training loss and accuracy, and the test set's loss and
    accuracy after each epoch (its history). Returns (seconds, seconds of the steps alone, final
    test accuracy)."""
    torch.manual_seed(tp.seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 6, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(676, 10)).to(
        device
    )
    opt = (
        torch.optim.SGD(model.parameters(), lr=tp.lr, momentum=tp.momentum, nesterov=tp.nesterov)
        if tp.optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=tp.lr)
    )
    n = len(data.y_train)
    steps = -(-n // tp.batch_size)
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=tp.lr, total_steps=tp.epochs * steps, cycle_momentum=False
        )
        if tp.schedule == "onecycle"
        else None
    )
    sync(device)
    t0 = time.perf_counter()
    step_seconds, acc, history = 0.0, 0.0, []
    for epoch in range(tp.epochs):
        gen = torch.Generator().manual_seed(derive_seed(tp.seed, "shuffle", epoch))
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        t_steps = time.perf_counter()
        for idx in batches(n, tp.batch_size, gen, device):
            xb, yb = data.x_train[idx], data.y_train[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            loss_sum += loss.detach() * len(idx)
            correct += (out.detach().argmax(1) == yb).sum()
        sync(device)
        step_seconds += time.perf_counter() - t_steps
        with torch.no_grad():  # the epoch's test loss and accuracy, in evaluate()'s slices
            test_loss = torch.zeros((), dtype=torch.float64, device=device)
            test_correct = torch.zeros((), dtype=torch.int64, device=device)
            step = 1000 if device.type == "cpu" else 16384
            for i in range(0, len(data.y_test), step):
                out = model(data.x_test[i : i + step])
                yb = data.y_test[i : i + step]
                test_loss += F.cross_entropy(out, yb, reduction="sum").double()
                test_correct += (out.argmax(1) == yb).sum()
        acc = float(test_correct) / len(data.y_test)
        history.append(
            (float(loss_sum) / n, float(correct) / n, float(test_loss) / len(data.y_test))
        )
    sync(device)
    return time.perf_counter() - t0, step_seconds, acc


def bench_training(data, device, repeat: int, ctx: dict) -> None:
    cfg = RunConfig(dataset="mnist")
    tp = cfg.train
    twin_s, plain_s, twin_acc, plain_acc, ratios, step_ratios = [], [], [], [], [], []
    # Warm-up, untimed: the first optimizer a process builds imports torch._dynamo (~1 s), which
    # would be charged to whichever loop runs first.
    torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=tp.lr)
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        result = train(cfg, data, device=device, progress=False)
        sync(device)
        twin = time.perf_counter() - t0
        twin_acc.append(evaluate(result.model, data.x_test, data.y_test).accuracy)
        plain, plain_steps, acc = plain_train(data, tp, device)
        plain_acc.append(acc)
        twin_s.append(twin)
        plain_s.append(plain)
        ratios.append(twin / plain)
        step_ratios.append(sum(result.epoch_seconds) / plain_steps)
    sched = {
        "optimizer": tp.optimizer,
        "lr": tp.lr,
        "batch_size": tp.batch_size,
        "epochs": tp.epochs,
        "schedule": tp.schedule,
        "repeat": repeat,
    }
    emit(
        "train_default_seconds",
        statistics.median(twin_s),
        "s",
        accuracy=twin_acc[0],
        runs=twin_s,
        **sched,
        **ctx,
    )
    emit(
        "train_plain_torch_seconds",
        statistics.median(plain_s),
        "s",
        accuracy=plain_acc[0],
        runs=plain_s,
        **sched,
        **ctx,
    )
    emit("train_ratio", statistics.median(ratios), "twin/plain", **ctx)
    emit("train_steps_ratio", statistics.median(step_ratios), "twin/plain", **ctx)
    emit("train_default_accuracy", twin_acc[0], "fraction", dataset="mnist", **ctx)


def bench_evaluation(data, device, repeat: int, ctx: dict) -> None:
    model = Main(nonidealities=REFERENCE).to(device)
    model.reset_parameters(0)
    x, y = data.x_test, data.y_test
    n_draws = x.numel() + 2 * 676 * len(y) + 10 * len(y)
    gen = torch.Generator(device=device).manual_seed(0)
    w_conv, b_conv = model.conv.weight.detach(), model.conv.bias.detach()
    w_lin, b_lin = model.linear.weight.detach(), model.linear.bias.detach()
    scratch = torch.empty(n_draws, device=device)

    step = 1000 if device.type == "cpu" else 16384  # evaluate()'s default slices

    @torch.no_grad()
    def floor() -> None:
        for i in range(0, len(y), step):
            h = F.relu(F.conv2d(x[i : i + step], w_conv, b_conv, 2, 1)).flatten(1)
            F.linear(h, w_lin, b_lin).argmax(1)
        scratch.normal_(generator=gen)

    def twin() -> None:
        evaluate(model, x, y)

    def ideal() -> None:
        evaluate(ideal_model, x, y)

    ideal_model = Main().to(device)
    ideal_model.load_state_dict(model.state_dict())
    times: dict[str, list[float]] = {"twin": [], "floor": [], "ideal": []}
    for fn in (twin, floor, ideal):  # warm-up
        fn()
    for _ in range(repeat):
        for name, fn in (("twin", twin), ("floor", floor), ("ideal", ideal)):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    ratios = [a / b for a, b in zip(times["twin"], times["floor"], strict=True)]
    common = {"images": len(y), "normal_draws": n_draws, "repeat": repeat, **ctx}
    emit("eval_reference_seconds", statistics.median(times["twin"]), "s", **common)
    emit("eval_floor_seconds", statistics.median(times["floor"]), "s", **common)
    emit("eval_ideal_seconds", statistics.median(times["ideal"]), "s", **common)
    emit("eval_ratio", statistics.median(ratios), "twin/floor", **common)


def bench_reference_epoch(data, device, ctx: dict) -> None:
    cfg = RunConfig(
        dataset="mnist",
        train=TrainParams(
            epochs=1,
            batch_size=1,
            lr=1e-3,
            optimizer="sgd",
            momentum=0.0,
            nesterov=False,
            schedule="constant",
        ),
    )
    sync(device)
    t0 = time.perf_counter()
    result = train(cfg, data, device=device, progress=False, eval_each_epoch=False)
    sync(device)
    seconds = time.perf_counter() - t0
    acc = evaluate(result.model, data.x_test, data.y_test).accuracy
    plain, plain_acc = plain_train(data, cfg.train, device)
    common = {"batch_size": 1, "lr": 1e-3, "optimizer": "sgd", **ctx}
    emit("reference_epoch_seconds", seconds, "s", accuracy=acc, **common)
    emit("reference_epoch_plain_torch_seconds", plain, "s", accuracy=plain_acc, **common)


def main() -> int:
    repo = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(repo.parent / "shared" / "data" / "mnist"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3, help="repeats of the training pair")
    p.add_argument("--eval-repeat", type=int, default=15)
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", choices=["train", "eval", "epoch"], action="append")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_dataset("mnist", args.data_dir, download=False).to(device)
    ctx = {"threads": torch.get_num_threads(), "device": str(device), "torch": torch.__version__}
    only = set(args.only or ["train", "eval", "epoch"])
    if "eval" in only:
        bench_evaluation(data, device, args.eval_repeat, ctx)
    if "train" in only:
        bench_training(data, device, args.repeat, ctx)
    if "epoch" in only:
        bench_reference_epoch(data, device, ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
