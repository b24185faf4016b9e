"""The allowed values of the notebooks' parameters, checked before a workbook runs anything.

The ranges are the command line's (:mod:`aanntwin.bounds`): ``epochs: 0`` is refused as
``--epochs 0`` is, ``chips: 100000`` as ``validate-circuit --chips 100000``. A parameter not
listed here takes any value of its type (``quick``) or is checked elsewhere (paths, dataset,
nonidealities).
"""

from __future__ import annotations

import functools
import math
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from ..bounds import (
    CIRCUIT_CHIPS,
    CIRCUIT_IMAGES,
    CONFIDENCE,
    DEVICES,
    EPOCHS,
    MAX_RUNS,
    MAX_SEED,
    RUNS_NOTE,
    TARGET_DROP,
    confidence_ok,
    target_drop_ok,
)
from ..characterization.circuits import MULTIPLIERS
from ..errors import AanntwinError

DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


def _ints(lo: int, hi: int, note: str = "") -> Callable[[Any], str | None]:
    why = f" ({note})" if note else ""

    def check(value: Any) -> str | None:
        return None if lo <= value <= hi else f"out of range: allowed integers {lo}..{hi}{why}"

    return check


def _fraction(test: Callable[[float], bool], allowed: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = math.isfinite(value) and test(value)
        return None if ok else f"out of range: allowed a fraction {allowed}"

    return check


def _choice(ok: Callable[[Any], bool], allowed: str) -> Callable[[Any], str | None]:
    return lambda value: None if ok(value) else f"not allowed: allowed {allowed}"


@functools.cache
def cuda_devices() -> int:
    """CUDA devices the notebooks' interpreter sees, asked in a child process (this process
    never imports torch: seconds, memory); 0 when torch cannot tell."""
    code = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, check=True)  # fmt: skip
        return int(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return 0


def _device(value: str) -> str | None:
    """A device spec the machine has (``resolve_device``'s rule, checked before any work)."""
    if not DEVICE.fullmatch(value):
        return f"not allowed: allowed {DEVICES}"
    if not value.startswith("cuda"):
        return None
    count = cuda_devices()
    if count == 0:
        return "CUDA is not available on this machine (allowed here: cpu, auto)"
    index = int(value.partition(":")[2] or 0)
    return None if index < count else f"this machine has {count} CUDA device(s)"


RANGES: dict[str, Callable[[Any], str | None]] = {
    "epochs": _ints(*EPOCHS, "0 trains nothing"),
    "seed": _ints(0, MAX_SEED),
    "chip_seed": _ints(0, MAX_SEED),
    "runs": _ints(1, MAX_RUNS, RUNS_NOTE),
    "spec_runs": _ints(1, MAX_RUNS, RUNS_NOTE),
    "chip_instances": _ints(1, MAX_RUNS, RUNS_NOTE),
    "images": _ints(*CIRCUIT_IMAGES),
    "chips": _ints(*CIRCUIT_CHIPS),
    "target_drop": _fraction(target_drop_ok, TARGET_DROP),
    "confidence": _fraction(confidence_ok, CONFIDENCE),
    "device": _device,
    "multiplier": _choice(lambda v: v in MULTIPLIERS, ", ".join(MULTIPLIERS)),
    "simulate": _choice(lambda v: v is None or isinstance(v, bool), "true, false or null"),
}
"""``{parameter: check}``: a check returns why a value of the right type is not allowed, or
None. It runs after the type check (an integer where the default is one)."""


def range_problem(key: str, value: Any) -> str | None:
    """Why ``value`` is not an allowed value of parameter ``key``; None when it is."""
    check = RANGES.get(key)
    return None if check is None else check(value)


_INTS = ("epochs", "seed", "chip_seed", "runs", "spec_runs", "chip_instances", "images", "chips")


def check_values(p: dict[str, Any]) -> None:
    """The parameters' types and ranges (the workbook's), checked by ``nb.setup`` also when a
    notebook runs alone (papermill ``-p quick false`` passes the string 'false', which counted
    as true; ``-p epochs 1.9`` trained 1 epoch)."""
    for key, value in p.items():
        why = None
        if key == "quick" and not isinstance(value, bool):
            why = "must be True or False (papermill: -p quick True)"
        elif (
            key in _INTS
            and value is not None
            and (isinstance(value, bool) or not isinstance(value, int))
        ):
            why = "must be an integer"
        elif value is not None:
            try:
                why = range_problem(key, value)
            except TypeError:
                why = f"has type {type(value).__name__}"
        if why:
            raise AanntwinError(f"parameter {key} = {value!r}: {why}")
