"""Files in and out: strict reading of user files, safe writing of outputs.

Reading: every way a file can be wrong becomes one error naming the file: a missing file, a folder
given as a file, no permission, bytes that are not UTF-8 (UTF-16 is named as such; a UTF-8
byte-order mark is accepted), and for JSON: nesting deeper than :data:`MAX_JSON_DEPTH` (checked
before parsing, so no ``RecursionError``), duplicate keys, ``NaN``/``Infinity`` literals and
numbers beyond the float range.

Writing: :func:`atomic_path` writes a file beside its target and renames it over it, so a reader
never sees a half-written file and a kill -9 leaves either the old or the new one.
:func:`output_dir` does the same for a whole output folder: the work writes into a temporary
sibling (``.NAME.tmp-XXXX``) that is renamed into place only when it succeeds. Files and folders
follow the umask. An OS error while writing becomes one line naming the path: a fault such as a
full disk is a :class:`~aanntwin.errors.FaultError` (exit 1), anything else a user error (exit 2).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import AanntwinError, FaultError

# Errors of the machine, not of the user's input: exit status 1.
FAULT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG}


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def file_mode() -> int:
    """The mode a new file gets under the current umask (``open`` would give it)."""
    return 0o666 & ~_umask()


def write_error(exc: OSError, path: str | os.PathLike[str] | None = None) -> AanntwinError:
    """The one-line error of an OS error while writing ``path`` (default: the error's file)."""
    where = path if path is not None else (exc.filename or "output")
    reason = exc.strerror or str(exc)
    if exc.errno in FAULT_ERRNOS:
        what = "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "I/O error"
        return FaultError(f"{what} writing {where} ({reason})")
    return AanntwinError(f"cannot write {where} ({reason})")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    The file gets the umask's mode (``0o666 & ~umask``); an OS error raises :func:`write_error`.
    """
    target = Path(path)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, target)
    except OSError as exc:
        raise write_error(exc, target) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _below_file(path: Path) -> Path | None:
    """The first ancestor of ``path`` that exists and is not a folder, if any."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def check_output_path(
    path: str | os.PathLike[str] | None,
    flag: str = "--out",
    *,
    folder: bool = True,
    replaces: Sequence[str] = (),
    owns: Sequence[str] | None = None,
) -> Path:
    """Validate an output path before any work; return it as a Path.

    ``folder``: an output folder (an existing folder is accepted when it is empty, when
    ``replaces`` is empty (a folder written in place, such as a sweep's) or when it is an
    earlier output of the same command: it holds one of the files named in ``replaces`` and
    nothing but entries matching ``owns``, the ``fnmatch`` patterns of everything the command
    writes (default ``replaces``): a replaced folder never takes anything else with it).
    Otherwise an output file (an existing folder there is an error). Never the current folder
    by accident: ``''`` is an error.
    """
    text = "" if path is None else os.fspath(path)
    if not text.strip():
        raise AanntwinError(f"{flag}: empty path")
    target = Path(text)
    blocker = _below_file(target)
    if blocker is not None:
        raise AanntwinError(f"{flag} {text}: {blocker} is a file, not a folder")
    if folder and target.exists() and not target.is_dir():
        raise AanntwinError(f"{flag} {text}: a file exists there; give a folder path")
    if not folder and target.is_dir():
        raise AanntwinError(f"{flag} {text}: is a folder; give a file path")
    entries = sorted(p.name for p in target.iterdir()) if folder and target.is_dir() else []
    if replaces and entries:
        if not any(name in entries for name in replaces):
            raise AanntwinError(
                f"{flag} {text}: a folder that is not an earlier output of this command (no "
                f"{' or '.join(replaces)}); give a new or empty folder"
            )
        foreign = [e for e in entries if not owned(e, replaces if owns is None else owns)]
        if foreign:
            shown = ", ".join(foreign[:5]) + (
                f" and {len(foreign) - 5} more" if foreign[5:] else ""
            )
            raise AanntwinError(
                f"{flag} {text}: holds {shown} beside an earlier output of this command; the "
                "folder is replaced whole, so move them away or give a new or empty folder"
            )
    existing = next(p for p in (target, *target.parents) if p.exists() or p == Path(p.anchor))
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise AanntwinError(f"{flag} {text}: {existing} is not writable")
    return target


