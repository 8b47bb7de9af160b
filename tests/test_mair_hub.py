"""load_mair_task through a mocked Hugging Face hub that has MAIR's real layout.

The hub is unreachable here, so ``datasets.load_dataset`` is replaced by a fake that serves the
two MAIR repositories from JSONL files laid out as on the hub (``MAIR-Queries/<task>/queries.jsonl``
or ``<sub>_queries.jsonl``, ``MAIR-Docs/<task>/docs.jsonl`` or ``<sub>_docs.jsonl``: one config per
task, one split per file; MAIR.md §2.3). The fake loads them with the real ``datasets`` JSON
builder, so the rows, their Arrow-inferred types (int ids, ``labels`` as a list of structs) and the
DatasetDict's split order are what the hub hands back.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from era_core.data import HUB_DOCS, HUB_QUERIES, DataQualityWarning, load_mair_task
from era_core.errors import DataError

_REAL_LOAD = datasets.load_dataset

# IFEval's sub-splits in a non-alphabetical hub order: the loader must keep the hub's order.
IFEVAL_SUBS = ("combination__two_responses_2383", "change_case__english_capital_1999")

HUB: dict[str, dict[str, dict[str, list[dict]]]] = {
    HUB_QUERIES: {
        # Graded labels 0/1/2 and a negative grade; one instruction per query.
        "FiQA": {"queries": [
            {"qid": "q1", "instruction": "Retrieve an answer to the financial question.", "query": "What is a bond?",
             "labels": [{"id": "d1", "score": 2}, {"id": "d2", "score": 1}, {"id": "d3", "score": 0}]},
            {"qid": "q2", "instruction": "Find a post that disagrees.", "query": "Stocks always rise",
             "labels": [{"id": "d3", "score": -1}, {"id": "d2", "score": 1}]},
            {"qid": "q3", "instruction": "Retrieve an answer to the financial question.", "query": "unjudged",
             "labels": []},
        ]},
        # Integer qids and doc ids: Arrow infers int64, the loader must turn them into strings.
        "NFCorpus": {"queries": [
            {"qid": 7, "instruction": "Find medical articles.", "query": "vitamin d",
             "labels": [{"id": 100, "score": 2}, {"id": 101, "score": 1}]},
        ]},
        # Sub-splits whose qids and doc ids collide across sub-collections.
        "IFEval": {
            f"{IFEVAL_SUBS[0]}_queries": [
                {"qid": "1", "instruction": "Answer twice.", "query": "sub0 query",
                 "labels": [{"id": "a", "score": 1}, {"id": "ghost", "score": 1}]},
                {"qid": "1", "instruction": "Answer twice.", "query": "repeated qid", "labels": [{"id": "b", "score": 1}]},
            ],
            f"{IFEVAL_SUBS[1]}_queries": [
                {"qid": "1", "instruction": "Write in capitals.", "query": "sub1 query", "labels": [{"id": "b", "score": 2}]},
                {"qid": "2", "instruction": "Write in capitals.", "query": "sub1 second", "labels": [{"id": "a", "score": 1}]},
            ],
        },
        "MISeD": {"Bmr006_queries": [{"qid": "m", "instruction": "I", "query": "x", "labels": [{"id": "a", "score": 1}]}]},
    },
    HUB_DOCS: {
        "FiQA": {"docs": [{"id": "d1", "doc": "A bond is a loan."}, {"id": "d2", "doc": "Bonds pay coupons."},
                          {"id": "d3", "doc": "Stocks can fall."}]},
        "NFCorpus": {"docs": [{"id": 100, "doc": "Vitamin D and bones."}, {"id": 101, "doc": "Sunlight."}]},
        "IFEval": {
            f"{IFEVAL_SUBS[0]}_docs": [{"id": "a", "doc": "sub0 a"}, {"id": "b", "doc": "sub0 b"},
                                       {"id": "a", "doc": "sub0 a repeated"}],
            f"{IFEVAL_SUBS[1]}_docs": [{"id": "a", "doc": "SUB1 A"}, {"id": "b", "doc": "SUB1 B"}],
        },
        "MISeD": {"covid4_docs": [{"id": "a", "doc": "unpaired"}]},  # Bmr006_docs is missing
    },
}


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Serve HUB through ``datasets.load_dataset``; returns the (repo, config) calls made."""
    for repo, configs in HUB.items():
        for config, splits in configs.items():
            for split, rows in splits.items():
                path = tmp_path / repo / config / f"{split}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    calls: list[tuple[str, str]] = []

    def fake_load_dataset(path: str, name: str | None = None, **kwargs):
        calls.append((path, name))
        if path not in HUB or name not in HUB[path]:
            raise FileNotFoundError(f"Dataset {path!r} has no config {name!r}")
        files = {split: str(tmp_path / path / name / f"{split}.jsonl") for split in HUB[path][name]}
        return _REAL_LOAD("json", data_files=files, cache_dir=str(tmp_path / "hf-cache"))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls


