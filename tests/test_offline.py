"""Tests of the offline benchmark builders (smoke build) read back through era_core.data."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from era_core.data import Task, list_tasks, load_mair_task, load_tasks
from era_core.paper.datasheet import leakage_share, write_datasheet
from era_core.errors import DataError
from era_core.data.offline import OFFLINE_VERSION, build_offline_benchmark, default_root, offline_task_table
from era_core.data.offline.common import Candidate, Caps, SourceTask, assemble, require_package
from era_core.splits import split_queries


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    return build_offline_benchmark(tmp_path_factory.mktemp("a") / "offline-smoke", smoke=True, progress=False)


def test_smoke_shape(smoke: Path):
    meta = json.loads((smoke / "tasks.json").read_text())
    assert meta["version"] == OFFLINE_VERSION
    names = list(offline_task_table(smoke=True))
    assert meta["order"] == names and len(names) == 4
    assert len({meta["tasks"][n]["domain"] for n in names}) == 4
    assert [n for n in names if meta["tasks"][n]["kind"] == "real"] == ["InsuranceQA"]
    per_query = 0
    for name in names:
        t = load_mair_task(name, smoke)
        assert t.domain == meta["tasks"][name]["domain"]
        assert 100 <= len(t.queries) <= 200 and len(t.corpus) <= 400
        assert t.n_labelled == len(t.queries)  # every offline query is labelled
        for qid, rel in t.qrels.items():
            assert rel and all(d in t.corpus for d in rel)
            assert all(t.queries[qid].strip().lower() != t.corpus[d].strip().lower() for d in rel)
        assert all(i.strip() for i in t.instructions.values())
        assert len(set(t.queries.values())) == len(t.queries)  # deduped by text
        per_query += t.has_per_query_instructions
        stats = meta["tasks"][name]
        assert stats["n_queries"] == len(t.queries) and stats["n_docs"] == len(t.corpus)
        assert "leakage_share" not in stats  # the data layer knows no split; the datasheet computes it
        assert max(len(d.split()) for d in t.corpus.values()) <= 300
    assert per_query >= 1


def test_smoke_build_is_deterministic(smoke: Path, tmp_path: Path):
    # A fresh interpreter with another hash seed: catches set/dict order and memory addresses.
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONHASHSEED="123", PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))
    code = ("import sys; from pathlib import Path; from era_core.data.offline import build_offline_benchmark; "
            "build_offline_benchmark(Path(sys.argv[1]), smoke=True, progress=False)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "again")], env=env, cwd=repo,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert _hashes(tmp_path / "again") == _hashes(smoke)


def test_half_built_folder_is_rebuilt(tmp_path: Path):
    root = tmp_path / "b"
    (root / "MAIR-Queries" / "HPO-Synonyms").mkdir(parents=True)
    (root / "MAIR-Queries" / "HPO-Synonyms" / "queries.jsonl").write_text("garbage\n")
    out = build_offline_benchmark(root, smoke=True, tasks=["HPO-Synonyms"], progress=False)
    assert (out / "tasks.json").is_file()
    assert load_mair_task("HPO-Synonyms", out).n_labelled > 0
    stamp = (out / "tasks.json").stat().st_mtime_ns
    assert build_offline_benchmark(root, smoke=True, tasks=["HPO-Synonyms"], progress=False) == out
    assert (out / "tasks.json").stat().st_mtime_ns == stamp  # complete build reused, not rebuilt
    with pytest.raises(DataError, match="allowed:"):
        build_offline_benchmark(root, smoke=True, tasks=["ICD10-Nope"], progress=False)


def test_load_tasks_offline_smoke(smoke: Path):
    tasks = load_tasks("offline-smoke", root=smoke, progress=False)
    assert [t.name for t in tasks] == list(list_tasks("offline-smoke"))


def test_default_table_coverage():
    table = list_tasks("offline")
    per_domain = Counter(table.values())
    assert len(table) >= 10 and len(per_domain) >= 4 and min(per_domain.values()) >= 2
    assert set(list_tasks("offline-smoke")) <= set(table)
    assert default_root().name == f"offline-v{OFFLINE_VERSION}"
    assert default_root(smoke=True).name == f"offline-smoke-v{OFFLINE_VERSION}"


def _src(cands, docs) -> SourceTask:
    return SourceTask(name="T", domain="code", source="x", source_version="1", source_licence="MIT", description="",
                      instructions=("A", "B"), candidates=[Candidate(*c) for c in cands], docs=docs)


def test_assemble_rules():
    docs = {f"d{i}": f"document number {i}" for i in range(20)}
    cands = [("Shared Query", "d0", 0), ("shared  query", "d1", 0),    # ambiguous: both docs relevant
             ("document number 2", "d2", 1),                           # identical to its doc: dropped
             ("generic", "d3", 0), ("generic", "d4", 0), ("generic", "d5", 0),  # > max_positives: dropped
             ("c1", "d6", 0), ("c2", "d6", 1), ("c3", "d6", 0)]        # cap 2 per doc
    q, d, stats = assemble(_src(cands, docs), Caps(max_queries=10, max_docs=6, max_per_doc=2, max_positives=2))
    texts = {r["query"]: r for r in q}
    assert texts["Shared Query"]["labels"] == [{"id": "d0", "score": 1}, {"id": "d1", "score": 1}]
    assert "document number 2" not in texts and "generic" not in texts
    assert sum(t in texts for t in ("c1", "c2", "c3")) == 2
    assert {r["instruction"] for r in q} <= {"A", "B"}
    ids = [r["id"] for r in d]
    assert len(ids) == 6 and {"d0", "d1", "d6"} <= set(ids)
    assert ids == sorted(ids, key=lambda x: int(x[1:]))  # source order kept
    assert stats["n_dropped_identical_to_doc"] == 1 and stats["n_dropped_too_generic"] == 1
    long_docs = {"d0": " ".join(["w"] * 500)}
    _, d2, s2 = assemble(_src([("q", "d0", 0)], long_docs), Caps(max_words=300))
    assert len(d2[0]["doc"].split()) == 300 and s2["n_truncated_docs"] == 1


def _labelled(qrels: dict[str, list[str]]) -> Task:
    docs = {d for ds in qrels.values() for d in ds}
    return Task("T", "code", queries={q: q for q in qrels}, qrels={q: {d: 1 for d in ds} for q, ds in qrels.items()},
                corpus={d: d for d in sorted(docs)})


def test_leakage_share_uses_the_methods_split():
    assert leakage_share(_labelled({f"q{i}": [f"d{i}"] for i in range(10)})) == 0.0
    assert leakage_share(_labelled({f"q{i}": ["same"] for i in range(10)})) == 1.0
    train, _, test = split_queries([f"q{i}" for i in range(20)], 0.4)
    # Every test query labels its own doc and the first two test queries also a training query's doc.
    qrels = {f"q{i}": [f"d{i}"] for i in range(20)}
    for q in test[:2]:
        qrels[q] = qrels[q] + [f"d{train[0][1:]}"]
    n_pairs = len(test) + 2
    assert leakage_share(_labelled(qrels)) == round(2 / n_pairs, 4)


def test_missing_package_error_has_install_command():
    with pytest.raises(DataError, match=r"pip install definitely-not-a-pkg==1\.0"):
        require_package("definitely-not-a-pkg", "1.0")


def test_datasheet(smoke: Path, tmp_path: Path):
    out = write_datasheet(smoke, tmp_path / "ds.md", extra_sections={"Pair gaps": "large→small: 0.1"})
    text = out.read_text()
    for name in offline_task_table(smoke=True):
        assert f"| {name} |" in text
    assert "## Pair gaps\n\nlarge→small: 0.1" in text  # each extra section under its own heading
    with pytest.raises(DataError, match="build the benchmark first"):
        write_datasheet(tmp_path / "nothing", tmp_path / "x.md")
