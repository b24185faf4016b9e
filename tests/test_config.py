import json
import math

import pytest

from aanntwin.config import (
    ModelParams,
    Nonidealities,
    Normalization,
    RunConfig,
    TrainParams,
    load_config,
    load_nonidealities,
)
from aanntwin.errors import ConfigError

REFERENCE_FILE = {
    "input_noise": 0.1,
    "relu_cutoff": 0.0,
    "relu_out_noise": 0.05,
    "linear_out_noise": 0.05,
    "conv2d_out_noise": 0.05,
    "linear_input_clip": 2.0,
    "conv2d_input_clip": 2.0,
    "linear_input_nonlin": [0, 1, 0.1],
    "conv2d_input_nonlin": [0, 1, 0.1],
}


def test_defaults_match_the_reference_design():
    m = ModelParams()
    assert (m.channels, m.kernel, m.stride, m.padding, m.pool, m.hidden) == (4, 6, 2, 1, 1, ())
    nl = Nonidealities()
    assert all(
        v is None
        for k, v in nl.to_dict().items()
        if k not in ("saturation", "weight_zero_level", "chip_seed")
    )


def test_reference_tool_file_loads_unchanged(tmp_path):
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(REFERENCE_FILE))
    nl = load_nonidealities(str(path))
    assert nl.input_noise == 0.1
    assert nl.conv2d_input_nonlin == (0.0, 1.0, 0.1)
    assert nl.stage("linear").input_clip == 2.0
    assert nl.stage("conv2d").out_noise == 0.05


def test_json_round_trip_with_schema_version(tmp_path):
    cfg = RunConfig(
        dataset="mnist",
        model=ModelParams(channels=8, hidden=(32,)),
        train=TrainParams(epochs=3, optimizer="sgd", momentum=0.9),
        nonidealities=Nonidealities(**REFERENCE_FILE, conv2d_gain_mismatch=0.02, chip_seed=7),
        normalization=Normalization(min_out=-0.5, max_out=0.5),
    )
    text = cfg.to_json()
    assert json.loads(text)["schema_version"] == 1
    path = tmp_path / "cfg.json"
    path.write_text(text)
    assert load_config(str(path)) == cfg


def test_content_hash_is_stable_and_sensitive():
    a = RunConfig()
    assert a.content_hash() == RunConfig().content_hash()
    assert a.content_hash() != a.replace(train=a.train.replace(seed=1)).content_hash()
    # int and float spellings of the same value hash alike (values, not Python objects)
    assert (
        Nonidealities(input_noise=1).content_hash() == Nonidealities(input_noise=1.0).content_hash()
    )


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"input_noise": -0.1}, "nonidealities.input_noise = -0.1: out of range, allowed >= 0.0 V"),
        ({"conv2d_out_noise": math.nan}, "conv2d_out_noise = NaN: must be finite"),
        ({"conv2d_input_nonlin": []}, "needs at least 1 element"),
        ({"linear_input_nonlin": [0, "x"]}, "linear_input_nonlin[1] = 'x': must be a number"),
        ({"linear_input_nonlin": "0,1"}, "must be a list of numbers"),
        ({"input_nosie": 0.1}, "unknown field 'input_nosie'; did you mean 'input_noise'?"),
        ({"relu_cutoff": "low"}, "relu_cutoff = 'low': must be a number"),
        ({"conv2d_input_clip": 0}, "conv2d_input_clip = 0.0: out of range, allowed > 0.0 V"),
        ({"conv2d_weight_bits": 2.5}, "conv2d_weight_bits = 2.5: must be an integer"),
        ({"saturation": "soft"}, "saturation = 'soft': must be one of 'hard', 'tanh'"),
        ({"relu_out_bits": 4}, "relu_out_bits = 4: needs relu_out_full_scale"),
        ({"weight_zero_level": 1}, "weight_zero_level = 1: must be true or false"),
        ({"schema_version": 99}, "schema_version = 99: this aanntwin reads versions <= 1"),
    ],
)
def test_bad_nonidealities_name_field_value_and_range(tmp_path, fields, needle):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(ConfigError) as err:
        load_nonidealities(str(path))
    assert needle in str(err.value)
    assert str(err.value).startswith(f"{path}:")


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: ModelParams(kernel=3, padding=3), "model.padding = 3: must be < model.kernel = 3"),
        (lambda: ModelParams(channels=0), "model.channels = 0: out of range, allowed >= 1"),
        (lambda: ModelParams(hidden=(16, 0)), "model.hidden[1] = 0"),
        (lambda: TrainParams(optimizer="rmsprop"), "train.optimizer = 'rmsprop'"),
        (lambda: TrainParams(lr=0), "train.lr = 0.0: out of range, allowed > 0.0"),
        (lambda: TrainParams(batch_size=True), "train.batch_size = True: must be an integer"),
        (lambda: Normalization(min_in=1, max_in=1), "normalization.max_in = 1.0: must be > min_in"),
        (
            lambda: RunConfig(dataset="cifar"),
            "dataset = 'cifar': unknown; use one of digits, mnist, "
            "fashion-mnist, cifar10, or a path to a .npz file",
        ),
        (
            lambda: RunConfig(dataset="nowhere/mine.npz"),
            "dataset = 'nowhere/mine.npz': no such .npz",
        ),
    ],
)
def test_bad_params_raise_clear_errors(build, needle):
    with pytest.raises(ConfigError) as err:
        build()
    assert needle in str(err.value)


