"""BEIR-format folders load into Task, and folder paths resolve as benchmarks."""

from __future__ import annotations

import json

import pytest

from era_core.data.beir import is_folder_benchmark, list_folder_tasks, load_beir_task, load_folder_tasks
from era_core.errors import DataError


def write_beir(folder, corpus, queries, qrels, split="test"):
    """Write a BEIR task: corpus rows (id, title, text), query rows (id, text[, instruction]), qrels (qid, did, score)."""
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as fh:
        for did, title, text in corpus:
            row = {"_id": did, "text": text}
            if title is not None:
                row["title"] = title
            fh.write(json.dumps(row) + "\n")
    with (folder / "queries.jsonl").open("w") as fh:
        for q in queries:
            fh.write(json.dumps(dict(zip(("_id", "text", "instruction"), q))) + "\n")
    (folder / "qrels" / f"{split}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return folder


def test_beir_task_reads_titles_graded_labels_and_instructions(tmp_path):
    f = write_beir(tmp_path / "mini",
                   [("d1", "Title A", "alpha text"), ("d2", None, "beta text"), ("d3", "", "gamma")],
                   [("q1", "first?", "Find it"), ("q2", "second?"), ("q3", "unlabelled")],
                   [("q1", "d1", 2), ("q1", "d2", 1), ("q2", "d3", 1), ("q2", "d1", 0)])
    t = load_beir_task(f, domain="academic")
    assert t.name == "mini" and t.domain == "academic"
    assert t.corpus == {"d1": "Title A alpha text", "d2": "beta text", "d3": "gamma"}
    assert t.qrels == {"q1": {"d1": 2, "d2": 1}, "q2": {"d3": 1}}  # score 0 is not a label
    assert list(t.queries) == ["q1", "q2"] and t.instructions == {"q1": "Find it", "q2": ""}
    assert t.labelled_qids() == ["q1", "q2"]


def test_bad_rows_are_dropped_and_counted_or_raised(tmp_path):
    f = write_beir(tmp_path / "bad", [("d1", None, "x"), ("d1", None, "dup")], [("q1", "a"), ("q1", "again")],
                   [("q1", "d1", 1), ("q1", "missing", 1)])
    t = load_beir_task(f)
    assert t.corpus == {"d1": "x"} and t.queries == {"q1": "a"} and t.qrels == {"q1": {"d1": 1}}
    assert t.dropped == {"label_missing_doc": 1, "duplicate_doc_id": 1, "duplicate_qid": 1}
    with pytest.raises(DataError, match="repeats"):
        load_beir_task(f, strict=True)
    with pytest.raises(DataError, match="splits in .*test"):
        load_beir_task(f, split="dev")


def test_folder_of_beir_tasks_and_mair_folder_resolve(tmp_path):
    bench = tmp_path / "bench"
    write_beir(bench / "a", [("d1", None, "x")], [("q1", "a")], [("q1", "d1", 1)])
    write_beir(bench / "b", [("e1", None, "y")], [("p1", "b")], [("p1", "e1", 3)])
    (bench / "tasks.json").write_text(json.dumps({"tasks": {"b": {"domain": "legal"}}}))
    assert is_folder_benchmark(bench) and not is_folder_benchmark("offline-smoke")
    assert list_folder_tasks(bench) == {"a": "web", "b": "legal"}
    tasks = load_folder_tasks(bench, ["b"])
    assert [(t.name, t.domain, t.qrels) for t in tasks] == [("b", "legal", {"p1": {"e1": 3}})]
    mair = tmp_path / "mair"
    (mair / "MAIR-Queries" / "SciFact").mkdir(parents=True)
    (mair / "MAIR-Docs" / "SciFact").mkdir(parents=True)
    (mair / "MAIR-Queries" / "SciFact" / "queries.jsonl").write_text(json.dumps(
        {"qid": "1", "instruction": "i", "query": "q", "labels": [{"id": "d", "score": 1}]}) + "\n")
    (mair / "MAIR-Docs" / "SciFact" / "docs.jsonl").write_text(json.dumps({"id": "d", "doc": "text"}) + "\n")
    assert list_folder_tasks(mair) == {"SciFact": "academic"}
    (t,) = load_folder_tasks(mair)
    assert t.qrels == {"1": {"d": 1}} and t.corpus == {"d": "text"}
    with pytest.raises(DataError, match="neither a BEIR task"):
        list_folder_tasks(tmp_path / "bench" / "a" / "qrels")


def test_a_folder_is_a_benchmark_everywhere_one_is_named(tmp_path):
    from era_core.data import list_tasks, load_tasks
    from era_core.errors import ParamsError
    from era_core.paper.params import SCHEMAS, validate

    f = write_beir(tmp_path / "mini", [("d1", "T", "alpha"), ("d2", None, "beta")],
                   [("q1", "first?"), ("q2", "second?")], [("q1", "d1", 1), ("q2", "d2", 1)])
    assert list(list_tasks(str(f))) == ["mini"]
    [task] = load_tasks(str(f), progress=False)
    assert task.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    defaults = {k: v.default for k, v in SCHEMAS["01_zero_shot"].items()}
    assert validate("01_zero_shot", defaults | {"benchmark": str(f)})["benchmark"] == str(f)
    with pytest.raises(ParamsError, match="BEIR-format folder"):
        list_tasks(str(tmp_path / "missing"))
    with pytest.raises(ParamsError):
        validate("01_zero_shot", defaults | {"benchmark": str(tmp_path / "missing")})
