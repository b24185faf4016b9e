"""Small characterization CSVs written by the tests (the format of the shipped files)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

MULT_HEAD = (
    "# format: aanntwin-characterization/1\n# circuit: multiplier\n# analysis: dc\n"
    "# x_full_scale: 0.1 V\n# w_full_scale: 0.2 V\n# y_full_scale: 1e-05 A\n"
)
RELU_HEAD = (
    "# format: aanntwin-characterization/1\n# circuit: relu\n# analysis: dc\n"
    "# x_full_scale: 1e-05 A\n# y_full_scale: 1e-05 A\n"
)


def multiplier_csv(
    path: Path, y: Callable[[np.ndarray, np.ndarray], np.ndarray], tail: str = ""
) -> Path:
    """A multiplier DC sweep: x -1.5..1.5 (31 steps) for each w in -1..1 (9 steps),
    ``y(x, w)``; ``tail``: text after the table."""
    x, w = np.meshgrid(np.linspace(-1.5, 1.5, 31), np.linspace(-1.0, 1.0, 9))
    x, w = x.ravel(), w.ravel()
    values = np.broadcast_to(np.asarray(y(x, w), float), x.shape)
    rows = "".join(f"{a:.6g},{b:.6g},{float(c)!r}\n" for a, b, c in zip(x, w, values, strict=True))
    path.write_text(MULT_HEAD + "x,w,y\n" + rows + tail, encoding="utf-8")
    return path


def relu_csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """A ReLU DC sweep of ``y`` at ``x``."""
    values = np.broadcast_to(np.asarray(y, float), np.shape(x))
    rows = "".join(f"{a:.6g},{float(b)!r}\n" for a, b in zip(x, values, strict=True))
    path.write_text(RELU_HEAD + "x,y\n" + rows, encoding="utf-8")
    return path


def montecarlo_csv(path: Path, gains: list[float]) -> Path:
    """A multiplier Monte Carlo table: instance k is ``gains[k] * tanh(x) * w`` on a 13 x 5 grid."""
    x, w = np.meshgrid(np.linspace(-1.5, 1.5, 13), np.linspace(-1.0, 1.0, 5))
    x, w = x.ravel(), w.ravel()
    rows = "".join(
        f"{k},{a:.6g},{b:.6g},{float(g * np.tanh(a) * b)!r}\n"
        for k, g in enumerate(gains)
        for a, b in zip(x, w, strict=True)
    )
    head = MULT_HEAD.replace("analysis: dc", "analysis: montecarlo")
    path.write_text(head + "instance,x,w,y\n" + rows, encoding="utf-8")
    return path
