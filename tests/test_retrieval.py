"""topk_search equals a brute-force full ranking under trec_eval's tie rule; run_from_topk feeds metrics."""

from __future__ import annotations

import numpy as np
import pytest
import pytrec_eval
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from era_core import retrieval
from era_core.errors import DataError, ParamsError
from era_core.metrics import evaluate
from era_core.retrieval import _kth_lower_bound, run_from_topk, topk_search


def exact_unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Rows of +-1/sqrt(dim) (dim a power of 4): unit norm and exact float32 dot products, so
    scores tie exactly and every summation order gives the same bits."""
    return (rng.choice([-1.0, 1.0], size=(n, dim)) / np.sqrt(dim)).astype(np.float32)


def brute_force(queries, corpus, k, doc_ids=None):
    """Full score matrix, each row sorted by score desc then doc id (or index) desc."""
    q = queries / np.linalg.norm(queries.astype(np.float64), axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus.astype(np.float64), axis=1, keepdims=True)
    scores = (q.astype(np.float32) @ c.astype(np.float32).T).astype(np.float32)
    tiebreak = list(range(corpus.shape[0])) if doc_ids is None else list(doc_ids)
    idx = np.array(
        [sorted(range(corpus.shape[0]), key=lambda j: (row[j], tiebreak[j]), reverse=True)[:k] for row in scores],
        dtype=np.int64,
    ).reshape(queries.shape[0], min(k, corpus.shape[0]))
    return np.take_along_axis(scores, idx, axis=1), idx


@st.composite
def search_case(draw):
    dim = draw(st.sampled_from([4, 16]))
    n_docs = draw(st.integers(1, 80))
    n_q = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Few distinct rows make many exact ties; duplicated rows make whole groups tie.
    pool = exact_unit_rows(rng, draw(st.integers(1, 6)), dim)
    corpus = pool[rng.integers(0, len(pool), n_docs)]
    queries = exact_unit_rows(rng, n_q, dim)
    ids = draw(
        st.one_of(
            st.none(),
            st.lists(st.text("abAB01é", min_size=1, max_size=3), min_size=n_docs, max_size=n_docs, unique=True),
        )
    )
    k = draw(st.integers(1, 100))
    query_chunk = draw(st.integers(1, 16))
    corpus_chunk = draw(st.integers(1, 96))
    return queries, corpus, k, ids, query_chunk, corpus_chunk


@settings(max_examples=300, derandomize=True, deadline=None)
@given(search_case())
def test_topk_equals_brute_force_with_trec_ties(case):
    queries, corpus, k, ids, query_chunk, corpus_chunk = case
    scores, idx = topk_search(queries, corpus, k, doc_ids=ids, query_chunk=query_chunk, corpus_chunk=corpus_chunk)
    ref_scores, ref_idx = brute_force(queries, corpus, k, ids)
    assert scores.dtype == np.float32 and idx.dtype == np.int64
    assert scores.shape == (queries.shape[0], min(k, corpus.shape[0]))
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(scores, ref_scores)


@pytest.mark.parametrize("pad_limit", [0.0, 1e9])
def test_both_merge_paths_equal_brute_force(monkeypatch, pad_limit):
    # 0 forces the flat (row, score) sort everywhere, 1e9 the padded per-row sort (which hands
    # id-sensitive ties back to the flat sort).
    monkeypatch.setattr(retrieval, "PAD_LIMIT", pad_limit)
    rng = np.random.default_rng(11)
    for trial in range(40):
        n_docs, dim = int(rng.integers(1, 300)), 16
        pool = exact_unit_rows(rng, int(rng.integers(1, 40)), dim)
        corpus = pool[rng.integers(0, len(pool), n_docs)]
        queries = exact_unit_rows(rng, int(rng.integers(1, 20)), dim)
        ids = None if trial % 2 else [f"x{v}" for v in rng.permutation(n_docs)]
        k = int(rng.integers(1, 60))
        scores, idx = topk_search(queries, corpus, k, doc_ids=ids, query_chunk=int(rng.integers(1, 9)),
                                  corpus_chunk=int(rng.integers(1, 120)))
        ref_scores, ref_idx = brute_force(queries, corpus, k, ids)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(scores, ref_scores)


def test_block_full_of_better_scores_is_pruned_correctly():
    # Corpus in ascending similarity to the queries: every later chunk beats the running top-k,
    # which forces the per-block bound (sampled k-th value) instead of the running threshold.
    rng = np.random.default_rng(3)
    queries = exact_unit_rows(rng, 20, 64)
    corpus = exact_unit_rows(rng, 3000, 64)
    corpus = corpus[np.argsort(corpus @ queries[0], kind="stable")]
    ids = [f"doc{i:05d}" for i in rng.permutation(3000)]
    for k in (1, 7, 30):
        scores, idx = topk_search(queries, corpus, k, doc_ids=ids, query_chunk=8, corpus_chunk=700)
        ref_scores, ref_idx = brute_force(queries, corpus, k, ids)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(scores, ref_scores)


def test_kth_lower_bound_is_a_valid_bound_even_for_adversarial_columns():
    rng = np.random.default_rng(0)
    k, n_cols = 5, 400  # stride 10: the sample is every 10th column
    block = rng.standard_normal((6, n_cols)).astype(np.float32)
    block[0, ::10] += 100.0  # the sample sees only huge values: its estimate is too high
    block[1, 1::10] += 100.0  # the sample sees none of the best values
    bound, flat = _kth_lower_bound(block, k)
    np.testing.assert_array_equal(flat, np.flatnonzero(block >= bound[:, None]))
    kth = np.sort(block, axis=1)[:, -k]
    assert np.all(bound <= kth)
    assert np.all((block >= bound[:, None]).sum(axis=1) >= k)
    assert bound[0] == kth[0]  # the rejected estimate fell back to the exact k-th value


def test_chunking_does_not_change_results():
    rng = np.random.default_rng(7)
    queries = rng.standard_normal((61, 32)).astype(np.float32)
    corpus = rng.standard_normal((2500, 32)).astype(np.float32)
    corpus[100:140] = corpus[5]  # exact ties across chunks
    ids = [f"d{i:05d}" for i in range(len(corpus))]
    ref = topk_search(queries, corpus, 50, doc_ids=ids, query_chunk=61, corpus_chunk=2500)
    for qc, cc in ((16, 300), (5, 999), (1, 64), (61, 16384)):
        # Other block shapes may round a score differently in the last bit (BLAS kernels differ).
        got = topk_search(queries, corpus, 50, doc_ids=ids, query_chunk=qc, corpus_chunk=cc)
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-6, atol=1e-6)
    # The reused score buffer never leaks into results: a second call gives the same bytes.
    again = topk_search(queries, corpus, 50, doc_ids=ids, query_chunk=16, corpus_chunk=300)
    first = topk_search(queries, corpus, 50, doc_ids=ids, query_chunk=16, corpus_chunk=300)
    assert again[0].tobytes() == first[0].tobytes() and again[1].tobytes() == first[1].tobytes()


def test_unnormalised_inputs_give_cosine():
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((30, 48)).astype(np.float32) * rng.uniform(0.1, 10, (30, 1)).astype(np.float32)
    corpus = rng.standard_normal((700, 48)).astype(np.float32) * rng.uniform(0.1, 10, (700, 1)).astype(np.float32)
    q_before, c_before = queries.copy(), corpus.copy()
    scores, idx = topk_search(queries, corpus, 25, corpus_chunk=128, query_chunk=7)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    cn = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    full = qn.astype(np.float64) @ cn.astype(np.float64).T
    ref_idx = np.argsort(-full, axis=1)[:, :25]
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, np.take_along_axis(full, ref_idx, axis=1), atol=1e-5)
    assert np.all(scores <= 1.0 + 1e-5)
    np.testing.assert_array_equal(queries, q_before)  # no in-place normalisation
    np.testing.assert_array_equal(corpus, c_before)


def test_k_larger_than_corpus_and_float64_input():
    rng = np.random.default_rng(2)
    queries = exact_unit_rows(rng, 3, 16).astype(np.float64)
    corpus = exact_unit_rows(rng, 5, 16).astype(np.float64)
    scores, idx = topk_search(queries, corpus, 100)
    assert scores.shape == idx.shape == (3, 5)
    assert scores.dtype == np.float32
    assert sorted(idx[0].tolist()) == [0, 1, 2, 3, 4]


def test_errors():
    rng = np.random.default_rng(4)
    q = exact_unit_rows(rng, 2, 16)
    c = exact_unit_rows(rng, 5, 16)
    with pytest.raises(DataError, match="empty"):
        topk_search(q, np.zeros((0, 16), dtype=np.float32))
    with pytest.raises(DataError, match="dim 16 != corpus dim 4"):
        topk_search(q, c[:, :4])
    with pytest.raises(DataError, match="2-D"):
        topk_search(q[0], c)
    with pytest.raises(DataError, match="doc_ids"):
        topk_search(q, c, doc_ids=["a"])
    with pytest.raises(DataError, match="all zeros"):
        topk_search(q, np.vstack([c, np.zeros((1, 16), dtype=np.float32)]))
    with pytest.raises(DataError, match="NaN"):
        topk_search(np.full((1, 16), np.nan, dtype=np.float32), c)
    with pytest.raises(ParamsError, match="k must be"):
        topk_search(q, c, 0)
    with pytest.raises(ParamsError, match="device"):
        topk_search(q, c, device="tpu")


def test_no_queries_gives_empty_result():
    rng = np.random.default_rng(5)
    scores, idx = topk_search(np.zeros((0, 16), dtype=np.float32), exact_unit_rows(rng, 5, 16), 3)
    assert scores.shape == idx.shape == (0, 3)


def test_cuda_device_matches_cpu_or_reports_missing_gpu():
    rng = np.random.default_rng(6)
    q = exact_unit_rows(rng, 9, 16)
    c = exact_unit_rows(rng, 200, 16)
    ids = [f"d{i}" for i in range(200)]
    if torch.cuda.is_available():
        got = topk_search(q, c, 10, doc_ids=ids, device="cuda", corpus_chunk=64)
        want = topk_search(q, c, 10, doc_ids=ids)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
    else:
        with pytest.raises(ParamsError, match="CUDA"):
            topk_search(q, c, 10, doc_ids=ids, device="cuda")


def test_run_from_topk_and_metrics_agree_with_full_ranking():
    rng = np.random.default_rng(7)
    queries = exact_unit_rows(rng, 40, 16)
    pool = exact_unit_rows(rng, 30, 16)
    corpus = pool[rng.integers(0, 30, 500)]  # duplicates: many tied scores at every cutoff
    ids = [f"d{i}" for i in rng.permutation(500)]
    qids = [f"q{i}" for i in range(40)]
    qrels = {q: {ids[j]: int(rng.integers(0, 4)) for j in rng.choice(500, 12, replace=False)} for q in qids}
    k = 20
    scores, idx = topk_search(queries, corpus, k, doc_ids=ids, corpus_chunk=64, query_chunk=16)
    run = run_from_topk(qids, ids, scores, idx)
    assert list(run) == qids and all(len(r) == k for r in run.values())
    assert run["q0"][ids[idx[0, 0]]] == float(scores[0, 0])

    measures = {"ndcg_cut.1,5,10,20", "recall.1,5,10,20", "recip_rank", "map"}
    ours = evaluate(qrels, run, (1, 5, 10, 20))
    on_topk = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    # The full ranking (every document) must give the same @k values: the top-k kept exactly the
    # documents trec_eval puts first, ties included.
    full_scores = queries @ corpus.T
    full_run = {q: dict(zip(ids, row.tolist())) for q, row in zip(qids, full_scores)}
    on_full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(full_run)
    for q in qids:
        for kk in (1, 5, 10, 20):
            assert abs(ours[q][f"ndcg@{kk}"] - on_topk[q][f"ndcg_cut_{kk}"]) <= 1e-9
            assert abs(ours[q][f"recall@{kk}"] - on_topk[q][f"recall_{kk}"]) <= 1e-9
            assert abs(on_topk[q][f"ndcg_cut_{kk}"] - on_full[q][f"ndcg_cut_{kk}"]) <= 1e-12
            assert abs(on_topk[q][f"recall_{kk}"] - on_full[q][f"recall_{kk}"]) <= 1e-12
        assert abs(ours[q]["mrr"] - on_topk[q]["recip_rank"]) <= 1e-9
        assert abs(ours[q]["map"] - on_topk[q]["map"]) <= 1e-9


def test_run_from_topk_errors():
    scores = np.zeros((2, 2), dtype=np.float32)
    idx = np.array([[0, 1], [1, 0]])
    with pytest.raises(DataError, match="qids"):
        run_from_topk(["q"], ["a", "b"], scores, idx)
    with pytest.raises(DataError, match="doc_ids"):
        run_from_topk(["q", "p"], ["a"], scores, idx)
    with pytest.raises(DataError, match="duplicate qid"):
        run_from_topk(["q", "q"], ["a", "b"], scores, idx)
    with pytest.raises(DataError, match="duplicate doc ids"):
        run_from_topk(["q", "p"], ["a", "a"], scores, idx)
