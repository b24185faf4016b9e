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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Nonidealities
from ..errors import AanntwinError, DataError
from ..io import write_json_atomic, write_text_atomic
from . import plots as P
from . import spice
from .circuits import EXAMPLE_FILES, MAC_INPUTS, RELU, topology
from .curves import CurveTable, read_all, validate, write_csv
from .fidelity import fidelity, heldout_conditions
from .fit import Fit, fit_montecarlo, fit_multiplier, fit_noise, fit_relu
from .sanity import check_fits, check_table, field_sources, fit_warnings, refused
from .separable import SeparableModel, fit_separable
from .trust import as_written, trust_warnings
from .trust import lines as trust_lines
from .twin import fan_ins, to_nonidealities

X_SWEEP = np.round(np.arange(-1.5, 1.5 + 1e-9, 0.05), 6)
"""Multiplier input sweep (x units): to 1.5 x full scale, to see the saturation."""
W_SWEEP = np.round(np.linspace(-1.0, 1.0, 17), 6)
MC_X, MC_W = np.round(np.linspace(-1.5, 1.5, 13), 6), np.round(np.linspace(-1.0, 1.0, 5), 6)
RELU_SWEEP = np.round(np.arange(-1.0, 2.0 + 1e-9, 0.02), 6)


@dataclass(frozen=True)
class SimOptions:
    """What ``--simulate`` runs: mismatch ``instances`` with Pelgrom ``a_vt`` (mV um) from
    ``seed``; noise over ``band`` (Hz); ``heldout`` MAC conditions from ``heldout_seed``;
    ``multiplier``: the topology (a name in :data:`~aanntwin.characterization.circuits.MULTIPLIERS`)
    whose multiplier and MAC testbenches run (the ReLU is shared)."""

    instances: int = 20
    seed: int = 0
    a_vt: float = 5.0
    band: tuple[float, float] = (1e3, 1e7)
    heldout: int = 200
    heldout_seed: int = 1
    model_card: str | None = None
    multiplier: str = "gilbert"


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
    options: SimOptions = SimOptions(),
    out_dir: str | os.PathLike[str] | None = None,
    shown_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[CurveTable], dict[str, float]]:
    """Run every analysis of the shipped circuits; datasets (written as CSVs under ``out_dir``
    when given, names as in :data:`aanntwin.characterization.circuits.EXAMPLE_FILES`) and ngspice times (s).
    ``shown_dir``: where the CSVs will be once ``out_dir`` is moved into place (a command's
    temporary folder): messages name them there."""
    card, top = options.model_card, topology(options.multiplier)
    mult, relu = spice.Netlist.load(top.multiplier, card), spice.Netlist.load(RELU, card)
    mac = spice.Netlist.load(top.mac, card)
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
            shown = str(Path(shown_dir) / path.name) if shown_dir is not None else str(path)
            datasets.extend(replace(d, source=shown) for d in read_all([path]))
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
    separable: SeparableModel | None = None
    """The tabulated (separable) fit of the multiplier (None: no grid data)."""
    as_written: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per circuit: the written twin against its data (% FS) beside the fit's residual."""
    warnings: list[str] = field(default_factory=list)
    """Where the twin as written departs from the circuit more than the fit does, with the fix."""

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
            "twin_as_written": self.as_written,
            "fidelity": fid,
            "warnings": self.warnings,
            "seconds": self.seconds,
        }


def characterize(
    datasets: list[CurveTable],
    fan_in: dict[str, int] | None = None,
    degree: int = 7,
    transfer: str = "auto",
) -> Characterization:
    """Fit every circuit present; map to Nonidealities (``transfer``: how the multiplier's
    transfers are written, see :func:`~aanntwin.characterization.twin.choose_transfer`); check
    the twin as written per circuit, and on the MAC when MAC data is given."""
    t0 = time.perf_counter()
    for d in datasets:
        check_table(d)
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
    check_fits(fits)
    sep = None
    if "multiplier" in fits:
        m = fits["multiplier"]
        sep = fit_separable(*(m.data[c].to_numpy(float) for c in "xwy"), m.model)
        if sep is not None:
            m.extra["separable"] = {"residual_rms": sep.rms, "residual_max": sep.max_abs,
                                    "residual_rms_pct_fs": 100 * sep.rms / m.full_scale,
                                    "residual_max_pct_fs": 100 * sep.max_abs / m.full_scale,
                                    "inputs": len(sep.x), "weights": len(sep.w)}  # fmt: skip
    try:
        nl, how, lacking = to_nonidealities(
            fits.get("multiplier"), fits.get("relu"), noise, mismatch, fan_in, degree, sep, transfer
        )
    except AanntwinError as exc:  # a fitted value the twin cannot take: say which fit gave it
        raise refused(exc, field_sources(by)) from None
    norm = {
        f"{d.circuit} {d.analysis}": {a: f"{d.full_scale(a)[0]:g} {d.full_scale(a)[1]}"
                                      for a in "xwy" if d.full_scale(a) is not None}
        for d in datasets
    }  # fmt: skip
    result = Characterization(fits, noise, mismatch, nl, how, lacking, fan_in, normalization=norm)
    result.separable = sep
    result.as_written = as_written(fits, nl, how)
    if ("mac", "dc") in by and "multiplier" in fits:
        f = by[("mac", "dc")].frame
        n = sum(c.startswith("x") for c in f.columns)
        x = f[[f"x{i}" for i in range(1, n + 1)]].to_numpy()
        w = f[[f"w{i}" for i in range(1, n + 1)]].to_numpy()
        m = fits["multiplier"]
        cell = sep if sep is not None and sep.rms < m.rms else m.model
        result.fidelity = fidelity(x, w, f["y"].to_numpy(), nl, cell, m.full_scale,
                                   how["transfer"]["offset"])  # fmt: skip
        result.fidelity["_y"] = f["y"].to_numpy()
    result.warnings = fit_warnings(fits, mismatch, mc_data) + trust_warnings(result)
    result.seconds["fit"] = time.perf_counter() - t0
    return result


