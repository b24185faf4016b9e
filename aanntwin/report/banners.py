"""Banners that mark figures which are not results: quick runs and demo datasets.

A quick run (``quick`` true at the top level or in a notebook's overrides) caps epochs, draws,
spec samples and chip instances and coarsens the grids (:data:`~aanntwin.report.plans.QUICK_CAPS`):
its figures show that the flow works, not what the circuit needs. A demo dataset (the bundled
8x8 digits) trains in seconds, but its specs are far tighter than MNIST's. Every report (through
:func:`~aanntwin.report.notebook.header`), each run's index page and the comparison page show the
same amber box.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .plans import QUICK_CAPS

DEMO_DATASETS = {
    "digits": "the bundled 8x8 digits (1,797 images): a demo that trains in seconds. Its specs "
    "are far tighter than MNIST's (input noise limit 2 mV against MNIST's 34 mV in one "
    "measured pair of runs): use it to try the flow, "
    "not to sign off a chip",
}
"""Demo datasets and why their figures are no sign-off."""
DEFAULT_DATASET = "digits"
"""The notebooks' default ``dataset`` (a run that does not set it uses the demo)."""
STYLE = ("border:2px solid #bf8700;background:#fff8c5;color:#3d2f00;padding:.5em .8em;"
         "margin:.5em 0 1em;border-radius:4px;font-family:system-ui,sans-serif")  # fmt: skip
"""The banner's inline style (amber box: reports and pages carry no stylesheet of their own)."""


def quick_text(notebooks: list[str] | None = None) -> str:
    """The quick-run warning; ``notebooks``: which ran quick (None: this report)."""
    caps = ", ".join(f"{k} {v}" for k, v in QUICK_CAPS.items())
    which = f" ({', '.join(notebooks)})" if notebooks else ""
    return (f"QUICK RUN{which}: capped ({caps}), coarser grids and fewer spec kinds. The figures "
            "show that the flow runs; they are not results.")  # fmt: skip


def demo_text(dataset: str) -> str:
    """The demo-dataset warning for ``dataset`` ('' when it is no demo)."""
    why = DEMO_DATASETS.get(dataset)
    return f"DEMO DATASET: {why}." if why else ""


def texts(quick: bool | list[str], dataset: str | None) -> list[str]:
    """The warnings that apply: ``quick`` (a flag, or the notebooks that ran quick) and the
    ``dataset`` (None: the default)."""
    out = []
    if quick:
        out.append(quick_text(quick if isinstance(quick, list) else None))
    demo = demo_text(dataset or DEFAULT_DATASET)
    return out + [demo] if demo else out


def box(lines: list[str]) -> str:
    """The HTML banner holding ``lines`` ('' when there are none)."""
    if not lines:
        return ""
    body = "<br>".join(f"<strong>{html.escape(t.split(':', 1)[0])}</strong>:"
                       f"{html.escape(t.split(':', 1)[1])}" for t in lines)  # fmt: skip
    return f"<div class='aanntwin-banner' style='{STYLE}'>{body}</div>"


def for_report(quick: bool, dataset: str) -> str:
    """The banner at the top of one report (its own ``quick`` and ``dataset``)."""
    return box(texts(quick, dataset))


def for_run(run: Any) -> str:
    """The banner of a workbook run's index page (:class:`~aanntwin.report.records.WorkbookRun`)."""
    quick, demo = run_marks(run)
    return box(texts(quick, demo[0] if demo else "none"))


def run_marks(run: Any) -> tuple[list[str], list[str]]:
    """``(notebooks that ran quick, demo datasets used)`` of a run: from its record
    (``quick_notebooks``, ``demo_datasets``), or from its parameters where it lacks them."""
    params = run.parameters
    quick = getattr(run, "quick_notebooks", None)
    if quick is None:
        quick = ["all notebooks"] if params.get("quick") else []
    demos = getattr(run, "demo_datasets", None)
    if demos is None:
        dataset = params.get("dataset", DEFAULT_DATASET)
        demos = [dataset] if dataset in DEMO_DATASETS else []
    return list(quick), list(demos)


def marks(paths: list[Path], params: dict[str, Any], overrides: dict[str, dict[str, Any]],
          defaults: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:  # fmt: skip
    """Per notebook its effective parameters (notebook defaults, then the run's parameters,
    then its overrides): ``(notebooks run quick, demo datasets used)``. A notebook without a
    ``dataset`` parameter uses no dataset."""
    quick, demos = [], []
    for p in paths:
        eff = {**defaults.get(p.stem, {}), **params, **overrides.get(p.stem, {})}
        if eff.get("quick"):
            quick.append(p.stem)
        if eff.get("dataset") in DEMO_DATASETS and eff["dataset"] not in demos:
            demos.append(eff["dataset"])
    return quick, demos


def tag(text: str, title: str = "") -> str:
    """A small amber inline marker (e.g. "quick" next to a figure on the comparison page)."""
    t = f" title='{html.escape(title)}'" if title else ""
    style = "background:#fff8c5;border:1px solid #bf8700;border-radius:3px;padding:0 .3em"
    return f"<span class='aanntwin-mark'{t} style='{style}'>{html.escape(text)}</span>"
