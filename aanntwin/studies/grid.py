"""Sweep grids from the command line or the library, validated before any work starts.

Level lists are written as comma-separated items, each a number, ``none`` (the nonideality
off) or a range ``start:stop:step`` (inclusive of ``stop``); ``reference`` names the reference
tool's grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import AanntwinError
from ..schema import FLOAT32_MAX

REFERENCE_TRAIN_LEVELS: tuple[float | None, ...] = (None, *(round(0.1 * i, 10) for i in range(11)))
"""12 training-noise levels: off, 0.0 .. 1.0 V by 0.1."""
REFERENCE_TEST_LEVELS: tuple[float | None, ...] = (None, *(round(0.01 * i, 10) for i in range(101)))
"""102 test-noise levels: off, 0.00 .. 1.00 V by 0.01."""


def _shown(text: object) -> str:
    """The value as given: the text quoted, a list as a list."""
    return repr(text) if isinstance(text, str) else repr(list(text))  # type: ignore[call-overload]


def _range(item: str, what: str) -> list[float]:
    parts = item.split(":")
    if len(parts) != 3:
        raise AanntwinError(f"{what}: range {item!r} must be start:stop:step")
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise AanntwinError(f"{what}: range {item!r} must hold numbers") from None
    if not all(math.isfinite(v) for v in (start, stop, step)):
        raise AanntwinError(
            f"{what}: range {item!r} must hold finite numbers (no nan or inf) as start:stop:step"
        )
    if step <= 0 or stop < start:
        raise AanntwinError(f"{what}: range {item!r} needs step > 0 and stop >= start")
    n = int(math.floor((stop - start) / step + 1e-9)) + 1
    if n > 100_000:
        raise AanntwinError(f"{what}: range {item!r} has {n} values (at most 100000)")
    return [round(start + i * step, 10) for i in range(n)]


def parse_levels(
    text: str | Sequence[float | None],
    what: str,
    *,
    reference: Sequence[float | None] | None = None,
    minimum: float = 0.0,
    allow_none: bool = True,
) -> list[float | None]:
    """Levels from text (``none,0:1:0.1``, ``reference``) or a list; each >= ``minimum``."""
    if isinstance(text, str):
        items: list[float | None] = []
        if text.strip() == "reference":
            if reference is None:
                raise AanntwinError(f"{what}: no reference grid for this option")
            items = list(reference)
        else:
            for item in (t.strip() for t in text.split(",")):
                if not item:
                    continue
                if item.lower() in ("none", "off"):
                    items.append(None)
                elif ":" in item:
                    items.extend(_range(item, what))
                else:
                    try:
                        items.append(float(item))
                        if not math.isfinite(items[-1]):
                            raise ValueError(item)
                    except ValueError:
                        raise AanntwinError(
                            f"{what}: {item!r} is not a number, none or a range"
                        ) from None
    else:
        items = list(text)
    if not items:
        raise AanntwinError(
            f"{what} {_shown(text)}: the list is empty; give numbers, none or start:stop:step"
        )
    out: list[float | None] = []
    for v in items:
        if v is None:
            if not allow_none:
                raise AanntwinError(f"{what}: 'none' is not allowed here")
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise AanntwinError(f"{what}: {v!r} is not a finite number")
        if v < minimum:
            raise AanntwinError(f"{what}: {v!r} is out of range, allowed >= {minimum}")
        if abs(v) > FLOAT32_MAX:  # the model computes in float32: it would overflow
            raise AanntwinError(f"{what}: {v!r} is beyond the float32 range (|x| <= 3.4e38)")
        out.append(float(v))
    return _once(out, what)


def _once(values: list[Any], what: str) -> list[Any]:
    """``values``, refused when one appears twice: each would be computed and reported twice
    (a spec table row, a sweep point)."""
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise AanntwinError(f"{what}: {v!r} appears twice; give each value once")
        seen.add(v)
    return values


def parse_ints(text: str | Iterable[int], what: str, lo: int, hi: int) -> list[int]:
    """Integers from text (``0:7`` inclusive, ``2,4,8``) or an iterable, each in [lo, hi]."""
    if isinstance(text, str):
        values: list[int] = []
        for item in (t.strip() for t in text.split(",")):
            if not item:
                continue
            try:
                a, b = (int(p) for p in item.split(":")) if ":" in item else (int(item),) * 2
            except ValueError:
                raise AanntwinError(f"{what}: {item!r} is not an integer or a range a:b") from None
            if b - a > 100_000:
                raise AanntwinError(
                    f"{what}: range {item!r} has {b - a + 1} values (at most 100001)"
                )
            values.extend(range(a, b + 1))
    else:
        values = list(text)
    if not values:
        raise AanntwinError(
            f"{what} {_shown(text)}: the list is empty; give integers {lo}..{hi} or ranges a:b"
        )
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise AanntwinError(f"{what}: {v!r} is out of range, allowed integers {lo}..{hi}")
    return _once(values, what)


KIND_ALIASES = {"conv2d_out": "conv_out"}
"""The reference tool's kind names, accepted for ours."""


def parse_choices(text: str | Iterable[str], what: str, allowed: Sequence[str]) -> list[str]:
    """Names from a comma-separated string or an iterable, each one of ``allowed`` (the reference
    tool's kind names in :data:`KIND_ALIASES` are read as ours)."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    items = [KIND_ALIASES.get(t, t) for t in items if t]
    if not items:
        raise AanntwinError(f"{what} {_shown(text)}: the list is empty; give {', '.join(allowed)}")
    for t in items:
        if t not in allowed:
            raise AanntwinError(f"{what}: unknown {t!r}; choose from {', '.join(allowed)}")
    return _once(items, what)
