"""Public seams of the model: what the wings need is a documented method, never a private part.

The wings (studies, characterization, report, cli), the notebooks and the benchmarks reach the
model and its layers only through public names and never write their state; the seams they use
(``stage_names``, ``mac_outputs``, ``without_temporal_noise``, injection in ``forward_from``) do
bit for bit what the private paths they replace did.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from aanntwin.config import TEMPORAL_NOISE, ModelParams, Nonidealities
from aanntwin.model import NOISE_AFTER, Main
from aanntwin.seeds import NoiseSource
from tests.conftest import EVERYTHING

REPO = Path(__file__).resolve().parents[1]
WINGS = ("aanntwin/studies", "aanntwin/characterization", "aanntwin/report", "aanntwin/cli")
SHAPE = (1, 8, 8)


def _sources() -> list[tuple[str, str]]:
    """(name, Python source) of every wing module, benchmark and notebook code cell."""
    files = [p for wing in WINGS for p in sorted((REPO / wing).rglob("*.py"))]
    out = [(str(p.relative_to(REPO)), p.read_text()) for p in files]
    out += [(str(p.relative_to(REPO)), p.read_text()) for p in sorted(REPO.glob("benchmarks/*.py"))]
    for nb in sorted(REPO.glob("notebooks/*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] == "code":
                lines = "".join(cell["source"]).splitlines()
                code = "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
                out.append((f"{nb.relative_to(REPO)} cell {i}", code))
    return out


def _module_names(tree: ast.AST) -> set[str]:
    """Names an import binds (a module's own private helpers may be named through it)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names


def _state_names() -> set[str]:
    """Every attribute of the model and its layers (settings, noise levels, weights, chip ...)."""
    model = Main(ModelParams(hidden=(4,)), SHAPE, 10, Nonidealities(**EVERYTHING))
    names: set[str] = set()
    for module in model.modules():
        names |= {k for k in vars(module) if not k.startswith("_")}
        names |= {k for k, _ in module.named_parameters(recurse=False)}
        names |= {k for k, _ in module.named_buffers(recurse=False)}
    return names - {"training"}


def _violations(where: str, source: str, state: set[str]) -> list[str]:
    """Private names read on anything but ``self``/``cls``/``super()``/a module; state written
    off ``self``."""
    tree = ast.parse(source)
    own = {"self", "cls", *_module_names(tree)}
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            mine = isinstance(node.value, ast.Name) and node.value.id in own
            on_super = isinstance(node.value, ast.Call) and ast.unparse(node.value) == "super()"
            mine = mine or on_super  # an override calling its base class: that is self
            if not mine and not node.attr.startswith("__"):
                bad.append(f"{where}:{node.lineno}: reads {ast.unparse(node)}")
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            on_self = isinstance(t, ast.Attribute) and ast.unparse(t.value) == "self"
            if isinstance(t, ast.Attribute) and t.attr in state and not on_self:
                bad.append(f"{where}:{t.lineno}: writes {ast.unparse(t)}")
    return bad


def test_no_wing_touches_a_private_name_or_writes_model_state():
    """An attribute starting with ``_`` is read only on ``self``/``cls`` or an imported module;
    no attribute named like the model's or a layer's state is assigned except on ``self``."""
    state = _state_names()
    bad = [line for where, source in _sources() for line in _violations(where, source, state)]
    assert not bad, "\n".join(bad)


def test_the_scan_finds_what_studies_used_to_do():
    old = """
quiet.input_noise.sigma = None
stage.settings = s
for _, step in model._steps():
    pass
"""
    found = _violations("old", old, _state_names())
    assert [line.split(": ", 1)[1] for line in found] == [
        "writes quiet.input_noise.sigma",
        "writes stage.settings",
        "reads model._steps",
    ]


@pytest.fixture
def model() -> Main:
    torch.manual_seed(0)
    m = Main(ModelParams(channels=4, hidden=(6,)), SHAPE, 10, Nonidealities(**EVERYTHING)).eval()
    m.reset_parameters(3)
    return m


def _x(n: int = 9) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(1))


def test_stage_names_are_the_mac_stages_in_signal_order(model):
    assert model.stage_names() == ["conv", "hidden0", "linear"]
    assert model.mac_stages() == [model.conv, model.hidden0, model.linear]


