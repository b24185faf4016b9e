"""Outputs that are not numbers: an accuracy computed from NaN or inf logits still looks like
one (their argmax is a class), so every evaluation checks its losses before reporting."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .errors import AanntwinError


class NonFiniteError(AanntwinError):
    """A model's outputs were NaN or inf: an accuracy computed from them would mean nothing."""


def check_finite(losses: Tensor, labels: list[str]) -> None:
    """Raise :class:`NonFiniteError` naming the first of ``labels`` (one per row of
    ``losses``, the summed losses of its runs) whose losses are not finite: a NaN or inf output
    makes its loss so, while its argmax still looks like a class."""
    bad = ~torch.isfinite(losses.reshape(len(labels), -1)).all(1)
    if bool(bad.any()):
        raise NonFiniteError(
            f"the model's outputs are not finite (NaN or inf) {labels[int(bad.nonzero()[0])]}: "
            "its weights, or values of these settings, overflow float32 (|x| <= 3.4e38, "
            "products included); an accuracy from such outputs would mean nothing"
        )


def describe(active: dict[str, Any]) -> str:
    """``under input_noise=0.1, ...`` for the active settings of a :class:`Nonidealities`."""
    if not active:
        return "with every nonideality off"
    text = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in active.items()
    )
    return f"under {text[:300]}{'...' if len(text) > 300 else ''}"
