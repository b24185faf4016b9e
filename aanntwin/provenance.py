"""Where a result came from: package and torch versions, device, threads, git commit."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    import torch


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the checkout holding this package (``+dirty`` if modified); None outside one."""
    where = path or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(device: torch.device | str | None = None) -> dict[str, Any]:
    import torch  # here, not at the top: `git_commit` serves processes that never load torch

    dev = torch.device(device) if device is not None else torch.device("cpu")
    info: dict[str, Any] = {
        "aanntwin": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }
    if dev.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(dev)
    return info
