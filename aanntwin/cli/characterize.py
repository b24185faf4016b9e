"""``aanntwin characterize``: fit the twin to simulated or measured transfer curves.

``aanntwin characterize (--simulate | --csv FILE [FILE ...]) --out DIR`` writes
``DIR/nonidealities.json`` (loadable by ``aanntwin train --nonidealities``), ``fit_report.json``,
``fit_parameters.csv``, ``fit_residuals.csv``, ``plots/*.png`` and, with MAC data, ``fidelity.csv``;
``--simulate`` also writes the simulated data under ``DIR/data/`` and prints the fidelity figure.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..characterization import MIN_DC_ROWS, MIN_INSTANCES, TRANSFERS
from ..characterization.circuits import MULTIPLIERS
from ..config import load_config
from ..errors import AanntwinError
from ..io import check_output_path, output_dir
from .common import add_dataset, bounded_int, number, seed_int
from .common import positive_int as _count

FIT_FILES = ("nonidealities.json", "fit_report.json")
"""An existing ``--out`` holding one of these is an earlier fit: replaceable."""
FIT_OWNS = (*FIT_FILES, "fit_parameters.csv", "fit_residuals.csv", "fidelity.csv", "plots", "data")
"""Everything a fit's folder can hold (:func:`~aanntwin.characterization.pipeline.write_outputs`
and the simulated curves under ``data/``): a folder holding anything else is not replaced."""


def _band(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in Hz, got {text!r}") from None
    if not (0 < lo < hi and math.isfinite(hi)):
        raise argparse.ArgumentTypeError(f"need 0 < LOW < HIGH, got {text!r}")
    return lo, hi


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``aanntwin characterize``."""
    p = subparsers.add_parser(
        "characterize", help="fit nonidealities to transfer curves (ngspice or CSV)"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--simulate", action="store_true", help="run the shipped netlists (ngspice)")
    src.add_argument("--csv", nargs="+", metavar="FILE", help="characterization CSV files")
    p.add_argument("--out", required=True, help="output folder")
    g = p.add_argument_group("mapping onto the twin")
    add_dataset(g, default="digits", help="fan-ins from this dataset's shape")
    g.add_argument("--config", help="run configuration JSON: fan-ins from its model and dataset")
    g.add_argument("--conv-fan-in", type=_count, help="multipliers per conv MAC (override)")
    g.add_argument("--linear-fan-in", type=_count, help="multipliers per linear MAC (override)")
    g.add_argument(
        "--degree", type=bounded_int(1, 30), default=7, help="input polynomial degree (7)"
    )
    g.add_argument(
        "--transfer",
        choices=TRANSFERS,
        default="auto",
        help="write the multiplier's input and weight transfers as polynomials or tables; auto "
        "(default) takes the one that follows the data (a table when the polynomial bends back "
        "or is 1.5x less accurate)",
    )
    s = p.add_argument_group("simulation (--simulate)")
    s.add_argument(
        "--instances",
        type=bounded_int(MIN_INSTANCES, 10_000),
        default=20,
        help=f"Monte Carlo instances, {MIN_INSTANCES}..10000 (20)",
    )
    s.add_argument("--seed", type=seed_int, default=0, help="Monte Carlo seed (0)")
    a_vt = number(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
    s.add_argument("--a-vt", type=a_vt, default=5.0, help="Pelgrom A_VT, mV um per pair (5)")
    s.add_argument("--band", type=_band, default=(1e3, 1e7), help="noise band LOW,HIGH Hz")
    s.add_argument(
        "--heldout",
        type=bounded_int(MIN_DC_ROWS, 100_000),
        default=200,
        help=f"held-out MAC conditions, {MIN_DC_ROWS}..100000 (200)",
    )
    s.add_argument("--model-card", help="models file replacing the generic BSIM3 card")
    s.add_argument(
        "--multiplier",
        choices=tuple(MULTIPLIERS),
        default="gilbert",
        help="multiplier topology whose netlists run: " + ", ".join(MULTIPLIERS) + " (gilbert)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    # the outputs appear only once all is done (io.output_dir): an interrupted run leaves none
    p.set_defaults(
        run=run, interrupted="nothing was written, --out is as it was: rerun to start over"
    )
    return p


def _fan_in(args: argparse.Namespace) -> dict[str, int]:
    from ..characterization.twin import fan_ins  # scipy: imported by this command only

    if args.config:
        cfg = load_config(args.config)
        fan = fan_ins(cfg.dataset, cfg.model)
    else:
        fan = fan_ins(args.dataset)
    if args.conv_fan_in:
        fan["conv2d"] = args.conv_fan_in
    if args.linear_fan_in:
        fan["linear"] = args.linear_fan_in
    return fan


def run(args: argparse.Namespace) -> int:
    """``aanntwin characterize``: fit, write the outputs, print a summary."""
    # The fit's modules (scipy, matplotlib) load here, not when the command line is parsed:
    # every other command, and every sweep worker, starts without them.
    from ..characterization.flow import acquire, fit_and_write
    from ..characterization.pipeline import SimOptions, summary

    out = check_output_path(args.out, replaces=FIT_FILES, owns=FIT_OWNS)
    fan = _fan_in(args)
    t0 = time.perf_counter()
    if args.simulate and args.model_card and not Path(args.model_card).exists():
        raise AanntwinError(f"--model-card {args.model_card}: file not found")
    opts = SimOptions(args.instances, args.seed, args.a_vt, args.band, args.heldout, 1,
                      args.model_card, args.multiplier)  # fmt: skip
    with output_dir(out, replaces=FIT_FILES, owns=FIT_OWNS) as tmp:
        curves = acquire(args.csv, args.simulate, tmp / "data", opts, out / "data")
        result, _ = fit_and_write(curves, fan, tmp, args.degree, plots=not args.no_plots,
                                  transfer=args.transfer)  # fmt: skip
    for line in summary(result):
        print(line)
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    seconds = curves.seconds
    if seconds:
        print(f"ngspice: {sum(seconds.values()):.2f} s for {len(seconds)} analyses")
    print(f"wrote {out}/ (nonidealities.json, fit_report.json, ...) in "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    return 0
