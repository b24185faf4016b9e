"""``validate-circuit``: a trained run simulated at transistor level against its twins, resumable.

Images go in batches (``batch`` images = one task: three ngspice runs, conv MACs, ReLUs, final
MACs); a task's rows are appended to ``OUT/results.csv`` when it finishes (flushed, fsynced; the
sweep engine's :class:`~aanntwin.studies.runner.ResultStore`), so an interrupted run restarts
with the batches it lacks, and ends with the same file as an uninterrupted one. Batches run in
``workers`` threads; their ngspice runs (a large MAC stage is several netlists of at most
``max_cells`` cells, :func:`~.netlist.run_stage`) share ``workers`` more threads, so at most
``workers`` MAC netlists simulate at once. Task keys include a hash of the
weights, the characterization and the cells, so a changed input never reuses old rows.

Outputs: ``results.csv`` (image, label, stage, unit, circuit, twin, ideal, twin_local,
ideal_local; twin volts), ``summary.json`` (:func:`~.compare.summarize`, timing, chips),
``decisions.csv`` (per image), ``chips/chips.csv`` (with ``chips``), ``characterization/`` (when none
is given: fitted from the committed CSVs of the topology).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..characterization import spice
from ..characterization.circuits import RELU, example_files, topology
from ..characterization.curves import read_all
from ..characterization.pipeline import characterize, write_outputs
from ..config import Nonidealities, load_nonidealities
from ..errors import DataError
from ..io import read_json_file, write_json_atomic
from ..model import Main
from ..runs import load_run, weights_sha256
from ..schema import stable_hash
from ..studies.common import run_dataset
from ..studies.runner import ResultStore, Task, run_tasks
from . import chips as C
from .compare import decisions, lines, summarize
from .netlist import MAX_CELLS, CellBench
from .simulate import (
    Circuit,
    check_geometry,
    circuit_stages,
    input_volts,
    nominal,
    twin_local,
    twin_stages,
)

COLUMNS = ["image", "label", "stage", "unit", "circuit", "twin", "ideal", "twin_local",
           "ideal_local"]  # fmt: skip
CHIP_COLUMNS = ["chip", "image", "label", "stage", "unit", "circuit", "twin"]


@dataclass
class Setup:
    """Everything a batch needs: the cells, both twins, the images."""

    circuit: Circuit
    twin: Main
    ideal: Main
    images: torch.Tensor
    labels: np.ndarray
    nl: Nonidealities
    a_vt: float
    ident: str
    pool: Executor | None = None
    """Where a batch's MAC netlists run (shared by all batches: bounds the ngspice processes)."""
    max_cells: int | None = MAX_CELLS
    """Largest MAC netlist (cells); a larger stage runs as several."""


def ensure_characterization(
    out: Path, characterization: str | os.PathLike[str] | None, model: Main, multiplier: str
) -> Path:
    """The characterization folder: the given one, or ``OUT/characterization`` fitted from the
    topology's committed CSVs with the run's fan-ins (reused when already there)."""
    if characterization is not None:
        folder = Path(characterization)
        for name in ("nonidealities.json", "fit_report.json"):
            if not (folder / name).is_file():
                raise DataError(f"{folder}: no {name} (write it with `aanntwin characterize`)")
        return folder
    folder = out / "characterization"
    if not (folder / "fit_report.json").is_file():
        fan_in = {"conv2d": model.geometry.stages[0].fan_in,
                  "linear": model.geometry.stages[-1].fan_in}  # fmt: skip
        result = characterize(read_all(example_files(multiplier)), fan_in)
        write_outputs(result, folder, plots=False)
    return folder


def full_scales(report: dict[str, Any], model: Main) -> dict[str, float]:
    """Per stage, its full scale (twin volts): fan-in x the multiplier's largest |y| for a MAC
    stage, the ReLU data's largest |y| for the ReLU (from the fit report)."""
    fits = report.get("fits", {})
    try:
        cell, relu = float(fits["multiplier"]["full_scale"]), float(fits["relu"]["full_scale"])
    except (KeyError, TypeError, ValueError):
        raise DataError(
            "fit_report.json: needs fits.multiplier.full_scale and fits.relu.full_scale "
            "(characterize multiplier and ReLU data)"
        ) from None
    g = model.geometry
    return {"conv": g.stages[0].fan_in * cell, "relu": relu, "linear": g.stages[-1].fan_in * cell}


