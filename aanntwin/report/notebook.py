"""What the notebooks share: parameters, trained models in ``out_dir``, headers, headline figures.

Every notebook takes the same papermill parameters (``dataset``, ``data_dir``, ``epochs``,
``seed``, ``nonidealities``, ``out_dir``, ``quick``, ``chip_seed``) and turns them into a
:class:`Context` with :func:`setup`. Trained models are folders like ``aanntwin train`` writes
(``weights.safetensors``, ``config.json``, ``metrics.json``) under ``out_dir``; training goes
through the checkpoint cache, so asking again for the same model is cheap. Headline figures go
to ``out_dir/headlines.json`` (``{name: {"value": v, "unit": u}}``) for the workbook runner.
"""

from __future__ import annotations

import datetime
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .. import __version__
from ..config import Nonidealities, RunConfig, TrainParams
from ..device import resolve_device
from ..errors import AanntwinError
from ..io import read_json_file, write_json_atomic
from ..provenance import git_commit
from ..runs import (
    is_run,
    load_metrics,  # notebooks call nb.load_metrics
    load_run,
)
from ..studies.common import TRAIN_THREADS, cached_dataset, train_to_folder, training_threads
from ..studies.noise import TEMPORAL
from ..studies.noise_sweep import NoiseSweep
from ..studies.pools import in_child
from ..training import determinism, evaluate
from . import banners, conclusions, plans  # noqa: F401  (notebooks call nb.conclusions)
from .labels import label as headline_label
from .labels import value_text
from .nonideality_params import (  # noqa: F401  (notebooks call nb.nonidealities_table)
    FIELD_PARAMETERS,
    NonidealitySource,
    field_overrides,
    nonidealities_table,
)
from .nonideality_params import resolve as resolve_nonidealities
from .param_ranges import check_values
from .plans import (  # noqa: F401  (notebooks call nb.quantization_plan, nb.spec_kinds)
    QUICK_EPOCHS,
    quantization_plan,
    spec_kinds,
)

ROOT = Path(__file__).resolve().parents[2]
"""The source checkout holding this package (``examples/`` and ``notebooks/`` live here)."""
IDEAL, HW = "model_ideal", "model_hw"
"""Folder names (under ``out_dir``) of the ideal and the hardware-aware model."""
HEADLINES = "headlines.json"
PARAMETERS = ("dataset", "data_dir", "epochs", "seed", "nonidealities", "out_dir", "quick")
PARAMETERS += ("chip_seed", "device")
"""The parameters every notebook takes (papermill); notebooks may add their own, and every
Nonidealities field is a parameter too (:mod:`~aanntwin.report.nonideality_params`)."""


def default_nonidealities_path() -> Path:
    """The reference design's nonidealities, package data (an installed wheel has it;
    ``examples/reference_nonidealities.json`` in a checkout links to it)."""
    path = Path(__file__).resolve().parents[1] / "reference_nonidealities.json"
    if not path.exists():
        raise AanntwinError(
            f"{path}: not found (a broken install); pass the 'nonidealities' parameter"
        )
    return path


def resolve_path(path: str | os.PathLike[str], output: bool = False) -> Path:
    """``path`` made absolute. From a source checkout, a relative ``output`` path (``out_dir``)
    is taken from the checkout root, so ``reports/scratch`` is one folder under papermill, the
    workbook runner and Voila whatever their working folder; an input path is taken from the
    current folder when it exists there, else from the checkout root."""
    p = Path(path).expanduser()
    if p.is_absolute() or not (ROOT / "pyproject.toml").exists() or (p.exists() and not output):
        return p.resolve()
    return (ROOT / p).resolve()


def run_config(dataset: str, epochs: int, seed: int, nl: Nonidealities | None) -> RunConfig:
    """The run configuration of a notebook model (``nl``: training nonidealities)."""
    train = TrainParams(epochs=epochs, seed=seed)
    return RunConfig(dataset=dataset, train=train, nonidealities=nl or Nonidealities())


def _dataset(dataset: str, data_dir: str | None, device: str | torch.device = "cpu") -> Any:
    """The dataset on ``device``, loaded and moved once per kernel (cached per device)."""
    return cached_dataset(dataset, _data_folder(data_dir), str(device))


def _data_folder(data_dir: str | None) -> str | None:
    """``data_dir`` resolved (relative paths: from where the notebook runs), or None."""
    return None if data_dir is None else str(resolve_path(data_dir))


