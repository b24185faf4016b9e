"""Reports as PDF: headless Chromium prints them (checked by rendering the pages with pdfium),
the workbook puts a PDF beside every report and links it, and a missing or failing browser
leaves the run ok with the reason in the index."""

import base64
import io
import json
import os
import stat

import pytest

from aanntwin.cli import main
from aanntwin.report.pdf import BROWSER_ENV, PdfError, find_browser, html_to_pdf, print_copy
from aanntwin.report.workbook import run_workbook
from tests.conftest import in_ci
from tests.test_workbook import PLOT, _notebook

BROWSER, WHY = find_browser()


def _need_browser() -> str:
    """The browser, or skip (fail under CI, which installs Chromium)."""
    if BROWSER is None:
        message = f"no PDF browser: {WHY}"
        if in_ci(os.environ):
            pytest.fail(message + ": CI must run the PDF tests", pytrace=False)
        pytest.skip(message)
    return BROWSER


def _pages(path):
    """``[(width pt, height pt, grey pixels as an array, text)]`` of every page of a PDF."""
    import numpy as np
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(path))
    out = []
    for page in doc:
        grey = np.asarray(page.render(scale=1).to_pil().convert("L"), dtype=float)
        out.append((*page.get_size(), grey, page.get_textpage().get_text_range()))
    return doc, out


def _png() -> str:
    """A 60x40 PNG (a dark block on white) as a data URI."""
    from PIL import Image

    img = Image.new("RGB", (60, 40), "white")
    img.paste((20, 20, 120), (10, 10, 50, 30))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


WIDE = "".join(f"<td>cell{i:02d}wide</td>" for i in range(39)) + "<td>LASTCOLUMN</td>"
PAGE = f"""<!doctype html><html><head><meta charset="utf-8"><title>t</title></head><body>
<h1>PDF-MARKER report</h1><img src="{_png()}" width="300">
<table><tr><th>a</th><th>b</th></tr><tr><td>1.5</td><td>2.5</td></tr></table>
<div class="jp-OutputArea-output"><table><tr>{WIDE}</tr></table></div></body></html>"""


def _script(folder, body: str) -> str:
    path = folder / "fake-browser"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_find_browser_reasons(tmp_path, monkeypatch):
    found, why = find_browser({BROWSER_ENV: str(tmp_path / "nope")})
    assert found is None and f"{BROWSER_ENV}={tmp_path / 'nope'}" in why
    assert "apt-get install chromium" in why
    monkeypatch.setenv("PATH", str(tmp_path))  # shutil.which reads PATH from the environment
    found, why = find_browser({})
    assert found is None and why.startswith("no Chromium found (chromium, ")
    fake = _script(tmp_path, "exit 0")
    assert find_browser({BROWSER_ENV: fake}) == (fake, "")


def test_print_copy_adds_print_rules_and_base(tmp_path):
    copy = print_copy("<html><head><title>x</title></head><body><p>hi</p></body></html>",
                      tmp_path)  # fmt: skip
    assert copy.index("<base href=") < copy.index("<title>")  # before any relative link
    assert f'href="{tmp_path.resolve().as_uri()}/"' in copy
    assert "@page" in copy and copy.index("@page") < copy.index("</head>")
    assert copy.index("style.zoom") < copy.index("</body>")


def test_html_to_pdf_pages_are_drawn_and_wide_tables_fit(tmp_path):
    browser = _need_browser()
    html = tmp_path / "r.html"
    html.write_text(PAGE)
    pdf = tmp_path / "r.pdf"
    seconds = html_to_pdf(html, pdf, browser=browser)
    assert 0 < seconds < 60
    doc, pages = _pages(pdf)
    assert len(pages) >= 1
    width, height, grey, text = pages[0]
    assert (round(width), round(height)) == (595, 842)  # A4 in points
    assert grey.std() > 5 and (grey < 100).mean() > 0.001  # ink: not a blank page
    assert "PDF-MARKER" in text and "2.5" in text
    textpage = doc[0].get_textpage()
    found = textpage.search("LASTCOLUMN").get_next()
    assert found is not None, "the wide table's last column is missing"
    left, _, right, _ = textpage.get_charbox(found[0] + found[1] - 1)
    assert left > 0 and right <= width  # shrunk onto the page, not cut off
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.pdf"]  # no temp files


