"""Pixel codes to image values: what every dataset loader (IDX, CIFAR-10, ``.npz``) shares, and
the way back (:func:`unit_codes`) that lets training read a quarter of the bytes."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def unit_float32(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels (0..255) as float32 in [0, 1]: ``float32(x) / float32(255)``, rounded as
    ``x.astype(np.float32) / 255`` rounds, written straight into the result (the ufunc casts in
    small buffers), so the peak is the result plus the input, with no full float temporary."""
    out = np.empty(pixels.shape, np.float32)
    np.divide(pixels, np.float32(255.0), out=out, dtype=np.float32)
    return out


CODE_CHUNK = 1024
"""Images per chunk of :func:`unit_codes` (bounds its temporaries to a few MB)."""


def decode_unit(codes: Tensor) -> Tensor:
    """uint8 codes as float32 in [0, 1]: ``float32(c) / float32(255)``, correctly rounded, so
    bit for bit what :func:`unit_float32` gives for the same codes (both divide in IEEE float32)."""
    return codes.to(torch.float32).div_(255.0)


def unit_codes(x: Tensor) -> Tensor | None:
    """The uint8 codes ``c`` with ``decode_unit(c)`` equal to float32 ``x`` bit for bit, or None
    when ``x`` holds any other value (images that are not 8-bit pixels scaled to [0, 1], e.g. the
    8x8 digits' 16 grey levels, or a ``.npz`` of other floats). Chunk by chunk: the peak is the
    codes (a quarter of ``x``) plus a few MB."""
    if x.dtype != torch.float32 or x.device.type != "cpu" or x.dim() == 0 or x.numel() == 0:
        return None
    codes = torch.empty(x.shape, dtype=torch.uint8)
    flat_x, flat_c = x.reshape(len(x), -1), codes.view(len(x), -1)
    for start in range(0, len(x), CODE_CHUNK):
        part = flat_x[start : start + CODE_CHUNK]
        c = (part * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        # compared as bits: -0.0, NaN and values between codes all fail
        if not torch.equal(decode_unit(c).view(torch.int32), part.view(torch.int32)):
            return None
        flat_c[start : start + CODE_CHUNK] = c
    return codes
