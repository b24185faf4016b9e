"""The studies' commands: ``aanntwin sweep noise|quantization|architecture``, ``normalize`` and
``weights``.

Every sweep takes ``--out DIR``, resumes by default (``--no-resume`` starts over), and runs
on one local process per core (``--workers auto``, the default; one task runs in-process), on
``--workers N`` processes (1: in-process), or on a Dask cluster (``--dask-scheduler``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Nonidealities, RunConfig, load_config, load_nonidealities
from ..errors import AanntwinError
from ..io import atomic_path, check_output_path, output_dir
from ..runs import RUN_FILES, RUN_OWNS, load_run, read_config
from ..schema import FLOAT32_MAX
from ..studies.architecture import pareto_front, run_architecture_sweep
from ..studies.common import cached_dataset, run_dataset
from ..studies.grid import (
    REFERENCE_TEST_LEVELS,
    REFERENCE_TRAIN_LEVELS,
    parse_ints,
    parse_levels,
)
from ..studies.noise_sweep import NoiseSweep, run_noise_sweep
from ..studies.normalize import normalize_run
from ..studies.pools import executor_from_args
from ..studies.quantization import MAX_BITS, recommend, run_quantization
from ..studies.runner import check_sweep_folder
from ..studies.weight_bits import baseline
from ..studies.weights import weights_run
from .common import (
    DATA_DIR_HELP,
    Parser,
    add_dataset,
    add_device,
    add_threads,
    add_workers,
    bounded_int,
    epochs_int,
    number,
    positive_int,
    runs_int,
    seed_int,
    torch_device,
)

CALIBRATION = bounded_int(1, 10_000_000)
"""``--calibration-images``: the first N training images (every dataset here has fewer)."""


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
    add_workers(g, "the sweep's tasks")
    g.add_argument("--data-dir", help=DATA_DIR_HELP)
    add_device(g, help="cpu, cuda or auto (default)")
    add_threads(g)
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_config_args(p: argparse.ArgumentParser, epochs_help: str) -> None:
    """``--config``, ``--dataset`` and ``--epochs``: the base run configuration of a sweep."""
    p.add_argument("--config", help="run configuration JSON (model, training, dataset)")
    add_dataset(p)
    p.add_argument("--epochs", type=epochs_int, help=epochs_help)


def base_config(args: argparse.Namespace) -> RunConfig:
    cfg = load_config(args.config) if args.config else RunConfig()
    if args.dataset:
        cfg = cfg.replace(dataset=args.dataset)
    if args.epochs is not None:
        cfg = cfg.replace(train=cfg.train.replace(epochs=args.epochs))
    return cfg


def executor(args: argparse.Namespace) -> Any:
    """The sweep's executor: a :class:`~aanntwin.studies.pools.LocalPool` (``--workers auto``),
    N processes, this process (``--workers 1``) or Dask; ``--threads``: torch threads per worker."""
    check_output_path(args.out)  # a sweep resumes in its folder: validated, not replaced
    if getattr(args, "study", None):  # not a run's or another study's folder
        check_sweep_folder(args.out, args.study)
    workers = args.workers
    if isinstance(workers, int) and workers < 1:
        raise AanntwinError(f"--workers {workers}: must be >= 1")
    if workers not in (None, "auto") and args.dask_scheduler:
        raise AanntwinError("--workers and --dask-scheduler exclude each other")
    return executor_from_args(workers, args.dask_scheduler, getattr(args, "threads", None))


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
    p.add_argument("--runs", type=runs_int, default=1, help="noise draws (or chips) per point")
    p.add_argument("--seed", type=seed_int, default=0)
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
    p.set_defaults(run=run_noise)


def run_noise(args: argparse.Namespace) -> int:
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
                             device=str(torch_device(args)), executor=pool,
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
        "--max-multipliers", type=positive_int, help="skip geometries above this many multipliers"
    )
    p.add_argument(
        "--limit", type=positive_int, help="only the N geometries with the fewest multipliers"
    )
    add_execution_args(p)
    p.set_defaults(run=run_architecture)


def run_architecture(args: argparse.Namespace) -> int:
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
                                    data_dir=args.data_dir, device=str(torch_device(args)),
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


def _flag_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse type from a :mod:`~aanntwin.studies.grid` parser called with ``what="FLAG"``:
    its error (``FLAG 'text': ...``) without the flag, which argparse prefixes itself."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except AanntwinError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("FLAG").lstrip(": ")) from None

    return convert


_bits = _flag_type(lambda t: parse_ints(t, "FLAG", 0, MAX_BITS))
_sigmas = _flag_type(
    lambda t: None if t.strip() == "reference" else parse_levels(t, "FLAG", allow_none=False)
)


def _add_quantization(sub: Any) -> None:
    p = sub.add_parser("quantization", help="accuracy with clipped / quantized weights")
    a = p.add_argument
    a("run_dir", help="folder written by 'aanntwin train'")
    a("--out", required=True, help="results folder (results.csv, config.json)")
    a("--layers", type=lambda t: t.split(","), help="stages, e.g. conv,linear (default: all)")
    a("--bias", action="store_true", help="study the biases too")
    a("--ref-sigmas", type=_sigmas, help="in weight stds: reference, lo:hi:step or 0.5,1,2")
    a("--bits", type=_bits, default=list(range(8)), help="lo:hi or list (default 0:7)")
    a("--zero-levels", choices=["both", "yes", "no"], default="both", help="zero level or not")
    a("--nonidealities", help="nonidealities JSON to evaluate with (default: ideal)")
    add_execution_args(p, out_required=False)
    p.set_defaults(run=run_quantization_study)


def run_quantization_study(args: argparse.Namespace) -> int:
    """Execute ``quantization``: write the results, print each layer's recommendation."""
    nl = load_nonidealities(args.nonidealities) if args.nonidealities else None
    zeros = {"both": (True, False), "yes": (True,), "no": (False,)}[args.zero_levels]
    params = ("weight", "bias") if args.bias else ("weight",)
    kw = dict(layers=args.layers, params=params, ref_sigmas=args.ref_sigmas, bits=args.bits)
    kw.update(zero_levels=zeros, data_dir=args.data_dir, nonidealities=nl)
    kw.update(device=str(torch_device(args)), resume=args.resume, progress=not args.no_progress)
    pool = executor(args)
    try:
        run_dataset(args.run_dir, read_config(args.run_dir), args.data_dir, kw["device"])
        df = run_quantization(args.run_dir, args.out, executor=pool, **kw)
    finally:
        if pool is not None:
            pool.shutdown()
    device = str(torch_device(args))
    cfg, model = load_run(args.run_dir, None, device)
    data = cached_dataset(cfg.dataset, args.data_dir, device)
    held_to = baseline(model, data.x_test, data.y_test, nl)  # the unchanged model, like 03
    print(f"{len(df)} points in {Path(args.out) / 'results.csv'}; fewest bits within 1 point "
          f"of the unchanged model ({held_to:.2%}):")  # fmt: skip
    fmt = (
        "{bits} bits, ref {ref_sigma:g} sigma ({ref:.4g}), zero level {zero_level}: {accuracy:.2%}"
    )
    for layer, rec in recommend(df, baseline=held_to).items():
        edge = f" [at the grid edge: {rec['edge']}]" if rec and rec.get("edge") else ""
        print(f"  {layer}:", fmt.format(**rec) + edge if rec else "none (see the CSV)")
    return 0


