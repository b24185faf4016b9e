"""A trained network simulated at transistor level against its twins (``validate-circuit``).

:mod:`.netlist` builds ngspice netlists of a MAC stage from the shipped cells, :mod:`.simulate`
chains the stages (conv MACs -> ReLU circuit -> final MACs) beside the characterized and the
ideal twin, :mod:`.compare` scores them (class decisions, per-stage % of full scale),
:mod:`.chips` draws mismatch chips, :mod:`.run` runs it all resumably.
"""
