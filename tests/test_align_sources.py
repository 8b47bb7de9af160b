"""Phase 1 text sources: task_docs is today's sample, corpus_pool never leaks, train_queries never sees val/test."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from era_core.paper import sources as src
from era_core.cache import embed_texts
from era_core.errors import ParamsError
from era_core.paper.params import SCHEMAS, validate
from era_core.splits import split_unit
from era_core.vectors import query_inputs
from era_core.identical_texts import alignment_pairs, per_task_sample
from era_core.setup import Setup, get_encoder, load_units

LARGE, SMALL = "minilm-l6", "minilm-l3-onnx"  # the smoke pair: its embeddings are in the shared cache


@pytest.fixture(scope="module")
def smoke():
    p = validate("02_alignment", {k: v.default for k, v in SCHEMAS["02_alignment"].items()}
                 | {"large_model": LARGE, "small_model": SMALL, "progress": False})
    setup = Setup.from_params(p)
    return setup, load_units(setup), p


def _key(text: str) -> str:
    """Normalisation written independently of the builders' ``norm``: collapse whitespace, lower case."""
    return re.sub(r"\s+", " ", text).strip().lower()


# ---------------------------------------------------------------- sampling order


def test_interleaved_order_is_round_robin_and_sizes_are_nested():
    sizes = [5, 2, 9]
    order = src.interleaved_order(sizes, seed=3)
    assert sorted(order) == list(range(16))  # every row exactly once
    group = lambda i: 0 if i < 5 else (1 if i < 7 else 2)  # noqa: E731
    # Round-robin: the first 6 rows take 2 of each group; group 1 is then exhausted.
    assert Counter(group(i) for i in order[:6]) == {0: 2, 1: 2, 2: 2}
    assert Counter(group(i) for i in order[:12]) == {0: 5, 1: 2, 2: 5}
    assert order == src.interleaved_order(sizes, seed=3)  # deterministic
    assert order != src.interleaved_order(sizes, seed=4)  # seeded
    small, big = src.nested_rows(sizes, 4, seed=3), src.nested_rows(sizes, 11, seed=3)
    assert small == sorted(order[:4]) and big == sorted(order[:11])  # prefixes of one order, in source order
    assert set(small) < set(big)
    assert src.nested_rows(sizes, 16, seed=3) == list(range(16))  # the full sample keeps source order
    with pytest.raises(ParamsError, match=">= 1"):
        src.nested_rows(sizes, 0, seed=3)


# ---------------------------------------------------------------- task_docs


@pytest.mark.parametrize("seed", [42, 7])
def test_task_docs_full_sample_is_exactly_todays_phase1_pairs(smoke, seed):
    setup, units, p = smoke
    today = alignment_pairs(units, setup, p["align_samples_per_task"], p["align_eval_ratio"], seed)
    pairs = src.source_pairs("task_docs", units, setup, 10**9, seed=seed, sample_seed=p["align_sample_seed"],
                             samples_per_task=p["align_samples_per_task"], train_ratio=0.4, val_ratio=0.1,
                             eval_ratio=0.5)
    ours = src.holdout_split(pairs, p["align_eval_ratio"], seed)
    assert pairs.n_available == len(pairs.x) == sum(len(u.corpus) for u in units)  # smoke corpora are < 1000 docs
    for a, b in zip(ours, today):
        assert a.shape == b.shape and np.array_equal(a, b)


def test_task_docs_subsample_rows_are_the_full_samples_rows(smoke):
    setup, units, p = smoke
    kw = dict(seed=42, sample_seed=5, samples_per_task=1000, train_ratio=0.4, val_ratio=0.1, eval_ratio=0.5)
    full = src.source_pairs("task_docs", units, setup, 10**9, **kw)
    part = src.source_pairs("task_docs", units, setup, 300, **kw)
    groups = [len(rows) for _, rows in per_task_sample(units, 1000, 42)]
    rows = src.nested_rows(groups, 300, 5)
    assert len(part.x) == 300 and np.array_equal(part.x, full.x[rows]) and np.array_equal(part.y, full.y[rows])
    assert part.texts == [full.texts[i] for i in rows]


# ---------------------------------------------------------------- corpus_pool


def test_corpus_pool_has_no_corpus_or_query_text_of_any_task(smoke):
    setup, _, _ = smoke
    from era_core.data import load_tasks

    pool = src.corpus_pool_texts(setup.benchmark, tuple(setup.tasks))
    banned = set()
    for task in load_tasks(setup.benchmark, None, progress=False):
        for unit in task.units():
            banned |= {_key(t) for t in unit.corpus.values()} | {_key(t) for t in unit.queries.values()}
    keys = [_key(t) for _, t in pool]
    assert len(pool) > 1000  # the capped corpora leave most source text unused
    assert not set(keys) & banned
    assert len(set(keys)) == len(keys)  # no text twice
    assert {t for t, _ in pool} == set(setup.tasks)
    # The pool is the builders' documents: every text starts a document of its task's source.
    from era_core.paper.sources import _builders

    sympy_docs = list(_builders(setup.benchmark)["SymPy-API"]().docs.values())
    sympy_pool = [t for task, t in pool if task == "SymPy-API"]
    assert sympy_pool and all(any(d.startswith(t) for d in sympy_docs) for t in sympy_pool)


