"""The encoder-pair study: for each (query model, document model) pair, zero-shot both ways and the trained methods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from era_core.api import score_unit
from era_core.vectors import embed_corpus
from era_core.metrics import summarise
from era_core.paper.config import Config
from era_core.paper.params import parse_pairs
from era_core.paper.pool import EmbeddingPool
from era_core.paper.runs import Run, run_job
from era_core.paper.selection import method_config, select_label_lr, selection_for
from era_core.setup import load_units
from era_core.splits import test_qids


def _row(pair: str, inst: str, seed: int, method: str, ratio: float | None, scope: dict[str, Any]) -> dict[str, Any]:
    return {"pair": pair, "instructions": inst, "seed": seed, "method": method, "train_ratio": ratio,
            "overall": scope["overall"]["ndcg@10"],
            "per_domain": {d: v["ndcg@10"] for d, v in scope["per_domain"].items()}}


def _zero_shot_rows(pool: EmbeddingPool, embs: list, keep: dict[str, list[str]], pair: str, inst: str, seed: int,
                    small: str, large: str) -> list[dict[str, Any]]:
    """Zero-shot small→small and large→large of one pair on the test split of ``seed``."""
    unit_domain = {u.name: u.domain for u in pool.units}
    rows = []
    for role, key in (("zero_shot_small", small), ("zero_shot_large", large)):
        per_query = {}
        for unit, te in zip(pool.units, embs):
            q = te.q_small if role == "zero_shot_small" else te.q_large
            d = te.docs_small if role == "zero_shot_small" else embed_corpus(key, unit, pool.setup)
            per_query[te.name] = score_unit(q, d, te.qids, te.doc_ids, te.qrels)
        rows.append(_row(pair, inst, seed, role, None, summarise(per_query, unit_domain, keep)))
    return rows


def encoder_pair_study(cfg: Config, results: Path) -> list[dict[str, Any]]:
    """The paper's encoder-pair experiment in small: zero-shot of both models and trained methods, per pair.

    Returns one row per pair × instruction setting × seed × method × ratio with the overall and
    per-domain nDCG@10 on the test split, plus the zero-shot rows (``method`` = ``zero_shot_small``
    / ``zero_shot_large``) on the same split.
    """
    rows: list[dict[str, Any]] = []
    seeds, ratios = cfg.seeds, cfg.train_ratios
    for large, small in parse_pairs(cfg.pairs):
        pair_cfg = cfg.with_params(large_model=large, small_model=small)
        setup = pair_cfg.setup
        pool = EmbeddingPool(setup, load_units(setup))
        pair = f"{large}>{small}"
        pair_tags = {"pair": pair.replace(">", "-to-")}
        names = tuple(u.name for u in pool.units)
        for inst in cfg.instruction_settings:
            # Each pair picks its own Phase 2 lr per setting by validation loss, as 03_training does.
            selection = select_label_lr(pool, pair_cfg, results, list(cfg.methods), instructions=inst,
                                        train_ratio=min(ratios), seed=seeds[0], fold=pair_tags)
            embs = pool.get(inst)
            for seed in seeds:
                keep = test_qids(embs, seed, cfg.val_ratio, cfg.eval_ratio)
                rows += _zero_shot_rows(pool, embs, keep, pair, inst, seed, small, large)
                for method in cfg.methods:
                    for ratio in ratios:
                        run = Run("encoder_pairs", method, seed, ratio, inst, names, tags=tuple(pair_tags.items()))
                        s = run_job(run, pool, method_config(pair_cfg, method, selection), results,
                                    extra_meta={"label_lr_selection": selection_for(selection, method)})
                        rows.append({**_row(pair, inst, seed, method, ratio, s["scopes"]["test"]),
                                     **({"phase1": s["phase1"]} if "phase1" in s else {})})
    return rows
