"""The ``aanntwin`` command: ``train``, ``evaluate``, ``info``.

A user error (bad config field, geometry, dataset file, argument) prints one line on stderr and
exits with status 2, a fault (disk full, out of memory) exits with status 1; neither shows a
traceback unless ``--debug`` (or ``AANNTWIN_DEBUG=1``) asks for it (:mod:`.errors`). One module
per command group registers its commands with ``set_defaults(run=...)``; :mod:`.common` holds
the shared flags and types. A command line naming a command imports only that command's module
(:data:`COMMANDS`): ``aanntwin workbook`` runs the notebooks without loading torch in its own
process (~250 MB), since the notebook kernels load it themselves.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from .. import __version__
from ..errors import AanntwinError
from . import errors
from .common import Parser

__all__ = ["build_parser", "main"]


COMMANDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("core", "add_parsers", ("train", "evaluate", "info")),
    ("geometries", "add_parser", ("geometries",)),
    ("studies", "add_normalize_parser", ("normalize",)),
    ("studies", "add_weights_parser", ("weights",)),
    ("specs", "add_parsers", ("specs", "yield")),
    ("characterize", "add_parser", ("characterize",)),
    ("circuit", "add_parser", ("validate-circuit",)),
    ("export", "add_parser", ("export",)),
    ("workbook", "add_parser", ("workbook",)),
    ("reference", "add_parser", ("import-reference",)),
    ("studies", "add_sweep_parser", ("sweep",)),
)
"""``(module of aanntwin.cli, its registering function, the commands it adds)`` in help order."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of ``command``'s group only (importing only its module);
    every command when ``command`` is None or not one of :data:`COMMANDS`."""
    groups = [g for g in COMMANDS if command in g[2]] or COMMANDS
    parser = Parser(prog="aanntwin", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an error (or set {errors.DEBUG_ENV}=1)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for module, register, _ in groups:
        getattr(importlib.import_module(f".{module}", __name__), register)(sub)
    return parser


@contextlib.contextmanager
def _plain_warnings(command: str, debug: bool) -> Iterator[None]:
    """Warnings as one line each, ``aanntwin CMD: warning: ...`` (as errors are), not Python's
    file, line and source line; with ``--debug`` Python's form. Only the format changes, so a
    caller recording warnings (``warnings.catch_warnings(record=True)``) still gets them."""
    if debug:
        yield
        return
    original = warnings.formatwarning

    def one_line(message: Any, category: Any, *args: Any, **kwargs: Any) -> str:
        return f"aanntwin {command}: warning: {message}\n"

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = original


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # the global flags take no value: the first other word names the command
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    if args.version:
        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    debug = errors.debug_requested(args.debug)
    try:
        with _plain_warnings(args.command, debug):
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
        note = getattr(args, "interrupted", "finished work is kept: rerun to resume")
        print(f"aanntwin {args.command}: interrupted ({note})", file=sys.stderr)
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
