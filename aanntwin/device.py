"""Which torch device a command or notebook runs on: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.

One validation for every entry point (CLI ``--device``, the notebooks' ``device`` parameter):
a device this machine does not have is a one-line error, never a CUDA traceback mid-run.
"""

from __future__ import annotations

import torch

from .bounds import DEVICES as CHOICES
from .errors import AanntwinError


def resolve_device(spec: str | torch.device | None, where: str = "--device") -> torch.device:
    """The torch device of ``spec`` (``auto`` / None: CUDA when present, else the CPU),
    validated: ``where`` names the option or parameter in the error."""
    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise AanntwinError(f"{where} {spec!r}: not a device ({CHOICES})") from None
    if device.type not in ("cpu", "cuda"):
        raise AanntwinError(f"{where} {spec!r}: not a device ({CHOICES})")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AanntwinError(f"{where} {spec}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise AanntwinError(
            f"{where} {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return device
