"""Command-line glue of the studies: ``aanntwin sweep noise|quantization|architecture``.

Every sweep takes ``--out DIR``, resumes by default (``--no-resume`` starts over), and runs
in-process, on ``--workers N`` local processes, or on a Dask cluster (``--dask-scheduler``).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import AanntwinError


def add_execution_args(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    """The options every sweep shares (``--out`` unless the study declares it itself)."""
    g = p.add_argument_group("execution")
    if out_required:
        g.add_argument("--out", required=True, help="result folder (results.csv, config.json)")
    g.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reuse finished points in --out (default: on)",
    )
    g.add_argument("--workers", type=int, help="local worker processes (default: in-process)")
    g.add_argument("--dask-scheduler", help="address of a Dask scheduler, e.g. tcp://host:8786")
    g.add_argument("--data-dir", help="folder with the IDX files (or $AANNTWIN_DATA_DIR)")
    g.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_config_args(p: argparse.ArgumentParser, epochs_help: str) -> None:
    """``--config``, ``--dataset`` and ``--epochs``: the base run configuration of a sweep."""
    p.add_argument("--config", help="run configuration JSON (model, training, dataset)")
    p.add_argument("--dataset", choices=["digits", "mnist", "fashion-mnist"])
    p.add_argument("--epochs", type=int, help=epochs_help)


def base_config(args: argparse.Namespace) -> Any:
    from ..config import RunConfig, load_config

    cfg = load_config(args.config) if args.config else RunConfig()
    if args.dataset:
        cfg = cfg.replace(dataset=args.dataset)
    if args.epochs is not None:
        cfg = cfg.replace(train=cfg.train.replace(epochs=args.epochs))
    return cfg


def executor(args: argparse.Namespace) -> Any:
    from .runner import executor_from_args

    if args.workers is not None and args.workers < 1:
        raise AanntwinError(f"--workers {args.workers}: must be >= 1")
    if args.workers and args.dask_scheduler:
        raise AanntwinError("--workers and --dask-scheduler exclude each other")
    return executor_from_args(args.workers, args.dask_scheduler)


def _add_noise(sub: Any) -> None:
    p = sub.add_parser("noise", help="accuracy vs training and test noise levels per kind")
    add_config_args(p, "training epochs per training level")
    p.add_argument(
        "--train-levels",
        default="none",
        help="training noise levels (V): 'reference' (none,0:1:0.1) or e.g. none,0.1",
    )
    p.add_argument(
        "--test-levels",
        default="reference",
        help="test noise levels (V): 'reference' (none,0:1:0.01) or a list/ranges",
    )
    p.add_argument(
        "--kinds",
        default="input,conv_out,relu_out,linear_out",
        help="kinds to sweep: input, conv_out, relu_out, linear_out, conv_gain, "
        "conv_offset, linear_gain, linear_offset",
    )
    p.add_argument(
        "--train-kinds",
        default="input,conv_out,relu_out,linear_out",
        help="temporal kinds that get the training level",
    )
    p.add_argument("--test-nonidealities", help="JSON of nonidealities held on during the test")
    p.add_argument("--runs", type=int, default=1, help="noise draws (or chips) per point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-crn",
        action="store_true",
        help="fresh noise per level instead of common random numbers",
    )
    p.add_argument(
        "--normalize-target",
        default="1.0",
        help="normalize each trained model to this full scale (V) first; 'none': off",
    )
    add_execution_args(p)
    p.set_defaults(sweep_run=run_noise)


def run_noise(args: argparse.Namespace) -> int:
    from ..config import Nonidealities, load_nonidealities
    from .common import resolve_device
    from .grid import REFERENCE_TEST_LEVELS, REFERENCE_TRAIN_LEVELS, parse_levels
    from .noise import NoiseSweep, run_noise_sweep

    cfg = base_config(args)
    target = None
    if args.normalize_target.strip().lower() != "none":
        (target,) = parse_levels(args.normalize_target, "--normalize-target", allow_none=False)
        if not target:
            raise AanntwinError("--normalize-target: must be > 0 V (or none)")
    sweep = NoiseSweep(
        cfg,
        train_levels=parse_levels(args.train_levels, "--train-levels",
                                  reference=REFERENCE_TRAIN_LEVELS),
        test_levels=parse_levels(args.test_levels, "--test-levels",
                                 reference=REFERENCE_TEST_LEVELS),
        kinds=args.kinds,
        train_kinds=args.train_kinds,
        test_base=load_nonidealities(args.test_nonidealities) if args.test_nonidealities
        else Nonidealities(),
        runs=args.runs,
        seed=args.seed,
        common_random_numbers=not args.no_crn,
        normalize_target=target,
    )  # fmt: skip
    pool = executor(args)
    try:
        df = run_noise_sweep(sweep, args.out, data_dir=args.data_dir,
                             device=resolve_device(args.device), executor=pool,
                             resume=args.resume, progress=not args.no_progress)  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()
    print(f"{len(df)} points in {args.out}/results.csv")
    best = df.groupby("kind")["accuracy_mean"].agg(["min", "max"])
    for kind, row in best.iterrows():
        print(f"  {kind:<14} accuracy {100 * row['min']:.2f} .. {100 * row['max']:.2f} %")
    return 0


def _add_architecture(sub: Any) -> None:
    p = sub.add_parser("architecture", help="train and test every valid geometry (area/accuracy)")
    add_config_args(p, "training epochs per geometry")
    p.add_argument(
        "--channels",
        default="1,2,4,8,16,32,64,128",
        help="e.g. 1,2,4 (default: 1..128 by powers of 2)",
    )
    p.add_argument("--kernel", default="1:7", help="kernel sides, e.g. 3:7")
    p.add_argument("--stride", default="1:7", help="strides, e.g. 1:3")
    p.add_argument("--pool", default="1:7", help="pool windows, e.g. 1,2")
    p.add_argument(
        "--max-multipliers", type=int, help="skip geometries above this many multipliers"
    )
    p.add_argument("--limit", type=int, help="only the N geometries with the fewest multipliers")
    add_execution_args(p)
    p.set_defaults(sweep_run=run_architecture)


def run_architecture(args: argparse.Namespace) -> int:
    from .architecture import pareto_front, run_architecture_sweep
    from .common import resolve_device

    cfg = base_config(args)
    space = {
        "channels": args.channels,
        "kernel": args.kernel,
        "stride": args.stride,
        "pool": args.pool,
    }
    pool = executor(args)
    try:
        df = run_architecture_sweep(cfg, args.out, space=space,
                                    max_multipliers=args.max_multipliers, limit=args.limit,
                                    data_dir=args.data_dir, device=resolve_device(args.device),
                                    executor=pool, resume=args.resume,
                                    progress=not args.no_progress)  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()
    front = pareto_front(df)
    print(f"{len(df)} geometries in {args.out}/results.csv; Pareto front (multipliers, accuracy):")
    for _, r in front.iterrows():
        print(
            f"  {r['multipliers']:>9,}  {100 * r['accuracy']:6.2f} %  channels {r['channels']}, "
            f"kernel {r['kernel']}, stride {r['stride']}, padding {r['padding']}, pool {r['pool']}"
        )
    return 0


def add_sweep_parser(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Register ``sweep`` and its studies."""
    sweep = sub.add_parser("sweep", help="noise, quantization and architecture sweeps")
    studies = sweep.add_subparsers(dest="study", parser_class=parser_class, required=True)
    _add_noise(studies)
    from . import quantization

    quantization.add_parser(studies).set_defaults(sweep_run=quantization.run)
    _add_architecture(studies)
