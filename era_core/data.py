"""MAIR task loading (hub or local MAIR-format folders) and the 126-task table."""

from __future__ import annotations

import difflib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from tqdm.auto import tqdm

from .errors import DataError, ParamsError

DOMAINS: tuple[str, ...] = ("academic", "code", "finance", "legal", "medical", "web")

# The task order is ERA_METHOD.md §4.1 (ALL_MAIR_TASKS); it fixes the training order.
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


@dataclass
class Task:
    """One retrieval task (or one sub-split of a multi-split task) in MAIR's structure.

    For a multi-split task (CQADupStack, IFEval, MISeD, ...) the parent's ``queries``,
    ``instructions``, ``qrels`` and ``corpus`` are left EMPTY on purpose: ids may collide
    across sub-collections and each sub-split has its own corpus (official MAIR evaluation;
    the reference code's merge is a bug, ERA_METHOD.md §9.7). Use :meth:`units`.
    """

    name: str
    domain: str
    queries: dict[str, str] = field(default_factory=dict)
    instructions: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    corpus: dict[str, str] = field(default_factory=dict)
    subsplits: dict[str, "Task"] = field(default_factory=dict)

    def units(self) -> list["Task"]:
        """The independently encoded/searched/split units: the sub-splits, or ``[self]``."""
        return list(self.subsplits.values()) if self.subsplits else [self]

    def labelled_qids(self) -> list[str]:
        """Qids with at least one label, in dataset order (single-split tasks and units only)."""
        if self.subsplits:
            raise DataError(
                f"Task {self.name!r} has {len(self.subsplits)} sub-splits whose qids may collide; "
                "call labelled_qids() on each of task.units() instead."
            )
        return list(self.qrels)

    @property
    def default_instruction(self) -> str:
        """Instruction of the first query (of the first unit for multi-split tasks)."""
        for unit in self.units():
            for qid in unit.queries:
                return unit.instructions.get(qid, "")
        return ""

    @property
    def has_per_query_instructions(self) -> bool:
        """True when the task's queries carry more than one distinct instruction."""
        distinct = {i for u in self.units() for i in u.instructions.values()}
        return len(distinct) > 1

    @property
    def n_docs(self) -> int:
        """Number of documents (summed over sub-splits)."""
        return sum(len(u.corpus) for u in self.units())

    @property
    def n_labelled(self) -> int:
        """Number of labelled queries (summed over sub-splits)."""
        return sum(len(u.qrels) for u in self.units())


# --------------------------------------------------------------------------- row sources

Row = tuple[int, dict[str, Any]]  # (1-based line/row number, row)


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
    """Number hub rows like file lines so errors point at the row."""
    for i, row in enumerate(split, start=1):
        yield i, dict(row)


def _field(row: dict[str, Any], key: str, src: str, lineno: int) -> Any:
    if key not in row:
        raise DataError(f"{src}, line {lineno}: missing field {key!r} (row has {sorted(row)}).")
    return row[key]


def _build_unit(
    name: str,
    domain: str,
    query_rows: Iterable[Row],
    doc_rows: Iterable[Row],
    query_src: str,
    doc_src: str,
    drop_unknown_labels: bool,
) -> Task:
    """Turn query and doc rows into a Task, validating ids and labels."""
    corpus: dict[str, str] = {}
    for lineno, row in doc_rows:
        did = str(_field(row, "id", doc_src, lineno))
        if did in corpus:
            raise DataError(f"{doc_src}, line {lineno}: duplicate doc id {did!r}.")
        text = _field(row, "doc", doc_src, lineno)
        corpus[did] = "" if text is None else str(text)
    if not corpus:
        raise DataError(f"Task {name!r}: empty corpus in {doc_src}; a task needs at least one document.")

    queries: dict[str, str] = {}
    instructions: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    unknown: list[tuple[str, str]] = []
    for lineno, row in query_rows:
        qid = str(_field(row, "qid", query_src, lineno))
        if qid in queries:
            raise DataError(f"{query_src}, line {lineno}: duplicate qid {qid!r}.")
        text = _field(row, "query", query_src, lineno)
        labels = _field(row, "labels", query_src, lineno)
        if labels is None:
            labels = []
        if not isinstance(labels, list):
            raise DataError(f"{query_src}, line {lineno}: 'labels' must be a list of {{id, score}}, got {type(labels).__name__}.")
        queries[qid] = "" if text is None else str(text)
        instructions[qid] = str(row.get("instruction") or "")
        rel: dict[str, int] = {}
        for lab in labels:
            if not isinstance(lab, dict) or "id" not in lab or "score" not in lab:
                raise DataError(f"{query_src}, line {lineno}: each label needs 'id' and 'score', got {lab!r}.")
            did = str(lab["id"])
            try:
                score = int(lab["score"])
            except (TypeError, ValueError):
                raise DataError(f"{query_src}, line {lineno}: label score {lab['score']!r} is not an integer.") from None
            if did not in corpus:
                unknown.append((qid, did))
                continue
            # A doc listed twice for one query keeps its highest grade.
            rel[did] = max(score, rel.get(did, score))
        if rel:
            qrels[qid] = rel

    if unknown:
        examples = ", ".join(f"{q}->{d}" for q, d in unknown[:5])
        msg = (f"Task {name!r}: {len(unknown)} label(s) in {query_src} point at doc ids missing from "
               f"{doc_src} (e.g. {examples}).")
        if not drop_unknown_labels:
            raise DataError(msg + " Pass drop_unknown_labels=True to drop them (queries left without labels are dropped from qrels).")
        warnings.warn(msg + " Dropped them (drop_unknown_labels=True).", stacklevel=3)
    return Task(name=name, domain=domain, queries=queries, instructions=instructions, qrels=qrels, corpus=corpus)


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

