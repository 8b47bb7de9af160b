"""Exact cosine top-k search in bounded memory, with trec_eval's tie order, and run building.

Ranking order is trec_eval's: score descending, then doc id descending (string order), or
index descending when no doc ids are given. Selecting the top k with the same rule as the
evaluator means metrics of our truncated run equal those of the full ranking.

Memory: the score matrix is only ever materialised for one (query chunk x corpus chunk) block;
a running top-k per query is merged with the few candidates of each new block.
"""

from __future__ import annotations


from collections.abc import Sequence
from typing import Any

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
    corpus_chunk: int = 8192,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k: (scores [nq, k'] float32, corpus indices [nq, k'] int64), k' = min(k, n_docs)."""
    queries, corpus = _check_inputs(queries, corpus, k, doc_ids, query_chunk, corpus_chunk, device)
    n_q, n_docs = queries.shape[0], corpus.shape[0]
    k_eff = min(int(k), n_docs)
    if n_q == 0:
        return np.empty((0, k_eff), dtype=np.float32), np.empty((0, k_eff), dtype=np.int64)
    q_unit = _unit_rows(queries, "queries")
    doc_scale = _inverse_norms(corpus)  # None when the corpus is already unit norm
    ids = None if doc_ids is None else np.asarray(list(doc_ids), dtype=object)
    return _blocked_search(q_unit, corpus, doc_scale, k_eff, ids, query_chunk, corpus_chunk, device)


def _blocked_search(q_unit, corpus, doc_scale, k_eff, ids, query_chunk, corpus_chunk, device):
    """The NumPy (or torch) path: every (query chunk x corpus chunk) score block, running top-k merge."""
    n_q, n_docs = q_unit.shape[0], corpus.shape[0]
    q_starts = list(range(0, n_q, query_chunk))
    best_scores = [np.empty((min(query_chunk, n_q - q0), 0), dtype=np.float32) for q0 in q_starts]
    best_idx = [np.empty((len(b), 0), dtype=np.int64) for b in best_scores]

    if device == "cuda":
        scorer: _NumpyScorer | _TorchScorer = _TorchScorer(q_unit)
    else:
        scorer = _NumpyScorer(q_unit, min(query_chunk, n_q) * min(corpus_chunk, n_docs))
    # Corpus chunks outermost: each chunk is read (or sent to the GPU) once for all queries.
    for c0 in range(0, n_docs, corpus_chunk):
        scale = None if doc_scale is None else doc_scale[c0 : c0 + corpus_chunk]
        scorer.load_corpus(corpus[c0 : c0 + corpus_chunk], scale)
        for j, q0 in enumerate(q_starts):
            full = best_scores[j].shape[1] == k_eff
            threshold = best_scores[j][:, -1] if full else None
            block = scorer.scores(q0, q0 + best_scores[j].shape[0])
            rows, cols, vals = scorer.candidates(block, k_eff, threshold)
            if len(rows) == 0:
                continue
            best_scores[j], best_idx[j] = _merge(best_scores[j], best_idx[j], rows, cols + c0, vals, k_eff, ids)
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

    def __init__(self, queries: np.ndarray, block_size: int) -> None:
        self.queries = queries
        # One score buffer for every block: a fresh array per block costs its page faults each
        # time (~10% of the matmul at 64 MB blocks).
        self.buffer = np.empty(max(block_size, 0), dtype=np.float32)

    def load_corpus(self, chunk: np.ndarray, scale: np.ndarray | None) -> None:
        """Make ``chunk`` (with its optional per-document scale) the corpus block that ``scores`` reads."""
        self.chunk_t = chunk.T
        self.scale = scale

    def scores(self, q0: int, q1: int) -> np.ndarray:
        """Cosine scores of query rows [q0, q1) against the loaded chunk (a view of the shared buffer)."""
        block = self.buffer[: (q1 - q0) * self.chunk_t.shape[1]].reshape(q1 - q0, self.chunk_t.shape[1])
        np.matmul(self.queries[q0:q1], self.chunk_t, out=block)
        if self.scale is not None:
            block *= self.scale
        return block

    @staticmethod
    def candidates(block: np.ndarray, k: int, threshold: np.ndarray | None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, score) of the block entries that may enter the running top-k, row-major."""
        flat = _candidate_flat(block, k, threshold)
        rows, cols = np.divmod(flat, block.shape[1])
        return rows, cols, block.reshape(-1)[flat]


def _candidate_flat(block: np.ndarray, k: int, threshold: np.ndarray | None) -> np.ndarray:
    """Flat indices of the block entries that may enter the running top-k (ties with the k-th included)."""
    n_rows, n_cols = block.shape
    if threshold is None and n_cols <= k:
        return np.arange(block.size)
    # flatnonzero is ~10x faster than 2-D nonzero on a large sparse mask.
    if threshold is not None:
        # The running k-th score usually prunes nearly everything for the price of one compare;
        # only a block full of better scores needs a tighter per-block bound.
        flat = np.flatnonzero(block >= threshold[:, None])
        if n_cols <= k or len(flat) <= 4 * k * n_rows:
            return flat
        bound, _ = _kth_lower_bound(block, k)
        return np.flatnonzero(block >= np.maximum(bound, threshold)[:, None])
    return _kth_lower_bound(block, k)[1]


def _kth_lower_bound(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, a score t with at least k entries >= t and close to the k-th largest; and the flat
    indices of ``block >= t``.

    A full per-row partition costs about as much as the matmul, so estimate the k-th value
    from a strided column sample, verify it by counting, and partition only rows that fail.
    """
    n_rows, n_cols = block.shape
    stride = n_cols // (8 * k)
    if stride < 4:
        bound = np.partition(block, n_cols - k, axis=1)[:, n_cols - k]
        return bound, np.flatnonzero(block >= bound[:, None])
    sample = block[:, ::stride]
    m = sample.shape[1]
    expected = k * m / n_cols  # rank of the block's k-th value inside the sample
    r = min(m, int(np.ceil(expected + 3.0 * np.sqrt(expected) + 2.0)))
    bound = np.partition(sample, m - r, axis=1)[:, m - r]
    flat = np.flatnonzero(block >= bound[:, None])
    # Row counts from the sorted flat indices: a binary search per row, not another pass.
    counts = np.diff(np.searchsorted(flat, np.arange(n_rows + 1) * n_cols))
    short = np.flatnonzero(counts < k)
    if len(short):
        bound[short] = np.partition(block[short], n_cols - k, axis=1)[:, n_cols - k]
        flat = np.flatnonzero(block >= bound[:, None])
    return bound, flat


