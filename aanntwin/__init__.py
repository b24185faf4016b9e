"""aanntwin: digital twin of an analog CMOS convolutional neural network accelerator."""

import os as _os

# On shared cores, OpenMP threads that spin while waiting slowed PyTorch 10-90x here; a passive
# wait policy must be set before torch starts its thread pool.
_os.environ.setdefault("OMP_WAIT_POLICY", "passive")

__version__ = "0.1.0"

from .config import (  # noqa: E402
    ModelParams,
    Nonidealities,
    Normalization,
    RunConfig,
    TrainParams,
    load_config,
    load_nonidealities,
)
from .data import Dataset, load_dataset  # noqa: E402
from .model import Main, geometry, load_weights, save_weights  # noqa: E402
from .training import EvalResult, evaluate, train  # noqa: E402

__all__ = [
    "__version__",
    "ModelParams",
    "Nonidealities",
    "Normalization",
    "RunConfig",
    "TrainParams",
    "load_config",
    "load_nonidealities",
    "Dataset",
    "load_dataset",
    "Main",
    "geometry",
    "load_weights",
    "save_weights",
    "EvalResult",
    "evaluate",
    "train",
]
