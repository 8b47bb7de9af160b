"""Retrieval metrics with trec_eval semantics (nDCG@k, Recall@k, MRR, MAP), vectorised with NumPy.

The values equal those of trec_eval as exposed by pytrec_eval (`ndcg_cut_k`, `recall_k`,
`recip_rank`, `map`) to floating-point rounding:

- Gain is the qrel value itself (linear). Only positive labels are relevant or carry gain;
  zero and negative labels count exactly like unjudged documents.
- The ideal DCG uses ALL positive judgements of the query (truncated at k), including
  documents the run never retrieved. A query with no positive judgement scores 0 on every
  metric.
- The run is ranked like trec_eval: scores are first rounded to float32 (trec_eval stores them
  as C `float`, so near-equal doubles tie), then sorted by score descending and, among equal
  scores, by doc id descending (string order). Input order never matters.
- Evaluated queries are those in both `qrels` and `run`, with a non-empty qrels entry
  (pytrec_eval drops a query whose judgement dict is empty, even when the run has it). A
  qrels query missing from the run is absent from the result, not 0, unless
  `missing_as_zero=True`. A run query with an empty result dict is evaluated (all zeros).
- MRR and MAP use the whole run as given; the caller truncates it (e.g. to the top 100).

``summarise`` aggregates per-query values into per-task, per-domain and overall means (MAIR's
weighting inside a task, the reference's macro mean across tasks): the one aggregation the results use.
"""

from __future__ import annotations

from dataclasses import dataclass

import gc
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from itertools import chain

import numpy as np

from era_core.data.tasks import DOMAINS, task_of_unit
from era_core.errors import DataError, ParamsError

DEFAULT_K_VALUES: tuple[int, ...] = (1, 5, 10, 20, 100)
_ZEROS = itertools.repeat(0)  # default argument stream for map(dict.get, keys, ...)


def metric_names(k_values: Sequence[int] = DEFAULT_K_VALUES) -> list[str]:
    """Names of the metrics `evaluate` returns for these cutoffs, in output order."""
    ks = _check_k_values(k_values)
    return [f"ndcg@{k}" for k in ks] + [f"recall@{k}" for k in ks] + ["mrr", "map"]


def evaluate(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    *,
    missing_as_zero: bool = False,
) -> dict[str, dict[str, float]]:
    """Per-query nDCG@k, Recall@k, MRR and MAP of `run` against `qrels`, as trec_eval computes them."""
    ks = _check_k_values(k_values)
    names = metric_names(ks)
    judged = {q for q, rels in qrels.items() if len(rels) > 0}
    qids = [q for q in run if q in judged]
    # The flattening allocates millions of short-lived objects; cyclic GC passes over the
    # caller's large dicts would otherwise dominate the run time.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        result = _evaluate_queries(qrels, run, qids, ks, names)
    finally:
        if gc_was_enabled:
            gc.enable()
    if missing_as_zero:
        for q in qrels:
            if q in judged and q not in result:
                result[q] = dict.fromkeys(names, 0.0)
    return result


