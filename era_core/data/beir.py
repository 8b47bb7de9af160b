"""BEIR-format folders (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) as ``era_core.data.Task``s,
and the resolver that makes a folder path (MAIR or BEIR layout) valid wherever a benchmark is named.

BEIR layout: ``corpus.jsonl`` rows ``{"_id", "title"?, "text"}`` (a non-empty title is put in front of
the text, separated by a space, as MTEB and sentence-transformers join them); ``queries.jsonl`` rows
``{"_id", "text", "instruction"?}``; ``qrels/<split>.tsv`` with the header ``query-id corpus-id score``
(graded; rows with score <= 0 are judged non-relevant and are not labels). A folder of such folders
is a benchmark of several tasks. Bad rows are handled like the MAIR loader handles them: labels
naming a missing document, repeated doc ids and repeated query ids are dropped (first kept) and
counted in ``Task.dropped``, or ``strict=True`` raises naming the file and line.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from era_core.data import BENCHMARKS, DOMAINS, DROP_KINDS, MAIR_TASKS, Task, load_mair_task
from era_core.errors import DataError

DEFAULT_DOMAIN = "web"


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path}:{n}: not valid JSON ({exc}); fix or remove that line") from None
            if not isinstance(row, dict) or "_id" not in row or "text" not in row:
                raise DataError(f"{path}:{n}: a BEIR row needs '_id' and 'text' (got keys {sorted(row) if isinstance(row, dict) else type(row).__name__})")
            out.append((n, row))
    return out


def is_beir_folder(folder: Path | str) -> bool:
    """Whether ``folder`` holds one BEIR task (``corpus.jsonl``, ``queries.jsonl`` and a ``qrels/`` folder)."""
    f = Path(folder)
    return (f / "corpus.jsonl").is_file() and (f / "queries.jsonl").is_file() and (f / "qrels").is_dir()


def is_mair_folder(folder: Path | str) -> bool:
    """Whether ``folder`` is a MAIR-format benchmark (``MAIR-Queries/`` and ``MAIR-Docs/``)."""
    f = Path(folder)
    return (f / "MAIR-Queries").is_dir() and (f / "MAIR-Docs").is_dir()


Report = Callable[[str, str], None]  # (drop kind, message): count the dropped row, or raise when strict


def _read_corpus(folder: Path, bad: Report) -> dict[str, str]:
    corpus: dict[str, str] = {}
    for n, row in _rows(folder / "corpus.jsonl"):
        did = str(row["_id"])
        if did in corpus:
            bad("duplicate_doc_id", f"{folder / 'corpus.jsonl'}:{n}: document id {did!r} repeats")
            continue
        title = str(row.get("title") or "").strip()
        corpus[did] = f"{title} {row['text']}" if title else str(row["text"])
    return corpus


def _read_queries(folder: Path, bad: Report) -> tuple[dict[str, str], dict[str, str]]:
    queries: dict[str, str] = {}
    instructions: dict[str, str] = {}
    for n, row in _rows(folder / "queries.jsonl"):
        qid = str(row["_id"])
        if qid in queries:
            bad("duplicate_qid", f"{folder / 'queries.jsonl'}:{n}: query id {qid!r} repeats")
            continue
        queries[qid] = str(row["text"])
        instructions[qid] = str(row.get("instruction") or "")
    return queries, instructions


def _read_qrels(qrels_path: Path, queries: dict[str, str], corpus: dict[str, str], bad: Report) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for n, rec in enumerate(reader, start=1):
            if not rec or (n == 1 and rec[0].strip().lower() in ("query-id", "query_id", "qid")):
                continue
            if len(rec) < 3:
                raise DataError(f"{qrels_path}:{n}: expected 'query-id<TAB>corpus-id<TAB>score', got {rec!r}")
            qid, did = rec[0].strip(), rec[1].strip()
            try:
                score = int(float(rec[2]))
            except ValueError:
                raise DataError(f"{qrels_path}:{n}: score {rec[2]!r} is not a number") from None
            if qid not in queries:
                raise DataError(f"{qrels_path}:{n}: query id {qid!r} is not in queries.jsonl; fix the qrels or the queries")
            if did not in corpus:
                bad("label_missing_doc", f"{qrels_path}:{n}: document id {did!r} is not in corpus.jsonl")
                continue
            if score > 0:
                qrels.setdefault(qid, {})[did] = score
    return qrels


def load_beir_task(folder: Path | str, *, split: str = "test", name: str | None = None,
                   domain: str = DEFAULT_DOMAIN, strict: bool = False) -> Task:
    """Load one BEIR-format task folder into a ``Task`` (qrels of ``split``; instructions from an optional field).

    Example:
        >>> from era_core.data.beir import load_beir_task                       # doctest: +SKIP
        >>> task = load_beir_task("data/scifact", split="test", domain="academic")
        >>> len(task.corpus), len(task.qrels)
    """
    folder = Path(folder)
    if not is_beir_folder(folder):
        raise DataError(f"{folder} is not a BEIR folder: expected corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    if domain not in DOMAINS:
        raise DataError(f"domain {domain!r} is not allowed; pick one of {', '.join(DOMAINS)}")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise DataError(f"{qrels_path} does not exist; splits in {folder / 'qrels'}: {', '.join(have) or 'none'} (pass split=)")
    dropped = dict.fromkeys(DROP_KINDS, 0)

    def bad(kind: str, msg: str) -> None:
        if strict:
            raise DataError(msg + " (strict=True; the default drops such rows and counts them)")
        dropped[kind] += 1

    corpus = _read_corpus(folder, bad)
    queries, instructions = _read_queries(folder, bad)
    qrels = _read_qrels(qrels_path, queries, corpus, bad)
    order = [q for q in queries if q in qrels]  # dataset order, labelled queries only
    return Task(name=name or folder.name, domain=domain, queries={q: queries[q] for q in order},
                instructions={q: instructions[q] for q in order}, qrels={q: qrels[q] for q in order},
                corpus=corpus, dropped=dropped)


def _folder_tasks_json(folder: Path) -> dict[str, str]:
    path = folder / "tasks.json"
    if not path.is_file():
        return {}
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))["tasks"]
        return {str(t): str(v.get("domain", DEFAULT_DOMAIN)) for t, v in tasks.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: expected {{'tasks': {{name: {{'domain': ...}}}}}} ({exc})") from None


def list_folder_tasks(folder: Path | str) -> dict[str, str]:
    """Task -> domain of a benchmark folder: one BEIR task, a folder of BEIR tasks, or a MAIR-format folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"benchmark folder {folder} does not exist; pass a MAIR-format or BEIR-format folder "
                        f"or one of {', '.join(BENCHMARKS)}")
    declared = _folder_tasks_json(folder)
    if is_beir_folder(folder):
        return {folder.name: declared.get(folder.name, DEFAULT_DOMAIN)}
    if is_mair_folder(folder):
        names = sorted(p.name for p in (folder / "MAIR-Queries").iterdir() if p.is_dir())
        return {t: declared.get(t) or MAIR_TASKS.get(t, DEFAULT_DOMAIN) for t in names}
    subs = sorted(p.name for p in folder.iterdir() if p.is_dir() and is_beir_folder(p))
    if not subs:
        raise DataError(f"{folder} is neither a BEIR task (corpus.jsonl, queries.jsonl, qrels/), a folder of BEIR "
                        "tasks, nor a MAIR-format folder (MAIR-Queries/, MAIR-Docs/)")
    return {t: declared.get(t, DEFAULT_DOMAIN) for t in subs}