def owned(name: str, patterns: Sequence[str]) -> bool:
    """Whether the folder entry ``name`` matches one of ``patterns`` (``fnmatch``)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@contextlib.contextmanager
def output_dir(
    path: str | os.PathLike[str],
    flag: str = "--out",
    replaces: Sequence[str] = ("config.json",),
    owns: Sequence[str] | None = None,
) -> Iterator[Path]:
    """Yield a temporary sibling folder of ``path`` to write into; on success rename it to
    ``path`` (replacing an earlier output there: see :func:`check_output_path` for
    ``replaces`` and ``owns``), on any error remove it (and the parent folders it created):
    the output folder exists only when the work succeeded."""
    patterns = replaces if owns is None else owns
    target = Path(os.path.abspath(check_output_path(path, flag, replaces=replaces, owns=owns)))
    created = [p for p in reversed(target.parents) if not p.exists()]
    tmp: Path | None = None
    old: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        unowned = [p.name for p in tmp.iterdir() if not owned(p.name, patterns)]
        if unowned:  # a bug: the next run would refuse to replace this folder
            raise ValueError(f"{flag}: wrote {unowned}, not declared in owns={list(patterns)}")
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "x")
            try:
                os.replace(tmp, target)
            except OSError:
                os.replace(old / "x", target)  # the earlier output stays in place
                raise
        else:
            os.replace(tmp, target)
        tmp, created = None, []
    except AanntwinError as exc:  # from atomic_path: name the final path, not the temporary one
        if tmp is None or os.fspath(tmp) not in str(exc):
            raise
        raise type(exc)(str(exc).replace(os.fspath(tmp), os.fspath(target))) from exc
    except OSError as exc:
        where = os.fspath(exc.filename) if exc.filename else os.fspath(target)
        if tmp is not None:
            where = where.replace(os.fspath(tmp), os.fspath(target))
        raise write_error(exc, where) from exc
    finally:
        for folder in (tmp, old):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()


# ----------------------------------------------------------------- reading
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays/objects a JSON file may have."""

_ErrorType = type[Exception]


def read_bytes(path: str | os.PathLike[str], what: str, error: _ErrorType = AanntwinError) -> bytes:
    """The bytes of a file; a missing file, a folder, no permission etc. raise ``error`` (one
    line naming the file and what it should be)."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: cannot read: {what} file not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder; expected a {what} file") from None
    except NotADirectoryError:
        raise error(f"{path}: a part of this path is a file, not a folder") from None
    except PermissionError:
        raise error(f"{path}: permission denied reading the {what} file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} file ({exc.strerror or exc})") from None
    except MemoryError:
        raise error(f"{path}: the {what} file is too large to read into memory") from None


def decode_text(raw: bytes, path: str | os.PathLike[str], what: str,
                error: _ErrorType = AanntwinError) -> str:  # fmt: skip
    """UTF-8 text (a leading UTF-8 byte-order mark is dropped); anything else raises ``error``."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise error(f"{path}: the {what} file is UTF-16; save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}: the {what} file is not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
            f"{exc.start}); expected a UTF-8 text file"
        ) from None


def read_text(path: str | os.PathLike[str], what: str, error: _ErrorType = AanntwinError) -> str:
    """A UTF-8 text file (BOM-aware); every failure raises ``error`` naming the file."""
    return decode_text(read_bytes(path, what, error), path, what, error)


class _JsonProblem(Exception):
    pass


class _Constant(str):
    """A ``NaN``/``Infinity`` literal, held until the key it belongs to is known."""


def _bad_constant(where: str, value: _Constant) -> _JsonProblem:
    return _JsonProblem(
        f"{where} = {value}: must be finite (NaN and Infinity are not JSON numbers)"
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _JsonProblem(f"duplicate key {key!r}")
        if isinstance(value, _Constant):
            raise _bad_constant(key, value)
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, _Constant):
                    raise _bad_constant(f"{key}[{i}]", item)
        out[key] = value
    return out


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JsonProblem(f"number {text[:40]} is beyond the float range")
    return value


def _find_constant(data: Any) -> _Constant | None:
    """A constant the object hook did not see (in nested lists), found iteratively."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, _Constant):
            return item
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return None


# A string (its closing quote optional, so an unterminated one is consumed at once: linear
# time on any input) or a bracket.
_TOKENS = re.compile(r'"(?:[^"\\]+|\\.)*"?|[\[\]{}]', re.DOTALL)


def json_depth(text: str) -> int:
    """Deepest array/object nesting of JSON ``text`` (strings skipped), without recursion."""
    depth = deepest = 0
    for m in _TOKENS.finditer(text):
        first = text[m.start()]
        if first in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif first in "]}":
            depth -= 1
    return deepest


def parse_json(text: str, path: str | os.PathLike[str], error: _ErrorType = AanntwinError) -> Any:
    """Strict JSON: nesting at most :data:`MAX_JSON_DEPTH`, no duplicate keys, no NaN/Infinity,
    finite numbers only; every problem raises ``error`` naming ``path``."""
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise error(f"{path}: JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} allowed")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_finite_float,
                          parse_constant=_Constant)  # fmt: skip
        constant = _find_constant(data)
        if constant is not None:
            raise _bad_constant("a value", constant)
        return data
    except _JsonProblem as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError; an integer too long
        raise error(f"{path}: not valid JSON ({exc})") from None


def read_json_file(path: str | os.PathLike[str], what: str,
                   error: _ErrorType = AanntwinError) -> Any:  # fmt: skip
    """A strict JSON file (UTF-8, see :func:`parse_json`); errors name the file."""
    return parse_json(read_text(path, what, error), path, error)
