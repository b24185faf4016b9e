"""What the notebooks' studies run, full and ``quick``: the one place the quick-run caps live.

A ``quick`` run (tests, smoke runs) caps training epochs, noise draws, spec samples and chip
instances (:data:`QUICK_CAPS`), sweeps a coarser noise grid, a smaller quantization grid, and
searches the temporal noise kinds only.
"""

from __future__ import annotations

from typing import Any

QUICK_CAPS: dict[str, int] = {"epochs": 2, "runs": 2, "spec_runs": 6, "chip_instances": 20,
                              "circuit_images": 5, "circuit_chips": 1}  # fmt: skip
"""Upper bounds of a quick run: training epochs, noise draws per point (``runs``), samples per
spec setting (``spec_runs``), chip instances of the yield Monte Carlo (``chip_instances``), and
the transistor-level validation's test images and SPICE chips (``circuit_images``,
``circuit_chips``)."""
QUICK_EPOCHS = QUICK_CAPS["epochs"]
"""Epoch cap of ``quick`` runs."""


def capped(name: str, value: int, quick: bool) -> int:
    """``value`` of parameter ``name``, at most its :data:`QUICK_CAPS` entry when ``quick``."""
    return min(int(value), QUICK_CAPS[name]) if quick else int(value)


def noise_plan(quick: bool) -> dict[str, list[float | None]]:
    """Training and test levels (V) of the notebook noise sweep: small when ``quick``."""
    step, top = (0.05, 0.5) if quick else (0.025, 1.0)
    tests = [round(i * step, 10) for i in range(round(top / step) + 1)]
    trains = [None, 0.1] if quick else [None, 0.1, 0.2]
    return {"train_levels": trains, "test_levels": tests}


def quantization_plan(quick: bool) -> dict[str, Any]:
    """Grid of the notebook quantization study (zero level on): refs in weight stds, bits."""
    # Up to 6 stds: trained layers' largest |w| lie around 4-5 stds, and a grid that stops below
    # it clips every point (digits' final stage at 3 stds lost 5 points); the edge is flagged.
    from ..studies.quantization import reference_sigmas  # torch: not for the workbook runner

    refs = [0.5 * k for k in range(1, 13)] if quick else reference_sigmas()
    return {"ref_sigmas": refs, "bits": list(range(8)), "zero_levels": (True,)}


def spec_kinds(quick: bool) -> list[str]:
    """The kinds the spec search bounds: the temporal noise kinds only when ``quick``."""
    from ..studies.noise import KINDS, TEMPORAL  # torch: not for the workbook runner

    return list(TEMPORAL) if quick else list(KINDS)
