"""The Phase 1 scaling study: one resumable summary per cell, honest cell sizes, and a byte-stable figure."""

from __future__ import annotations

import numpy as np
import pytest

from era_core.paper import scaling as sc
from era_core.paper import report
from era_core.errors import EraError, ParamsError
from era_core.io import read_json, write_json
from era_core.splits import split_queries
from era_core.api import score_unit
from era_core.paper.pool import EmbeddingPool
from era_core.setup import load_units
from era_core.splits import test_qids as held_out_qids  # aliased: pytest would collect a test_* name

from conftest import smoke_config


def _params(**over):
    return smoke_config("02_alignment", **{"align_epochs": 2, "label_epochs": 3,
                                           "align_sources": "task_docs,train_queries", "align_sizes": "100,5000",
                                           "scaling_inits": "ridge", **over})


@pytest.fixture
def counted(monkeypatch):
    calls = {"phase1": 0, "phase2": 0}

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(sc, "train_alignment", count("phase1", sc.train_alignment))
    monkeypatch.setattr(sc.api, "fit", count("phase2", sc.api.fit))
    return calls


def test_study_writes_one_summary_per_cell_and_a_second_call_trains_nothing(tmp_path, counted, one_torch_thread):
    p = _params()
    setup = p.setup
    out = sc.alignment_scaling(setup, p, tmp_path)
    units = load_units(setup)
    n_docs = sum(len(u.corpus) for u in units)  # 800: both corpora are below 1000 docs
    n_train_q = sum(len(split_queries(u.labelled_qids(), 0.4, 0.1, 0.5, seed=42)[0]) for u in units)
    # Sizes past a source's size collapse onto it: task_docs {100, 800}, train_queries {100, all train queries}.
    want = {("task_docs", 100), ("task_docs", n_docs), ("train_queries", 100), ("train_queries", n_train_q)}
    assert {(c["source"], c["n_pairs"]) for c in out["cells"]} == want
    assert out["available"] == {"task_docs": n_docs, "train_queries": n_train_q}
    folders = sorted(p_.parent.name for p_ in (tmp_path / "runs" / sc.PROTOCOL).glob("*/summary.json"))
    assert folders == sorted(f"{s}__n{n}__ridge__seed42" for s, n in want)
    assert counted == {"phase1": 4, "phase2": 4}
    for c in out["cells"]:
        assert c["n_train"] + c["n_eval"] == c["n_pairs"] and c["n_eval"] == max(1, int(0.1 * c["n_pairs"]))
        assert -1.0 <= c["eval_cosine"] <= 1.0 and 0.0 <= c["methods"]["era"]["overall"] <= 1.0
    first = (tmp_path / sc.RESULTS_FILE).read_bytes()

    again = sc.alignment_scaling(setup, p, tmp_path)
    assert counted == {"phase1": 4, "phase2": 4}  # every cell served from its summary.json
    assert again["cells"] == out["cells"] and (tmp_path / sc.RESULTS_FILE).read_bytes() == first

    # A changed input reruns its cells: the key hashes the parameters.
    sc.alignment_scaling(setup, p.with_params(label_epochs=4), tmp_path)
    assert counted == {"phase1": 8, "phase2": 8}


def test_cell_alignment_only_score_is_its_phase1_adapter_on_the_test_split(tmp_path, one_torch_thread):
    from era_core.paper.sources import holdout_split
    from era_core.train import train_alignment

    p = _params(align_sources="task_docs", align_sizes="100")
    setup = p.setup
    cell = sc.alignment_scaling(setup, p, tmp_path)["cells"][0]
    pool = EmbeddingPool(setup, load_units(setup))
    ctx = sc.StudyContext(setup, pool, p, tmp_path, p.label_lr)
    x_tr, y_tr, x_ev, y_ev = holdout_split(ctx.pairs("task_docs", 100, 42), 0.1, 42)
    res = train_alignment(x_tr, y_tr, x_ev, y_ev, sc.align_cfg_for(p, "ridge", 42, "cpu"), progress=False)
    assert cell["eval_cosine"] == pytest.approx(res.eval_cosine, abs=1e-7)
    embs = pool.get(p.instructions)
    w, b = res.adapter.proj.weight.detach().numpy(), res.adapter.proj.bias.detach().numpy()
    keep = held_out_qids(embs, 42)
    per_task = []
    for te in embs:
        z = te.q_large @ w.T + b
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        per_query = score_unit(z, te.docs_small, te.qids, te.doc_ids, te.qrels)
        per_task.append(np.mean([per_query[q]["ndcg@10"] for q in keep[te.name]]))
    assert cell["methods"]["alignment_only"]["overall"] == pytest.approx(float(np.mean(per_task)), abs=1e-5)