def ensure_model(
    out_dir: str | os.PathLike[str],
    dataset: str = "digits",
    data_dir: str | None = None,
    epochs: int = 12,
    seed: int = 0,
    nonidealities: Nonidealities | str | os.PathLike[str] | dict[str, Any] | None = None,
    name: str = IDEAL,
    quick: bool = False,
    device: str | torch.device = "cpu",
) -> Path:
    """The folder ``out_dir/name`` holding this model, trained on ``device`` (through the
    checkpoint cache) unless it already holds exactly it. ``nonidealities``: training
    nonidealities (a :class:`Nonidealities`, a JSON path or a mapping of fields); None trains
    the ideal model."""
    if nonidealities is not None and not isinstance(nonidealities, Nonidealities):
        nonidealities = resolve_nonidealities(nonidealities, resolve_path=resolve_path)
        nonidealities = nonidealities.nonidealities
    epochs = plans.capped("epochs", epochs, quick)
    cfg = run_config(dataset, epochs, seed, nonidealities)
    folder = resolve_path(out_dir, output=True) / name
    device = resolve_device(device, "device")
    data = _dataset(dataset, data_dir)
    # On the studies' thread count (TRAIN_THREADS): the sweeps and spec searches of the other
    # notebooks find this very model in the checkpoint cache instead of training it again, and
    # on shared CPU cores one thread trains these small models fastest (two: 2-3x slower).
    with training_threads():
        key = cfg.cache_key(f"{data.fingerprint}:{torch.float32}", determinism(device))
        try:
            if load_metrics(folder)["cache_key"] == key and is_run(folder):
                return folder
        except (OSError, KeyError, ValueError):
            pass
    # On the CPU in a child process that ends with the training: the kernel keeps neither the
    # optimizer's torch._dynamo (~70 MB) nor the working set (06 runs ngspice next, 04 a pool)
    args = (folder, cfg.to_dict(), _data_folder(data_dir), str(device))
    if device.type == "cpu":
        in_child(train_to_folder, *args, threads=TRAIN_THREADS)
    else:
        train_to_folder(*args)
    return folder