def missing_queries(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Judged qrels queries (non-empty entry) that the run lacks, in qrels order."""
    return [q for q, rels in qrels.items() if len(rels) > 0 and q not in run]


def _check_k_values(k_values: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(k_values)
    if not ks:
        raise ParamsError("k_values is empty; pass at least one cutoff, e.g. (1, 5, 10, 20, 100).")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ParamsError(f"k_values must be positive integers, got {k!r} in {ks!r}.")
    return tuple(sorted({int(k) for k in ks}))


@dataclass
class _Flat:
    """A run and its qrels flattened into per-entry arrays, entries grouped by query in run order."""

    nq: int
    runs: list
    run_len: np.ndarray
    qrel_len: np.ndarray
    labels: np.ndarray  # every judgement's label, queries in order
    score32: np.ndarray
    gains: np.ndarray  # each run entry's qrels label (0 when unjudged)
    qidx: np.ndarray  # each run entry's query index
    starts: np.ndarray  # each query's first entry


def _flatten(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], qids: list[str]) -> _Flat:
    # Flatten the run and the qrels into parallel arrays once; every metric then works on
    # per-rank arrays, so nothing is re-sorted per metric.
    nq = len(qids)
    runs = [run[q] for q in qids]
    judgements = [qrels[q] for q in qids]
    run_len = np.fromiter(map(len, runs), dtype=np.int64, count=nq)
    qrel_len = np.fromiter(map(len, judgements), dtype=np.int64, count=nq)
    total = int(run_len.sum())
    labels = _as_int_labels(list(chain.from_iterable(r.values() for r in judgements)))
    score32 = _as_float32_scores(chain.from_iterable(r.values() for r in runs), total)
    # Every gain is a qrels value (checked above) or the default 0, so int64 is exact.
    gains = np.fromiter(
        chain.from_iterable(map(rels.get, res, _ZEROS) for rels, res in zip(judgements, runs)),
        dtype=np.int64,
        count=total,
    )
    qidx = np.repeat(np.arange(nq, dtype=np.int64), run_len)
    starts = np.concatenate(([0], np.cumsum(run_len)[:-1]))
    return _Flat(nq, runs, run_len, qrel_len, labels, score32, gains, qidx, starts)


def _trec_ranking(f: _Flat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries in trec_eval's order: ``(gain, relevant, 0-based rank)`` per ranked entry."""

    def doc_ids_at(entries: np.ndarray) -> list[str]:
        # Only tied entries need their ids: list just the queries they belong to.
        lists: dict[int, list[str]] = {}
        out = []
        owners = f.qidx[entries]
        for qi, j in zip(owners.tolist(), (entries - f.starts[owners]).tolist()):
            ids = lists.get(qi)
            if ids is None:
                ids = lists[qi] = list(f.runs[qi])
            out.append(ids[j])
        return out

    order = _trec_order(f.qidx, f.score32, f.gains > 0, doc_ids_at)
    g = np.maximum(f.gains[order], 0).astype(np.float64)
    rank = np.arange(len(order), dtype=np.int64) - np.repeat(f.starts, f.run_len)  # 0-based
    return g, g > 0, rank


def _ideal_ranking(f: _Flat) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every positive judgement, highest gain first: ``(query index, gain, 0-based rank, n relevant per query)``."""
    lab_q = np.repeat(np.arange(f.nq, dtype=np.int64), f.qrel_len)
    pos = f.labels > 0
    lab_q, lab_g = lab_q[pos], f.labels[pos]
    n_rel = np.bincount(lab_q, minlength=f.nq).astype(np.float64)
    ideal_order = np.lexsort((-lab_g, lab_q))
    lab_q, lab_g = lab_q[ideal_order], lab_g[ideal_order].astype(np.float64)
    ideal_starts = np.concatenate(([0], np.cumsum(np.bincount(lab_q, minlength=f.nq))[:-1]))
    ideal_rank = np.arange(len(lab_q), dtype=np.int64) - ideal_starts[lab_q]
    return lab_q, lab_g, ideal_rank, n_rel


def _evaluate_queries(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    qids: list[str],
    ks: tuple[int, ...],
    names: list[str],
) -> dict[str, dict[str, float]]:
    nq = len(qids)
    if nq == 0:
        return {}
    f = _flatten(qrels, run, qids)
    qidx = f.qidx
    g, rel, rank = _trec_ranking(f)
    lab_q, lab_g, ideal_rank, n_rel = _ideal_ranking(f)

    max_rank = int(max(rank.max(initial=0), ideal_rank.max(initial=0))) + 1
    discount = np.log2(np.arange(max_rank, dtype=np.float64) + 2.0)
    dcg_terms = np.where(rel, g / discount[rank], 0.0)
    idcg_terms = lab_g / discount[ideal_rank]
    has_rel = n_rel > 0
    safe_n_rel = np.where(has_rel, n_rel, 1.0)

    ndcg_cols: list[np.ndarray] = []
    recall_cols: list[np.ndarray] = []
    for k in ks:
        # bincount adds in rank order within a query, the same order as trec_eval's loop.
        cut = rank < k
        dcg = np.bincount(qidx[cut], weights=dcg_terms[cut], minlength=nq)
        icut = ideal_rank < k
        idcg = np.bincount(lab_q[icut], weights=idcg_terms[icut], minlength=nq)
        ndcg_cols.append(np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0))
        hits = np.bincount(qidx[cut & rel], minlength=nq).astype(np.float64)
        recall_cols.append(np.where(has_rel, hits / safe_n_rel, 0.0))

    # MRR: the first relevant rank per query (entries are grouped by query, rank ascending).
    first_q, first_pos = np.unique(qidx[rel], return_index=True)
    mrr = np.zeros(nq, dtype=np.float64)
    mrr[first_q] = 1.0 / (rank[rel][first_pos] + 1.0)

    # MAP: precision at each relevant rank, summed in rank order, over all relevant docs.
    rel_cum = np.cumsum(rel.astype(np.int64))
    rel_before = np.concatenate(([0], rel_cum))[np.repeat(f.starts, f.run_len)]
    prec = (rel_cum - rel_before).astype(np.float64) / (rank + 1.0)
    ap_sum = np.bincount(qidx[rel], weights=prec[rel], minlength=nq)
    columns = [*ndcg_cols, *recall_cols, mrr, np.where(has_rel, ap_sum / safe_n_rel, 0.0)]
    table = np.column_stack(columns).tolist()
    return {q: dict(zip(names, row)) for q, row in zip(qids, table)}


def _as_int_labels(values: list) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iub":
        bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, (int, np.integer))), values[0])
        raise DataError(
            f"qrels relevance labels must be integers (as pytrec_eval requires), got {bad!r} "
            f"of type {type(bad).__name__}; convert labels with int() when building qrels."
        )
    return arr.astype(np.int64)


def _as_float32_scores(scores: Iterable[float], count: int) -> np.ndarray:
    try:
        arr = np.fromiter(scores, dtype=np.float64, count=count)
    except (TypeError, ValueError) as exc:
        raise DataError(f"run scores must be numbers; could not convert them to float: {exc}.") from exc
    if np.isnan(arr).any():
        raise DataError("run scores contain NaN; NaN has no rank. Remove or replace those entries.")
    # trec_eval keeps scores as C float: rounding here makes near-equal doubles tie as there
    # (and, as there, magnitudes beyond float32 become +-inf).
    with np.errstate(over="ignore"):
        return arr.astype(np.float32)


def _desc_score_key(score32: np.ndarray) -> np.ndarray:
    """uint32 keys whose ascending order is the float32 scores' descending order."""
    # +0.0 folds -0.0 into +0.0: trec_eval compares with `>`/`<`, so the two zeros tie.
    bits = (score32 + np.float32(0.0)).view(np.uint32)
    ascending = np.where(bits >> 31 == 0, bits | np.uint32(0x80000000), ~bits)
    return ~ascending


def _trec_order(
    qidx: np.ndarray, score32: np.ndarray, relevant: np.ndarray, doc_ids_at: Callable[[np.ndarray], list[str]]
) -> np.ndarray:
    """Permutation sorting entries by query, then score descending, then doc id descending.

    Every metric depends only on the ranks of relevant entries, so ties are resolved by doc id
    only in (query, score) runs that hold a relevant entry; other runs keep an arbitrary order.
    """
    # One integer key (query, score) sorts far faster than a multi-key lexsort.
    key = (qidx.astype(np.uint64) << np.uint64(32)) | _desc_score_key(score32).astype(np.uint64)
    order = np.argsort(key, kind="stable")
    if len(order) < 2:
        return order
    sorted_key = key[order]
    tie = sorted_key[1:] == sorted_key[:-1]
    if not tie.any():
        return order
    # Only entries sharing (query, score) need the string comparison, and they sit in
    # contiguous runs of the sorted order: re-sort just those positions by doc id descending.
    in_tie = np.zeros(len(order), dtype=bool)
    in_tie[1:] |= tie
    in_tie[:-1] |= tie
    pos = np.flatnonzero(in_tie)
    run_no = _run_numbers(pos, tie)
    with_relevant = np.zeros(int(run_no[-1]) + 1, dtype=bool)
    with_relevant[run_no[relevant[order[pos]]]] = True
    pos = pos[with_relevant[run_no]]  # whole runs are kept or dropped
    if len(pos) == 0:
        return order
    tied = order[pos]
    id_rank = _string_ranks(doc_ids_at(tied))
    order[pos] = tied[_within_runs_descending(pos, tie, id_rank)]
    return order


def _run_numbers(pos: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Run number of each tied sorted position (`tie[j]`: sorted entries j and j+1 share their key)."""
    starts_run = np.ones(len(pos), dtype=bool)
    inner = pos > 0
    starts_run[inner] = ~tie[pos[inner] - 1]
    return np.cumsum(starts_run) - 1


def _within_runs_descending(pos: np.ndarray, tie: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Permutation of `pos` (sorted positions of tied entries) ordering each run by tiebreak desc.

    `tie[j]` says sorted entries j and j+1 share their key; runs stay in place, so one int64
    argsort on (run number, reversed tiebreak) replaces a slower multi-key lexsort.
    """
    run_no = _run_numbers(pos, tie)
    span = int(tiebreak.max()) + 1  # tiebreak values are non-negative ranks
    return np.argsort(run_no * span + (span - 1 - tiebreak), kind="stable")


def _string_ranks(strings: list[str]) -> np.ndarray:
    """Ranks putting the strings in code-point order (= UTF-8 byte order, as strcmp sees it).

    Equal strings may get different ranks; callers only compare distinct ids of one query.
    """
    if "\x00" in "".join(strings):
        # NumPy's fixed-width unicode drops trailing NULs; compare such ids as Python objects.
        arr = np.empty(len(strings), dtype=object)
        arr[:] = strings
    else:
        arr = np.array(strings, dtype=str)  # sorts several times faster than an object array
    ranks = np.empty(len(strings), dtype=np.int64)
    ranks[np.argsort(arr)] = np.arange(len(strings), dtype=np.int64)
    return ranks


# ----------------------------------------------------------------------------- aggregation (MAIR)

HEADLINE = "ndcg@10"


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
