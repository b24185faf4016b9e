"""Workbook parameters files: strict loading and validation against the notebooks, before any work.

A parameters file is checked as a whole before a kernel starts or a folder is created: every key
(top level, per-notebook ``notebooks:`` overrides, every variant) must be a parameter of the
notebooks' ``parameters`` cell (papermill's tag), of the type its default value has, or a
Nonidealities field (a single-field parameter, checked as a nonidealities file is), within its
allowed range (:mod:`~aanntwin.report.param_ranges`, the command line's); files it
names must exist (a nonidealities file is read and checked); variant names must be safe folder
names. Errors are one line naming the file.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from pathlib import Path
from typing import Any

from ..characterization.circuits import MULTIPLIERS
from ..errors import AanntwinError, ConfigError
from ..io import MAX_JSON_DEPTH, json_depth, parse_json, read_text
from ..registry import check_name as check_dataset
from ..registry import is_npz
from .nonideality_params import FIELD_PARAMETERS
from .nonideality_params import check_value as check_nonideality
from .param_ranges import range_problem

RESERVED = ("name", "notebooks", "variants")
"""Keys of a parameters file that are not notebook parameters."""
PATH_PARAMETERS = {
    "nonidealities": "file",
    "data_dir": "folder",
    "csv_files": "files",
    "characterized": "file",
    "characterization": "folder",
    "compare_with": "csv",
}
"""Parameters naming files or folders: relative ones are taken from where the workbook starts
(``compare_with``: a topology name, or a CSV file, a folder of CSVs or a list of CSV files;
``dataset``: a registered name or a ``.npz`` file). Their contents are in the rerun key."""
CHARACTERIZATION_FILES = ("nonidealities.json", "fit_report.json")
"""What notebook 06 reads from a ``characterization`` folder."""
SET_BY_RUNNER = ("out_dir",)
"""Notebook parameters the runner sets (``out_dir``: the report's ``data/`` folder)."""
MAX_FILE_BYTES = 1_000_000
"""A parameters file is a handful of settings: anything larger is refused unread."""
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_ANY = object()
"""The default of a parameter whose value is not a literal: any value is accepted."""


def named_paths(key: str, value: Any) -> list[str]:
    """The files or folders parameter ``key`` names (as given; none for None, a registered
    dataset or a ``compare_with`` topology name): what is resolved, checked and fingerprinted."""
    if key == "dataset":
        return [value] if is_npz(value) else []
    if key not in PATH_PARAMETERS or value is None or isinstance(value, dict):
        return []
    if key == "compare_with" and isinstance(value, str) and value in MULTIPLIERS:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _strict_loader(yaml: Any) -> type:
    """PyYAML's SafeLoader without aliases (``*name``: no self-referencing or exponentially
    expanding "billion laughs" files) and without duplicate keys (not "last one wins")."""

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, "aliases are not allowed", mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                key = getattr(key_node, "value", None)
                if not isinstance(key, str):  # a list as a key: SafeLoader refuses it
                    continue
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def load_parameters(path: str | Path) -> dict[str, Any]:
    """A parameters file (YAML or JSON): notebook parameters plus ``name``, ``notebooks``
    (per-notebook overrides: ``{"02_training": {"epochs": 5}}``) and ``variants`` (a list of
    ``{"name": ..., **overrides}``, each run into its own folder)."""
    import yaml  # optional dependency (the notebooks extra): imported where used

    p = Path(path)
    if p.is_file() and p.stat().st_size > MAX_FILE_BYTES:
        raise AanntwinError(f"{p}: larger than {MAX_FILE_BYTES} bytes; not a parameters file")
    text = read_text(p, "parameters")
    if p.suffix == ".json":
        data = parse_json(text, p)
    elif json_depth(text) > MAX_JSON_DEPTH:  # YAML flow style nests like JSON
        raise AanntwinError(f"{p}: nested more than {MAX_JSON_DEPTH} levels deep")
    else:
        try:
            data = yaml.load(text, Loader=_strict_loader(yaml))  # noqa: S506 - a SafeLoader
        except (yaml.YAMLError, RecursionError, ValueError) as exc:  # ValueError: 2001-13-45
            raise AanntwinError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from None
        try:  # plain JSON values only (no dates, bytes, NaN): what notebook parameters take
            json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise AanntwinError(f"{p}: not a plain parameter value ({exc})") from None
    data = data or {}
    if not isinstance(data, dict):
        raise AanntwinError(f"{p}: expected a mapping of parameters")
    if not isinstance(data.get("notebooks", {}), dict):
        raise AanntwinError(f"{p}: 'notebooks' must map notebook names to parameter overrides")
    variants = data.get("variants", [])
    if not isinstance(variants, list) or any(
        not isinstance(v, dict) or not v.get("name") for v in variants
    ):
        raise AanntwinError(f"{p}: 'variants' must be a list of mappings, each with a 'name'")
    if any(not isinstance(o, dict) for o in data.get("notebooks", {}).values()):
        raise AanntwinError(f"{p}: each entry of 'notebooks' must be a mapping of parameters")
    return data


def notebook_defaults(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """``{notebook: {parameter: default}}`` from each notebook's cell tagged ``parameters``."""
    import nbformat  # optional dependency (the notebooks extra): imported where used

    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        defaults: dict[str, Any] = {}
        for cell in cells[:1]:
            try:
                tree = ast.parse(cell.source)
            except SyntaxError as exc:
                raise AanntwinError(
                    f"{path}: parameters cell is not valid Python ({exc})"
                ) from None
            for node in tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target, value = node.targets[0], node.value
                elif isinstance(node, ast.AnnAssign) and node.value is not None:
                    target, value = node.target, node.value
                else:
                    continue
                if isinstance(target, ast.Name):
                    try:
                        defaults[target.id] = ast.literal_eval(value)
                    except ValueError:
                        defaults[target.id] = _ANY
        out[path.stem] = defaults
    return out


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _type_problem(key: str, value: Any, default: Any) -> str | None:
    """Why ``value`` does not fit a parameter whose default is ``default``; None if it does."""
    if default is _ANY:
        return None
    if key == "csv_files":
        ok = value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        return None if ok else "expected a list of CSV file paths"
    if key == "compare_with":
        strings = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if value is None or isinstance(value, str) or strings:
            return None
        return f"expected a topology ({', '.join(MULTIPLIERS)}), a CSV file or folder, a list "\
            "of CSV files, or null"  # fmt: skip
    if PATH_PARAMETERS.get(key) in ("file", "folder"):
        ok = value is None or isinstance(value, str)
        return None if ok else f"expected a {PATH_PARAMETERS[key]} path (or null)"
    if default is None:
        ok = _scalar(value) or (isinstance(value, list) and all(_scalar(v) for v in value))
        return None if ok else "expected a single value (or null)"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "expected true or false"
    if isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "expected an integer"
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "expected a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "expected a string"
    return None if isinstance(value, type(default)) else f"expected a {type(default).__name__}"


def _suggest(key: str, known: list[str], list_known: bool = False) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return hint + (f" (known: {', '.join(sorted(known))})" if list_known or not close else "")


def _check_path(where: str, key: str, value: Any) -> None:
    kind = PATH_PARAMETERS.get(key)
    for item in named_paths(key, value) if kind else []:
        p = Path(item).expanduser()
        if kind == "csv" and not (p.is_dir() or p.is_file()):
            raise AanntwinError(f"{where}: {key} = {item}: no such file or folder (nor a "
                                f"topology: {', '.join(MULTIPLIERS)})")  # fmt: skip
        if kind == "csv" and p.is_dir() and not any(p.glob("*.csv")):
            raise AanntwinError(f"{where}: {key} = {item}: no CSV files in this folder")
        if kind == "csv" and p.is_file() and p.suffix != ".csv":
            raise AanntwinError(f"{where}: {key} = {item}: not a .csv file")
        if kind == "folder" and not p.is_dir():
            raise AanntwinError(f"{where}: {key} = {item}: no such folder")
        if kind in ("file", "files") and not p.is_file():
            raise AanntwinError(f"{where}: {key} = {item}: no such file")
        lacks = [f for f in CHARACTERIZATION_FILES if not (p / f).is_file()]
        if key == "characterization" and lacks:
            raise AanntwinError(f"{where}: {key} = {item}: no {' or '.join(lacks)} in this folder "
                                "(expected a folder `aanntwin characterize` wrote)")  # fmt: skip


def _check_keys(where: str, params: dict[str, Any], defaults: dict[str, Any],
                users: dict[str, str] | None = None) -> None:  # fmt: skip
    """``users``: for top-level and variant keys, the notebooks taking each parameter."""
    known = sorted(defaults) + (list(FIELD_PARAMETERS) if "nonidealities" in defaults else [])
    for key, value in params.items():
        if key in SET_BY_RUNNER:
            raise AanntwinError(f"{where}: '{key}' is set by the workbook (the report's data/)")
        if key == "nonidealities" or (key in FIELD_PARAMETERS and key in known):
            check_nonideality(where, key, value)  # a file, a mapping or one field, read as such
            continue
        if key not in defaults:
            raise AanntwinError(f"{where}: unknown parameter '{key}'{_suggest(key, known)}")
        problem = _type_problem(key, value, defaults[key])
        if problem:
            raise AanntwinError(f"{where}: {key} = {json.dumps(value)}: {problem}")
        problem = range_problem(key, value)
        if problem:
            used = f"; a parameter of {users[key]}" if users and key in users else ""
            raise AanntwinError(f"{where}: {key} = {json.dumps(value)}: {problem}{used}")
        _check_path(where, key, value)
        if key == "dataset":
            try:
                check_dataset(value)
            except ConfigError as exc:
                raise AanntwinError(f"{where}: {exc}") from None


def check_name(where: str, name: str) -> None:
    """A variant (report folder) name: letters, digits, ``.``, ``_``, ``-``; not ``.``/``..``."""
    if not SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise AanntwinError(
            f"{where}: name {name!r} is not a safe folder name (letters, digits, '.', '_', '-')"
        )


def validate(file: str | Path, data: dict[str, Any], defaults: dict[str, dict[str, Any]]) -> None:
    """Check a loaded parameters file against ``defaults`` (:func:`notebook_defaults`)."""
    union: dict[str, Any] = {}
    takers: dict[str, list[str]] = {}
    for book, params in defaults.items():
        for key, default in params.items():
            union.setdefault(key, default)
            takers.setdefault(key, []).append(book)
    users = {k: "every notebook" if len(v) == len(defaults) else "notebook " + ", ".join(v)
             for k, v in takers.items()}  # fmt: skip
    if "name" in data:
        check_name(str(file), str(data["name"]))
    _check_keys(str(file), {k: v for k, v in data.items() if k not in RESERVED}, union, users)
    for book, params in data.get("notebooks", {}).items():
        if book not in defaults:
            raise AanntwinError(f"{file}: notebooks: no notebook '{book}'"
                                f"{_suggest(book, list(defaults), True)}")  # fmt: skip
        _check_keys(f"{file}: notebooks: {book}", params, defaults[book])
    for variant in data.get("variants", []):
        check_name(f"{file}: variants", str(variant["name"]))
        vwhere = f"{file}: variant {variant['name']}"
        _check_keys(vwhere, {k: v for k, v in variant.items() if k != "name"}, union, users)
