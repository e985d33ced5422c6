"""Errors a user can cause. The CLI prints their message on one line and exits 2."""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (config, corpus, files, arguments).

    The message must name the file, line or key at fault; the CLI prints it
    without a traceback.
    """


class ConfigError(UserError, ValueError):
    """An unknown key, a wrong type or an invalid value in a config or an option.

    ``key`` and ``problem`` are set when one field is at fault, so that the
    caller can name it the way its user wrote it (``search.beam`` in a YAML
    file, ``--beam`` on the command line, ``beam`` in a request).
    """

    def __init__(self, message: str, key: str | None = None, problem: str | None = None):
        super().__init__(message)
        self.key, self.problem = key, problem


class DataError(UserError):
    """A corpus that cannot be read as asked (missing file, bad UTF-8, ...)."""


class CheckpointError(UserError):
    """A model folder that is missing, incomplete or corrupt."""
