"""aanntwin: digital twin of an analog CMOS convolutional neural network accelerator.

The names below load on first use (PEP 562), so a process that only needs e.g. the workbook
runner or the command-line parser does not import torch (~250 MB) for them.
"""

from __future__ import annotations

import importlib
import os as _os
from typing import TYPE_CHECKING, Any

# On shared cores, OpenMP threads that spin while waiting slowed PyTorch 10-90x here; a passive
# wait policy must be set before torch starts its thread pool.
_os.environ.setdefault("OMP_WAIT_POLICY", "passive")

__version__ = "0.1.0"

# public name -> the submodule defining it
_EXPORTS = {
    "ModelParams": "config",
    "Nonidealities": "config",
    "Normalization": "config",
    "RunConfig": "config",
    "TrainParams": "config",
    "load_config": "config",
    "load_nonidealities": "config",
    "Dataset": "data",
    "load_dataset": "data",
    "Main": "model",
    "geometry": "model",
    "load_weights": "model",
    "save_weights": "model",
    "EvalResult": "training",
    "evaluate": "training",
    "train": "training",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # what type checkers see (redundant aliases: explicit re-exports)
    from .config import ModelParams as ModelParams
    from .config import Nonidealities as Nonidealities
    from .config import Normalization as Normalization
    from .config import RunConfig as RunConfig
    from .config import TrainParams as TrainParams
    from .config import load_config as load_config
    from .config import load_nonidealities as load_nonidealities
    from .data import Dataset as Dataset
    from .data import load_dataset as load_dataset
    from .model import Main as Main
    from .model import geometry as geometry
    from .model import load_weights as load_weights
    from .model import save_weights as save_weights
    from .training import EvalResult as EvalResult
    from .training import evaluate as evaluate
    from .training import train as train


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aanntwin' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
