"""What every part of the embedding cache shares: format constants, the encoder protocol, the warning."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from era_core import __version__

#: Bump when the on-disk layout or the key recipe changes.
CACHE_FORMAT = 1
CREATED_BY = f"era-core {__version__} (cache format {CACHE_FORMAT})"
ROLES = ("query", "document")
VERIFY_MODES = ("sample", "full")


class CacheCorruptionWarning(UserWarning):
    """A cache file failed its checksum or did not match its request; it is recomputed."""


class SupportsEncode(Protocol):
    """What the cache needs from an encoder (``era_core.encoders.Encoder`` provides it)."""

    key: str
    dim: int

    def cache_fields(self) -> dict[str, Any]:
        """Everything that decides the vectors (model, weights fingerprint, precision, ...): part of the key."""

    def format_queries(self, queries: Sequence[str], instructions: Sequence[str] | str | None) -> list[str]:
        """The texts the model encodes for these queries (its prompt and the instruction template applied)."""

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = True) -> np.ndarray:
        """L2-normalised float32 vectors ``[n, dim]`` of already formatted texts, in input order."""
