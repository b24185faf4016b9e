"""Transistor-level netlists of a trained network's MAC stages, built from the shipped cells.

A stage is ``M`` summing-node pairs (one per MAC output), each with its ``N`` multiplier cells
(the topology's subcircuit, e.g. ``gilbert``), all on the shared tail-current reference of the
topology's MAC testbench (its ``VDD``/``IREF``/``MB`` lines, ``.options`` and ``.param`` bias
points are copied from it). Per MAC ``m``:

- ``VSP{m}``/``VSN{m}`` hold the summing nodes at ``VSUM``: the ideal transimpedance readout of
  ``mac.cir``; the MAC output is ``y = (I(VSN) - I(VSP)) / YFS`` (twin volts).
- the trained bias ``b`` (twin volts) is an ideal current source ``b * YFS`` (A) drawn from the
  positive summing node, so it adds ``b`` to ``y`` exactly (the twin adds it to the sum too).
- each cell's weight pair is driven by fixed DC sources ``WCM +- w * WFS / 2`` (V): the
  *programmed* weight; the cell's own weight transfer is what the twin's weight table models.
  Programmed weights are clipped to the characterized range ``+-weight_range`` first (the weight
  DAC cannot program more; the twin clips the same way).

Inputs are one source per input signal (pixel or feature), shared by every cell that reads it
(gates draw no current): ``XCM +- x * XFS / 2`` (V) from the twin's normalized input ``x``. Many
images run in one ngspice call: each input is a piecewise-linear function of a selector source
swept ``0..K-1`` (the technique of :func:`aanntwin.characterization.spice.table_sweep`), so point
``k`` of the DC sweep is image ``k``. An input that is 0 for every image (zero padding) is a DC
source at the common mode (a real input of value 0).

The MACs of a stage do not interact (each sums into its own ideal readout; the shared inputs,
weights and tail-bias gate line draw no DC current), so a large stage runs as several smaller
netlists (:func:`mac_chunks`, at most :data:`MAX_CELLS` cells each) whose outputs are stitched
back in MAC order: ngspice's sparse solve grows superlinearly with the netlist, so many small
runs are much faster than one big one, and they run in parallel on ``pool``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from itertools import starmap
from pathlib import Path

import numpy as np

from ..characterization import spice
from ..errors import DataError

SELECTOR = "vcv_sel"
"""The swept source whose value ``k`` selects image ``k``."""
MAX_CELLS = 400
"""Default largest number of multiplier cells per ngspice netlist (see :func:`mac_chunks`)."""
_ALTER_MAC = re.compile(r"@m\.x(\d+)_", re.I)
_CELL_LINE = re.compile(r"^(VX|VW|EXP|EXN|EWP|EWN|X|VSP|VSN|HP|HN|EY)\S*\s", re.I)


@dataclass(frozen=True)
class CellBench:
    """What a stage netlist takes from the topology's MAC testbench: bias lines and scales."""

    header: str
    """``.include``/``.options``/``.param`` and shared bias lines (no cells, no readout)."""
    subckt: str
    """The multiplier subcircuit's name."""
    xfs: float
    """Differential input voltage at x = 1 (V)."""
    wfs: float
    """Differential weight voltage at w = 1 (V)."""
    yfs: float
    """Differential output current at y = 1 (A)."""
    included: tuple[str, ...] = ()
    """Files the header includes (model card, cell): where the cell's devices are defined."""

    @classmethod
    def from_mac(cls, mac: spice.Netlist) -> CellBench:
        """Split ``mac.cir`` (or a topology's MAC testbench) into shared lines and cells."""
        body = mac.body()
        keep: list[str] = []
        subckt = None
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            block = [line]
            while i + 1 < len(lines) and lines[i + 1].lstrip().startswith("+"):
                i += 1
                block.append(lines[i])
            i += 1
            if _CELL_LINE.match(line.lstrip()):
                if line.lstrip()[0] in "xX" and subckt is None:
                    subckt = " ".join(block).split()[-1]
                continue
            keep.extend(block)
        if subckt is None:
            raise DataError(f"{mac.name}: no multiplier instance (X line) to take the cell from")
        return cls("\n".join(keep).rstrip() + "\n", subckt, mac.param("XFS"), mac.param("WFS"),
                   mac.param("YFS"), mac.included)  # fmt: skip

    def cell_devices(self) -> list[spice.Device]:
        """The MOSFETs of one multiplier cell, named as in instance ``X0_0`` (``m.x0_0.m1``)."""
        text = self.header + f"X0_0 a b c d e f nbias {self.subckt}\n"
        net = spice.Netlist(Path(f"{self.subckt}.cir"), text, {}, self.included)
        return net.devices()


