"""Hardware counts of a geometry: MACs and multipliers per analog stage (DESIGN.md §1).

Every conv output position and channel is one MAC (counted before pooling) of
``kernel^2 * in_channels`` multipliers; every hidden or final linear output is one MAC of
fan-in multipliers. Invalid geometry (partial windows) is a :class:`GeometryError`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .config import ModelParams
from .errors import GeometryError


@dataclass(frozen=True)
class StageCount:
    """Hardware of one analog stage: ``macs`` summing nodes of ``fan_in`` multipliers each."""

    name: str
    macs: int
    fan_in: int

    @property
    def multipliers(self) -> int:
        return self.macs * self.fan_in


@dataclass(frozen=True)
class Geometry:
    """Shapes through the network for one input shape ``(C, H, W)``."""

    in_shape: tuple[int, int, int]
    conv_out: tuple[int, int, int]
    pool_out: tuple[int, int, int]
    features: int
    stages: tuple[StageCount, ...]

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.stages)

    @property
    def multipliers(self) -> int:
        return sum(s.multipliers for s in self.stages)

    def to_dict(self) -> dict[str, object]:
        return {
            "in_shape": list(self.in_shape),
            "conv_out": list(self.conv_out),
            "pool_out": list(self.pool_out),
            "features": self.features,
            "stages": [
                {**dataclasses.asdict(s), "multipliers": s.multipliers} for s in self.stages
            ],
            "macs": self.macs,
            "multipliers": self.multipliers,
        }


def geometry(params: ModelParams, in_shape: tuple[int, int, int], n_classes: int) -> Geometry:
    """Validate the geometry and count the hardware.

    Conv output side ``(in + 2 * pad - kernel) / stride + 1`` and pool output ``conv / pool``
    must be whole numbers (the hardware has no partial windows). Every conv output position and
    channel is one MAC (counted before pooling) with ``kernel^2 * in_channels`` multipliers;
    every hidden or final linear output is one MAC with fan-in multipliers.
    """
    c, h, w = in_shape
    k, s, p = params.kernel, params.stride, params.padding
    sides = []
    for name, n in (("height", h), ("width", w)):
        span = n + 2 * p - k
        if span < 0 or span % s:
            raise GeometryError(
                f"conv on input {name} {n}: (in + 2*padding - kernel) / stride + 1 = "
                f"({n} + 2*{p} - {k}) / {s} + 1 = {span / s + 1:g} is not a whole number >= 1 "
                "(the hardware has no partial windows); change kernel, stride or padding"
            )
        side = span // s + 1
        if side % params.pool:
            raise GeometryError(
                f"pool {params.pool} does not divide the conv output {name} {side}: "
                f"{side} / {params.pool} = {side / params.pool:g} is not whole"
            )
        sides.append(side)
    conv_out = (params.channels, sides[0], sides[1])
    pool_out = (params.channels, sides[0] // params.pool, sides[1] // params.pool)
    features = math.prod(pool_out)
    stages = [StageCount("conv", params.channels * sides[0] * sides[1], k * k * c)]
    fan_in = features
    for i, width in enumerate(params.hidden):
        stages.append(StageCount(f"hidden{i}", width, fan_in))
        fan_in = width
    stages.append(StageCount("linear", n_classes, fan_in))
    return Geometry(tuple(in_shape), conv_out, pool_out, features, tuple(stages))  # type: ignore[arg-type]