class _TorchScorer:
    """GPU twin of `_NumpyScorer`: matmul and k-th value on the device, candidates back to NumPy."""

    def __init__(self, queries: np.ndarray) -> None:
        import torch  # only the cuda path needs torch

        if not torch.cuda.is_available():
            raise ParamsError("device='cuda' but torch sees no CUDA device; use device='cpu' or install a CUDA build.")
        self.torch = torch
        self.queries = torch.from_numpy(np.ascontiguousarray(queries)).to("cuda")

    def load_corpus(self, chunk: np.ndarray, scale: np.ndarray | None) -> None:
        """Copy ``chunk`` (and its optional scale) to the GPU as the block that ``scores`` reads."""
        torch = self.torch
        self.chunk_t = torch.from_numpy(np.ascontiguousarray(chunk)).to("cuda").T
        self.scale = None if scale is None else torch.from_numpy(scale).to("cuda")

    def scores(self, q0: int, q1: int) -> Any:
        """Cosine scores of query rows [q0, q1) against the loaded chunk, on the GPU."""
        block = self.queries[q0:q1] @ self.chunk_t
        if self.scale is not None:
            block *= self.scale
        return block

    def candidates(self, block: Any, k: int, threshold: np.ndarray | None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, score) of the block entries that may enter the running top-k, as NumPy arrays."""
        torch = self.torch
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


def _score_from_key(key: np.ndarray) -> np.ndarray:
    """float32 scores back from `_desc_score_key` keys."""
    ascending = ~key.astype(np.uint32)
    bits = np.where(ascending >> 31 == 1, ascending & np.uint32(0x7FFFFFFF), ~ascending)
    return bits.view(np.float32)


#: The padded merge is used while its [rows, widest row] key matrix is at most this many times
#: the number of entries it holds (one row with a huge candidate list falls back to a flat sort).
PAD_LIMIT = 3.0
_LOW32 = np.uint64(0xFFFFFFFF)


def _merge(
    best_scores: np.ndarray,
    best_idx: np.ndarray,
    rows: np.ndarray,
    idx: np.ndarray,
    vals: np.ndarray,
    k: int,
    ids: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Running top-k of each row merged with new (row, doc index, score) candidates, rows ascending."""
    n, m = best_scores.shape
    counts = np.bincount(rows, minlength=n)
    width_all = m + int(counts.max())
    if n * width_all <= PAD_LIMIT * (n * m + len(rows)) + 64 * n and (len(idx) == 0 or int(idx.max()) < 2**32 - 1):
        out = _merge_padded(best_scores, best_idx, rows, idx, vals, counts, width_all, k, tie_sensitive=ids is not None)
        if out is not None:
            return out
    return _merge_sorted(best_scores, best_idx, rows, idx, vals, k, ids)


def _merge_padded(best_scores, best_idx, rows, idx, vals, counts, width_all, k, *, tie_sensitive):
    """`_merge` as one per-row sort of a [rows, widest] uint64 key matrix: score key high, doc index low.

    Equal scores then order by doc index descending, trec_eval's rule without doc ids. With doc
    ids, returns None when a tie touches the kept entries, and the caller resolves it by id.
    """
    n, m = best_scores.shape
    keys = np.full((n, width_all), np.iinfo(np.uint64).max, dtype=np.uint64)  # padding sorts last

    def pack(scores: np.ndarray, doc_idx: np.ndarray) -> np.ndarray:
        return (_desc_score_key(scores).astype(np.uint64) << np.uint64(32)) | (_LOW32 - doc_idx.astype(np.uint64))

    if m:
        keys[:, :m] = pack(best_scores, best_idx)
    starts = np.cumsum(counts) - counts
    keys[rows, m + np.arange(len(rows)) - starts[rows]] = pack(vals, idx)
    keys.sort(axis=1)
    width = min(k, m + int(counts.min()))  # every row saw the same documents, so counts agree
    if tie_sensitive:
        high = keys[:, : width + 1] >> np.uint64(32)
        if (high[:, 1:] == high[:, :-1]).any():
            return None
    top = keys[:, :width]
    return _score_from_key(top >> np.uint64(32)), (_LOW32 - (top & _LOW32)).astype(np.int64)


def _merge_sorted(
    best_scores: np.ndarray,
    best_idx: np.ndarray,
    rows: np.ndarray,
    idx: np.ndarray,
    vals: np.ndarray,
    k: int,
    ids: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """`_merge` by one flat sort on (row, score), resolving equal scores by doc id."""
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
