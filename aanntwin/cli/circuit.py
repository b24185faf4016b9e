"""``aanntwin validate-circuit``: a trained run simulated at transistor level against its twins.

``aanntwin validate-circuit RUN --images N --out DIR [--characterization DIR] [--chips K]``
simulates the first N test images through ngspice netlists of the run's conv MACs, ReLUs and final
MACs built from the shipped cells (:mod:`aanntwin.circuit_validation`), compares class decisions
and every stage's outputs with the characterized and the ideal twin, and writes
``DIR/results.csv``, ``DIR/summary.json`` and ``DIR/decisions.csv``. An interrupted run resumes.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..bounds import CIRCUIT_CHIPS, CIRCUIT_IMAGES
from ..characterization.circuits import MULTIPLIERS
from .common import DATA_DIR_HELP, bounded_int, number, positive_int


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``aanntwin validate-circuit``."""
    p = subparsers.add_parser(
        "validate-circuit", help="simulate a trained run at transistor level (ngspice) vs the twin"
    )
    p.add_argument("run_dir", metavar="RUN", help="trained run folder")
    p.add_argument("--out", required=True, help="output folder (resumed when it has results)")
    p.add_argument("--images", type=bounded_int(*CIRCUIT_IMAGES), default=100,
                   help="first N test images (100)")  # fmt: skip
    p.add_argument("--characterization", metavar="DIR",
                   help="folder written by `aanntwin characterize` (default: fit the committed "
                   "data of --multiplier into OUT/characterization)")  # fmt: skip
    p.add_argument("--multiplier", choices=tuple(MULTIPLIERS), default="gilbert",
                   help="multiplier cell the netlists are built from (gilbert)")  # fmt: skip
    p.add_argument("--chips", type=bounded_int(*CIRCUIT_CHIPS), default=0,
                   help="SPICE chip instances (cell mismatch Monte Carlo) to simulate too (0)")  # fmt: skip
    a_vt = number(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
    p.add_argument("--a-vt", type=a_vt, default=5.0,
                   help="Pelgrom A_VT of the chips, mV um per pair (5, as characterize)")  # fmt: skip
    p.add_argument("--batch", type=positive_int, default=10,
                   help="images per ngspice run, the unit of resume (10)")  # fmt: skip
    p.add_argument("--workers", type=bounded_int(1, 64), default=2,
                   help="ngspice processes at once (2)")  # fmt: skip
    p.add_argument("--no-resume", action="store_true", help="discard earlier results in OUT")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Simulate, compare, print the summary lines."""
    from ..circuit_validation.run import print_lines, validate

    summary = validate(args.run_dir, args.out, args.images, args.characterization, args.chips,
                       args.multiplier, args.batch, args.workers, args.a_vt,
                       resume=not args.no_resume, progress=args.progress,
                       data_dir=args.data_dir)  # fmt: skip
    for line in print_lines(summary):
        print(line)
    print(f"wrote {args.out}/ (results.csv, summary.json, decisions.csv)")
    return 0
