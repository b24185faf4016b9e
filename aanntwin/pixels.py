"""Pixel codes to image values: what every dataset loader (IDX, CIFAR-10, ``.npz``) shares."""

from __future__ import annotations

import numpy as np


def unit_float32(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels (0..255) as float32 in [0, 1]: ``float32(x) / float32(255)``, rounded as
    ``x.astype(np.float32) / 255`` rounds, written straight into the result (the ufunc casts in
    small buffers), so the peak is the result plus the input, with no full float temporary."""
    out = np.empty(pixels.shape, np.float32)
    np.divide(pixels, np.float32(255.0), out=out, dtype=np.float32)
    return out
