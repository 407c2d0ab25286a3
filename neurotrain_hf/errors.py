"""Errors that reach users as one line: the file, the key or sample, the bad value and what is allowed."""

from __future__ import annotations


class NeuroTrainError(Exception):
    """Base error; the CLI and recipes print its message alone and exit with code 2."""

    exit_code = 2


class ConfigError(NeuroTrainError, ValueError):
    """A configuration file or override is invalid."""


class RegistryError(NeuroTrainError, KeyError):
    """An unknown or duplicate registered name."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain line.
        return str(self.args[0]) if self.args else ""


class DataError(NeuroTrainError, ValueError):
    """A dataset folder or sample is missing or malformed."""


class TrainingHaltedError(NeuroTrainError, RuntimeError):
    """Training stopped on purpose (non-finite loss, broken launch); the last good checkpoint is kept."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
