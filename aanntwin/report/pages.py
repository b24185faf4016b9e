"""The workbook's HTML pages: a run's index and the comparison of variants.

Plain HTML with one inline style (no scripts, nothing fetched): they open from a file share or
an e-mail attachment as they are.
"""

from __future__ import annotations

import html
import json
from typing import Any

from . import banners
from .labels import label, value_text
from .records import WorkbookRun


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;
text-align:left}th{background:#f3f3f3}.ok{color:#1a7f37}.failed{color:#cf222e;font-weight:bold}
small.id{color:#777}</style>"""


def _headline_cells(value: Any, name: str = "") -> str:
    """A headline's value in engineering units, marked when a quick notebook computed it."""
    if isinstance(value, dict) and "value" in value:
        shown = html.escape(value_text(value["value"], str(value.get("unit", "")), name))
        if value.get("quick"):
            shown += " " + banners.tag("quick", "computed by a quick run: not a result")
        return shown
    return html.escape(json.dumps(value))


def _figure_name(name: str, headlines: list[dict[str, Any]]) -> str:
    """The readable label of headline ``name`` (a recorded label first), the identifier as a
    tooltip and small text."""
    recorded = [h.get("label") for h in headlines if isinstance(h, dict) and h.get("label")]
    text = html.escape(recorded[0] if recorded else label(name))
    name = html.escape(name)
    return f'<span title="{name}">{text}</span><br><small class="id">{name}</small>'


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
    heads = [[_figure_name(k, [v]), _headline_cells(v, k)] for k, v in run.headlines.items()]
    title = f"aanntwin workbook: {esc(run.name)}"
    seed = esc(str(run.parameters.get("seed", "")))
    chip = esc(str(run.parameters.get("chip_seed", 0)))  # the notebooks' default
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>{_STYLE}"
        f"</head><body><h1>{title}</h1>{banners.for_run(run)}"
        f"<p>seed {seed}, chip instance {chip}, "
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
    names = list(dict.fromkeys(k for r in runs for k in r.headlines))  # notebook order
    header = ["figure", *(r.name for r in runs)]
    rows = [[_figure_name(n, [r.headlines[n] for r in runs if n in r.headlines]),
             *(_headline_cells(r.headlines[n], n) if n in r.headlines else "" for r in runs)]
            for n in names]  # fmt: skip
    status = [
        ["status", *("ok" if r.ok else _state(r).split(" (")[0] for r in runs)],
        ["run kind", *(_run_kind(r) for r in runs)],
        ["report", *(f'<a href="{esc(r.name)}/index.html">index</a>' for r in runs)],
    ]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>aanntwin variants</title>"
        f"{_STYLE}</head><body><h1>aanntwin workbook variants</h1>{_comparison_banner(runs)}"
        f"{_table(status + rows, header)}</body></html>"
    )


def _run_kind(run: WorkbookRun) -> str:
    """A variant's marker on the comparison page: quick notebooks and demo datasets, or full."""
    quick, demos = banners.run_marks(run)
    marks = [banners.tag(f"QUICK: {', '.join(quick)}", banners.quick_text())] if quick else []
    marks += [banners.tag(f"DEMO: {d}", banners.demo_text(d)) for d in demos]
    return " ".join(marks) or "full run"


def _comparison_banner(runs: list[WorkbookRun]) -> str:
    """The comparison page's banner: which variants are quick or on a demo dataset."""
    lines, demo_runs = [], {}
    for r in runs:
        quick, demos = banners.run_marks(r)
        if quick:
            lines.append(
                f"QUICK RUN: variant {r.name} ({', '.join(quick)}): capped draws, "
                "epochs and grids; its figures show the flow runs, they are no results."
            )
        for d in demos:
            demo_runs.setdefault(d, []).append(r.name)
    for d, names in demo_runs.items():
        which = f"variant{'s' if len(names) > 1 else ''} {', '.join(names)}"
        lines.append(f"DEMO DATASET: {which}: {banners.DEMO_DATASETS[d]}.")
    return banners.box(lines)
