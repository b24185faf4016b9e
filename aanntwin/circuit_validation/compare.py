"""The circuit against the twins: class decisions, per-stage errors, accuracy.

Input: the tidy results (one row per image, stage and unit: ``circuit``, ``twin`` (the
characterized twin's own chain), ``ideal`` (the ideal twin, same weights), ``twin_local`` /
``ideal_local`` (each twin stage fed the circuit's previous-stage outputs)).

Full scale of a stage (what % FS means here, as in :mod:`aanntwin.characterization.fidelity`):
a MAC's is ``fan_in`` x the multiplier's largest |y| in its characterization data (its output
range); the ReLU's is the largest |y| of its characterization data. Also given: errors in % of the
largest |circuit output| of the stage over these images (stricter where the outputs use little of
the range).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

TWINS = ("twin", "ideal")
"""Result columns of the characterized and the ideal twin."""


def scores(frame: pd.DataFrame, column: str, stage: str = "linear") -> pd.DataFrame:
    """Final-stage outputs as an images x classes table (index: image)."""
    f = frame[frame["stage"] == stage]
    return f.pivot(index="image", columns="unit", values=column).sort_index()


def _margins(values: np.ndarray) -> np.ndarray:
    top = np.sort(values, axis=1)
    return top[:, -1] - top[:, -2]


def decisions(frame: pd.DataFrame) -> pd.DataFrame:
    """Per image: label, the circuit's class and margin, each twin's class and margin."""
    labels = frame.groupby("image")["label"].first().sort_index()
    out = pd.DataFrame({"image": labels.index, "label": labels.to_numpy()})
    for col in ("circuit", *TWINS):
        s = scores(frame, col).to_numpy()
        out[f"{col}_class"] = s.argmax(axis=1)
        out[f"{col}_margin"] = _margins(s)
    return out


def stage_errors(frame: pd.DataFrame, full_scales: dict[str, float]) -> pd.DataFrame:
    """Per stage and twin: RMS and max |circuit - twin| in % of the stage's full scale and of
    the largest |circuit output|, for the twin's own chain and the stage alone (``local``)."""
    rows = []
    for stage, f in frame.groupby("stage", sort=False):
        seen = float(np.max(np.abs(f["circuit"])))
        fs = full_scales[stage]
        for twin in TWINS:
            for how, col in (("chain", twin), ("local", f"{twin}_local")):
                e = (f["circuit"] - f[col]).to_numpy(float)
                rms, mx = float(np.sqrt(np.mean(e**2))), float(np.max(np.abs(e)))
                rows.append({"stage": stage, "twin": twin, "inputs": how, "outputs": len(f),
                             "full_scale": fs, "max_abs_circuit": seen, "rms": rms, "max": mx,
                             "rms_pct_fs": 100 * rms / fs, "max_pct_fs": 100 * mx / fs,
                             "rms_pct_max": 100 * rms / seen if seen else float("nan")})  # fmt: skip
    return pd.DataFrame(rows)


def summarize(frame: pd.DataFrame, full_scales: dict[str, float]) -> dict[str, Any]:
    """Agreement, accuracies, per-stage errors and the disagreeing images (JSON-ready)."""
    d = decisions(frame)
    n = len(d)
    errs = stage_errors(frame, full_scales)
    out: dict[str, Any] = {"images": n, "full_scale": full_scales}
    out["accuracy"] = {
        c: float(np.mean(d[f"{c}_class"] == d["label"])) for c in ("circuit", *TWINS)
    }
    for twin in TWINS:
        agree = d["circuit_class"] == d[f"{twin}_class"]
        chain = errs[(errs["twin"] == twin) & (errs["inputs"] == "chain")]
        bad = d[~agree]
        out[twin] = {
            "agreement": int(agree.sum()),
            "agreement_rate": float(agree.mean()) if n else float("nan"),
            "stage_rms_pct_fs": dict(zip(chain["stage"], chain["rms_pct_fs"], strict=True)),
            "stage_max_pct_fs": dict(zip(chain["stage"], chain["max_pct_fs"], strict=True)),
            "stage_rms_pct_max": dict(zip(chain["stage"], chain["rms_pct_max"], strict=True)),
            "disagreeing": [
                {
                    "image": int(r.image),
                    "label": int(r.label),
                    "circuit_class": int(r.circuit_class),
                    "twin_class": int(getattr(r, f"{twin}_class")),
                    "twin_margin": float(getattr(r, f"{twin}_margin")),
                    "circuit_margin": float(r.circuit_margin),
                }
                for r in bad.itertuples(index=False)
            ],  # fmt: skip
        }
    out["stage_errors"] = errs.to_dict(orient="records")
    return out


def lines(summary: dict[str, Any]) -> list[str]:
    """A few printable lines: agreement, accuracy and per-stage RMS for both twins."""
    n, acc = summary["images"], summary["accuracy"]
    out = [f"{n} images: accuracy circuit {100 * acc['circuit']:.1f} %, characterized twin "
           f"{100 * acc['twin']:.1f} %, ideal twin {100 * acc['ideal']:.1f} %"]  # fmt: skip
    for twin, name in (("twin", "characterized twin"), ("ideal", "ideal twin")):
        s = summary[twin]
        rms = ", ".join(f"{k} {v:.3f}" for k, v in s["stage_rms_pct_fs"].items())
        out.append(f"{name}: class decisions agree on {s['agreement']}/{n}; per-stage RMS error "
                   f"(% FS): {rms}")  # fmt: skip
        for r in s["disagreeing"][:5]:
            out.append(f"  image {r['image']} (label {r['label']}): circuit says "
                       f"{r['circuit_class']}, {name} {r['twin_class']} (twin margin "
                       f"{r['twin_margin']:.3g} V)")  # fmt: skip
    return out
