"""Semantics of every nonideality (DESIGN.md §1), device/dtype hygiene."""

import pytest
import torch
import torch.nn.functional as F

from aanntwin import functional as AF
from aanntwin.config import Nonidealities, StageSettings
from aanntwin.layers import AnalogConv2d, AnalogLinear, AnalogReLU, Noise, Quantize
from aanntwin.model import Main
from aanntwin.seeds import NoiseSource
from tests.conftest import EVERYTHING


def test_noise_has_the_requested_std_and_is_redrawn():
    noise = Noise(0.2, NoiseSource(3))
    x = torch.zeros(200_000)
    a, b = noise(x), noise(x)
    assert a.std().item() == pytest.approx(0.2, rel=0.01)
    assert a.mean().abs().item() < 0.002
    assert not torch.equal(a, b)  # temporal noise: fresh draw every forward


def test_noise_is_reproducible_from_its_seed():
    x = torch.zeros(1000)
    assert torch.equal(Noise(0.1, NoiseSource(5))(x), Noise(0.1, NoiseSource(5))(x))
    assert not torch.equal(Noise(0.1, NoiseSource(5))(x), Noise(0.1, NoiseSource(6))(x))


def test_noise_accepts_a_tensor_of_levels():
    x = torch.zeros(3, 100_000)
    sigma = torch.tensor([[0.0], [0.1], [0.3]])
    y = AF.gaussian_noise(x, sigma, torch.Generator().manual_seed(0))
    assert y.std(1).tolist() == pytest.approx([0.0, 0.1, 0.3], rel=0.02, abs=1e-6)


def test_clip_and_polynomial_values():
    x = torch.linspace(-5, 5, 101)
    c = AF.clip(x, 2.0)
    assert c.min().item() == -2.0 and c.max().item() == 2.0
    p = AF.polynomial(x, (0.5, 1.0, 0.1, -0.02))
    assert torch.allclose(p, 0.5 + x + 0.1 * x**2 - 0.02 * x**3, atol=1e-5)
    assert torch.equal(AF.polynomial(x, (0.3,)), torch.full_like(x, 0.3))


def test_linear_stage_applies_clip_then_polynomial_then_mac():
    s = StageSettings(input_clip=1.0, input_nonlin=(0.0, 1.0, 0.5))
    lin = AnalogLinear(3, 2, settings=s)
    x = torch.tensor([[-3.0, 0.5, 2.0]])
    v = x.clamp(-1, 1)
    want = F.linear(v + 0.5 * v**2, lin.weight, lin.bias)
    assert torch.allclose(lin(x), want)


def test_relu_floor_and_ideal_relu():
    y = torch.linspace(-1, 1, 21)
    assert torch.equal(AnalogReLU()(y), F.relu(y))
    out = AnalogReLU(cutoff=0.2)(y)
    assert out.min().item() == pytest.approx(0.2)
    assert torch.equal(out[y > 0.2], y[y > 0.2])
    assert AnalogReLU(cutoff=-0.1)(y).min().item() == pytest.approx(-0.1)


def test_saturation_hard_and_tanh():
    y = torch.linspace(-10, 10, 201)
    hard = AF.saturate(y, 1.5, "hard")
    assert hard.abs().max().item() == 1.5
    soft = AF.saturate(y, 1.5, "tanh")
    assert soft.abs().max().item() < 1.5
    assert torch.allclose(soft, 1.5 * torch.tanh(y / 1.5))
    lin = AnalogLinear(4, 3, settings=StageSettings(out_saturation=0.01))
    assert lin(torch.randn(8, 4) * 10).abs().max().item() <= 0.01


def test_activation_quantizer_levels():
    x = torch.linspace(-0.5, 1.5, 2001)
    q = AF.quantize_uniform(x, 2, 0.0, 1.0)
    assert sorted(set(q.tolist())) == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    adc = Quantize(3, 0.0, 1.0)
    assert len(set(adc(x).tolist())) == 8


@pytest.mark.parametrize(
    ("bits", "zero", "levels"),
    [
        (0, True, [0.0]),
        (0, False, [-0.5, 0.5]),
        (1, True, [-0.5, 0.0, 0.5]),
        (1, False, [-0.75, -0.25, 0.25, 0.75]),
        (3, True, [k / 8 for k in range(-7, 8)]),
        (3, False, [(k + 0.5) / 8 for k in range(-8, 8)]),
    ],
)
def test_weight_quantizer_levels(bits, zero, levels):
    w = torch.linspace(-2, 2, 4001)
    q = AF.quantize_weights(w, bits, 1.0, zero)
    assert sorted(set(q.tolist())) == pytest.approx(levels)
    # round to nearest wherever the nearest level lies inside the clip range
    step = 1.0 / 2**bits
    top = 1.0 - (step if zero else step / 2)
    inside = w.abs() < top + step / 2
    assert (q[inside] - w[inside]).abs().max().item() <= step / 2 + 1e-6


