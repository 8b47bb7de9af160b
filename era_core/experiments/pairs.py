"""The encoder-pair study: for each (query model, document model) pair, zero-shot both ways and the trained methods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from era_core.experiments.embeddings import EmbeddingPool, embed_corpus
from era_core.experiments.jobs import run_job
from era_core.experiments.scoring import score_unit, summarise, test_qids
from era_core.experiments.selection import method_params, select_label_lr, selection_for
from era_core.experiments.setup import Setup, load_units
from era_core.params import parse_pairs, split_csv


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


def encoder_pair_study(p: dict[str, Any], results: Path) -> list[dict[str, Any]]:
    """The paper's encoder-pair experiment in small: zero-shot of both models and trained methods, per pair.

    Returns one row per pair × instruction setting × seed × method × ratio with the overall and
    per-domain nDCG@10 on the test split, plus the zero-shot rows (``method`` = ``zero_shot_small``
    / ``zero_shot_large``) on the same split.
    """
    rows: list[dict[str, Any]] = []
    seeds = [int(s) for s in split_csv(p["seeds"])]
    for large, small in parse_pairs(p["pairs"]):
        setup = Setup.from_params({**p, "large_model": large, "small_model": small})
        pool = EmbeddingPool(setup, load_units(setup))
        pair = f"{large}>{small}"
        pair_p = {**p, "large_model": large, "small_model": small}
        pair_tags = {"pair": pair.replace(">", "-to-")}
        ratios = [float(r) for r in split_csv(p["train_ratios"])]
        for inst in split_csv(p["instruction_settings"]):
            # Each pair picks its own Phase 2 lr per setting by validation loss, as 03_training does.
            selection = select_label_lr(pool, pair_p, results, split_csv(p["methods"]), instructions=inst,
                                        train_ratio=min(ratios), seed=seeds[0], fold=pair_tags)
            embs = pool.get(inst)
            for seed in seeds:
                keep = test_qids(embs, seed, p["val_ratio"], p["eval_ratio"])
                rows += _zero_shot_rows(pool, embs, keep, pair, inst, seed, small, large)
                for method in split_csv(p["methods"]):
                    for ratio in ratios:
                        s = run_job("encoder_pairs", method, seed=seed, train_ratio=ratio, instructions=inst,
                                    train_names=[u.name for u in pool.units], pool=pool,
                                    p=method_params(pair_p, method, selection), results=results, run_tags=pair_tags,
                                    extra_meta={"label_lr_selection": selection_for(selection, method)})
                        rows.append({**_row(pair, inst, seed, method, ratio, s["scopes"]["test"]),
                                     **({"phase1": s["phase1"]} if "phase1" in s else {})})
    return rows
