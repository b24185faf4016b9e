"""Characterization data format: CSV with a ``#`` header, for SPICE runs and chip measurements.

A file starts with ``# key: value`` lines, then a CSV table::

    # format: aanntwin-characterization/1
    # circuit: multiplier
    # analysis: dc
    # x_full_scale: 0.1 V | differential input voltage at x = 1.0
    # w_full_scale: 0.2 V | differential weight voltage at w = 1.0
    # y_full_scale: 1e-05 A | differential output current at y = 1.0
    x,w,y
    -1.5,-1,1.243279
    ...

Values are normalized: ``x``, ``w`` and ``y`` are multiples of the header's full scales, and the
twin's volts are these units (the twin's 1 V at a multiplier input is ``x_full_scale``; a MAC
output of 1 V is ``y_full_scale``). Circuits, analyses and their required columns are in
:data:`REQUIRED`; ``circuit`` / ``analysis`` may be columns instead of header lines (long
format: several circuits in one file; a full scale for one circuit only is ``x_full_scale.relu``).
Without an ``analysis``, a ``noise_rms`` column means ``noise``, an ``instance`` column (chip or
Monte Carlo run) ``montecarlo``, otherwise ``dc``. Full scales are ``V`` or ``A`` with an SI
prefix, one per quantity across files (:mod:`~aanntwin.characterization.units`). Bad data raises
:class:`~aanntwin.errors.DataError` naming the file, the line (counted from the file's first
line) and the column or header field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from . import MIN_DC_ROWS, csv_format, units
from .csv_format import FORMAT

REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    ("multiplier", "dc"): ("x", "w", "y"),
    ("multiplier", "montecarlo"): ("instance", "x", "w", "y"),
    ("multiplier", "noise"): ("x", "w", "noise_rms", "f_low_hz", "f_high_hz"),
    ("relu", "dc"): ("x", "y"),
    ("relu", "noise"): ("x", "noise_rms", "f_low_hz", "f_high_hz"),
    ("mac", "dc"): ("x1", "w1", "y"),
}
"""Required columns per (circuit, analysis); a ``mac`` also has ``x2..xN``, ``w2..wN``."""
MIN_ROWS = {"dc": MIN_DC_ROWS, "montecarlo": 8, "noise": 1}
UNITS = {
    "x": "x_full_scale",
    "w": "w_full_scale",
    "y": "y_full_scale",
    "noise_rms": "y_full_scale (RMS over the band)",
    "f_low_hz": "Hz",
    "f_high_hz": "Hz",
    "instance": "label",
}
"""Unit of each column (``x1``.. and ``w1``.. as ``x`` and ``w``)."""


@dataclass
class CurveTable:
    """One (circuit, analysis) table: normalized numeric columns, header metadata, provenance.

    ``lines``: the file line number of each row (for error messages); ``meta``: header values;
    ``meta_lines``: the file line number of each header key.
    """

    circuit: str
    analysis: str
    frame: pd.DataFrame
    meta: dict[str, str] = field(default_factory=dict)
    source: str = "<memory>"
    lines: np.ndarray | None = None
    meta_lines: dict[str, int] = field(default_factory=dict)

    def scale_key(self, axis: str) -> str | None:
        """The header key giving ``axis``'s full scale (``x_full_scale.relu`` before
        ``x_full_scale``), or None (none, or an axis the circuit does not have)."""
        if axis not in units.FIELDS.get(self.circuit, {}):
            return None
        for key in (f"{axis}_full_scale.{self.circuit}", f"{axis}_full_scale"):
            if key in self.meta:
                return key
        return None

    def full_scale(self, axis: str) -> tuple[float, str] | None:
        """What 1.0 means on ``axis`` (``x``, ``w``, ``y``): (value in V or A, ``V``/``A``), or
        None; a bad unit raises :class:`DataError` naming the header line."""
        key = self.scale_key(axis)
        if key is None:
            return None
        unit = units.FIELDS[self.circuit][axis]
        return units.parse_full_scale(self.meta[key], unit, self.field_where(key))

    def field_where(self, key: str) -> str:
        """``FILE, line N, field 'KEY' (circuit)`` for a header field."""
        line = self.meta_lines.get(key)
        at = f", line {line}" if line else ""
        return f"{self.source}{at}, field {key!r} ({self.circuit})"

    def where(self, row: int, column: str) -> str:
        line = int(self.lines[row]) if self.lines is not None else row + 1
        return f"{self.source}, line {line}, column {column!r}"

    @property
    def label(self) -> str:
        return f"{self.circuit} {self.analysis}"


def read_csv(path: str | os.PathLike[str]) -> list[CurveTable]:
    """Read one characterization file: one :class:`CurveTable` per (circuit, analysis) in it."""
    name = str(path)
    lines = csv_format.read_lines(path)
    meta, meta_lines, start = csv_format.header(lines, name)
    raw, numbers = csv_format.table(lines, start, name)
    for key in ("circuit", "analysis"):
        if key not in raw.columns:
            if key in meta:
                raw[key] = meta[key]
            elif key == "circuit":
                raise DataError(f"{name}: no circuit (a '# circuit: multiplier' line or column)")
            else:
                raw[key] = _infer_analysis(raw.columns)
    out = []
    for (circuit, analysis), idx in raw.groupby(["circuit", "analysis"], sort=False).groups.items():
        rows = raw.index.get_indexer(idx)
        part = raw.iloc[rows].drop(columns=["circuit", "analysis"]).reset_index(drop=True)
        blank = [c for c in part.columns if (part[c].str.strip() == "").all()]
        part = part.drop(columns=blank)  # long format: columns another circuit uses
        ds = CurveTable(
            str(circuit).strip(), str(analysis).strip(), part, meta, name, numbers[rows], meta_lines
        )
        out.append(validate(ds))
    check_consistent(out)
    return out


def _infer_analysis(columns: Sequence[str]) -> str:
    if "noise_rms" in columns:
        return "noise"
    return "montecarlo" if "instance" in columns else "dc"


def required_columns(circuit: str, analysis: str, columns: Sequence[str] = ()) -> tuple[str, ...]:
    """The columns a (circuit, analysis) needs (for a MAC: every ``xK``/``wK`` present)."""
    need = REQUIRED[(circuit, analysis)]
    if circuit == "mac":
        k = max([int(c[1:]) for c in columns if re.fullmatch(r"[xw]\d+", c)] or [1])
        need = tuple(f"{a}{i}" for a in "xw" for i in range(1, k + 1)) + ("y",)
    return need


def validate(ds: CurveTable) -> CurveTable:
    """Check columns, numbers, row count, sweep order and header; numeric columns as floats."""
    known = sorted({f"{c} {a}" for c, a in REQUIRED})
    if (ds.circuit, ds.analysis) not in REQUIRED:
        raise DataError(
            f"{ds.where(0, 'circuit')}: unknown circuit/analysis {ds.label!r}; known: "
            + ", ".join(known)
        )
    need = required_columns(ds.circuit, ds.analysis, list(ds.frame.columns))
    missing = [c for c in need if c not in ds.frame.columns]
    if missing:
        raise DataError(
            f"{ds.source}: {ds.label} data has no column {missing[0]!r} (required: "
            f"{', '.join(need)})"
        )
    frame = ds.frame.copy()
    for col in frame.columns:
        if col == "instance":
            blank = frame[col].astype(str).str.strip() == ""
            if blank.any():
                raise DataError(f"{ds.where(int(np.argmax(blank)), col)}: empty instance label")
            continue
        values = pd.to_numeric(frame[col].astype(str).str.strip(), errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{ds.where(row, col)}: not a finite number ({frame[col].iloc[row]!r})")
        frame[col] = values.astype(float)
    ds = CurveTable(ds.circuit, ds.analysis, frame, ds.meta, ds.source, ds.lines, ds.meta_lines)
    minimum = MIN_ROWS[ds.analysis]
    if len(frame) < minimum:
        raise DataError(
            f"{ds.source}: {ds.label} has {len(frame)} row(s); at least {minimum} are needed"
        )
    for axis in units.FIELDS[ds.circuit]:
        if ds.full_scale(axis) is None:
            raise DataError(
                f"{ds.source}: header has no '{axis}_full_scale' (what {axis} = 1.0 means, "
                f"e.g. '# {axis}_full_scale: 0.1 V')"
            )
    if ds.analysis in ("dc", "montecarlo") and ds.circuit != "mac":
        _check_monotonic(ds)
    if ds.analysis == "noise":
        _check_noise(ds)
    return ds


def _check_monotonic(ds: CurveTable) -> None:
    """Within each sweep (rows with the same instance and weight), x strictly monotonic."""
    f = ds.frame
    keys = [c for c in ("instance", "w") if c in f.columns]
    group = f.groupby(keys, sort=False).ngroup().to_numpy() if keys else np.zeros(len(f), int)
    order = np.argsort(group, kind="stable")
    x, g = f["x"].to_numpy()[order], group[order]
    same = g[1:] == g[:-1]
    dx = np.diff(x)
    start = np.searchsorted(g, g[:-1], side="left")  # first row of each row's sweep
    direction = np.sign(dx[np.minimum(start, len(dx) - 1)]) if len(dx) else dx
    bad = same & ((dx == 0) | (np.sign(dx) != direction))
    if bad.any():
        row = int(order[int(np.argmax(bad)) + 1])
        raise DataError(
            f"{ds.where(row, 'x')}: the x sweep is not monotonic here (x = {f['x'].iloc[row]:g}); "
            "each sweep (one weight, one instance) must be strictly increasing or decreasing"
        )
    counts = np.bincount(group)
    if counts.min() < 3:
        row = int(np.argmax(group == int(np.argmin(counts))))
        raise DataError(f"{ds.where(row, 'x')}: a sweep with {counts.min()} point(s); need >= 3")


def _check_noise(ds: CurveTable) -> None:
    f = ds.frame
    negative = f["noise_rms"].to_numpy() < 0
    if negative.any():
        raise DataError(f"{ds.where(int(np.argmax(negative)), 'noise_rms')}: negative noise")
    band = f[["f_low_hz", "f_high_hz"]].to_numpy()
    bad = (band[:, 0] <= 0) | (band[:, 1] <= band[:, 0]) | np.any(band != band[0], axis=1)
    if bad.any():
        raise DataError(
            f"{ds.where(int(np.argmax(bad)), 'f_low_hz')}: the band must be 0 < f_low < f_high "
            "and the same on every row (a noise figure holds for one stated bandwidth)"
        )


def write_csv(
    path: str | os.PathLike[str],
    frame: pd.DataFrame,
    circuit: str,
    analysis: str,
    full_scales: Mapping[str, tuple[float, str, str]],
    notes: Mapping[str, str] | None = None,
) -> Path:
    """Write one (circuit, analysis) table with its header.

    ``full_scales``: axis -> (value, unit, meaning), e.g. ``{"x": (0.1, "V", "differential
    input voltage at x = 1.0")}``; ``notes``: extra header lines (``source``, ``seed`` ...).
    """
    head = [f"format: {FORMAT}", f"circuit: {circuit}", f"analysis: {analysis}"]
    head += [f"{a}_full_scale: {v:.6g} {u} | {what}" for a, (v, u, what) in full_scales.items()]
    cols = [f"{c} [{UNITS.get(c.rstrip('0123456789'), '')}]" for c in frame.columns]
    head.append("columns: " + ", ".join(cols))
    head += [f"{k}: {v}" for k, v in (notes or {}).items()]
    body = frame.to_csv(index=False, float_format="%.7g", lineterminator="\n")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"# {h}\n" for h in head) + body, encoding="utf-8")
    return out


def read_all(paths: Sequence[str | os.PathLike[str]]) -> list[CurveTable]:
    """Read several files; the same (circuit, analysis) twice, or full scales that disagree
    (:func:`check_consistent`), is an error naming both files."""
    seen: dict[tuple[str, str], str] = {}
    out: list[CurveTable] = []
    for p in paths:
        for ds in read_csv(p):
            key = (ds.circuit, ds.analysis)
            if key in seen:
                raise DataError(f"{ds.source}: {ds.label} data also in {seen[key]}; give it once")
            seen[key] = ds.source
            out.append(ds)
    check_consistent(out)
    return out


def check_consistent(tables: Sequence[CurveTable]) -> None:
    """One full scale per quantity (:data:`~aanntwin.characterization.units.SHARED`): a
    disagreement (relative tolerance 1e-9, in V or A) is an error naming both places."""
    first: dict[int, tuple[CurveTable, str, float]] = {}
    for ds in tables:
        for axis in units.FIELDS.get(ds.circuit, {}):
            group, scale = units.group_of(ds.circuit, axis), ds.full_scale(axis)
            if group is None or scale is None:
                continue
            if group not in first:
                first[group] = (ds, axis, scale[0])
                continue
            other, other_axis, value = first[group]
            if not units.same(value, scale[0]):
                unit = scale[1]
                raise DataError(
                    f"{ds.field_where(ds.scale_key(axis) or axis)} = {scale[0]:.10g} {unit} "
                    f"({ds.label} {axis}) disagrees with "
                    f"{other.field_where(other.scale_key(other_axis) or other_axis)} = "
                    f"{value:.10g} {unit} ({other.label} {other_axis}); "
                    + _why(ds.circuit, other.circuit)
                )


def _why(a: str, b: str) -> str:
    if a == b:
        return "every analysis of a circuit has the same full scales"
    if "relu" in (a, b):
        return "the ReLU's input is the MAC output: relu x_full_scale = multiplier y_full_scale"
    return "a MAC is multipliers summed: the same x, w and y full scales"
