"""The paper's protocols on one pool: the in-domain sweep, LODO, domain-specific, the Phase 1 study, the random floor."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from era_core.api import apply_and_score
from era_core.methods import METHODS, REMINE_SUFFIX
from era_core.metrics import summarise
from era_core.paper.config import Config
from era_core.paper.pool import EmbeddingPool
from era_core.paper.runs import Run, run_job
from era_core.paper.selection import method_config, select_label_lr, selection_for
from era_core.identical_texts import query_side_cosine, train_alignment_cached
from era_core.setup import Setup, load_units
from era_core.splits import test_qids


def sweep_cells(cfg: Config) -> list[tuple[str, float, str]]:
    """The in-domain sweep's (instruction setting, train ratio, method) cells, in run order.

    The first instruction setting is the headline: every method at every ratio of ``train_ratios``.
    Each further setting (the stress test) runs the same methods at ``stress_ratios`` only ('' = all
    ratios). At ``remine_ratios`` the headline setting also runs each Phase 2 method's re-mined variant.
    """
    settings, methods, ratios = cfg.instruction_settings, cfg.methods, cfg.train_ratios
    stress = (cfg.stress_ratios if "stress_ratios" in cfg.params else ()) or ratios
    remine = cfg.remine_ratios if "remine_ratios" in cfg.params else ()
    cells = []
    for i, setting in enumerate(settings):
        for ratio in (ratios if i == 0 else stress):
            cells += [(setting, ratio, m) for m in methods]
            if i == 0 and ratio in remine:
                cells += [(setting, ratio, m + REMINE_SUFFIX) for m in methods if m + REMINE_SUFFIX in METHODS]
    return cells


def sweep(pool: EmbeddingPool, cfg: Config, results: Path) -> list[dict[str, Any]]:
    """The in-domain experiment: every cell of ``sweep_cells`` × seed, trained on all units.

    The Phase 2 lr is selected per method and instruction setting (``select_label_lr``), at that
    setting's smallest train ratio and on the first seed.
    """
    names = tuple(u.name for u in pool.units)
    seeds = cfg.seeds
    cells = sweep_cells(cfg)
    selections = {}
    for setting in dict.fromkeys(c[0] for c in cells):
        mine = [c for c in cells if c[0] == setting]
        selections[setting] = select_label_lr(pool, cfg, results, list(dict.fromkeys(c[2] for c in mine)),
                                              instructions=setting, train_ratio=min(c[1] for c in mine), seed=seeds[0])
    jobs = [(m, r, s, i) for i in selections for s in seeds for ci, r, m in cells if ci == i]
    out = []
    for method, ratio, seed, inst in tqdm(jobs, desc="sweep", disable=not pool.setup.progress):
        chosen = selection_for(selections[inst], method)
        summary = run_job(Run("in_domain", method, seed, ratio, inst, names), pool,
                          method_config(cfg, method, selections[inst]), results,
                          extra_meta={"label_lr_selection": chosen})
        out.append({**summary, "label_lr_selection": chosen})
    return out


def _per_domain(protocol: str, pool: EmbeddingPool, cfg: Config, results: Path, domains: list[str],
                tag: str, trains_on: Callable[[str, str], bool]) -> list[dict[str, Any]]:
    """One adapter per (domain, method, seed), trained on the units ``trains_on(unit_domain, domain)`` selects."""
    out = []
    fold_units = {d: [u.name for u in pool.units if trains_on(u.domain, d)] for d in domains}
    # Selection per fold, on that fold's training units only: the held-out domain never chooses the lr.
    selections = {d: select_label_lr(pool, cfg, results, list(cfg.methods), instructions=cfg.instructions,
                                     train_ratio=cfg.train_ratio, seed=cfg.seeds[0], train_names=fold_units[d],
                                     fold={tag: d})
                  for d in domains}
    jobs = [(d, m, s) for d in domains for s in cfg.seeds for m in cfg.methods]
    for domain, method, seed in tqdm(jobs, desc=protocol, disable=not pool.setup.progress):
        selection = selections[domain]
        run = Run(protocol, method, seed, cfg.train_ratio, cfg.instructions, tuple(fold_units[domain]),
                  tags=((tag, domain),))
        out.append(run_job(run, pool, method_config(cfg, method, selection), results,
                           extra_meta={"label_lr_selection": selection_for(selection, method)}))
    return out


def lodo(pool: EmbeddingPool, cfg: Config, results: Path, domains: list[str]) -> list[dict[str, Any]]:
    """Leave-one-domain-out: for each held-out domain, train on the others and score everything."""
    return _per_domain("lodo", pool, cfg, results, domains, "held_out", lambda unit_d, d: unit_d != d)


def domain_specific(pool: EmbeddingPool, cfg: Config, results: Path, domains: list[str]) -> list[dict[str, Any]]:
    """One adapter per domain, trained on that domain only and scored on every task."""
    return _per_domain("domain_specific", pool, cfg, results, domains, "train_domain", lambda unit_d, d: unit_d == d)


def alignment_study(setup: Setup, cfg: Config) -> dict[str, Any]:
    """Phase 1 on the configured tasks: loss curves and hold-out cosine, plus the closed-form ridge for reference.

    Each map is also measured where retrieval uses it: its query-side cosine (``query_side_cosine``) and
    alignment-only test nDCG@10 (seed ``cfg.seed``'s test split), in the ``instructions`` setting.
    """
    units = load_units(setup)
    acfg = cfg.alignment(cfg.seed, setup.device)
    adapter, meta = train_alignment_cached(units, setup, acfg)
    ridge, ridge_meta = train_alignment_cached(units, setup, replace(acfg, init="ridge", epochs=0))
    embs = EmbeddingPool(setup, units).get(cfg.instructions)
    unit_domain = {te.name: te.domain for te in embs}
    keep = test_qids(embs, cfg.seed, cfg.val_ratio, cfg.eval_ratio)

    def on_queries(a: Any) -> dict[str, float]:
        per_query = apply_and_score(a, embs, query_side="large", unit_domain=unit_domain)
        return {"query_cosine": query_side_cosine(a, embs),
                "alignment_only": summarise(per_query, unit_domain, keep)["overall"]["ndcg@10"]}

    return {"config": meta["config"]["config"], "history": meta["history"], "eval_cosine": meta["eval_cosine"],
            "best_epoch": meta["best_epoch"], "num_train_texts": meta["num_train_texts"],
            "num_eval_texts": meta["num_eval_texts"], "in_dim": meta["in_dim"], "out_dim": meta["out_dim"],
            "ridge_eval_cosine": ridge_meta["eval_cosine"], "units": [u.name for u in units],
            "large_model": setup.large_model, "small_model": setup.small_model,
            "instructions": cfg.instructions, "on_queries": {"default": on_queries(adapter), "ridge": on_queries(ridge)}}


def random_adapter_baseline(pool: EmbeddingPool, cfg: Config) -> list[dict[str, Any]]:
    """A randomly initialised, untrained adapter on the large query vectors: the floor every trained method must beat."""
    from era_core.adapter import LinearAdapter
    from era_core.seeding import seed_everything

    out = []
    unit_domain = {u.name: u.domain for u in pool.units}
    for inst in cfg.instruction_settings:
        embs = pool.get(inst)
        for seed in cfg.seeds:
            seed_everything(seed)
            adapter = LinearAdapter(embs[0].q_large.shape[1], embs[0].docs_small.shape[1])
            per_query = apply_and_score(adapter, embs, query_side="large", unit_domain=unit_domain)
            keep = test_qids(embs, seed, cfg.val_ratio, cfg.eval_ratio)
            out.append({"method": "random_adapter", "instructions": inst, "seed": seed,
                        "scopes": {"test": summarise(per_query, unit_domain, keep)}})
    return out
