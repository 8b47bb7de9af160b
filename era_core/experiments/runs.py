"""Where a run's files live under ``results/runs/``, and whether a run is already done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from era_core.instructions import check_instruction_setting
from era_core.io import read_json

#: Per-query nDCG@10 of a run on each evaluation unit's test split (the queries paired tests compare).
PER_QUERY_FILE = "per_query.json"


def make_run_id(method: str, instructions: str, train_ratio: float, seed: int, tags: dict[str, Any]) -> str:
    """The folder name of one run under ``results/runs/<protocol>/`` (``instructions``: the setting's name)."""
    check_instruction_setting(instructions)
    return f"{method}__{instructions}__train{train_ratio:g}__seed{seed}" + "".join(f"__{k}-{v}" for k, v in tags.items())


def run_dir(results: Path, protocol: str, run_id: str) -> Path:
    """Folder of one training run's ``summary.json`` and ``era_meta.json``."""
    return results / "runs" / protocol / run_id


def run_is_done(folder: Path, cfg_key: str) -> dict | None:
    """Return a finished run's summary if it exists and was made with the same configuration, else None."""
    summary = folder / "summary.json"
    if summary.exists():
        data = read_json(summary)
        if data.get("config_key") == cfg_key:
            return data
    return None


def trained_index(results: Path, train_key: str) -> Path:
    """Where a finished training is indexed: which run folder holds its adapter, and its meta."""
    return results / "runs" / "_trained" / f"{train_key}.json"
