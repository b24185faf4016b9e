"""Characterization: simulate or read transfer curves, fit the circuit models, write the twin's
Nonidealities file, a fit report and plots, and check the twin against the circuit.

``aanntwin characterize --simulate --out DIR`` runs the shipped netlists with ngspice (multiplier
DC sweep, noise, mismatch Monte Carlo, ReLU sweep and noise, MAC on held-out conditions);
``--csv FILES`` reads measured or simulated data (:mod:`aanntwin.characterization.curves`). Fits:
:mod:`aanntwin.characterization.fit`; mapping to the twin: :mod:`aanntwin.characterization.twin`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Nonidealities
from ..errors import DataError
from ..io import write_json_atomic, write_text_atomic
from . import plots as P
from . import spice
from .circuits import EXAMPLE_FILES, MAC, MAC_INPUTS, MULTIPLIER, RELU
from .curves import CurveTable, read_all, validate, write_csv
from .fit import Fit, fit_montecarlo, fit_multiplier, fit_noise, fit_relu
from .twin import fan_ins, fidelity, heldout_conditions, to_nonidealities

X_SWEEP = np.round(np.arange(-1.5, 1.5 + 1e-9, 0.05), 6)
"""Multiplier input sweep (x units): to 1.5 x full scale, to see the saturation."""
W_SWEEP = np.round(np.linspace(-1.0, 1.0, 17), 6)
MC_X, MC_W = np.round(np.linspace(-1.5, 1.5, 13), 6), np.round(np.linspace(-1.0, 1.0, 5), 6)
RELU_SWEEP = np.round(np.arange(-1.0, 2.0 + 1e-9, 0.02), 6)


@dataclass(frozen=True)
class SimOptions:
    """What ``--simulate`` runs: mismatch ``instances`` with Pelgrom ``a_vt`` (mV um) from
    ``seed``; noise over ``band`` (Hz); ``heldout`` MAC conditions from ``heldout_seed``."""

    instances: int = 20
    seed: int = 0
    a_vt: float = 5.0
    band: tuple[float, float] = (1e3, 1e7)
    heldout: int = 200
    heldout_seed: int = 1
    model_card: str | None = None


def _scales(net: spice.Netlist, circuit: str) -> dict[str, tuple[float, str, str]]:
    if circuit == "relu":
        return {
            "x": (net.param("XFS"), "A", "input current at x = 1.0"),
            "y": (net.param("YFS"), "A", "output current at y = 1.0"),
        }
    return {
        "x": (net.param("XFS"), "V", "differential input voltage at x = 1.0"),
        "w": (net.param("WFS"), "V", "differential weight voltage at w = 1.0"),
        "y": (net.param("YFS"), "A", "differential output current at y = 1.0 (twin: 1 V)"),
    }


def simulate(
    options: SimOptions = SimOptions(), out_dir: str | os.PathLike[str] | None = None
) -> tuple[list[CurveTable], dict[str, float]]:
    """Run every analysis of the shipped circuits; datasets (written as CSVs under ``out_dir``
    when given, names as in :data:`aanntwin.characterization.circuits.EXAMPLE_FILES`) and ngspice times (s)."""
    card = options.model_card
    mult, relu = spice.Netlist.load(MULTIPLIER, card), spice.Netlist.load(RELU, card)
    mac = spice.Netlist.load(MAC, card)
    lo, hi = options.band
    span, n = float(X_SWEEP.max()), MAC_INPUTS
    xh, wh = heldout_conditions(options.heldout, n, span, 1.0, options.heldout_seed)
    runs: dict[tuple[str, str], tuple[spice.Netlist, pd.DataFrame, dict[str, Any]]] = {
        ("multiplier", "dc"): (mult, spice.dc_transfer(mult, X_SWEEP, W_SWEEP), {}),
        ("multiplier", "noise"): (
            mult,
            spice.noise(mult, spice.grid([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]), lo, hi),
            {"band": f"{lo:g}..{hi:g} Hz (output noise integrated, RMS)"},
        ),
        ("multiplier", "montecarlo"): (
            mult,
            spice.monte_carlo(mult, options.instances, MC_X, MC_W, options.a_vt, options.seed),
            {
                "mismatch": f"Pelgrom threshold offsets, A_VT {options.a_vt:g} mV um per pair, "
                f"seed {options.seed}, {options.instances} instances"
            },  # fmt: skip
        ),
        ("relu", "dc"): (relu, spice.dc_transfer(relu, RELU_SWEEP), {}),
        ("relu", "noise"): (
            relu,
            spice.noise(relu, spice.grid([0.0, 0.5, 1.0, 2.0]), lo, hi),
            {"band": f"{lo:g}..{hi:g} Hz (output noise integrated, RMS)"},
        ),
        ("mac", "dc"): (
            mac,
            spice.mac_transfer(mac, xh, wh),
            {"conditions": f"held-out: uniform random, seed {options.heldout_seed}"},
        ),
    }
    version = spice.ngspice_version()
    datasets, seconds = [], {}
    for (circuit, analysis), (net, frame, notes) in runs.items():
        seconds[f"{circuit}_{analysis}"] = float(frame.attrs.get("seconds", float("nan")))
        scales = _scales(net, circuit)
        src = f"{version} simulation of aanntwin/circuits/{net.name}"
        meta = {"source": src + (f" with {card}" if card else " (generic made-up BSIM3 card)")}
        meta.update(notes)
        if out_dir is not None:
            path = Path(out_dir) / EXAMPLE_FILES[(circuit, analysis)].name
            write_csv(path, frame, circuit, analysis, scales, meta)
            datasets.extend(read_all([path]))
            continue
        header = {f"{a}_full_scale": f"{v:g} {u}" for a, (v, u, _) in scales.items()}
        ds = CurveTable(circuit, analysis, frame.reset_index(drop=True), {**header, **meta}, src)
        datasets.append(validate(ds))
    return datasets, seconds


@dataclass
class Characterization:
    """Everything fitted from a set of datasets (see :func:`characterize`)."""

    fits: dict[str, Fit]
    noise: dict[str, dict[str, Any]]
    mismatch: dict[str, Any] | None
    nonidealities: Nonidealities
    mapping: dict[str, Any]
    lacking: list[dict[str, Any]]
    fan_in: dict[str, int]
    fidelity: dict[str, Any] | None = None
    normalization: dict[str, dict[str, str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """JSON-ready fit report (parameters, residuals, mapping, fidelity)."""
        fits = {k: f.summary() for k, f in self.fits.items()}
        for k, f in self.fits.items():
            if not f.groups.empty:
                fits[k]["per_weight"] = f.groups.to_dict(orient="records")
        mc = None
        if self.mismatch is not None:
            mc = {k: v for k, v in self.mismatch.items() if k != "per_instance"}
        fid = None
        if self.fidelity is not None:
            fid = {k: v for k, v in self.fidelity.items() if not k.startswith("_")}
        return {
            "normalization": self.normalization,
            "fits": fits,
            "noise": self.noise,
            "mismatch": mc,
            "fan_in": self.fan_in,
            "nonidealities": self.nonidealities.active(),
            "mapping": self.mapping,
            "not_represented_by_the_twin": self.lacking,
            "fidelity": fid,
            "seconds": self.seconds,
        }


def characterize(
    datasets: list[CurveTable], fan_in: dict[str, int] | None = None, degree: int = 7
) -> Characterization:
    """Fit every circuit present; map to Nonidealities; check fidelity if MAC data is given."""
    t0 = time.perf_counter()
    by = {(d.circuit, d.analysis): d for d in datasets}
    fan_in = fan_in or fan_ins()
    fits: dict[str, Fit] = {}
    mc_data = by.get(("multiplier", "montecarlo"))
    if ("multiplier", "dc") in by:
        fits["multiplier"] = fit_multiplier(by[("multiplier", "dc")])
    elif mc_data is not None:  # chip data of several instances only: fit the pooled data
        fits["multiplier"] = fit_multiplier(mc_data)
    if ("relu", "dc") in by:
        fits["relu"] = fit_relu(by[("relu", "dc")])
    noise = {c: fit_noise(by[(c, "noise")]) for c in ("multiplier", "relu") if (c, "noise") in by}
    mismatch = None
    if mc_data is not None:
        mismatch = fit_montecarlo(mc_data, fits["multiplier"].model)
    if not fits and not noise:
        raise DataError("no multiplier or relu data to fit (see aanntwin.characterization.curves)")
    nl, how, lacking = to_nonidealities(
        fits.get("multiplier"), fits.get("relu"), noise, mismatch, fan_in, degree
    )
    norm = {
        f"{d.circuit} {d.analysis}": {a: f"{d.full_scale(a)[0]:g} {d.full_scale(a)[1]}"
                                      for a in "xwy" if d.full_scale(a) is not None}
        for d in datasets
    }  # fmt: skip
    result = Characterization(fits, noise, mismatch, nl, how, lacking, fan_in, normalization=norm)
    if ("mac", "dc") in by and "multiplier" in fits:
        f = by[("mac", "dc")].frame
        n = sum(c.startswith("x") for c in f.columns)
        x = f[[f"x{i}" for i in range(1, n + 1)]].to_numpy()
        w = f[[f"w{i}" for i in range(1, n + 1)]].to_numpy()
        result.fidelity = fidelity(x, w, f["y"].to_numpy(), nl, fits["multiplier"])
        result.fidelity["_y"] = f["y"].to_numpy()
    result.seconds["fit"] = time.perf_counter() - t0
    return result


def write_outputs(
    result: Characterization, out_dir: str | os.PathLike[str], plots: bool = True
) -> dict[str, Path]:
    """Write ``nonidealities.json``, ``fit_report.json``, ``fit_parameters.csv``,
    ``fit_residuals.csv``, ``fidelity.csv`` (with MAC data) and ``plots/*.png``."""
    out = Path(out_dir)
    paths = {"nonidealities": out / "nonidealities.json", "report": out / "fit_report.json"}
    write_text_atomic(paths["nonidealities"], result.nonidealities.to_json() + "\n")
    write_json_atomic(paths["report"], json.loads(json.dumps(result.report(), default=_plain)))
    rows = [
        {"circuit": c, "parameter": k, "value": v, "stderr": f.stderr.get(k), "unit": f.units[k]}
        for c, f in result.fits.items()
        for k, v in f.params.items()
    ]
    for c, nz in result.noise.items():
        rows.append({"circuit": c, "parameter": "noise_sigma", "value": nz["sigma"],
                     "unit": f"y RMS, {nz['band_hz'][0]:g}..{nz['band_hz'][1]:g} Hz"})  # fmt: skip
    if result.mismatch is not None:
        for k, unit in result.mismatch["units"].items():
            rows.append({"circuit": "multiplier", "parameter": k,
                         "value": result.mismatch[k], "unit": unit})  # fmt: skip
    paths["parameters"] = out / "fit_parameters.csv"
    pd.DataFrame(rows).to_csv(paths["parameters"], index=False)
    res = [f.groups.assign(circuit=c) for c, f in result.fits.items() if not f.groups.empty]
    res += [
        pd.DataFrame([{"circuit": c, "rms": f.rms, "max": f.max_abs, "n": len(f.data)}])
        for c, f in result.fits.items()
    ]
    if res:
        paths["residuals"] = out / "fit_residuals.csv"
        pd.concat(res, ignore_index=True).to_csv(paths["residuals"], index=False)
    fid = result.fidelity
    if fid is not None:
        paths["fidelity"] = out / "fidelity.csv"
        pd.DataFrame({"y_circuit": fid["_y"], "y_twin": fid["_pred_twin"],
                      "y_twin_existing_fields": fid["_pred_twin_existing_fields"]}).to_csv(
            paths["fidelity"], index=False)  # fmt: skip
    if plots:
        figs = out / "plots"
        if "multiplier" in result.fits:
            paths["plot_multiplier"] = P.plot_multiplier(
                result.fits["multiplier"], figs / "multiplier.png"
            )
        if "relu" in result.fits:
            paths["plot_relu"] = P.plot_relu(result.fits["relu"], figs / "relu.png")
        if result.mismatch is not None:
            paths["plot_montecarlo"] = P.plot_montecarlo(result.mismatch, figs / "montecarlo.png")
        if fid is not None:
            paths["plot_fidelity"] = P.plot_fidelity(
                fid["_y"], fid["_pred_twin"], fid["full_scale"], figs / "fidelity.png"
            )
    return paths


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, pd.DataFrame):
        return obj.to_dict(orient="records")
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def bench_fidelity(
    options: SimOptions = SimOptions(), out_dir: str | None = None
) -> dict[str, float]:
    """Simulate everything, fit, check the MAC on held-out conditions: fidelity RMS and max
    (% of full scale) and timings (s). Needs ngspice."""
    t0 = time.perf_counter()
    datasets, seconds = simulate(options, out_dir)
    t1 = time.perf_counter()
    result = characterize(datasets)
    fid = result.fidelity or {}
    return {
        "fidelity_rms_pct_fs": fid["twin"]["rms_pct_fs"],
        "fidelity_max_pct_fs": fid["twin"]["max_pct_fs"],
        "fidelity_existing_fields_rms_pct_fs": fid["twin_existing_fields"]["rms_pct_fs"],
        "fidelity_existing_fields_max_pct_fs": fid["twin_existing_fields"]["max_pct_fs"],
        "heldout_conditions": fid["conditions"],
        **{f"ngspice_{k}_s": v for k, v in seconds.items()},
        "simulate_wall_s": t1 - t0,
        "fit_s": time.perf_counter() - t1,
    }


def summary(result: Any) -> list[str]:
    """One line per fit, the mapping's fan-ins and the fidelity figure."""
    lines = []
    m = result.fits.get("multiplier")
    if m is not None:
        p = m.params
        lines.append(
            f"multiplier: G {p['G']:.4g}, Xs {p['Xs']:.4g} x, a3 {p['a3']:.3g}, c3 {p['c3']:.3g}, "
            f"b {p['b']:.2g}; residual RMS {100 * m.rms / m.full_scale:.3f} % FS, max "
            f"{100 * m.max_abs / m.full_scale:.3f} % FS ({len(m.data)} points)"
        )
    r = result.fits.get("relu")
    if r is not None:
        p = r.params
        lines.append(
            f"relu: floor {p['floor']:.3g}, gain {p['gain']:.4g}, knee {p['knee']:.3g}, "
            f"softness {p['softness']:.3g}; residual RMS {100 * r.rms / r.full_scale:.3f} % FS; "
            f"twin relu_cutoff {r.extra['twin_relu_cutoff']:.3g}"
        )
    for c, nz in result.noise.items():
        lo, hi = nz["band_hz"]
        lines.append(f"noise: {c} {nz['sigma']:.3g} (y RMS, {lo:g}..{hi:g} Hz)")
    mc = result.mismatch
    if mc is not None:
        lines.append(
            f"mismatch: gain {100 * mc['gain_sigma']:.2f} %, equivalent offset "
            f"{mc['equivalent_offset_sigma']:.3g} y per multiplier ({mc['instances']} instances)"
        )
    lines.append(f"fan-in: conv2d {result.fan_in['conv2d']}, linear {result.fan_in['linear']}")
    f = result.fidelity
    if f is not None:
        t, e = f["twin"], f["twin_existing_fields"]
        lines.append(
            f"fidelity (MAC of {f['inputs']}, {f['conditions']} held-out conditions): RMS "
            f"{t['rms_pct_fs']:.3f} % FS, max {t['max_pct_fs']:.3f} % FS (full scale "
            f"{f['full_scale']:.4g}); with linear weights (present twin): RMS "
            f"{e['rms_pct_fs']:.3f} %, max {e['max_pct_fs']:.3f} %"
        )
    return lines
