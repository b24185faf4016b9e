"""One batch of images through the circuit, stage by stage, beside the twins.

The circuit chain (per-stage netlists, each stage fed the previous stage's *simulated* outputs):

1. conv stage: every conv MAC (:func:`~.netlist.stage_netlist`), inputs from the twin's
   normalized input voltages (``VX = x * XFS``), zero padding a real 0 V input;
2. ReLU: the shipped ``relu.cir`` testbench, input current ``y * YFS`` (the conv readout's
   output current). All ReLUs are identical cells with independent inputs that do not interact,
   so one DC sweep over every (image, unit) input value is the same as 36 ReLUs per image;
3. pooling, if the geometry has any: ideal (max over the window, as the twin);
4. final stage: the MAC netlist again, inputs ``VX = r * XFS``: the ReLU output current ``r *
   YFS_relu`` read by an ideal transimpedance stage of ``XFS / YFS_relu`` ohms (the twin takes
   the ReLU output in its units as the next stage's input voltage; that readout is ideal here).

Twin units <-> volts and amperes come only from the characterization's full scales (the MAC
testbench's ``XFS``/``WFS``/``YFS`` and the ReLU's ``XFS``/``YFS``); nothing depends on the image.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..characterization import spice
from ..config import MISMATCH_FIELDS, TEMPORAL_NOISE, Nonidealities
from ..errors import DataError
from ..model import Main
from .netlist import MAX_CELLS, CellBench, conv_index, run_stage

STAGES = ("conv", "relu", "linear")
"""Stage names of the tidy results (the default geometry: no hidden stages)."""


def nominal(nl: Nonidealities) -> Nonidealities:
    """``nl`` with temporal noise and mismatch off: the nominal circuit's twin."""
    return nl.replace(**dict.fromkeys(TEMPORAL_NOISE), **dict.fromkeys(MISMATCH_FIELDS))


@dataclass(frozen=True)
class Circuit:
    """The shipped cells a network is built from, and the twin <-> SI mapping."""

    bench: CellBench
    """The multiplier cell and bias lines (from the topology's MAC testbench)."""
    relu: spice.Netlist
    """The ReLU testbench (``VX`` in its ``XFS`` amperes, ``v(y)`` in its ``YFS``)."""

    @property
    def relu_in_per_y(self) -> float:
        """ReLU input (its x units) per MAC output volt: ``YFS_mac / XFS_relu``."""
        return self.bench.yfs / self.relu.param("XFS")

    def check(self, scales: dict[str, dict[str, str]] | None) -> None:
        """The characterization's full scales (fit report ``normalization``) must be the cells'
        (otherwise its twin describes other units): DataError naming the field."""
        from ..characterization.units import parse_full_scale, same

        if not scales:
            return
        want = {("multiplier dc", "x"): (self.bench.xfs, "V"),
                ("multiplier dc", "w"): (self.bench.wfs, "V"),
                ("multiplier dc", "y"): (self.bench.yfs, "A"),
                ("relu dc", "x"): (self.relu.param("XFS"), "A"),
                ("relu dc", "y"): (self.relu.param("YFS"), "A")}  # fmt: skip
        for (data, axis), (value, unit) in want.items():
            text = scales.get(data, {}).get(axis)
            if text is None:
                continue
            got, _ = parse_full_scale(text, unit, f"fit_report.json normalization.{data}.{axis}")
            if not same(got, value):
                raise DataError(
                    f"fit_report.json: {data} {axis}_full_scale is {text}, the netlist's is "
                    f"{value:g} {unit}: the characterization is of other cells or units"
                )


def check_geometry(model: Main) -> None:
    """Only conv -> ReLU -> (pool) -> final stage is built (no hidden stages, one input channel
    or more, any kernel/stride/padding)."""
    if model.hidden_names:
        raise DataError(
            f"validate-circuit builds conv -> ReLU -> final stage; the run has hidden stages "
            f"{model.params.hidden}: not supported"
        )