def test_nested_config_errors_name_the_section(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"train": {"epochs": -1}}))
    with pytest.raises(ConfigError, match=r"cfg.json: train.epochs = -1: out of range"):
        load_config(str(path))
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="file not found"):
        load_config(str(tmp_path / "missing.json"))


def test_every_nonideality_field_has_a_unit_and_one_group():
    """One home per concept: the unit lives in the field's metadata; the groups cover every
    field once, and the temporal-noise and mismatch groups are the per-stage groups' own."""
    import dataclasses

    from aanntwin.config import FIELD_GROUPS, MISMATCH_FIELDS, TEMPORAL_NOISE, unit

    names = [f.name for f in dataclasses.fields(Nonidealities)]
    assert all(unit(n) for n in names), [n for n in names if not unit(n)]
    grouped = [n for group in FIELD_GROUPS.values() for n in group]
    assert sorted(grouped) == sorted(names)
    assert set(TEMPORAL_NOISE) | set(MISMATCH_FIELDS) <= set(grouped)
    assert {unit(n) for n in names if n.endswith("_bits")} == {"bits"}


def test_the_dataset_registry_is_what_the_cli_the_loaders_and_the_model_read():
    from aanntwin.cli import build_parser
    from aanntwin.config import DATASET_REGISTRY, DATASETS, IN_SHAPES
    from aanntwin.data import DATASET_NAMES
    from aanntwin.idx import SPECS

    assert DATASETS == DATASET_NAMES == tuple(DATASET_REGISTRY) == tuple(IN_SHAPES)
    for name, spec in SPECS.items():
        assert (spec.title, spec.in_shape) == (
            DATASET_REGISTRY[name].title,
            DATASET_REGISTRY[name].in_shape,
        )
    args = build_parser().parse_args(["info", "--dataset", DATASETS[-1]])
    assert args.dataset == DATASETS[-1]
    with pytest.raises(ConfigError, match="unknown; use one of .*cifar10, or a path to a .npz"):
        RunConfig.from_dict({"dataset": "cifar"})
    assert RunConfig.from_dict({"dataset": "cifar10"}).dataset == "cifar10"


def test_the_reference_nonidealities_are_package_data():
    from pathlib import Path

    import aanntwin

    packaged = Path(aanntwin.__file__).with_name("reference_nonidealities.json")
    example = Path(__file__).resolve().parents[1] / "examples" / "reference_nonidealities.json"
    assert load_nonidealities(str(packaged)) == load_nonidealities(str(example))


def test_the_layers_print_the_metadata_units():
    from aanntwin.config import unit
    from aanntwin.model import Main
    from tests.conftest import EVERYTHING

    text = repr(Main(nonidealities=Nonidealities(**EVERYTHING, relu_gain=1.5)))
    for field in ("conv2d_weight_bits", "conv2d_gain_mismatch", "linear_out_full_scale"):
        name = field.split("_", 1)[1]
        value = EVERYTHING[field]
        assert f"{name}={value:g} {unit(field)}" in text or f"{name}={value} {unit(field)}" in text
    assert f"gain=1.5 {unit('relu_gain')}" in text
