"""``SHA256SUMS`` files, read as ``sha256sum -c`` reads them.

Each line is either GNU form, ``DIGEST  NAME`` (two spaces, or a space and ``*`` for binary
mode; a leading backslash marks a name with ``\\\\`` and ``\\n`` escapes), or BSD form
(``sha256sum --tag``), ``SHA256 (NAME) = DIGEST``. Digests are 64 hex digits in either case.
Blank lines and ``#`` comments are skipped; any other line is an error naming the file and the
line number, as is a file that is not UTF-8 text or lists one name with two digests.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import DataError
from .io import read_text

NAME = "SHA256SUMS"

_GNU = re.compile(r"(\\?)([0-9A-Fa-f]{64}) [ *](.+)")
_BSD = re.compile(r"(\\?)SHA256 \((.+)\) = ([0-9A-Fa-f]{64})")


def _unescape(name: str) -> str:
    """A name as ``sha256sum`` escapes it (after a leading backslash): ``\\\\`` and ``\\n``."""
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), name)


def _entry(line: str) -> tuple[str, str] | None:
    """``(name, lowercase digest)`` of one line, or None when it is in neither form."""
    gnu, bsd = _GNU.fullmatch(line), _BSD.fullmatch(line)
    if gnu is not None:
        escaped, digest, name = gnu.groups()
    elif bsd is not None:
        escaped, name, digest = bsd.groups()
    else:
        return None
    name = _unescape(name) if escaped else name
    return name.removeprefix("./"), digest.lower()


def read_sums(path: Path) -> dict[str, str]:
    """File name -> lowercase SHA-256 hex digest, for every line of ``path``; ``DataError``
    naming the file (and the line) if it cannot be read or a line is in neither form."""
    sums: dict[str, str] = {}
    text = read_text(path, NAME, DataError)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        if not line.strip() or line.startswith("#"):
            continue
        entry = _entry(line)
        if entry is None:
            raise DataError(
                f"{path}, line {number}: not a SHA-256 checksum line (expected 'DIGEST  NAME' "
                f"or 'SHA256 (NAME) = DIGEST', 64 hex digits): {line[:80]!r}"
            )
        name, digest = entry
        if sums.setdefault(name, digest) != digest:
            raise DataError(f"{path}, line {number}: {name} is listed again with another digest")
    return sums


def check_sums(sums_file: Path, digests: dict[Path, str]) -> set[Path]:
    """Check each file's SHA-256 (``digests``: path -> hex digest) against ``sums_file``, when
    it exists: ``DataError`` for a file it lists with another digest (the file is corrupt); the
    files it lists (and so verified)."""
    if not sums_file.exists():
        return set()
    sums = read_sums(sums_file)
    for path, digest in digests.items():
        want = sums.get(path.name)
        if want is not None and want != digest.lower():
            raise DataError(f"{path}: SHA-256 does not match {sums_file}; the file is corrupt")
    return {path for path in digests if path.name in sums}