def _rows(setup: Setup, idx: np.ndarray, circuit: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    x = setup.images[idx]
    twin, ideal = twin_stages(setup.twin, x), twin_stages(setup.ideal, x)
    loc_t = {"conv": twin["conv"], **twin_local(setup.twin, circuit["conv"], circuit["relu"])}
    loc_i = {"conv": ideal["conv"], **twin_local(setup.ideal, circuit["conv"], circuit["relu"])}
    rows = []
    for k, image in enumerate(idx):
        for stage in ("conv", "relu", "linear"):
            for u in range(circuit[stage].shape[1]):
                rows.append({"image": int(image), "label": int(setup.labels[image]),
                             "stage": stage, "unit": u, "circuit": float(circuit[stage][k, u]),
                             "twin": float(twin[stage][k, u]), "ideal": float(ideal[stage][k, u]),
                             "twin_local": float(loc_t[stage][k, u]),
                             "ideal_local": float(loc_i[stage][k, u])})  # fmt: skip
    return rows


def nominal_batch(setup: Setup, first: int, last: int, timing: list) -> list[dict[str, Any]]:
    """Images ``first..last-1`` through the nominal circuit; rows beside both twins."""
    idx = np.arange(first, last)
    x_in = input_volts(setup.twin, setup.images[idx])
    out, seconds = circuit_stages(setup.circuit, setup.twin, x_in, f"images {first}-{last - 1}",
                                  executor=setup.pool, max_cells=setup.max_cells)  # fmt: skip
    timing.append({"images": len(idx), **seconds})
    return _rows(setup, idx, out)


def chip_batch(
    setup: Setup, chip: int, first: int, last: int, timing: list
) -> list[dict[str, Any]]:
    """Images ``first..last-1`` through SPICE chip ``chip`` and twin chip ``chip``."""
    idx = np.arange(first, last)
    m = setup.twin
    conv_macs, conv_cells = m.geometry.stages[0].macs, m.geometry.stages[0].fan_in
    lin_macs, lin_cells = m.geometry.stages[-1].macs, m.geometry.stages[-1].fan_in
    bench = setup.circuit.bench
    alter = (C.offsets(bench, conv_macs, conv_cells, setup.a_vt, chip, "conv"),
             C.offsets(bench, lin_macs, lin_cells, setup.a_vt, chip, "linear"))  # fmt: skip
    x_in = input_volts(m, setup.images[idx])
    out, seconds = circuit_stages(setup.circuit, m, x_in, f"chip {chip}", alter=alter,
                                  executor=setup.pool, max_cells=setup.max_cells)  # fmt: skip
    timing.append({"images": len(idx), **seconds})
    twin_chip = _twin_chip(setup, chip)
    tw = twin_stages(twin_chip, setup.images[idx])
    return [
        {"chip": chip, "image": int(image), "label": int(setup.labels[image]), "stage": stage,
         "unit": u, "circuit": float(out[stage][k, u]), "twin": float(tw[stage][k, u])}
        for k, image in enumerate(idx) for stage in ("conv", "relu", "linear")
        for u in range(out[stage].shape[1])
    ]  # fmt: skip


def _twin_chip(setup: Setup, chip: int) -> Main:
    """The characterized twin as chip ``chip``: fitted mismatch on, temporal noise off."""
    import copy

    twin = copy.deepcopy(setup.twin)
    quiet = setup.nl.replace(input_noise=None, conv2d_out_noise=None, relu_out_noise=None,
                             linear_out_noise=None, chip_seed=chip)  # fmt: skip
    twin.set_nonidealities(quiet)
    return twin


def validate(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    images: int = 100,
    characterization: str | os.PathLike[str] | None = None,
    chips: int = 0,
    multiplier: str = "gilbert",
    batch: int = 10,
    workers: int = 2,
    a_vt: float = C.A_VT,
    twin_chips: int = 50,
    resume: bool = True,
    progress: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
    max_cells: int | None = MAX_CELLS,
) -> dict[str, Any]:
    """Simulate ``images`` test images of a run at transistor level; compare with the
    characterized and the ideal twin; with ``chips``, also that many mismatch chips. Writes the
    outputs listed in the module docstring; returns the summary. ``data_dir``: the dataset's
    folder (None: ``$AANNTWIN_DATA_DIR`` or the cache, as every command). ``max_cells``: the
    largest MAC netlist (cells; None: one netlist per stage), the same results either way."""
    spice.ngspice_path()  # fail early with the install hint
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg, ideal = load_run(run_dir)
    check_geometry(ideal)
    folder = ensure_characterization(out, characterization, ideal, multiplier)
    nl = load_nonidealities(str(folder / "nonidealities.json"))
    report = read_json_file(folder / "fit_report.json", "fit report")
    _, twin = load_run(run_dir, nominal(nl))
    twin, ideal = twin.double().eval(), ideal.double().eval()
    top = topology(multiplier)
    circuit = Circuit(CellBench.from_mac(spice.Netlist.load(top.mac)), spice.Netlist.load(RELU))
    circuit.check(report.get("normalization"))
    dataset_dir = None if data_dir is None else os.fspath(data_dir)
    data = run_dataset(run_dir, cfg, dataset_dir, "cpu")  # the copy notebook 06 already holds
    if not 1 <= images <= len(data.x_test):
        raise DataError(f"--images {images}: choose 1..{len(data.x_test)} (test images)")
    ident = stable_hash({"weights": weights_sha256(run_dir), "nl": nl.to_dict(),
                         "cell": circuit.bench.header, "relu": circuit.relu.text,
                         "dataset": data.fingerprint})[:10]  # fmt: skip
    netlists = ThreadPoolExecutor(max(1, workers), thread_name_prefix="ngspice")
    setup = Setup(circuit, twin, ideal, data.x_test[:images].double(),
                  data.y_test[:images].numpy(), nl, a_vt, ident, netlists, max_cells)  # fmt: skip
    with netlists:
        fs = full_scales(report, twin)
        units = sum(s.macs for s in twin.geometry.stages) + twin.geometry.stages[0].macs
        bounds = [(a, min(a + batch, images)) for a in range(0, images, batch)]
        timing: list[dict[str, float]] = []
        t0 = time.perf_counter()
        tasks = [Task(nominal_batch, {"setup": setup, "first": a, "last": b, "timing": timing},
                      points=(b - a) * units, key=f"{ident}:{a}-{b}") for a, b in bounds]  # fmt: skip
        store = ResultStore(out, COLUMNS, {"run": str(run_dir), "images": images,
                                           "characterization": str(folder), "ident": ident})  # fmt: skip
        with ThreadPoolExecutor(max(1, workers)) as pool:
            frame = run_tasks(tasks, store, pool if workers > 1 else None, resume=resume,
                              progress=progress, desc="circuit")  # fmt: skip
        wall = time.perf_counter() - t0
        summary = summarize(frame, fs)
        done = sum(t["images"] for t in timing)
        summary["timing"] = {
            "images_simulated_now": done, "wall_s": wall,
            "seconds_per_image": wall / done if done else None,
            "ngspice_s": {k: float(sum(t[k] for t in timing)) for k in ("conv", "relu", "linear")},
            "workers": workers,
        }  # fmt: skip
        summary["final_stage_inputs_beyond_clip"] = _beyond(frame, nl)
        summary["characterization"] = str(folder)
        summary["run"] = str(run_dir)
        decisions(frame).to_csv(out / "decisions.csv", index=False)
        if chips:
            summary["chips"] = run_chips(setup, out, chips, bounds, workers, resume, progress,
                                         frame, twin_chips)  # fmt: skip
    write_json_atomic(out / "summary.json", json.loads(json.dumps(summary, default=float)))
    return summary


def _beyond(frame: pd.DataFrame, nl: Nonidealities) -> dict[str, float]:
    """How many final-stage inputs (ReLU outputs) lie beyond the characterized input range."""
    clip = nl.linear_input_clip
    r = frame.loc[frame["stage"] == "relu", "circuit"].to_numpy(float)
    if clip is None or not len(r):
        return {"clip": float("nan"), "fraction": 0.0, "max": float(np.max(r, initial=0.0))}
    return {"clip": float(clip), "fraction": float(np.mean(np.abs(r) > clip)),
            "max": float(np.max(np.abs(r)))}  # fmt: skip


def run_chips(
    setup: Setup,
    out: Path,
    chips: int,
    bounds: list[tuple[int, int]],
    workers: int,
    resume: bool,
    progress: bool,
    nominal_frame: pd.DataFrame,
    twin_chips: int,
) -> dict[str, Any]:
    """SPICE chips 0..chips-1 vs twin chips: accuracy spread and output deviation from nominal."""
    timing: list[dict[str, float]] = []
    units = sum(s.macs for s in setup.twin.geometry.stages) + setup.twin.geometry.stages[0].macs
    tasks = [Task(chip_batch, {"setup": setup, "chip": c, "first": a, "last": b,
                               "timing": timing},
                  points=(b - a) * units, key=f"{setup.ident}:a{setup.a_vt:g}:chip{c}:{a}-{b}")
             for c in range(chips) for a, b in bounds]  # fmt: skip
    store = ResultStore(
        out / "chips", CHIP_COLUMNS, {"chips": chips, "a_vt_mv_um": setup.a_vt}, "chips"
    )
    with ThreadPoolExecutor(max(1, workers)) as pool:
        frame = run_tasks(tasks, store, pool if workers > 1 else None, resume=resume,
                          progress=progress, desc="chips")  # fmt: skip
    return chip_summary(setup, frame, nominal_frame, twin_chips)


def chip_summary(setup: Setup, frame: pd.DataFrame, nominal_frame: pd.DataFrame,
                 twin_chips: int) -> dict[str, Any]:  # fmt: skip
    """Per-chip accuracy (SPICE and twin chips of the same seeds, plus ``twin_chips`` more twin
    chips for the spread) and, per MAC stage, the std of chip - nominal outputs."""
    key = ["image", "stage", "unit"]
    nom = nominal_frame.set_index(key)
    acc_spice, acc_twin, dev = [], [], {}
    for _chip, f in frame.groupby("chip"):
        fin = f[f["stage"] == "linear"].pivot(index="image", columns="unit", values="circuit")
        tin = f[f["stage"] == "linear"].pivot(index="image", columns="unit", values="twin")
        labels = f.groupby("image")["label"].first().loc[fin.index].to_numpy()
        acc_spice.append(float(np.mean(fin.to_numpy().argmax(1) == labels)))
        acc_twin.append(float(np.mean(tin.to_numpy().argmax(1) == labels)))
        g = f.set_index(key)
        for stage in ("conv", "linear"):
            s = g.xs(stage, level="stage")
            n = nom.xs(stage, level="stage").loc[s.index]
            dev.setdefault(stage, {"circuit": [], "twin": []})
            dev[stage]["circuit"].append((s["circuit"] - n["circuit"]).to_numpy())
            dev[stage]["twin"].append((s["twin"] - n["twin"]).to_numpy())
    more = []
    labels = setup.labels
    for chip in range(twin_chips):
        t = _twin_chip(setup, 1000 + chip)
        s = twin_stages(t, setup.images)["linear"]
        more.append(float(np.mean(s.argmax(1) == labels)))
    return {
        "chips": len(acc_spice), "a_vt_mv_um": setup.a_vt,
        "accuracy_spice": acc_spice, "accuracy_twin_same_seeds": acc_twin,
        "accuracy_twin_more": {"chips": twin_chips, "mean": float(np.mean(more)) if more else None,
                               "std": float(np.std(more)) if more else None},
        "accuracy_spice_mean": float(np.mean(acc_spice)), "accuracy_spice_std": float(np.std(acc_spice)),
        "deviation_std": {st: {k: float(np.std(np.concatenate(v))) for k, v in d.items()}
                          for st, d in dev.items()},
    }  # fmt: skip


def print_lines(summary: dict[str, Any]) -> list[str]:
    """The summary lines (agreement, accuracy, stage errors, timing, chips)."""
    out = lines(summary)
    t = summary.get("timing", {})
    if t.get("seconds_per_image"):
        out.append(f"{t['images_simulated_now']} images simulated in {t['wall_s']:.1f} s "
                   f"({t['seconds_per_image']:.2f} s per image, {t['workers']} workers)")  # fmt: skip
    b = summary.get("final_stage_inputs_beyond_clip")
    if b and b["fraction"]:
        out.append(f"note: {100 * b['fraction']:.1f} % of the final stage's inputs exceed the "
                   f"characterized input range +-{b['clip']:g} (largest {b['max']:.3g}): the twin "
                   "clips there, the circuit does not")  # fmt: skip
    c = summary.get("chips")
    if c:
        dev = ", ".join(f"{k} {v['circuit']:.3g} (twin {v['twin']:.3g})"
                        for k, v in c["deviation_std"].items())  # fmt: skip
        out.append(f"{c['chips']} SPICE chips: accuracy {100 * c['accuracy_spice_mean']:.1f} +- "
                   f"{100 * c['accuracy_spice_std']:.1f} %; {c['accuracy_twin_more']['chips']} "
                   f"twin chips: {100 * (c['accuracy_twin_more']['mean'] or 0):.1f} +- "
                   f"{100 * (c['accuracy_twin_more']['std'] or 0):.1f} %; output deviation from "
                   f"nominal (std, V): {dev}")  # fmt: skip
    return out


__all__ = ["validate", "print_lines", "COLUMNS", "CHIP_COLUMNS"]
