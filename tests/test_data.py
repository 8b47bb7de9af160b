"""Tests of era_core.data on MAIR-format fixtures written here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest

from era_core import data
from era_core.data import (DOMAINS, DROP_KINDS, MAIR_TASKS, DataQualityWarning, Task, list_tasks, load_mair_task,
                            load_tasks)
from era_core.errors import DataError, ParamsError
from era_core.paper.datasheet import write_datasheet


def _jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")


def _task(root: Path, task: str, queries: list, docs: list, sub: str | None = None) -> None:
    q = f"{sub}_queries.jsonl" if sub else "queries.jsonl"
    d = f"{sub}_docs.jsonl" if sub else "docs.jsonl"
    _jsonl(root / "MAIR-Queries" / task / q, queries)
    _jsonl(root / "MAIR-Docs" / task / d, docs)


DOCS = [{"id": "d1", "doc": "alpha"}, {"id": 2, "doc": "beta"}, {"id": "d3", "doc": "gamma"}]
QUERIES = [
    {"qid": 10, "query": "first", "instruction": "Find A.", "labels": [{"id": "d1", "score": 2}, {"id": 2, "score": 1}]},
    {"qid": "q2", "query": "second", "instruction": "Find B.", "labels": []},
    {"qid": "q3", "query": "third", "instruction": "Find A.", "labels": [{"id": "d3", "score": 0}, {"id": "d1", "score": "1"}]},
    {"qid": "q4", "query": "fourth", "labels": [{"id": "d3", "score": 1}]},
]


@pytest.fixture()
def single(tmp_path: Path) -> Path:
    _task(tmp_path, "FiQA", QUERIES, DOCS)
    return tmp_path


def test_task_table_counts_and_order():
    counts = Counter(MAIR_TASKS.values())
    assert counts == {"academic": 16, "code": 18, "finance": 8, "legal": 11, "medical": 19, "web": 54}
    assert len(MAIR_TASKS) == 126
    assert set(DOMAINS) == set(counts)
    names = list(MAIR_TASKS)
    assert names[0] == "Competition-Math" and names[-1] == "IFEval"
    assert names.index("APPS") == 16 and names.index("Apple") == 34
    assert MAIR_TASKS["FairRanking_2020"] == "academic" and MAIR_TASKS["FairRanking_2021"] == "web"
    assert MAIR_TASKS["FiQA"] == "finance" and MAIR_TASKS["NFCorpus"] == "medical"
    assert list_tasks("mair") == MAIR_TASKS


def test_single_split_fields(single: Path):
    t = load_mair_task("FiQA", single)
    assert t.name == "FiQA" and t.domain == "finance" and t.subsplits == {}
    assert list(t.queries) == ["10", "q2", "q3", "q4"]
    assert t.queries["10"] == "first"
    assert t.instructions == {"10": "Find A.", "q2": "Find B.", "q3": "Find A.", "q4": ""}
    # unlabelled q2 is absent from qrels; graded and string scores become ints
    assert t.qrels == {"10": {"d1": 2, "2": 1}, "q3": {"d3": 0, "d1": 1}, "q4": {"d3": 1}}
    assert all(isinstance(s, int) for rel in t.qrels.values() for s in rel.values())
    assert list(t.corpus) == ["d1", "2", "d3"] and t.corpus["2"] == "beta"
    assert t.labelled_qids() == ["10", "q3", "q4"]
    assert t.default_instruction == "Find A."
    assert t.has_per_query_instructions
    assert t.n_docs == 3 and t.n_labelled == 3
    assert t.units() == [t]


def test_single_instruction_task(tmp_path: Path):
    _task(tmp_path, "SciFact", [{"qid": "a", "query": "x", "instruction": "I", "labels": [{"id": "d", "score": 1}]},
                                {"qid": "b", "query": "y", "instruction": "I", "labels": [{"id": "d", "score": 1}]}],
          [{"id": "d", "doc": "z"}])
    t = load_mair_task("SciFact", tmp_path)
    assert not t.has_per_query_instructions and t.default_instruction == "I" and t.domain == "academic"


def test_multi_split_not_merged(tmp_path: Path):
    # Both sub-splits use qid "1" and doc ids "a"/"b" with DIFFERENT texts: a merge would collide.
    _task(tmp_path, "IFEval", [{"qid": "1", "query": "q-one", "instruction": "I1", "labels": [{"id": "a", "score": 1}]}],
          [{"id": "a", "doc": "first-a"}, {"id": "b", "doc": "first-b"}], sub="change_case__english_capital_1999")
    _task(tmp_path, "IFEval", [{"qid": "1", "query": "q-two", "instruction": "I2", "labels": [{"id": "b", "score": 1}]},
                               {"qid": "2", "query": "q-three", "instruction": "I2", "labels": []}],
          [{"id": "a", "doc": "second-a"}, {"id": "b", "doc": "second-b"}, {"id": "c", "doc": "second-c"}],
          sub="combination__two_responses_2383")
    t = load_mair_task("IFEval", tmp_path)
    assert t.domain == "web"
    assert t.queries == {} and t.corpus == {} and t.qrels == {}  # documented: parent left empty
    units = t.units()
    assert [u.name for u in units] == ["IFEval/change_case__english_capital_1999", "IFEval/combination__two_responses_2383"]
    u1, u2 = units
    assert u1.corpus == {"a": "first-a", "b": "first-b"}
    assert u2.corpus == {"a": "second-a", "b": "second-b", "c": "second-c"}
    assert u1.queries == {"1": "q-one"} and u2.queries == {"1": "q-two", "2": "q-three"}
    assert u1.qrels == {"1": {"a": 1}} and u2.qrels == {"1": {"b": 1}}
    assert u2.labelled_qids() == ["1"]
    assert t.n_docs == 5 and t.n_labelled == 2
    assert t.default_instruction == "I1" and t.has_per_query_instructions
    with pytest.raises(DataError, match="units"):
        t.labelled_qids()


def test_malformed_line_names_file_and_line(tmp_path: Path):
    _task(tmp_path, "FiQA", [json.dumps(QUERIES[0]), "{not json"], DOCS)
    with pytest.raises(DataError, match=r"queries\.jsonl, line 2: malformed JSON"):
        load_mair_task("FiQA", tmp_path)


def test_missing_labels_field(tmp_path: Path):
    _task(tmp_path, "FiQA", [QUERIES[0], {"qid": "x", "query": "no labels"}], DOCS)
    with pytest.raises(DataError, match=r"queries\.jsonl, line 2: missing field 'labels'"):
        load_mair_task("FiQA", tmp_path)


def test_unknown_doc_ids_dropped_or_refused(tmp_path: Path):
    qs = [{"qid": "a", "query": "x", "labels": [{"id": "d1", "score": 1}, {"id": "ghost", "score": 1}]},
          {"qid": "b", "query": "y", "labels": [{"id": "ghost2", "score": 1}]}]
    _task(tmp_path, "FiQA", qs, DOCS)
    with pytest.warns(DataQualityWarning, match=r"'FiQA': dropped 2 label\(s\).*a->ghost.*line 1") as rec:
        t = load_mair_task("FiQA", tmp_path)
    assert len([w for w in rec if w.category is DataQualityWarning]) == 1  # one warning per unit
    assert "1 query(ies) lost all their labels" in str(rec[0].message)
    assert t.qrels == {"a": {"d1": 1}}  # b lost its only label and left qrels
    assert list(t.queries) == ["a", "b"]
    assert t.dropped == {"label_missing_doc": 2, "duplicate_doc_id": 0, "duplicate_qid": 0}
    assert t.dropped_counts() == t.dropped
    with pytest.raises(DataError, match=r"2 label\(s\).*a->ghost \(line 1\).*b->ghost2 \(line 2\)"):
        load_mair_task("FiQA", tmp_path, strict=True)


@pytest.mark.parametrize("kind", ["qid", "doc"])
def test_duplicate_ids_keep_first_or_refused(tmp_path: Path, kind: str):
    if kind == "qid":
        # The repeat of qid 10 carries a label to d3 and another text: both must be ignored.
        dup = {"qid": 10, "query": "again", "instruction": "Other.", "labels": [{"id": "d3", "score": 1}]}
        _task(tmp_path, "FiQA", [QUERIES[0], dup, QUERIES[1]], DOCS)
        match, expected = r"queries\.jsonl, line 2: duplicate qid '10'", {"duplicate_qid": 1}
        warn = r"1 duplicate qid\(s\) \(e\.g\. '10', .*queries\.jsonl, line 2\)"
    else:
        _task(tmp_path, "FiQA", QUERIES, DOCS + [{"id": "d1", "doc": "again"}])
        match, expected = r"docs\.jsonl, line 4: duplicate doc id 'd1'", {"duplicate_doc_id": 1}
        warn = r"1 duplicate doc id\(s\) \(e\.g\. 'd1', .*docs\.jsonl, line 4\)"
    with pytest.raises(DataError, match=match):
        load_mair_task("FiQA", tmp_path, strict=True)
    with pytest.warns(DataQualityWarning, match=warn):
        t = load_mair_task("FiQA", tmp_path)
    assert t.dropped_counts() == {"label_missing_doc": 0, "duplicate_doc_id": 0, "duplicate_qid": 0, **expected}
    if kind == "qid":
        assert list(t.queries) == ["10", "q2"] and t.queries["10"] == "first"
        assert t.instructions["10"] == "Find A." and t.qrels == {"10": {"d1": 2, "2": 1}}
    else:
        assert list(t.corpus) == ["d1", "2", "d3"] and t.corpus["d1"] == "alpha"


def test_clean_task_has_zero_drops_and_no_warning(single: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        t = load_mair_task("FiQA", single)
    assert t.dropped_counts() == {k: 0 for k in DROP_KINDS}


def test_strict_passes_through_load_tasks(tmp_path: Path):
    _task(tmp_path, "FiQA", QUERIES, DOCS + [{"id": "d1", "doc": "again"}])
    with pytest.raises(DataError, match="duplicate doc id 'd1'"):
        load_tasks("mair", ["FiQA"], root=tmp_path, progress=False, strict=True)
    with pytest.warns(DataQualityWarning):
        (t,) = load_tasks("mair", ["FiQA"], root=tmp_path, progress=False)
    assert t.dropped_counts()["duplicate_doc_id"] == 1


def test_drops_summed_over_subsplits(tmp_path: Path):
    _task(tmp_path, "CQADupStack", [{"qid": "1", "query": "a", "labels": [{"id": "x", "score": 1}, {"id": "gone", "score": 1}]},
                                    {"qid": "1", "query": "b", "labels": []}],
          [{"id": "x", "doc": "X"}], sub="android")
    _task(tmp_path, "CQADupStack", [{"qid": "1", "query": "c", "labels": [{"id": "gone", "score": 1}, {"id": "gone2", "score": 2}]}],
          [{"id": "y", "doc": "Y"}, {"id": "y", "doc": "Y2"}, {"id": "z", "doc": "Z"}, {"id": "z", "doc": "Z2"}],
          sub="gis")
    with pytest.warns(DataQualityWarning) as rec:
        t = load_mair_task("CQADupStack", tmp_path)
    msgs = [str(w.message) for w in rec if w.category is DataQualityWarning]
    assert len(msgs) == 2 and "'CQADupStack/android'" in msgs[0] and "'CQADupStack/gis'" in msgs[1]
    android, gis = t.units()
    assert android.dropped == {"label_missing_doc": 1, "duplicate_doc_id": 0, "duplicate_qid": 1}
    assert gis.dropped == {"label_missing_doc": 2, "duplicate_doc_id": 2, "duplicate_qid": 0}
    assert t.dropped == {}  # the parent holds no rows of its own
    assert t.dropped_counts() == {"label_missing_doc": 3, "duplicate_doc_id": 2, "duplicate_qid": 1}


def test_datasheet_shows_dropped_counts(tmp_path: Path):
    _task(tmp_path, "Clean-Task", QUERIES, DOCS)
    _task(tmp_path, "Dirty-Task", QUERIES + [dict(QUERIES[0], labels=[{"id": "ghost", "score": 1}]),
                                             dict(QUERIES[0], qid="q9", labels=[{"id": "ghost", "score": 1}])],
          DOCS + [{"id": "d3", "doc": "again"}])
    stats = {"n_queries": 4, "n_docs": 3, "n_qrels": 5, "n_truncated_docs": 0, "mean_query_words": 1.0,
             "mean_doc_words": 1.0, "leakage_share": 0.0, "n_candidate_queries": 4, "n_dropped_too_generic": 0,
             "n_dropped_identical_to_doc": 0, "n_ambiguous_queries": 0, "n_pool_docs": 3}
    meta = {"version": 1, "profile": "test", "order": ["Clean-Task", "Dirty-Task"],
            "caps": {"max_queries": 9, "max_docs": 9, "max_per_doc": 2, "max_words": 300, "seed": 0, "max_positives": 5},
            "tasks": {n: {"domain": "legal", "source": "src", "source_version": "1", "source_licence": "MIT",
                          "description": "d", "instructions": ["I"], **stats} for n in ("Clean-Task", "Dirty-Task")}}
    (tmp_path / "tasks.json").write_text(json.dumps(meta))
    with pytest.warns(DataQualityWarning, match="Dirty-Task"):
        out = write_datasheet(tmp_path, tmp_path / "ds.md")
    text = out.read_text(encoding="utf-8")
    section = text[text.index("## Rows dropped by the loader"):text.index("## Tasks")]
    assert "| Task | Labels → missing doc | Duplicate doc ids | Duplicate qids |" in section
    # Dirty-Task: row 5 repeats qid 10 (dropped whole, so its ghost label is not counted), q9's label names
    # a missing doc, d3 repeats.
    assert "| Clean-Task | 0 | 0 | 0 |" in section and "| Dirty-Task | 1 | 1 | 1 |" in section


def test_empty_corpus(tmp_path: Path):
    _task(tmp_path, "FiQA", QUERIES, [])
    with pytest.raises(DataError, match="empty corpus"):
        load_mair_task("FiQA", tmp_path)


def test_non_utf8(tmp_path: Path):
    _task(tmp_path, "FiQA", QUERIES, DOCS)
    path = tmp_path / "MAIR-Docs" / "FiQA" / "docs.jsonl"
    path.write_bytes(path.read_bytes() + b'{"id": "d9", "doc": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"docs\.jsonl, line 4: not valid UTF-8"):
        load_mair_task("FiQA", tmp_path)


def test_unknown_task_and_close_match(single: Path):
    with pytest.raises(DataError, match=r"Unknown task 'FiQa'.*Did you mean: FiQA"):
        load_mair_task("FiQa", single)
    with pytest.raises(DataError, match="Unknown task 'Nope'"):
        load_mair_task("Nope", single)


def test_missing_folder_and_files(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        load_mair_task("FiQA", tmp_path / "absent")
    with pytest.raises(DataError, match=r"Task 'FiQA': query folder .*MAIR-Queries/FiQA does not exist"):
        load_mair_task("FiQA", tmp_path)
    _jsonl(tmp_path / "MAIR-Queries" / "FiQA" / "queries.jsonl", QUERIES)
    (tmp_path / "MAIR-Docs" / "FiQA").mkdir(parents=True)
    with pytest.raises(DataError, match=r"docs file .*docs\.jsonl is missing"):
        load_mair_task("FiQA", tmp_path)


def test_tasks_json_domain_for_non_mair_tasks(tmp_path: Path):
    _task(tmp_path, "My-Task", QUERIES, DOCS)
    (tmp_path / "tasks.json").write_text(json.dumps({"version": 1, "tasks": {"My-Task": {"domain": "legal"}}}))
    assert load_mair_task("My-Task", tmp_path).domain == "legal"
    (tmp_path / "tasks.json").write_text(json.dumps({"version": 1, "tasks": {"My-Task": {"domain": "sports"}}}))
    with pytest.raises(DataError, match="allowed: academic"):
        load_mair_task("My-Task", tmp_path)


def test_hub_unreachable_gives_one_clear_error(tmp_path: Path):
    # A subprocess so HF_HUB_OFFLINE/HF_HOME take effect before huggingface_hub reads them.
    repo = str(Path(data.__file__).resolve().parent.parent)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"),
               PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    code = ("from era_core.data import load_mair_task\n"
            "from era_core.errors import DataError\n"
            "try:\n    load_mair_task('FiQA')\nexcept DataError as e:\n    print('DATAERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=repo)
    assert "DATAERROR" in out.stdout, out.stderr[-2000:]
    assert "hub" in out.stdout and "root=" in out.stdout and "FiQA" in out.stdout


def test_load_tasks_validation(single: Path):
    with pytest.raises(ParamsError, match="allowed: mair, offline, offline-smoke"):
        load_tasks("beir")
    with pytest.raises(ParamsError, match="allowed: mair"):
        list_tasks("beir")
    with pytest.raises(DataError, match=r"Unknown task\(s\) \['Nope'\]"):
        load_tasks("mair", ["Nope"], root=single)
    tasks = load_tasks("mair", ["FiQA"], root=single, progress=False)
    assert [t.name for t in tasks] == ["FiQA"] and isinstance(tasks[0], Task)


def test_official_split_labels_are_read_and_checked(tmp_path: Path):
    labelled = [{**q, "split": s} for q, s in zip(QUERIES, ("train", "train", "val", "test"))]
    _task(tmp_path, "FiQA", labelled, DOCS)
    assert load_mair_task("FiQA", tmp_path).query_split == {"10": "train", "q2": "train", "q3": "val", "q4": "test"}
    _task(tmp_path, "FiQA", labelled[:3] + [QUERIES[3]], DOCS)
    with pytest.raises(DataError, match="3 of 4 queries .* carry a 'split' key .*'q4'"):
        load_mair_task("FiQA", tmp_path)
    _task(tmp_path, "FiQA", labelled[:3] + [{**QUERIES[3], "split": "valid"}], DOCS)
    with pytest.raises(DataError, match="line 4: 'split' must be one of train, val, test, got 'valid'"):
        load_mair_task("FiQA", tmp_path)
    _task(tmp_path, "FiQA", QUERIES, DOCS)
    assert load_mair_task("FiQA", tmp_path).query_split == {}  # no labels: ERA's ratio split applies
