"""Run ngspice in batch mode and return tidy DataFrames (characterization by simulation).

``ngspice -b`` runs through :mod:`subprocess` in a fresh temporary folder (BSIM3 writes check
logs into its working folder) with ``OMP_WAIT_POLICY=passive`` (busy-waiting OpenMP threads made
identical runs take 0.02 s or 16 s on loaded machines). ngspice's exit status is not trusted:
it exits 0 after an error inside ``.control``, so every run checks the output for error lines
and every expected result file for existence, and raises :class:`SpiceError` naming the netlist
and quoting ngspice.

Testbench conventions (see :mod:`aanntwin.characterization.circuits`): inputs are DC voltage sources in normalized
units (``VX``, ``VW`` or ``VX1``..., ``VW1``...), the output node ``y`` is in normalized units, and
the ``.param`` lines ``XFS``, ``WFS``, ``YFS`` give what 1.0 means for x, w and y.

Analyses: :func:`dc_transfer`, :func:`table_sweep` (a table of operating points as one DC sweep
of a selector), :func:`noise` (integrated over a stated band, RMS), :func:`monte_carlo`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import AanntwinError

_SI = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "meg": 1e6, "g": 1e9}
_ERROR = re.compile(r"error|abort|fatal|no such vector|can't find|cannot find|not found", re.I)
_SELECTOR = "vaanntwin_sel"


class SpiceError(AanntwinError):
    """ngspice is missing, reported an error, timed out, or wrote no result."""


def ngspice_path() -> str:
    """The ngspice executable (``$AANNTWIN_NGSPICE`` or ``ngspice`` on the PATH); a missing one
    is an error naming what was looked for (the variable's value when it is set)."""
    given = os.environ.get("AANNTWIN_NGSPICE")
    exe = shutil.which(given or "ngspice")
    if exe is None and given:
        path = Path(given)
        why = ("is not executable" if path.is_file() else "is a folder" if path.is_dir()
               else "does not exist" if os.sep in given else "is not found on the PATH")  # fmt: skip
        raise SpiceError(
            f"AANNTWIN_NGSPICE={given} {why}: set it to the ngspice executable, or unset it to use "
            "ngspice on the PATH (Debian/Ubuntu: `apt-get install ngspice`)"
        )
    if exe is None:
        raise SpiceError(
            "ngspice not found on the PATH: install it (Debian/Ubuntu: `apt-get install ngspice`) "
            "or set AANNTWIN_NGSPICE to the executable"
        )
    return exe


def ngspice_version() -> str:
    """``ngspice-39`` or similar (from ``ngspice -v``)."""
    out = subprocess.run([ngspice_path(), "-v"], capture_output=True, text=True, timeout=30)
    return (re.findall(r"ngspice-[\w.+-]+", out.stdout + out.stderr) or ["ngspice"])[0]


def si_value(text: str) -> float:
    """A SPICE number with an optional scale suffix: ``10u`` -> 1e-5, ``1meg`` -> 1e6."""
    m = re.fullmatch(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)(meg|[fpnumkg])?[a-z]*", text, re.I)
    if m is None:
        raise ValueError(f"not a SPICE number: {text!r}")
    return float(m.group(1)) * _SI.get((m.group(2) or "").lower(), 1.0)


def _logical_lines(text: str) -> list[str]:
    """Lines with ``+`` continuations joined and comments dropped."""
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("*"):
            continue
        if line.lstrip().startswith("+") and out:
            out[-1] += " " + line.lstrip()[1:]
        else:
            out.append(line.strip())
    return out


@dataclass(frozen=True)
class Device:
    """A MOSFET inside a subcircuit instance: ngspice name (``m.x1.m1``), W and L in meters."""

    name: str
    w: float
    l: float  # noqa: E741 - the layout parameter's name


@dataclass(frozen=True)
class Netlist:
    """A testbench read from disk, relative ``.include`` / ``.lib`` paths made absolute.

    ``params``: the numeric ``.param`` values (SI units); ``model_card`` replaces the include of
    the generic model card (e.g. a PDK's models file) when given to :meth:`load`.
    """

    path: Path
    text: str
    params: dict[str, float] = field(default_factory=dict)
    included: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def load(cls, path: str | os.PathLike[str], model_card: str | None = None) -> Netlist:
        """Read a netlist; ``model_card`` (a models file) replaces the generic card's include."""
        p = Path(path).resolve()
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpiceError(f"{p}: cannot read the netlist ({exc.strerror})") from None
        included: list[str] = []

        def resolve(m: re.Match[str]) -> str:
            target = Path(m.group(3))
            if model_card is not None and target.name.startswith("bsim3_generic"):
                target = Path(model_card)
            elif not target.is_absolute():
                target = p.parent / target
            if not target.exists():
                raise SpiceError(f"{p.name}: included file {target} does not exist")
            included.append(str(target.resolve()))
            return f'{m.group(1)} "{target.resolve()}"{m.group(4)}'

        inc = re.compile(r'^(\.(?:include|inc|lib))\s+(["\']?)([^"\'\s]+)\2(.*)$', re.I | re.M)
        text = inc.sub(resolve, text)
        params: dict[str, float] = {}
        for line in (ln for ln in _logical_lines(text) if ln.lower().startswith(".param")):
            for key, value in re.findall(r"(\w+)\s*=\s*([^\s{}]+)", line[6:]):
                with contextlib.suppress(ValueError):  # expressions are not normalization
                    params[key.upper()] = si_value(value)
        return cls(p, text, params, tuple(included))

    def param(self, key: str) -> float:
        if key.upper() not in self.params:
            raise SpiceError(f"{self.name}: no numeric .param {key} (normalization constant)")
        return self.params[key.upper()]

    def body(self) -> str:
        """The circuit without any ``.control`` block or ``.end`` (a deck is appended)."""
        text = re.sub(r"^\.control\b.*?^\.endc\b.*?$", "", self.text, flags=re.I | re.M | re.S)
        return re.sub(r"^\.end\s*$", "", text, flags=re.I | re.M).rstrip() + "\n"

    def devices(self) -> list[Device]:
        """MOSFETs inside subcircuit instances (the circuits under test), hierarchical names.

        Top-level MOSFETs (testbench bias generators) are not listed: they stay nominal.
        """
        lines = _logical_lines(self.text)
        for path in self.included:
            lines += _logical_lines(Path(path).read_text(encoding="utf-8", errors="replace"))
        subckts: dict[str, list[str]] = {}
        top: list[str] = []
        current: list[str] | None = None
        for line in lines:
            low = line.lower()
            if low.startswith(".subckt"):
                current = subckts.setdefault(line.split()[1].lower(), [])
            elif low.startswith(".ends"):
                current = None
            elif current is not None:
                current.append(line)
            else:
                top.append(line)

        def walk(prefix: str, body: list[str], depth: int) -> list[Device]:
            found: list[Device] = []
            for line in body:
                tok = line.split()
                kind = tok[0][0].lower()
                if kind == "m" and prefix:
                    geo = dict(re.findall(r"\b([wl])\s*=\s*(\S+)", line.lower()))
                    if "w" in geo and "l" in geo:
                        dev = f"m.{prefix}.{tok[0].lower()}"
                        found.append(Device(dev, si_value(geo["w"]), si_value(geo["l"])))
                elif kind == "x" and depth < 8:
                    sub = [t for t in tok[1:] if "=" not in t][-1].lower()
                    name = f"{prefix}.{tok[0].lower()}" if prefix else tok[0].lower()
                    found += walk(name, subckts.get(sub, []), depth + 1)
            return found

        return walk("", top, 0)

    def with_table(self, table: pd.DataFrame) -> str:
        """The body with each source named in ``table`` replaced by a B-source that follows the
        table as a piecewise-linear function of the selector ``v(aanntwin_sel)`` = row index."""
        body = self.body()
        index = np.arange(len(table))
        for name in table.columns:
            pattern = re.compile(rf"^{re.escape(name)}\s+(\S+)\s+(\S+)\b.*$", re.I | re.M)
            m = pattern.search(body)
            if m is None:
                raise SpiceError(f"{self.name}: no source {name} to drive")
            values = np.asarray(table[name], dtype=float)
            pairs = [f"{k:d},{v:.9g}" for k, v in zip(index, values, strict=True)]
            chunks = [", ".join(pairs[i : i + 8]) for i in range(0, len(pairs), 8)]
            if len(pairs) == 1:  # pwl needs two points
                chunks = [pairs[0] + f", 1,{values[0]:.9g}"]
            pwl = ",\n+ ".join(chunks)
            line = f"B{name} {m.group(1)} {m.group(2)} V = pwl(v(aanntwin_sel),\n+ {pwl})"
            body = body[: m.start()] + line + body[m.end() :]
        return body + f"{_SELECTOR} aanntwin_sel 0 DC 0\n"


def deck(body: str, control: Sequence[str]) -> str:
    """A netlist ``body`` closed by a ``.control`` block running ``control`` (wrdata settings)."""
    head = [".control", "set wr_singlescale", "set wr_vecnames"]
    return body + "\n".join([*head, *control, "quit", ".endc", ".end"]) + "\n"


def run_deck(
    netlist: Netlist, control: Sequence[str], results: Mapping[str, int], timeout: float = 300.0
) -> tuple[dict[str, np.ndarray], float]:
    """Run ``netlist`` with a ``.control`` block; read the ``wrdata`` files it writes.

    ``results`` maps each file name the control block writes to its number of vectors (the
    last that many columns are kept). Returns the arrays (rows x vectors) and ngspice's wall time
    (s). Raises :class:`SpiceError` on an error line in the output or a missing result file.
    """
    return execute(netlist.name, deck(netlist.body(), control), results, timeout)


def execute(
    name: str, text: str, results: Mapping[str, int], timeout: float
) -> tuple[dict[str, np.ndarray], float]:
    """Run a whole deck ``text`` (see :func:`deck`) in batch mode, as :func:`run_deck` does."""
    exe = ngspice_path()
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    with tempfile.TemporaryDirectory(prefix="aanntwin-spice-") as tmp:
        path = Path(tmp) / "deck.cir"
        path.write_text(text, encoding="utf-8")
        (Path(tmp) / ".spiceinit").write_text("set num_threads=1\n")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [exe, "-b", path.name], cwd=tmp, env=env, capture_output=True, text=True,
                timeout=timeout, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise SpiceError(f"{name}: ngspice did not finish within {timeout:g} s") from None
        seconds = time.perf_counter() - t0
        output = proc.stdout + "\n" + proc.stderr
        errors = [ln.strip() for ln in output.splitlines() if _ERROR.search(ln)]
        if errors:
            shown = "; ".join(dict.fromkeys(errors[:4]))
            raise SpiceError(f"{name}: ngspice reported: {shown}")
        arrays: dict[str, np.ndarray] = {}
        for fname, n in results.items():
            path = Path(tmp) / fname
            if not path.exists():
                tail = " | ".join(output.strip().splitlines()[-3:])
                raise SpiceError(
                    f"{name}: ngspice wrote no {fname} (exit status {proc.returncode}): {tail}"
                )
            data = np.loadtxt(path, skiprows=1, ndmin=2)
            arrays[fname] = data[:, -n:]
    return arrays, seconds


def table_sweep(netlist: Netlist, table: pd.DataFrame, timeout: float = 300.0) -> pd.DataFrame:
    """Evaluate every row of ``table`` (columns = source names, values in the sources' units)
    in one DC sweep; returns the table plus ``y`` = v(y) (``attrs['seconds']``: ngspice time)."""
    arrays, seconds = _table_run(netlist, table, [([], "t0.txt")], ("v(y)",), timeout)
    out = table.reset_index(drop=True).assign(y=arrays["t0.txt"][:, 0])
    out.attrs.update(seconds=seconds, netlist=netlist.name)
    return out


def _table_run(
    netlist: Netlist,
    table: pd.DataFrame,
    runs: Sequence[tuple[list[str], str]],
    outputs: Sequence[str],
    timeout: float,
) -> tuple[dict[str, np.ndarray], float]:
    if len(table) == 0:
        raise SpiceError(f"{netlist.name}: empty table of operating points")
    control: list[str] = []
    sweep = f"dc {_SELECTOR} 0 {len(table) - 1} 1"
    for prelude, fname in runs:
        control += [*prelude, sweep, f"wrdata {fname} {' '.join(outputs)}"]
    results = {fname: len(outputs) for _, fname in runs}
    text = deck(netlist.with_table(table), control)
    arrays, seconds = execute(netlist.name, text, results, timeout)
    for fname, data in arrays.items():
        if len(data) != len(table):
            raise SpiceError(f"{netlist.name}: {fname} has {len(data)} rows, expected {len(table)}")
    return arrays, seconds


def grid(x: Sequence[float], w: Sequence[float] | None = None) -> pd.DataFrame:
    """The x by w grid (w outer, x inner: one x sweep per weight), columns ``x`` and ``w``."""
    xs = np.asarray(x, dtype=float)
    if w is None:
        return pd.DataFrame({"x": xs})
    ww, xx = np.meshgrid(np.asarray(w, dtype=float), xs, indexing="ij")
    return pd.DataFrame({"x": xx.ravel(), "w": ww.ravel()})


def dc_transfer(
    netlist: Netlist, x: Sequence[float], w: Sequence[float] | None = None, timeout: float = 300.0
) -> pd.DataFrame:
    """DC transfer of a multiplier (``w`` given) or a ReLU: columns ``x``, [``w``], ``y``
    (normalized units), one x sweep per weight."""
    g = grid(x, w)
    sources = g.rename(columns={"x": "VX", "w": "VW"})
    out = table_sweep(netlist, sources, timeout=timeout)
    res = g.copy()
    res["y"] = out["y"].to_numpy()
    res.attrs.update(out.attrs)
    return res


def mac_transfer(
    netlist: Netlist, x: np.ndarray, w: np.ndarray, timeout: float = 300.0
) -> pd.DataFrame:
    """MAC output for K conditions: ``x``, ``w`` of shape (K, N) drive ``VX1..VXN``,
    ``VW1..VWN``; columns ``x1..xN``, ``w1..wN``, ``y``."""
    x, w = np.atleast_2d(x), np.atleast_2d(w)
    n = x.shape[1]
    cols = {f"VX{i + 1}": x[:, i] for i in range(n)} | {f"VW{i + 1}": w[:, i] for i in range(n)}
    out = table_sweep(netlist, pd.DataFrame(cols), timeout=timeout)
    out.columns = [c[1:].lower() if c.startswith("V") else c for c in out.columns]
    return out


def noise(
    netlist: Netlist,
    points: pd.DataFrame,
    f_low: float = 1e3,
    f_high: float = 1e7,
    points_per_decade: int = 20,
    timeout: float = 300.0,
) -> pd.DataFrame:
    """Output noise at operating points (``points`` columns ``x`` [, ``w``]), integrated from
    ``f_low`` to ``f_high`` (Hz): columns ``x``, [``w``], ``noise_rms`` (normalized y units,
    RMS), ``f_low_hz``, ``f_high_hz``. The input source VX carries ``AC 1`` (``.noise`` needs
    it)."""
    if not 0 < f_low < f_high:
        raise SpiceError(f"noise band {f_low:g}..{f_high:g} Hz: need 0 < f_low < f_high")
    control, results = [], {}
    for k, row in enumerate(points.itertuples(index=False)):
        control += [f"alter VX dc = {row.x:.9g}"]
        if "w" in points.columns:
            control += [f"alter VW dc = {row.w:.9g}"]
        control += [
            f"noise v(y) VX dec {points_per_decade} {f_low:.6g} {f_high:.6g}",
            f"wrdata noise{k}.txt onoise_total",
        ]
        results[f"noise{k}.txt"] = 1
    arrays, seconds = run_deck(netlist, control, results, timeout)
    out = points.reset_index(drop=True).copy()
    out["noise_rms"] = [float(arrays[f][0, 0]) for f in results]
    out["f_low_hz"], out["f_high_hz"] = f_low, f_high
    out.attrs.update(seconds=seconds, netlist=netlist.name)
    return out


def monte_carlo(
    netlist: Netlist,
    instances: int,
    x: Sequence[float],
    w: Sequence[float],
    a_vt: float = 5.0,
    seed: int = 0,
    timeout: float = 300.0,
) -> pd.DataFrame:
    """Mismatch Monte Carlo: per instance, every MOSFET inside a subcircuit gets a threshold
    offset ``N(0, sigma)``, ``sigma = a_vt / sqrt(2 W L)`` (Pelgrom; ``a_vt`` in mV um for the
    difference of a pair, so one device has 1/sqrt(2) of it), seeded; then the x by w DC sweep.
    Columns ``instance``, ``x``, ``w``, ``y``; ``attrs['delvto']`` holds the offsets (V)."""
    devices = netlist.devices()
    if not devices:
        raise SpiceError(f"{netlist.name}: no MOSFETs with W and L inside a subcircuit instance")
    sigma = np.array([a_vt * 1e-3 / np.sqrt(2 * d.w * d.l * 1e12) for d in devices])
    offsets = np.random.default_rng(seed).standard_normal((instances, len(devices))) * sigma
    g = grid(x, w)
    runs = [
        (
            [f"alter @{d.name}[delvto] = {v:.9g}" for d, v in zip(devices, row, strict=True)],
            f"mc{i}.txt",
        )
        for i, row in enumerate(offsets)
    ]
    table = g.rename(columns={"x": "VX", "w": "VW"})
    arrays, seconds = _table_run(netlist, table, runs, ("v(y)",), timeout)
    frames = [g.assign(instance=i, y=arrays[f][:, 0]) for i, (_, f) in enumerate(runs)]
    out = pd.concat(frames, ignore_index=True)[["instance", "x", "w", "y"]]
    out.attrs.update(
        seconds=seconds,
        netlist=netlist.name,
        delvto=pd.DataFrame(offsets, columns=[d.name for d in devices]),
    )
    return out
