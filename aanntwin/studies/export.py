"""Hardware export (DESIGN.md §3): per MAC stage, integer weight codes as CSV + a JSON manifest.

Codes match :func:`aanntwin.functional.quantize_weights` exactly: ``step = ref / 2**bits``; with a
zero level ``code = clamp(round(w / step), -(2**bits - 1), 2**bits - 1)`` and the weight is
``code * step``; without one ``code = clamp(floor(w / step), -2**bits, 2**bits - 1)`` and the
weight is ``(code + 1/2) * step``. ``ref`` is rounded to the weights' dtype (float32) so that the
top level ``ref - step`` is itself a level (bit-identical round trips). Bits, references and grid
default to what the run trained with (:mod:`aanntwin.studies.export_quant`). :func:`load_export`
rebuilds the twin from the files alone; the CLI is :mod:`aanntwin.cli.export`.
"""

from __future__ import annotations

import copy
import csv
import itertools
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import STAGES, Nonidealities, RunConfig
from ..data import load_dataset
from ..errors import AanntwinError
from ..io import read_json_file, read_text, write_json_atomic
from ..model import Main
from ..runs import build_model, load_run
from ..schema import stable_hash
from ..training import evaluate
from .common import run_dataset
from .export_quant import reference, resolve_quantization, snap
from .normalize import calibrate

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
FORMAT = "aanntwin-hardware-export"
UNITS = {
    "shape": "count per dimension (weight tensor)",
    "bits": "bits, not counting the sign",
    "zero_level": "bool",
    "ref": "weight units (V of output per V of input)",
    "step": "weight units per code",
    "code_min": "code (integer)",
    "code_max": "code (integer)",
    "ref_sigmas": "population stds of the stage's weights (null: ref not given in sigmas)",
    "weight_range": "weight units (null: unlimited); weights clip to +-this before encoding",
    "bits_source": "run config (trained with it), flag",
    "ref_source": "run config, flag, max |w| (of the clipped weights)",
    "zero_level_source": "run config, flag",
    "bias_bits": "bits, not counting the sign (null: analog bias values)",
    "bias_ref": "V",
    "bias_step": "V per code",
    "bias_value": "V (added to the MAC output)",
    "input_full_scale_V": "V",
    "output_full_scale_V": "V",
    "normalization_gain": "ratio (stage output / output of the trained model)",
}
_INDEX = {"conv": ("out_channel", "in_channel", "ky", "kx"), "linear": ("out", "in")}


def code_range(bits: int, zero_level: bool) -> tuple[int, int]:
    """Smallest and largest code for ``bits`` (not counting the sign)."""
    return (-(2**bits - 1), 2**bits - 1) if zero_level else (-(2**bits), 2**bits - 1)


def encode(w: Tensor, bits: int, ref: float, zero_level: bool = True) -> Tensor:
    """Integer codes (int64) of ``w``, with the very operations of ``quantize_weights``."""
    step = ref / 2**bits
    lo, hi = code_range(bits, zero_level)
    k = torch.round(w / step) if zero_level else torch.floor(w / step)
    return k.clamp(lo, hi).to(torch.int64)


def decode(codes: Tensor, bits: int, ref: float, zero_level: bool, dtype: torch.dtype) -> Tensor:
    """Weights of ``codes``: ``code * step`` (or ``(code + 1/2) * step``) in float64, then cast."""
    k = codes.to(torch.float64) + (0.0 if zero_level else 0.5)
    return (k * (ref / 2**bits)).to(dtype)


