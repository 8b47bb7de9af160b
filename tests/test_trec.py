"""TREC run and qrels files: written by every run, read back by ir_measures to our metrics exactly."""

from __future__ import annotations

import gzip

import ir_measures
import pytest
from ir_measures import nDCG, RR

from era_core.io import read_json
from era_core.paper.runs import Run, run_dir, run_job
from era_core.trec import QRELS_FILE, RUN_FILE, run_text, trec_qid, write_qrels, write_run


def test_run_lines_follow_trec_evals_tie_order_and_unique_qids(tmp_path):
    runs = {"T/a": {"q1": {"d1": 0.5, "d3": 0.5, "d2": 0.9}}, "T/b": {"q1": {"d9": 0.1}}}
    lines = run_text(runs, "tag").splitlines()
    assert lines == ["T/a/q1 Q0 d2 1 0.9 tag", "T/a/q1 Q0 d3 2 0.5 tag", "T/a/q1 Q0 d1 3 0.5 tag",
                     "T/b/q1 Q0 d9 1 0.1 tag"]
    assert trec_qid("My Task", "q 1") == "My_Task/q_1"
    write_run(tmp_path / "a.gz", runs, "tag")
    write_run(tmp_path / "b.gz", runs, "tag")
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()     # no time in the header
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()).decode().splitlines() == lines
    write_qrels(tmp_path / "q.trec", {"T/a": {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}}, keep={"T/a": ["q1"]})
    assert (tmp_path / "q.trec").read_text().splitlines() == ["T/a/q1 0 d1 2", "T/a/q1 0 d2 0"]


def test_doc_ids_with_spaces_are_refused(tmp_path):
    from era_core.errors import DataError

    with pytest.raises(DataError, match="whitespace"):
        run_text({"T": {"q": {"a b": 1.0}}}, "t")


def test_ir_measures_reads_a_runs_files_to_our_metrics(smoke_pool, tmp_path):
    pool, cfg = smoke_pool
    run = Run("in_domain", "era", 42, 0.2, "forced", tuple(u.name for u in pool.units))
    summary = run_job(run, pool, cfg.with_params(label_epochs=4, label_lr_grid=""), tmp_path)
    folder = run_dir(tmp_path, "in_domain", "era__forced__train0.2__seed42")
    qrels = list(ir_measures.read_trec_qrels(str(folder / QRELS_FILE)))
    run = list(ir_measures.read_trec_run(str(folder / RUN_FILE)))
    per_query = {m.query_id: m.value for m in ir_measures.iter_calc([nDCG @ 10], qrels, run)}
    ours = read_json(folder / "per_query.json")
    flat = {trec_qid(u, q): v for u, rows in ours.items() for q, v in rows.items()}
    assert set(per_query) == set(flat) and len(flat) > 100
    assert max(abs(per_query[q] - flat[q]) for q in flat) < 1e-9
    overall = ir_measures.calc_aggregate([nDCG @ 10, RR], qrels, run)
    test = summary["scopes"]["test"]
    assert overall[nDCG @ 10] == pytest.approx(test["overall_query_weighted"]["ndcg@10"], abs=1e-9)
    assert overall[RR] == pytest.approx(test["overall_query_weighted"]["mrr"], abs=1e-9)


def test_ranking_shortcut_matches_the_keyed_sort_on_any_input_order():
    import random

    from era_core.trec import _ranked

    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(0, 12)
        # few distinct scores and prefix-related ids, so ties and prefix orders are common
        docs = {rng.choice(["d", "d1", "d10", "d2", "a", "ab", "abc", "z"]) + str(rng.randint(0, 3)):
                rng.choice([0.5, 0.25, 0.75, -0.0, 0.0]) for _ in range(n)}
        items = list(docs.items())
        rng.shuffle(items)
        expected = sorted(items, key=lambda kv: (-kv[1], tuple(-ord(c) for c in kv[0])))
        assert _ranked(dict(items)) == expected
        assert _ranked(dict(expected)) == expected
