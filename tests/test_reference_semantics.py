"""Reference semantics (issue 9): ``Main`` against an independent per-sample oracle.

The oracle below is written from DESIGN.md §1 and the README's "The signal chain" alone: one
image at a time, explicit Python loops over float64 NumPy values, nothing from
``aanntwin.functional`` or ``aanntwin.layers``. From the model it takes only its named weights
and what is random by nature: the chip's mismatch draws (the ``gain_error``/``offset_error``
buffers, unit normals) and the temporal-noise draws (output - input of every
``aanntwin.functional.gaussian_noise`` call, in signal-chain order). Where those draws are
applied and how they combine is the oracle's own; their distribution, freshness and seeding are
checked separately below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import aanntwin.functional as AF
from aanntwin.config import ModelParams, Nonidealities, Normalization
from aanntwin.model import Main

IN_SHAPE = (1, 8, 8)
N_CLASSES = 10
N_IMAGES = 6
TOL = {"rtol": 1e-10, "atol": 1e-10}  # float64: the oracle sums in another order

GEOMETRIES = {
    "k3s1p1pool2": ModelParams(channels=2, kernel=3, stride=1, padding=1, pool=2, hidden=(5,)),
    "k4s2p1pool1": ModelParams(channels=2, kernel=4, stride=2, padding=1, pool=1, hidden=(5,)),
}
NORM = Normalization(min_in=-0.2, max_in=1.3, min_out=-0.5, max_out=0.7)
"""A non-identity pixel-to-volt map (pixels in [0, 1] lie inside [min_in, max_in])."""

# --------------------------------------------------------------------------- the oracle


def o_normalize(x: float, n: Normalization) -> float:
    """DESIGN §1: ``v = min_out + (x - min_in) * (max_out - min_out) / (max_in - min_in)`` (V)."""
    return n.min_out + (x - n.min_in) * (n.max_out - n.min_out) / (n.max_in - n.min_in)


def o_nearest(v: float, levels: np.ndarray) -> float:
    """The level closest to ``v`` (values beyond the range go to the end level)."""
    return float(levels[np.argmin(np.abs(levels - v))])


def o_adc_levels(bits: int, lo: float, hi: float) -> np.ndarray:
    """ADC/DAC: ``2**bits`` evenly spaced levels from ``lo`` to ``hi`` inclusive (V)."""
    return np.array([lo + k * (hi - lo) / (2**bits - 1) for k in range(2**bits)])


def o_weight_levels(bits: int, ref: float, zero_level: bool) -> np.ndarray:
    """DESIGN §1: ``step = ref / 2**bits``; with zero ``k step`` within ``+-(ref - step)``,
    without ``(k + 1/2) step`` within ``+-(ref - step/2)``."""
    step = ref / 2**bits
    eps = 1e-12 * ref
    ks = range(-(2**bits) - 1, 2**bits + 2)
    if zero_level:
        cands = [k * step for k in ks]
        return np.array([c for c in cands if abs(c) <= ref - step + eps])
    cands = [(k + 0.5) * step for k in ks]
    return np.array([c for c in cands if abs(c) <= ref - step / 2 + eps])


def o_poly(v: float, coeffs: tuple[float, ...]) -> float:
    """``p(v) = sum_k a_k v^k`` (constant first)."""
    return sum(a * v**k for k, a in enumerate(coeffs))


def o_weights(w: np.ndarray, prefix: str, nl: Nonidealities) -> np.ndarray:
    """Programmed weights as the multipliers apply them: clipped to the programmable range,
    quantized (default reference: the largest |w| programmed), then the weight polynomial."""
    out = w.copy()
    limit = getattr(nl, f"{prefix}_weight_range")
    if limit is not None:
        out = np.array([min(max(v, -limit), limit) for v in out.ravel()]).reshape(w.shape)
    bits = getattr(nl, f"{prefix}_weight_bits")
    if bits is not None:
        ref = getattr(nl, f"{prefix}_weight_ref")
        ref = float(np.max(np.abs(out))) if ref is None else ref
        levels = o_weight_levels(bits, ref, nl.weight_zero_level)
        out = np.array([o_nearest(v, levels) for v in out.ravel()]).reshape(w.shape)
    nonlin = getattr(nl, f"{prefix}_weight_nonlin")
    if nonlin is not None:
        out = np.array([o_poly(v, nonlin) for v in out.ravel()]).reshape(w.shape)
    return out


def o_multiplier_input(v: float, prefix: str, nl: Nonidealities) -> float:
    """Multiplier input: clip to +-c, then the input polynomial."""
    c = getattr(nl, f"{prefix}_input_clip")
    if c is not None:
        v = min(max(v, -c), c)
    poly = getattr(nl, f"{prefix}_input_nonlin")
    return v if poly is None else o_poly(v, poly)


def o_saturate(y: float, prefix: str, nl: Nonidealities) -> float:
    """MAC output swing: hard clip to +-s or ``s tanh(y / s)``."""
    s = getattr(nl, f"{prefix}_out_saturation")
    if s is None:
        return y
    return min(max(y, -s), s) if nl.saturation == "hard" else s * float(np.tanh(y / s))


class Draws:
    """One image's temporal-noise draws, consumed in signal-chain order."""

    def __init__(self, draws: list[np.ndarray]) -> None:
        self._it: Iterator[np.ndarray] = iter(draws)

    def add(self, y: np.ndarray, sigma: float | None) -> np.ndarray:
        """``y + N(0, sigma^2)`` with the recorded draw; nothing when the noise is off."""
        if not sigma:
            return y
        d = next(self._it, None)
        assert d is not None, "the model drew no noise where the signal chain has a noise site"
        assert d.shape == y.shape, f"noise draw of shape {d.shape} on a signal of {y.shape}"
        return y + d

    def exhausted(self) -> bool:
        return next(self._it, None) is None