def _write_table(path: Path, index: tuple[str, ...], value: str, t: Tensor, fmt: Any) -> None:
    """One row per element of ``t`` (row-major): its index columns, then ``value``."""
    rows = zip(itertools.product(*map(range, t.shape)), t.flatten().tolist(), strict=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow([*index, value])
        out.writerows([*i, fmt(v)] for i, v in rows)


def export_model(
    model: Main,
    config: RunConfig,
    out: str | os.PathLike[str],
    *,
    bits: dict[str, int] | int | None = None,
    refs: dict[str, float | str] | float | str | None = None,
    zero_level: bool | None = None,
    bias_bits: int | None = None,
    normalization: dict | None = None,
    x: Tensor | None = None,
) -> dict[str, Any]:
    """Write the export of ``model`` (raw weights quantized here) into ``out``; return the manifest.

    Quantization per stage: :func:`resolve_quantization` of ``config.nonidealities`` (what the
    run trained with) and the overrides ``bits`` / ``refs`` / ``zero_level``; a ref may be given
    in stds (``"2.5sigma"``). Weights clip to the stage's programmable range first, as in the
    twin. Full scales (V) come from ``normalization`` (the ``normalization.json`` record:
    ``after``, else ``targets``), else from :func:`~aanntwin.studies.normalize.calibrate` of
    the quantized model on the images ``x``, else null. A stage's input full scale is the
    previous stage's output full scale (ReLU and max-pool do not raise the maximum); the conv
    stage's is the largest |input voltage| of the pixel map.
    """
    names = model.stage_names()
    quant = resolve_quantization(names, config.nonidealities, bits, refs, zero_level)
    if bias_bits is not None and not (isinstance(bias_bits, int) and 0 <= bias_bits <= 24):
        raise AanntwinError(f"bias_bits = {bias_bits!r}: need an integer in 0..24 or None")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    stages, values = [], {}
    for name, module in zip(names, model.mac_stages(), strict=True):
        q, w = quant[name], module.weight.detach().cpu()
        if q.weight_range is not None:  # the DAC cannot program more (as effective_weight)
            w = w.clamp(-q.weight_range, q.weight_range)
        kind, b, zero = "conv" if name == "conv" else "linear", q.bits, q.zero_level
        ref = reference(w, q, name)
        codes = encode(w, b, ref, zero)
        values[f"{name}.weight"] = decode(codes, b, ref, zero, w.dtype)
        lo, hi = code_range(b, zero)
        entry = dict(name=name, kind=kind, shape=list(w.shape), bits=b, zero_level=zero)
        entry.update(ref=ref, step=ref / 2**b, code_min=lo, code_max=hi, csv=f"{name}_weights.csv")
        entry["codes_used"] = int(torch.unique(codes).numel())  # 1: the stage passes nothing
        entry.update(ref_sigmas=q.ref if q.in_sigmas else None, weight_range=q.weight_range)
        entry.update({f"{k}_source": v for k, v in q.sources.items()})
        _write_table(folder / entry["csv"], _INDEX[kind], "code", codes, int)
        entry.update(bias_bits=bias_bits, bias_ref=None, bias_step=None, bias_csv=None)
        if module.bias is not None:
            bias = module.bias.detach().cpu()
            entry["bias_csv"] = f"{name}_bias.csv"
            if bias_bits is None:  # float64 repr of a float32: exact round trip
                _write_table(folder / entry["bias_csv"], ("out",), "value", bias, repr)
            else:
                bref = snap(float(bias.abs().max()) or 1.0, bias.dtype)
                entry.update(bias_ref=bref, bias_step=bref / 2**bias_bits)
                bcodes = encode(bias, bias_bits, bref, True)
                values[f"{name}.bias"] = decode(bcodes, bias_bits, bref, True, bias.dtype)
                _write_table(folder / entry["bias_csv"], ("out",), "code", bcodes, int)
        stages.append(entry)
    scales, source = _full_scales(model, values, normalization, x)
    gains = (normalization or {}).get("scales") or {}
    v_in = max(abs(config.normalization.min_out), abs(config.normalization.max_out))
    for entry in stages:
        entry["input_full_scale_V"] = v_in
        entry["output_full_scale_V"] = v_in = scales.get(entry["name"])
        entry["normalization_gain"] = float(gains.get(entry["name"], 1.0))
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "format": FORMAT,
        "config_hash": config.content_hash(),
        "config": config.to_dict(),
        "weight_dtype": str(model.conv.weight.dtype).removeprefix("torch."),
        "full_scale_source": source,
        "units": UNITS,
        "files": [f for s in stages for f in (s["csv"], s["bias_csv"]) if f],
        "stages": stages,
    }
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def _full_scales(
    model: Main, values: dict[str, Tensor], normalization: dict | None, x: Tensor | None
) -> tuple[dict[str, float], str | None]:
    """Output full scale (V) per stage, and where it came from (``values``: exported weights)."""
    record = (normalization or {}).get("after") or (normalization or {}).get("targets")
    if record:
        return {n: float(v) for n, v in record.items()}, "normalization.json"
    if x is None:
        return {}, None

    quantized = copy.deepcopy(model).cpu()
    quantized.set_nonidealities(Nonidealities())
    quantized.load_state_dict({**quantized.state_dict(), **values})
    return calibrate(quantized, x.cpu()), "calibration"


