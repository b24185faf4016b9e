"""The workbook's HTML pages: a run's index and the comparison of variants.

Plain HTML with one inline style (no scripts, nothing fetched): they open from a file share or
an e-mail attachment as they are.
"""

from __future__ import annotations

import html
import json
from typing import Any

from .records import WorkbookRun


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;
text-align:left}th{background:#f3f3f3}.ok{color:#1a7f37}.failed{color:#cf222e;font-weight:bold}
</style>"""


def _headline_cells(value: Any) -> str:
    if isinstance(value, dict) and "value" in value:
        v = value["value"]
        shown = f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))
        return f"{shown} {html.escape(str(value.get('unit', '')))}".strip()
    return html.escape(json.dumps(value))


def render_index(run: WorkbookRun) -> str:
    """The run's index page: notebooks, status, timings, parameters, versions, headlines."""
    esc = html.escape
    rows = []
    for nb in run.notebooks:
        links = " ".join(
            f'<a href="{esc(href)}">{label}</a>'
            for href, label in ((nb.report, "report"), (nb.report_pdf, "PDF"),
                                (nb.report_with_code, "with code"), (nb.executed, "notebook"))
            if href
        )  # fmt: skip
        if nb.pdf_note:
            links += f"<br><small>{esc(nb.pdf_note)}</small>"
        status = f'<span class="{esc(nb.status)}">{esc(nb.status)}</span>'
        if nb.error:
            status += f"<br><code>{esc(nb.error)}</code>"
        rows.append([esc(nb.name), status, f"{nb.seconds:.1f} s", links])
    params = [[esc(k), f"<code>{esc(json.dumps(v))}</code>"] for k, v in run.parameters.items()]
    versions = [[esc(k), esc(str(v))] for k, v in run.versions.items()]
    heads = [[esc(k), _headline_cells(v)] for k, v in run.headlines.items()]
    title = f"aanntwin workbook: {esc(run.name)}"
    seed = esc(str(run.parameters.get("seed", "")))
    chip = esc(str(run.parameters.get("chip_seed", "")))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>{_STYLE}"
        f"</head><body><h1>{title}</h1><p>seed {seed}, chip instance {chip}, "
        f"{run.seconds:.1f} s in all, {_state(run)}</p>"
        f"<h2>Notebooks</h2>{_table(rows, ['notebook', 'status', 'time', 'files'])}"
        f"<h2>Headline figures</h2>{_table(heads, ['figure', 'value'])}"
        f"<h2>Parameters</h2>{_table(params, ['parameter', 'value'])}"
        f"<h2>Versions</h2>{_table(versions, ['package', 'version'])}</body></html>"
    )


def _state(run: WorkbookRun) -> str:
    if not run.finished:
        return "NOT FINISHED (running, or killed: the next run repairs it)"
    return "all notebooks ran" if run.ok else "FAILED"


def render_comparison(runs: list[WorkbookRun]) -> str:
    """The top-level page: every variant's headline figures side by side."""
    esc = html.escape
    names = sorted({k for r in runs for k in r.headlines})
    header = ["figure", *(r.name for r in runs)]
    rows = [[esc(n), *(_headline_cells(r.headlines[n]) if n in r.headlines else "" for r in runs)]
            for n in names]  # fmt: skip
    status = [
        ["status", *("ok" if r.ok else _state(r).split(" (")[0] for r in runs)],
        ["report", *(f'<a href="{esc(r.name)}/index.html">index</a>' for r in runs)],
    ]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>aanntwin variants</title>"
        f"{_STYLE}</head><body><h1>aanntwin workbook variants</h1>"
        f"{_table(status + rows, header)}</body></html>"
    )
