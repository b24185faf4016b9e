"""The functional core: the transfer polynomial (its math, gradients, in-place hygiene and the bit
for bit agreements the layers rely on: autograd and no-grad paths, stacked weight variants) and
the temporal noise's independence of memory layout."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch.overrides import TorchFunctionMode

from aanntwin import functional as AF

COEFFS = [
    (0.3,),  # degree 0: a constant
    (0.5, -2.0),  # degree 1, offset and gain
    (0.0, 1.0),  # identity
    (0.0, 1.0, 0.1),  # the reference input transfer
    (0.2, -0.7, 0.1),  # degree 2, a_0 != 0, a_1 != 1
    (-0.4, 1.0, -0.25),  # degree 2, a_1 == 1 with an offset
    (0.0, 0.0, -0.4),  # pure square
    (0.5, 0.0, 0.1),  # no linear term
    (0.0, 1.0, 0.1, -0.02),  # the cubic weight transfer
    (-0.1, 0.9, -0.05, 0.02),  # degree 3, every term
    (0.0, 0.0, 0.0, 0.3),  # pure cube
    (0.05, 1.2, -0.1, -0.03, 0.004, 0.002, -0.0003, -0.0001),  # degree 7 (characterized fit)
]


def horner64(x: torch.Tensor, coeffs: Sequence[float]) -> torch.Tensor:
    """Reference: Horner's rule in float64 (plain, out of place)."""
    out = torch.full_like(x, coeffs[-1], dtype=torch.float64)
    for a in reversed(coeffs[:-1]):
        out = out * x.double() + a
    return out


def sample(dtype: torch.dtype, shape: tuple[int, ...] = (4099,), seed: int = 0) -> torch.Tensor:
    """Uniform on [-3, 3] V (past the input clip either side), from an explicit seed."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 6 - 3).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("coeffs", COEFFS)
def test_polynomial_equals_the_math_to_float_rounding(coeffs, dtype):
    x = sample(dtype)
    p = AF.polynomial(x, coeffs)
    assert p.dtype == dtype and p.shape == x.shape
    torch.testing.assert_close(p, horner64(x, coeffs).to(dtype))


@pytest.mark.parametrize("coeffs", [c for c in COEFFS if len(c) > 1])
def test_polynomial_gradient_is_the_derivative(coeffs):
    x = sample(torch.float64, (64,), seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: AF.polynomial(t, coeffs), (x,))
    assert torch.autograd.gradgradcheck(lambda t: AF.polynomial(t, coeffs), (x,))
    (got,) = torch.autograd.grad(AF.polynomial(x, coeffs).sum(), x)
    (want,) = torch.autograd.grad(horner64(x, coeffs).sum(), x)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("coeffs", COEFFS)
def test_polynomial_recording_and_no_grad_paths_agree_bit_for_bit(coeffs, dtype):
    x = sample(dtype, seed=2)
    with torch.no_grad():
        fast = AF.polynomial(x, coeffs)
    recorded = AF.polynomial(x.clone().requires_grad_(), coeffs)
    assert torch.equal(fast, recorded.detach())


@pytest.mark.parametrize("coeffs", COEFFS)
def test_polynomial_never_modifies_its_input_and_returns_a_fresh_tensor(coeffs):
    x = sample(torch.float32, seed=3)
    kept = x.clone()
    with torch.no_grad():
        p = AF.polynomial(x, coeffs)
    assert torch.equal(x, kept)
    assert p.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("coeffs", COEFFS)
def test_polynomial_of_a_stack_equals_each_slice_bit_for_bit(coeffs):
    """What ``mac_variants`` relies on: the weight transfer of P stacked variants is each
    variant's own, whatever its size or position (vectorized body or tail), contiguous or not."""
    stack = sample(torch.float32, (5, 7, 13), seed=4)
    whole = AF.polynomial(stack, coeffs)
    for p in range(len(stack)):
        assert torch.equal(whole[p], AF.polynomial(stack[p], coeffs))
    transposed = stack.transpose(1, 2)  # not contiguous
    assert torch.equal(AF.polynomial(transposed, coeffs), whole.transpose(1, 2))