def _load_from_disk(task: str, domain: str, root: Path, drop_unknown_labels: bool) -> Task:
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
                           str(qpath), str(dpath), drop_unknown_labels)

    if single.is_file():
        return unit(task, single, ddir / "docs.jsonl")
    if not subs:
        raise DataError(f"Task {task!r}: no queries.jsonl or <sub>_queries.jsonl in {qdir}.")
    parent = Task(name=task, domain=domain)
    for sub in subs:
        parent.subsplits[sub] = unit(f"{task}/{sub}", qdir / f"{sub}_queries.jsonl", ddir / f"{sub}_docs.jsonl")
    return parent


def _load_from_hub(task: str, domain: str, drop_unknown_labels: bool) -> Task:
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
                           f"{HUB_QUERIES}:{task}[{qsplit}]", f"{HUB_DOCS}:{task}[{dsplit}]", drop_unknown_labels)

    if "queries" in qds:
        return unit(task, "queries", "docs")
    subs = [s[: -len("_queries")] for s in qds if s.endswith("_queries")]
    if not subs:
        raise DataError(f"Task {task!r}: hub dataset has no 'queries' or '<sub>_queries' split; splits: {sorted(qds)}.")
    parent = Task(name=task, domain=domain)
    for sub in subs:  # hub split order = dataset order
        parent.subsplits[sub] = unit(f"{task}/{sub}", f"{sub}_queries", f"{sub}_docs")
    return parent


def load_mair_task(task: str, root: str | Path | None = None, *, drop_unknown_labels: bool = False) -> Task:
    """Load one task from the MAIR hub (``root=None``) or from a MAIR-format folder."""
    rootp = Path(root) if root is not None else None
    if rootp is not None and not rootp.is_dir():
        raise DataError(f"Benchmark folder {rootp} does not exist (needed to load task {task!r}).")
    domain = _domain_of(task, rootp)
    if rootp is None:
        return _load_from_hub(task, domain, drop_unknown_labels)
    return _load_from_disk(task, domain, rootp, drop_unknown_labels)


def list_tasks(benchmark: str) -> dict[str, str]:
    """Task → domain of a benchmark in canonical order, without loading any data."""
    if benchmark == "mair":
        return dict(MAIR_TASKS)
    if benchmark in ("offline", "offline-smoke"):
        from .offline import offline_task_table  # lazy: offline imports this module

        return offline_task_table(smoke=benchmark == "offline-smoke")
    raise ParamsError(f"Unknown benchmark {benchmark!r}; allowed: {', '.join(BENCHMARKS)}.")


def load_tasks(
    benchmark: str,
    tasks: list[str] | None = None,
    *,
    root: Path | None = None,
    progress: bool = True,
) -> list[Task]:
    """Load several tasks of a benchmark (building the offline benchmark first if missing)."""
    table = list_tasks(benchmark)
    names = list(table) if tasks is None else list(tasks)
    bad = [t for t in names if t not in table]
    if bad:
        raise DataError(f"Unknown task(s) {bad} for benchmark {benchmark!r}; allowed: {', '.join(table)}.")
    if benchmark != "mair":
        from .offline import build_offline_benchmark

        # Returns at once when a complete build (tasks.json written last) is already there.
        root = build_offline_benchmark(root, smoke=benchmark == "offline-smoke", progress=progress)
    return [load_mair_task(t, root) for t in tqdm(names, desc=f"load {benchmark}", disable=not progress)]