@dataclass
class Chip:
    """What the oracle needs of one model: weights and mismatch draws as float64 arrays."""

    params: ModelParams
    weights: dict[str, np.ndarray]
    gain_error: dict[str, np.ndarray]
    offset_error: dict[str, np.ndarray]


def o_conv_stage(v: np.ndarray, chip: Chip, nl: Nonidealities, draws: Draws) -> np.ndarray:
    """One image through the conv MACs, fully unrolled: each output (o, h, w) is one MAC whose
    multiplier (c, i, j) has its own gain error; padded inputs are 0 V *after* the polynomial."""
    p = chip.params
    k, s, pad = p.kernel, p.stride, p.padding
    cin, height, width = v.shape
    ho, wo = (height + 2 * pad - k) // s + 1, (width + 2 * pad - k) // s + 1
    assert (height + 2 * pad - k) % s == 0 and (width + 2 * pad - k) % s == 0
    xin = np.vectorize(lambda t: o_multiplier_input(t, "conv2d", nl))(v)
    w = o_weights(chip.weights["conv.weight"], "conv2d", nl)
    bias = chip.weights["conv.bias"]
    y = np.zeros((p.channels, ho, wo))
    for o in range(p.channels):
        for h in range(ho):
            for col in range(wo):
                total = bias[o]
                for c in range(cin):
                    for i in range(k):
                        for j in range(k):
                            r, q = h * s + i - pad, col * s + j - pad
                            if not (0 <= r < height and 0 <= q < width):
                                continue  # padding: 0 V after the polynomial contributes 0
                            gain = 1.0
                            if nl.conv2d_gain_mismatch:
                                gerr = chip.gain_error["conv"][o, h, col, c, i, j]
                                gain += nl.conv2d_gain_mismatch * gerr
                            total += w[o, c, i, j] * gain * xin[c, r, q]
                if nl.conv2d_offset_mismatch:
                    total += nl.conv2d_offset_mismatch * chip.offset_error["conv"][o, h, col]
                y[o, h, col] = o_saturate(total, "conv2d", nl)
    return draws.add(y, nl.conv2d_out_noise)