class _CountOps(TorchFunctionMode):
    """Counts the torch operations called (each one elementwise pass here)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    ("coeffs", "passes"),
    [((0.0, 1.0, 0.1), 1), ((0.2, -0.7, 0.1), 3), ((0.0, 1.0, 0.1, -0.02), 4)],
)
def test_polynomial_passes_over_the_tensor(coeffs, passes):
    """Cost pin (not a timing): the reference ``(0, 1, a_2)`` input transfer, run on every
    activation of every forward, is one elementwise operation (``x + a_2 x x``)."""
    x = sample(torch.float32, (1000,), seed=5)
    with torch.no_grad(), _CountOps() as ops:
        AF.polynomial(x, coeffs)
    assert len(ops.calls) == passes, ops.calls


def test_noise_is_drawn_in_logical_order_whatever_the_layout_of_its_input():
    """A per-position convolution (conv gain mismatch) returned a permuted view; the noise after
    it was drawn into a buffer with those strides, through PyTorch's scalar normal (other
    numbers than for the same values laid out contiguously, and ~6x slower)."""
    x = torch.rand(8, 13, 13, 4).permute(0, 3, 1, 2)  # (N, C, H, W) values, channels-last memory
    assert not x.is_contiguous()
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    noisy = AF.gaussian_noise(x, 0.1, gen())
    assert torch.equal(noisy, AF.gaussian_noise(x.contiguous(), 0.1, gen()))
    assert noisy.is_contiguous()


def test_a_per_position_convolution_hands_back_the_usual_layout():
    x, w = torch.rand(3, 2, 12, 12), torch.rand(4, 2, 3, 3)
    gain = 1 + 0.05 * torch.randn(4, 6, 6, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    y = AF.conv2d_per_position(x, w, torch.rand(4), gain, 2, 1)
    assert y.shape == (3, 4, 6, 6) and y.is_contiguous()
    ones = AF.conv2d_per_position(x, w, None, torch.ones_like(gain), 2, 1)
    torch.testing.assert_close(ones, torch.nn.functional.conv2d(x, w, None, 2, 1))


@pytest.mark.parametrize("shape", [(16, 1, 28, 28, 4, 6, 2, 1), (5, 3, 11, 9, 2, 3, 1, 0),
                                   (0, 2, 9, 9, 3, 3, 2, 1)])  # fmt: skip
def test_the_per_position_convolution_is_its_formula_with_its_gradients(shape):
    """The batched matmul over positions (faster: the einsum's backward looped over them) gives
    the docstring's sum, written as an einsum, bit for bit: outputs and every gradient."""
    n, c, h, w_, o, k, s, p = shape
    g = torch.Generator().manual_seed(3)
    ho, wo = (h + 2 * p - k) // s + 1, (w_ + 2 * p - k) // s + 1
    leaves = [torch.rand(n, c, h, w_, generator=g), torch.randn(o, c, k, k, generator=g),
              1 + 0.01 * torch.randn(o, ho, wo, c, k, k, generator=g), torch.randn(o, generator=g)]  # fmt: skip

    def formula(x, weight, gain, bias):
        patches = torch.nn.functional.pad(x, (p,) * 4).unfold(2, k, s).unfold(3, k, s)
        y = torch.einsum("nchwij,ohwcij->nohw", patches, weight[:, None, None] * gain)
        return y.contiguous() + bias[:, None, None]

    results = []
    for f in (formula, lambda x, wt, gn, b: AF.conv2d_per_position(x, wt, b, gn, s, p)):
        xs = [t.clone().requires_grad_(True) for t in leaves]
        y = f(*xs)
        (y * y.detach().sin()).sum().backward()
        results.append([y.detach(), *(t.grad for t in xs)])
    for got, want in zip(results[1], results[0], strict=True):
        assert torch.equal(got, want)


# ---------------------------------------------------------------- reusing a handed-over buffer
REUSE_CASES = [
    ("clip", lambda x, reuse: AF.clip(x, 1.5, reuse)),
    ("polynomial", lambda x, reuse: AF.polynomial(x, (0.0, 1.0, 0.1), reuse)),
    ("relu", lambda x, reuse: AF.analog_relu(x, None, reuse)),
    ("relu cutoff", lambda x, reuse: AF.analog_relu(x, 0.05, reuse)),
]


@pytest.mark.parametrize("name,fn", REUSE_CASES, ids=[c[0] for c in REUSE_CASES])
def test_reuse_writes_the_same_numbers_into_the_handed_over_buffer(name, fn):
    x = sample(torch.float32)
    expected = fn(x, False)
    assert torch.equal(x, sample(torch.float32)), "without reuse the input is never written"
    handed = x.clone()
    got = fn(handed, True)
    assert torch.equal(got, expected)
    assert got.data_ptr() == handed.data_ptr(), "the handed-over buffer holds the result"


@pytest.mark.parametrize("name,fn", REUSE_CASES, ids=[c[0] for c in REUSE_CASES])
def test_reuse_never_writes_a_tensor_autograd_records(name, fn):
    x = sample(torch.float64).requires_grad_()
    kept = x.detach().clone()
    y = fn(x, True)
    assert torch.equal(x.detach(), kept)
    (g,) = torch.autograd.grad(y.sum(), x)
    (g_plain,) = torch.autograd.grad(fn(x, False).sum(), x)
    assert torch.equal(g, g_plain)
