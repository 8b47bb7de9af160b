"""Scoring: exact top-k search and per-query metrics per unit, test splits, and the macro aggregates."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from era_core.data import DOMAINS, task_of_unit
from era_core.metrics import evaluate
from era_core.retrieval import run_from_topk, topk_search
from era_core.splits import split_queries

HEADLINE = "ndcg@10"


def score_unit(queries: np.ndarray, docs: np.ndarray, qids: list[str], doc_ids: list[str],
               qrels: dict[str, dict[str, int]], k: int = 100,
               run_out: dict[str, dict[str, float]] | None = None) -> dict[str, dict[str, float]]:
    """Exact top-k search then per-query metrics for one unit (all its labelled queries).

    ``run_out``, when given, receives the top-k run ``{qid: {doc_id: score}}`` (for TREC run files).
    """
    if len(qids) == 0:
        return {}
    scores, idx = topk_search(queries, docs, k=k, doc_ids=doc_ids)
    run = run_from_topk(qids, doc_ids, scores, idx)
    if run_out is not None:
        run_out.update(run)
    return evaluate({q: qrels[q] for q in qids}, run)


def test_qids(units: Iterable, seed: int, val_ratio: float = 0.1, eval_ratio: float = 0.5) -> dict[str, list[str]]:
    """Each unit's test split: independent of the train ratio (spec §3.2.1), so one split serves every method."""
    out = {}
    for u in units:
        qids = u.qids if hasattr(u, "qids") else u.labelled_qids()
        out[u.name] = split_queries(qids, 0.1, val_ratio, eval_ratio, seed=seed)[2] if qids else []
    return out


def headline_per_query(per_query: dict[str, dict[str, dict[str, float]]],
                       keep: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """``{unit: {qid: nDCG@10}}`` of the kept (test-split) queries: what paired tests over queries need."""
    return {unit: {q: per_query[unit][q][HEADLINE] for q in keep.get(unit, []) if q in per_query[unit]}
            for unit in per_query}


def summarise(per_query: dict[str, dict[str, dict[str, float]]], unit_domain: dict[str, str],
              keep: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Aggregate per-query metrics of units into per-task, per-domain and overall means.

    Task value = mean over the task's scored queries across its sub-splits (the official MAIR
    weighting inside a task). ``overall`` and ``per_domain`` are macro means over tasks (the
    reference's aggregate); ``overall_query_weighted`` weights tasks by query count (MAIR's).
    """
    task_rows: dict[str, list[dict[str, float]]] = {}
    task_domain: dict[str, str] = {}
    for unit, rows in per_query.items():
        chosen = rows if keep is None else {q: rows[q] for q in keep.get(unit, []) if q in rows}
        task = task_of_unit(unit)
        task_domain[task] = unit_domain[unit]
        task_rows.setdefault(task, []).extend(chosen.values())
    per_task, n_queries = {}, {}
    for task, rows in task_rows.items():
        if not rows:
            continue
        names = sorted(rows[0])
        per_task[task] = {m: float(np.mean([r[m] for r in rows])) for m in names}
        n_queries[task] = len(rows)
    per_domain = {}
    for d in DOMAINS:
        ts = [t for t in per_task if task_domain[t] == d]
        if ts:
            per_domain[d] = {m: float(np.mean([per_task[t][m] for t in ts])) for m in per_task[ts[0]]}
    overall = {m: float(np.mean([v[m] for v in per_task.values()])) for m in next(iter(per_task.values()), {})}
    total = sum(n_queries.values())
    weighted = {m: float(sum(per_task[t][m] * n_queries[t] for t in per_task) / total) for m in overall} if total else {}
    return {"per_task": per_task, "n_queries": n_queries, "per_domain": per_domain, "overall": overall,
            "overall_query_weighted": weighted, "task_domain": {t: task_domain[t] for t in per_task}}


def apply_and_score(adapter: Any, embs: list, *, query_side: str, unit_domain: dict[str, str],
                    runs: dict[str, dict] | None = None) -> dict[str, dict]:
    """Per-query metrics of every unit with ``adapter`` applied to its query vectors (all labelled queries).

    ``runs``, when given, receives each unit's top-100 run (``{unit: {qid: {doc_id: score}}}``).
    """
    from era_core.adapter import apply_adapter
    from era_core.train import query_vectors

    per_query = {}
    for te in embs:
        q = query_vectors(te, query_side)
        q = apply_adapter(adapter, q) if adapter is not None else q
        per_query[te.name] = score_unit(q, te.docs_small, te.qids, te.doc_ids, te.qrels,
                                        run_out=None if runs is None else runs.setdefault(te.name, {}))
    return per_query
