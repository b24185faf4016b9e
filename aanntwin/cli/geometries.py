"""``aanntwin geometries``: every valid geometry for a dataset with its hardware counts, no training.

``aanntwin geometries [--dataset NAME | --config FILE] [--channels 1,2,4] [--kernel 1:7]
[--stride 1:7] [--pool 1:7] [--max-multipliers N] [--limit N] [--csv FILE|-]`` prints a table
ordered by multiplier count (conv MACs counted before pooling), or writes it as CSV.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import load_config
from ..errors import AanntwinError
from ..io import write_text_atomic
from ..registry import info as dataset_info
from ..studies.architecture import geometry_table
from .common import add_dataset, positive_int


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``aanntwin geometries``."""
    p = sub.add_parser(
        "geometries", help="every valid geometry with its hardware counts (no training)"
    )
    add_dataset(p, help="image shape and classes from this dataset (default digits)")
    p.add_argument("--config", help="run configuration JSON: its dataset")
    p.add_argument("--channels", default="1,2,4,8,16,32,64,128", help="e.g. 1,2,4 (1..128)")
    p.add_argument("--kernel", default="1:7", help="kernel sides, e.g. 3:7 (1:7)")
    p.add_argument("--stride", default="1:7", help="strides, e.g. 1:3 (1:7)")
    p.add_argument("--pool", default="1:7", help="pool windows, e.g. 1,2 (1:7)")
    p.add_argument(
        "--max-multipliers", type=positive_int, help="only geometries with at most N multipliers"
    )
    p.add_argument("--limit", type=positive_int, help="only the N with the fewest multipliers")
    p.add_argument("--csv", metavar="FILE", help="write CSV to FILE ('-': to stdout)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """List the geometries (table on stdout, or CSV)."""
    dataset = args.dataset or (load_config(args.config).dataset if args.config else "digits")
    info = dataset_info(dataset)
    space = {k: getattr(args, k) for k in ("channels", "kernel", "stride", "pool")}
    table = geometry_table(info.in_shape, info.n_classes, space, args.max_multipliers)
    if args.limit is not None:
        table = table.head(args.limit)
    if table.empty:
        raise AanntwinError(
            f"no valid geometry for {dataset} {'x'.join(map(str, info.in_shape))} in this space"
            + (f" with at most {args.max_multipliers} multipliers" if args.max_multipliers else "")
        )
    table.insert(0, "dataset", dataset)
    if args.csv == "-":
        table.to_csv(sys.stdout, index=False)
    elif args.csv:
        write_text_atomic(args.csv, table.to_csv(index=False))
        print(f"{len(table)} geometries for {dataset}: wrote {args.csv}")
    else:
        print(table.to_string(index=False))
        print(f"{len(table)} geometries for {dataset} {'x'.join(map(str, info.in_shape))}")
    return 0
