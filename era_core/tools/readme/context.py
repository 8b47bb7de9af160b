"""Where the generator reads from and which document it writes, and its error."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from era_core.errors import EraError

#: Where the headline figure lives, relative to the repository root (figures/ is not committed).
README_FIGURE = Path("docs/img/ndcg_vs_ratio.png")
RUNTIMES = Path("timing/runtimes.json")
#: The documents ``make readme`` rewrites, relative to the repository root: the README's short headline and
#: the full result, reproducibility and performance pages.
DOCUMENTS = (Path("README.md"), Path("docs/results.md"), Path("docs/reproducibility.md"), Path("docs/performance.md"))


class ReadmeError(EraError):
    """A document's markers are malformed, or a block's source is missing under ``--strict``."""


@dataclass(frozen=True)
class Context:
    """Where the generator reads from, and the document (relative to the repository root) it is writing."""

    results: Path
    figures: Path
    doc: Path = Path("README.md")

    def path(self, rel: str) -> Path:
        """A source path: ``figures/...`` under the figures folder, anything else under results."""
        if rel.startswith("figures/"):
            return self.figures / rel.removeprefix("figures/")
        return self.results / rel

    def link(self, target: Path) -> str:
        """A Markdown link to ``target`` (relative to the repository root) from the document being written."""
        return Path(os.path.relpath(target, self.doc.parent)).as_posix()
