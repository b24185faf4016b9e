"""Reading the characterization CSV: the file's text, its ``# key: value`` header and its table,
with line numbers counted from the file's first line (1-based) for every error.

What the rows mean is checked by :func:`aanntwin.characterization.curves.validate`.
"""

from __future__ import annotations

import csv
import os
import re

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import decode_text, read_bytes

FORMAT = "aanntwin-characterization/1"
WHAT = "characterization CSV"


def header(lines: list[str], path: str) -> tuple[dict[str, str], dict[str, int], int]:
    """The ``# key: value`` lines: (values, their 1-based file lines, index of the column line)."""
    meta: dict[str, str] = {}
    where: dict[str, int] = {}
    n = 0
    for n, line in enumerate(lines):  # noqa: B007 - n is used after the loop
        text = line.strip()
        if not text:
            continue
        if not text.startswith("#"):
            break
        m = re.match(r"#\s*([\w.]+)\s*:\s*(.*)$", text)
        if m:
            key = m.group(1).lower()
            if key in meta:
                raise DataError(
                    f"{path}, line {n + 1}, field {key!r}: given twice (also line {where[key]})"
                )
            meta[key], where[key] = m.group(2).strip(), n + 1
    else:
        if not any(line.strip() for line in lines):
            raise DataError(f"{path}: the {WHAT} file is empty")
        raise DataError(f"{path}: no table after the header ({len(lines)} line(s), all comments)")
    fmt = meta.get("format")
    if fmt is not None and not fmt.startswith(FORMAT):
        raise DataError(f"{path}, line {where['format']}: format {fmt!r} is not {FORMAT!r}")
    return meta, where, n


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """The file's lines as UTF-8 text (a BOM dropped; ``\\n``, ``\\r\\n`` or ``\\r`` ends a line);
    UTF-16, other encodings and binary files are one-line errors naming the file."""
    raw = read_bytes(path, WHAT, DataError)
    if raw[:2] not in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with a BOM: decode_text says so
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise DataError(
                f"{path}, line {line}: the {WHAT} file is not UTF-8 text (byte "
                f"{raw[exc.start]:#04x} at offset {exc.start}; Latin-1 or another encoding?); "
                "save it as UTF-8"
            ) from None
    text = decode_text(raw, path, WHAT, DataError)
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DataError(
            f"{path}: the {WHAT} file is binary or UTF-16 without a byte-order mark (a NUL byte "
            f"at offset {nul}); expected UTF-8 text"
        )
    return re.split(r"\r\n|\r|\n", text)


def table(lines: list[str], start: int, path: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The CSV table from ``lines[start]`` (the column names) on, as strings, and the 1-based
    file line of each row; a row with another field count is an error naming line and column
    (a ``#`` comment line there: an error saying comments belong in the header)."""
    reader = csv.reader(lines[start:])
    try:
        names = [c.strip() for c in next(reader)]
        rows, numbers = [], []
        for row in reader:
            line = start + reader.line_num
            if not any(c.strip() for c in row):
                continue  # blank line
            if row[0].lstrip().startswith("#") and len(row) != len(names):
                raise DataError(
                    f"{path}, line {line}: a '#' comment inside the table; comments belong in the "
                    f"header, above the column names on line {start + 1}"
                )
            if len(row) != len(names):
                short = len(row) < len(names)
                col = repr(names[len(row)]) if short else f"{len(names) + 1} (after the last)"
                raise DataError(
                    f"{path}, line {line}, column {col}: {len(row)} field(s), "
                    f"{'fewer' if short else 'more'} than the {len(names)} column names on line "
                    f"{start + 1} ({', '.join(names)})"
                )
            rows.append(row)
            numbers.append(line)
    except csv.Error as exc:
        raise DataError(f"{path}, line {start + reader.line_num}: not CSV ({exc})") from None
    for k, name in enumerate(names):
        if not name and any(r[k].strip() for r in rows):
            i = next(i for i, r in enumerate(rows) if r[k].strip())
            raise DataError(
                f"{path}, line {numbers[i]}, column #{k + 1}: a value under a column with no name "
                f"(line {start + 1})"
            )
        if name and names.count(name) > 1:
            raise DataError(f"{path}, line {start + 1}, column {name!r}: named twice")
    keep = [k for k, name in enumerate(names) if name]
    if not rows:
        raise DataError(
            f"{path}, line {start + 1}: the table has no data rows (only the column names "
            f"{', '.join(names[k] for k in keep)})"
        )
    frame = pd.DataFrame([[r[k] for k in keep] for r in rows], columns=[names[k] for k in keep])
    return frame, np.array(numbers)
