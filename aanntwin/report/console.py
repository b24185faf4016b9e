"""The workbook's console while notebooks run: where each notebook is, and nothing else.

Progress is reported per **section** (the nearest markdown heading above the running code cell):
one line once a section has run 2 s (quick sections pass silently), then a line every
:data:`TICK_S` seconds while it lasts, so a 7-minute notebook says where it is without flooding a
CI log::

    workbook digits: [5/6] 04_specs: "Spec derivation" (cell 9/16, 1 min 12 s)

It hooks papermill's per-cell callback through an engine (:data:`ENGINE`), registered when this
module is imported; the notebooks are not changed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

TICK_S = 30.0
"""Seconds between "still running" lines of one long cell."""
ENGINE = "aanntwin-progress"
"""The papermill engine name that reports sections (:class:`SectionProgress`)."""


def duration(seconds: float) -> str:
    """``"42 s"``, ``"1 min 12 s"``, ``"1 h 03 min"``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def section_of(cells: list[Any], index: int) -> str | None:
    """The text of the nearest markdown heading at or above cell ``index``."""
    for cell in reversed(cells[: index + 1]):
        if cell.get("cell_type") != "markdown":
            continue
        for line in str(cell.get("source", "")).splitlines():
            if line.lstrip().startswith("#"):
                return line.lstrip().lstrip("#").strip() or None
    return None


class SectionProgress:
    """Prints the section a notebook is in (see the module docstring) to ``log``: a section is
    announced once it has run ``announce`` seconds (quick ones pass silently), then every
    ``tick`` seconds while it lasts."""

    def __init__(self, label: str, log: Any, tick: float = TICK_S, announce: float = 2.0) -> None:
        self.label, self.log, self.tick, self.announce = label, log, tick, announce
        self._section: str | None = None
        self._t0 = self._since = self._last = time.monotonic()
        self._pending = False
        self._where = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _say(self, text: str) -> None:
        print(f"{self.label}: {text}", file=self.log, flush=True)

    def cell_start(self, cells: list[Any], index: int) -> None:
        """Papermill is about to run cell ``index`` (a new section starts its clock)."""
        if cells[index].get("cell_type") != "code":
            return
        code = [i for i, c in enumerate(cells) if c.get("cell_type") == "code"]
        position = code.index(index) + 1 if index in code else 0
        section = section_of(cells, index)
        with self._lock:
            self._where = f"cell {position}/{len(code)}"
            if section is not None and section != self._section:
                self._section, self._since, self._pending = section, time.monotonic(), True

    def poll(self, now: float | None = None) -> None:
        """Say what is due at ``now``: a section running ``announce`` s, or ``tick`` s more."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._section is None:
                return
            elapsed = duration(now - self._t0)
            if self._pending and now - self._since >= self.announce:
                self._pending, self._last = False, now
                self._say(f'"{self._section}" ({self._where}, {elapsed})')
            elif not self._pending and now - self._last >= self.tick:
                self._last = now
                self._say(f'still in "{self._section}" ({self._where}, {elapsed})')

    def _ticker(self) -> None:
        while not self._stop.wait(0.5):
            self.poll()

    def __enter__(self) -> SectionProgress:
        self._t0 = self._since = self._last = time.monotonic()
        self._thread = threading.Thread(target=self._ticker, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


class _KnownParameters(logging.Filter):
    def __init__(self, names: Iterable[str]) -> None:
        super().__init__()
        self.lines = {f"Passed unknown parameter: {n}" for n in names}

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.lines


@contextlib.contextmanager
def known_parameters(names: Iterable[str]) -> Iterator[None]:
    """Silence papermill's "Passed unknown parameter: NAME" for ``names``: parameters the
    notebooks read from their namespace (single nonideality fields), validated before the run,
    though not in the parameters cell. Any other unknown parameter is still reported."""
    log, quiet = logging.getLogger("papermill"), _KnownParameters(names)
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)


def _register() -> None:
    from papermill.engines import NBClientEngine, papermill_engines  # the notebooks extra

    class ProgressEngine(NBClientEngine):
        """papermill's nbclient engine, telling :class:`SectionProgress` each cell start."""

        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            progress = kwargs.pop("section_progress", None)
            if progress is not None:
                start = nb_man.cell_start

                def cell_start(cell: Any, cell_index: int = 0, **kw: Any) -> Any:
                    progress.cell_start(nb_man.nb.cells, cell_index)
                    return start(cell, cell_index, **kw)

                nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(ENGINE, ProgressEngine)


_register()
