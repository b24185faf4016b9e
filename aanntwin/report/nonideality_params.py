"""Nonidealities as notebook parameters: a file, a mapping of fields, or single fields.

A notebook's ``nonidealities`` parameter is one of

- ``None``: the reference design's file (package data, ``examples/reference_nonidealities.json``);
- a JSON file path (a nonidealities file, as ``aanntwin characterize`` writes);
- a mapping of :class:`~aanntwin.config.Nonidealities` fields, e.g. ``{"input_noise": 0.3}``
  (a workbook file's ``nonidealities: {input_noise: 0.3}``, papermill's
  ``-y 'nonidealities: {input_noise: 0.3}'`` or a JSON object string ``-p nonidealities
  '{"input_noise": 0.3}'``): like a file's contents, the fields not named are off.

Any field may also be passed as its own parameter (``papermill -p input_noise 0.3``, or
``input_noise: 0.3`` at the top of a workbook parameters file): it overrides the value of the file
or mapping, the other fields keep theirs. Everything is validated as a nonidealities file is
(unknown names with did-you-mean, types, ranges), with the parameter named in the error.
"""

from __future__ import annotations

import ast
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Nonidealities, load_nonidealities
from ..config import unit as nonideality_unit
from ..errors import AanntwinError, ConfigError
from ..io import parse_json

FIELD_PARAMETERS: tuple[str, ...] = tuple(
    name for name in Nonidealities.field_names() if name != "chip_seed"
)
"""Nonidealities fields a notebook takes as single parameters (``chip_seed`` is a parameter of
its own: the chip instance under test)."""


@dataclass(frozen=True)
class NonidealitySource:
    """The resolved ``nonidealities`` parameter and where each part came from."""

    nonidealities: Nonidealities
    """The file's or mapping's fields with the single-field parameters applied."""
    path: Path | None
    """The file read; None for a mapping."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """The single-field parameters applied on top (``{field: value}``, field units)."""

    def describe(self) -> str:
        """One line for report headers: the source and the overrides."""
        base = str(self.path) if self.path is not None else "mapping given as the parameter"
        if not self.overrides:
            return base
        return (
            base
            + "; overridden by parameters: "
            + ", ".join(f"{k} = {v}" for k, v in self.overrides.items())
        )


def field_overrides(namespace: Mapping[str, Any] | None) -> dict[str, Any]:
    """The single-field parameters present in ``namespace`` (a notebook's ``globals()``, where
    papermill injects the parameters it is given)."""
    if not namespace:
        return {}
    return {name: namespace[name] for name in FIELD_PARAMETERS if name in namespace}


def _mapping(value: Any, where: str) -> Nonidealities:
    try:
        return Nonidealities.from_dict(dict(value), where=where)
    except ConfigError as exc:
        raise AanntwinError(str(exc)) from None


def resolve(
    value: Any,
    overrides: Mapping[str, Any] | None = None,
    default_path: Path | None = None,
    resolve_path: Any = None,
) -> NonidealitySource:
    """The nonidealities of parameter ``value`` (see the module docstring) with the
    single-field ``overrides`` applied; ``default_path`` for None; ``resolve_path`` makes a
    relative path absolute (the notebooks' rule)."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        value = parse_json(value, "parameter nonidealities")
    if value is None:
        if default_path is None:
            raise AanntwinError("parameter nonidealities: no file given and no default")
        path: Path | None = default_path
        base = load_nonidealities(str(path))
    elif isinstance(value, Mapping):
        path, base = None, _mapping(value, "parameter nonidealities")
    elif isinstance(value, (str, os.PathLike)):
        path = Path(resolve_path(value) if resolve_path else value)
        if not path.is_file():
            raise AanntwinError(f"parameter nonidealities = {os.fspath(value)}: no such file")
        base = load_nonidealities(str(path))
    else:
        raise AanntwinError(
            f"parameter nonidealities = {value!r}: expected a JSON file path, a mapping of "
            "fields or None (the reference design's file)"
        )
    applied = dict(overrides or {})
    unknown = sorted(set(applied) - set(FIELD_PARAMETERS))
    if unknown:
        raise AanntwinError(f"nonidealities parameters: not single-field parameters: {unknown}")
    if applied:
        try:
            base = Nonidealities.from_dict({**base.to_dict(), **applied},
                                           where="nonidealities parameters")  # fmt: skip
        except ConfigError as exc:
            raise AanntwinError(str(exc)) from None
    return NonidealitySource(base, path, applied)


def check_value(where: str, key: str, value: Any) -> None:
    """Validate a workbook parameters file's ``nonidealities`` value or single field, before any
    work: the named file is read and checked, a mapping or a field checked like a file."""
    try:
        if key == "nonidealities":
            if isinstance(value, Mapping):  # ConfigError: prefixed with ``where`` below
                Nonidealities.from_dict(dict(value), where=f"{where}: nonidealities")
            elif isinstance(value, str):
                path = Path(value).expanduser()
                if not path.is_file():
                    raise AanntwinError(f"{where}: nonidealities = {value}: no such file")
                load_nonidealities(str(path))
            elif value is not None:
                raise AanntwinError(
                    f"{where}: nonidealities = {value!r}: expected a file path or a mapping of "
                    "fields"
                )
        else:
            Nonidealities.from_dict({key: value}, where=where)
    except ConfigError as exc:
        msg = str(exc)
        raise AanntwinError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def field_docs(cls: type = Nonidealities) -> dict[str, str]:
    """The attribute docstrings of a dataclass (first sentence each), read from its source."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for stmt, nxt in zip(body, body[1:], strict=False):
        named = isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
        if named and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[stmt.target.id] = " ".join(str(nxt.value.value).split())  # type: ignore
    return docs


def field_unit(name: str) -> str:
    """The unit of a Nonidealities field (its metadata: :func:`aanntwin.config.unit`)."""
    return nonideality_unit(name)


def nonidealities_table(nl: Nonidealities, active_only: bool = False) -> Any:
    """A DataFrame: field, value (``off`` for None), unit, meaning."""
    docs = field_docs()
    rows = []
    for name, value in nl.to_dict().items():
        if active_only and name not in nl.active():
            continue
        shown = "off" if value is None else value
        rows.append({"field": name, "value": shown, "unit": field_unit(name),
                     "meaning": docs.get(name, "")})  # fmt: skip
    import pandas as pd  # here: the workbook runner validates parameters without pandas

    return pd.DataFrame(rows)
