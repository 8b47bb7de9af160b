"""MAIR: the 126-task table and the loader of MAIR-format folders and of the hub (``load_mair_task``)."""

from __future__ import annotations

import difflib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from era_core.data.tasks import DOMAINS, DataQualityWarning, Task
from era_core.errors import DataError
from era_core.splits import SPLIT_NAMES

_MAIR_BY_DOMAIN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("academic", (
        "Competition-Math", "ProofWiki_Proof", "ProofWiki_Reference", "Stacks_Proof",
        "Stacks_Reference", "Stein_Proof", "Stein_Reference", "Trench_Proof", "Trench_Reference",
        "TAD", "TAS2", "StackMathQA", "SciDocs", "SciFact", "FairRanking_2020", "LitSearch",
    )),
    ("code", (
        "APPS", "CodeEditSearch", "CodeSearchNet", "Conala", "HumanEval-X", "LeetCode", "MBPP",
        "RepoBench", "TLDR", "SWE-Bench-Lite", "FoodAPI", "HuggingfaceAPI", "PytorchAPI",
        "SpotifyAPI", "TMDB", "TensorAPI", "ToolBench", "WeatherAPI",
    )),
    ("finance", (
        "Apple", "ConvFinQA", "FinQA", "FinanceBench", "HC3Finance", "TAT-DQA", "Trade-the-event",
        "FiQA",
    )),
    ("legal", (
        "AILA2019-Case", "AILA2019-Statutes", "BSARD", "BillSum", "CUAD", "GerDaLIR", "LeCaRDv2",
        "LegalQuAD", "REGIR-EU2UK", "REGIR-UK2EU", "TREC-Legal_2011",
    )),
    ("medical", (
        "NFCorpus", "Trec-Covid", "Monant", "CliniDS_2014", "CliniDS_2015", "CliniDS_2016",
        "ClinicalTrials_2021", "ClinicalTrials_2022", "ClinicalTrials_2023",
        "Genomics-AdHoc_2004", "Genomics-AdHoc_2005", "Genomics-AdHoc_2006",
        "Genomics-AdHoc_2007", "PrecisionMedicine_2017", "PrecisionMedicine_2018",
        "PrecisionMedicine_2019", "PrecisionMedicine-Article_2019",
        "PrecisionMedicine-Article_2020", "CARE",
    )),
    ("web", (
        "AY2", "ELI5", "Fever", "TREx", "WnCw", "WnWi", "WoW", "zsRE", "ArguAna", "CQADupStack",
        "Quora", "TopiOCQA", "Touche", "ACORDAR", "CPCD", "ChroniclingAmericaQA", "NTCIR",
        "PointRec", "ProCIS-Dialog", "ProCIS-Turn", "QuanTemp", "WebTableSearch", "CAsT_2019",
        "CAsT_2020", "CAsT_2021", "CAsT_2022", "DD_2015", "DD_2016", "DD_2017",
        "FairRanking_2021", "FairRanking_2022", "NeuCLIR-Tech_2023", "NeuCLIR_2022",
        "NeuCLIR_2023", "ProductSearch_2023", "ToT_2023", "ToT_2024", "Core_2017",
        "Microblog_2011", "Microblog_2012", "Microblog_2013", "Microblog_2014", "MISeD", "SParC",
        "SParC-SQL", "Spider", "Spider-SQL", "ExcluIR", "Core17", "News21", "Robust04",
        "InstructIR", "NevIR", "IFEval",
    )),
)

#: All 126 MAIR tasks → domain, in the canonical (training) order.
MAIR_TASKS: dict[str, str] = {t: d for d, names in _MAIR_BY_DOMAIN for t in names}

BENCHMARKS: tuple[str, ...] = ("mair", "offline", "offline-smoke")
HUB_QUERIES = "MAIR-Bench/MAIR-Queries"
HUB_DOCS = "MAIR-Bench/MAIR-Docs"


# --------------------------------------------------------------------------- row sources

Row = tuple[int, dict[str, Any]]  # (1-based line/row number, row)


@dataclass(frozen=True)
class _Source:
    """Where rows come from, so every message points at a file line or a hub split row."""

    name: str
    unit: str = "line"  # "line" for JSONL files, "row" for hub splits

    def at(self, n: int) -> str:
        """Where row ``n`` is, for error messages."""
        return f"{self.name}, {self.unit} {n}"


