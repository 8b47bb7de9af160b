"""The paper's protocols on one pool: the in-domain sweep, LODO, domain-specific, the Phase 1 study, the random floor."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from era_core.experiments.embeddings import EmbeddingPool
from era_core.experiments.jobs import run_job
from era_core.experiments.keys import align_config
from era_core.experiments.phase1 import train_alignment_cached
from era_core.experiments.scoring import apply_and_score, summarise, test_qids
from era_core.experiments.selection import method_params, select_label_lr
from era_core.experiments.setup import Setup, load_units
from era_core.params import split_csv


def sweep(pool: EmbeddingPool, p: dict[str, Any], results: Path) -> list[dict[str, Any]]:
    """The in-domain experiment: every method × train ratio × instruction setting × seed, trained on all units."""
    selection = select_label_lr(pool, p, results, split_csv(p["methods"]))
    names = [u.name for u in pool.units]
    jobs = [(m, r, s, i) for i in split_csv(p["instruction_settings"]) for s in map(int, split_csv(p["seeds"]))
            for r in map(float, split_csv(p["train_ratios"])) for m in split_csv(p["methods"])]
    out = []
    for method, ratio, seed, inst in tqdm(jobs, desc="sweep", disable=not pool.setup.progress):
        summary = run_job("in_domain", method, seed=seed, train_ratio=ratio, use_instructions=inst == "on",
                          train_names=names, pool=pool, p=method_params(p, method, selection), results=results,
                          extra_meta={"label_lr_selection": selection.get(method)})
        out.append({**summary, "label_lr_selection": selection.get(method)})
    return out


def _per_domain(protocol: str, pool: EmbeddingPool, p: dict[str, Any], results: Path, domains: list[str],
                tag: str, trains_on: Callable[[str, str], bool]) -> list[dict[str, Any]]:
    """One adapter per (domain, method, seed), trained on the units ``trains_on(unit_domain, domain)`` selects."""
    out = []
    methods = split_csv(p["methods"])
    fold_units = {d: [u.name for u in pool.units if trains_on(u.domain, d)] for d in domains}
    # Selection per fold, on that fold's training units only: the held-out domain never chooses the lr.
    selections = {d: select_label_lr(pool, p, results, methods, train_names=fold_units[d], fold={tag: d})
                  for d in domains}
    jobs = [(d, m, s) for d in domains for s in map(int, split_csv(p["seeds"])) for m in methods]
    for domain, method, seed in tqdm(jobs, desc=protocol, disable=not pool.setup.progress):
        names, selection = fold_units[domain], selections[domain]
        out.append(run_job(protocol, method, seed=seed, train_ratio=p["train_ratio"],
                           use_instructions=p["use_instructions"], train_names=names, pool=pool,
                           p=method_params(p, method, selection), results=results, run_tags={tag: domain},
                           extra_meta={"label_lr_selection": selection.get(method)}))
    return out


def lodo(pool: EmbeddingPool, p: dict[str, Any], results: Path, domains: list[str]) -> list[dict[str, Any]]:
    """Leave-one-domain-out: for each held-out domain, train on the others and score everything."""
    return _per_domain("lodo", pool, p, results, domains, "held_out", lambda unit_d, d: unit_d != d)


def domain_specific(pool: EmbeddingPool, p: dict[str, Any], results: Path, domains: list[str]) -> list[dict[str, Any]]:
    """One adapter per domain, trained on that domain only and scored on every task."""
    return _per_domain("domain_specific", pool, p, results, domains, "train_domain", lambda unit_d, d: unit_d == d)


def alignment_study(setup: Setup, p: dict[str, Any]) -> dict[str, Any]:
    """Phase 1 on the configured tasks: loss curves and hold-out cosine, plus the closed-form ridge for reference."""
    units = load_units(setup)
    cfg = align_config(p, p["seed"], setup.device)
    _, meta = train_alignment_cached(units, setup, cfg)
    ridge_cfg = replace(cfg, init="ridge", epochs=0)
    _, ridge_meta = train_alignment_cached(units, setup, ridge_cfg)
    return {"config": meta["config"]["config"], "history": meta["history"], "eval_cosine": meta["eval_cosine"],
            "best_epoch": meta["best_epoch"], "num_train_texts": meta["num_train_texts"],
            "num_eval_texts": meta["num_eval_texts"], "in_dim": meta["in_dim"], "out_dim": meta["out_dim"],
            "ridge_eval_cosine": ridge_meta["eval_cosine"], "units": [u.name for u in units],
            "large_model": setup.large_model, "small_model": setup.small_model}


def random_adapter_baseline(pool: EmbeddingPool, p: dict[str, Any]) -> list[dict[str, Any]]:
    """A randomly initialised, untrained adapter on the large query vectors: the floor every trained method must beat."""
    from era_core.adapter import LinearAdapter
    from era_core.seeding import seed_everything

    out = []
    unit_domain = {u.name: u.domain for u in pool.units}
    for inst in split_csv(p["instruction_settings"]):
        embs = pool.get(inst == "on")
        for seed in map(int, split_csv(p["seeds"])):
            seed_everything(seed)
            adapter = LinearAdapter(embs[0].q_large.shape[1], embs[0].docs_small.shape[1])
            per_query = apply_and_score(adapter, embs, query_side="large", unit_domain=unit_domain)
            keep = test_qids(embs, seed, p["val_ratio"], p["eval_ratio"])
            out.append({"method": "random_adapter", "instructions": inst, "seed": seed,
                        "scopes": {"test": summarise(per_query, unit_domain, keep)}})
    return out
