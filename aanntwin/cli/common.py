"""What the commands share: the parser class, argument types, the runtime flags (``--data-dir``,
``--dataset``, ``--device``, ``--threads``) and the one ``--device`` resolver."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from ..bounds import EPOCHS, MAX_RUNS, MAX_SEED, RUNS_NOTE
from ..config import DATASETS
from ..errors import AanntwinError, ConfigError
from ..registry import NPZ_FORM, check_name
from ..schema import FLOAT32_MAX
from ..studies.dask_scheduler import DASK_CONNECT_TIMEOUT, check_dask_address

if TYPE_CHECKING:
    import torch

DATA_DIR_HELP = "folder with the dataset files: IDX, CIFAR-10 .bin (or $AANNTWIN_DATA_DIR)"
DEVICE_HELP = "cpu, cuda, cuda:N or auto (default)"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


MAX_THREADS = (os.cpu_count() or 1) * 4
"""``--threads`` and ``--workers``: at most 4 per core of this machine."""


def bounded_int(lo: int, hi: int, note: str = "") -> Callable[[str], int]:
    """argparse type: an integer in ``lo..hi``; the error gives the text and the range (and
    ``note``, e.g. where the upper bound comes from)."""
    why = f" ({note})" if note else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid int value: {text!r} (allowed: integers {lo}..{hi})"
            ) from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {text} (allowed {lo}..{hi})")
        if value > hi:
            raise argparse.ArgumentTypeError(f"{text} is too large: allowed {lo}..{hi}{why}")
        return value

    parse.__name__ = "int"
    return parse


positive_int = bounded_int(1, 2**31 - 1)
"""argparse type: an integer >= 1 (and below 2**31)."""
seed_int = bounded_int(0, MAX_SEED)
"""argparse type: a seed, 0..2**63-1."""
runs_int = bounded_int(1, MAX_RUNS, RUNS_NOTE)
"""argparse type: a count of noise draws or chip instances (bounded by the memory estimate)."""


_epochs = bounded_int(*EPOCHS)


def epochs_int(text: str) -> int:
    """argparse type: ``--epochs``, :data:`~aanntwin.bounds.EPOCHS` (0 trains nothing: refused, not an untrained run)."""
    if text.strip() == "0":
        raise argparse.ArgumentTypeError("0: trains nothing; use >= 1")
    return _epochs(text)


threads_int = bounded_int(1, MAX_THREADS, f"4 x this machine's {os.cpu_count() or 1} cores")
"""argparse type: ``--threads`` / ``--workers``."""


def workers_arg(text: str) -> int | str:
    """argparse type: ``--workers``, ``auto`` or an integer 1..:data:`MAX_THREADS`."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return threads_int(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or auto") from None


workers_arg.__name__ = "workers"


def number(kind: type, test: Callable[[Any], bool], allowed: str) -> Callable[[str], Any]:
    """argparse type: ``kind(text)`` that passes ``test``, else a clear error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        if kind is float and abs(value) > FLOAT32_MAX:  # the model computes in float32
            raise argparse.ArgumentTypeError(f"{text} is beyond the float32 range (|x| <= 3.4e38)")
        return value

    return parse


def dataset_name(text: str) -> str:
    """argparse type: a registered dataset name or an existing ``.npz`` file (the registry's
    check; the error is one line naming the value, the names and the ``.npz`` form)."""
    try:
        return check_name(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("dataset = ")) from None


dataset_name.__name__ = "dataset"


def add_dataset(p: Any, help: str | None = None, sort: bool = False, **kw: Any) -> None:
    """``--dataset``: a registered name (:data:`aanntwin.config.DATASETS`; ``sort``: listed by
    name in the help) or a ``.npz`` path, checked by the registry."""
    names = ", ".join(sorted(DATASETS) if sort else DATASETS)
    text = f"{names}, or {NPZ_FORM}"
    help = f"{help} ({text})" if help else text
    p.add_argument("--dataset", type=dataset_name, metavar="NAME|FILE.npz", help=help, **kw)


def add_data_dir(p: Any) -> None:
    p.add_argument("--data-dir", help=DATA_DIR_HELP)


def add_device(p: Any, help: str = DEVICE_HELP) -> None:
    """``--device`` (resolved by :func:`torch_device`)."""
    p.add_argument("--device", default="auto", help=help)


def add_workers(p: Any, what: str) -> None:
    """``--workers`` (default ``auto``) and ``--dask-scheduler``: where ``what`` runs."""
    p.add_argument(
        "--workers",
        type=workers_arg,
        default="auto",
        help=f"local processes for {what}: auto (default: one per core, at most one per task, "
        "each with cores/workers torch threads) or N (1: in this process)",
    )
    p.add_argument(
        "--dask-scheduler",
        type=dask_address_arg,
        metavar="ADDRESS",
        help="run on the Dask scheduler at scheme://host:port or host:port, e.g. "
        f"tcp://host:8786; it must answer within {DASK_CONNECT_TIMEOUT:g} s",
    )


def dask_address_arg(text: str) -> str:
    """argparse type: ``--dask-scheduler``, an address of the form Dask reads (not empty)."""
    try:
        return check_dask_address(text)
    except AanntwinError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--dask-scheduler ")) from None


dask_address_arg.__name__ = "address"


def add_threads(p: Any) -> None:
    p.add_argument("--threads", type=threads_int, help=f"CPU threads for torch (1..{MAX_THREADS})")


def torch_device(args: argparse.Namespace) -> torch.device:
    """The torch device of ``--device`` (``auto``: CUDA when present), validated (``cuda:N``
    must exist); sets torch's CPU threads first when the command has ``--threads``."""
    import torch  # here: parsing a command line does not load torch

    from ..device import resolve_device

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)