def _iter_jsonl(path: Path) -> Iterator[Row]:
    """Yield (line number, object) for each non-blank line; decode per line to report bad bytes."""
    data = path.read_bytes()
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{path}, line {lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start}). "
                "Re-encode the file as UTF-8."
            ) from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {lineno}: malformed JSON ({exc.msg}, column {exc.colno}).") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}, line {lineno}: expected a JSON object, got {type(obj).__name__}.")
        yield lineno, obj


def _iter_hub_rows(split: Iterable[dict[str, Any]]) -> Iterator[Row]:
    """Number hub rows (1-based) so errors point at the row."""
    for i, row in enumerate(split, start=1):
        yield i, dict(row)


def _field(row: dict[str, Any], key: str, src: _Source, n: int) -> Any:
    if key not in row:
        raise DataError(f"{src.at(n)}: missing field {key!r} (row has {sorted(row)}).")
    return row[key]


def _strict_hint() -> str:
    return "Fix the data, or load without strict=True to drop such rows (first occurrence kept) with a warning."


def _read_corpus(name: str, doc_rows: Iterable[Row], src: _Source, strict: bool,
                 dups: list[tuple[str, int]]) -> dict[str, str]:
    """Doc id → text in row order; a repeated id keeps its first text (or raises when strict)."""
    corpus: dict[str, str] = {}
    for n, row in doc_rows:
        did = str(_field(row, "id", src, n))
        text = _field(row, "doc", src, n)
        if did in corpus:
            if strict:
                raise DataError(f"{src.at(n)}: duplicate doc id {did!r}. {_strict_hint()}")
            dups.append((did, n))
            continue
        corpus[did] = "" if text is None else str(text)
    if not corpus:
        raise DataError(f"Task {name!r}: empty corpus in {src.name}; a task needs at least one document.")
    return corpus


def _parse_labels(labels: Any, src: _Source, n: int) -> list[tuple[str, int]]:
    """(doc id, integer grade) pairs of one query row's ``labels`` list."""
    if labels is None:
        return []
    if not isinstance(labels, list):
        raise DataError(f"{src.at(n)}: 'labels' must be a list of {{id, score}}, got {type(labels).__name__}.")
    out: list[tuple[str, int]] = []
    for lab in labels:
        if not isinstance(lab, dict) or "id" not in lab or "score" not in lab:
            raise DataError(f"{src.at(n)}: each label needs 'id' and 'score', got {lab!r}.")
        try:
            score = int(lab["score"])
        except (TypeError, ValueError):
            raise DataError(f"{src.at(n)}: label score {lab['score']!r} is not an integer.") from None
        out.append((str(lab["id"]), score))
    return out


def _build_unit(
    name: str,
    domain: str,
    query_rows: Iterable[Row],
    doc_rows: Iterable[Row],
    query_src: _Source,
    doc_src: _Source,
    strict: bool,
) -> Task:
    """Turn query and doc rows into a Task: drop (and count) bad rows, or raise when ``strict``."""
    dup_docs: list[tuple[str, int]] = []
    corpus = _read_corpus(name, doc_rows, doc_src, strict, dup_docs)

    queries: dict[str, str] = {}
    instructions: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    dup_qids: list[tuple[str, int]] = []
    unknown: list[tuple[str, str, int]] = []
    query_split: dict[str, str] = {}
    emptied = 0
    for n, row in query_rows:
        qid = str(_field(row, "qid", query_src, n))
        text = _field(row, "query", query_src, n)
        labels = _parse_labels(_field(row, "labels", query_src, n), query_src, n)
        if qid in queries:
            if strict:
                raise DataError(f"{query_src.at(n)}: duplicate qid {qid!r}. {_strict_hint()}")
            dup_qids.append((qid, n))
            continue
        queries[qid] = "" if text is None else str(text)
        instructions[qid] = str(row.get("instruction") or "")
        if "split" in row:
            query_split[qid] = _split_label(row["split"], query_src, n)
        rel: dict[str, int] = {}
        for did, score in labels:
            if did not in corpus:
                unknown.append((qid, did, n))
                continue
            # A doc listed twice for one query keeps its highest grade.
            rel[did] = max(score, rel.get(did, score))
        if rel:
            qrels[qid] = rel
        elif labels:
            emptied += 1

    if unknown and strict:
        examples = ", ".join(f"{q}->{d} ({query_src.unit} {n})" for q, d, n in unknown[:5])
        raise DataError(f"Task {name!r}: {len(unknown)} label(s) in {query_src.name} point at doc ids missing "
                        f"from {doc_src.name} (e.g. {examples}). {_strict_hint()}")
    if query_split and len(query_split) != len(queries):
        missing = next(q for q in queries if q not in query_split)
        raise DataError(f"Task {name!r}: {len(query_split)} of {len(queries)} queries in {query_src.name} carry a "
                        f"'split' key (e.g. qid {missing!r} does not); an official split must label every query.")
    dropped = {"label_missing_doc": len(unknown), "duplicate_doc_id": len(dup_docs), "duplicate_qid": len(dup_qids)}
    if any(dropped.values()):
        _warn_dropped(name, unknown, dup_docs, dup_qids, emptied, query_src, doc_src)
    return Task(name=name, domain=domain, queries=queries, instructions=instructions, qrels=qrels,
                corpus=corpus, dropped=dropped, query_split=query_split)


