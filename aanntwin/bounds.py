"""The allowed ranges of run settings, shared by the command line (``aanntwin.cli``: argparse
types) and the workbook's parameters files (``aanntwin.report.param_ranges``), so a value one
refuses the other refuses too. Plain data: importing it loads nothing."""

from __future__ import annotations

MAX_SEED = 2**63 - 1
"""Seeds (``--seed``, ``chip_seed``): 0..2**63-1."""
MAX_RUNS = 1_000_000
"""``--runs``/``--instances``: each keeps about 100 bytes of results (a loss, a count, Python
floats), so 10**6 is about 100 MB; 10**9 would need about 100 GB."""
RUNS_NOTE = "each keeps ~100 bytes of results: 1000000 is ~100 MB"
EPOCHS = (1, 100_000)
"""Training epochs (0 trains nothing: refused, not an untrained run)."""
CIRCUIT_IMAGES = (1, 100_000)
"""Test images simulated at transistor level (``validate-circuit --images``)."""
CIRCUIT_CHIPS = (0, 1000)
"""SPICE chip instances (``validate-circuit --chips``; 0: none)."""
TARGET_DROP = "in [0, 1)"
"""The largest accuracy loss against the ideal model (a fraction)."""
CONFIDENCE = "in (0, 1)"
"""The fraction of noise draws / chip instances that must meet the target."""


def target_drop_ok(value: float) -> bool:
    return 0 <= value < 1


def confidence_ok(value: float) -> bool:
    return 0 < value < 1


DEVICES = "cpu, cuda, cuda:N, auto"
"""The device specs ``aanntwin.device.resolve_device`` takes."""
