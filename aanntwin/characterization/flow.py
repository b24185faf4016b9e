"""What ``aanntwin characterize`` and notebook 01 both do: choose the data source, fit, write.

:func:`acquire` picks the transfer curves (given CSV files, an ngspice simulation of the shipped
circuits, or the committed CSVs) and :func:`fit_and_write` fits them, maps the fits onto the twin
and writes the outputs (:func:`~aanntwin.characterization.pipeline.write_outputs`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import spice
from .circuits import example_files
from .curves import CurveTable, read_all
from .pipeline import Characterization, SimOptions, characterize, simulate, summary, write_outputs
from .twin import fan_ins

CSV_FILES, SIMULATION, COMMITTED = "csv_files", "ngspice simulation", "committed CSVs"
"""The names of the three data sources."""


@dataclass
class Curves:
    """The transfer curves to fit and where they came from."""

    tables: list[CurveTable]
    source: str
    """:data:`CSV_FILES`, :data:`SIMULATION` or :data:`COMMITTED`."""
    seconds: dict[str, float] = field(default_factory=dict)
    """ngspice time per analysis (s); empty unless simulated."""

    def line(self) -> str:
        """``data: <source>`` and, when simulated, the total ngspice time (s)."""
        spent = f", ngspice {sum(self.seconds.values()):.2f} s" if self.seconds else ""
        return f"data: {self.source}{spent}"


def ngspice_present() -> bool:
    """Whether an ngspice executable is found (see :func:`~aanntwin.characterization.spice.ngspice_path`)."""
    try:
        return bool(spice.ngspice_path())
    except spice.SpiceError:
        return False


def acquire(
    csv_files: Sequence[str | os.PathLike[str]] | None = None,
    simulate_circuits: bool | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    options: SimOptions | None = None,
    shown_dir: str | os.PathLike[str] | None = None,
) -> Curves:
    """The curves to fit: ``csv_files`` when given (``--csv``); else an ngspice simulation with
    ``options`` (default :class:`SimOptions`) writing its CSVs under ``data_dir`` when
    ``simulate_circuits`` (``--simulate``; None: when ngspice is present); else the committed
    CSVs of the topology ``options.multiplier``. ``shown_dir``: where messages say the simulated
    CSVs are (``data_dir``'s final place when it is a temporary folder)."""
    if csv_files:
        return Curves(read_all(list(csv_files)), CSV_FILES)
    if simulate_circuits is None:
        simulate_circuits = ngspice_present()
    if simulate_circuits:
        tables, seconds = simulate(options or SimOptions(), data_dir, shown_dir)
        return Curves(tables, SIMULATION, seconds)
    return Curves(read_all(example_files((options or SimOptions()).multiplier)), COMMITTED)


def fit_and_write(
    curves: Curves,
    fan_in: dict[str, int] | str,
    out_dir: str | os.PathLike[str],
    degree: int = 7,
    plots: bool = True,
    transfer: str = "auto",
) -> tuple[Characterization, dict[str, Path]]:
    """Fit ``curves`` (``fan_in``: multipliers per MAC, or a dataset name to take them from;
    ``transfer``: see :func:`~aanntwin.characterization.twin.choose_transfer`), record the
    ngspice times and write the outputs into ``out_dir``: the result and the paths written."""
    fan = fan_ins(fan_in) if isinstance(fan_in, str) else fan_in
    result = characterize(curves.tables, fan, degree, transfer)
    result.seconds.update({f"ngspice_{k}": v for k, v in curves.seconds.items()})
    return result, write_outputs(result, out_dir, plots=plots)


def wrote(paths: dict[str, Path], out_dir: str | os.PathLike[str]) -> str:
    """``wrote <out_dir>/: <file>, <file>, ...`` (paths relative to ``out_dir``)."""
    out = Path(out_dir)
    return f"wrote {out}/: " + ", ".join(str(p.relative_to(out)) for p in paths.values())


__all__ = ["Curves", "acquire", "fit_and_write", "ngspice_present", "summary", "wrote"]
