"""Tests for era_core.negatives: tuple construction and hard-negative mining (§3.2.2)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from era_core.adapter import LinearAdapter, apply_adapter
from era_core.errors import DataError, ParamsError
from era_core.negatives import build_tuples, teacher_query_vectors


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _task(nq=20, nd=300, dim=16, seed=0):
    """Random task: each query has 1-3 positives, 1-2 score-0 labels and one label missing from the corpus."""
    r = np.random.default_rng(seed)
    docs = _unit(r.normal(size=(nd, dim)))
    doc_ids = [f"d{i}" for i in range(nd)]
    qids = [f"q{i}" for i in range(nq)]
    qrels = {}
    for q in qids:
        picks = r.choice(nd, size=5, replace=False)
        n_pos = int(r.integers(1, 4))
        labels = {doc_ids[i]: (int(r.integers(1, 3)) if j < n_pos else 0) for j, i in enumerate(picks)}
        labels["missing-doc"] = 2
        qrels[q] = labels
    # Teacher queries near one of their positives so the ranking is meaningful.
    teacher = _unit(np.stack([docs[doc_ids.index(next(d for d, s in qrels[q].items() if s > 0))] for q in qids])
                    + 0.5 * r.normal(size=(nq, dim)))
    return qids, qrels, doc_ids, docs, teacher


def _ref_tuples(qids, qrels, doc_ids, docs, teacher, seed, strategy, k=5, top_k=2000, margin=0.95):
    """A plain-list re-implementation of §3.2.2 (Python loops over docs, full sort) for comparison."""
    rng = random.Random(seed)
    row = {d: i for i, d in enumerate(doc_ids)}
    out = []
    for qi, q in enumerate(qids):
        positives = [row[d] for d, s in qrels[q].items() if s > 0 and d in row]
        if not positives:
            continue
        pos = rng.choice(positives)
        excl = {row[d] for d in qrels[q] if d in row} | {pos}
        cands = [i for i in range(len(doc_ids)) if i not in excl]
        if strategy == "random":
            if len(cands) < k:
                continue
            negs = rng.sample(cands, k)
        else:
            s = [float(np.dot(teacher[qi], docs[i])) for i in range(len(doc_ids))]
            ranked = sorted(cands, key=lambda i: (-s[i], i))[:top_k]
            if strategy == "naive_topk":
                negs = ranked[:k]
            else:
                thr = margin * s[pos]
                kept = [i for i in ranked if s[i] < thr][: 2 * k]
                if not kept:
                    negs = rng.sample(cands, k)
                else:
                    others = kept[1:]
                    negs = [kept[0]] + (others if len(others) <= k - 1 else rng.sample(others, k - 1))
            if len(negs) < k:
                rest = [i for i in cands if i not in negs]
                negs = negs + rng.sample(rest, k - len(negs))
        out.append((q, pos, negs))
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("strategy", ["random", "naive_topk", "topk_percpos"])
def test_matches_plain_reference_implementation(strategy):
    qids, qrels, doc_ids, docs, teacher = _task()
    got = build_tuples(qids, {q: i for i, q in enumerate(qids)}, qrels, doc_ids, seed=42, strategy=strategy,
                       teacher_queries=teacher, doc_emb=docs, task="t")
    ref = _ref_tuples(qids, qrels, doc_ids, docs, teacher, 42, strategy)
    assert [(t.qid, t.pos, t.negs) for t in got] == ref
    assert len(got) == len(qids)


@pytest.mark.parametrize("strategy", ["random", "naive_topk", "topk_percpos"])
def test_negatives_never_labelled_and_positive_is_positive(strategy):
    qids, qrels, doc_ids, docs, teacher = _task(seed=1)
    tuples = build_tuples(qids, list(range(len(qids))), qrels, doc_ids, seed=7, strategy=strategy,
                          teacher_queries=teacher, doc_emb=docs, task="t")
    for t in tuples:
        labelled = {doc_ids.index(d) for d in qrels[t.qid] if d in doc_ids}
        assert qrels[t.qid][doc_ids[t.pos]] > 0
        assert len(t.negs) == 5 and len(set(t.negs)) == 5
        assert not labelled & set(t.negs)
        assert t.query_row == qids.index(t.qid) and t.task == "t"


def test_topk_percpos_threshold_and_hardest_kept_included():
    qids, qrels, doc_ids, docs, teacher = _task(seed=2)
    tuples = build_tuples(qids, {q: i for i, q in enumerate(qids)}, qrels, doc_ids, seed=42,
                          teacher_queries=teacher, doc_emb=docs)
    sims = teacher @ docs.T
    for t in tuples:
        s = sims[t.query_row]
        thr = 0.95 * s[t.pos]
        labelled = {doc_ids.index(d) for d in qrels[t.qid] if d in doc_ids}
        below = [i for i in np.argsort(-s, kind="stable") if i not in labelled and s[i] < thr]
        assert len(below) >= 10  # plenty below the threshold here: no back-fill
        assert all(s[i] < thr for i in t.negs)
        assert below[0] in t.negs  # the hardest kept candidate
        assert set(t.negs) <= set(below[:10])  # pool of 2k kept


def test_topk_percpos_backfill_and_none_kept():
    dim = 4
    e = np.eye(dim, dtype=np.float32)
    # Query = e0. Positive sim 0.5 -> threshold 0.475. 10 docs at 0.9 (above), 2 docs at 0.3 / 0.2, 20 docs at 0.
    def vec(c):
        return c * e[0] + np.sqrt(1 - c * c) * e[1]

    docs = [vec(0.5)] + [vec(0.9)] * 10 + [vec(0.3), vec(0.2)] + [e[2]] * 20
    docs = np.stack(docs).astype(np.float32)
    doc_ids = [f"d{i}" for i in range(len(docs))]
    qrels = {"q": {"d0": 1}}
    teacher = e[:1]
    t = build_tuples(["q"], [0], qrels, doc_ids, seed=3, teacher_queries=teacher, doc_emb=docs, top_k=12)[0]
    assert t.pos == 0 and t.negs[:2] == [11, 12]  # hardest kept first, the only other kept candidate next
    backfill = t.negs[2:]
    assert len(backfill) == 3 and len(set(t.negs)) == 5 and 0 not in t.negs
    # With top_k = 5 only the 0.9 docs are ranked: nothing passes the threshold -> 5 uniform random docs.
    t2 = build_tuples(["q"], [0], qrels, doc_ids, seed=3, teacher_queries=teacher, doc_emb=docs, top_k=5)[0]
    rng = random.Random(3)
    rng.choice([0])
    assert t2.negs == rng.sample(list(range(1, len(docs))), 5)


def test_naive_topk_takes_the_hardest_non_excluded():
    qids, qrels, doc_ids, docs, teacher = _task(seed=4)
    tuples = build_tuples(qids, list(range(len(qids))), qrels, doc_ids, seed=1, strategy="naive_topk",
                          teacher_queries=teacher, doc_emb=docs)
    sims = teacher @ docs.T
    for t in tuples:
        labelled = {doc_ids.index(d) for d in qrels[t.qid] if d in doc_ids}
        order = [i for i in np.argsort(-sims[t.query_row], kind="stable") if i not in labelled]
        assert t.negs == order[:5]


def test_deterministic_and_seed_dependent():
    qids, qrels, doc_ids, docs, teacher = _task(seed=5)
    kw = dict(teacher_queries=teacher, doc_emb=docs)
    a = build_tuples(qids, list(range(len(qids))), qrels, doc_ids, seed=42, **kw)
    b = build_tuples(qids, list(range(len(qids))), qrels, doc_ids, seed=42, **kw)
    c = build_tuples(qids, list(range(len(qids))), qrels, doc_ids, seed=43, **kw)
    assert a == b
    assert [(t.qid, t.pos, t.negs) for t in a] != [(t.qid, t.pos, t.negs) for t in c]


def test_random_strategy_skips_when_too_few_remain():
    qrels = {"q": {"d0": 1, "d1": 0, "d2": 2}}
    few = [f"d{i}" for i in range(7)]  # 7 docs - 3 labelled = 4 < 5
    assert build_tuples(["q"], [0], qrels, few, seed=0, strategy="random") == []
    enough = [f"d{i}" for i in range(8)]  # exactly 5 remain
    (t,) = build_tuples(["q"], [0], qrels, enough, seed=0, strategy="random")
    assert sorted(t.negs) == [3, 4, 5, 6, 7] and t.pos in (0, 2)


def test_queries_without_positive_in_corpus_are_skipped():
    doc_ids = [f"d{i}" for i in range(20)]
    qrels = {"a": {"d1": 0, "elsewhere": 3}, "b": {"d2": 1}}
    tuples = build_tuples(["a", "b"], [0, 1], qrels, doc_ids, seed=0, strategy="random")
    assert [t.qid for t in tuples] == ["b"]


def test_negatives_stay_in_their_own_task():
    out = []
    for name, nd, seed in (("small", 40, 0), ("large", 400, 1)):
        qids, qrels, doc_ids, docs, teacher = _task(nq=10, nd=nd, seed=seed)
        tuples = build_tuples(qids, list(range(10)), qrels, doc_ids, seed=42, teacher_queries=teacher,
                              doc_emb=docs, task=name)
        assert all(t.task == name and max(t.negs + [t.pos]) < nd for t in tuples)
        out.extend(tuples)
    assert {t.task for t in out} == {"small", "large"}


def test_vectorised_on_a_large_corpus():
    r = np.random.default_rng(0)
    nd, dim, nq = 50_000, 32, 40
    docs = _unit(r.normal(size=(nd, dim)))
    doc_ids = [str(i) for i in range(nd)]
    qids = [f"q{i}" for i in range(nq)]
    qrels = {q: {str(int(i)): 1 for i in r.choice(nd, 3, replace=False)} for q in qids}
    # Each teacher query sits near its first positive, so s_pos is high and the kept pool is full.
    first = np.array([int(next(iter(qrels[q]))) for q in qids])
    teacher = _unit(docs[first] + 0.3 * r.normal(size=(nq, dim)))
    tuples = build_tuples(qids, list(range(nq)), qrels, doc_ids, seed=42, teacher_queries=teacher, doc_emb=docs)
    assert len(tuples) == nq
    sims = teacher @ docs.T
    checked = 0
    for t in tuples:
        s = sims[t.query_row]
        if s[t.pos] > 0.5:
            checked += 1  # the other positives may sit anywhere; only then is a full pool guaranteed
            assert all(s[i] < 0.95 * s[t.pos] for i in t.negs)
            labelled = {int(d) for d in qrels[t.qid]}
            hardest = next(i for i in np.argsort(-s) if i not in labelled and s[i] < 0.95 * s[t.pos])
            assert hardest in t.negs
    assert checked >= 5


def test_bad_arguments():
    with pytest.raises(ParamsError, match="random, naive_topk, topk_percpos"):
        build_tuples(["q"], [0], {"q": {"d": 1}}, ["d"], seed=0, strategy="hardest")
    with pytest.raises(ParamsError, match="teacher"):
        build_tuples(["q"], [0], {"q": {"d": 1}}, ["d"], seed=0, strategy="topk_percpos")
    with pytest.raises(DataError, match="no query row"):
        build_tuples(["q"], {}, {"q": {"d": 1}}, ["d"], seed=0, strategy="random")


def test_teacher_query_vectors_choice():
    r = np.random.default_rng(0)
    q_large = _unit(r.normal(size=(5, 8)))
    q_small = _unit(r.normal(size=(5, 4)))
    torch.manual_seed(0)
    align = LinearAdapter(8, 4)
    np.testing.assert_allclose(teacher_query_vectors(q_large, doc_dim=4, alignment_adapter=align, q_small=q_small),
                               apply_adapter(align, q_large), atol=1e-6)
    np.testing.assert_allclose(teacher_query_vectors(q_large, doc_dim=4, q_small=q_small), q_small, atol=1e-6)
    np.testing.assert_allclose(teacher_query_vectors(q_large, doc_dim=8), q_large, atol=1e-6)
    with pytest.raises(DataError, match="small-model|document model"):
        teacher_query_vectors(q_large, doc_dim=4)
