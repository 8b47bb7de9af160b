"""Every path of the package, built from one root so notebooks, papermill and pytest agree."""

from __future__ import annotations

import os
from pathlib import Path

#: Repository root, derived from this file's location (never from the working directory).
ROOT: Path = Path(__file__).resolve().parent.parent


def _env_path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    if not value:
        return default
    p = Path(value).expanduser()
    return p if p.is_absolute() else ROOT / p


#: Generated tables, JSON results and executed notebooks.
RESULTS: Path = _env_path("ERA_RESULTS_DIR", ROOT / "results")
TABLES: Path = RESULTS / "tables"
EXECUTED: Path = RESULTS / "executed"
#: Generated PDF figures.
FIGURES: Path = _env_path("ERA_FIGURES_DIR", ROOT / "figures")
#: Everything recomputable lives under one cache root (override with ERA_CACHE_DIR).
CACHE: Path = _env_path("ERA_CACHE_DIR", ROOT / ".cache")
DATA_CACHE: Path = CACHE / "data"
EMBEDDING_CACHE: Path = CACHE / "embeddings"
MODEL_CACHE: Path = CACHE / "models"
ADAPTER_CACHE: Path = CACHE / "adapters"
NOTEBOOKS: Path = ROOT / "notebooks"
PARAMS: Path = ROOT / "params"


def ensure(path: Path) -> Path:
    """Create a directory (and parents) if needed and return it."""
    path.mkdir(parents=True, exist_ok=True)
    return path