def test_single_split_graded_labels_and_instructions(hub):
    t = load_mair_task("FiQA")
    assert hub == [(HUB_QUERIES, "FiQA"), (HUB_DOCS, "FiQA")]
    assert t.name == "FiQA" and t.domain == "finance" and t.subsplits == {} and t.units() == [t]
    assert t.queries == {"q1": "What is a bond?", "q2": "Stocks always rise", "q3": "unjudged"}
    assert t.instructions == {"q1": "Retrieve an answer to the financial question.",
                              "q2": "Find a post that disagrees.",
                              "q3": "Retrieve an answer to the financial question."}
    assert t.has_per_query_instructions and t.default_instruction == "Retrieve an answer to the financial question."
    # Grades kept as given, zero and negative included; the unjudged q3 is not in qrels.
    assert t.qrels == {"q1": {"d1": 2, "d2": 1, "d3": 0}, "q2": {"d3": -1, "d2": 1}}
    assert all(type(s) is int for rel in t.qrels.values() for s in rel.values())
    assert list(t.corpus) == ["d1", "d2", "d3"] and t.corpus["d2"] == "Bonds pay coupons."
    assert t.dropped_counts() == {"label_missing_doc": 0, "duplicate_doc_id": 0, "duplicate_qid": 0}


def test_integer_ids_become_strings(hub):
    t = load_mair_task("NFCorpus")
    assert t.domain == "medical"
    assert t.queries == {"7": "vitamin d"} and t.qrels == {"7": {"100": 2, "101": 1}}
    assert t.corpus == {"100": "Vitamin D and bones.", "101": "Sunlight."}


def test_subsplits_keep_their_own_corpus_and_count_drops(hub):
    with pytest.warns(DataQualityWarning) as rec:
        t = load_mair_task("IFEval")
    assert t.domain == "web" and t.queries == {} and t.corpus == {} and t.qrels == {}
    assert list(t.subsplits) == list(IFEVAL_SUBS)  # hub split order
    u0, u1 = t.units()
    assert [u0.name, u1.name] == [f"IFEval/{s}" for s in IFEVAL_SUBS]
    assert u0.domain == u1.domain == "web"
    # Sub-split 0: doc "a" repeats (first text kept), qid "1" repeats (first row kept), "ghost" is unknown.
    assert u0.corpus == {"a": "sub0 a", "b": "sub0 b"}
    assert u0.queries == {"1": "sub0 query"} and u0.instructions == {"1": "Answer twice."}
    assert u0.qrels == {"1": {"a": 1}}
    assert u0.dropped == {"label_missing_doc": 1, "duplicate_doc_id": 1, "duplicate_qid": 1}
    # Sub-split 1 has the same ids with other texts: nothing leaks in from sub-split 0.
    assert u1.corpus == {"a": "SUB1 A", "b": "SUB1 B"}
    assert u1.queries == {"1": "sub1 query", "2": "sub1 second"}
    assert u1.instructions == {"1": "Write in capitals.", "2": "Write in capitals."}
    assert u1.qrels == {"1": {"b": 2}, "2": {"a": 1}}
    assert u1.dropped == {"label_missing_doc": 0, "duplicate_doc_id": 0, "duplicate_qid": 0}
    assert t.dropped_counts() == {"label_missing_doc": 1, "duplicate_doc_id": 1, "duplicate_qid": 1}
    assert t.n_docs == 4 and t.n_labelled == 3 and t.has_per_query_instructions
    # One warning, for the unit with drops, naming split rows.
    msgs = [str(w.message) for w in rec if w.category is DataQualityWarning]
    assert len(msgs) == 1
    sub0 = IFEVAL_SUBS[0]
    assert f"'IFEval/{sub0}'" in msgs[0]
    assert f"1 label(s) pointing at doc ids missing from {HUB_DOCS}:IFEval[{sub0}_docs] (e.g. 1->ghost" in msgs[0]
    assert f"1 duplicate doc id(s) (e.g. 'a', {HUB_DOCS}:IFEval[{sub0}_docs], row 3)" in msgs[0]
    assert f"1 duplicate qid(s) (e.g. '1', {HUB_QUERIES}:IFEval[{sub0}_queries], row 2)" in msgs[0]
    assert rec[0].filename == __file__  # the warning points at the caller of load_mair_task


def test_strict_names_the_split_and_row(hub):
    sub0 = IFEVAL_SUBS[0]
    with pytest.raises(DataError, match=rf"MAIR-Docs:IFEval\[{sub0}_docs\], row 3: duplicate doc id 'a'"):
        load_mair_task("IFEval", strict=True)


def test_missing_docs_split_and_unknown_config(hub):
    with pytest.raises(DataError, match=r"MAIR-Docs\[Bmr006_docs\] missing .*have \['covid4_docs'\]"):
        load_mair_task("MISeD")
    # A MAIR task the hub does not serve: one actionable error, not a raw traceback.
    with pytest.raises(DataError, match=r"Could not load MAIR task 'CQADupStack' from the Hugging Face hub"):
        load_mair_task("CQADupStack")
