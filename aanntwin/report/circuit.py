"""Notebook 06 (circuit validation): a trained network simulated at transistor level against the
characterized and the ideal twin (:mod:`aanntwin.circuit_validation`, what ``aanntwin
validate-circuit`` runs): the agreement headline, per-stage errors, the disagreeing images and
the chip instances."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import AanntwinError
from . import plans
from .conclusions import percent, show
from .notebook import Context, ensure_model, resolve_path

MODEL = "model_circuit"
"""The run folder (under ``out_dir``) trained with the characterized nonidealities."""


@dataclass
class CircuitRun:
    """What 06 shows: the summary and tidy results, or ``missing`` (why nothing ran)."""

    summary: dict[str, Any] | None
    frame: pd.DataFrame | None
    images: np.ndarray | None
    missing: str | None
    out: Path | None = None


def _characterization(ctx: Context, characterization: str | None) -> Path | None:
    """The given folder, 01's ``out_dir/characterization`` when it has a fit report, else None
    (validate fits the committed data)."""
    if characterization:
        folder = resolve_path(characterization)
        lacks = [f for f in ("nonidealities.json", "fit_report.json") if not (folder / f).is_file()]
        if lacks:
            what = f"no {' or '.join(lacks)} in" if folder.is_dir() else "no such folder"
            raise AanntwinError(f"parameter characterization = {characterization}: {what} "
                                f"{folder} (a folder `aanntwin characterize` wrote)")  # fmt: skip
        return folder
    own = ctx.out_dir / "characterization"
    return own if (own / "fit_report.json").is_file() else None


def load(ctx: Context, images: int = 100, chips: int = 0, characterization: str | None = None,
         multiplier: str = "gilbert") -> CircuitRun:  # fmt: skip
    """Train (or reuse) the run with the characterized nonidealities, simulate ``images`` test
    images (capped when quick) and ``chips`` chip instances; print one line."""
    char = _characterization(ctx, characterization)  # a wrong folder is named first
    if shutil.which("ngspice") is None:
        line = "ngspice is not installed (apt-get install ngspice): nothing simulated"
        print(line)
        return CircuitRun(None, None, None, line)
    from ..circuit_validation.run import validate

    n = plans.capped("circuit_images", images, ctx.quick)
    k = plans.capped("circuit_chips", chips, ctx.quick)
    out = ctx.out_dir / "circuit"
    if char is None:  # fit the committed data first: the model trains with its nonidealities
        from ..circuit_validation.run import ensure_characterization
        from ..runs import build_model
        from .notebook import run_config

        model = build_model(run_config(ctx.dataset, ctx.epochs, ctx.seed, None))
        char = ensure_characterization(out, None, model, multiplier)
    run = ensure_model(ctx.out_dir, ctx.dataset, ctx.data_dir, ctx.epochs, ctx.seed,
                       str(char / "nonidealities.json"), MODEL, ctx.quick, ctx.device)  # fmt: skip
    summary = validate(run, out, n, char, k, multiplier, data_dir=ctx.data_dir)
    frame = pd.read_csv(out / "results.csv")
    data = ctx.data
    pics = data.x_test[:n].detach().cpu().numpy()
    print(f"run {run}; characterization {char}; {n} test images, {k} chips -> {out}")
    return CircuitRun(summary, frame, pics, None, out)


def agreement(res: CircuitRun) -> pd.DataFrame | None:
    """One row per twin: class-decision agreement with the circuit, accuracies, stage RMS."""
    s = res.summary
    if s is None:
        return None
    rows = []
    for twin, name in (("twin", "characterized twin"), ("ideal", "ideal twin")):
        t = s[twin]
        row = {"twin": name, "agree": f"{t['agreement']}/{s['images']}",
               "twin accuracy": percent(s["accuracy"][twin]),
               "circuit accuracy": percent(s["accuracy"]["circuit"])}  # fmt: skip
        for stage, v in t["stage_rms_pct_fs"].items():
            row[f"{stage} RMS (% FS)"] = round(v, 4)
        rows.append(row)
    return pd.DataFrame(rows)


def stage_figure(res: CircuitRun) -> Any:
    """Left: per-stage RMS error (% of the stage's full scale, log axis) for both twins. Right:
    circuit output against each twin's, every stage output of every image (twin volts)."""
    from matplotlib.figure import Figure  # no pyplot: nothing left open for the inline backend

    s, f = res.summary, res.frame
    if s is None or f is None:
        return None
    fig = Figure(figsize=(11, 4))
    ax, bx = fig.subplots(1, 2)
    stages = list(s["twin"]["stage_rms_pct_fs"])
    xs = np.arange(len(stages))
    for i, (twin, name) in enumerate((("twin", "characterized twin"), ("ideal", "ideal twin"))):
        vals = [s[twin]["stage_rms_pct_fs"][k] for k in stages]
        ax.bar(xs + 0.4 * i - 0.2, vals, 0.4, label=name)
    ax.axhline(1.0, color="k", ls="--", lw=0.8, label="1 % of full scale")
    ax.set(xticks=xs, xticklabels=stages, yscale="log", ylabel="RMS |circuit - twin| (% FS)",
           title="Per-stage error (full scale: fan-in x cell max |y|; ReLU: its max |y|)")  # fmt: skip
    ax.legend(fontsize=8)
    for twin, name, m in (("ideal", "ideal twin", "x"), ("twin", "characterized twin", ".")):
        bx.plot(f[twin], f["circuit"], m, ms=3, alpha=0.5, label=name)
    lim = float(np.abs(f["circuit"]).max()) * 1.05
    bx.plot([-lim, lim], [-lim, lim], "k-", lw=0.6)
    bx.set(xlabel="twin output (V, twin units)", ylabel="circuit output (V, twin units)",
           title="Every MAC and ReLU output of every image")  # fmt: skip
    bx.legend(fontsize=8)
    fig.tight_layout()
    return fig


def disagreeing(res: CircuitRun) -> tuple[pd.DataFrame | None, Any]:
    """The images where the circuit and either twin decide differently, with margins (V), and a
    figure of (up to 8 of) them."""
    from matplotlib.figure import Figure  # no pyplot: nothing left open for the inline backend

    s = res.summary
    if s is None or res.images is None:
        return None, None
    rows = pd.DataFrame(s["twin"]["disagreeing"] + s["ideal"]["disagreeing"])
    labels = ["characterized"] * len(s["twin"]["disagreeing"]) + ["ideal"] * len(
        s["ideal"]["disagreeing"]
    )
    if len(rows):
        rows.insert(0, "twin", labels)
    shown = rows.head(8)
    fig = Figure(figsize=(1.6 * max(1, len(shown)), 2.2))
    axes = fig.subplots(1, max(1, len(shown)), squeeze=False)
    for ax, r in zip(axes[0], shown.itertuples(index=False), strict=False):
        ax.imshow(res.images[int(r.image), 0], cmap="gray_r")
        ax.set_title(f"#{r.image} ({r.twin[:5]})\ncircuit {r.circuit_class}, twin {r.twin_class}",
                     fontsize=7)  # fmt: skip
    for ax in axes[0]:
        ax.axis("off")
    if not len(shown):
        axes[0][0].text(0.5, 0.5, "no disagreement", ha="center", va="center")
    fig.suptitle("Images where the circuit and a twin decide differently", fontsize=9)
    fig.tight_layout()
    return (rows if len(rows) else pd.DataFrame({"disagreeing images": ["none"]})), fig


def chips_table(res: CircuitRun) -> pd.DataFrame | None:
    """SPICE chips vs twin chips: accuracy spread and output deviation from nominal (std, V)."""
    c = (res.summary or {}).get("chips")
    if not c:
        return None
    rows = [{"what": "accuracy (mean +- std)",
             "SPICE chips": f"{percent(c['accuracy_spice_mean'])} +- {percent(c['accuracy_spice_std'])} ({c['chips']} chips)",
             "twin chips": f"{percent(c['accuracy_twin_more']['mean'])} +- {percent(c['accuracy_twin_more']['std'])} ({c['accuracy_twin_more']['chips']} chips)"}]  # fmt: skip
    for stage, d in c["deviation_std"].items():
        rows.append({"what": f"{stage} output - nominal, std (V)",
                     "SPICE chips": f"{d['circuit']:.3g}", "twin chips": f"{d['twin']:.3g}"})  # fmt: skip
    return pd.DataFrame(rows)


def headlines(res: CircuitRun) -> dict[str, tuple[Any, ...]]:
    """Agreement (characterized and ideal twin), worst stage RMS % FS, seconds per image."""
    s = res.summary
    if s is None:
        return {}
    n = s["images"]
    return {
        "circuit_agreement": (s["twin"]["agreement"], f"of {n} images",
                              "Class decisions: circuit = characterized twin"),
        "circuit_agreement_ideal": (s["ideal"]["agreement"], f"of {n} images",
                                    "Class decisions: circuit = ideal twin"),
        "circuit_stage_rms_pct_fs": (max(s["twin"]["stage_rms_pct_fs"].values()), "%",
                                     "Worst stage RMS error, circuit vs characterized twin (% FS)"),
        "circuit_seconds_per_image": (s["timing"]["seconds_per_image"] or float("nan"), "s",
                                      "ngspice time per image (circuit validation)"),
    }  # fmt: skip


def conclude(res: CircuitRun) -> None:
    """The conclusion sentences (and a verdict against the acceptance: >= 99 % agreement,
    every stage <= 1 % FS)."""
    s = res.summary
    if s is None:
        show([f"Not validated: {res.missing}."])
        return
    n, t, i = s["images"], s["twin"], s["ideal"]
    worst = max(t["stage_rms_pct_fs"], key=t["stage_rms_pct_fs"].get)
    ok = t["agreement"] >= 0.99 * n and all(v <= 1.0 for v in t["stage_rms_pct_fs"].values())
    sentences = [
        f"On {n} test images the transistor-level circuit and the characterized twin make the "
        f"same class decision on {t['agreement']}; the ideal twin on {i['agreement']}.",
        f"Largest per-stage RMS error with the characterized twin: {t['stage_rms_pct_fs'][worst]:.3f} "
        f"% of full scale ({worst}); with the ideal twin: "
        f"{max(i['stage_rms_pct_fs'].values()):.2f} %.",
        f"Accuracy on these images: circuit {percent(s['accuracy']['circuit'])}, characterized "
        f"twin {percent(s['accuracy']['twin'])}, ideal twin {percent(s['accuracy']['ideal'])}.",
    ]  # fmt: skip
    b = s.get("final_stage_inputs_beyond_clip") or {}
    if b.get("fraction"):
        sentences.append(
            f"{percent(b['fraction'])} of the final stage's inputs exceed the characterized input "
            f"range (+-{b['clip']:g}, largest {b['max']:.2f}): there the twin clips while the cell "
            "still rises a little; a wider characterization sweep would close that gap."
        )
    verdict = "the twin predicts the circuit" if ok else "the twin does not yet meet the target"
    show(sentences, verdict)