def _pwl(values: np.ndarray) -> str:
    pairs = [f"{k:d},{v:.9g}" for k, v in enumerate(values)]
    if len(pairs) == 1:
        pairs.append(f"1,{values[0]:.9g}")
    chunks = [", ".join(pairs[i : i + 8]) for i in range(0, len(pairs), 8)]
    return f"pwl(v({SELECTOR}),\n+ " + ",\n+ ".join(chunks) + ")"


def stage_netlist(
    bench: CellBench,
    inputs: np.ndarray,
    index: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray | None,
    weight_range: float | None = 1.0,
    first: int = 0,
) -> str:
    """The netlist body of one MAC stage for K images (no ``.control``, no ``.end``).

    ``inputs``: (K, J) normalized input values (twin volts) of the J input signals; ``index``:
    (M, N) which input signal feeds cell ``n`` of MAC ``m`` (-1: a padding input, value 0);
    ``weights``: (M, N) programmed weights (twin weight units); ``bias``: (M,) twin volts or
    None. Readout sources ``VSP{m}``, ``VSN{m}``, cells ``X{m}_{n}`` with ``m`` counted from
    ``first`` (a part of a stage keeps the whole stage's names, so its ``alter`` lines apply);
    selector :data:`SELECTOR` picks the image. Only the inputs the MACs read get a source.
    """
    inputs = np.atleast_2d(np.asarray(inputs, float))
    index, weights = np.asarray(index, int), np.asarray(weights, float)
    if index.shape != weights.shape:
        raise ValueError(f"index {index.shape} and weights {weights.shape} differ in shape")
    if weight_range is not None:
        weights = np.clip(weights, -weight_range, weight_range)
    k = len(inputs)
    x_half, w_half = 0.5 * bench.xfs, 0.5 * bench.wfs
    out = [bench.header, f"* {index.shape[0]} MACs of {index.shape[1]} cells, {k} images"]
    used = sorted(set(index.ravel().tolist()))
    for s in used:
        if s < 0:
            out += ["VXPZ xpz 0 DC {XCM}", "VXNZ xnz 0 DC {XCM}"]
            continue
        col = inputs[:, s]
        if np.all(col == col[0]):
            out.append(f"VX{s} x{s} 0 DC {col[0]:.9g}")
        else:
            out.append(f"BX{s} x{s} 0 V = {_pwl(col)}")
        out.append(f"EXP{s} xp{s} 0 VOL={{XCM + {x_half:.9g}*v(x{s})}}")
        out.append(f"EXN{s} xn{s} 0 VOL={{XCM - {x_half:.9g}*v(x{s})}}")
    for r in range(index.shape[0]):
        m = first + r
        out.append(f"VSP{m} sp{m} 0 DC {{VSUM}}")
        out.append(f"VSN{m} sn{m} 0 DC {{VSUM}}")
        if bias is not None and bias[r] != 0:
            out.append(f"IB{m} sp{m} 0 DC {bias[r] * bench.yfs:.9g}")
        for n in range(index.shape[1]):
            s, w = int(index[r, n]), float(weights[r, n])
            xp, xn = ("xpz", "xnz") if s < 0 else (f"xp{s}", f"xn{s}")
            out.append(f"VWP{m}_{n} wp{m}_{n} 0 DC {{WCM + {w_half * w:.9g}}}")
            out.append(f"VWN{m}_{n} wn{m}_{n} 0 DC {{WCM - {w_half * w:.9g}}}")
            out.append(f"X{m}_{n} {xp} {xn} wp{m}_{n} wn{m}_{n} sp{m} sn{m} nbias {bench.subckt}")
    out.append(f"{SELECTOR} {SELECTOR} 0 DC 0")
    return "\n".join(out) + "\n"


