"""Errors a user can act on. The CLI prints them as one line (no traceback) and exits 2."""

import errno

FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
"""OSError numbers of a full disk or an exhausted quota: reported in one line, not as a traceback."""


class TetherError(Exception):
    """Base class: a message that names the file/line/field at fault and what is wrong."""


class ConfigError(TetherError):
    """A config file or override is wrong (unknown field, bad type, bad value)."""


class DataError(TetherError):
    """A dataset is unreadable or holds bad rows."""


class ModelLoadError(TetherError):
    """A model cannot be resolved or loaded (hub unreachable, missing dir, bad embedded name)."""


class TrainingError(TetherError):
    """A run must stop (NaN/inf loss, diverged KL); the message names the step and quantity."""


class OutputError(TetherError):
    """An output cannot be written (the disk is full); the message names the directory and the space left."""
