"""Phase 2's learning rate, chosen per method and instruction setting by validation loss (never test scores).

The rule, fixed before any test score is read and applied the same way to every method, protocol and
encoder pair: for each method that trains on labels, train once per value of ``label_lr_grid`` at the
smallest train ratio the setting runs, on the first seed, on the protocol's training units; keep the lr
whose run reaches the lowest pooled validation InfoNCE loss (ties: the smaller lr). A re-mined variant
(``<method>+remine``) uses its base method's choice. Every run records the grid's losses and the choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from era_core.errors import EraError
from era_core.io import read_json
from era_core.methods import get_method
from era_core.paper.config import Config
from era_core.paper.pool import EmbeddingPool
from era_core.paper.runs import Run, run_job

CRITERION = "lowest pooled validation InfoNCE loss at the setting's smallest train ratio, first seed (ties: smaller lr)"


def select_label_lr(pool: EmbeddingPool, cfg: Config, results: Path, methods: list[str], *,
                    instructions: str, train_ratio: float, seed: int, train_names: list[str] | None = None,
                    fold: dict[str, str] | None = None) -> dict[str, Any]:
    """Pick Phase 2's learning rate per method from ``label_lr_grid`` for one instruction setting.

    Trains on ``train_names`` only (default: every unit) and scores nothing else, so a fold's held-out
    units never enter its selection; ``fold`` (e.g. ``{"held_out": "code"}``) names the fold in the run
    ids. The test split is never looked at. Returns ``{method: {"grid": {lr: val_loss}, "chosen": lr, ...}}``
    for the base methods that train on labels; ``{}`` when the grid is empty.
    """
    grid = cfg.label_lr_grid if "label_lr_grid" in cfg.params else ()
    if not grid:
        return {}
    names = tuple(train_names) if train_names is not None else tuple(u.name for u in pool.units)
    fold = fold or {}
    bases = list(dict.fromkeys(get_method(m).base for m in methods))
    out: dict[str, Any] = {}
    for method in (m for m in bases if get_method(m).trains_on_labels):
        losses = {}
        for lr in grid:
            run = Run("lr_selection", method, seed, train_ratio, instructions, names, eval_names=names,
                      tags=(*fold.items(), ("lr", f"{lr:g}")))
            run_job(run, pool, cfg.with_params(label_lr=lr, label_lr_grid=""), results)
            meta = read_json(run.folder(results) / "era_meta.json")
            val = (meta.get("label_result") or {}).get("best_val_loss")
            if val is None:
                raise EraError(f"cannot select label_lr for {method}: the runs have no validation queries; set label_lr_grid ''")
            losses[f"{lr:g}"] = val
        chosen = min(losses, key=lambda k: (losses[k], float(k)))
        out[method] = {"grid": losses, "chosen": float(chosen), "train_ratio": train_ratio, "seed": seed,
                       "instructions": instructions, "criterion": CRITERION, "units": list(names),
                       **({"fold": fold} if fold else {})}
    return out


def method_config(cfg: Config, method: str, selection: dict[str, Any]) -> Config:
    """The configuration one method runs with: the ``label_lr`` selected for it (or its base method), if any."""
    base = get_method(method).base
    if base in selection:
        return cfg.with_params(label_lr=selection[base]["chosen"], label_lr_grid="")
    return cfg


def selection_for(selection: dict[str, Any], method: str) -> dict[str, Any] | None:
    """The selection record that decided ``method``'s lr (its base method's for a variant), or None."""
    return selection.get(get_method(method).base)
