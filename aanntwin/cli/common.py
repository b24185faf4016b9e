"""What the commands share: the parser class, argument types, the runtime flags (``--data-dir``,
``--dataset``, ``--device``, ``--threads``) and the one ``--device`` resolver."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

import torch

from ..config import DATASETS
from ..errors import AanntwinError

DATA_DIR_HELP = "folder with the IDX files (or $AANNTWIN_DATA_DIR)"
DEVICE_HELP = "cpu, cuda, cuda:N or auto (default)"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def number(kind: type, test: Callable[[Any], bool], allowed: str) -> Callable[[str], Any]:
    """argparse type: ``kind(text)`` that passes ``test``, else a clear error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value

    return parse


def add_dataset(p: Any, help: str | None = None, sort: bool = False, **kw: Any) -> None:
    """``--dataset``, its choices from :data:`aanntwin.config.DATASETS` (``sort``: by name)."""
    p.add_argument("--dataset", choices=sorted(DATASETS) if sort else DATASETS, help=help, **kw)


def add_data_dir(p: Any) -> None:
    p.add_argument("--data-dir", help=DATA_DIR_HELP)


def add_device(p: Any, help: str = DEVICE_HELP) -> None:
    """``--device`` (resolved by :func:`torch_device`)."""
    p.add_argument("--device", default="auto", help=help)


def add_threads(p: Any) -> None:
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")


def torch_device(args: argparse.Namespace) -> torch.device:
    """The torch device of ``--device`` (``auto``: CUDA when present), validated (``cuda:N``
    must exist); sets torch's CPU threads first when the command has ``--threads``."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise AanntwinError(
            f"--device {args.device!r}: not a device (cpu, cuda, cuda:N, auto)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AanntwinError(f"--device {args.device}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise AanntwinError(
            f"--device {args.device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return device
