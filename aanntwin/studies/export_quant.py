"""Which bits, reference and grid each stage of a hardware export gets, and why.

By default a stage is exported as the run trained it (``config.json``'s ``nonidealities``:
``conv2d_weight_bits``/``linear_weight_bits``, ``*_weight_ref``, ``weight_zero_level``, and the
programmable ``*_weight_range``; hidden stages use the ``linear_*`` settings); flags override
per stage. A reference may be given in weight units or in population standard deviations of
the stage's weights (``"2.5sigma"``), the unit of the quantization study. Every value records
its source (``run config``, ``flag``, or ``max |w|`` for the default reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config import Nonidealities
from ..errors import AanntwinError


def snap(value: float, dtype: torch.dtype) -> float:
    """``value`` rounded to ``dtype`` (the weights' precision), as a Python float."""
    return float(torch.tensor(float(value), dtype=dtype))


def per_stage(value: Any, names: list[str], what: str) -> dict[str, Any]:
    """``value`` for every stage, or a dict by stage (``conv``/``conv2d``, ``linear``, ``hiddenN``);
    hidden stages default to the ``linear`` entry (the twin's hidden stages use linear_*)."""
    if not isinstance(value, dict):
        return dict.fromkeys(names, value)
    given = {("conv" if k == "conv2d" else k): v for k, v in value.items()}
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise AanntwinError(f"{what}: unknown stage(s) {unknown}; stages: {', '.join(names)}")
    return {n: given.get(n, given.get("linear") if n[0] == "h" else None) for n in names}


@dataclass(frozen=True)
class StageQuantization:
    """How one stage's weights are quantized: ``bits``, ``ref`` (weight units, or population
    stds of its weights when ``in_sigmas``; None = its largest |w|), the grid, the programmable
    ``weight_range`` (weight units; None = unlimited) and where each came from (``sources``)."""

    bits: int
    ref: float | None
    in_sigmas: bool
    zero_level: bool
    weight_range: float | None
    sources: dict[str, str]


def parse_ref(value: float | str) -> tuple[float, bool]:
    """A reference as given: a number (weight units) or ``"2.5sigma"`` (population stds of the
    stage's weights, as the quantization study reports it); returns ``(number, in_sigmas)``."""
    text = str(value).strip().lower()
    in_sigmas = text.endswith("sigma")
    try:
        number = float(text.removesuffix("sigma"))
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise AanntwinError(f"ref {value!r}: need a number > 0 (weight units) or e.g. 2.5sigma")
    return number, in_sigmas


def resolve_quantization(
    names: list[str],
    trained: Nonidealities,
    bits: dict[str, int] | int | None = None,
    refs: dict[str, float | str] | float | str | None = None,
    zero_level: bool | None = None,
) -> dict[str, StageQuantization]:
    """Each stage's quantization: the run's trained one (``trained``: ``*_weight_bits``,
    ``*_weight_ref``, ``weight_zero_level``, ``*_weight_range``; hidden stages use ``linear_*``)
    where no flag is given; ``bits`` / ``refs`` / ``zero_level`` (one value or per stage)
    override it. A stage with neither trained nor given bits is an error naming the flag."""
    given_bits, given_refs = per_stage(bits, names, "bits"), per_stage(refs, names, "refs")
    return {
        name: _resolve_stage(name, trained, given_bits[name], given_refs[name], zero_level)
        for name in names
    }


def _resolve_stage(
    name: str, trained: Nonidealities, bits: Any, ref: Any, zero_level: bool | None
) -> StageQuantization:
    """One stage of :func:`resolve_quantization` (``bits``, ``ref``: the flags, or None)."""
    kind = "conv2d" if name == "conv" else "linear"
    s = trained.stage(kind)
    sources = {"bits": "flag", "ref": "flag", "zero_level": "flag"}
    if bits is None:
        bits, sources["bits"] = s.weight_bits, "run config"
    if bits is None:
        raise AanntwinError(
            f"bits for stage {name}: the run was not trained with {kind}_weight_bits; "
            f"pass --bits {name}=N (or --bits N for every stage)"
        )
    if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= 24:
        raise AanntwinError(f"bits for stage {name} = {bits!r}: need an integer in 0..24")
    value, in_sigmas = None, False
    if ref is not None:
        value, in_sigmas = parse_ref(ref)
    elif s.weight_bits is not None and s.weight_ref is not None:
        value, sources["ref"] = s.weight_ref, "run config"
    else:
        sources["ref"] = "max |w|"
    if zero_level is None:
        zero_level, sources["zero_level"] = trained.weight_zero_level, "run config"
    return StageQuantization(bits, value, in_sigmas, zero_level, s.weight_range, sources)


def reference(w: Tensor, q: StageQuantization, name: str) -> float:
    """The stage's reference in weight units (of the weights ``w`` as programmed: clipped to
    the range), rounded to the weights' dtype."""
    if q.ref is None:
        ref = float(w.abs().max())
    elif q.in_sigmas:
        ref = q.ref * float(w.double().std(correction=0)) if w.numel() > 1 else 0.0
    else:
        ref = q.ref
    ref = snap(ref, w.dtype)
    if not (math.isfinite(ref) and ref > 0):
        raise AanntwinError(f"ref of stage {name} = {ref!r}: need a positive number")
    return ref
