"""The workbook runner: execute the notebooks with papermill, render HTML reports, index them.

``reports/<name>/`` receives, per notebook, the executed copy (``executed/NN_x.ipynb``), the
designers' report without code (``NN_x.html``, also printed as ``NN_x.pdf``) and a version
with code (``NN_x.code.html``); ``index.html`` links them with the run's parameters, seed,
versions, timings and headline figures; ``run.json`` records the same for machines. Several
variants (parameter sets) each get their own folder, and ``reports/index.html`` compares their
headline figures side by side. A variant already rendered with identical parameters, notebooks
and code is not rerun unless forced.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import AanntwinError
from ..io import read_json_file, write_json_atomic, write_text_atomic
from ..provenance import git_commit
from .banners import marks
from .conclusions import move_to_top
from .console import ENGINE, SectionProgress, known_parameters
from .fingerprint import fingerprint as input_fingerprint
from .nonideality_params import FIELD_PARAMETERS
from .pages import render_comparison, render_index
from .params import (
    PATH_PARAMETERS,
    RESERVED,
    check_name,
    load_parameters,
    named_paths,
    notebook_defaults,
)
from .params import validate as validate_parameters
from .pdf import ReportPdfs
from .records import NotebookRun, WorkbookRun

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
"""The notebooks of a source checkout (``--notebooks`` points elsewhere)."""
__all__ = ["load_parameters", "pages_of", "run_parameter_files", "run_workbook"]


def expand_variants(data: dict[str, Any], default_name: str) -> list[tuple[str, dict, dict]]:
    """``[(name, parameters, per-notebook overrides)]``: one per variant, or the file itself."""
    base = {k: v for k, v in data.items() if k not in RESERVED}
    overrides = data.get("notebooks", {})
    variants = data.get("variants") or [{"name": data.get("name", default_name)}]
    return [
        (str(v["name"]), {**base, **{k: x for k, x in v.items() if k != "name"}}, overrides)
        for v in variants
    ]


def notebook_paths(folder: Path, only: list[str] | None = None) -> list[Path]:
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise AanntwinError(f"{folder}: no notebooks (NN_name.ipynb) here; pass --notebooks DIR")
    if only:
        known = {p.stem for p in paths}
        for name in only:
            if name not in known:
                raise AanntwinError(
                    f"--only {name}: no such notebook; known: {', '.join(sorted(known))}"
                )
        paths = [p for p in paths if p.stem in only]
    return paths


def _versions() -> dict[str, Any]:
    # optional dependency (the notebooks extra): imported where used
    import nbconvert
    import papermill

    return {"aanntwin": __version__, "git_commit": git_commit(), "torch": _version_of("torch"),
            "papermill": papermill.__version__, "nbconvert": nbconvert.__version__,
            "python": platform.python_version()}  # fmt: skip


def _version_of(distribution: str) -> str:
    """The installed version, read from package metadata: this process never imports torch."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _render(executed: Path, target: Path, with_code: bool) -> None:
    # optional dependency (the notebooks extra): imported where used
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", exclude_input=not with_code,
                            exclude_input_prompt=True, exclude_output_prompt=True)  # fmt: skip
    notebook = move_to_top(nbformat.read(executed, as_version=4))  # reports open with it
    body, _ = exporter.from_notebook_node(notebook)
    write_text_atomic(target, body)


def _failure(exc: Exception) -> str:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    cell = getattr(exc, "exec_count", None)
    where = f" (cell [{cell}])" if cell is not None else ""
    return f"{ename}: {evalue}{where}".strip()


KERNEL_LAUNCHER = """import ctypes, os, sys
ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL: die with the workbook
if os.getppid() != int(sys.argv[1]):  # the workbook died before prctl took effect
    os._exit(1)
os.execvp(sys.argv[2], sys.argv[2:])"""
"""Run before the kernel (Linux): a kill -9 of the workbook leaves no kernel behind, also when
the kernel is too busy (holding the GIL) for its own parent poller to notice."""


