import pytest
import torch

from aanntwin.config import ModelParams, Nonidealities
from aanntwin.errors import AanntwinError, GeometryError
from aanntwin.model import Main, geometry, load_weights, save_weights


def test_hardware_counts_of_the_default_model_on_mnist():
    g = geometry(ModelParams(), (1, 28, 28), 10)
    assert g.conv_out == (4, 13, 13)
    assert [(s.name, s.macs, s.fan_in) for s in g.stages] == [
        ("conv", 676, 36),
        ("linear", 10, 676),
    ]
    assert g.macs == 686
    assert g.multipliers == 31_096


def test_conv_macs_are_counted_before_pooling_and_hidden_stages_count():
    g = geometry(
        ModelParams(channels=2, kernel=4, stride=2, padding=1, pool=2, hidden=(16,)),
        (1, 28, 28),
        10,
    )
    assert g.conv_out == (2, 14, 14) and g.pool_out == (2, 7, 7)
    assert [s.macs for s in g.stages] == [2 * 14 * 14, 16, 10]
    assert [s.fan_in for s in g.stages] == [16, 98, 16]
    assert g.multipliers == 392 * 16 + 16 * 98 + 10 * 16


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        (ModelParams(kernel=5, padding=1), "(28 + 2*1 - 5) / 2 + 1 = 13.5 is not a whole number"),
        (ModelParams(pool=2), "pool 2 does not divide the conv output height 13"),
        (ModelParams(kernel=40, padding=1, stride=1), "is not a whole number >= 1"),
    ],
)
def test_invalid_geometry_is_a_clear_error(params, needle):
    with pytest.raises(GeometryError) as err:
        Main(params)
    assert needle in str(err.value)


def test_weight_names_and_forward_shape():
    model = Main(ModelParams(hidden=(8,)), (1, 28, 28))
    assert sorted(model.state_dict()) == [
        "conv.bias",
        "conv.weight",
        "hidden0.bias",
        "hidden0.weight",
        "linear.bias",
        "linear.weight",
    ]
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_same_seed_same_init_and_different_seed_differs():
    a, b, c = Main(), Main(), Main()
    a.reset_parameters(1)
    b.reset_parameters(1)
    c.reset_parameters(2)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.conv.weight, c.conv.weight)


def test_weights_round_trip_and_keep_the_users_nonidealities(tmp_path):
    src = Main(nonidealities=Nonidealities(input_noise=0.3))
    src.reset_parameters(4)
    path = tmp_path / "w.safetensors"
    save_weights(src, path, {"note": "x"})
    mine = Nonidealities(conv2d_out_noise=0.01)
    dst = Main(nonidealities=mine)
    load_weights(dst, path)
    assert dst.nonidealities == mine
    assert dst.input_noise.sigma is None and dst.conv.settings.out_noise == 0.01
    assert torch.equal(dst.linear.weight, src.linear.weight)


def test_loading_mismatched_or_broken_weights_names_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(Main(ModelParams(channels=8)), path)
    with pytest.raises(AanntwinError, match=r"w.safetensors: conv\.\w+ has shape \(8"):
        load_weights(Main(), path)
    save_weights(Main(ModelParams(hidden=(4,))), path)
    with pytest.raises(AanntwinError, match="unexpected"):
        load_weights(Main(), path)
    path.write_bytes(b"garbage")
    with pytest.raises(AanntwinError, match="not a readable safetensors file"):
        load_weights(Main(), path)


def test_forward_splits_at_every_tap():
    from aanntwin.config import Nonidealities

    nl = Nonidealities(
        input_noise=0.1,
        conv2d_out_noise=0.1,
        relu_out_noise=0.1,
        linear_out_noise=0.1,
        conv2d_input_clip=1.0,
        relu_cutoff=0.01,
    )
    model = Main(ModelParams(hidden=(6,)), (1, 8, 8), nonidealities=nl)
    x = torch.rand(5, 1, 8, 8)
    model.reseed(1)
    whole = model(x)
    for tap in ("input", "conv_out", "relu_out", "features", "linear_in", "linear_out"):
        model.reseed(1)
        h = model.forward_until(x, tap)
        assert torch.allclose(model.forward_from(h, tap), whole, atol=1e-6), tap
    model.reseed(1)
    assert model.forward_until(x, "conv_out").shape == (5, 4, 3, 3)
    assert model.forward_until(x, "linear_in").shape == (5, 6)
    with pytest.raises(ValueError, match="unknown tap 'nowhere'"):
        model.forward_until(x, "nowhere")


REUSING = Nonidealities(
    input_noise=0.1,
    conv2d_out_noise=0.05,
    relu_out_noise=0.05,
    linear_out_noise=0.05,
    conv2d_input_clip=1.0,
    linear_input_clip=1.0,
    conv2d_input_nonlin=(0.0, 1.0, 0.1),
    linear_input_nonlin=(0.0, 1.0, 0.1),
    relu_cutoff=0.01,
)


@pytest.mark.parametrize("hidden", [(), (6,)])
def test_no_grad_forward_writes_into_its_own_buffers_only(hidden):
    """The no-grad pass clips, transfers and rectifies in buffers it made itself: the numbers
    equal the recording pass bit for bit, and the caller's tensors (input, a cached prefix handed
    to forward_from) are never written."""
    model = Main(ModelParams(hidden=hidden), (1, 8, 8), nonidealities=REUSING)
    model.reset_parameters(0)
    x = torch.rand(7, 1, 8, 8) * 3 - 1  # past the clip either side
    x0 = x.clone()
    model.reseed(3)
    recorded = model(x)  # weights require grad: nothing is reused
    assert recorded.requires_grad
    with torch.no_grad():
        model.reseed(3)
        assert torch.equal(model(x), recorded.detach())
        assert torch.equal(x, x0)
        for tap in ("input", "conv_out", "relu_out", "features", "linear_in"):
            model.reseed(5)
            prefix = model.forward_until(x, tap)
            kept = prefix.clone()
            first = model.forward_from(prefix, tap)
            assert torch.equal(prefix, kept), tap
            model.reseed(5)
            model.forward_until(x, tap)
            assert torch.equal(model.forward_from(prefix, tap), first), tap


def test_injected_noise_is_reused_but_the_prefix_is_kept():
    quiet = Main(ModelParams(), (1, 8, 8), nonidealities=REUSING.replace(conv2d_out_noise=None))
    quiet.reset_parameters(1)
    x = torch.rand(9, 1, 8, 8)
    with torch.no_grad():
        prefix = quiet.forward_until(x, "conv_out")
        kept = prefix.clone()
        unit = torch.randn(prefix.shape, generator=torch.Generator().manual_seed(0))
        quiet.reseed(2)
        out = quiet.forward_from(prefix, "conv_out", unit_noise=unit, sigma=0.05)
        assert torch.equal(prefix, kept)
        quiet.reseed(2)
        plain = quiet.forward_from(prefix + unit * 0.05, "conv_out")
        assert torch.equal(out, plain)
        quiet.reseed(2)
        off = quiet.forward_from(prefix, "conv_out", unit_noise=unit, sigma=0)
        quiet.reseed(2)
        assert torch.equal(off, quiet.forward_from(prefix, "conv_out"))
        assert torch.equal(prefix, kept)
