"""Pure functional core of the analog nonidealities (what the `layers` modules call).

All functions are device- and dtype-agnostic: scalar settings are Python numbers, tensors come in
as arguments, and new tensors are made ``*_like`` their input. Voltages are in volts; weights are
dimensionless (multiplier gains). Where rounding has no useful gradient (quantizers) the
straight-through estimator is used: forward = quantized value, backward = gradient of the clip
(1 inside the quantizer's range, 0 outside it, so no gradient pushes a value past what the
codes can represent).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def normalize(x: Tensor, min_in: float, max_in: float, min_out: float, max_out: float) -> Tensor:
    """``v = min_out + (x - min_in) * (max_out - min_out) / (max_in - min_in)`` (volts)."""
    scale = (max_out - min_out) / (max_in - min_in)
    return x * scale + (min_out - min_in * scale)


def gaussian_noise(
    x: Tensor, sigma: float | Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """``x + N(0, sigma^2)``, a fresh draw per element (temporal noise).

    ``sigma`` is a float or a tensor broadcastable to ``x`` (e.g. one level per stacked copy).
    The draw fills a contiguous buffer in ``x``'s logical order whatever ``x``'s memory layout:
    the same numbers for any layout, and PyTorch's vectorized normal (a buffer with ``x``'s
    strides, e.g. a per-position convolution's output, took its scalar path: ~6x slower).
    """
    if isinstance(sigma, Tensor):
        unit = _fresh(x).normal_(0.0, 1.0, generator=generator)
        return unit.mul_(sigma).add_(x)
    if sigma == 0:
        return x
    # Reusing the freshly drawn buffer for the sum saves one allocation per call.
    return _fresh(x).normal_(0.0, sigma, generator=generator).add_(x)


def _fresh(x: Tensor) -> Tensor:
    """An uninitialized contiguous tensor of ``x``'s shape, dtype and device."""
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def inject_noise(x: Tensor, unit: Tensor, sigma: float | None) -> Tensor:
    """Temporal noise from a given unit draw: ``unit * sigma + x`` (``x`` itself when sigma is
    None or 0). Equals :func:`gaussian_noise` from the generator state that drew ``unit`` (by
    ``normal_(0, 1)``) bit for bit where :func:`injectable` holds."""
    return x if not sigma else (unit * sigma).add_(x)


