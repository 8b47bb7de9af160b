"""Exact cosine top-k search in bounded memory, with trec_eval's tie order, and run building.

Ranking order is trec_eval's: score descending, then doc id descending (string order), or
index descending when no doc ids are given. Selecting the top k with the same rule as the
evaluator means metrics of our truncated run equal those of the full ranking.

Memory: the score matrix is only ever materialised for one (query chunk x corpus chunk) block;
a running top-k per query is merged with the few candidates of each new block.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from era_core.errors import DataError, ParamsError

# Rows whose L2 norm is this close to 1 are taken as already normalised (float32 embeddings
# come out of encoders with norms 1 +- a few 1e-7); dividing them again would only add noise.
NORM_TOLERANCE = 1e-5
DEVICES = ("cpu", "cuda")


def topk_search(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int = 100,
    *,
    doc_ids: Sequence[str] | None = None,
    query_chunk: int = 1024,
    corpus_chunk: int = 65536,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k: (scores [nq, k'] float32, corpus indices [nq, k'] int64), k' = min(k, n_docs)."""
    queries, corpus = _check_inputs(queries, corpus, k, doc_ids, query_chunk, corpus_chunk, device)
    n_q, n_docs = queries.shape[0], corpus.shape[0]
    k_eff = min(int(k), n_docs)
    q_unit = _unit_rows(queries, "queries")
    doc_scale = _inverse_norms(corpus)  # None when the corpus is already unit norm
    ids = None if doc_ids is None else np.asarray(list(doc_ids), dtype=object)
    q_starts = list(range(0, n_q, query_chunk))
    best_scores = [np.empty((min(query_chunk, n_q - q0), 0), dtype=np.float32) for q0 in q_starts]
    best_idx = [np.empty((len(b), 0), dtype=np.int64) for b in best_scores]

    scorer = _TorchScorer(q_unit) if device == "cuda" else _NumpyScorer(q_unit)
    # Corpus chunks outermost: each chunk is read (or sent to the GPU) once for all queries.
    for c0 in range(0, n_docs, corpus_chunk):
        scale = None if doc_scale is None else doc_scale[c0 : c0 + corpus_chunk]
        scorer.load_corpus(corpus[c0 : c0 + corpus_chunk], scale)
        for j, q0 in enumerate(q_starts):
            full = best_scores[j].shape[1] == k_eff
            threshold = best_scores[j][:, -1] if full else None
            rows, cols, vals = scorer.candidates(q0, q0 + best_scores[j].shape[0], k_eff, threshold)
            if len(rows) == 0:
                continue
            best_scores[j], best_idx[j] = _merge(best_scores[j], best_idx[j], rows, cols + c0, vals, k_eff, ids)
    if n_q == 0:
        return np.empty((0, k_eff), dtype=np.float32), np.empty((0, k_eff), dtype=np.int64)
    return np.concatenate(best_scores), np.concatenate(best_idx)


def run_from_topk(
    qids: Sequence[str], doc_ids: Sequence[str], scores: np.ndarray, indices: np.ndarray
) -> dict[str, dict[str, float]]:
    """Run dict {qid: {doc_id: score}} from `topk_search` output (scores as Python floats)."""
    scores = np.asarray(scores)
    indices = np.asarray(indices)
    if scores.shape != indices.shape or scores.ndim != 2:
        raise DataError(f"scores {scores.shape} and indices {indices.shape} must be equal-shaped 2-D arrays.")
    if len(qids) != scores.shape[0]:
        raise DataError(f"{len(qids)} qids for {scores.shape[0]} result rows; pass one qid per query row.")
    if indices.size and (indices.min() < 0 or indices.max() >= len(doc_ids)):
        raise DataError(
            f"indices span [{indices.min()}, {indices.max()}] but there are {len(doc_ids)} doc_ids; "
            "pass the doc ids of the corpus that was searched."
        )
    ids = np.asarray(list(doc_ids), dtype=object)
    run: dict[str, dict[str, float]] = {}
    for q, row_ids, row_scores in zip(qids, ids[indices].tolist(), scores.tolist()):
        if q in run:
            raise DataError(f"duplicate qid {q!r}; query ids must be unique.")
        run[q] = dict(zip(row_ids, row_scores))
        if len(run[q]) != len(row_ids):
            raise DataError(f"query {q!r} retrieved duplicate doc ids; corpus doc ids must be unique.")
    return run


