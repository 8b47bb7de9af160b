"""The protocol layer: aggregation, shared test splits, resumable runs, timing kept apart, lr selection."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import LARGE, SMALL, smoke_config
from era_core.api import apply_and_score
from era_core.cache import embed_texts
from era_core.identical_texts import alignment_pairs
from era_core.io import read_json
from era_core.metrics import summarise
from era_core.paper import runs as runs_module
from era_core.paper.protocols import random_adapter_baseline, sweep, sweep_cells
from era_core.paper.runs import Run, run_dir, run_job, split_timing
from era_core.setup import get_encoder
from era_core.splits import split_queries
from era_core.splits import test_qids as held_out_qids  # aliased: pytest would collect a test_* name


def _rows(*pairs):
    return {f"q{i}": {"ndcg@10": n, "mrr": m} for i, (n, m) in enumerate(pairs, start=1)}


# Task B has two sub-splits; D (medical) is a unit without scored queries. Task values are means over
# the task's queries across sub-splits: B = (0.9 + 0.3 + 0.0) / 3 = 0.4, not the mean of sub-split means.
PER_QUERY = {
    "A": _rows((1.0, 1.0), (0.0, 0.5)),          # code: 0.5, mrr 0.75 (2 queries)
    "B/s1": _rows((0.9, 1.0)),                   # web
    "B/s2": _rows((0.3, 0.5), (0.0, 0.25)),      # web: B = 0.4, mrr 1.75 / 3 (3 queries)
    "C": _rows((0.1, 0.2)),                      # web: 0.1, mrr 0.2 (1 query)
    "D": {},                                     # medical, empty
}
UNIT_DOMAIN = {"A": "code", "B/s1": "web", "B/s2": "web", "C": "web", "D": "medical"}


def test_summarise_task_domain_and_overall_means_by_hand():
    s = summarise(PER_QUERY, UNIT_DOMAIN)
    approx = lambda v: pytest.approx(v, abs=1e-15)  # noqa: E731
    assert s["per_task"] == {"A": approx({"mrr": 0.75, "ndcg@10": 0.5}), "B": approx({"mrr": 1.75 / 3, "ndcg@10": 0.4}),
                             "C": approx({"mrr": 0.2, "ndcg@10": 0.1})}
    assert s["n_queries"] == {"A": 2, "B": 3, "C": 1}
    assert s["task_domain"] == {"A": "code", "B": "web", "C": "web"}  # the empty task is not scored
    # Domains in DOMAINS order, each the macro mean of its tasks; medical has no scored task.
    assert list(s["per_domain"]) == ["code", "web"]
    assert s["per_domain"]["code"] == approx({"mrr": 0.75, "ndcg@10": 0.5})
    assert s["per_domain"]["web"] == approx({"mrr": (1.75 / 3 + 0.2) / 2, "ndcg@10": (0.4 + 0.1) / 2})
    # overall: macro over tasks (not over domains, 0.375; not over queries, 2.3 / 6).
    assert s["overall"] == approx({"mrr": (0.75 + 1.75 / 3 + 0.2) / 3, "ndcg@10": (0.5 + 0.4 + 0.1) / 3})
    assert s["overall_query_weighted"] == approx({"mrr": (1.5 + 1.75 + 0.2) / 6, "ndcg@10": (1.0 + 1.2 + 0.1) / 6})
    assert s["overall"]["ndcg@10"] != round(s["overall"]["ndcg@10"], 6)  # nothing is rounded


def test_summarise_keeps_only_the_listed_queries():
    # A keeps q2 (an unknown id is ignored), B keeps s2's two queries only, C and D are not listed: dropped.
    keep = {"A": ["q2", "q-unknown"], "B/s1": [], "B/s2": ["q2", "q1"]}
    s = summarise(PER_QUERY, UNIT_DOMAIN, keep)
    approx = lambda v: pytest.approx(v, abs=1e-15)  # noqa: E731
    assert s["per_task"] == {"A": approx({"mrr": 0.5, "ndcg@10": 0.0}), "B": approx({"mrr": 0.375, "ndcg@10": 0.15})}
    assert s["n_queries"] == {"A": 1, "B": 2}
    assert s["per_domain"] == {"code": approx({"mrr": 0.5, "ndcg@10": 0.0}), "web": approx({"mrr": 0.375, "ndcg@10": 0.15})}
    assert s["overall"] == approx({"mrr": 0.4375, "ndcg@10": 0.075})
    assert s["overall_query_weighted"] == approx({"mrr": 1.25 / 3, "ndcg@10": 0.1})
    nothing = summarise(PER_QUERY, UNIT_DOMAIN, {})
    assert nothing["per_task"] == {} and nothing["overall"] == {} and nothing["overall_query_weighted"] == {}


def test_split_timing_moves_every_elapsed_field():
    clean, timings = split_timing({"a": 1, "elapsed_sec": 3.0, "x": [{"total_elapsed_sec": 2, "k": 1}]})
    assert clean == {"a": 1, "x": [{"k": 1}]}
    assert timings == {"elapsed_sec": 3.0, "x.0.total_elapsed_sec": 2}


class _Unit:
    def __init__(self, name, qids):
        self.name, self.qids = name, qids


def test_test_split_is_the_reference_split_for_every_ratio():
    qids = [f"q{i}" for i in range(37)]
    got = held_out_qids([_Unit("t", qids)], seed=7)["t"]
    for r in (0.05, 0.1, 0.2, 0.4):
        assert got == split_queries(qids, r, 0.1, 0.5, seed=7)[2]


@pytest.fixture(scope="module")
def direct_vectors(smoke_pool):
    """A sample of each unit's instructed queries from the large model and documents from the small one,
    encoded here without the cache: rows ``0, 5, 10, ...``."""
    from era_core.encoders import load_encoder

    pool, cfg = smoke_pool
    large = load_encoder(LARGE, dtype=cfg.dtype, max_length=cfg.max_length, progress=False)
    small = load_encoder(SMALL, dtype=cfg.dtype, max_length=cfg.max_length, progress=False)
    out = {}
    for unit in pool.units:
        qids = unit.labelled_qids()[::SAMPLE]
        texts = [f"Instruct: {unit.instructions[q]}\nQuery: {unit.queries[q]}" if unit.instructions.get(q)
                 else unit.queries[q] for q in qids]
        docs = list(unit.corpus.values())[::SAMPLE]
        out[unit.name] = (large.encode(texts, progress=False), small.encode(docs, progress=False))
    return out


SAMPLE = 5


def _ndcg10_by_hand(queries, docs, weight, bias, qids, doc_ids, qrels):
    """Mean nDCG@10 (pytrec_eval) of normalize(W q + b) against the documents, in float64."""
    import pytrec_eval

    z = queries.astype(np.float64) @ weight.T.astype(np.float64) + bias.astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    scores = z @ docs.astype(np.float64).T
    top = np.argsort(-scores, axis=1)[:, :100]
    run = {q: {doc_ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    per_q = pytrec_eval.RelevanceEvaluator({q: qrels[q] for q in qids}, {"ndcg_cut.10"}).evaluate(run)
    return float(np.mean([v["ndcg_cut_10"] for v in per_q.values()]))


def test_pool_encodes_queries_with_the_large_model_and_documents_with_the_small(smoke_pool, direct_vectors):
    pool, _ = smoke_pool
    for te in pool.get("forced"):
        q_large, docs_small = direct_vectors[te.name]
        # Row cosines (all vectors are unit length); bf16 autocast rounds differently per batch padding.
        assert np.sum(te.q_large[::SAMPLE] * q_large, axis=1).min() > 0.9999
        assert np.sum(te.docs_small[::SAMPLE] * docs_small, axis=1).min() > 0.9999
        # The two models' spaces really differ, so a swapped pairing could not pass the lines above.
        assert np.sum(te.q_small[::SAMPLE] * q_large, axis=1).max() < 0.9


def test_era_run_scores_large_queries_through_the_adapter_against_small_documents(smoke_pool, tmp_path):
    # The pool's vectors are the two models' (test above); here the run must pair them the right way round.
    from safetensors import safe_open

    pool, cfg = smoke_pool
    names = tuple(u.name for u in pool.units)
    summary = run_job(Run("in_domain", "era", 42, 0.2, "forced", names), pool, cfg, tmp_path)
    path = run_dir(tmp_path, "in_domain", "era__forced__train0.2__seed42") / "adapter.safetensors"
    with safe_open(str(path), framework="np") as f:
        meta, weight, bias = f.metadata(), f.get_tensor("proj.weight"), f.get_tensor("proj.bias")
    assert (meta["large_model"], meta["small_model"], meta["query_side"]) == (LARGE, SMALL, "large")
    swapped_gap = 0.0
    for te in pool.get("forced"):
        assert weight.shape == (te.docs_small.shape[1], te.q_large.shape[1])  # maps large -> small
        test = split_queries(te.qids, 0.2, cfg.val_ratio, cfg.eval_ratio, seed=42)[2]
        rows = [te.qids.index(q) for q in test]
        expected = _ndcg10_by_hand(te.q_large[rows], te.docs_small, weight, bias, test, te.doc_ids, te.qrels)
        assert summary["scopes"]["test"]["per_task"][te.name]["ndcg@10"] == pytest.approx(expected, abs=1e-6)
        swapped = _ndcg10_by_hand(te.q_small[rows], te.docs_small, weight, bias, test, te.doc_ids, te.qrels)
        swapped_gap = max(swapped_gap, abs(swapped - expected))
    assert swapped_gap > 0.01  # small-model queries through the same adapter score differently


def test_failed_training_writes_nothing(smoke_pool, tmp_path, monkeypatch):
    from era_core.errors import TrainingError

    pool, cfg = smoke_pool

    def diverge(*a, **k):
        raise TrainingError("label phase: loss is nan at epoch 1, step 1")

    monkeypatch.setattr(runs_module, "train_method", diverge)
    with pytest.raises(TrainingError):
        run_job(Run("in_domain", "label_only", 1, 0.1, "forced", tuple(u.name for u in pool.units)), pool, cfg,
                tmp_path)
    assert not list(tmp_path.rglob("summary.json")) and not list(tmp_path.rglob("*.safetensors"))


def test_alignment_reuses_the_large_models_corpus_cache(smoke_pool):
    pool, _ = smoke_pool
    unit = pool.units[0]
    enc = get_encoder(pool.setup.large_model, pool.setup)
    full = embed_texts(enc, list(unit.corpus.values()), role="document", progress=False)
    x, y, xe, ye = alignment_pairs([unit], pool.setup, samples_per_task=50, eval_ratio=0.1, seed=42)
    stacked = np.concatenate([x, xe])
    assert all(np.isclose(np.abs(full @ row).max(), 1.0, atol=1e-5) for row in stacked)


def test_random_adapter_floor_is_far_below_zero_shot(smoke_pool):
    pool, cfg = smoke_pool
    floor = random_adapter_baseline(pool, cfg.with_params(seeds="1,2", instruction_settings="forced"))
    assert [r["seed"] for r in floor] == [1, 2]
    embs = pool.get("forced")
    unit_domain = {u.name: u.domain for u in pool.units}
    zero = summarise(apply_and_score(None, embs, query_side="small", unit_domain=unit_domain),
                        unit_domain, held_out_qids(embs, 1))
    assert floor[0]["scopes"]["test"]["overall"]["ndcg@10"] < 0.5 * zero["overall"]["ndcg@10"]


# ---------------------------------------------------------------- the sweep's cells and lr selection per setting


def test_sweep_cells_headline_then_stress_test_then_remined_variants():
    cfg = smoke_config(instruction_settings="native,forced", methods="era,alignment_only,small_adapter",
                       train_ratios="0.1,0.4", stress_ratios="0.4", remine_ratios="0.4")
    cells = sweep_cells(cfg)
    assert [c for c in cells if c[0] == "forced"] == [("forced", 0.4, m) for m in ("era", "alignment_only", "small_adapter")]
    assert [c for c in cells if c[0] == "native" and c[1] == 0.1] == [("native", 0.1, m) for m in
                                                                       ("era", "alignment_only", "small_adapter")]
    remined = [c for c in cells if c[2].endswith("+remine")]
    # Only Phase 2 methods have a re-mined variant, and only in the headline setting at remine_ratios.
    assert remined == [("native", 0.4, "era+remine"), ("native", 0.4, "small_adapter+remine")]
    assert sweep_cells(cfg.with_params(stress_ratios="", remine_ratios="")).count(("forced", 0.1, "era")) == 1


def test_lr_is_selected_per_instruction_setting_and_recorded_in_every_run(smoke_pool, tmp_path):
    pool, cfg = smoke_pool
    q = cfg.with_params(methods="small_adapter", train_ratios="0.2", seeds="42", label_lr_grid="1e-3,3e-2",
                        instruction_settings="native,forced", stress_ratios="", remine_ratios="0.2")
    runs = sweep(pool, q, tmp_path)
    assert sorted((r["method"], r["instructions"]) for r in runs) == [
        ("small_adapter", "forced"), ("small_adapter", "native"), ("small_adapter+remine", "native")]
    by = {(r["method"], r["instructions"]): r["label_lr_selection"] for r in runs}
    for (method, inst), sel in by.items():
        assert sel["instructions"] == inst and set(sel["grid"]) == {"0.001", "0.03"}
        assert sel["chosen"] == float(min(sel["grid"], key=lambda k: (sel["grid"][k], float(k)))) and sel["criterion"]
    # Each setting trained its own grid: the runs exist under the setting's name, and their losses differ.
    for inst in ("native", "forced"):
        for lr in ("0.001", "0.03"):
            assert (tmp_path / "runs" / "lr_selection" / f"small_adapter__{inst}__train0.2__seed42__lr-{lr}").is_dir()
    assert by[("small_adapter", "native")]["grid"] != by[("small_adapter", "forced")]["grid"]
    # The re-mined variant reuses its base method's choice.
    assert by[("small_adapter+remine", "native")] == by[("small_adapter", "native")]
    meta = read_json(run_dir(tmp_path, "in_domain", "small_adapter+remine__native__train0.2__seed42") / "era_meta.json")
    assert meta["config"]["params"]["label_lr"] == by[("small_adapter", "native")]["chosen"]
    assert meta["remine_result"][0]["round"] == 1
