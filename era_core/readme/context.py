"""Where the generator reads from, and its error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from era_core.errors import EraError

#: Where the README's figure lives, relative to the README's folder (figures/ is not committed).
README_FIGURE = Path("docs/img/ndcg_vs_ratio.png")
RUNTIMES = Path("timing/runtimes.json")


class ReadmeError(EraError):
    """The README's markers are malformed, or a block's source is missing under ``--strict``."""


@dataclass(frozen=True)
class Context:
    """Where the generator reads from."""

    results: Path
    figures: Path

    def path(self, rel: str) -> Path:
        """A source path: ``figures/...`` under the figures folder, anything else under results."""
        if rel.startswith("figures/"):
            return self.figures / rel.removeprefix("figures/")
        return self.results / rel