def add_sweep_parser(sub: Any) -> None:
    """Register ``sweep`` and its studies."""
    sweep = sub.add_parser("sweep", help="noise, quantization and architecture sweeps")
    studies = sweep.add_subparsers(dest="study", parser_class=Parser, required=True)
    _add_noise(studies)
    _add_quantization(studies)
    _add_architecture(studies)


# ----------------------------------------------------------------------------- normalize
_volts = number(float, lambda v: math.isfinite(v) and v > 0, "a positive number of volts")


def _stage_targets(text: str) -> dict[str, float]:
    """``conv=0.8,linear=1.0`` -> ``{"conv": 0.8, "linear": 1.0}``."""
    targets: dict[str, float] = {}
    for item in text.split(","):
        name, sep, volts = (t.strip() for t in item.partition("="))
        if name in targets:
            raise argparse.ArgumentTypeError(f"stage {name} given twice in {text!r}")
        try:
            targets[name] = float(volts) if sep and name else math.nan
        except ValueError:
            targets[name] = math.nan
        if not (math.isfinite(targets[name]) and 0 < targets[name] <= FLOAT32_MAX):
            raise argparse.ArgumentTypeError(
                f"expected STAGE=VOLTS pairs, volts > 0 (e.g. conv=0.8,linear=1.0), got {item!r}"
            )
    return targets