def _split_label(value: Any, src: _Source, n: int) -> str:
    """A query row's official split label (our extension of MAIR's format), checked."""
    if value not in SPLIT_NAMES:
        raise DataError(f"{src.at(n)}: 'split' must be one of {', '.join(SPLIT_NAMES)}, got {value!r}.")
    return value


def _warn_dropped(name: str, unknown: list[tuple[str, str, int]],
                  dup_docs: list[tuple[str, int]], dup_qids: list[tuple[str, int]], emptied: int,
                  query_src: _Source, doc_src: _Source) -> None:
    """One DataQualityWarning per unit naming each kind's count and a first example."""
    parts = []
    if unknown:
        q, d, n = unknown[0]
        parts.append(f"{len(unknown)} label(s) pointing at doc ids missing from {doc_src.name} "
                     f"(e.g. {q}->{d}, {query_src.at(n)})")
    if dup_docs:
        d, n = dup_docs[0]
        parts.append(f"{len(dup_docs)} duplicate doc id(s) (e.g. {d!r}, {doc_src.at(n)})")
    if dup_qids:
        q, n = dup_qids[0]
        parts.append(f"{len(dup_qids)} duplicate qid(s) (e.g. {q!r}, {query_src.at(n)})")
    tail = f" {emptied} query(ies) lost all their labels and leave the scored set." if emptied else ""
    warnings.warn(f"Task {name!r}: dropped {'; '.join(parts)}; the first occurrence of a repeated id is kept "
                  f"(counts in Task.dropped_counts()).{tail} Pass strict=True to raise instead.",
                  DataQualityWarning, stacklevel=6)


# --------------------------------------------------------------------------- task lookup

def _read_tasks_json(root: Path) -> dict[str, dict[str, Any]]:
    path = root / "tasks.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        tasks = meta["tasks"]
        if not isinstance(tasks, dict):
            raise TypeError("'tasks' is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a valid benchmark description ({exc}); rebuild the benchmark.") from None
    return tasks


def _domain_of(task: str, root: Path | None) -> str:
    local = _read_tasks_json(root) if root is not None else {}
    if task in local:
        domain = local[task].get("domain")
        if domain not in DOMAINS:
            raise DataError(f"{root / 'tasks.json'}: task {task!r} has domain {domain!r}; allowed: {', '.join(DOMAINS)}.")
        return domain
    if task in MAIR_TASKS:
        return MAIR_TASKS[task]
    known = list(MAIR_TASKS) + list(local)
    close = difflib.get_close_matches(task, known, n=5)
    where = "the 126 MAIR tasks (era_core.data.MAIR_TASKS)"
    if root is not None:
        where += f" and {root / 'tasks.json'}" + ("" if local else " (absent)")
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise DataError(f"Unknown task {task!r}: not among {where}.{hint}")


# --------------------------------------------------------------------------- loaders

