"""The ``aanntwin`` command: ``train``, ``evaluate``, ``info``.

A user error (bad config field, geometry, dataset file, argument) prints one line on stderr and
exits with status 2, a fault (disk full, out of memory) exits with status 1; neither shows a
traceback unless ``--debug`` (or ``AANNTWIN_DEBUG=1``) asks for it (:mod:`.errors`). One module
per command group registers its commands with ``set_defaults(run=...)``; :mod:`.common` holds
the shared flags and types.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import AanntwinError
from . import (
    characterize,
    circuit,
    core,
    errors,
    export,
    geometries,
    reference,
    specs,
    studies,
    workbook,
)
from .common import Parser

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="aanntwin", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an error (or set {errors.DEBUG_ENV}=1)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    core.add_parsers(sub)
    geometries.add_parser(sub)
    studies.add_normalize_parser(sub)
    studies.add_weights_parser(sub)
    specs.add_parsers(sub)
    characterize.add_parser(sub)
    circuit.add_parser(sub)
    export.add_parser(sub)
    workbook.add_parser(sub)
    reference.add_parser(sub)
    studies.add_sweep_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    debug = errors.debug_requested(args.debug)
    try:
        return args.run(args)
    except AanntwinError as exc:
        if debug:
            raise
        print(f"aanntwin {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return getattr(exc, "exit_status", 2)  # 1: a fault (disk full), 2: the input
    except BrokenPipeError:  # output piped into e.g. `head`: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except KeyboardInterrupt:
        print(
            f"aanntwin {args.command}: interrupted (finished work is kept: rerun to resume)",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # the last-resort net (MemoryError, OSError, ...)
        known = errors.classify(exc)
        if known is None or debug:
            raise
        status, message = known
        print(f"aanntwin {args.command}: error: {_one_line(message)}", file=sys.stderr)
        return status


def _one_line(message: object) -> str:
    """The message on one line (a multi-line text from a library is joined with ' | ')."""
    return " | ".join(line.strip() for line in str(message).splitlines() if line.strip())