def add_normalize_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``aanntwin normalize RUN_DIR --out DIR ...``."""
    p = subparsers.add_parser("normalize", help="set each stage's full scale to a reference (V)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder written by 'aanntwin train'")
    p.add_argument("--out", required=True, help="output folder (a trained-model folder)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target", type=_volts, default=1.0, help="every stage's full scale (V, 1.0)")
    g.add_argument("--targets", type=_stage_targets, help="conv=0.8,linear=1.0 (V; others 1.0)")
    q = number(float, lambda v: 0 < v <= 1, "in (0, 1]")
    p.add_argument("--quantile", type=q, help="full scale = this quantile of |y| (default max)")
    p.add_argument(
        "--signed-max",
        dest="signed",
        action="store_true",
        help="full scale = max y (signed, as the reference tool) instead of max |y|",
    )
    p.add_argument(
        "--calibration-images", type=CALIBRATION, default=10000, help="first N train images"
    )
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    add_device(p)
    add_threads(p)
    p.set_defaults(run=run_normalize)
    return p


def run_normalize(args: argparse.Namespace) -> int:
    """``aanntwin normalize``: normalize a trained folder, print one line per stage."""
    device, targets = str(torch_device(args)), args.targets or args.target
    options = {
        k: getattr(args, k) for k in ("quantile", "calibration_images", "data_dir", "signed")
    }
    out = check_output_path(args.out, replaces=RUN_FILES, owns=RUN_OWNS)
    if out.resolve() == Path(args.run_dir).resolve():
        raise AanntwinError(f"--out {out}: the output folder must differ from the trained folder")
    with output_dir(out, replaces=RUN_FILES, owns=RUN_OWNS) as tmp:
        result = normalize_run(args.run_dir, tmp, targets=targets, device=device, **options)
    for name, a in result.scales.items():
        fs = f"{result.before[name]:.4g} V -> {result.after[name]:.4g} V"
        print(f"{name:<8} {fs} (target {result.targets[name]:g} V, scale {a:.4g})")
    for name, bound in result.limited.items():
        reached, target = result.after[name], result.targets[name]
        print(f"{name:<8} limited by the weight range: target {target:g} V, reached "
              f"{reached:.4g} V, weights within +-{bound:g}")  # fmt: skip
    y = "y" if result.signed else "|y|"
    what = f"max {y}" if result.quantile is None else f"the {result.quantile:g}-quantile of {y}"
    print(f"full scale = {what}; wrote {args.out}/")
    return 0


# ----------------------------------------------------------------------------- weights
def add_weights_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``weights RUN_DIR [--out FILE.csv] [--bias]``."""
    p = subparsers.add_parser("weights", help="weight statistics per layer and output channel")
    p.add_argument("run_dir", help="folder written by 'aanntwin train'")
    p.add_argument("--out", help="also write the table as CSV here")
    p.add_argument("--bias", action="store_true", help="biases too")
    p.set_defaults(run=run_weights)
    return p


def run_weights(args: argparse.Namespace) -> int:
    """Print the table (and write it with ``--out``)."""
    if args.out is not None:
        check_output_path(args.out, folder=False)
    df = weights_run(args.run_dir, ("weight", "bias") if args.bias else ("weight",))
    if args.out:
        with atomic_path(args.out) as tmp:
            df.to_csv(tmp, index=False)
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0
