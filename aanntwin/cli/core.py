"""``aanntwin train``, ``evaluate`` and ``info``: train a model, evaluate a trained folder, show
a configuration's geometry and hardware counts."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..cache import CheckpointCache
from ..config import Nonidealities, RunConfig, load_config, load_nonidealities
from ..data import load_dataset
from ..errors import AanntwinError
from ..io import check_output_path, output_dir
from ..limits import limits
from ..limits import warnings as limit_warnings
from ..runs import (
    RUN_FILES,
    RUN_OWNS,
    check_fits,
    check_trained_on,
    load_run,
    read_config,
    run_geometry,
    write_run,
)
from ..studies.export import evaluate_export
from ..training import evaluate, train
from .common import (
    add_data_dir,
    add_dataset,
    add_device,
    add_threads,
    bounded_int,
    epochs_int,
    runs_int,
    seed_int,
    torch_device,
)


def _widths(text: str) -> tuple[int, ...]:
    if text.strip() in ("", "none"):
        return ()
    try:
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated widths, got {text!r}") from None


def _add_config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration (flags override the --config file)")
    g.add_argument("--config", help="run configuration JSON (sections model/train/...)")
    add_dataset(g, help="dataset (default: digits)", sort=True)
    g.add_argument("--channels", type=int, help="conv output channels")
    g.add_argument("--kernel", type=int, help="conv kernel side (pixels)")
    g.add_argument("--stride", type=int, help="conv stride (pixels)")
    g.add_argument("--padding", type=int, help="conv zero padding (pixels)")
    g.add_argument("--pool", type=int, help="max-pool window (1 = none)")
    g.add_argument("--hidden", type=_widths, help="hidden stage widths, e.g. 64,32")


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime")
    add_data_dir(g)
    add_device(g)
    add_threads(g)
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_parsers(sub: Any) -> None:
    """Register ``train``, ``evaluate`` and ``info``."""
    t = sub.add_parser("train", help="train (hardware-aware) and write weights + metrics")
    _add_config_args(t)
    tg = t.add_argument_group("training (override the config file)")
    tg.add_argument("--epochs", type=epochs_int)
    tg.add_argument("--batch-size", type=bounded_int(1, 1_000_000))
    tg.add_argument("--lr", type=float, help="(peak) learning rate")
    tg.add_argument("--optimizer", choices=["adam", "sgd"])
    tg.add_argument("--momentum", type=float)
    tg.add_argument("--weight-decay", type=float)
    tg.add_argument("--schedule", choices=["onecycle", "constant"])
    tg.add_argument("--seed", type=seed_int)
    tg.add_argument(
        "--chips",
        choices=["batch", "epoch", "fixed"],
        help="chip instances seen by mismatch-aware training: a fresh one per batch (default) "
        "or per epoch, or only the chip_seed of --nonidealities (fixed)",
    )
    tg.add_argument("--nonidealities", help="training nonidealities JSON (flat, reference names)")
    tg.add_argument("--no-cache", action="store_true", help="neither read nor write checkpoints")
    t.add_argument("--out", required=True, help="output folder")
    _add_runtime_args(t)
    t.set_defaults(run=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a trained folder, JSON to stdout")
    e.add_argument("dir", nargs="?", help="folder written by 'aanntwin train'")
    e.add_argument("--export", help="evaluate a hardware export folder instead (aanntwin export)")
    e.add_argument("--nonidealities", help="nonidealities JSON (default: those it trained with)")
    e.add_argument("--ideal", action="store_true", help="evaluate with every nonideality off")
    e.add_argument("--runs", type=runs_int, default=1, help="noisy repetitions (mean, std)")
    e.add_argument("--seed", type=seed_int, default=0, help="seed of the evaluation noise")
    add_dataset(e, help="default: the one it trained on", sort=True)
    e.add_argument(
        "--batch-size", type=bounded_int(1, 1_000_000), help="images per pass (default: by device)"
    )
    _add_runtime_args(e)
    e.set_defaults(run=cmd_evaluate)

    i = sub.add_parser("info", help="geometry and hardware counts of a configuration")
    _add_config_args(i)
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.set_defaults(run=cmd_info)


def _run_config(args: argparse.Namespace) -> Any:
    cfg = load_config(args.config) if args.config else RunConfig()
    if args.dataset:
        cfg = cfg.replace(dataset=args.dataset)
    model = {
        k: getattr(args, k) for k in ("channels", "kernel", "stride", "padding", "pool", "hidden")
    }
    model = {k: v for k, v in model.items() if v is not None}
    if model:
        cfg = cfg.replace(model=cfg.model.replace(**model))
    train_keys = (
        "epochs",
        "batch_size",
        "lr",
        "optimizer",
        "momentum",
        "weight_decay",
        "schedule",
        "seed",
        "chips",
    )
    train = {k: getattr(args, k, None) for k in train_keys}
    train = {k: v for k, v in train.items() if v is not None}
    if train:
        cfg = cfg.replace(train=cfg.train.replace(**train))
    if getattr(args, "nonidealities", None):
        cfg = cfg.replace(nonidealities=load_nonidealities(args.nonidealities))
    return cfg


def cmd_train(args: argparse.Namespace) -> int:

    cfg: RunConfig = _run_config(args)
    if cfg.train.epochs < 1:
        where = f" (from --config {args.config})" if args.config else ""
        raise AanntwinError(f"train.epochs = {cfg.train.epochs}{where}: trains nothing; use >= 1")
    try:
        run_geometry(cfg)  # fail before loading any data
    except AanntwinError as exc:
        if not args.config:
            raise
        m = cfg.model  # name where the geometry came from
        raise AanntwinError(f"{args.config}: model (kernel {m.kernel}, stride {m.stride}, padding "
                            f"{m.padding}, pool {m.pool}): {exc}") from None  # fmt: skip
    device = torch_device(args)
    out = check_output_path(args.out, replaces=RUN_FILES, owns=RUN_OWNS)
    data = load_dataset(cfg.dataset, args.data_dir)
    t0 = time.perf_counter()
    result = train(
        cfg,
        data,
        device=device,
        cache=None if args.no_cache else CheckpointCache(),
        progress=not args.no_progress,
    )
    wall = time.perf_counter() - t0
    model = result.model
    test = evaluate(model, data.x_test.to(device), data.y_test.to(device))
    with output_dir(out, replaces=RUN_FILES, owns=RUN_OWNS) as tmp:
        write_run(tmp, cfg, data, result, test, device, wall)
    cached = f" ({result.resumed_from} epoch(s) from cache)" if result.resumed_from else ""
    print(
        f"{data.name}: test accuracy {100 * test.accuracy:.2f} % (loss {test.loss:.4f}) after "
        f"{cfg.train.epochs} epochs in {wall:.1f} s{cached}; wrote {out}/"
    )
    for line in _weight_bound_lines(model.weight_bounds(cfg.nonidealities), cfg.nonidealities):
        print(line)
    for line in limit_warnings(limits(model, cfg.normalization)):
        print(f"warning: {line}", file=sys.stderr)
    return 0


def _weight_bound_lines(bounds: dict[str, float | None], nl: Nonidealities) -> list[str]:
    """One line per bound training kept the weights within (weight units), naming its stages."""
    groups: dict[tuple[float, str], list[str]] = {}
    for name, bound in bounds.items():
        if bound is None:
            continue
        s = nl.stage("conv2d" if name == "conv" else "linear")
        why = "weight range" if s.weight_range == bound else f"{s.weight_bits}-bit weight_ref"
        groups.setdefault((bound, why), []).append(name)
    return [f"weights kept within +-{b:g} ({why}): {', '.join(names)}"
            for (b, why), names in groups.items()]  # fmt: skip


def cmd_evaluate(args: argparse.Namespace) -> int:

    if args.ideal and args.nonidealities:
        raise AanntwinError("--ideal and --nonidealities exclude each other")
    if args.export:
        if args.dir:
            raise AanntwinError("give either a trained folder or --export, not both")

        device = torch_device(args)
        nl = load_nonidealities(args.nonidealities) if args.nonidealities else None
        if args.ideal:
            nl = Nonidealities()
        report = evaluate_export(args.export, args.runs, args.seed, args.dataset, args.data_dir,
                                 str(device), nonidealities=nl)  # fmt: skip
        print(json.dumps(report, indent=2))
        return 0
    if not args.dir:
        raise AanntwinError("give a folder written by 'aanntwin train' (or --export DIR)")
    folder = Path(args.dir)
    if not (folder / "config.json").exists():
        raise AanntwinError(
            f"{folder}: no config.json here; pass a folder written by 'aanntwin train'"
        )
    cfg = read_config(folder)
    if args.ideal:
        nl = Nonidealities()
    elif args.nonidealities:
        nl = load_nonidealities(args.nonidealities)
    else:
        nl = cfg.nonidealities
    device = torch_device(args)
    data = load_dataset(args.dataset or cfg.dataset, args.data_dir)
    if not args.dataset:
        check_trained_on(folder, data, ", or pass --dataset to use this data deliberately")
    else:
        check_fits(folder, data)
    _, model = load_run(folder, nl, device, data.name)
    res = evaluate(
        model,
        data.x_test.to(device),
        data.y_test.to(device),
        runs=args.runs,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    report = {
        **res.summary(),
        "dataset": data.name,
        "device": str(device),
        "nonidealities": nl.active(),
        "per_class_accuracy": res.per_class_accuracy,
    }
    found = limits(model, cfg.normalization)
    if found:
        report["limits"] = found
    print(json.dumps(report, indent=2))
    for line in limit_warnings(found):
        print(f"warning: {line}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:

    cfg = _run_config(args)
    g = run_geometry(cfg)
    if args.json:
        print(
            json.dumps(
                {"dataset": cfg.dataset, "model": cfg.model.to_dict(), **g.to_dict()}, indent=2
            )
        )
        return 0
    print(
        f"dataset {cfg.dataset}, input {'x'.join(map(str, g.in_shape))}, "
        f"conv out {'x'.join(map(str, g.conv_out))}, after pool {'x'.join(map(str, g.pool_out))}"
    )
    print(f"{'stage':<10}{'MACs':>10}{'fan-in':>10}{'multipliers':>14}")
    for s in g.stages:
        print(f"{s.name:<10}{s.macs:>10,}{s.fan_in:>10,}{s.multipliers:>14,}")
    print(f"{'total':<10}{g.macs:>10,}{'':>10}{g.multipliers:>14,}")
    print("(conv MACs are counted before pooling: one per output position and channel)")
    return 0