def export_run(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    bits: dict[str, int] | int | None = None,
    calibration_images: int = 10000,
    data_dir: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Export a trained (or normalized) folder with the quantization it trained with, unless
    ``bits`` or ``options`` (``refs``, ``zero_level``, ``bias_bits`` of :func:`export_model`)
    override it; reads its ``normalization.json`` when present, else calibrates the full
    scales on the first ``calibration_images`` training images."""
    cfg, model = load_run(run_dir)
    norm_file = Path(run_dir) / "normalization.json"
    normalization = read_json_file(norm_file, "normalization") if norm_file.exists() else None
    x = None
    if normalization is None:
        x = run_dataset(run_dir, cfg, data_dir).x_train[:calibration_images]
    return export_model(model, cfg, out, bits=bits, normalization=normalization, x=x, **options)


# ------------------------------------------------------------------------------ loading
def _read_table(
    path: Path, index: tuple[str, ...], value: str, shape: tuple[int, ...], lo: float, hi: float
) -> Tensor:
    """Column ``value`` of ``path`` as a tensor of ``shape`` (int64 for ``code``, else float64);
    every index exactly once, every value in ``[lo, hi]``."""
    if not path.exists():
        raise AanntwinError(f"{path}: CSV file named in the manifest is missing")
    try:
        rows = list(csv.reader(read_text(path, "CSV").splitlines()))
    except csv.Error as exc:
        raise AanntwinError(f"{path}: not a CSV table ({exc})") from None
    columns, integer = [*index, value], value == "code"
    if not rows or rows[0] != columns:
        raise AanntwinError(f"{path}: header {rows[0] if rows else None}, expected {columns}")
    out = torch.zeros(math.prod(shape), dtype=torch.int64 if integer else torch.float64)
    seen = torch.zeros(out.numel(), dtype=torch.bool)
    for row_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(columns):
            raise AanntwinError(f"{path}: row {row_no}: {len(row)} columns, need {columns}")
        vals: list[Any] = []
        for col, text, n in zip(columns, row, [*shape, None], strict=True):
            try:
                v = int(text) if n is not None or integer else float(text)
            except ValueError:
                v = math.nan
            if n is not None and not 0 <= v < n:
                raise AanntwinError(
                    f"{path}: row {row_no}, column {col}: {text!r} not in 0..{n - 1}"
                )
            if n is None and not (lo <= v <= hi and math.isfinite(v)):
                what = "an integer code" if integer else "a finite number"
                raise AanntwinError(
                    f"{path}: row {row_no}, column {col}: {text!r} is not {what} in [{lo}, {hi}]"
                )
            vals.append(v)
        flat = sum(i * math.prod(shape[k + 1 :]) for k, i in enumerate(vals[:-1]))
        if seen[flat]:
            raise AanntwinError(f"{path}: row {row_no}: index {vals[:-1]} appears twice")
        out[flat], seen[flat] = vals[-1], True
    if not bool(seen.all()):
        raise AanntwinError(f"{path}: {int((~seen).sum())} of {out.numel()} entries are missing")
    return out.view(shape)


def _field(entry: dict[str, Any], key: str, where: str, kinds: Any) -> Any:
    """``entry[key]``, which must be one of ``kinds`` (a bool is not an int here)."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    value = entry.get(key)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise AanntwinError(f"{where}.{key}: missing or not {names} ({value!r})")
    return value


def _own(entry: dict[str, Any], key: str, where: str) -> str:
    """``entry[key]``: the name of a file of the export folder itself (a path elsewhere, such
    as ``../run/config.json``, is refused: the export is read from its own files alone)."""
    name = _field(entry, key, where, str)
    if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise AanntwinError(f"{where}.{key} = {name!r}: must name a file of the export folder")
    return name


def _grid(s: dict[str, Any], where: str, bits_key: str, ref_key: str, step_key: str) -> float:
    """``s[ref_key]``, checked: finite, > 0 and float32-representable; ``s[bits_key]`` an int in
    0..24; ``s[step_key] == ref / 2**bits`` (to float rounding)."""
    b = _field(s, bits_key, where, int)
    if not 0 <= b <= 24:
        raise AanntwinError(f"{where}.{bits_key} = {b}: need an integer in 0..24")
    ref = _field(s, ref_key, where, (int, float))
    if not (math.isfinite(ref) and 0 < ref <= torch.finfo(torch.float32).max):
        raise AanntwinError(f"{where}.{ref_key} = {ref!r}: need a finite number > 0 (float32)")
    step = _field(s, step_key, where, (int, float))
    if not (math.isfinite(step) and math.isclose(step, ref / 2**b, rel_tol=1e-9, abs_tol=0)):
        raise AanntwinError(
            f"{where}.{step_key} = {step!r}: inconsistent with {ref_key} / 2**{bits_key} = "
            f"{ref!r} / 2**{b} = {ref / 2**b!r}"
        )
    return float(ref)


def load_export(
    export_dir: str | os.PathLike[str], nonidealities: Nonidealities | None = None
) -> tuple[RunConfig, Main]:
    """Rebuild the twin from an export: weights ``code * step`` (or ``(code + 1/2) * step``),
    biases from their CSV, ``nonidealities`` (default: the run's, from the manifest's config,
    as ``aanntwin evaluate RUN_DIR`` uses them) with weight quantization off, and the weight
    range off unless a weight table spans it."""
    folder = Path(export_dir)
    path = folder / MANIFEST
    if not path.exists():
        raise AanntwinError(f"{path}: manifest not found (not an aanntwin export)")
    manifest = read_json_file(path, "manifest")
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if type(version) is not int or version != SCHEMA_VERSION:
        got = manifest.get("schema_version") if isinstance(manifest, dict) else None
        raise AanntwinError(
            f"{path}: schema_version = {got!r}; this aanntwin reads {SCHEMA_VERSION}"
        )
    raw = _field(manifest, "config", str(path), dict)
    cfg = RunConfig.from_dict(raw, f"{path}: config")
    # The hash of the config as written also counts: an export from before a config field was
    # added (e.g. the weight ranges) lacks it, and the field's default changes content_hash.
    if manifest.get("config_hash") not in (cfg.content_hash(), stable_hash(raw)):
        raise AanntwinError(
            f"{path}: config_hash {manifest.get('config_hash')!r} does not match config"
        )
    # The codes are the programmed weights: no second quantization, no range clip (a weight
    # table keeps its range: the table spans it, and the codes lie within it).
    nl = cfg.nonidealities if nonidealities is None else nonidealities
    tabled = [k for k in STAGES if getattr(nl, f"{k}_weight_table") is not None]
    weight_fields = [f"{k}_weight_{f}" for k in STAGES for f in ("bits", "ref", "range")
                     if f != "range" or k not in tabled]  # fmt: skip
    nl = nl.replace(**dict.fromkeys(weight_fields))
    model = build_model(cfg, nl)
    entries = {
        s["name"]: s
        for s in _field(manifest, "stages", str(path), list)
        if isinstance(s, dict) and isinstance(s.get("name"), str)
    }
    names = model.stage_names()
    if sorted(entries) != sorted(names):
        raise AanntwinError(
            f"{path}: stages: missing {sorted(set(names) - set(entries))}, "
            f"unexpected {sorted(set(entries) - set(names), key=str)}"
        )
    state = model.state_dict()
    for name, module in zip(names, model.mac_stages(), strict=True):
        s, where = entries[name], f"{path}: stage {name}"
        b, zero = _field(s, "bits", where, int), _field(s, "zero_level", where, bool)
        if not 0 <= b <= 24:
            raise AanntwinError(f"{where}.bits = {b}: out of range, allowed 0..24")
        if (s.get("code_min"), s.get("code_max")) != code_range(b, zero):
            lo, hi = code_range(b, zero)
            raise AanntwinError(
                f"{where}: code_min {s.get('code_min')}, code_max {s.get('code_max')} do not "
                f"match bits {b} with zero_level {str(zero).lower()} (they need {lo}, {hi})"
            )
        ref = _grid(s, where, "bits", "ref", "step")
        shape = tuple(module.weight.shape)
        if not isinstance(s.get("shape"), list) or tuple(s["shape"]) != shape:
            raise AanntwinError(
                f"{where}.shape = {s.get('shape')}: the config's model needs {list(shape)}"
            )
        index, wfile = _INDEX["conv" if name == "conv" else "linear"], _own(s, "csv", where)
        codes = _read_table(folder / wfile, index, "code", shape, *code_range(b, zero))
        state[f"{name}.weight"] = decode(codes, b, float(ref), zero, module.weight.dtype)
        if module.bias is None:
            continue
        bfile, n, bb = folder / _own(s, "bias_csv", where), (module.bias.numel(),), None
        if s.get("bias_bits") is None:
            bias = _read_table(bfile, ("out",), "value", n, -math.inf, math.inf)
        else:
            bb = _field(s, "bias_bits", where, int)
            bref = _grid(s, where, "bias_bits", "bias_ref", "bias_step")
            bias = _read_table(bfile, ("out",), "code", n, *code_range(bb, True))
            bias = decode(bias, bb, float(bref), True, torch.float64)
        state[f"{name}.bias"] = bias.to(module.bias.dtype)
    model.load_state_dict(state)
    return cfg, model


def evaluate_export(
    export_dir: str | os.PathLike[str],
    runs: int = 1,
    seed: int = 0,
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str = "cpu",
    nonidealities: Nonidealities | None = None,
) -> dict[str, Any]:
    """``aanntwin evaluate --export DIR``: the exported chip's test accuracy (JSON-ready dict),
    with ``nonidealities`` (default: the run's, as :func:`load_export`)."""
    cfg, model = load_export(export_dir, nonidealities)
    nl = model.nonidealities
    data = load_dataset(dataset or cfg.dataset, data_dir)
    model.to(device)
    res = evaluate(model, data.x_test.to(device), data.y_test.to(device), runs=runs, seed=seed)
    report = dict(dataset=data.name, device=str(device), export=str(export_dir))
    report.update(nonidealities=nl.active(), per_class_accuracy=res.per_class_accuracy)
    return {**res.summary(), **report}
