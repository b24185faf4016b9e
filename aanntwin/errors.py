"""Errors a user can fix: one clear line, no traceback, from the CLI."""

from __future__ import annotations


class AanntwinError(ValueError):
    """Bad input a user can correct (config field, geometry, data file, CLI argument).

    The message names what is wrong (file, field, value) and what is allowed.
    """


class ConfigError(AanntwinError):
    """A configuration field is missing, unknown, of the wrong type or out of range."""


class GeometryError(AanntwinError):
    """The network geometry does not tile the input (partial conv windows or pool cells)."""


class DataError(AanntwinError):
    """A dataset file is missing, truncated, corrupt or fails its checksum."""


class FaultError(AanntwinError):
    """A fault of the machine, not of the input (disk full, I/O error): the CLI exits with 1."""

    exit_status = 1