@dataclass
class Context:
    """A notebook's resolved parameters (see :func:`setup`)."""

    params: dict[str, Any]
    """The parameters as passed (for the header)."""
    dataset: str
    data_dir: str | None
    epochs: int
    """Training epochs actually used (capped at 2 when ``quick``)."""
    seed: int
    chip_seed: int
    quick: bool
    out_dir: Path
    source: NonidealitySource
    """The ``nonidealities`` parameter resolved: file or mapping, single-field overrides."""
    nonidealities: Nonidealities
    """The parameters' nonidealities with ``chip_seed`` applied (the chip instance under test)."""
    device: torch.device = torch.device("cpu")
    """Where models train and evaluate (the ``device`` parameter, validated)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def nonidealities_path(self) -> Path | None:
        """The nonidealities file read (None when a mapping was given)."""
        return self.source.path

    @property
    def data(self) -> Any:
        """The dataset on :attr:`device` (loaded once per kernel)."""
        return _dataset(self.dataset, self.data_dir, self.device)

    def model_dir(self, name: str = IDEAL) -> Path:
        """``out_dir/name`` trained if needed: ``model_hw`` trains with the nonidealities on."""
        nl = self.source.nonidealities if name == HW else None
        return ensure_model(self.out_dir, self.dataset, self.data_dir, self.epochs, self.seed,
                            nl, name, device=self.device)  # fmt: skip

    def runs(self, default: int = 5) -> int:
        """The ``runs`` parameter (noise draws per point), capped when ``quick``."""
        return self.capped("runs", default)

    def capped(self, name: str, default: int) -> int:
        """Parameter ``name`` (``default`` when not passed), capped when ``quick``
        (:data:`~aanntwin.report.plans.QUICK_CAPS`)."""
        return plans.capped(name, self.extra.get(name, default), self.quick)

    def model(self, name: str = IDEAL, nonidealities: Nonidealities | None = None) -> Any:
        """The :class:`~aanntwin.model.Main` of ``out_dir/name`` with ``nonidealities`` on."""
        return load_run(self.model_dir(name), nonidealities, self.device)[1]


def setup(params: dict[str, Any], namespace: dict[str, Any] | None = None) -> Context:
    """Resolve the notebook parameters: paths made absolute, device checked, nonidealities
    loaded (a file, a mapping, and single fields found in ``params`` or ``namespace``: pass the
    notebook's ``globals()``, where papermill injects ``-p input_noise 0.3``)."""
    p = dict(params)
    check_values(p)
    fields = {**field_overrides(namespace), **field_overrides(p)}
    p.update(fields)
    data_dir = p.get("data_dir")
    value = p.get("nonidealities")
    default = default_nonidealities_path() if value is None else None
    source = resolve_nonidealities(value, fields, default, resolve_path)
    chip_seed, quick, epochs = int(p.get("chip_seed", 0)), bool(p.get("quick")), p.get("epochs")
    epochs = int(12 if epochs is None else epochs)
    return Context(
        params=p,
        dataset=p.get("dataset", "digits"),
        data_dir=None if data_dir is None else str(resolve_path(data_dir)),
        epochs=plans.capped("epochs", epochs, quick),
        seed=int(p.get("seed", 0)),
        chip_seed=chip_seed,
        quick=quick,
        out_dir=resolve_path(p.get("out_dir", "reports/scratch"), output=True),
        source=source,
        nonidealities=source.nonidealities.replace(chip_seed=chip_seed),
        device=resolve_device(p.get("device", "cpu"), "parameter device"),
        extra={k: v for k, v in p.items() if k not in PARAMETERS and k not in fields},
    )


def _cell(value: Any) -> str:
    return "<code>None</code>" if value is None else html.escape(str(value))


def header(params: dict[str, Any] | Context) -> Any:
    """An HTML block: configuration, seed, chip instance, active nonidealities, versions."""
    from IPython.display import (
        HTML,
    )  # optional dependency (the notebooks extra): imported where used

    ctx = params if isinstance(params, Context) else setup(params)
    nl = ctx.nonidealities.active()
    nl.pop("chip_seed", None)
    rows = [
        ("dataset", ctx.dataset),
        ("training epochs", f"{ctx.epochs}" + (" (quick run: capped)" if ctx.quick else "")),
        ("seed (weights, shuffling, noise draws)", ctx.seed),
        ("chip instance (chip_seed: mismatch draw)", ctx.chip_seed),
        ("nonidealities", ctx.source.describe()),
        ("active nonidealities", ", ".join(f"{k} = {v}" for k, v in nl.items()) or "none"),
        ("device", ctx.device),
        ("data products (out_dir)", ctx.out_dir),
        *((k, v) for k, v in ctx.extra.items()),
        ("aanntwin / git commit", f"{__version__} / {git_commit() or 'unknown'}"),
        ("run at", datetime.datetime.now().isoformat(timespec="seconds")),
    ]
    left = "style='text-align:left'"
    body = "".join(f"<tr><th {left}>{html.escape(k)}</th><td {left}>{_cell(v)}</td></tr>"
                   for k, v in rows)  # fmt: skip
    banner = banners.for_report(ctx.quick, ctx.dataset)  # quick run, demo dataset: say so first
    return HTML(f"{banner}<table class='aanntwin-header'>{body}</table>")


def record(out_dir: str | os.PathLike[str], name: str, value: Any, unit: str = "",
           label: str | None = None, quick: bool = False) -> None:  # fmt: skip
    """Store one headline figure in ``out_dir/headlines.json`` (read, update, atomic write);
    ``label``: its readable name for the pages; ``quick``: computed by a quick run (marked)."""
    path = resolve_path(out_dir, output=True) / HEADLINES
    data = load_headlines(out_dir)
    value = value.item() if hasattr(value, "item") else value
    data[name] = {"value": None if value != value else value, "unit": unit}  # NaN -> null
    data[name].update({"label": label} if label else {}, **({"quick": True} if quick else {}))
    write_json_atomic(path, data)


def load_headlines(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``out_dir/headlines.json`` (empty when absent)."""
    path = resolve_path(out_dir, output=True) / HEADLINES
    return read_json_file(path, "headlines") if path.exists() else {}


def headlines(ctx: Context, figures: dict[str, tuple[Any, ...]]) -> pd.DataFrame:
    """Record each headline figure ``{name: (value, unit)}`` or ``(value, unit, label)``
    (:func:`record`; marked quick when ``ctx.quick``) and return them as a table for people:
    one row per figure, its readable name, the value in engineering units, the identifier
    (the key in ``headlines.json``)."""
    rows = []
    for name, (value, unit, *label) in figures.items():
        record(ctx.out_dir, name, value, unit, label[0] if label else None, ctx.quick)
        shown = label[0] if label else headline_label(name)
        rows.append({"figure": shown, "value": value_text(value, unit, name), "identifier": name})
    return pd.DataFrame(rows, columns=["figure", "value", "identifier"])


def table(*frames: pd.DataFrame, float_format: str | None = None) -> None:
    """Display each DataFrame whole (every row, every column's full text); ``float_format``:
    e.g. ``"{:.4g}"``."""
    from IPython.display import display  # optional dependency (the notebooks extra)

    fmt = float_format.format if float_format else None
    with pd.option_context("display.max_rows", None, "display.max_colwidth", None,
                           "display.float_format", fmt):  # fmt: skip
        for frame in frames:
            display(frame)


def html_table(frame: pd.DataFrame) -> None:
    """Display a DataFrame as plain HTML without its index (missing values blank)."""
    from IPython.display import HTML, display  # optional dependency (the notebooks extra)

    display(HTML(frame.to_html(index=False, na_rep="")))


def section(data: Any, *views: Any, missing: str) -> None:
    """Show a report section: each view of ``data`` (a Figure is shown as PNG, anything else
    displayed), or print ``missing`` when ``data`` is None or empty."""
    from IPython.display import display  # optional dependency (the notebooks extra)

    if data is None or (isinstance(data, dict) and not data):
        print(missing)
        return
    for view in views:
        out = view(data)
        show(out) if hasattr(out, "savefig") else display(out)


def show(fig: Any, dpi: int = 100) -> None:
    """Display a matplotlib Figure as a PNG (works without pyplot; lands in static HTML)."""
    from IPython.display import (
        Image,
        display,
    )  # optional dependency (the notebooks extra): imported where used

    display(Image(data=png_bytes(fig, dpi)))


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def tolerable_levels(df: Any, max_drop: float = 0.01) -> Any:
    """From a noise sweep's results, per kind and training level: the largest test level (V)
    such that every level up to it keeps ``accuracy_mean`` within ``max_drop`` of the ideal
    model (training level none) at the lowest test level. Read off the grid (provisional)."""
    d = df.copy()
    d["train"] = d["train_level"].map(lambda v: "none" if pd.isna(v) else f"{v:g} V")
    d["level"] = d["test_level"].fillna(0.0)
    rows = []
    for kind, g in d.groupby("kind", sort=False):
        ideal = g[g["train"] == "none"].sort_values("level")
        if ideal.empty:
            raise AanntwinError("the sweep has no ideal model (training level none)")
        ref = float(ideal["accuracy_mean"].iloc[0])
        row: dict[str, Any] = {"kind": kind, "ideal accuracy (%)": 100 * ref}
        for train_level, t in g.groupby("train", sort=False):
            t = t.sort_values("level")
            bad = t["accuracy_mean"] < ref - max_drop - 1e-12
            ok = t["level"][~bad.cummax()]
            row[f"tolerable level (V), trained at {train_level}"] = (
                float(ok.max()) if len(ok) else None
            )
        rows.append(row)
    return pd.DataFrame(rows)


def noise_sweep(ctx: Context, hold_nonidealities: bool = False) -> NoiseSweep:
    """The notebook noise sweep: the ideal run configuration, every temporal kind, ``runs``
    draws, the levels of :func:`~aanntwin.report.plans.noise_plan`; tested with the file's other
    nonidealities on when ``hold_nonidealities``."""
    return NoiseSweep(
        config=run_config(ctx.dataset, ctx.epochs, ctx.seed, None),
        kinds=list(TEMPORAL),
        runs=ctx.runs(),
        seed=ctx.seed,
        test_base=ctx.nonidealities if hold_nonidealities else Nonidealities(),
        **plans.noise_plan(ctx.quick),
    )


def compare_models(models: dict[str, Any], data: Any, nl: Nonidealities, runs: int, seed: int = 0):
    """Each model's ideal test accuracy and its accuracy under ``nl`` (mean ± std over ``runs``
    noise draws, chip instance ``nl.chip_seed``): ``(DataFrame, {name: EvalResult under nl})``."""
    rows, under = [], {}
    for name, model in models.items():
        model.set_nonidealities(Nonidealities())
        ideal = evaluate(model, data.x_test, data.y_test, seed=seed)
        model.set_nonidealities(nl)
        r = under[name] = evaluate(model, data.x_test, data.y_test, runs=runs, seed=seed)
        row = {"model": name, "ideal test accuracy (%)": 100 * ideal.accuracy}
        row.update(
            {"under nonidealities: mean (%)": 100 * r.accuracy, "std (%)": 100 * r.accuracy_std}
        )
        rows.append({**row, "runs": runs, "chip_seed": nl.chip_seed})
    return pd.DataFrame(rows), under
