"""Outputs that are not numbers: an accuracy computed from NaN or inf logits still looks like
one (their argmax is a class), so every evaluation checks its losses before reporting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .errors import AanntwinError


class NonFiniteError(AanntwinError):
    """A model's outputs were NaN or inf: an accuracy computed from them would mean nothing."""


def check_finite(losses: Tensor, label: Callable[[int], str]) -> None:
    """Raise :class:`NonFiniteError` naming ``label(i)`` for the first row ``i`` of ``losses``
    ``[setting, run]`` (summed losses) that is not finite: a NaN or inf output makes its loss
    so, while its argmax still looks like a class. ``label`` is called only then (describing
    every setting of a sweep up front cost ~1 ms each)."""
    bad = ~torch.isfinite(losses).all(1)
    if bool(bad.any()):
        raise NonFiniteError(
            f"the model's outputs are not finite (NaN or inf) {label(int(bad.nonzero()[0]))}: "
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
