"""Errors a user can cause. The CLI prints their message on one line and exits 2."""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (config, corpus, files, arguments).

    The message must name the file, line or key at fault; the CLI prints it
    without a traceback.
    """


class ConfigError(UserError):
    """An unknown key, a wrong type or an invalid value in a config."""


class DataError(UserError):
    """A corpus that cannot be read as asked (missing file, bad UTF-8, ...)."""


class CheckpointError(UserError):
    """A model folder that is missing, incomplete or corrupt."""