def _check_inputs(queries, corpus, k, doc_ids, query_chunk, corpus_chunk, device):
    if device not in DEVICES:
        raise ParamsError(f"device must be one of {DEVICES}, got {device!r}.")
    for name, v in (("k", k), ("query_chunk", query_chunk), ("corpus_chunk", corpus_chunk)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ParamsError(f"{name} must be a positive integer, got {v!r}.")
    queries = np.asarray(queries)
    corpus = np.asarray(corpus)
    if queries.ndim != 2 or corpus.ndim != 2:
        raise DataError(
            f"queries and corpus must be 2-D [n, dim] arrays, got shapes {queries.shape} and {corpus.shape}."
        )
    if corpus.shape[0] == 0:
        raise DataError("the corpus is empty (0 documents); a task needs at least one document to search.")
    if queries.shape[1] != corpus.shape[1]:
        raise DataError(
            f"query dim {queries.shape[1]} != corpus dim {corpus.shape[1]}; embed queries and documents "
            "into the same space (for adapted queries, check the adapter's output dim)."
        )
    if doc_ids is not None and len(doc_ids) != corpus.shape[0]:
        raise DataError(f"{len(doc_ids)} doc_ids for {corpus.shape[0]} corpus rows; pass one id per row.")
    # float32 throughout: BLAS sgemm speed, and the scores are float32 like trec_eval's.
    return queries.astype(np.float32, copy=False), corpus.astype(np.float32, copy=False)


def _row_norms(x: np.ndarray) -> np.ndarray:
    """L2 norms of the rows, accumulated in float64, chunked to bound temporary memory."""
    out = np.empty(x.shape[0], dtype=np.float64)
    step = 65536
    for i in range(0, x.shape[0], step):
        block = x[i : i + step].astype(np.float64)
        out[i : i + step] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return out


def _check_norms(norms: np.ndarray, what: str) -> None:
    finite = np.isfinite(norms)
    if not finite.all():
        raise DataError(f"{what} row {int(np.argmin(finite))} contains NaN or infinite values; re-embed it.")
    if (norms == 0).any():
        raise DataError(
            f"{what} row {int(np.argmax(norms == 0))} is all zeros, so its cosine is undefined; "
            "re-embed that text or drop it."
        )


def _norms_to_apply(x: np.ndarray, what: str) -> np.ndarray | None:
    """Exact row norms when rows must be rescaled, None when they are already unit norm."""
    # A float32 pass (no temporaries) settles the usual already-normalised case cheaply.
    quick = np.sqrt(np.einsum("ij,ij->i", x, x))
    if np.isfinite(quick).all() and np.abs(quick - 1.0).max(initial=0.0) <= NORM_TOLERANCE:
        return None
    norms = _row_norms(x)  # float64: no overflow/underflow surprises, exact cosine
    _check_norms(norms, what)
    if np.abs(norms - 1.0).max(initial=0.0) <= NORM_TOLERANCE:
        return None
    return norms


def _unit_rows(x: np.ndarray, what: str) -> np.ndarray:
    norms = _norms_to_apply(x, what)
    return x if norms is None else (x / norms[:, None]).astype(np.float32)


def _inverse_norms(corpus: np.ndarray) -> np.ndarray | None:
    """Per-document 1/norm to scale score columns, or None when all rows are unit norm."""
    norms = _norms_to_apply(corpus, "corpus")
    # Scaling score columns gives exact cosine without copying a large corpus.
    return None if norms is None else (1.0 / norms).astype(np.float32)


class _NumpyScorer:
    """Score blocks with BLAS sgemm and pick the entries that can enter the running top-k."""

    def __init__(self, queries: np.ndarray) -> None:
        self.queries = queries

    def load_corpus(self, chunk: np.ndarray, scale: np.ndarray | None) -> None:
        self.chunk_t = chunk.T
        self.scale = scale

    def candidates(self, q0: int, q1: int, k: int, threshold: np.ndarray | None):
        block = self.queries[q0:q1] @ self.chunk_t
        if self.scale is not None:
            block *= self.scale
        # flatnonzero is ~10x faster than 2-D nonzero on a large sparse mask.
        flat = np.flatnonzero(_candidate_mask(block, k, threshold))
        rows, cols = np.divmod(flat, block.shape[1])
        return rows, cols, block.reshape(-1)[flat]


def _candidate_mask(block: np.ndarray, k: int, threshold: np.ndarray | None) -> np.ndarray:
    """Entries of a score block that may enter the running top-k (ties with the k-th included)."""
    n_cols = block.shape[1]
    if threshold is None and n_cols <= k:
        return np.ones(block.shape, dtype=bool)
    if threshold is not None:
        # The running k-th score usually prunes nearly everything for the price of one compare;
        # only a block full of better scores needs a tighter per-block bound.
        mask = block >= threshold[:, None]
        if n_cols <= k or np.count_nonzero(mask) <= 4 * k * block.shape[0]:
            return mask
    bound = _kth_lower_bound(block, k)
    if threshold is not None:
        bound = np.maximum(bound, threshold)
    return block >= bound[:, None]


def _kth_lower_bound(block: np.ndarray, k: int) -> np.ndarray:
    """Per row, a score t with at least k entries >= t and close to the k-th largest.

    A full per-row partition costs about as much as the matmul, so estimate the k-th value
    from a strided column sample, verify it by counting, and partition only rows that fail.
    """
    n_cols = block.shape[1]
    stride = n_cols // (8 * k)
    if stride < 4:
        return np.partition(block, n_cols - k, axis=1)[:, n_cols - k]
    sample = block[:, ::stride]
    m = sample.shape[1]
    expected = k * m / n_cols  # rank of the block's k-th value inside the sample
    r = min(m, int(np.ceil(expected + 3.0 * np.sqrt(expected) + 2.0)))
    bound = np.partition(sample, m - r, axis=1)[:, m - r]
    short = np.count_nonzero(block >= bound[:, None], axis=1) < k
    if short.any():
        bound[short] = np.partition(block[short], n_cols - k, axis=1)[:, n_cols - k]
    return bound


class _TorchScorer:
    """GPU twin of `_NumpyScorer`: matmul and k-th value on the device, candidates back to NumPy."""

    def __init__(self, queries: np.ndarray) -> None:
        import torch  # only the cuda path needs torch

        if not torch.cuda.is_available():
            raise ParamsError("device='cuda' but torch sees no CUDA device; use device='cpu' or install a CUDA build.")
        self.torch = torch
        self.queries = torch.from_numpy(np.ascontiguousarray(queries)).to("cuda")

    def load_corpus(self, chunk: np.ndarray, scale: np.ndarray | None) -> None:
        torch = self.torch
        self.chunk_t = torch.from_numpy(np.ascontiguousarray(chunk)).to("cuda").T
        self.scale = None if scale is None else torch.from_numpy(scale).to("cuda")

    def candidates(self, q0: int, q1: int, k: int, threshold: np.ndarray | None):
        torch = self.torch
        block = self.queries[q0:q1] @ self.chunk_t
        if self.scale is not None:
            block *= self.scale
        n_cols = block.shape[1]
        if threshold is not None:
            cut = torch.from_numpy(np.ascontiguousarray(threshold)).to("cuda")
            if int((block >= cut[:, None]).sum()) > 4 * k * block.shape[0] and n_cols > k:
                cut = torch.maximum(torch.topk(block, k, dim=1).values[:, -1], cut)
        elif n_cols > k:
            cut = torch.topk(block, k, dim=1).values[:, -1]
        else:
            cut = torch.full((block.shape[0],), -float("inf"), device="cuda")
        rows, cols = torch.nonzero(block >= cut[:, None], as_tuple=True)
        vals = block[rows, cols]
        return rows.cpu().numpy(), cols.cpu().numpy(), vals.cpu().numpy()


def _desc_score_key(scores: np.ndarray) -> np.ndarray:
    """uint32 keys whose ascending order is the float32 scores' descending order."""
    bits = (scores.astype(np.float32) + np.float32(0.0)).view(np.uint32)  # +0.0 folds -0.0 into +0.0
    ascending = np.where(bits >> 31 == 0, bits | np.uint32(0x80000000), ~bits)
    return ~ascending


def _merge(
    best_scores: np.ndarray,
    best_idx: np.ndarray,
    rows: np.ndarray,
    idx: np.ndarray,
    vals: np.ndarray,
    k: int,
    ids: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Running top-k of each row merged with new (row, doc index, score) candidates."""
    n, m = best_scores.shape
    all_rows = np.concatenate((np.repeat(np.arange(n, dtype=np.int64), m), rows.astype(np.int64)))
    all_idx = np.concatenate((best_idx.reshape(-1), idx.astype(np.int64)))
    all_vals = np.concatenate((best_scores.reshape(-1), vals.astype(np.float32)))
    key = (all_rows.astype(np.uint64) << np.uint64(32)) | _desc_score_key(all_vals).astype(np.uint64)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    tie = sorted_key[1:] == sorted_key[:-1]
    if tie.any():
        # Equal (row, score): trec_eval ranks the larger doc id first; resolve just those runs.
        in_tie = np.zeros(len(order), dtype=bool)
        in_tie[1:] |= tie
        in_tie[:-1] |= tie
        pos = np.flatnonzero(in_tie)
        tied = order[pos]
        if ids is None:
            tiebreak = all_idx[tied]
        else:
            _, tiebreak = np.unique(ids[all_idx[tied]], return_inverse=True)
        order[pos] = tied[np.lexsort((-tiebreak.reshape(-1), sorted_key[pos]))]
    sorted_rows = all_rows[order]
    counts = np.bincount(sorted_rows, minlength=n)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    keep = order[(np.arange(len(order)) - starts[sorted_rows]) < k]
    width = min(k, int(counts.min()))  # every row saw the same documents, so counts agree
    return all_vals[keep].reshape(n, width), all_idx[keep].reshape(n, width)