def injectable_kind(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether tensors of this device and dtype can be :func:`injectable` at all (CPU, float32 or
    float64): checked before any work is spent on the fast path."""
    return device.type == "cpu" and dtype in (torch.float32, torch.float64)


def injectable(xs: Sequence[Tensor]) -> bool:
    """Whether :func:`inject_noise` equals :func:`gaussian_noise` bit for bit on every ``x``: on
    the CPU for contiguous float32/float64 tensors of at least 16 elements (PyTorch's vectorized
    normal; smaller ones are drawn in double and rounded once). Not established on other devices."""
    return all(
        injectable_kind(x.device, x.dtype) and x.is_contiguous() and x.numel() >= 16 for x in xs
    )


def clip(x: Tensor, limit: float, reuse: bool = False) -> Tensor:
    """Symmetric input range of a multiplier: ``clamp(x, -limit, +limit)`` (volts).

    ``reuse``: the caller hands ``x`` over (a buffer nobody else reads), so the result may be
    written into it; done only where autograd records nothing (:func:`reusable`)."""
    if reuse and reusable(x):
        return x.clamp_(-limit, limit)
    return x.clamp(-limit, limit)


def reusable(x: Tensor) -> bool:
    """Whether an elementwise result may overwrite ``x`` (handed over by its caller): autograd
    records nothing on it (an in-place op on a recorded tensor breaks its backward)."""
    return not _recording(x)


def _recording(*tensors: Tensor) -> bool:
    """Whether autograd records ops on these tensors (else fresh buffers may be updated in place)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _horner(x: Tensor, coeffs: Sequence[float]) -> Tensor:
    """``a_0 + a_1 x + ...`` (degree >= 1) by Horner's rule in one fresh buffer, updated in
    place (callers hold no autograd record); zero coefficients add nothing."""
    out = x * coeffs[-1]
    for a in reversed(coeffs[1:-1]):
        if a != 0:
            out.add_(a)
        out.mul_(x)
    return out.add_(coeffs[0]) if coeffs[0] != 0 else out


def _affine(x: Tensor, a0: float, a1: float) -> Tensor:
    """``a_0 + a_1 x`` in one fresh buffer (one pass; two for a general ``a_0, a_1``)."""
    if a1 == 0:
        return torch.full_like(x, a0)
    if a1 == 1:
        return x + a0 if a0 != 0 else x.clone()
    return _horner(x, (a0, a1))


def _evaluate(x: Tensor, coeffs: Sequence[float], reuse: bool = False) -> Tensor:
    """``p(x)`` in few passes over the tensor, into fresh buffers updated in place (``x`` itself
    only with ``reuse``, for the one-pass ``(0, 1, a_2)``; no autograd record here).
    ``x + x q(x)`` ends in one fused ``addcmul``: the common ``(0, 1, a_2)`` is one pass
    (Horner: three), ``(0, 1, a_2, a_3)`` four (five); other degree-2 forms are
    ``a_0 + a_1 x`` then one ``addcmul``; the rest Horner (no split saves a pass)."""
    if len(coeffs) == 1:
        return torch.full_like(x, coeffs[0])
    a0, a1 = coeffs[0], coeffs[1]
    if len(coeffs) == 2:
        return _affine(x, a0, a1)
    if a0 == 0 and a1 == 1:
        if len(coeffs) == 3:
            if reuse:  # the same kernel writing into x: the same numbers
                return x.addcmul_(x, x, value=coeffs[2])
            return torch.addcmul(x, x, x, value=coeffs[2])
        t = _horner(x, (0, *coeffs[2:]))  # x (a_2 + a_3 x + ...)
        return torch.addcmul(x, t, x, out=t)  # into t's buffer: one live buffer, not two
    if len(coeffs) == 3:
        return _affine(x, a0, a1).addcmul_(x, x, value=coeffs[2])
    return _horner(x, coeffs)


class _Polynomial(torch.autograd.Function):
    """``p(x)`` recorded as one node: the forward is the no-grad evaluation itself (so both paths
    agree bit for bit), the backward ``grad * p'(x)`` in as few passes (one for ``(0, 1, a_2)``),
    itself differentiable (double backward records through :func:`polynomial`)."""

    @staticmethod
    def forward(ctx, x: Tensor, coeffs: tuple[float, ...]) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.coeffs = coeffs
        return _evaluate(x, coeffs)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        slope = tuple(k * a for k, a in enumerate(ctx.coeffs))[1:]  # p' = a_1 + 2 a_2 x + ...
        if len(slope) == 1:
            return grad * slope[0], None
        if len(slope) == 2:  # grad (b_0 + b_1 x) = b_0 grad + b_1 grad x
            base = grad if slope[0] == 1 else grad * slope[0]
            return torch.addcmul(base, grad, x, value=slope[1]), None
        return polynomial(x, slope) * grad, None


def polynomial(x: Tensor, coeffs: Sequence[float], reuse: bool = False) -> Tensor:
    """``p(x) = sum_k a_k x^k`` with ``coeffs = (a_0, a_1, ...)`` (Python numbers), a fresh
    tensor (``x`` is modified only with ``reuse``), in few passes over the tensor (see
    :func:`_evaluate`).
    ``reuse``: as :func:`clip` (``x`` handed over; the one-pass ``(0, 1, a_2)`` then writes
    into it).

    Recorded for autograd as one node whose forward is the no-grad evaluation, so the recording
    and no-grad paths agree bit for bit; each element's value depends on that element alone (a
    stack of tensors gives each one's result bit for bit).
    """
    if len(coeffs) > 1 and _recording(x):
        return _Polynomial.apply(x, tuple(coeffs))
    return _evaluate(x, coeffs, reuse)


def table(x: Tensor, values: Tensor, span: float) -> Tensor:
    """Piecewise-linear transfer through the points ``(x_i, values[i])``, ``x_i = -span + i h``,
    ``h = 2 span / (n - 1)`` (n = len(values); ``x`` and ``span`` in the table's input units):
    ``values[i] + f (values[i+1] - values[i])`` with ``u = (x + span) / h``,
    ``i = clamp(floor(u), 0, n - 2)``, ``f = u - i``.

    Elementwise, differentiable in ``x`` (slope of the segment, ``/ h``) and in ``values``;
    ``values`` must be on ``x``'s device. Beyond ``+-span`` the end segments continue (clip first
    where the circuit clips). Where ``values`` needs no gradient (the layers' tables) it is one
    autograd node keeping one tensor (the slopes), not the dozen of the formula; the numbers
    are the formula's bit for bit.
    """
    if values.requires_grad and torch.is_grad_enabled():
        return _table_recorded(x, values, span)
    if _recording(x):
        return _Table.apply(x, values, span)
    return _table(x, values, span)[0]


def _locate(x: Tensor, n: int, span: float) -> tuple[Tensor, Tensor]:
    """Segment index ``i`` (int64) and position ``f`` in it, for a table of ``n`` points."""
    u = torch.add(x, span).div_(2.0 * span / (n - 1))
    i = u.floor().clamp_(0, n - 2)
    return i.long(), u.sub_(i)


def _table(x: Tensor, values: Tensor, span: float) -> tuple[Tensor, Tensor]:
    """The table's output and each element's segment slope (no autograd record)."""
    with torch.no_grad():
        idx, frac = _locate(x, values.numel(), span)
        slopes = values[1:] - values[:-1]  # = values[i + 1] - values[i], element by element
        flat = idx.reshape(-1)  # index_select gathers the same entries ~4x faster than values[idx]
        lo = values.index_select(0, flat).view(idx.shape)
        slope = slopes.index_select(0, flat).view(idx.shape)
        return frac.mul_(slope).add_(lo), slope  # frac * slope + lo == lo + frac * slope


def _table_recorded(x: Tensor, values: Tensor, span: float) -> Tensor:
    """The formula recorded op by op (gradients reach ``values`` too)."""
    n = values.numel()
    u = (x + span) / (2.0 * span / (n - 1))
    i = u.detach().floor().clamp_(0, n - 2)
    idx = i.long()
    lo = values[idx]
    return lo + (u - i) * (values[idx + 1] - lo)


class _Table(torch.autograd.Function):
    """:func:`table` in ``x`` alone: forward from :func:`_table`, backward
    ``grad * slope / h`` (what autograd gives the formula: the same two roundings)."""

    @staticmethod
    def forward(ctx, x: Tensor, values: Tensor, span: float) -> Tensor:  # type: ignore[override]
        out, slope = _table(x, values, span)
        ctx.save_for_backward(slope)
        ctx.step = 2.0 * span / (values.numel() - 1)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (slope,) = ctx.saved_tensors
        return grad * slope / ctx.step, None, None


def saturate(y: Tensor, full_scale: float, mode: str = "hard") -> Tensor:
    """Output swing limit: ``clamp(y, -s, s)`` (hard) or ``s * tanh(y / s)`` (tanh)."""
    if mode == "hard":
        return y.clamp(-full_scale, full_scale)
    if mode == "tanh":
        return torch.tanh(y / full_scale) * full_scale
    raise ValueError(f"saturation mode must be 'hard' or 'tanh', got {mode!r}")


def analog_relu(y: Tensor, cutoff: float | None = None, reuse: bool = False) -> Tensor:
    """ReLU circuit: ``max(cutoff, y)``; ``cutoff=None`` is the ideal ``max(0, y)``.
    ``reuse``: as :func:`clip` (``y`` handed over and written into where nothing records)."""
    inplace = reuse and reusable(y)
    if cutoff is None or cutoff == 0:
        return F.relu(y, inplace=inplace)
    return y.clamp_(min=cutoff) if inplace else y.clamp(min=cutoff)


def soft_relu(
    y: Tensor,
    cutoff: float | None = None,
    gain: float | None = None,
    threshold: float | None = None,
    softness: float | None = None,
) -> Tensor:
    """ReLU circuit with gain and a (soft) knee, volts:
    ``cutoff + gain * s * log(1 + exp((y - threshold) / s))`` with ``s = softness``;
    ``softness=None`` is the hard ``cutoff + gain * max(0, y - threshold)``. Defaults: cutoff
    0, gain 1, threshold = cutoff, so with only ``cutoff`` set this is :func:`analog_relu`.
    """
    c = cutoff or 0.0
    u = y - (c if threshold is None else threshold)
    r = F.relu(u) if softness is None else F.softplus(u, beta=1.0 / softness, threshold=20.0)
    if gain is not None and gain != 1.0:
        r = r * gain
    return r + c if c else r


def _straight_through(x: Tensor, q: Tensor) -> Tensor:
    """Forward exactly ``q``, backward identity to ``x`` (the straight-through estimator).

    ``x`` is the clipped input: the gradient is then the clip's (zero outside the range).
    """
    if not x.requires_grad:
        return q
    return q + (x - x.detach())


def quantize_uniform(x: Tensor, bits: int, lo: float, hi: float) -> Tensor:
    """ADC/DAC: ``2**bits`` evenly spaced levels from ``lo`` to ``hi`` inclusive, nearest level.

    ``step = (hi - lo) / (2**bits - 1)``; values outside ``[lo, hi]`` clip. Gradient of the
    clip: 1 on ``[lo, hi]`` (bounds included), 0 outside.
    """
    step = (hi - lo) / (2**bits - 1)
    xc = x.clamp(lo, hi)
    q = torch.round((xc - lo) / step) * step + lo
    return _straight_through(xc, q)


def quantize_weights(w: Tensor, bits: int, ref: float | Tensor, zero_level: bool = True) -> Tensor:
    """Deployed weight levels (DESIGN.md §1), ``bits`` not counting the sign.

    ``step = ref / 2**bits``. With a zero level: ``k * step`` clipped to ``+-(ref - step)``.
    Without: ``(k + 1/2) * step`` clipped to ``+-(ref - step/2)``. Nearest level.
    Gradient of the clip to ``+-ref`` (the range the codes represent: the code grid spans
    ``[-ref, ref]``): 1 for ``|w| <= ref``, 0 outside, so training does not push latent weights
    past the reference. ``ref`` may be a 0-d tensor (no host sync).
    """
    step = ref / 2**bits
    top = 2**bits
    if zero_level:  # integer codes first, then levels: every output is exactly k * step
        q = torch.round(w / step).clamp(-(top - 1), top - 1) * step
    else:
        q = (torch.floor(w / step).clamp(-top, top - 1) + 0.5) * step
    if not w.requires_grad:
        return q
    bound = ref.detach() if isinstance(ref, Tensor) else ref
    return _straight_through(w.clamp(-bound, bound), q)


def conv2d_per_position(
    x: Tensor, weight: Tensor, bias: Tensor | None, gain: Tensor, stride: int, padding: int
) -> Tensor:
    """Fully unrolled convolution where every output position has its own multipliers.

    ``y[n, o, h, w] = sum_{c,i,j} weight[o,c,i,j] * gain[o,h,w,c,i,j] * x_pad[n, c, h*s+i, w*s+j]``
    (+ ``bias[o]``). ``gain`` is ``1 + relative error`` of each physical multiplier.
    """
    k = weight.shape[-1]
    n, c = x.shape[:2]
    xp = F.pad(x, (padding, padding, padding, padding)) if padding else x
    patches = xp.unfold(2, k, stride).unfold(3, k, stride)  # (N, C, Ho, Wo, k, k) view
    ho, wo = patches.shape[2:4]
    # One batched matmul over the positions with both operands contiguous (the einsum of the
    # same sum permuted them inside, on every call and in its backward): the conv's forward and
    # backward take ~30 % less time, a characterized training epoch ~5 % less. The same
    # products and sums: outputs and gradients are the einsum's bit for bit.
    p = patches.permute(2, 3, 0, 1, 4, 5).reshape(ho * wo, n, c * k * k)
    w_eff = (weight[:, None, None] * gain).permute(1, 2, 3, 4, 5, 0)  # (Ho, Wo, C, k, k, O)
    y = torch.bmm(p, w_eff.reshape(ho * wo, c * k * k, -1))  # (Ho*Wo, N, O)
    y = y.permute(1, 2, 0).reshape(n, weight.shape[0], ho, wo).contiguous()  # the usual layout
    if bias is not None:
        y = y + bias[:, None, None]
    return y
