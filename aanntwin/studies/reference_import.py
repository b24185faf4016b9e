"""Bring work done in the reference tool (the batch-1 PyTorch twin this project grew from) over.

Parameter files load through documented aliases (:data:`REFERENCE_ALIASES`,
:func:`load_reference_params`); a trained weight file (``cache/models/*.pth``, a named state dict:
``conv2d_weight``, ``conv2d_bias``, ``additional_linear_<i>_weight``/``_bias``, ``linear_weight``,
``linear_bias``) is read with ``torch.load(..., weights_only=True)`` only, checked key by key and
shape by shape against the geometry of the parameters, renamed onto this project's weights
(:data:`KEY_MAP`) and written as a normal run folder (:func:`import_reference`). Sweep result
files convert in :mod:`aanntwin.studies.reference_sweep`.

The reference network is the same as :class:`~aanntwin.model.Main` with every nonideality off
(DESIGN.md §1): conv (stride, padding) -> ReLU -> max-pool -> flatten (C, H, W) -> hidden linear
+ ReLU ... -> final linear, on pixels in [0, 1] (identity normalization, 1 pixel unit = 1 V).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import ModelParams, Nonidealities, RunConfig, TrainParams
from ..errors import AanntwinError, ConfigError
from ..io import write_json_atomic
from ..provenance import provenance
from ..runs import build_model, run_geometry, write_model
from ..schema import read_json

REFERENCE_ALIASES: dict[str, str] = {
    "conv_out_channels": "model.channels",
    "kernel_size": "model.kernel",
    "stride": "model.stride",
    "padding": "model.padding",
    "pool_size": "model.pool",
    "additional_layers": "model.hidden",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "learning_rate": "train.lr",
    "lr": "train.lr",
    "optimizer": "train.optimizer",
    "momentum": "train.momentum",
    "weight_decay": "train.weight_decay",
    "seed": "train.seed",
    "dataset": "dataset",
}
"""Reference parameter name -> this project's field (``section.field``). Any alias may stand in
either file; a name not listed is an error naming it."""

REFERENCE_TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 1e-3,
    "batch_size": 1,
    "momentum": 0.0,
    "nesterov": False,
    "schedule": "constant",
}
"""Training fields a reference training file leaves out take the reference tool's behaviour (plain
SGD, lr 1e-3, batch 1, constant rate), not this project's defaults; the rest (``epochs``,
``seed``, ``weight_decay``, ``chips``) take :class:`~aanntwin.config.TrainParams`'s."""

DEFAULT_DATASET = "mnist"
"""Dataset of an import whose files and ``--dataset`` name none (the reference tool's default)."""

_DATASET_SPELLINGS = {"fashionmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist",
                      "cifar-10": "cifar10", "cifar_10": "cifar10"}  # fmt: skip

WEIGHTS_NOTE = "imported.json"
"""Provenance note an imported run folder carries beside ``config.json`` and the weights."""


def _sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _aliased_fields(path: str) -> dict[str, tuple[str, Any]]:
    """``section.field -> (alias, value)`` of one reference parameter file; unknown names fail."""
    data = read_json(path, "reference parameter")
    out: dict[str, tuple[str, Any]] = {}
    for key, value in data.items():
        target = REFERENCE_ALIASES.get(key)
        if target is None:
            close = difflib.get_close_matches(key, list(REFERENCE_ALIASES), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{path}: unknown reference parameter {key!r}; {hint}known "
                              f"aliases: {', '.join(REFERENCE_ALIASES)}")  # fmt: skip
        if target in out and out[target][1] != value:
            raise ConfigError(f"{path}: {out[target][0]!r} and {key!r} both set {target} "
                              f"({out[target][1]!r} vs {value!r}); keep one")  # fmt: skip
        out[target] = (key, value)
    return out


def _value(target: str, value: Any) -> Any:
    """Reference spellings of a value: ``"Adam"`` -> ``"adam"``, ``"CIFAR-10"`` -> ``"cifar10"``
    (a ``.npz`` path is kept as given), a null list of hidden widths -> none."""
    if target == "model.hidden" and value is None:
        return []
    if target == "train.optimizer" and isinstance(value, str):
        return value.strip().lower()
    if target == "dataset" and isinstance(value, str) and not value.lower().endswith(".npz"):
        name = value.strip().lower()
        return _DATASET_SPELLINGS.get(name, name)
    return value


