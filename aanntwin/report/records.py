"""What a workbook run records (``run.json``): per notebook and per variant.

Plain dataclasses shared by the runner (:mod:`~aanntwin.report.workbook`) and the pages it
renders (:mod:`~aanntwin.report.pages`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class NotebookRun:
    name: str
    status: str = "not run"
    """ok, failed, or not run (after a failure)."""
    seconds: float = 0.0
    report: str | None = None
    report_with_code: str | None = None
    report_pdf: str | None = None
    pdf_note: str | None = None
    """Why there is no PDF (no browser, switched off, print failed); None when there is one."""
    executed: str | None = None
    error: str | None = None


@dataclass
class WorkbookRun:
    name: str
    folder: str
    parameters: dict[str, Any]
    fingerprint: str
    notebooks: list[NotebookRun] = field(default_factory=list)
    versions: dict[str, Any] = field(default_factory=dict)
    headlines: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: bool = False
    """True when an identical earlier run was reused."""
    finished: bool = False
    """True once every notebook ran or one failed; False in the record of a killed run."""
    quick_notebooks: list[str] | None = None
    """Notebooks run with ``quick`` on (None in older records: taken from the parameters)."""
    demo_datasets: list[str] | None = None
    """Demo datasets the notebooks used (:data:`~aanntwin.report.banners.DEMO_DATASETS`)."""

    @property
    def ok(self) -> bool:
        return self.finished and all(nb.status == "ok" for nb in self.notebooks)
