"""The workbook's skip key: a hash of the contents of every input of a run.

Parameters, per-notebook overrides, the parameters files, the contents of every file or folder
the parameters name (:data:`~aanntwin.report.params.PATH_PARAMETERS`: the nonidealities JSON or
the reference one it defaults to, the characterized file to sign off, characterization CSVs,
every file under a ``characterization`` folder or ``data_dir``, the ``compare_with`` CSVs, a
``.npz`` dataset), the notebooks and the package itself (every file of ``aanntwin/``: source and
package data), so that editing any of them reruns the workbook; package versions except the git
commit.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..schema import stable_hash
from .params import PATH_PARAMETERS, named_paths

PACKAGE = Path(__file__).resolve().parents[1]


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes; ``missing`` when it cannot be read (a changed input)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "missing"


def package_digest(root: Path | None = None) -> str:
    """SHA-256 over every file of the package (paths and contents), caches excluded."""
    root = root or PACKAGE
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".pyo"):
            h.update(f.relative_to(root).as_posix().encode() + b"\0")
            h.update(file_digest(f).encode() + b"\0")
    return h.hexdigest()


def folder_digest(folder: Path) -> str:
    """SHA-256 over every file under ``folder`` (relative paths and contents)."""
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(folder).as_posix().encode() + b"\0")
            h.update(file_digest(f).encode() + b"\0")
    return h.hexdigest()


def path_digest(path: str | Path) -> str:
    """The content key of a named file or folder (a folder: every file under it); ``missing``
    when absent."""
    p = Path(path).expanduser()
    return folder_digest(p) if p.is_dir() else file_digest(p)


def _named_inputs(parameters: dict[str, Any], default_nonidealities: Path) -> dict[str, Any]:
    nl = parameters.get("nonidealities")
    out: dict[str, Any] = (
        {"nonidealities": file_digest(default_nonidealities)} if nl is None else {}
    )
    for key in (*PATH_PARAMETERS, "dataset"):
        paths = named_paths(key, parameters.get(key))
        if paths:
            out[key] = [path_digest(p) for p in paths]
    return out


def fingerprint(parameters: dict[str, Any], overrides: dict[str, dict[str, Any]],
                notebooks: list[Path], parameter_files: list[str | Path],
                versions: dict[str, Any]) -> str:  # fmt: skip
    """The skip key of a workbook run (see the module docstring)."""
    default_nl = PACKAGE / "reference_nonidealities.json"
    named = {book: _named_inputs({**parameters, **o}, default_nl) for book, o in overrides.items()}
    return stable_hash(
        {
            "parameters": parameters,
            "overrides": overrides,
            "parameter_files": [file_digest(f) for f in parameter_files],
            "inputs": _named_inputs(parameters, default_nl),
            "inputs_per_notebook": named,
            "notebooks": {p.name: file_digest(p) for p in notebooks},
            "package": package_digest(),
            "versions": {k: v for k, v in versions.items() if k != "git_commit"},
        }
    )
