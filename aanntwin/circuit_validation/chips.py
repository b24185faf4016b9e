"""Chip instances: the cells' mismatch Monte Carlo in the whole network, beside twin chips.

A SPICE chip gives every MOSFET of every multiplier cell a threshold offset ``N(0, sigma)``,
``sigma = a_vt / sqrt(2 W L)`` (Pelgrom, as :func:`aanntwin.characterization.spice.monte_carlo`
draws the characterization's Monte Carlo: ``a_vt`` in mV um for a pair), from one seed per chip,
applied with ``alter @m.x{mac}_{cell}.{device}[delvto]`` before each stage's sweep. The ReLU
cells stay nominal (the twin models mismatch in the MAC stages only). A twin chip is the
characterized twin with its fitted gain and offset mismatch on, ``chip_seed`` = the chip's seed:
the two are different random draws of the same statistics, so chips compare by their spread
(accuracy, deviation from the nominal circuit), not one by one.
"""

from __future__ import annotations

import numpy as np

from ..seeds import derive_seed
from .netlist import CellBench

A_VT = 5.0
"""Default Pelgrom coefficient (mV um per pair): the characterization's Monte Carlo default."""


def offsets(bench: CellBench, macs: int, cells: int, a_vt: float, seed: int, stage: str
            ) -> list[str]:  # fmt: skip
    """``.control`` lines giving every cell MOSFET of a ``macs`` x ``cells`` stage its seeded
    threshold offset (V)."""
    devices = bench.cell_devices()
    sigma = np.array([a_vt * 1e-3 / np.sqrt(2 * d.w * d.l * 1e12) for d in devices])
    rng = np.random.default_rng(derive_seed(seed, "circuit-chip", stage))
    draws = rng.standard_normal((macs, cells, len(devices))) * sigma
    suffixes = [d.name.split(".", 2)[2] for d in devices]  # m.x0_0.m1 -> m1
    return [
        f"alter @m.x{m}_{n}.{dev}[delvto] = {draws[m, n, k]:.6e}"
        for m in range(macs)
        for n in range(cells)
        for k, dev in enumerate(suffixes)
    ]
