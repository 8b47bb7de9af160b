"""The package's exception types: each message says what went wrong and how to fix it."""

from __future__ import annotations


class EraError(Exception):
    """Base class for every error the package raises on purpose."""


class ParamsError(EraError, ValueError):
    """A parameter file or value is invalid."""


class DataError(EraError, ValueError):
    """Benchmark data is malformed or missing."""


class ModelUnavailableError(EraError, RuntimeError):
    """A model's weights cannot be found (offline) or loaded."""


class CacheError(EraError, RuntimeError):
    """The embedding cache cannot serve or store an entry."""


class TrainingError(EraError, RuntimeError):
    """Training diverged (NaN/inf) or was configured inconsistently."""
