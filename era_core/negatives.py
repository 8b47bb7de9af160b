"""Phase 2 training tuples: one (query, positive, k negatives) per labelled query (ERA_METHOD.md §3.2.2).

RNG call order (per task, ``rng = random.Random(seed)``; seed 42 for train, 43 for val):
for each query of the split, in split order:
1. positives = docs with score > 0 that are in the corpus (qrels order); none -> skip, no draw;
2. ``pos = rng.choice(positives)``;
3. negatives by strategy, drawing only as described below;
and at the end of the task ``rng.shuffle(tuples)``.

- ``random``: ``rng.sample(non_excluded, k)``; skip (no draw) when fewer than k remain.
- ``naive_topk``: the top k of the teacher ranking (no draw), then
  ``rng.sample(rest, k - found)`` only if short.
- ``topk_percpos``: keep ranked docs with ``s < margin * s[pos]``, at most 2k; none kept ->
  ``rng.sample(non_excluded, k)``; else the hardest kept, plus ``rng.sample(other_kept, k-1)``
  when more than k-1 others exist (all of them otherwise), then ``rng.sample(rest, short)``.

``non_excluded`` is the corpus in its order minus every doc in the query's qrels (any score)
and the chosen positive; ``rest`` is ``non_excluded`` minus the negatives already chosen, in
corpus order. ``random.sample`` depends only on the population length and reads items by
index, so a lazy index view replaces the reference's Python list of doc ids (identical draws
without a Python loop over the corpus).

Teacher similarities are one matrix product per task (queries x task corpus, chunked over
queries) followed by an ``argpartition`` for the top ``top_k``.

Deviations from the reference
- When fewer than k negatives can be found at all (a corpus with fewer than k+|qrels| docs),
  the query is skipped for every strategy (the spec states this only for ``random``), because
  the tuples are stacked into a fixed [n, k, d] tensor.
- Ties in teacher similarity are broken by corpus order (stable sort); the reference's tie order
  is whatever its sort produced.
- Teacher choice: see ``teacher_query_vectors`` (the small model's own query vectors are
  preferred over a dimension check when they are available).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from era_core.errors import DataError, ParamsError

STRATEGIES = ("random", "naive_topk", "topk_percpos")


@dataclass
class TrainingTuple:
    """One Phase 2 example; indices address rows of the SAME task's query and corpus matrices."""

    task: str
    qid: str
    query_row: int
    pos: int
    negs: list[int] = field(default_factory=list)


class _NonExcluded(Sequence):
    """Read-only view of ``range(n)`` minus a small sorted set of excluded indices, in order."""

    def __init__(self, n: int, excluded: set[int]) -> None:
        self._excl = sorted(i for i in excluded if 0 <= i < n)
        self._excl_set = set(self._excl)
        self._n = n - len(self._excl)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> int:  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        # The i-th kept index is i plus the number of excluded indices at or below it.
        j = i
        for e in self._excl:
            if e <= j:
                j += 1
            else:
                break
        return j

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, (int, np.integer)):
            return False
        v = int(value)
        return 0 <= v < self._n + len(self._excl) and v not in self._excl_set


