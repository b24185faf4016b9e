"""``aanntwin export RUN_DIR --out DIR``: the run's weights as integer codes (CSV + manifest).

With no flags every stage is exported as the run trained it (bits, reference, grid and weight
range from its ``config.json``); ``--bits``, ``--refs`` and ``--zero-level`` override that per
stage (:mod:`aanntwin.studies.export_quant`); :mod:`aanntwin.studies.export` writes it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..errors import AanntwinError
from ..io import output_dir
from ..studies.export import MANIFEST, export_run
from ..studies.export_quant import parse_ref
from .common import DATA_DIR_HELP, bounded_int

BITS_HELP = (
    "bits not counting the sign: 4 (every stage) or conv=4,linear=6 (hidden stages use linear "
    "unless named, e.g. hidden0=5); default: the bits the run trained with "
    "(nonidealities.conv2d_weight_bits / linear_weight_bits)"
)
REFS_HELP = (
    "reference (clip) value per stage in weight units, or in population stds of the stage's "
    "weights with a 'sigma' suffix (the quantization study's unit): 0.5, conv=0.5,linear=0.3 "
    "or linear=2.5sigma; default: the run's trained *_weight_ref, else the stage's max |w|"
)
ZERO_HELP = (
    "grid with a zero level, k*step (--zero-level) or (k+1/2)*step (--no-zero-level); "
    "default: the run's nonidealities.weight_zero_level"
)


def _ref(text: str) -> float | str:
    """A reference: a number (weight units) or ``2.5sigma`` (kept as text)."""
    try:
        number, in_sigmas = parse_ref(text)
    except AanntwinError as exc:
        raise ValueError(str(exc)) from None
    return f"{number!r}sigma" if in_sigmas else number


def pairs(kind: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    """argparse type: ``VALUE`` or ``STAGE=VALUE,...`` (one value, or one per stage)."""

    def parse(text: str) -> Any:
        try:
            if "=" not in text:
                return kind(text)
            items = [item.partition("=") for item in text.split(",")]
            names = [k.strip() for k, _, _ in items]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise argparse.ArgumentTypeError(f"stage {twice[0]} given twice in {text!r}")
            return {k.strip(): kind(v.strip()) for k, _, v in items}
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {what} or STAGE={what} pairs, got {text!r}"
            ) from None

    return parse


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``aanntwin export RUN_DIR [--bits ...] [--refs ...] --out DIR``."""
    p = subparsers.add_parser(
        "export",
        help="integer weight codes per stage (CSV + manifest), as the run trained them",
        description="Write a run's weights as integer codes per stage (CSV + manifest.json). "
        "Without flags each stage is exported as the run trained it (bits, reference, grid and "
        "weight range from its config.json); flags override per stage, and the manifest says "
        "where each value came from.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder of 'aanntwin train' or 'normalize'")
    p.add_argument("--bits", type=pairs(int, "int"), help=BITS_HELP)
    p.add_argument("--refs", type=pairs(_ref, "number or Nsigma"), help=REFS_HELP)
    p.add_argument("--zero-level", action=argparse.BooleanOptionalAction, help=ZERO_HELP)
    p.add_argument(
        "--bias-bits", type=bounded_int(0, 24), help="quantize biases too (default: analog values)"
    )
    p.add_argument(
        "--calibration-images",
        type=bounded_int(1, 10_000_000),
        default=10000,
        help="for the full scales",
    )
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--out", required=True, help="export folder")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``aanntwin export``: write the export, print one line per stage (with each value's
    source: the run's config or a flag)."""
    keys = ("bits", "refs", "zero_level", "bias_bits", "calibration_images", "data_dir")
    with output_dir(
        args.out, replaces=(MANIFEST,), owns=(MANIFEST, "*_weights.csv", "*_bias.csv")
    ) as tmp:  # nothing left on a failure
        m = export_run(args.run_dir, tmp, **{k: getattr(args, k) for k in keys})
    for s in m["stages"]:
        fs = s["output_full_scale_V"]
        sig = "" if s["ref_sigmas"] is None else f" = {s['ref_sigmas']:g} sigma"
        print(
            f"{s['name']:<8} {'x'.join(map(str, s['shape'])):<10} {s['bits']} bits "
            f"({s['bits_source']}), ref {s['ref']:.6g}{sig} ({s['ref_source']}), "
            f"zero level {'on' if s['zero_level'] else 'off'} ({s['zero_level_source']}), "
            f"step {s['step']:.6g}, codes {s['code_min']}..{s['code_max']}, "
            f"out FS {'-' if fs is None else f'{fs:.4g} V'}, gain {s['normalization_gain']:.4g}"
        )
    print(f"wrote {args.out}/{MANIFEST} and {len(m['files'])} CSV files")
    for s in m["stages"]:
        if s["codes_used"] <= 1:
            print(f"warning: stage {s['name']}: every weight has the same code, so the stage "
                  f"passes nothing of its input ({s['bits']} bits, ref {s['ref']:.4g}, zero "
                  f"level {'on' if s['zero_level'] else 'off'}); give more bits or a smaller "
                  "ref", file=sys.stderr)  # fmt: skip
    return 0