@torch.no_grad()
def twin_stages(model: Main, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The twin's own chain: conv MAC, ReLU and final MAC outputs (noiseless), (K, units)."""
    conv = model.forward_until(x, "conv_out")
    relu = model.relu.core(conv)
    lin = model.linear.mac(model.flatten(model.pool(relu)))
    return {"conv": conv.flatten(1).numpy(), "relu": relu.flatten(1).numpy(),
            "linear": lin.numpy()}  # fmt: skip


@torch.no_grad()
def twin_local(model: Main, conv: np.ndarray, relu: np.ndarray) -> dict[str, np.ndarray]:
    """Each twin stage fed the circuit's previous-stage outputs (isolates the stage's own error)."""
    c, oh, ow = model.geometry.conv_out
    yc = (
        torch.from_numpy(np.array(conv, float)).to(model.linear.weight.dtype).reshape(-1, c, oh, ow)
    )
    r = torch.from_numpy(np.array(relu, float)).to(model.linear.weight.dtype).reshape(-1, c, oh, ow)
    return {"relu": model.relu.core(yc).flatten(1).numpy(),
            "linear": model.linear.mac(model.flatten(model.pool(r))).numpy()}  # fmt: skip


def pool(model: Main, relu: np.ndarray) -> np.ndarray:
    """Ideal max pooling of flattened ReLU outputs (K, C*H*W) -> features (K, F)."""
    c, oh, ow = model.geometry.conv_out
    r = torch.from_numpy(np.array(relu, float)).reshape(-1, c, oh, ow)
    return model.flatten(model.pool(r)).numpy()


def weight_range(model: Main, stage: str) -> float | None:
    return getattr(model, stage).settings.weight_range


def circuit_stages(
    circuit: Circuit,
    model: Main,
    x_in: np.ndarray,
    name: str = "batch",
    alter: tuple[list[str], list[str]] | None = None,
    executor: Executor | None = None,
    max_cells: int | None = MAX_CELLS,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Simulate the conv MACs, ReLUs and final MACs for K images; ``x_in``: (K, C*H*W) twin
    input volts. Outputs in twin units per stage and ngspice seconds per stage. ``alter``: extra
    ``.control`` lines (device offsets) for the conv and final stage runs (chip instances).
    A MAC stage of more than ``max_cells`` cells runs as several netlists, on ``executor`` if given
    (:func:`~.netlist.run_stage`)."""
    split = {"max_cells": max_cells, "pool": executor}
    p = model.params
    index, _ = conv_index(model.in_shape, p.kernel, p.stride, p.padding, p.channels)
    oh_ow = index.shape[0] // p.channels
    w = model.conv.weight.detach().double().numpy().reshape(p.channels, -1)
    b = model.conv.bias.detach().double().numpy() if model.conv.bias is not None else None
    bias = None if b is None else np.repeat(b, oh_ow)
    extra = alter or ([], [])
    conv, s1 = run_stage(circuit.bench, x_in, index, np.repeat(w, oh_ow, axis=0), bias,
                         weight_range(model, "conv"), f"{name} conv", prelude=extra[0],
                         **split)  # fmt: skip
    relu_in = conv.ravel() * circuit.relu_in_per_y
    table = spice.table_sweep(circuit.relu, _frame(relu_in))
    relu = table["y"].to_numpy().reshape(conv.shape)
    feats = pool(model, relu)
    wl = model.linear.weight.detach().double().numpy()
    bl = model.linear.bias.detach().double().numpy() if model.linear.bias is not None else None
    lin_index = np.tile(np.arange(wl.shape[1]), (wl.shape[0], 1))
    lin, s3 = run_stage(circuit.bench, feats, lin_index, wl, bl, weight_range(model, "linear"),
                        f"{name} linear", prelude=extra[1], **split)  # fmt: skip
    seconds = {"conv": s1, "relu": float(table.attrs["seconds"]), "linear": s3}
    return {"conv": conv, "relu": relu, "linear": lin}, seconds


def _frame(values: np.ndarray) -> pd.DataFrame:
    """The ReLU testbench's operating points: its ``VX`` source (input, ReLU x units)."""
    return pd.DataFrame({"VX": np.asarray(values, float)})


def input_volts(model: Main, images: torch.Tensor) -> np.ndarray:
    """The twin's normalized input voltages (K, C*H*W) of raw images (what ``VX`` follows)."""
    with torch.no_grad():
        return model.forward_until(images, "input").flatten(1).double().numpy()


def margins(scores: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 score per row (twin volts)."""
    top = np.sort(scores, axis=1)
    return top[:, -1] - top[:, -2]


__all__ = [
    "STAGES",
    "Circuit",
    "nominal",
    "check_geometry",
    "twin_stages",
    "twin_local",
    "circuit_stages",
    "input_volts",
    "margins",
]