def _load_from_disk(task: str, domain: str, root: Path, strict: bool) -> Task:
    qdir, ddir = root / "MAIR-Queries" / task, root / "MAIR-Docs" / task
    if not qdir.is_dir():
        raise DataError(f"Task {task!r}: query folder {qdir} does not exist (expected MAIR-Queries/{task}/queries.jsonl under {root}).")
    if not ddir.is_dir():
        raise DataError(f"Task {task!r}: docs folder {ddir} does not exist (expected MAIR-Docs/{task}/docs.jsonl under {root}).")
    single = qdir / "queries.jsonl"
    subs = sorted(p.name[: -len("_queries.jsonl")] for p in qdir.glob("*_queries.jsonl"))
    if single.is_file() and subs:
        raise DataError(f"Task {task!r}: {qdir} holds both queries.jsonl and sub-split files {subs[:3]}; keep one layout.")

    def unit(unit_name: str, qpath: Path, dpath: Path) -> Task:
        if not dpath.is_file():
            raise DataError(f"Task {task!r}: docs file {dpath} is missing (it pairs with {qpath}).")
        return _build_unit(unit_name, domain, _iter_jsonl(qpath), _iter_jsonl(dpath),
                           _Source(str(qpath)), _Source(str(dpath)), strict)

    if single.is_file():
        return unit(task, single, ddir / "docs.jsonl")
    if not subs:
        raise DataError(f"Task {task!r}: no queries.jsonl or <sub>_queries.jsonl in {qdir}.")
    parent = Task(name=task, domain=domain)
    for sub in subs:
        parent.subsplits[sub] = unit(f"{task}/{sub}", qdir / f"{sub}_queries.jsonl", ddir / f"{sub}_docs.jsonl")
    return parent


def _load_from_hub(task: str, domain: str, strict: bool) -> Task:
    try:
        import datasets  # lazy: heavy, and only the hub path needs it
    except ImportError:
        raise DataError("Loading MAIR from the hub needs the 'datasets' package (pip install datasets), "
                        "or pass root=<folder with MAIR-Queries/ and MAIR-Docs/>.") from None
    try:
        qds = datasets.load_dataset(HUB_QUERIES, task)
        dds = datasets.load_dataset(HUB_DOCS, task)
    except Exception as exc:  # noqa: BLE001 - any hub/cache failure gets one actionable message
        raise DataError(
            f"Could not load MAIR task {task!r} from the Hugging Face hub ({HUB_QUERIES}, {HUB_DOCS}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. The hub (network access or a "
            "populated HF cache; check HF_HUB_OFFLINE/HF_HOME) is needed, or pass root=<folder> holding "
            f"MAIR-Queries/{task}/*.jsonl and MAIR-Docs/{task}/*.jsonl."
        ) from None

    def unit(unit_name: str, qsplit: str, dsplit: str) -> Task:
        if dsplit not in dds:
            raise DataError(f"Task {task!r}: hub split {HUB_DOCS}[{dsplit}] missing (pairs with {qsplit}); have {sorted(dds)}.")
        return _build_unit(unit_name, domain, _iter_hub_rows(qds[qsplit]), _iter_hub_rows(dds[dsplit]),
                           _Source(f"{HUB_QUERIES}:{task}[{qsplit}]", "row"),
                           _Source(f"{HUB_DOCS}:{task}[{dsplit}]", "row"), strict)

    subs = [s[: -len("_queries")] for s in qds if s.endswith("_queries")]
    if "queries" in qds and subs:
        raise DataError(f"Task {task!r}: hub dataset {HUB_QUERIES}:{task} has both a 'queries' split and "
                        f"sub-splits {subs[:3]}; expected one layout.")
    if "queries" in qds:
        return unit(task, "queries", "docs")
    if not subs:
        raise DataError(f"Task {task!r}: hub dataset has no 'queries' or '<sub>_queries' split; splits: {sorted(qds)}.")
    parent = Task(name=task, domain=domain)
    for sub in subs:  # hub split order = dataset order
        parent.subsplits[sub] = unit(f"{task}/{sub}", f"{sub}_queries", f"{sub}_docs")
    return parent


def load_mair_task(task: str, root: str | Path | None = None, *, strict: bool = False) -> Task:
    """Load one task from the MAIR hub (``root=None``) or from a MAIR-format folder.

    By default bad rows are tolerated, as the reference tolerates them, but dropped and counted
    rather than kept: a label naming a doc id missing from the unit's corpus is dropped, and a
    repeated doc id or qid keeps its first occurrence. (The reference's dicts keep the last repeat
    and keep labels to missing docs in its qrels.) Each unit with drops emits one
    :class:`DataQualityWarning`; the counts are in ``task.dropped_counts()``. ``strict=True``
    raises :class:`DataError` instead, naming the file line or hub split row.
    """
    rootp = Path(root) if root is not None else None
    if rootp is not None and not rootp.is_dir():
        raise DataError(f"Benchmark folder {rootp} does not exist (needed to load task {task!r}).")
    domain = _domain_of(task, rootp)
    if rootp is None:
        return _load_from_hub(task, domain, strict)
    return _load_from_disk(task, domain, rootp, strict)