def _kernel_manager_class() -> type:
    """A jupyter ``KernelManager`` whose kernels start through :data:`KERNEL_LAUNCHER` and, on
    POSIX, talk over IPC sockets in a private temporary folder (local only: the kernel has
    nothing to warn about, unlike plain-text TCP)."""
    from jupyter_client.manager import KernelManager  # optional: the notebooks extra

    class ChildKernelManager(KernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._ipc_dir = None
            if os.name == "posix":
                self._ipc_dir = tempfile.mkdtemp(prefix="aanntwin-kernel-")
                self.transport, self.ip = "ipc", os.path.join(self._ipc_dir, "kernel")

        def cleanup_ipc_files(self) -> None:
            super().cleanup_ipc_files()
            if self._ipc_dir:
                shutil.rmtree(self._ipc_dir, ignore_errors=True)

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client sends SIGINT before every shutdown; a kernel still finishing its
            # last reply logs "KeyboardInterrupt caught in kernel." The shutdown request (then
            # SIGTERM, SIGKILL) stops it without: interrupts are only skipped at shutdown.
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            cmd = super().format_kernel_cmd(extra_arguments)
            if not sys.platform.startswith("linux"):
                return cmd
            return [sys.executable, "-c", KERNEL_LAUNCHER, str(os.getpid()), *cmd]

    return ChildKernelManager


def run_workbook(
    parameters: dict[str, Any],
    name: str,
    out_root: str | Path = "reports",
    *,
    notebooks_dir: str | Path | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    only: list[str] | None = None,
    force: bool = False,
    code_html: bool = True,
    pdf: bool = True,
    parameter_files: tuple[str | Path, ...] | list[str | Path] = (),
    log: Any = sys.stderr,
) -> WorkbookRun:
    """Execute the notebooks in order into ``out_root/name``; stop at the first failure."""
    import papermill  # optional dependency (the notebooks extra): imported where used

    nb_dir = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR
    paths = notebook_paths(nb_dir, only)
    folder = Path(out_root) / name
    params = {**_resolved(parameters), "out_dir": str((folder / "data").resolve())}
    overrides = {k: _resolved(v) for k, v in (overrides or {}).items()}
    versions = _versions()
    fingerprint = input_fingerprint(params, overrides, paths, list(parameter_files), versions)
    previous = folder / "run.json"
    old = _previous_run(previous) if not force else {}
    if old.get("fingerprint") == fingerprint and old.get("ok") and old.get("finished"):
        print(f"workbook {name}: unchanged since the last run, not rerun (--force reruns)",
              file=log)  # fmt: skip
        run = WorkbookRun(**{k: v for k, v in old.items() if k in WorkbookRun.__dataclass_fields__})
        run.notebooks = [NotebookRun(**nb) for nb in old["notebooks"]]
        run.skipped = True
        missing = [nb for nb in run.notebooks if pdf and nb.report and not nb.report_pdf]
        if missing:  # an earlier --no-pdf run (or no browser then): print the PDFs only
            pdfs = ReportPdfs(pdf, log, f"workbook {name}")
            for nb in missing:
                nb.report_pdf, nb.pdf_note = pdfs.make(folder / str(nb.report))
            _record(run, folder)
        return run
    run = WorkbookRun(name, str(folder), params, fingerprint, versions=versions)
    run.notebooks = [NotebookRun(p.stem) for p in paths]
    defaults = notebook_defaults(paths)  # banners: which notebooks run quick, on a demo set
    run.quick_notebooks, run.demo_datasets = marks(paths, params, overrides, defaults)
    (folder / "executed").mkdir(parents=True, exist_ok=True)
    _record(run, folder)  # "not finished" until the end: a killed run is never taken as ok
    pdfs = ReportPdfs(pdf, log, f"workbook {name}")
    t_run = time.perf_counter()
    for i, (path, nb) in enumerate(zip(paths, run.notebooks, strict=True)):
        print(f"workbook {name}: [{i + 1}/{len(paths)}] {path.stem} ...", file=log, flush=True)
        executed = folder / "executed" / path.name
        nb.executed = str(executed.relative_to(folder))
        t0 = time.perf_counter()
        label = f"workbook {name}: [{i + 1}/{len(paths)}] {path.stem}"
        try:
            with SectionProgress(label, log) as progress, known_parameters(FIELD_PARAMETERS):
                papermill.execute_notebook(
                    str(path), str(executed),
                    parameters={**params, **overrides.get(path.stem, {})},
                    kernel_name="python3", progress_bar=False, cwd=str(nb_dir),
                    kernel_manager_class=_kernel_manager_class(), engine_name=ENGINE,
                    section_progress=progress,
                )  # fmt: skip
            nb.status = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure is reported in the index
            nb.status, nb.error = "failed", _failure(exc)
        nb.seconds = time.perf_counter() - t0
        if executed.exists():
            _render(executed, folder / f"{path.stem}.html", with_code=False)
            nb.report = f"{path.stem}.html"
            nb.report_pdf, nb.pdf_note = pdfs.make(folder / nb.report)
            if code_html:
                _render(executed, folder / f"{path.stem}.code.html", with_code=True)
                nb.report_with_code = f"{path.stem}.code.html"
        print(f"workbook {name}: [{i + 1}/{len(paths)}] {path.stem} {nb.status} "
              f"({nb.seconds:.1f} s)", file=log, flush=True)  # fmt: skip
        if nb.status != "ok":
            break
    run.seconds = time.perf_counter() - t_run
    headlines = Path(params["out_dir"]) / "headlines.json"
    if headlines.exists():
        run.headlines = read_json_file(headlines, "headlines")
    run.finished = True
    _record(run, folder)
    return run


def _record(run: WorkbookRun, folder: Path) -> None:
    write_json_atomic(folder / "run.json", {**asdict(run), "ok": run.ok})
    write_text_atomic(folder / "index.html", render_index(run))


def _resolved(params: dict[str, Any]) -> dict[str, Any]:
    """Path parameters made absolute (the notebooks run in their own folder)."""
    out = dict(params)
    for key in (*PATH_PARAMETERS, "dataset"):  # dataset: a .npz path, not a registered name
        paths = [str(Path(p).expanduser().resolve()) for p in named_paths(key, out.get(key))]
        if paths:
            out[key] = paths if isinstance(out[key], list) else paths[0]
    return out


def _previous_run(path: Path) -> dict[str, Any]:
    """The record of the last run; ``{}`` when absent or damaged (nothing reused: it reruns)."""
    try:
        old = read_json_file(path, "workbook run record") if path.exists() else {}
        [NotebookRun(**nb) for nb in old["notebooks"]]  # noqa: B018 - validates the record
        return old
    except (AanntwinError, TypeError, KeyError):
        return {}


def _check_unique(variants: list[tuple[str, dict, dict, str]]) -> None:
    """Each variant (report folder) name once; the error names the files that repeat it."""
    sources: dict[str, list[str]] = {}
    for vname, _, _, source in variants:
        sources.setdefault(vname, []).append(source or "--name")
    for vname, files in sources.items():
        if len(files) > 1:
            where = files[0] if len(set(files)) == 1 else " and ".join(dict.fromkeys(files))
            raise AanntwinError(
                f"{where}: variant name {vname!r} is used {len(files)} times; each variant "
                "(report folder) needs its own name"
            )


class WorkbookRuns(list):
    """The runs of :func:`run_parameter_files` (a list of :class:`WorkbookRun`) and the page
    comparing them (``comparison``: None when there is only one variant)."""

    comparison: Path | None = None


def pages_of(run: WorkbookRun) -> list[Path]:
    """Every page a run wrote, in notebook order: each report's HTML, PDF and code HTML."""
    folder = Path(run.folder)
    names = [n for nb in run.notebooks
             for n in (nb.report, nb.report_pdf, nb.report_with_code) if n]  # fmt: skip
    return [folder / n for n in names]


def run_parameter_files(
    files: list[str], out_root: str | Path = "reports", name: str | None = None, **kwargs: Any
) -> WorkbookRuns:
    """Run every variant of every parameters file (none: the defaults) into its own folder.
    Every file is validated against the notebooks' parameters cells before anything runs."""
    if name is not None:
        check_name("--name", name)
    nb_dir = kwargs.get("notebooks_dir") or NOTEBOOKS_DIR
    defaults = notebook_defaults(notebook_paths(Path(nb_dir))) if files else {}
    variants: list[tuple[str, dict, dict, str]] = []
    for f in files:
        data = load_parameters(f)
        validate_parameters(f, data, defaults)
        variants += [(*v, f) for v in expand_variants(data, name or Path(f).stem)]
    if not files:
        variants = [(name or "default", {}, {}, "")]
    elif name and len(variants) == 1:
        variants = [(name, *variants[0][1:])]
    _check_unique(variants)
    runs = WorkbookRuns()
    for vname, params, overrides, source in variants:
        run = run_workbook(params, vname, out_root, overrides=overrides,
                           parameter_files=[source] if source else [], **kwargs)  # fmt: skip
        runs.append(run)
        if not run.ok:
            break
    if len(runs) > 1 or len(variants) > 1:
        runs.comparison = Path(out_root) / "index.html"
        write_text_atomic(runs.comparison, render_comparison(runs))
    return runs
