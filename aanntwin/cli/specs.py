"""``aanntwin specs`` (the sign-off table) and ``aanntwin yield`` (chip-instance Monte Carlo)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..bounds import CONFIDENCE, TARGET_DROP, confidence_ok, target_drop_ok
from ..config import MISMATCH_FIELDS, load_nonidealities
from ..errors import AanntwinError
from ..io import check_output_path, output_dir, write_json_atomic
from ..runs import load_run
from ..studies.common import run_dataset
from ..studies.grid import parse_choices
from ..studies.noise import KINDS
from ..studies.spec_report import cost, derive_and_write, summary
from ..studies.specs import Target, chip_yield
from ..training import evaluate
from .common import DATA_DIR_HELP, add_device, add_workers, number, runs_int, seed_int, torch_device
from .studies import executor

_drop = number(float, target_drop_ok, TARGET_DROP)
_confidence = number(float, confidence_ok, CONFIDENCE)

SPEC_FILES = ("spec_table.csv", "spec.json")
SPEC_OWNS = (*SPEC_FILES, "spec_table.html")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="trained (ideally normalized) model folder")
    p.add_argument(
        "--target-drop",
        type=_drop,
        default=0.01,
        help="largest accuracy loss against the ideal model (0.01 = 1 point)",
    )
    p.add_argument(
        "--confidence",
        type=_confidence,
        default=0.95,
        help="fraction of noise draws / chips that must meet the target",
    )
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    add_device(p, help="cpu, cuda or auto (default)")


def add_parsers(sub: Any) -> None:
    """Register ``specs`` and ``yield``."""
    s = sub.add_parser("specs", help="derive the spec table a circuit designer signs off")
    _common(s)
    s.add_argument(
        "--kinds", default=",".join(KINDS), help=f"nonidealities to bound: {', '.join(KINDS)}"
    )
    s.add_argument("--runs", type=runs_int, default=20, help="noise draws / chips per evaluation")
    s.add_argument("--out", required=True, help="folder for spec_table.csv/.html and spec.json")
    add_workers(
        s,
        "the independent searches (one per kind and per weight-bits stage; the table is the same)",
    )
    s.set_defaults(run=run_specs)
    y = sub.add_parser("yield", help="chip-instance Monte Carlo: accuracy spread and yield")
    _common(y)
    y.add_argument("--nonidealities", required=True, help="nonidealities JSON (with mismatch)")
    y.add_argument("--instances", type=runs_int, default=100, help="chip instances to sample")
    y.add_argument("--out", help="write yield.json here")
    y.set_defaults(run=run_yield)


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    device = str(torch_device(args))
    cfg, model = load_run(args.run_dir, device=device)
    data = run_dataset(args.run_dir, cfg, args.data_dir, device)
    return cfg, model, data


def run_specs(args: argparse.Namespace) -> int:
    target = Target(args.target_drop, args.confidence, args.runs)
    kinds = parse_choices(args.kinds, "--kinds", list(KINDS))
    out = check_output_path(args.out, replaces=SPEC_FILES, owns=SPEC_OWNS)
    pool = executor(args)  # --workers / --dask-scheduler checked before the data is loaded
    try:
        cfg, model, data = _load(args)
        with output_dir(out, replaces=SPEC_FILES, owns=SPEC_OWNS) as tmp:
            res = derive_and_write(model, data.x_test, data.y_test, target, tmp, kinds=kinds,
                                   seed=args.seed, progress=True, run=str(args.run_dir),
                                   config_hash=cfg.content_hash(), executor=pool)  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()
    print(summary(res))
    shown = res.table[["stage", "quantity", "limit", "unit", "limit_alone"]]
    print(shown.to_string(index=False, na_rep=""))
    print(f"{cost(res)}; wrote {out}/spec_table.csv")
    return 0 if res.joint_check.passed else 1


def run_yield(args: argparse.Namespace) -> int:
    nl = load_nonidealities(args.nonidealities)
    if args.out is not None:
        check_output_path(args.out)
    if not 0 <= args.target_drop < 1:
        raise AanntwinError(f"--target-drop {args.target_drop}: must be in [0, 1)")
    if not 0 < args.confidence < 1:
        raise AanntwinError(f"--confidence {args.confidence}: must be in (0, 1)")
    _, model, data = _load(args)
    ideal = evaluate(model, data.x_test, data.y_test).accuracy
    res = chip_yield(model, data.x_test, data.y_test, nl, instances=args.instances,
                     threshold=ideal - args.target_drop, confidence=args.confidence,
                     seed=args.seed)  # fmt: skip
    fields = asdict(res)
    fields["yield"] = fields.pop("yield_")  # the Python name's underscore is not the report's
    acc = torch.tensor(res.accuracies, dtype=torch.float64)
    spread = {"accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std(correction=0)),
              "accuracy_min": float(acc.min()), "accuracy_max": float(acc.max())}  # fmt: skip
    report = {"ideal_accuracy": ideal, "target_drop": args.target_drop, **spread, **fields}
    if not any(getattr(nl, f) for f in MISMATCH_FIELDS):
        print(f"warning: {args.nonidealities} sets no mismatch (*_gain_mismatch, "
              "*_offset_mismatch): every chip instance is the same chip, so the yield is that "
              "chip's pass or fail under one noise draw each", file=sys.stderr)  # fmt: skip
    if args.out:
        write_json_atomic(Path(args.out) / "yield.json", report)
    summary = {k: v for k, v in report.items() if k != "accuracies"}
    print(json.dumps(summary, indent=2))
    return 0