def teacher_query_vectors(
    q_large: np.ndarray,
    *,
    doc_dim: int,
    alignment_adapter: Any = None,
    q_small: np.ndarray | None = None,
) -> np.ndarray:
    """Pick the hard-negative mining teacher's query vectors (ERA_METHOD.md §3.2.2).

    - An alignment adapter is given (mode ``both``): ``normalize(A_align(q_large))``; the frozen
      Phase 1 adapter, not the one being trained.
    - Otherwise the small model's own query vectors ``q_small`` (same instruction setting) when available
      (``label_only`` and ``small_adapter``).
    - Otherwise, if ``q_large`` already has the document dimension (same-model pairs), the
      large query vectors themselves.
    - Otherwise a ``DataError``: the ``label_only`` baseline on an asymmetric pair needs the
      small model's query cache.

    The reference checks the dimension before looking for ``q_small``; for same-model pairs
    both are the same vectors, and for different models with equal dims the large model's
    query vectors would live in the wrong space, so we prefer ``q_small``.
    """
    if alignment_adapter is not None:
        from era_core.adapter import apply_adapter

        return _normalize(apply_adapter(alignment_adapter, q_large))
    if q_small is not None:
        if q_small.shape[1] != doc_dim:
            raise DataError(f"small-model query vectors have dim {q_small.shape[1]}, corpus vectors {doc_dim}")
        return _normalize(q_small)
    if q_large.shape[1] == doc_dim:
        return _normalize(q_large)
    raise DataError(
        f"no mining teacher: query dim {q_large.shape[1]} != document dim {doc_dim}, no alignment adapter and no "
        f"small-model query embeddings; embed the queries with the document model (with instructions) first"
    )


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _ranked_candidates(sims: np.ndarray, excluded: set[int], top_k: int) -> np.ndarray:
    """Indices of the top ``top_k`` non-excluded docs by ``sims``, highest first (ties: corpus order)."""
    n = sims.shape[0]
    want = min(n, top_k + len(excluded))
    if want <= 0:
        return np.empty(0, dtype=np.int64)
    if want < n:
        part = np.argpartition(-sims, want - 1)[:want]
        # argpartition may drop some docs tied with the cut-off; take all of them so ties are stable.
        cut = sims[part].min()
        part = np.flatnonzero(sims >= cut)
    else:
        part = np.arange(n)
    part = np.sort(part)
    order = part[np.argsort(-sims[part], kind="stable")]
    if excluded:
        order = order[~np.isin(order, np.fromiter(excluded, dtype=np.int64, count=len(excluded)))]
    return order[:top_k]


def _backfill(rng: random.Random, n_docs: int, excluded: set[int], negs: list[int], k: int) -> list[int] | None:
    """Fill ``negs`` up to ``k`` with uniform non-excluded docs; ``None`` if impossible."""
    need = k - len(negs)
    if need <= 0:
        return negs
    pool = _NonExcluded(n_docs, excluded | set(negs))
    if len(pool) < need:
        return None
    return negs + rng.sample(pool, need)


def _query_rows(qids: list[str], qid_rows: Mapping[str, int] | Sequence[int], task: str) -> list[int]:
    """Each qid's row in the task's query matrix, checked against ``qids``."""
    if isinstance(qid_rows, Mapping):
        missing = [q for q in qids if q not in qid_rows]
        if missing:
            raise DataError(f"task {task!r}: {len(missing)} qids have no query row, e.g. {missing[:3]}")
        return [int(qid_rows[q]) for q in qids]
    if len(qid_rows) != len(qids):
        raise DataError(f"task {task!r}: qid_rows has {len(qid_rows)} entries for {len(qids)} qids")
    return [int(r) for r in qid_rows]


