"""``aanntwin import-reference``: weights, parameter files and sweep results of the reference tool
into a run folder (or, with ``--sweep``, a noise-sweep folder) of this project."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..config import load_nonidealities
from ..errors import AanntwinError
from ..io import check_output_path, output_dir, write_json_atomic
from ..runs import RUN_FILES, RUN_OWNS, run_geometry
from ..studies.noise import KINDS
from ..studies.reference_import import WEIGHTS_NOTE, import_reference, reference_params
from ..studies.reference_sweep import import_reference_sweep
from .common import add_dataset

SWEEP_FILES = ("results.csv", "config.json")
SWEEP_OWNS = (*SWEEP_FILES, "runs.csv")


def add_parser(sub: Any) -> None:
    """Register ``import-reference``."""
    p = sub.add_parser(
        "import-reference",
        help="import reference-tool weights (.pth) + parameter JSON, or its sweep results",
        description="Without --sweep: WEIGHTS.pth (loaded with weights_only=True) and its model "
        "parameters become a run folder (config.json, weights.safetensors, imported.json) that "
        "'aanntwin evaluate' and the studies read; without WEIGHTS, only config.json (for "
        "'aanntwin train --config'). With --sweep: results[train][test] = [[loss, accuracy], "
        "...] becomes results.csv (+ runs.csv, config.json) in the noise sweep's columns.",
    )
    p.add_argument("weights", nargs="?", help="reference weight file (cache/models/*.pth)")
    p.add_argument("--model-params", help="reference model parameter JSON (conv_out_channels, ...)")
    p.add_argument("--train-params", help="reference training parameter JSON (epochs, lr, ...)")
    p.add_argument(
        "--nonidealities", help="nonidealities it trained with (flat JSON; default: off)"
    )
    add_dataset(
        p, help="dataset it was trained on (default: the files' own, else mnist)", sort=True
    )
    p.add_argument("--sweep", help="reference sweep results JSON to convert instead")
    p.add_argument("--kind", choices=list(KINDS), default="input",
                   help="noise kind the sweep's test levels set (default: input)")  # fmt: skip
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(run=cmd_import_reference)


def cmd_import_reference(args: argparse.Namespace) -> int:
    if args.sweep:
        given = [f for f, v in (("WEIGHTS", args.weights), ("--model-params", args.model_params),
                                ("--train-params", args.train_params),
                                ("--nonidealities", args.nonidealities)) if v]  # fmt: skip
        if given:
            raise AanntwinError(f"--sweep converts results alone; drop {', '.join(given)}")
        check_output_path(args.out, replaces=SWEEP_FILES, owns=SWEEP_OWNS)
        with output_dir(args.out, replaces=SWEEP_FILES, owns=SWEEP_OWNS) as tmp:
            points, runs, percent = import_reference_sweep(args.sweep, tmp, args.kind,
                                                           args.dataset)  # fmt: skip
        unit = " (accuracies read as percent)" if percent else ""
        print(f"{points} points ({runs} runs, kind {args.kind}){unit}: wrote "
              f"{args.out}/results.csv, runs.csv, config.json")  # fmt: skip
        return 0
    if not args.model_params:
        raise AanntwinError("--model-params: required (the reference model parameter JSON), "
                            "or --sweep FILE to convert sweep results")  # fmt: skip
    nl = load_nonidealities(args.nonidealities) if args.nonidealities else None
    if args.weights is None:
        cfg, defaulted = reference_params(args.model_params, args.train_params, args.dataset)
        if nl is not None:
            cfg = cfg.replace(nonidealities=nl)
        check_output_path(args.out, replaces=("config.json",))
        with output_dir(args.out, replaces=("config.json",)) as tmp:
            write_json_atomic(tmp / "config.json", json.loads(cfg.to_json()))
        print(f"wrote {args.out}/config.json (train it: aanntwin train --config "
              f"{args.out}/config.json --out RUN)")  # fmt: skip
    else:
        check_output_path(args.out, replaces=RUN_FILES, owns=RUN_OWNS)
        with output_dir(args.out, replaces=RUN_FILES, owns=RUN_OWNS) as tmp:
            cfg, defaulted = import_reference(args.weights, args.model_params, tmp,
                                              args.train_params, args.dataset, nl)  # fmt: skip
        g = run_geometry(cfg)
        print(f"imported {args.weights} ({cfg.dataset}, {len(g.stages)} stages, "
              f"{g.multipliers:,} multipliers): wrote {args.out}/ (config.json, "
              f"weights.safetensors, {WEIGHTS_NOTE})")  # fmt: skip
    for line in defaulted:
        print(f"note: {line}: not in {args.train_params}")
    return 0