def write_outputs(
    result: Characterization, out_dir: str | os.PathLike[str], plots: bool = True
) -> dict[str, Path]:
    """Write ``nonidealities.json``, ``fit_report.json``, ``fit_parameters.csv``,
    ``fit_residuals.csv``, ``fidelity.csv`` (with MAC data) and ``plots/*.png``
    (:func:`~aanntwin.characterization.plots.write_plots`)."""
    out = Path(out_dir)
    paths = {"nonidealities": out / "nonidealities.json", "report": out / "fit_report.json"}
    write_text_atomic(paths["nonidealities"], result.nonidealities.to_json() + "\n")
    write_json_atomic(paths["report"], json.loads(json.dumps(result.report(), default=_plain)))
    rows = [
        {
            "circuit": c,
            "parameter": k,
            "value": v,
            "stderr": f.stderr.get(k),
            "unit": f.units[k],
            "undetermined": f.undetermined.get(k, ""),
        }
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
                      "y_fit": fid["_pred_fit"]}).to_csv(paths["fidelity"], index=False)  # fmt: skip
    if plots:  # multiplier, transfers, relu, noise, montecarlo, fidelity (what has data)
        paths.update(P.write_plots(result, out / "plots"))
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
        "fidelity_fit_rms_pct_fs": fid["fit"]["rms_pct_fs"],
        "cell_twin_rms_pct_fs": result.as_written["multiplier"]["rms_pct_fs"],
        "cell_fit_rms_pct_fs": result.as_written["multiplier"]["fits"]["parametric"]["rms_pct_fs"],
        "cell_tabulated_fit_rms_pct_fs": result.as_written["multiplier"]["fits"]
        .get("separable", {})
        .get("rms_pct_fs", float("nan")),
        "transfer": result.as_written["multiplier"]["transfer"],
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
        sep = m.extra.get("separable")
        tab = f"; tabulated fit {sep['residual_rms_pct_fs']:.3f} % FS RMS" if sep else ""
        lines.append(
            f"multiplier fit: {_params(m, ('G', 'Xs', 'a3', 'c3', 'b'))}; residual RMS "
            f"{100 * m.rms / m.full_scale:.3f} % FS, max {100 * m.max_abs / m.full_scale:.3f} % "
            f"FS ({len(m.data)} points){tab}"
        )
    r = result.fits.get("relu")
    if r is not None:
        lines.append(
            f"relu fit: {_params(r, ('floor', 'gain', 'knee', 'softness'))}; residual RMS "
            f"{100 * r.rms / r.full_scale:.3f} % FS"
        )
    for c, f in result.fits.items():
        for k, why in f.undetermined.items():
            lines.append(f"{c} {k}: undetermined ({why}); default {f.defaults()[k]}")
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
    lines.extend(trust_lines(result))
    f = result.fidelity
    if f is not None:
        t, e = f["twin"], f["fit"]
        lines.append(
            f"fidelity, twin as written (MAC of {f['inputs']}, {f['conditions']} held-out "
            f"conditions): RMS {t['rms_pct_fs']:.3f} % FS, max {t['max_pct_fs']:.3f} % FS (full "
            f"scale {f['full_scale']:.4g}); fitted cells summed: RMS {e['rms_pct_fs']:.3f} %, "
            f"max {e['max_pct_fs']:.3f} %"
        )
    return lines


def _params(fit: Fit, names: tuple[str, ...]) -> str:
    """``name value +- stderr`` for each parameter, ``name ?`` when undetermined."""
    return ", ".join(
        f"{k} ?" if k in fit.undetermined else f"{k} {fit.params[k]:.4g} +- {fit.stderr[k]:.2g}"
        for k in names
    )