def test_parse_study_drops_procrustes_for_unequal_dims_and_checks_values():
    p = _params(scaling_inits="default,procrustes", align_sizes="400,200,400")
    plan = sc.parse_study(p, 768, 384)
    assert plan["inits"] == ["default"] and "768 -> 384" in plan["skipped"][0]
    assert plan["sizes"] == [200, 400]
    assert sc.parse_study(p, 384, 384)["inits"] == ["default", "procrustes"]
    with pytest.raises(ParamsError, match="no Phase 1 solver"):
        sc.parse_study(_params(scaling_inits="procrustes"), 768, 384)
    with pytest.raises(ParamsError, match="positive"):
        sc.parse_study(_params(align_sizes="0,100"), 384, 384)
    with pytest.raises(ParamsError, match="offline benchmarks only"):
        sc.parse_study(p.with_params(benchmark="mair", align_sources="corpus_pool"), 384, 384)


def _fake_results(path, shift=0.0):
    cells = []
    for source in ("task_docs", "corpus_pool"):
        for init in ("default", "ridge"):
            for n in (200, 1000, 5000):
                for seed in (1, 2):
                    v = 0.5 + 0.05 * np.log10(n) + 0.01 * seed + shift + (0.02 if init == "ridge" else 0.0)
                    cells.append({"source": source, "init": init, "n_pairs": n, "seed": seed, "eval_cosine": v,
                                  "query_cosine": v - 0.2, "methods": {"era": {"overall": v - 0.1}, "alignment_only": {"overall": v - 0.3}}})
    write_json(path / sc.RESULTS_FILE, {"setup": {"large_model": "L", "small_model": "S"}, "train_ratio": 0.4,
                                        "sources": ["task_docs", "corpus_pool"], "inits": ["default", "ridge"],
                                        "cells": cells})
    return path


def test_figure_is_byte_stable_and_follows_the_data(tmp_path):
    results = _fake_results(tmp_path / "r")
    a = report.figure_alignment_scaling(results, tmp_path / "f1").read_bytes()
    b = report.figure_alignment_scaling(results, tmp_path / "f2").read_bytes()
    assert a.startswith(b"%PDF") and a == b
    other = _fake_results(tmp_path / "o", shift=0.05)
    assert report.figure_alignment_scaling(other, tmp_path / "f3").read_bytes() != a
    with pytest.raises(EraError, match="02_alignment"):
        report.figure_alignment_scaling(tmp_path / "missing", tmp_path / "f4")


def test_scaling_frame_means_and_sds_over_seeds(tmp_path):
    data = read_json(_fake_results(tmp_path) / sc.RESULTS_FILE)
    t = report.alignment_scaling_frame(data)
    row = t[(t.source == "corpus_pool") & (t.init == "ridge") & (t.n_pairs == 1000)].iloc[0]
    v1, v2 = 0.5 + 0.05 * 3 + 0.01 + 0.02, 0.5 + 0.05 * 3 + 0.02 + 0.02
    assert row.seeds == 2 and row.eval_cosine_mean == pytest.approx((v1 + v2) / 2)
    assert row.query_cosine_mean == pytest.approx((v1 + v2) / 2 - 0.2)
    assert row.era_std == pytest.approx(abs(v1 - v2) / np.sqrt(2)) and len(t) == 12
