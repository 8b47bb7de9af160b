"""TREC run and qrels files: what trec_eval, ir_measures and ranx read.

A run line is ``qid Q0 docid rank score tag``; a qrels line ``qid 0 docid label``. Query ids are
made unique across the units of a results folder as ``<unit>/<qid>`` (sub-split ids may collide),
with whitespace replaced so every line keeps six (or four) fields. Run files are gzip-compressed
with a zero mtime in the header, so the bytes depend on the content only.
"""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path
from typing import Mapping, Sequence

from era_core.errors import DataError
from era_core.io import atomic_write_bytes

RUN_FILE = "run.trec.gz"
QRELS_FILE = "qrels.trec"
_SPACE = re.compile(r"\s+")

Runs = Mapping[str, Mapping[str, Mapping[str, float]]]  # {unit: {qid: {doc_id: score}}}


def trec_qid(unit: str, qid: str) -> str:
    """The file-wide query id of ``qid`` in ``unit``."""
    return _SPACE.sub("_", f"{unit}/{qid}")


def _doc_id(doc: str) -> str:
    if _SPACE.search(doc):
        raise DataError(f"document id {doc!r} contains whitespace, which TREC files cannot hold; rename it")
    return doc


def _tie_key(doc: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in doc)


def _in_order(items: list[tuple[str, float]]) -> bool:
    """Whether ``items`` already follow the run order (true for every run ``topk_search`` produced)."""
    for (d1, s1), (d2, s2) in zip(items, items[1:]):
        if s1 < s2 or (s1 == s2 and _tie_key(d1) > _tie_key(d2)):
            return False
    return True


def _ranked(docs: Mapping[str, float]) -> list[tuple[str, float]]:
    # trec_eval's order: score descending, then doc id descending; ranks follow it, so any reader agrees.
    # Runs from topk_search arrive in this order already; checking it is ~20x cheaper than the keyed sort.
    items = list(docs.items())
    return items if _in_order(items) else sorted(items, key=lambda kv: (-kv[1], _tie_key(kv[0])))


def run_text(runs: Runs, tag: str, keep: Mapping[str, Sequence[str]] | None = None) -> str:
    """TREC run lines of ``runs`` (optionally only the ``keep`` qids of each unit)."""
    out = io.StringIO()
    for unit in sorted(runs):
        chosen = runs[unit] if keep is None else {q: runs[unit][q] for q in keep.get(unit, []) if q in runs[unit]}
        for qid in sorted(chosen):
            t = trec_qid(unit, qid)
            for rank, (doc, score) in enumerate(_ranked(chosen[qid]), start=1):
                out.write(f"{t} Q0 {_doc_id(doc)} {rank} {score!r} {tag}\n")
    return out.getvalue()


def write_run(path: Path | str, runs: Runs, tag: str, keep: Mapping[str, Sequence[str]] | None = None) -> Path:
    """Atomically write a gzip TREC run file (byte-stable: no file name or time in the gzip header)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(run_text(runs, tag, keep).encode("utf-8"))
    return atomic_write_bytes(path, buf.getvalue())


def write_qrels(path: Path | str, qrels: Mapping[str, Mapping[str, Mapping[str, int]]],
                keep: Mapping[str, Sequence[str]] | None = None) -> Path:
    """Atomically write TREC qrels ``{unit: {qid: {doc_id: label}}}`` (optionally only the ``keep`` qids)."""
    lines = []
    for unit in sorted(qrels):
        qids = sorted(qrels[unit]) if keep is None else sorted(q for q in keep.get(unit, []) if q in qrels[unit])
        for qid in qids:
            lines += [f"{trec_qid(unit, qid)} 0 {_doc_id(d)} {int(v)}" for d, v in sorted(qrels[unit][qid].items())]
    return atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
