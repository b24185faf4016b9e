"""``aanntwin workbook``: run the notebooks headless and render the reports."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..io import check_output_path


def add_parser(subparsers: Any) -> None:
    w = subparsers.add_parser(
        "workbook",
        help="run the notebooks headless (papermill) and render HTML reports",
        description="Execute notebooks/NN_*.ipynb in order with one parameters file, render "
        "each to HTML (no code; with code as *.code.html) and write index.html under "
        "OUT/NAME/. A parameters file (YAML or JSON) holds notebook parameters (dataset, "
        "data_dir, epochs, seed, nonidealities, quick, chip_seed), optional per-notebook "
        "overrides under 'notebooks:' and optional 'variants:' (each with a 'name'), each run "
        "into its own folder with OUT/index.html comparing them. Every key is checked against the "
        "notebooks' parameters cells (name, type, allowed range, named files and folders exist) "
        "before anything runs; relative paths are taken from the current folder; a variant is "
        "rerun when any input's content changed, every file under a named folder included "
        "(--force: always).",
        epilog="Reports: OUT/NAME/index.html links NN_x.html (designers' version, no code), "
        "NN_x.code.html, executed/NN_x.ipynb and data/ (models, sweep CSVs, headlines.json). "
        "Explore interactively: `jupyter lab notebooks/00_explorer.ipynb` (pip install "
        "jupyterlab; run all, move the sliders) or serve it as an app with `voila "
        "notebooks/00_explorer.ipynb --Voila.ip=127.0.0.1`.",
    )
    w.add_argument("--params", action="append", default=[], metavar="FILE",
                   help="parameters file (YAML/JSON); repeat for several")  # fmt: skip
    w.add_argument("--name", help="report folder name (default: the parameters file's name)")
    w.add_argument("--out", default="reports", help="reports folder (default: reports)")
    w.add_argument("--notebooks", help="folder of NN_*.ipynb (default: the checkout's)")
    w.add_argument("--only", help="comma-separated notebook names, e.g. 02_training")
    w.add_argument("--force", action="store_true", help="rerun even if nothing changed")
    w.add_argument("--no-code-html", action="store_true", help="skip the with-code HTML")
    w.add_argument("--no-pdf", action="store_true",
                   help="skip the PDF of each report (made with headless Chromium)")  # fmt: skip
    w.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run every variant; exit 1 naming the failed notebook and its error."""
    # papermill and nbconvert load here (seconds), not when any command line is parsed.
    from ..report.workbook import pages_of, run_parameter_files

    check_output_path(args.out)  # the reports folder is updated in place: validated up front
    runs = run_parameter_files(
        args.params, args.out, args.name, notebooks_dir=args.notebooks,
        only=args.only.split(",") if args.only else None, force=args.force,
        code_html=not args.no_code_html, pdf=not args.no_pdf,
    )  # fmt: skip
    for run in runs:
        state = "reused" if run.skipped else ("ok" if run.ok else "FAILED")
        print(f"{run.name}: {state}, {run.folder}/index.html ({run.seconds:.1f} s)")
        for page in pages_of(run):
            print(f"  {page}")
    if runs.comparison is not None:
        print(f"comparison of the variants: {runs.comparison}")
    for run in runs:
        for nb in run.notebooks:
            if nb.status == "failed":
                print(f"aanntwin workbook: error: {nb.name} failed: {nb.error}; executed copy "
                      f"in {run.folder}/{nb.executed}", file=sys.stderr)  # fmt: skip
                return 1
    return 0