def reference_params(
    model_json: str, train_json: str | None = None, dataset: str | None = None
) -> tuple[RunConfig, list[str]]:
    """:func:`load_reference_params` and the training fields taken as defaults (to say so)."""
    sources: dict[str, tuple[str, str]] = {}  # section.field -> (file, alias)
    values: dict[str, Any] = {}
    for path in (model_json, train_json):
        if path is None:
            continue
        for target, (alias, value) in _aliased_fields(path).items():
            if target in values and values[target] != _value(target, value):
                first, other = sources[target]
                raise ConfigError(f"{path}: {alias!r} = {value!r} contradicts {other!r} = "
                                  f"{values[target]!r} in {first}")  # fmt: skip
            sources[target], values[target] = (path, alias), _value(target, value)
    if dataset is not None:
        values["dataset"], sources["dataset"] = dataset, ("--dataset", "dataset")
    model = {t.split(".", 1)[1]: v for t, v in values.items() if t.startswith("model.")}
    train = {t.split(".", 1)[1]: v for t, v in values.items() if t.startswith("train.")}
    defaulted: list[str] = []
    if train_json is not None:
        for name, default in REFERENCE_TRAIN_DEFAULTS.items():
            if name not in train:
                train[name] = default
                defaulted.append(f"train.{name} = {default!r} (the reference tool's)")
        defaulted += [f"train.{n} = {getattr(TrainParams(), n)!r} (aanntwin's)"
                      for n in TrainParams.field_names() if n not in train]  # fmt: skip
    try:
        cfg = RunConfig(
            dataset=values.get("dataset", DEFAULT_DATASET),
            model=ModelParams.from_dict(model, where="model"),
            train=TrainParams.from_dict(train, where="train"),
        )
    except ConfigError as exc:
        msg = str(exc)
        where = re.match(r"([\w.]+?)(\[\d+\])?( =|:)", msg)
        field = where.group(1) if where else ""
        path, alias = sources.get(field, (model_json, ""))
        named = f" (reference {alias!r})" if alias and alias != field else ""
        raise ConfigError(f"{path}: {msg}{named}") from None
    try:
        run_geometry(cfg)
    except AanntwinError as exc:  # GeometryError; DataError for an unreadable .npz
        raise type(exc)(f"{model_json}: {exc} (on dataset {cfg.dataset})") from None
    return cfg, defaulted


def load_reference_params(
    model_json: str, train_json: str | None = None, dataset: str | None = None
) -> RunConfig:
    """The run configuration of reference model (and training) parameter files.

    Every key must be in :data:`REFERENCE_ALIASES` (else a :class:`ConfigError` naming the file,
    the key and the known aliases); values go through the normal validation (errors name the file
    and the field) and the geometry is checked on the dataset (errors name the model file).
    Training fields a given training file leaves out take :data:`REFERENCE_TRAIN_DEFAULTS`;
    ``dataset`` (a registered name or a ``.npz`` path) overrides the files' own, which default to
    :data:`DEFAULT_DATASET`. Nonidealities are off (the reference network).
    """
    return reference_params(model_json, train_json, dataset)[0]


# ----------------------------------------------------------------- weights
def key_map(n_hidden: int) -> dict[str, str]:
    """Reference state-dict key -> this project's weight name, for ``n_hidden`` hidden stages."""
    names = {"conv2d": "conv", **{f"additional_linear_{i}": f"hidden{i}" for i in range(n_hidden)},
             "linear": "linear"}  # fmt: skip
    return {f"{ref}_{p}": f"{ours}.{p}" for ref, ours in names.items() for p in ("weight", "bias")}


