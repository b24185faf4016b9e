"""Reports as PDF: headless Chromium prints each HTML report, offline, one file per report.

Chromium's own ``--print-to-pdf`` (no extra Python package). It prints a copy of the report with
print rules added: A4 pages, wide outputs (tables, long lines) shrunk to the page width instead of
cut off at a scroll bar, figures and table rows kept whole on one page. Name lookups are blocked:
the lab template's MathJax and require.js come from a CDN, which is unreachable offline, so the
PDF never waits on the network (and does not depend on it where there is one). A missing browser
or a failed print is never a notebook failure: the run records why there is no PDF.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import AanntwinError
from ..io import atomic_path

BROWSER_ENV = "AANNTWIN_CHROMIUM"
"""Environment variable naming the browser program (a name on PATH or a path)."""
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""Programs searched on PATH, in this order, when :data:`BROWSER_ENV` is not set."""
INSTALL_HINT = "install chromium (apt-get install chromium)"
TIMEOUT_S = 60.0
"""Longest one report may take to print (s); measured ~1 s per report."""

PAGE = "A4"
MARGIN_MM = 12.0
CONTENT_PX = round((210.0 - 2 * MARGIN_MM) / 25.4 * 96)
"""Width of the printed area in CSS px: the window is this wide, so the page lays out on screen
as it will on paper and the fitting script measures what the page will hold."""

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--no-pdf-header-footer", "--host-resolver-rules=MAP * ~NOTFOUND",
)  # fmt: skip

PRINT_STYLE = f"""<style>
@page {{ size: {PAGE}; margin: {MARGIN_MM}mm; }}
@media print {{
  body {{ margin: 0 !important; padding: 0 !important; }}
  .jp-OutputArea-output, .jp-RenderedHTMLCommon, .jp-RenderedText {{ overflow: visible !important; }}
  img, svg, figure, tr, .jp-RenderedImage {{ break-inside: avoid; }}
  thead {{ display: table-header-group; }}
  pre {{ white-space: pre-wrap !important; overflow-wrap: anywhere; }}
  * {{ -webkit-print-color-adjust: exact; print-color-adjust: exact; }}
}}
body {{ margin: 0 !important; padding: 0 !important; }}
</style>"""
"""Print rules added to the copy that is printed (the HTML report itself is unchanged)."""

FIT_SCRIPT = """<script>
(function () {
  // Shrink every output wider than the page to the page width (CSS zoom; not below 30 %).
  var boxes = document.querySelectorAll(".jp-OutputArea-output, .jp-MarkdownOutput, pre");
  for (var i = 0; i < boxes.length; i++) {
    var el = boxes[i], wide = el.scrollWidth, room = el.clientWidth;
    if (room > 0 && wide > room + 1) el.style.zoom = Math.max(0.3, room / wide).toFixed(3);
  }
})();
</script>"""
"""Run at the end of the printed copy's body, before Chromium prints it."""


class PdfError(AanntwinError):
    """A report could not be printed (browser crash, timeout, no output)."""


def find_browser(env: dict[str, str] | None = None) -> tuple[str | None, str]:
    """``(program path, "")``, or ``(None, why there is none)`` (a one-line reason)."""
    env = dict(os.environ) if env is None else env
    named = env.get(BROWSER_ENV, "").strip()
    if named:
        found = shutil.which(named)
        if found is None:
            return None, f"{BROWSER_ENV}={named} is not an executable program; {INSTALL_HINT}"
        return found, ""
    for name in BROWSERS:
        found = shutil.which(name)
        if found is not None:
            return found, ""
    return None, f"no Chromium found ({', '.join(BROWSERS)}); {INSTALL_HINT}"


def print_copy(html: str, folder: Path) -> str:
    """``html`` with the print rules and the fitting script added; relative links resolve
    against ``folder`` (the report's own folder)."""
    base = f'<base href="{folder.resolve().as_uri()}/">'
    head = html.find("<head>")
    html = html[: head + 6] + base + html[head + 6 :] if head >= 0 else base + html
    end = html.rfind("</head>")
    html = html[:end] + PRINT_STYLE + html[end:] if end >= 0 else PRINT_STYLE + html
    end = html.rfind("</body>")
    return html[:end] + FIT_SCRIPT + html[end:] if end >= 0 else html + FIT_SCRIPT


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "dbus" not in ln]
    return lines[-1][:200] if lines else "no message"


def html_to_pdf(
    html_path: str | os.PathLike[str],
    pdf_path: str | os.PathLike[str],
    *,
    browser: str | None = None,
    timeout: float = TIMEOUT_S,
) -> float:
    """Print the HTML file ``html_path`` to ``pdf_path`` (written atomically); return seconds.

    ``browser``: the program (default: :func:`find_browser`). Raises :class:`PdfError` naming
    the report when there is no browser, it fails, or it takes longer than ``timeout`` s.
    """
    source = Path(html_path)
    if browser is None:
        browser, why = find_browser()
        if browser is None:
            raise PdfError(f"{source}: no PDF: {why}")
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PdfError(f"{source}: cannot read the HTML report ({exc})") from None
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aanntwin-pdf-") as work:
        page = Path(work) / "report.html"
        page.write_text(print_copy(text, source.parent), encoding="utf-8")
        with atomic_path(pdf_path) as tmp:
            cmd = [browser, *FLAGS, f"--user-data-dir={work}/profile",
                   f"--window-size={CONTENT_PX},1200", f"--print-to-pdf={tmp}",
                   page.as_uri()]  # fmt: skip
            _run(cmd, source, timeout)
            with open(tmp, "rb") as fh:
                if fh.read(5) != b"%PDF-":
                    raise PdfError(f"{source}: the browser wrote no PDF ({Path(browser).name})")
    return time.perf_counter() - t0


def _run(cmd: list[str], source: Path, timeout: float) -> None:
    """Run the browser in its own process group: a timeout ends all its processes."""
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    except OSError as exc:
        raise PdfError(f"{source}: cannot start {cmd[0]} ({exc.strerror or exc})") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise PdfError(f"{source}: the browser took longer than {timeout:g} s; no PDF") from None
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C): leave no browser behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        message = _last_line((err or b"").decode(errors="replace") or out.decode(errors="replace"))
        raise PdfError(f"{source}: the browser failed (exit {proc.returncode}): {message}")


class ReportPdfs:
    """The PDF step of one workbook run: one browser, and the reason for no PDF said once."""

    def __init__(self, enabled: bool, log: Any, label: str, timeout: float = TIMEOUT_S) -> None:
        self.label, self.log, self.timeout = label, log, timeout
        if enabled:
            self.browser, self.reason = find_browser()
        else:
            self.browser, self.reason = None, "switched off (--no-pdf)"
        self._told = not enabled  # switched off on purpose: nothing to say
        self.seconds: list[float] = []

    def make(self, html_path: Path) -> tuple[str | None, str | None]:
        """``(PDF file name, None)`` beside ``html_path``, or ``(None, why there is none)``."""
        if self.browser is None:
            if not self._told:
                print(f"{self.label}: no PDF reports: {self.reason}", file=self.log, flush=True)
                self._told = True
            return None, f"no PDF: {self.reason}"
        pdf = html_path.with_suffix(".pdf")
        try:
            self.seconds.append(html_to_pdf(html_path, pdf, browser=self.browser,
                                            timeout=self.timeout))  # fmt: skip
        except PdfError as exc:
            print(f"{self.label}: {exc}", file=self.log, flush=True)
            return None, f"PDF failed: {str(exc).removeprefix(f'{html_path}: ')}"
        return pdf.name, None