def run_stage(
    bench: CellBench,
    inputs: np.ndarray,
    index: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray | None,
    weight_range: float | None = 1.0,
    name: str = "stage",
    timeout: float = 600.0,
    prelude: list[str] | None = None,
    max_cells: int | None = MAX_CELLS,
    pool: Executor | None = None,
) -> tuple[np.ndarray, float]:
    """Simulate one stage for K images in DC sweeps: MAC outputs (K, M) in twin volts
    (``(I(VSN) - I(VSP)) / YFS``) and ngspice's wall time (s, summed over its runs).

    ``prelude``: ``.control`` lines run before the sweep (``alter`` of device parameters: a chip
    instance; a line naming cell ``x{m}_...`` goes to the run holding MAC ``m``). The stage runs
    as one ngspice netlist per :func:`mac_chunks` part of at most ``max_cells`` cells (None: one
    netlist), on ``pool`` when given (the parts are independent), else one after another."""
    index, weights = np.asarray(index, int), np.asarray(weights, float)
    parts = mac_chunks(*index.shape, max_cells)
    lines = _split_prelude(prelude or [], parts)
    jobs = [(bench, inputs, index[p], weights[p], None if bias is None else np.asarray(bias)[p],
             weight_range, p.start, _part_name(name, p, len(parts)), timeout, lines[i])
            for i, p in enumerate(parts)]  # fmt: skip
    columns = zip(*jobs, strict=True)  # one argument list per parameter, for Executor.map
    results = list(pool.map(_run_part, *columns) if pool else starmap(_run_part, jobs))
    y = np.concatenate([r[0] for r in results], axis=1)
    return y, float(sum(r[1] for r in results))


def mac_chunks(macs: int, cells: int, max_cells: int | None = MAX_CELLS) -> list[range]:
    """Contiguous, near-equal groups of a stage's ``macs`` MACs (``cells`` cells each), in order,
    of at most ``max_cells`` cells (at least one MAC per group); one group when None."""
    per = macs if max_cells is None else max(1, max_cells // max(cells, 1))
    n = -(-macs // per) if macs else 1
    edges = np.linspace(0, macs, n + 1).round().astype(int)
    return [range(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _split_prelude(prelude: Sequence[str], parts: list[range]) -> list[list[str]]:
    """Per part, the ``.control`` lines for it: those naming a cell of one of its MACs
    (``@m.x{m}_...``) and every line naming none."""
    macs = np.array([int(g.group(1)) if (g := _ALTER_MAC.search(ln)) else -1 for ln in prelude])
    lines = np.asarray(prelude, dtype=object)
    return [lines[(macs < 0) | ((macs >= p.start) & (macs < p.stop))].tolist() for p in parts]


def _part_name(name: str, part: range, parts: int) -> str:
    return name if parts == 1 else f"{name} MACs {part.start}-{part.stop - 1}"


def _run_part(
    bench: CellBench,
    inputs: np.ndarray,
    index: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray | None,
    weight_range: float | None,
    first: int,
    name: str,
    timeout: float,
    prelude: list[str],
) -> tuple[np.ndarray, float]:
    """One ngspice run of MACs ``first..first+M-1``: outputs (K, M) and ngspice's seconds."""
    body = stage_netlist(bench, inputs, index, weights, bias, weight_range, first)
    k, m = len(np.atleast_2d(inputs)), index.shape[0]
    vectors = " ".join(f"i(vsp{i}) i(vsn{i})" for i in range(first, first + m))
    control = [*prelude, f"dc {SELECTOR} 0 {max(k - 1, 1)} 1", f"wrdata out.txt {vectors}"]
    text = spice.deck(body, control)
    arrays, seconds = spice.execute(name, text, {"out.txt": 2 * m}, timeout)
    data = arrays["out.txt"][:k]
    if len(data) < k:
        raise spice.SpiceError(f"{name}: ngspice wrote {len(data)} rows, expected {k}")
    y = (data[:, 1::2] - data[:, 0::2]) / bench.yfs
    return y, seconds


def conv_index(in_shape: tuple[int, int, int], kernel: int, stride: int, padding: int,
               channels: int) -> tuple[np.ndarray, tuple[int, int]]:  # fmt: skip
    """Which input pixel feeds each multiplier of the conv stage: (M, N) indices into the
    flattened unpadded input ``(C, H, W)`` (-1: padding), MACs in the twin's ``(out channel,
    row, col)`` order, cells in the weight's ``(in channel, ky, kx)`` order; and the output side."""
    c, h, w = in_shape
    oh, ow = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    ci, ky, kx = np.meshgrid(np.arange(c), np.arange(kernel), np.arange(kernel), indexing="ij")
    rows = []
    for oy in range(oh):
        for ox in range(ow):
            yy = oy * stride - padding + ky
            xx = ox * stride - padding + kx
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            flat = np.where(inside, ci * h * w + yy.clip(0, h - 1) * w + xx.clip(0, w - 1), -1)
            rows.append(flat.ravel())
    per_position = np.stack(rows)  # (oh * ow, N)
    index = np.tile(per_position, (channels, 1))  # channel-major, as conv_out.flatten(1)
    return index, (oh, ow)