def _unpickling_detail(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    found = re.search(r"WeightsUnpickler error:\s*(.*?)(?: was not an allowed|\. Please| Check |$)",
                      text)  # fmt: skip
    return found.group(1).strip() if found and found.group(1).strip() else "not plain tensors"


def read_reference_weights(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The named tensors of a reference weight file, loaded with ``weights_only=True`` only.

    A file that needs more than tensors and plain containers to unpickle is refused (it may
    contain code); one that is not a ``str -> Tensor`` mapping is an error naming the key.
    """
    where = os.fspath(path)
    if not os.path.isfile(where):
        raise AanntwinError(f"{where}: weights file not found")
    try:
        obj = torch.load(where, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise AanntwinError(
            f"{where}: refused: it does not load as plain tensors with weights_only=True "
            f"({_unpickling_detail(exc)}); it may contain code and is not loaded. Re-save its "
            "state dict of tensors (torch.save(model.state_dict(), path)) from a trusted session"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AanntwinError(f"{where}: not a readable PyTorch weight file ({first})") from None
    if not isinstance(obj, dict):
        raise AanntwinError(f"{where}: holds a {type(obj).__name__}, not a named state dict "
                            "(conv2d_weight, conv2d_bias, ..., linear_bias)")  # fmt: skip
    for key, value in obj.items():
        if not isinstance(key, str):
            raise AanntwinError(f"{where}: key {key!r} is not a name; expected a named state dict")
        if not isinstance(value, Tensor):
            raise AanntwinError(f"{where}: {key} holds a {type(value).__name__}, not a tensor")
    return dict(obj)


def map_reference_weights(
    tensors: dict[str, Tensor], expected: dict[str, torch.Size], path: str, params_file: str
) -> dict[str, Tensor]:
    """Rename reference tensors onto this project's names (``expected``: our name -> shape),
    checking every key, shape and value; float32 copies. Errors name the reference key."""
    n_hidden = sum(1 for k in expected if k.startswith("hidden") and k.endswith(".weight"))
    names = key_map(n_hidden)
    for key in tensors:
        if key not in names:
            stage = re.fullmatch(r"additional_linear_(\d+)_(weight|bias)", key)
            why = (f"a hidden stage beyond the {n_hidden} of additional_layers in {params_file}"
                   if stage else f"expected only {', '.join(names)}")  # fmt: skip
            raise AanntwinError(f"{path}: unexpected key {key!r} ({why})")
    out: dict[str, Tensor] = {}
    for ref, ours in names.items():
        want = tuple(expected[ours])
        if ref not in tensors:
            raise AanntwinError(f"{path}: missing {ref!r} (shape {want} for the geometry of "
                                f"{params_file})")  # fmt: skip
        value = tensors[ref]
        if tuple(value.shape) != want:
            raise AanntwinError(
                f"{path}: {ref} has shape {tuple(value.shape)}, expected {want} for the geometry "
                f"of {params_file} (check its conv/pool/stride/padding/additional_layers and the "
                "dataset)"
            )
        if not value.is_floating_point():
            raise AanntwinError(f"{path}: {ref} holds {value.dtype} values; weights are floats")
        if not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise AanntwinError(f"{path}: {ref} has {bad} non-finite value(s) (NaN or inf)")
        out[ours] = value.detach().to(torch.float32).contiguous()
        if not bool(torch.isfinite(out[ours]).all()):  # finite in float64, inf in float32
            big = float(value.double().abs().max())
            raise AanntwinError(f"{path}: {ref} has values up to {big:.3g}, beyond the float32 "
                                "range of the model (|x| <= 3.4e38)")  # fmt: skip
    return out


def import_reference(
    weights: str | os.PathLike[str],
    model_json: str,
    out: str | os.PathLike[str],
    train_json: str | None = None,
    dataset: str | None = None,
    nonidealities: Nonidealities | None = None,
) -> tuple[RunConfig, list[str]]:
    """Write the run folder ``out`` (``config.json``, ``weights.safetensors``,
    :data:`WEIGHTS_NOTE`) of a reference weight file and its parameter files.

    ``nonidealities``: those the reference trained with, recorded in ``config.json`` (default:
    off). Returns the configuration and the training fields taken as defaults. ``out`` is
    written in place: the CLI wraps it in :func:`~aanntwin.io.output_dir`.
    """
    cfg, defaulted = reference_params(model_json, train_json, dataset)
    if nonidealities is not None:
        cfg = cfg.replace(nonidealities=nonidealities)
    model = build_model(cfg)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    tensors = read_reference_weights(weights)
    model.load_state_dict(map_reference_weights(tensors, expected, os.fspath(weights), model_json))
    folder = write_model(out, cfg, model)
    sources = {"weights": weights, "model_params": model_json, "train_params": train_json}
    note = {
        "imported_from": "reference tool",
        "sources": {
            k: {"path": os.path.abspath(v), "sha256": _sha256(v)}
            for k, v in sources.items()
            if v is not None
        },  # fmt: skip
        "key_map": key_map(len(cfg.model.hidden)),
        "defaulted": defaulted,
        "provenance": provenance(),
    }
    write_json_atomic(Path(folder) / WEIGHTS_NOTE, note)
    return cfg, defaulted
