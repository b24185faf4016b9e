"""Validated, JSON round-tripping parameter dataclasses (the machinery under `config`).

Each parameter is a frozen dataclass field declared with :func:`param`, which records its unit
and allowed range. :class:`Params` validates every field on construction from the type hint and
that metadata, and raises :class:`~aanntwin.errors.ConfigError` naming the field, the value and
what is allowed. Lists become tuples so parameter sets are hashable and immutable.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from typing import Any, ClassVar, Literal, TypeVar

from .errors import ConfigError
from .io import read_json_file

SCHEMA_VERSION = 1
"""Version of the saved-file layout; a file must carry exactly this one (or none)."""

FLOAT32_MAX = 3.4028234663852886e38
"""Largest finite float32: every float field reaches tensors, so it must fit."""

P = TypeVar("P", bound="Params")


def param(
    default: Any = None,
    *,
    unit: str = "",
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    min_len: int = 1,
) -> Any:
    """A dataclass field with its unit and bounds (``ge``/``gt`` lower, ``le`` upper).

    Bounds apply to numbers and to every element of a tuple; ``min_len`` to tuples.
    """
    meta = {"unit": unit, "ge": ge, "gt": gt, "le": le, "min_len": min_len}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=lambda: tuple(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _bounds_text(meta: dict[str, Any]) -> str:
    parts = []
    if meta.get("gt") is not None:
        parts.append(f"> {meta['gt']}")
    if meta.get("ge") is not None:
        parts.append(f">= {meta['ge']}")
    if meta.get("le") is not None:
        parts.append(f"<= {meta['le']}")
    unit = f" {meta['unit']}" if meta.get("unit") else ""
    return (" and ".join(parts) or "any value") + unit


def _check_number(where: str, value: Any, want_int: bool, meta: dict[str, Any]) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if want_int else "a number"
        raise ConfigError(f"{where} = {value!r}: must be {kind} ({_bounds_text(meta)})")
    if want_int:
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"{where} = {value!r}: must be an integer ({_bounds_text(meta)})")
            value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r}: must be finite ({_bounds_text(meta)})")
        if abs(value) > FLOAT32_MAX:
            raise ConfigError(
                f"{where} = {value!r}: beyond the float32 range (|x| <= 3.4e38; "
                f"{_bounds_text(meta)})"
            )
    ge, gt, le = meta.get("ge"), meta.get("gt"), meta.get("le")
    if (
        (ge is not None and value < ge)
        or (gt is not None and value <= gt)
        or (le is not None and value > le)
    ):
        raise ConfigError(f"{where} = {value!r}: out of range, allowed {_bounds_text(meta)}")
    return value


def _coerce(where: str, value: Any, hint: Any, meta: dict[str, Any]) -> Any:
    """Check ``value`` against the type hint and bounds; return its canonical form."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(where, value, inner, meta)
    if value is None:
        raise ConfigError(f"{where} = None: a value is required ({_bounds_text(meta)})")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(
                f"{where} = {value!r}: must be one of {', '.join(map(repr, allowed))}"
            )
        return value
    if origin is tuple:
        (elem,) = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {value!r}: must be a list of numbers")
        if len(value) < meta.get("min_len", 1):
            raise ConfigError(
                f"{where} = {list(value)!r}: needs at least {meta.get('min_len', 1)} element(s)"
            )
        return tuple(_coerce(f"{where}[{i}]", v, elem, meta) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: must be true or false")
        return value
    if hint in (int, float):
        return _check_number(where, value, hint is int, meta)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} = {value!r}: must be a non-empty string")
        return value
    if isinstance(hint, type) and issubclass(hint, Params):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return hint.from_dict(value, where=where)
        raise ConfigError(f"{where} = {value!r}: must be an object of {hint.__name__} fields")
    raise TypeError(f"unsupported type hint {hint!r} for {where}")  # a bug, not user input


class Params:
    """Base for validated frozen parameter dataclasses (subclasses add ``@dataclass(frozen=True)``)."""

    section: ClassVar[str] = ""
    """Name used in error messages (``nonidealities.input_noise``)."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            where = f"{self.section}.{f.name}" if self.section else f.name
            value = _coerce(where, getattr(self, f.name), hints[f.name], dict(f.metadata))
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Cross-field checks; subclasses override and raise ConfigError."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[P], data: dict[str, Any], where: str | None = None) -> P:
        """Build from a plain dict; unknown fields are an error (with a close-match hint)."""
        where = where or cls.section or cls.__name__
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected an object of fields, got {data!r}")
        data = dict(data)
        version = data.pop("schema_version", SCHEMA_VERSION)
        if type(version) is not int or version != SCHEMA_VERSION:
            if type(version) is int and version > SCHEMA_VERSION:
                allowed = f"this aanntwin reads versions <= {SCHEMA_VERSION}; upgrade aanntwin"
            else:
                allowed = f"must be the integer {SCHEMA_VERSION}"
            raise ConfigError(f"{where}.schema_version = {version!r}: {allowed}")
        known = cls.field_names()
        for name in data:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
                raise ConfigError(f"{where}: unknown field {name!r}{hint}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples as lists, nested params as dicts)."""
        out: dict[str, Any] = {}
        for name in self.field_names():
            value = getattr(self, name)
            if isinstance(value, Params):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    def replace(self: P, **changes: Any) -> P:
        """A copy with some fields changed (validated like a new instance)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_json(self) -> str:
        return json.dumps({"schema_version": SCHEMA_VERSION, **self.to_dict()}, indent=2)

    def content_hash(self) -> str:
        """Stable hash of the values (not of the Python object): a cache key component."""
        return stable_hash(self.to_dict())


def stable_hash(obj: Any) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of ``obj``."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_json(path: str, what: str) -> dict[str, Any]:
    """Read a JSON object from ``path`` (strict: UTF-8, no duplicate keys, no NaN, bounded
    nesting; see :func:`aanntwin.io.read_json_file`); errors name the file."""
    data = read_json_file(path, what, ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of {what} fields")
    return data


def load_params(cls: type[P], path: str) -> P:
    """Load and validate a parameter file; the error names the file."""
    try:
        return cls.from_dict(read_json(path, cls.section or cls.__name__))
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(f"{path}:") else f"{path}: {msg}") from None
