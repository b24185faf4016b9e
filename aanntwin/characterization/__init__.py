"""Characterization: fit the twin to transfer curves of the circuits (simulated or measured).

``pipeline`` (simulate, fit, write the outputs), ``flow`` (the data source, fit and write: what
``aanntwin characterize`` and notebook 01 share), ``tables`` (notebook 01's tables), ``spice``
(the ngspice runner), ``curves`` (the CSV format and its
:class:`~aanntwin.characterization.curves.CurveTable`; ``csv_format`` reads the file, ``units``
the full scales' units), ``fit`` (the circuit models' fits), ``sanity`` (data the fit cannot
use, fits that explain nothing),
``twin`` (mapping fits onto :class:`~aanntwin.config.Nonidealities`), ``plots`` and
``circuits/`` (the example netlists and their data).
"""

TRANSFERS = ("auto", "polynomial", "table")
"""How the multiplier's input and weight transfers are written (see
:func:`~aanntwin.characterization.twin.choose_transfer`); here, free of the fit's imports, so
the command line can offer them without loading scipy."""
MIN_INSTANCES = 3
"""Monte Carlo instances a mismatch fit needs (a spread of fewer says nothing); the command
line checks ``--instances`` against it."""
MIN_DC_ROWS = 6
"""Rows a DC table needs (``--heldout``: the MAC's held-out conditions are one row each)."""
