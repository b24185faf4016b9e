"""Tabulated transfers: ``functional.table``, the ``*_input_table``/``*_weight_table`` fields and
the layers that apply them (values, gradients, validation, devices, no tensor built in forward)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aanntwin import functional as AF
from aanntwin.config import Nonidealities
from aanntwin.errors import ConfigError
from aanntwin.layers import AnalogConv2d, AnalogLinear
from aanntwin.model import Main

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_table_interpolates_between_equally_spaced_points():
    values = torch.tensor([0.0, 1.0, 4.0, 9.0], dtype=torch.float64)  # x^2 at -1, -1/3, 1/3, 1
    x = torch.tensor([-1.0, -0.2, 0.0, 1 / 3, 0.5, 1.0], dtype=torch.float64)
    expected = np.interp(x.numpy(), np.linspace(-1, 1, 4), values.numpy())
    assert np.allclose(AF.table(x, values, 1.0).numpy(), expected)
    # beyond the span the end segments continue (the layer clips first)
    assert AF.table(torch.tensor([1.5]), values.float(), 1.0).item() == pytest.approx(12.75)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_table_is_the_formula_bit_for_bit_in_value_and_gradient(dtype):
    """Where the values need no gradient (the layers' tables) the table is one autograd node
    with the slopes saved: the values and the input gradient of the formula recorded op by op
    (the path taken when the values need a gradient; the tests above check the interpolation
    and the slopes), to the last bit, inside and beyond the span, recorded or not."""
    g = torch.Generator().manual_seed(3)
    values = torch.cumsum(torch.rand(257, generator=g, dtype=torch.float64), 0).to(dtype) - 60
    x = ((torch.rand(4099, generator=g, dtype=torch.float64) * 3.4 - 1.7) * 1.5).to(dtype)
    x.requires_grad_()
    out = AF.table(x, values, 1.5)
    ref = AF.table(x, values.clone().requires_grad_(), 1.5)  # the formula, op by op
    assert out.grad_fn is not None and ref.grad_fn is not None
    assert type(out.grad_fn) is not type(ref.grad_fn)  # two paths compared, not one with itself
    assert torch.equal(out, ref)
    w = torch.randn(x.shape, generator=g, dtype=torch.float64).to(dtype)
    (got,) = torch.autograd.grad((out * w).sum(), x)
    (want,) = torch.autograd.grad((ref * w).sum(), x)
    assert torch.equal(got, want)
    with torch.no_grad():
        assert torch.equal(AF.table(x, values, 1.5), ref)


def test_table_gradient_is_the_segment_slope_and_reaches_the_values():
    values = torch.tensor([0.0, 1.0, 4.0, 9.0], requires_grad=True)
    x = torch.tensor([-0.9, 0.1, 0.8], requires_grad=True)
    AF.table(x, values, 1.0).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([1.5, 4.5, 7.5]))
    assert values.grad.sum().item() == pytest.approx(3.0)  # each output: weights summing to 1


def test_fields_validate_and_round_trip():
    nl = Nonidealities(linear_input_clip=1.5, linear_input_table=(-1.0, 0.0, 1.0),
                       linear_weight_range=0.5, linear_weight_table=(-0.4, 0.0, 0.4))  # fmt: skip
    assert Nonidealities.from_dict(json.loads(nl.to_json())) == nl
    assert nl.stage("linear").input_table == (-1.0, 0.0, 1.0)
    with pytest.raises(ConfigError, match="conv2d_input_table: needs conv2d_input_clip"):
        Nonidealities(conv2d_input_table=(0.0, 1.0))
    with pytest.raises(ConfigError, match="linear_weight_table: needs linear_weight_range"):
        Nonidealities(linear_weight_table=(0.0, 1.0))
    with pytest.raises(ConfigError, match="both set"):
        Nonidealities(conv2d_input_clip=1.0, conv2d_input_table=(0.0, 1.0),
                      conv2d_input_nonlin=(0.0, 1.0, 0.1))  # fmt: skip
    with pytest.raises(ConfigError, match="at least 2"):
        Nonidealities.from_dict({"conv2d_input_clip": 1.0, "conv2d_input_table": [1.0]})


def test_layer_applies_clip_then_table_and_the_weight_table():
    xs = np.linspace(-1, 1, 9)
    nl = Nonidealities(linear_input_clip=1.0, linear_input_table=tuple(np.tanh(2 * xs)),
                       linear_weight_range=0.5,
                       linear_weight_table=tuple(np.linspace(-0.4, 0.4, 5)))  # fmt: skip
    layer = AnalogLinear(3, 1, bias=False, settings=nl.stage("linear")).double()
    x = torch.tensor([[-2.0, 0.3, 0.9]], dtype=torch.float64)
    g = np.interp(np.clip(x.numpy(), -1, 1), xs, np.tanh(2 * xs))
    assert np.allclose(layer.input_transfer(x).numpy(), g)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.25, -1.0, 0.1]]))
    assert np.allclose(
        layer.effective_weight().detach().numpy(), [[0.2, -0.4, 0.08]]
    )  # clip, then table
    assert np.allclose(layer.mac(x).detach().numpy(), g @ np.array([0.2, -0.4, 0.08]))


def test_tables_move_with_the_model_and_stay_out_of_the_weights():
    nl = Nonidealities(conv2d_input_clip=1.0, conv2d_input_table=(-0.5, 0.0, 0.5),
                       linear_weight_range=1.0, linear_weight_table=(-1.0, 0.0, 1.0))  # fmt: skip
    model = Main(in_shape=(1, 8, 8), nonidealities=nl)
    assert not any("table" in k for k in model.state_dict())
    assert model.conv._input_table.dtype == torch.float32
    model.double()
    assert model.conv._input_table.dtype == torch.float64
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    assert torch.isfinite(model(x)).all()
    model.set_nonidealities(Nonidealities())  # off again: no table left behind
    assert model.conv._input_table is None and model.linear._weight_table is None


def test_conv_stage_with_table_equals_the_polynomial_it_samples():
    xs = np.linspace(-1.0, 1.0, 2001)
    poly = (0.0, 1.0, 0.0, -0.2)
    table = tuple(np.polynomial.polynomial.polyval(xs, poly))
    a = AnalogConv2d(1, 2, 3, settings=Nonidealities(conv2d_input_clip=1.0,
                     conv2d_input_nonlin=poly).stage("conv2d")).double()  # fmt: skip
    b = AnalogConv2d(1, 2, 3, settings=Nonidealities(conv2d_input_clip=1.0,
                     conv2d_input_table=table).stage("conv2d")).double()  # fmt: skip
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64) * 2 - 1
    assert torch.allclose(a(x), b(x), atol=1e-6)


@CUDA
def test_table_on_cuda_without_host_sync():
    nl = Nonidealities(conv2d_input_clip=1.0, conv2d_input_table=(-0.5, 0.0, 0.5),
                       linear_weight_range=1.0, linear_weight_table=(-1.0, 0.0, 1.0))  # fmt: skip
    model = Main(in_shape=(1, 8, 8), nonidealities=nl).cuda()
    x = torch.rand(8, 1, 8, 8, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = model(x)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert out.device.type == "cuda"
