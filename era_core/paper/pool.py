"""``EmbeddingPool``: one notebook's units and their embeddings, memoised per instruction setting."""

from __future__ import annotations

from era_core import api
from era_core.data import Unit
from era_core.setup import Setup, unit_fingerprints


class EmbeddingPool:
    """Memoises ``TaskEmbeddings`` per instruction setting within one notebook run."""

    def __init__(self, setup: Setup, units: list[Unit]):
        self.setup, self.units = setup, units
        self._by_setting: dict[str, list] = {}
        self._fingerprints: dict[str, str] | None = None

    def fingerprints(self) -> dict[str, str]:
        """Content hash of every unit (computed once per pool: units are not modified after loading)."""
        if self._fingerprints is None:
            self._fingerprints = unit_fingerprints(self.units)
        return self._fingerprints

    def get(self, instructions: str) -> list:
        """Embeddings of every unit for one instruction setting (``native`` or ``forced``; cache-backed)."""
        if instructions not in self._by_setting:
            self._by_setting[instructions] = api.embed(self.setup, self.units, instructions)
        return self._by_setting[instructions]