def o_linear_stage(
    x: np.ndarray, name: str, chip: Chip, nl: Nonidealities, draws: Draws, final: bool
) -> np.ndarray:
    """One image through a linear MAC stage (hidden or final; same ``linear_*`` circuit)."""
    xin = [o_multiplier_input(t, "linear", nl) for t in x]
    w = o_weights(chip.weights[f"{name}.weight"], "linear", nl)
    bias = chip.weights[f"{name}.bias"]
    y = np.zeros(w.shape[0])
    for o in range(w.shape[0]):
        total = bias[o]
        for i, xi in enumerate(xin):
            gain = 1.0
            if nl.linear_gain_mismatch:
                gain += nl.linear_gain_mismatch * chip.gain_error[name][o, i]
            total += w[o, i] * gain * xi
        if nl.linear_offset_mismatch:
            total += nl.linear_offset_mismatch * chip.offset_error[name][o]
        y[o] = o_saturate(total, "linear", nl)
    y = draws.add(y, nl.linear_out_noise)
    if final and nl.linear_out_bits is not None:  # the class-score ADC: final stage only
        fs = nl.linear_out_full_scale
        levels = o_adc_levels(nl.linear_out_bits, -fs, fs)
        y = np.array([o_nearest(t, levels) for t in y])
    return y


def o_relu_core(y: float, nl: Nonidealities) -> float:
    """``max(cutoff, y)``, or ``cutoff + gain * s * log(1 + exp((y - threshold) / s))``."""
    cutoff = nl.relu_cutoff or 0.0
    if nl.relu_gain is None and nl.relu_threshold is None and nl.relu_softness is None:
        return max(cutoff, y)
    gain = 1.0 if nl.relu_gain is None else nl.relu_gain
    u = y - (cutoff if nl.relu_threshold is None else nl.relu_threshold)
    s = nl.relu_softness
    knee = max(0.0, u) if s is None else s * float(np.logaddexp(0.0, u / s))
    return cutoff + gain * knee


def o_relu(y: np.ndarray, nl: Nonidealities, draws: Draws) -> np.ndarray:
    """ReLU circuit, output noise, then the ReLU ADC over [0, full scale]."""
    r = np.vectorize(lambda t: o_relu_core(t, nl))(y)
    r = draws.add(r, nl.relu_out_noise)
    if nl.relu_out_bits is not None:
        levels = o_adc_levels(nl.relu_out_bits, 0.0, nl.relu_out_full_scale)
        r = np.vectorize(lambda t: o_nearest(t, levels))(r)
    return r


