"""The ``aanntwin`` command: ``train``, ``evaluate``, ``info``.

A user error (bad config field, geometry, dataset file, argument) prints one line on stderr and
exits with status 2; it never shows a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .config import IN_SHAPES
from .errors import AanntwinError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


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
    g.add_argument("--dataset", choices=sorted(IN_SHAPES), help="dataset (default: digits)")
    g.add_argument("--channels", type=int, help="conv output channels")
    g.add_argument("--kernel", type=int, help="conv kernel side (pixels)")
    g.add_argument("--stride", type=int, help="conv stride (pixels)")
    g.add_argument("--padding", type=int, help="conv zero padding (pixels)")
    g.add_argument("--pool", type=int, help="max-pool window (1 = none)")
    g.add_argument("--hidden", type=_widths, help="hidden stage widths, e.g. 64,32")


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument("--data-dir", help="folder with the IDX files (or $AANNTWIN_DATA_DIR)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    g.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aanntwin", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="train (hardware-aware) and write weights + metrics")
    _add_config_args(t)
    tg = t.add_argument_group("training (override the config file)")
    tg.add_argument("--epochs", type=int)
    tg.add_argument("--batch-size", type=int)
    tg.add_argument("--lr", type=float, help="(peak) learning rate")
    tg.add_argument("--optimizer", choices=["adam", "sgd"])
    tg.add_argument("--momentum", type=float)
    tg.add_argument("--weight-decay", type=float)
    tg.add_argument("--schedule", choices=["onecycle", "constant"])
    tg.add_argument("--seed", type=int)
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

    e = sub.add_parser("evaluate", help="evaluate a trained folder, JSON to stdout")
    e.add_argument("dir", nargs="?", help="folder written by 'aanntwin train'")
    e.add_argument("--export", help="evaluate a hardware export folder instead (aanntwin export)")
    e.add_argument("--nonidealities", help="nonidealities JSON (default: those it trained with)")
    e.add_argument("--ideal", action="store_true", help="evaluate with every nonideality off")
    e.add_argument("--runs", type=positive_int, default=1, help="noisy repetitions (mean, std)")
    e.add_argument("--seed", type=int, default=0, help="seed of the evaluation noise")
    e.add_argument("--dataset", choices=sorted(IN_SHAPES), help="default: the one it trained on")
    e.add_argument("--batch-size", type=positive_int, help="images per pass (default: by device)")
    _add_runtime_args(e)

    i = sub.add_parser("info", help="geometry and hardware counts of a configuration")
    _add_config_args(i)
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")

    from .studies import normalize as normalize_study
    from .studies import weights as weights_study
    from .studies.cli import add_sweep_parser

    normalize_study.add_parser(sub)
    weights_study.add_weights_parser(sub)
    from . import characterize_cli
    from .specs_cli import add_parsers as add_spec_parsers

    add_spec_parsers(sub)
    characterize_cli.add_parser(sub)
    from . import export_cli

    export_cli.add_parser(sub)
    from . import workbook_cli

    workbook_cli.add_parser(sub)
    add_sweep_parser(sub, _Parser)
    return parser


def _run_config(args: argparse.Namespace) -> Any:
    from .config import RunConfig, load_config, load_nonidealities

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


def _device(args: argparse.Namespace) -> Any:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise AanntwinError(
            f"--device {args.device!r}: not a device (cpu, cuda, cuda:N, auto)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AanntwinError(f"--device {args.device}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise AanntwinError(
            f"--device {args.device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def cmd_train(args: argparse.Namespace) -> int:
    from .cache import CheckpointCache
    from .config import RunConfig
    from .data import load_dataset
    from .model import geometry
    from .runs import write_run
    from .training import evaluate, train

    cfg: RunConfig = _run_config(args)
    geometry(cfg.model, IN_SHAPES[cfg.dataset], 10)  # fail before loading any data
    device = _device(args)
    out = Path(args.out)
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
    write_run(out, cfg, data, result, test, device, wall)
    cached = f" ({result.resumed_from} epoch(s) from cache)" if result.resumed_from else ""
    print(
        f"{data.name}: test accuracy {100 * test.accuracy:.2f} % (loss {test.loss:.4f}) after "
        f"{cfg.train.epochs} epochs in {wall:.1f} s{cached}; wrote {out}/"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .config import Nonidealities, load_config, load_nonidealities
    from .data import load_dataset
    from .model import WEIGHTS_FILE, Main, load_weights
    from .training import evaluate

    if args.export:
        if args.dir:
            raise AanntwinError("give either a trained folder or --export, not both")
        from .export import evaluate_export

        device = _device(args)
        nl = load_nonidealities(args.nonidealities) if args.nonidealities else None
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
    cfg = load_config(str(folder / "config.json"))
    if args.ideal and args.nonidealities:
        raise AanntwinError("--ideal and --nonidealities exclude each other")
    if args.ideal:
        nl = Nonidealities()
    elif args.nonidealities:
        nl = load_nonidealities(args.nonidealities)
    else:
        nl = cfg.nonidealities
    device = _device(args)
    data = load_dataset(args.dataset or cfg.dataset, args.data_dir)
    model = Main(cfg.model, data.in_shape, data.n_classes, nl, cfg.normalization)
    load_weights(model, folder / WEIGHTS_FILE)
    model.to(device)
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
    print(json.dumps(report, indent=2))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .model import geometry

    cfg = _run_config(args)
    g = geometry(cfg.model, IN_SHAPES[cfg.dataset], 10)
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


def _normalize(args: argparse.Namespace) -> int:
    from .studies import normalize as normalize_study

    return normalize_study.run(args)


def _weights(args: argparse.Namespace) -> int:
    from .studies import weights as weights_study

    return weights_study.run_weights(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    commands = {
        "train": cmd_train,
        "evaluate": cmd_evaluate,
        "info": cmd_info,
        "sweep": lambda a: a.sweep_run(a),
        "normalize": _normalize,
        "weights": _weights,
        "workbook": lambda a: __import__("aanntwin.workbook_cli", fromlist=["x"]).run(a),
        "export": lambda a: __import__("aanntwin.export_cli", fromlist=["x"]).run(a),
        "characterize": lambda a: __import__("aanntwin.characterize_cli", fromlist=["x"]).run(a),
        "specs": lambda a: __import__("aanntwin.specs_cli", fromlist=["x"]).run_specs(a),
        "yield": lambda a: __import__("aanntwin.specs_cli", fromlist=["x"]).run_yield(a),
    }
    try:
        return commands[args.command](args)
    except AanntwinError as exc:
        print(f"aanntwin {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except KeyboardInterrupt:
        print(
            f"aanntwin {args.command}: interrupted (finished work is kept: rerun to resume)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    raise SystemExit(main())