def test_corpus_pool_pairs_are_nested_and_encoded_per_text(smoke):
    setup, _, _ = smoke
    small, big = src.corpus_pool_pairs(setup, 150, 42), src.corpus_pool_pairs(setup, 400, 42)
    assert len(small.x) == 150 and len(big.x) == 400 and small.n_available == big.n_available
    assert set(small.texts) < set(big.texts)
    where = {t: i for i, t in enumerate(big.texts)}
    rows = [where[t] for t in small.texts]
    assert rows == sorted(rows)  # both in source order
    assert np.array_equal(small.x, big.x[rows]) and np.array_equal(small.y, big.y[rows])
    direct = get_encoder(SMALL, setup).encode(small.texts[:4], progress=False)
    assert np.allclose(small.y[:4], direct, atol=1e-5)  # the small model's vectors of exactly these texts


def test_corpus_pool_is_offline_only():
    with pytest.raises(ParamsError, match="offline benchmarks only"):
        src.check_source("corpus_pool", "mair")
    src.check_source("train_queries", "mair")
    with pytest.raises(ParamsError, match="task_docs, corpus_pool, train_queries, all_texts"):
        src.check_source("all_docs", "offline")


# ---------------------------------------------------------------- train_queries


@pytest.mark.parametrize("seed,ratio", [(42, 0.4), (43, 0.1)])
def test_train_queries_are_the_train_split_and_never_val_or_test(smoke, seed, ratio):
    setup, units, _ = smoke
    pairs = src.train_queries_pairs(units, setup, 10**9, 42, seed=seed, train_ratio=ratio, val_ratio=0.1,
                                    eval_ratio=0.5)
    train_texts, held_texts = [], set()
    for u in units:
        s = split_unit(u, ratio, 0.1, 0.5, seed=seed)  # the official split where the task has one
        train, val, test = s["train"], s["val"], s["test"]
        train_texts += [u.queries[q] for q in train]
        held_texts |= {u.queries[q] for q in val + test}
    assert sorted(pairs.texts) == sorted(train_texts) and pairs.n_available == len(train_texts)
    assert not set(pairs.texts) & held_texts
    # Identical texts on both sides: the bare query text, never an instruction (instructed targets would
    # share one instruction direction). Both models' vectors equal a direct cache read of the raw text.
    for unit in units:
        _, texts, inst = query_inputs(unit)
        row = {t: i for i, t in enumerate(texts)}
        mine = [i for i, t in enumerate(pairs.texts) if t in row]
        for key, side in ((LARGE, pairs.x), (SMALL, pairs.y)):
            enc = get_encoder(key, setup)
            raw = embed_texts(enc, texts, role="query", instructions=None, progress=False)
            instructed = embed_texts(enc, texts, role="query", instructions=inst, progress=False)
            assert np.array_equal(side[mine], raw[[row[pairs.texts[i]] for i in mine]])
            if any(inst):
                assert not np.allclose(side[mine], instructed[[row[pairs.texts[i]] for i in mine]])
    part = src.train_queries_pairs(units, setup, 40, 42, seed=seed, train_ratio=ratio, val_ratio=0.1,
                                   eval_ratio=0.5)
    assert len(part.texts) == 40 and set(part.texts) < set(pairs.texts)


# ---------------------------------------------------------------- all_texts (diagnostic ceiling)


def test_all_texts_is_every_document_and_every_query_text_and_ignores_the_size(smoke):
    setup, units, _ = smoke
    kw = dict(seed=42, sample_seed=5, samples_per_task=1000, train_ratio=0.4, val_ratio=0.1, eval_ratio=0.5)
    pairs = src.source_pairs("all_texts", units, setup, 10, **kw)
    docs = [t for u in units for t in u.corpus.values()]
    queries = [u.queries[q] for u in units for q in u.labelled_qids()]
    assert len(pairs.x) == len(pairs.y) == pairs.n_available == len(docs) + len(queries)
    assert sorted(pairs.texts) == sorted(docs + queries)  # test queries included: a ceiling, not a method
    unit = units[0]
    small = get_encoder(SMALL, setup)
    n_docs = len(unit.corpus)
    assert np.array_equal(pairs.y[:n_docs], embed_texts(small, list(unit.corpus.values()), role="document", progress=False))
    raw = embed_texts(small, query_inputs(unit)[1], role="query", instructions=None, progress=False)
    assert np.array_equal(pairs.y[n_docs:n_docs + len(raw)], raw)