def o_maxpool(r: np.ndarray, pool: int) -> np.ndarray:
    """Max over non-overlapping ``pool x pool`` windows, per channel."""
    ch, height, width = r.shape
    out = np.zeros((ch, height // pool, width // pool))
    for c in range(ch):
        for h in range(height // pool):
            for w in range(width // pool):
                out[c, h, w] = r[c, h * pool : (h + 1) * pool, w * pool : (w + 1) * pool].max()
    return out


def oracle_scores(
    image: np.ndarray, chip: Chip, nl: Nonidealities, norm: Normalization, draws: Draws
) -> np.ndarray:
    """Class scores of one image ``(C, H, W)`` along the README's signal chain."""
    v = np.vectorize(lambda t: o_normalize(t, norm))(image)
    if nl.input_bits is not None:  # input DAC over [min_out, max_out]
        levels = o_adc_levels(nl.input_bits, norm.min_out, norm.max_out)
        v = np.vectorize(lambda t: o_nearest(t, levels))(v)
    v = draws.add(v, nl.input_noise)
    h = o_relu(o_conv_stage(v, chip, nl, draws), nl, draws)
    h = o_maxpool(h, chip.params.pool).ravel()  # flatten: channel, row, column
    for i in range(len(chip.params.hidden)):
        h = o_relu(o_linear_stage(h, f"hidden{i}", chip, nl, draws, final=False), nl, draws)
    scores = o_linear_stage(h, "linear", chip, nl, draws, final=True)
    assert draws.exhausted(), "the model drew more noise than the signal chain has sites"
    return scores


# --------------------------------------------------------------------------- the twin side


def build(params: ModelParams, nl: Nonidealities, norm: Normalization | None) -> Main:
    """A float64 twin with seeded default-init weights and the given nonidealities."""
    model = Main(params, IN_SHAPE, N_CLASSES, normalization=norm).double()
    model.reset_parameters(seed=2)  # conv and hidden MACs roughly half above 0
    model.set_nonidealities(nl)
    return model.eval()


def chip_of(model: Main) -> Chip:
    """The model's named weights and mismatch buffers (oracle inputs) as float64 arrays."""
    weights = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    names = ["conv", *model.hidden_names, "linear"]
    gains, offsets = {}, {}
    for name, stage in zip(names, model.mac_stages(), strict=True):
        if stage.gain_error is not None:
            gains[name] = stage.gain_error.detach().numpy()
            offsets[name] = stage.offset_error.detach().numpy()
    if "conv" in gains:  # per multiplier per output position (fully unrolled conv)
        p, g = model.params, model.geometry
        k, cin = p.kernel, IN_SHAPE[0]
        assert gains["conv"].shape == (*g.conv_out, cin, k, k)
        assert offsets["conv"].shape == g.conv_out
    return Chip(model.params, weights, gains, offsets)


def images(n: int = N_IMAGES, seed: int = 11) -> torch.Tensor:
    """Random pixels in [0, 1] (a fixed generator), float64."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((n, *IN_SHAPE), generator=gen, dtype=torch.float64)


def run_recording(model: Main, x: torch.Tensor, monkeypatch) -> tuple[torch.Tensor, list]:
    """The model's class scores and its temporal-noise draws (output - input of every
    ``gaussian_noise`` call, in call order)."""
    draws: list[torch.Tensor] = []
    real = AF.gaussian_noise

    def recording(x: torch.Tensor, sigma, generator=None) -> torch.Tensor:
        out = real(x, sigma, generator)
        draws.append((out - x).detach().clone())
        return out

    with monkeypatch.context() as m:
        m.setattr(AF, "gaussian_noise", recording)
        model.reseed(5)
        with torch.no_grad():
            scores = model(x)
    return scores, draws


def oracle_batch(
    model: Main, x: torch.Tensor, draws: list[torch.Tensor], nl: Nonidealities, norm: Normalization
) -> torch.Tensor:
    """The oracle on every image of ``x``, one at a time, under the case's own settings."""
    chip = chip_of(model)
    rows = []
    for n in range(x.shape[0]):
        per_image = Draws([d[n].numpy() for d in draws])
        rows.append(oracle_scores(x[n].numpy(), chip, nl, norm, per_image))
    return torch.from_numpy(np.stack(rows))


# --------------------------------------------------------------------------- cases

CASES: dict[str, tuple[dict, Normalization | None]] = {
    "ideal": ({}, None),
    "normalization": ({}, NORM),
    "input_noise": ({"input_noise": 0.05}, None),
    "input_dac": ({"input_bits": 3}, NORM),
    "conv_input_clip": ({"conv2d_input_clip": 0.3}, NORM),  # inputs in [-0.5, 0.7] V: both sides
    "conv_input_poly_a0": ({"conv2d_input_nonlin": (0.3, 0.9, -0.4, 0.2)}, None),
    "conv_out_noise": ({"conv2d_out_noise": 0.05}, None),
    "relu_cutoff_positive": ({"relu_cutoff": 0.05}, None),
    "relu_cutoff_negative": ({"relu_cutoff": -0.05}, None),
    "relu_out_noise": ({"relu_out_noise": 0.05}, None),
    "relu_adc": ({"relu_out_bits": 3, "relu_out_full_scale": 0.4}, None),
    # ReLU outputs are >= the cutoff: a negative cutoff lets the clip act on both sides
    "linear_input_clip": ({"linear_input_clip": 0.06, "relu_cutoff": -0.15}, None),
    "linear_input_poly_a0": ({"linear_input_nonlin": (0.05, 1.1, -0.8)}, None),
    "linear_out_noise": ({"linear_out_noise": 0.05}, None),
    "class_score_adc": ({"linear_out_bits": 4, "linear_out_full_scale": 0.3}, None),
    "weight_bits_zero_level": ({"conv2d_weight_bits": 2, "linear_weight_bits": 3}, None),
    "weight_bits_no_zero_level": (
        {"conv2d_weight_bits": 2, "linear_weight_bits": 3, "weight_zero_level": False},
        None,
    ),
    "weight_bits_explicit_ref": (
        {
            "conv2d_weight_bits": 3,
            "conv2d_weight_ref": 0.15,
            "linear_weight_bits": 2,
            "linear_weight_ref": 0.08,
        },
        None,
    ),
    "weight_bits_0_no_zero_level": (
        {"conv2d_weight_bits": 0, "linear_weight_bits": 0, "weight_zero_level": False},
        None,
    ),
    "weight_range": ({"conv2d_weight_range": 0.15, "linear_weight_range": 0.08}, None),
    "weight_range_then_bits": (
        {
            "conv2d_weight_range": 0.15,
            "conv2d_weight_bits": 2,
            "linear_weight_range": 0.08,
            "linear_weight_bits": 2,
        },
        None,
    ),
    "weight_poly": (
        {"conv2d_weight_nonlin": (0.01, 1.0, 0.5, -2.0), "linear_weight_nonlin": (0.0, 0.9, 1.5)},
        None,
    ),
    "weight_bits_then_poly": (
        {
            "conv2d_weight_bits": 2,
            "conv2d_weight_nonlin": (0.01, 1.0, 0.5, -2.0),
            "linear_weight_bits": 3,
            "linear_weight_nonlin": (0.0, 0.9, 1.5),
        },
        None,
    ),
    "conv_gain_mismatch": ({"conv2d_gain_mismatch": 0.2}, None),
    "conv_offset_mismatch": ({"conv2d_offset_mismatch": 0.05}, None),
    "linear_gain_mismatch": ({"linear_gain_mismatch": 0.2}, None),
    "linear_offset_mismatch": ({"linear_offset_mismatch": 0.05}, None),
    "saturation_hard": (
        {"conv2d_out_saturation": 0.15, "linear_out_saturation": 0.1, "saturation": "hard"},
        None,
    ),
    "saturation_tanh": (
        {"conv2d_out_saturation": 0.15, "linear_out_saturation": 0.1, "saturation": "tanh"},
        None,
    ),
    "relu_soft_knee": (
        {"relu_cutoff": 0.02, "relu_gain": 1.3, "relu_threshold": 0.05, "relu_softness": 0.03},
        None,
    ),
}

ALL_ON = dict(
    input_noise=0.03, input_bits=4, conv2d_input_clip=0.4, conv2d_input_nonlin=(0.2, 0.9, -0.3),
    conv2d_gain_mismatch=0.1, conv2d_offset_mismatch=0.03, conv2d_out_saturation=0.5,
    conv2d_out_noise=0.03, conv2d_weight_bits=3, conv2d_weight_nonlin=(0.01, 1.0, 0.5, -2.0),
    relu_cutoff=-0.05, relu_out_noise=0.03, relu_out_bits=8, relu_out_full_scale=1.0,
    linear_input_clip=0.3, linear_input_nonlin=(0.05, 1.0, -0.5), linear_gain_mismatch=0.1,
    linear_offset_mismatch=0.03, linear_out_saturation=0.3, linear_out_noise=0.03,
    linear_weight_bits=3, linear_weight_nonlin=(0.0, 0.9, 1.5), linear_out_bits=10,
    linear_out_full_scale=0.5, saturation="tanh", weight_zero_level=False, chip_seed=7,
)  # fmt: skip
"""Every reference nonideality on at once, at levels that bite on these tiny signals."""


def check_case(params: ModelParams, fields: dict, norm: Normalization | None, monkeypatch) -> None:
    """Twin vs oracle on the class scores; and the setting must change the twin's output."""
    nl = Nonidealities(**fields)
    model = build(params, nl, norm)
    x = images()
    scores, draws = run_recording(model, x, monkeypatch)
    expected = oracle_batch(model, x, draws, nl, norm or Normalization())
    torch.testing.assert_close(scores, expected, **TOL)
    if fields or norm is not None:  # the case is not vacuous: the nonideality acts
        ideal, _ = run_recording(build(params, Nonidealities(), None), x, monkeypatch)
        assert (scores - ideal).abs().max() > 1e-4


@pytest.mark.parametrize("geom", list(GEOMETRIES))
@pytest.mark.parametrize("case", list(CASES))
def test_twin_matches_the_reference_oracle(case: str, geom: str, monkeypatch) -> None:
    fields, norm = CASES[case]
    check_case(GEOMETRIES[geom], fields, norm, monkeypatch)


@pytest.mark.parametrize("geom", list(GEOMETRIES))
@pytest.mark.parametrize("zero_level", [False, True])
def test_twin_matches_the_oracle_with_everything_on(geom, zero_level, monkeypatch) -> None:
    params, fields = GEOMETRIES[geom], {**ALL_ON, "weight_zero_level": zero_level}
    check_case(params, fields, NORM, monkeypatch)
    # Not vacuous: each setting still acts with all the others on (none is masked, e.g. by a
    # clip that flattens everything downstream or an ADC step larger than its effect).
    x = images()
    scores, _ = run_recording(build(params, Nonidealities(**fields), NORM), x, monkeypatch)
    for name in ALL_ON:
        if name in ("chip_seed", "weight_zero_level") or name.endswith("_full_scale"):
            continue
        less = {**fields, name: getattr(Nonidealities(), name)}
        if name.endswith("_bits"):  # an ADC's full scale needs its bits
            less.pop(name.replace("_bits", "_full_scale"), None)
        without, _ = run_recording(build(params, Nonidealities(**less), NORM), x, monkeypatch)
        assert (scores - without).abs().max() > 1e-4, f"{name} has no effect with all on"


def test_two_hidden_stages_with_everything_on(monkeypatch) -> None:
    """Hidden stages chain (each the linear MAC circuit + the ReLU circuit, no class ADC)."""
    params = dataclasses.replace(GEOMETRIES["k3s1p1pool2"], hidden=(6, 4))
    check_case(params, ALL_ON, NORM, monkeypatch)


# --------------------------------------------------------------------------- targeted checks


def test_padding_is_zero_volts_after_the_polynomial() -> None:
    """With a_0 != 0 and every input at 0 V, an interior MAC sums a_0 over the whole kernel and
    a corner MAC only over its in-image taps: padded taps give 0, not p(0) = a_0."""
    a0 = 0.3
    params = GEOMETRIES["k3s1p1pool2"]
    model = build(params, Nonidealities(conv2d_input_nonlin=(a0, 1.0)), None)
    with torch.no_grad():
        y = model.forward_until(torch.zeros(1, *IN_SHAPE, dtype=torch.float64), "conv_out")[0]
    w, b = model.conv.weight.detach()[:, 0], model.conv.bias.detach()
    interior = a0 * w.sum(dim=(1, 2)) + b
    corner = a0 * w[:, 1:, 1:].sum(dim=(1, 2)) + b  # top-left output: first row/column padded
    torch.testing.assert_close(y[:, 3, 3], interior, **TOL)
    torch.testing.assert_close(y[:, 0, 0], corner, **TOL)


SIGMAS = {"input": 0.011, "conv_out": 0.022, "relu_out": 0.033, "linear_out": 0.044}


def test_noise_draws_are_zero_mean_with_the_requested_std_at_each_site(monkeypatch) -> None:
    """The draws the oracle is fed: one per site in chain order, N(0, sigma^2) of that site."""
    nl = Nonidealities(
        input_noise=SIGMAS["input"],
        conv2d_out_noise=SIGMAS["conv_out"],
        relu_out_noise=SIGMAS["relu_out"],
        linear_out_noise=SIGMAS["linear_out"],
    )
    model = build(GEOMETRIES["k3s1p1pool2"], nl, None)
    _, draws = run_recording(model, images(400), monkeypatch)
    # input, conv, relu, hidden0 (linear circuit), hidden0 relu, final linear
    expected = [SIGMAS[k] for k in ("input", "conv_out", "relu_out")]
    expected += [SIGMAS["linear_out"], SIGMAS["relu_out"], SIGMAS["linear_out"]]
    assert [tuple(d.shape[1:]) for d in draws] == [
        (1, 8, 8),
        (2, 8, 8),
        (2, 8, 8),
        (5,),
        (5,),
        (10,),
    ]
    for d, sigma in zip(draws, expected, strict=True):
        n = d.numel()
        assert abs(d.std().item() / sigma - 1) < 6 / np.sqrt(2 * n)  # 6 standard errors
        assert abs(d.mean().item()) < 6 * sigma / np.sqrt(n)


def test_noise_is_fresh_every_forward_and_repeats_from_the_seed() -> None:
    model = build(GEOMETRIES["k3s1p1pool2"], Nonidealities(input_noise=0.05), None)
    x = images()
    with torch.no_grad():
        model.reseed(1)
        first, second = model(x), model(x)
        model.reseed(1)
        again = model(x)
    assert (first - second).abs().max() > 1e-3
    torch.testing.assert_close(again, first, rtol=0, atol=0)