@pytest.mark.parametrize(
    ("body", "timeout", "needle"),
    [("sleep 30", 1.0, "took longer than 1 s"), ("echo crashed >&2; exit 3", 30.0, "exit 3")],
)
def test_a_failing_browser_raises_and_leaves_no_file(tmp_path, body, timeout, needle):
    html = tmp_path / "r.html"
    html.write_text(PAGE)
    with pytest.raises(PdfError, match=needle):
        html_to_pdf(html, tmp_path / "r.pdf", browser=_script(tmp_path, body), timeout=timeout)
    assert not (tmp_path / "r.pdf").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.fixture
def books(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(folder / "01_plot.ipynb", PLOT)
    _notebook(folder / "02_table.ipynb", "import pandas as pd\npd.DataFrame({'a': [1, 2]})")
    return folder


def test_every_report_has_a_linked_pdf(books, tmp_path):
    _need_browser()
    log = io.StringIO()
    run = run_workbook({"scale": 2.0}, "demo", tmp_path / "r", notebooks_dir=books, log=log)
    folder = tmp_path / "r" / "demo"
    assert run.ok
    reports = sorted(p for p in folder.glob("[0-9][0-9]_*.html") if ".code" not in p.suffixes)
    assert [p.name for p in reports] == ["01_plot.html", "02_table.html"]
    index = (folder / "index.html").read_text()
    for report in reports:
        pdf = report.with_suffix(".pdf")
        _, pages = _pages(pdf)
        assert len(pages) >= 1 and pages[0][2].std() > 5
        assert f'<a href="{pdf.name}">PDF</a>' in index
    assert "done" in _pages(folder / "01_plot.pdf")[1][0][3]
    record = json.loads((folder / "run.json").read_text())
    assert [nb["report_pdf"] for nb in record["notebooks"]] == ["01_plot.pdf", "02_table.pdf"]
    assert "no PDF" not in log.getvalue()


@pytest.mark.parametrize(
    ("browser", "note"),
    [
        ("missing", "no PDF: AANNTWIN_CHROMIUM="),
        ("exit 4", "PDF failed: the browser failed (exit 4)"),
    ],
)
def test_no_or_failing_browser_keeps_the_run_ok(books, tmp_path, monkeypatch, browser, note):
    program = str(tmp_path / "none") if browser == "missing" else _script(tmp_path, browser)
    monkeypatch.setenv(BROWSER_ENV, program)
    log = io.StringIO()
    run = run_workbook({}, "x", tmp_path / "r", notebooks_dir=books, log=log)
    folder = tmp_path / "r" / "x"
    assert run.ok and not list(folder.glob("*.pdf"))
    index = (folder / "index.html").read_text()
    assert index.count(note) == 2 and 'href="01_plot.html"' in index
    if browser == "missing":
        assert "install chromium (apt-get install chromium)" in index
        assert log.getvalue().count("no PDF reports") == 1  # said once per run
    assert [nb.pdf_note is not None for nb in run.notebooks] == [True, True]


def test_no_pdf_flag(books, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(BROWSER_ENV, _script(tmp_path, "exit 5"))  # would fail if it ran
    argv = ["workbook", "--notebooks", str(books), "--out", str(tmp_path), "--name", "n",
            "--only", "02_table", "--no-pdf"]  # fmt: skip
    assert main(argv) == 0
    assert not list((tmp_path / "n").glob("*.pdf"))
    index = (tmp_path / "n" / "index.html").read_text()
    assert "no PDF: switched off (--no-pdf)" in index and "PDF failed" not in index
    assert "PDF" not in capsys.readouterr().err  # switched off on purpose: nothing said


def test_a_plain_rerun_after_no_pdf_adds_the_pdfs_without_rerunning(books, tmp_path):
    _need_browser()
    first = run_workbook({}, "x", tmp_path, notebooks_dir=books, pdf=False, log=io.StringIO())
    assert first.ok and not list((tmp_path / "x").glob("*.pdf"))
    again = run_workbook({}, "x", tmp_path, notebooks_dir=books, log=io.StringIO())
    assert again.skipped and all(nb.report_pdf for nb in again.notebooks)
    for nb in again.notebooks:
        assert (tmp_path / "x" / nb.report_pdf).is_file()
    record = json.loads((tmp_path / "x" / "run.json").read_text())
    assert all(nb["report_pdf"] for nb in record["notebooks"])
    assert 'href="01_plot.pdf"' in (tmp_path / "x" / "index.html").read_text()
