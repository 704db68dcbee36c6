"""Errors that carry a message for the user: what is wrong and what to change.

The entry points (``train.py``, ``finetune.py``) print such an error's message without a
stack trace and exit with status 2; any other exception is a bug and keeps its trace.
"""


class SimCLRError(Exception):
    """A problem the user can fix (a config value, a missing file); the message says how."""


class ConfigError(SimCLRError, ValueError):
    """A config value that cannot work, named with its key and the allowed values."""


class DataError(SimCLRError):
    """Data that is missing, empty or unreadable, named with its path."""


class ExportError(SimCLRError):
    """An exported encoder that does not load back or computes other features than the
    encoder it was exported from (``python -m simclr.export``)."""


class CheckpointWriteError(SimCLRError):
    """A checkpoint that could not be written (a full disk, no permission), named with its
    path and the cause; the checkpoint already on disk is kept."""
