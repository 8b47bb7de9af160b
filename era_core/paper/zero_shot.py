"""The zero-shot protocol: every model on both sides, no adapter, with its TREC run files."""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from era_core.vectors import embed_corpus, embed_queries, query_inputs
from era_core.setup import load_units
from era_core.paper.runs import run_dir
from era_core.metrics import headline_per_query, summarise
from era_core.api import score_unit
from era_core.splits import test_qids
from era_core.setup import Setup
from era_core.trec import QRELS_FILE, RUN_FILE, write_qrels, write_run


def zero_shot(setup: Setup, models: list[str], *, instructions: str, seeds: list[int],
              val_ratio: float = 0.1, eval_ratio: float = 0.5,
              results: Path | None = None) -> tuple[list[dict], dict[str, float]]:
    """Score each model on both sides (no adapter); one record per model × scope (× seed for the test scope).

    ``instructions`` is the instruction setting (``native`` or ``forced``). With ``results``, each model's
    top-100 over all labelled queries and the qrels are written as TREC files to
    ``results/runs/zero_shot/<model>__<setting>/``.

    Returns the records and the measured query-encoding milliseconds per query of each model
    (timing lives apart from results so results stay byte-identical across runs).
    """
    units = load_units(setup)
    unit_domain = {u.name: u.domain for u in units}
    records, ms_per_query = [], {}
    for key in models:
        per_query, runs, n_q, t_q = {}, {}, 0, 0.0
        for unit in tqdm(units, desc=f"zero-shot {key}", disable=not setup.progress):
            qids, _, _ = query_inputs(unit)
            t0 = time.perf_counter()
            q = embed_queries(key, unit, setup, instructions)
            t_q += time.perf_counter() - t0
            n_q += len(qids)
            d = embed_corpus(key, unit, setup)
            per_query[unit.name] = score_unit(q, d, qids, list(unit.corpus), unit.qrels,
                                              run_out=runs.setdefault(unit.name, {}))
        ms_per_query[key] = 1000.0 * t_q / max(n_q, 1)
        if results is not None:
            folder = run_dir(results, "zero_shot", f"{key}__{instructions}")
            write_run(folder / RUN_FILE, runs, tag=f"{key}-zero-shot")
            write_qrels(folder / QRELS_FILE, {u.name: u.qrels for u in units})
        base = {"encoder": key, "instructions": instructions, "train_ratio": None}
        records.append({**base, "scope": "all", "seed": None, **summarise(per_query, unit_domain)})
        for seed in seeds:
            keep = test_qids(units, seed, val_ratio, eval_ratio)
            records.append({**base, "scope": "test", "seed": seed, **summarise(per_query, unit_domain, keep),
                            "per_query": headline_per_query(per_query, keep)})
    return records, ms_per_query
