"""The faiss backend of topk_search returns the NumPy backend's ids and score bits, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from era_core import retrieval
from era_core.errors import ParamsError
from era_core.retrieval import topk_search

faiss = pytest.importorskip("faiss")


def quantised_rows(rng: np.random.Generator, n: int, dim: int, levels: int = 3) -> np.ndarray:
    """Rows with entries in a few small integers: exact float32 dot products, so scores tie a lot."""
    return rng.integers(-(levels // 2), levels // 2 + 1, size=(n, dim)).astype(np.float32) + np.float32(0.0)


def reference_order(scores: np.ndarray, k: int, ids=None) -> np.ndarray:
    """Brute force: each row by score desc, then doc id (or index) desc."""
    tiebreak = np.arange(scores.shape[1]) if ids is None else np.unique(np.asarray(ids, dtype=object), return_inverse=True)[1]
    return np.stack([np.lexsort((-tiebreak, -row))[:k] for row in scores])


def both(queries, corpus, k, **kw):
    s_np, i_np = topk_search(queries, corpus, k, backend="numpy", **kw)
    s_fa, i_fa = topk_search(queries, corpus, k, backend="faiss", **kw)
    np.testing.assert_array_equal(i_fa, i_np)
    assert s_fa.dtype == s_np.dtype == np.float32
    assert s_fa.tobytes() == s_np.tobytes()  # bit-identical, not merely close
    return s_np, i_np


def test_big_sgemm_blocks_give_the_same_bits_as_sub_blocks():
    """The re-scoring relies on this: a large-enough sgemm block's entries do not depend on its shape."""
    rng = np.random.default_rng(0)
    for dim in (16, 64, 384):
        q = rng.standard_normal((256, dim), dtype=np.float32)
        c = rng.standard_normal((4096, dim), dtype=np.float32)
        full = q @ c.T
        for rows, cols in ((2, 4096), (8, 1024), (16, 512), (64, 128)):
            assert rows * cols >= retrieval.SAME_BITS_MIN_ENTRIES
            r = rng.choice(256, rows, replace=False)
            cc = np.sort(rng.choice(4096, cols, replace=False))
            assert np.array_equal(q[r] @ c[cc].T, full[np.ix_(r, cc)]), (dim, rows, cols)


@pytest.mark.parametrize("seed", range(4))
def test_many_exact_ties_and_duplicates_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    dim = 16
    pool = quantised_rows(rng, 40, dim)  # few distinct rows: whole groups of duplicate documents
    corpus = np.concatenate([pool[rng.integers(0, len(pool), 2500)], quantised_rows(rng, 1500, dim)])
    corpus[np.all(corpus == 0, axis=1), 0] = 1.0
    queries = quantised_rows(rng, 40, dim)
    queries[np.all(queries == 0, axis=1), 0] = 1.0
    for k in (1, 7, 50, 100, 333):
        s, i = both(queries, corpus, k)
        qn = queries / np.linalg.norm(queries.astype(np.float64), axis=1, keepdims=True)
        cn = corpus / np.linalg.norm(corpus.astype(np.float64), axis=1, keepdims=True)
        exact = qn @ cn.T
        # Ids equal the brute-force order wherever the float64 cosines are not within rounding.
        ref = reference_order(exact, k)
        gap = np.abs(np.take_along_axis(exact, i, 1) - np.take_along_axis(exact, ref, 1))
        assert (gap < 1e-6).all()


def test_k_on_a_tie_boundary_with_doc_ids():
    rng = np.random.default_rng(5)
    dim = 16
    pool = (rng.choice([-1.0, 1.0], size=(12, dim)) / 4.0).astype(np.float32)  # exact unit rows
    corpus = pool[rng.integers(0, len(pool), 3000)]
    queries = (rng.choice([-1.0, 1.0], size=(24, dim)) / 4.0).astype(np.float32)
    ids = [f"d{j:05d}"[::-1] for j in range(len(corpus))]  # string order != index order
    scores = queries @ corpus.T
    # A k that cuts right through a tie group for query 0, and the group's full extent.
    row = np.sort(scores[0])[::-1]
    k_cut = int(np.searchsorted(-row, -row[60], side="left")) + 3
    for k in (k_cut, k_cut + 1, 250):
        s, i = both(queries, corpus, k, doc_ids=ids)
        np.testing.assert_array_equal(i, reference_order(scores, k, ids))
        np.testing.assert_array_equal(s, np.take_along_axis(scores, i, 1))


def test_k_larger_than_corpus_and_tiny_problems():
    rng = np.random.default_rng(1)
    corpus = rng.standard_normal((50, 8)).astype(np.float32)
    queries = rng.standard_normal((3, 8)).astype(np.float32)
    s, i = both(queries, corpus, 500)
    assert i.shape == (3, 50)
    both(queries[:1], corpus, 10)


def test_gaussian_non_unit_corpus_chunked():
    """Last-bit differences between faiss and NumPy scores; rescaled rows; bounded chunks."""
    rng = np.random.default_rng(2)
    corpus = rng.standard_normal((6000, 64)).astype(np.float32) * rng.uniform(0.5, 3.0, (6000, 1)).astype(np.float32)
    queries = rng.standard_normal((70, 64)).astype(np.float32)
    for kw in ({}, {"query_chunk": 32, "corpus_chunk": 1024}):
        for k in (10, 100):
            both(queries, corpus, k, **kw)


def test_faiss_rounding_differently_is_survived(monkeypatch):
    """faiss scores off by up to the error bound still give the exact answer (the widening works)."""
    rng = np.random.default_rng(3)
    dim = 32
    pool = (rng.integers(-1, 2, size=(20, dim)) / np.sqrt(dim)).astype(np.float32)
    pool[np.all(pool == 0, axis=1), 0] = 1.0
    corpus = pool[rng.integers(0, len(pool), 4000)]  # ~200 copies of each row: tie groups wider than the margin
    queries = rng.standard_normal((30, dim)).astype(np.float32)
    bound = retrieval.score_error_bound(dim)
    calls = []

    def noisy_knn(q, xb, k, metric=None):
        calls.append(k)
        s = (q.astype(np.float64) @ xb.astype(np.float64).T)
        s += rng.uniform(-bound / 2, bound / 2, s.shape) * 0.999
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(s, order, 1).astype(np.float32), order.astype(np.int64)

    expected = topk_search(queries, corpus, 100, backend="numpy")
    monkeypatch.setattr(retrieval._faiss(), "knn", noisy_knn)
    got = topk_search(queries, corpus, 100, backend="faiss")
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[0].tobytes() == expected[0].tobytes()
    assert len(calls) > 1  # many exact ties at the boundary forced at least one widening


def test_backend_choice_is_explicit(monkeypatch):
    assert retrieval.resolve_backend("auto") == "numpy"  # faiss is opt-in: it measured slower (issue 16)
    assert retrieval.resolve_backend("numpy") == "numpy"
    with pytest.raises(ParamsError, match="backend must be one of"):
        retrieval.resolve_backend("annoy")
    monkeypatch.setattr(retrieval, "FAISS_AVAILABLE", False)
    assert retrieval.resolve_backend("auto") == "numpy"
    with pytest.raises(ParamsError, match="pip install faiss-cpu"):
        topk_search(np.ones((2, 4), np.float32), np.ones((3, 4), np.float32), 2, backend="faiss")