def _old_noiseless(model: Main) -> Main:
    """The private path ``without_temporal_noise`` replaces (normalize's ``_noiseless``)."""
    quiet = copy.deepcopy(model)
    quiet.input_noise.sigma = None
    for relu in quiet.relus():
        relu.noise.sigma = None
    for stage in quiet.mac_stages():
        stage.configure(dataclasses.replace(stage.settings, out_noise=None))
    return quiet


def test_without_temporal_noise_is_a_quiet_copy_of_the_same_chip(model):
    model.draw_mismatch(123)  # a chip that is not the settings' chip_seed: kept, not redrawn
    entry = model.nonidealities
    quiet = model.without_temporal_noise()
    assert quiet is not model and model.nonidealities == entry
    assert model.input_noise.sigma == EVERYTHING["input_noise"]
    assert model.linear.settings.out_noise == EVERYTHING["linear_out_noise"]
    assert quiet.nonidealities == entry.replace(**dict.fromkeys(TEMPORAL_NOISE))
    for a, b in zip(quiet.mac_stages(), model.mac_stages(), strict=True):
        assert torch.equal(a.gain_error, b.gain_error) and torch.equal(a.weight, b.weight)
        assert a.settings == dataclasses.replace(b.settings, out_noise=None)
    old = _old_noiseless(model)
    with torch.no_grad():
        quiet.reseed(7)
        out = quiet(_x())
        old.reseed(8)  # nothing is drawn: the seed does not matter
        assert torch.equal(out, old(_x()))
        quiet.reseed(9)
        assert torch.equal(out, quiet(_x()))


def test_mac_outputs_are_each_stage_mac_in_one_pass(model):
    quiet = model.without_temporal_noise()
    x = _x()
    with torch.no_grad():
        out = quiet.mac_outputs(x)
        assert list(out) == quiet.stage_names()
        assert torch.equal(out["conv"], quiet.conv.mac(quiet.forward_until(x, "input")))
        assert torch.equal(out["conv"], quiet.forward_until(x, "conv_out"))
        features = quiet.forward_until(x, "features")
        assert torch.equal(out["hidden0"], quiet.hidden0.mac(features))
        assert torch.equal(out["linear"], quiet.forward_until(x, "linear_out"))


def test_mac_outputs_draw_the_noise_a_forward_draws(model):
    """With noise on, the pass draws what ``forward`` draws: the final MAC output of a reseeded
    pass is the forward's class scores before the final stage's own noise and ADC."""
    model.set_nonidealities(
        model.nonidealities.replace(linear_out_noise=None, linear_out_bits=None)
    )
    x = _x()
    with torch.no_grad():
        model.reseed(4)
        out = model.mac_outputs(x)
        model.reseed(4)
        assert torch.equal(out["linear"], model(x))


@pytest.mark.parametrize("tap", list(NOISE_AFTER))
@pytest.mark.parametrize("sigma", [0.07, None])
def test_injected_unit_draw_equals_the_models_own_draw_at_the_site(tap, sigma):
    """``forward_from(h, tap, unit_noise=z, sigma=s)`` with the site's own level off equals
    ``forward_from(h, tap)`` with the level ``s`` from the generator state that drew ``z``, bit
    for bit on the CPU (the noise sweep's fast path)."""
    field = NOISE_AFTER[tap]
    model = Main(ModelParams(channels=4), SHAPE, 10).eval()
    model.reset_parameters(5)
    x = _x(21)
    with torch.no_grad():
        h = model.forward_until(x, tap)
        z = torch.empty_like(h).normal_(0.0, 1.0, generator=NoiseSource(11).generator(h.device))
        injected = model.forward_from(h, tap, unit_noise=z, sigma=sigma)
        model.set_nonidealities(Nonidealities(**{field: sigma}))
        model.reseed(11)
        assert torch.equal(injected, model.forward_from(h, tap))
        if sigma:
            with pytest.raises(ValueError, match=f"draws its own {field}"):
                model.forward_from(h, tap, unit_noise=z, sigma=sigma)


def test_injection_needs_a_noise_site(model):
    quiet = model.without_temporal_noise()
    h = quiet.forward_until(_x(), "features")
    with pytest.raises(ValueError, match="has no noise site"):
        quiet.forward_from(h, "features", unit_noise=torch.zeros_like(h), sigma=0.1)
