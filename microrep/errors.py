"""Typed errors that carry a message written for the user.

Stages raise these; only the CLI turns them into one line on stderr and an exit
code, so notebooks and library users get ordinary exceptions they can catch.
"""


class MicrorepError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    exit_code = 2


class ConfigError(MicrorepError):
    """A flag, config file or setting is invalid."""


class DataError(MicrorepError):
    """Input data is missing, unreadable, or unsuitable for the request."""


class OutputExistsError(MicrorepError):
    """The output folder already holds a different run."""


class ModelFileError(MicrorepError):
    """A model or checkpoint file cannot be used (corrupt, other version)."""


class WeightsError(MicrorepError):
    """Pretrained weights cannot be obtained or loaded."""


class FetchError(DataError):
    """A dataset could not be downloaded or verified."""


class DiskFullError(MicrorepError):
    """Writing failed because the disk is full or not writable."""


class ExportError(MicrorepError):
    """The model cannot be exported here."""


class TrainingDivergedError(MicrorepError):
    """The loss became NaN or infinite."""