def test_weight_quantization_is_straight_through():
    w = torch.linspace(-3.0, 3.0, 10, requires_grad=True)  # inside +-ref (0 outside)
    AF.quantize_weights(w, 2, 3.0).sum().backward()
    assert torch.equal(w.grad, torch.ones(10))


def _chip(nl: Nonidealities) -> Main:
    torch.manual_seed(0)
    return Main(in_shape=(1, 8, 8), nonidealities=nl)


def test_mismatch_is_constant_across_forwards_and_differs_across_chips():
    nl = Nonidealities(
        conv2d_gain_mismatch=0.1,
        conv2d_offset_mismatch=0.05,
        linear_gain_mismatch=0.1,
        linear_offset_mismatch=0.05,
        chip_seed=1,
    )
    x = torch.rand(16, 1, 8, 8)
    chip = _chip(nl)
    ideal = _chip(Nonidealities())
    a, b = chip(x), chip(x)
    assert torch.equal(a, b)  # fixed pattern: no redraw per forward
    assert not torch.allclose(a, ideal(x))
    other = _chip(nl.replace(chip_seed=2))
    assert not torch.allclose(other(x), a)
    again = _chip(nl)
    assert torch.equal(again(x), a)  # same seed, same chip
    chip.draw_mismatch(2)  # redraw on request
    assert torch.equal(chip(x), other(x))


def test_gain_mismatch_has_the_requested_spread():
    lin = AnalogLinear(500, 400, settings=StageSettings(gain_mismatch=0.05))
    lin.draw_mismatch(0)
    assert (lin.gain_error * 0.05).std().item() == pytest.approx(0.05, rel=0.02)
    x = torch.zeros(2, 500)
    x[:, 0] = 1.0  # one multiplier per MAC: output = w * (1 + delta) + b
    y = lin(x)[0] - lin.bias
    rel = y / lin.weight[:, 0] - 1
    assert torch.allclose(rel, lin.gain_error[:, 0] * 0.05, atol=1e-4)


def test_per_position_conv_equals_conv2d_without_mismatch():
    conv = AnalogConv2d(2, 3, 3, stride=2, padding=1, in_size=(9, 9))
    x = torch.randn(5, 2, 9, 9)
    ones = torch.ones(3, 5, 5, 2, 3, 3)
    got = AF.conv2d_per_position(x, conv.weight, conv.bias, ones, 2, 1)
    assert torch.allclose(got, F.conv2d(x, conv.weight, conv.bias, 2, 1), atol=1e-5)


def test_conv_gain_mismatch_is_per_output_position():
    conv = AnalogConv2d(
        1, 1, 2, stride=1, padding=0, in_size=(3, 3), settings=StageSettings(gain_mismatch=0.5)
    )
    conv.draw_mismatch(0)
    x = torch.ones(1, 1, 3, 3)
    y = conv(x)[0, 0]
    per_pos = (conv.weight[0, 0] * (1 + 0.5 * conv.gain_error[0, :, :, 0])).sum((-1, -2))
    assert torch.allclose(y, per_pos + conv.bias, atol=1e-5)
    assert len(set(y.flatten().tolist())) == 4  # each position has its own multipliers


def test_float64_with_every_nonideality():
    nl = Nonidealities(**EVERYTHING, linear_weight_ref=0.5)
    model = Main(in_shape=(1, 8, 8), nonidealities=nl).double()
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    out = model(x)
    assert out.dtype == torch.float64 and out.shape == (4, 10)
    out.sum().backward()
    assert model.conv.weight.grad.dtype == torch.float64
    assert all(b.dtype == torch.float64 for b in model.buffers())


def test_nothing_is_left_behind_when_the_model_moves():
    nl = Nonidealities(conv2d_gain_mismatch=0.1, linear_offset_mismatch=0.1, input_noise=0.1)
    model = Main(nonidealities=nl).to("meta")
    tensors = list(model.parameters()) + list(model.buffers())
    assert len(tensors) >= 6
    assert all(t.device.type == "meta" for t in tensors)
    out = model(torch.empty(2, 1, 28, 28, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 10)


def test_extra_repr_states_settings_with_units():
    text = repr(
        Main(nonidealities=Nonidealities(input_noise=0.1, conv2d_input_clip=2.0, relu_cutoff=0.05))
    )
    assert "sigma=0.1 V" in text
    assert "input_clip=2 V" in text
    assert "cutoff=0.05 V" in text
    assert "multipliers=31096" in text