def _check_strategy(strategy: str, num_negatives: int, top_k: int) -> None:
    if strategy not in STRATEGIES:
        raise ParamsError(f"unknown negative strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
    if int(num_negatives) < 1:
        raise ParamsError(f"num_negatives must be >= 1, got {num_negatives}")
    if top_k < 1:
        raise ParamsError(f"top_k must be >= 1, got {top_k}")


def _check_teacher(strategy: str, teacher_queries: np.ndarray | None, doc_emb: np.ndarray | None, n_doc_ids: int,
                   task: str) -> None:
    if strategy == "random":
        return
    if teacher_queries is None or doc_emb is None:
        raise ParamsError(f"strategy {strategy!r} needs teacher_queries and doc_emb (teacher similarities)")
    if doc_emb.shape[0] != n_doc_ids:
        raise DataError(f"task {task!r}: doc_emb has {doc_emb.shape[0]} rows for {n_doc_ids} doc ids")
    if teacher_queries.shape[1] != doc_emb.shape[1]:
        raise DataError(
            f"task {task!r}: teacher query dim {teacher_queries.shape[1]} != document dim {doc_emb.shape[1]}"
        )


def _random_negatives(rng: random.Random, n_docs: int, excluded: set[int], k: int) -> list[int] | None:
    pool = _NonExcluded(n_docs, excluded)
    return rng.sample(pool, k) if len(pool) >= k else None


def _mined_negatives(rng: random.Random, strategy: str, sims: np.ndarray, pos: int, excluded: set[int], n_docs: int,
                     k: int, top_k: int, margin: float) -> list[int] | None:
    """§3.2.2's teacher-ranked negatives of one query (``naive_topk`` or ``topk_percpos``); None if too few."""
    ranked = _ranked_candidates(sims, excluded, top_k)
    if strategy == "naive_topk":
        return _backfill(rng, n_docs, excluded, [int(i) for i in ranked[:k]], k)
    threshold = margin * float(sims[pos])
    kept = ranked[sims[ranked] < threshold][: 2 * k]
    if kept.size == 0:
        return _random_negatives(rng, n_docs, excluded, k)
    others = [int(i) for i in kept[1:]]
    chosen = others if len(others) <= k - 1 else rng.sample(others, k - 1)
    return _backfill(rng, n_docs, excluded, [int(kept[0])] + chosen, k)


def build_tuples(
    qids: list[str],
    qid_rows: Mapping[str, int] | Sequence[int],
    qrels: Mapping[str, Mapping[str, int]],
    doc_ids: list[str],
    *,
    seed: int,
    strategy: str = "topk_percpos",
    num_negatives: int = 5,
    teacher_queries: np.ndarray | None = None,
    doc_emb: np.ndarray | None = None,
    top_k: int = 2000,
    margin: float = 0.95,
    task: str = "",
    chunk: int = 256,
) -> list[TrainingTuple]:
    """Build one (query, positive, negatives) tuple per query of one task, exactly as §3.2.2.

    ``qid_rows`` maps each qid to its row in the task's query matrix (a dict, or a list aligned
    with ``qids``); ``teacher_queries`` is indexed by those rows, ``doc_emb`` by corpus row.
    """
    _check_strategy(strategy, num_negatives, top_k)
    rows = _query_rows(qids, qid_rows, task)
    _check_teacher(strategy, teacher_queries, doc_emb, len(doc_ids), task)
    k, mined = int(num_negatives), strategy != "random"
    doc_row = {d: i for i, d in enumerate(doc_ids)}
    n_docs = len(doc_ids)
    rng = random.Random(seed)
    tuples: list[TrainingTuple] = []
    if mined:
        # Cosine without copying the corpus: divide the dot products by the doc norms (einsum
        # avoids the [nd, d] temporary that np.linalg.norm would allocate).
        doc_norms = np.sqrt(np.einsum("ij,ij->i", doc_emb, doc_emb, dtype=np.float32))
        doc_norms = np.maximum(doc_norms, 1e-12)
    for start in range(0, len(qids), max(1, chunk)):
        chunk_qids = qids[start : start + chunk]
        chunk_rows = rows[start : start + chunk]
        sims_chunk = (_normalize(teacher_queries[chunk_rows]) @ doc_emb.T) / doc_norms if mined else None
        for j, (qid, row) in enumerate(zip(chunk_qids, chunk_rows)):
            labels = qrels.get(qid, {})
            positives = [doc_row[d] for d, s in labels.items() if s > 0 and d in doc_row]
            if not positives:
                continue
            pos = rng.choice(positives)
            excluded = {doc_row[d] for d in labels if d in doc_row}
            excluded.add(pos)
            if mined:
                negs = _mined_negatives(rng, strategy, sims_chunk[j], pos, excluded, n_docs, k, top_k, margin)
            else:
                negs = _random_negatives(rng, n_docs, excluded, k)
            if negs is None:
                continue
            tuples.append(TrainingTuple(task=task, qid=qid, query_row=row, pos=pos, negs=[int(i) for i in negs]))
    rng.shuffle(tuples)
    return tuples
