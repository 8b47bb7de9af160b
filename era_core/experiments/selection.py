"""Phase 2's learning rate, chosen per method from ``label_lr_grid`` by validation loss (never test scores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from era_core.errors import EraError
from era_core.experiments.embeddings import EmbeddingPool
from era_core.experiments.jobs import run_job
from era_core.experiments.runs import make_run_id, run_dir
from era_core.io import read_json
from era_core.params import split_csv


def select_label_lr(pool: EmbeddingPool, p: dict[str, Any], results: Path, methods: list[str],
                    train_names: list[str] | None = None, fold: dict[str, str] | None = None) -> dict[str, Any]:
    """Pick Phase 2's learning rate per method from ``label_lr_grid`` by the pooled validation loss.

    Trains on ``train_names`` only (default: every unit) and scores nothing else, so a fold's
    held-out units never enter its selection; ``fold`` (e.g. ``{"held_out": "code"}``) names the fold
    in the run ids. Uses the smallest train ratio (or ``train_ratio``), the first seed and the first
    instruction setting; the test split is never looked at. Returns
    ``{method: {"grid": {lr: val_loss}, "chosen": lr, "units": [...], ...}}``.
    """
    grid = [float(x) for x in split_csv(p.get("label_lr_grid", ""))]
    if not grid:
        return {}
    ratio = min(map(float, split_csv(p["train_ratios"]))) if "train_ratios" in p else p["train_ratio"]
    seed = int(split_csv(p["seeds"])[0])
    inst = split_csv(p.get("instruction_settings", "on" if p.get("use_instructions", True) else "off"))[0] == "on"
    names = list(train_names) if train_names is not None else [u.name for u in pool.units]
    fold = fold or {}
    out: dict[str, Any] = {}
    for method in methods:
        if method == "alignment_only":
            continue
        losses = {}
        for lr in grid:
            tags = {**fold, "lr": f"{lr:g}"}
            run_job("lr_selection", method, seed=seed, train_ratio=ratio, use_instructions=inst, train_names=names,
                    pool=pool, p={**p, "label_lr": lr, "label_lr_grid": ""}, results=results, run_tags=tags,
                    eval_names=names)
            meta = read_json(run_dir(results, "lr_selection", make_run_id(method, inst, ratio, seed, tags)) / "era_meta.json")
            val = (meta.get("label_result") or {}).get("best_val_loss")
            if val is None:
                raise EraError(f"cannot select label_lr for {method}: the runs have no validation queries; set label_lr_grid ''")
            losses[f"{lr:g}"] = val
        chosen = min(losses, key=lambda k: (losses[k], float(k)))
        out[method] = {"grid": losses, "chosen": float(chosen), "train_ratio": ratio, "seed": seed,
                       "instructions": "on" if inst else "off", "criterion": "best pooled validation InfoNCE loss",
                       "units": names, **({"fold": fold} if fold else {})}
    return out


def method_params(p: dict[str, Any], method: str, selection: dict[str, Any]) -> dict[str, Any]:
    """Parameters of one method, with the selected ``label_lr`` when a selection was made."""
    if method in selection:
        return {**p, "label_lr": selection[method]["chosen"], "label_lr_grid": ""}
    return p
