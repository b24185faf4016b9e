"""The CLI's last-resort net: an expected failure that escaped as a Python exception becomes one
line (``aanntwin CMD: error: ...``) and an exit status, never a traceback.

Status 2: the input (a file that is not UTF-8 or not a file, a path that does not exist, no
permission, nesting too deep); status 1: a fault of the machine (disk full, I/O error, out of
memory). ``--debug`` or ``AANNTWIN_DEBUG=1`` re-raises instead, to show the traceback. The
readers convert most of these at the source, where the file name is known
(:mod:`aanntwin.io`); this net catches the rest.
"""

from __future__ import annotations

import gzip
import os
import sys
import zlib

from ..io import FAULT_ERRNOS  # disk full, I/O error: faults of the machine

DEBUG_ENV = "AANNTWIN_DEBUG"
USER = 2
FAULT = 1


def debug_requested(flag: bool) -> bool:
    """``--debug`` given, or ``AANNTWIN_DEBUG`` set to something other than empty/0."""
    return flag or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _where(exc: OSError) -> str:
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return " -> ".join(names) if names else "a file"


def classify(exc: BaseException) -> tuple[int, str] | None:
    """``(exit status, message)`` for an expected failure; ``None`` for a bug (let it raise)."""
    torch = sys.modules.get("torch")  # not imported: the error cannot be torch's
    if torch is not None and isinstance(exc, torch.OutOfMemoryError):
        return FAULT, f"out of device memory ({str(exc).splitlines()[0]}); use smaller sizes"
    if isinstance(exc, MemoryError):
        return FAULT, "out of memory; use smaller sizes (fewer runs, instances or images)"
    if isinstance(exc, RecursionError):
        return USER, "input nested too deeply to process (recursion limit reached)"
    if isinstance(exc, UnicodeError):
        return USER, f"a file is not UTF-8 text ({exc})"
    if isinstance(exc, (zlib.error, EOFError, gzip.BadGzipFile)):
        return USER, f"a compressed data file is corrupt or truncated ({exc})"
    if isinstance(exc, OSError):
        where = _where(exc)
        text = exc.strerror or str(exc)
        if exc.errno in FAULT_ERRNOS:
            return (
                FAULT,
                f"{where}: {text} (a fault of the machine; free space or fix it and rerun)",
            )
        kinds = {
            IsADirectoryError: "is a folder; expected a file",
            NotADirectoryError: "a part of this path is a file, not a folder",
            PermissionError: "permission denied",
            FileExistsError: "already exists; remove it or choose another path",
            FileNotFoundError: "no such file or folder",
        }
        for kind, what in kinds.items():
            if isinstance(exc, kind):
                return USER, f"{where}: {what}"
        return USER, f"{where}: {text}"
    return None