def load_folder_tasks(folder: Path | str, tasks: list[str] | None = None, *, split: str = "test",
                      strict: bool = False, progress: bool = False) -> list[Task]:
    """Load the tasks of a benchmark folder (MAIR or BEIR layout), all or the named ones, in folder order."""
    folder = Path(folder)
    table = list_folder_tasks(folder)
    names = list(table) if tasks is None else list(tasks)
    unknown = [t for t in names if t not in table]
    if unknown:
        raise DataError(f"unknown task(s) {unknown} in {folder}; it holds: {', '.join(table)}")
    if is_mair_folder(folder):
        if not (folder / "tasks.json").is_file() and any(t not in MAIR_TASKS for t in names):
            raise DataError(f"{folder} has tasks outside MAIR's 126 and no tasks.json naming their domains; "
                            "add tasks.json: {\"tasks\": {\"<task>\": {\"domain\": \"web\"}}}")
        return [load_mair_task(t, folder, strict=strict) for t in tqdm(names, desc="load", disable=not progress)]
    if is_beir_folder(folder):
        return [load_beir_task(folder, split=split, domain=table[folder.name], strict=strict)]
    return [load_beir_task(folder / t, split=split, domain=table[t], strict=strict)
            for t in tqdm(names, desc="load", disable=not progress)]


def is_folder_benchmark(benchmark: str | Path) -> bool:
    """Whether a benchmark name is a folder path (rather than one of ``data.BENCHMARKS``)."""
    return str(benchmark) not in BENCHMARKS and Path(benchmark).is_dir()
