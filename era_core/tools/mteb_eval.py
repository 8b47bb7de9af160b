"""Evaluate an exported model with MTEB on our own tasks, built in memory (MTEB never touches the hub).

Each ``era_core.data.Task`` unit becomes an ``AbsTaskRetrieval`` whose ``load_data`` fills
``dataset`` from the unit itself. Queries carry the instruction through the query model's
template where the instruction setting gives the model one (as our own evaluation formats them:
``era_core.instructions``); the model's own query prefix is left to its ``query`` prompt, which
MTEB's sentence-transformers wrapper applies through ``encode_query``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from era_core.data import Task
from era_core.errors import ParamsError


def mteb_task(unit: Task, *, template: str | None = None, instructed: bool = True, qids: list[str] | None = None) -> Any:
    """An MTEB retrieval task (split ``test``) holding ``unit``'s labelled queries (or ``qids``), qrels and corpus;
    ``instructed``: whether the query texts carry their instructions through ``template``."""
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    from era_core.encoders import INSTRUCT_TEMPLATE, format_queries

    chosen = list(unit.qrels) if qids is None else list(qids)
    unknown = [q for q in chosen if q not in unit.qrels]
    if unknown:
        raise ParamsError(f"qids {unknown[:3]} have no labels in {unit.name}; pass labelled qids only")
    instr = [unit.instructions.get(q, "") for q in chosen] if instructed else None
    texts = format_queries([unit.queries[q] for q in chosen], instr, template=template or INSTRUCT_TEMPLATE)
    split = RetrievalSplitData(
        queries=Dataset.from_list([{"id": q, "text": t} for q, t in zip(chosen, texts)]),
        corpus=Dataset.from_list([{"id": d, "text": t, "title": ""} for d, t in unit.corpus.items()]),
        relevant_docs={q: dict(unit.qrels[q]) for q in chosen},
        top_ranked=None,
    )
    # A name no exported prompt carries, so the wrapper falls back to the model's query/document prompts.
    name = "ERA-" + unit.name.replace("/", "-")

    class _Unit(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name=name, type="Retrieval", main_score="ndcg_at_10", category="t2t", modalities=["text"],
            description=f"ERA unit {unit.name} ({unit.domain}), built in memory", reference="https://example.invalid/era",
            dataset={"path": "era-local/" + name, "revision": "local"}, eval_splits=["test"], eval_langs=["eng-Latn"],
            date=("2024-01-01", "2024-01-01"), dialect=[], domains=[], task_subtypes=[], license="not specified",
            annotations_creators="derived", sample_creation="found", bibtex_citation="",
        )

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return _Unit()


def mteb_ndcg10(model: Any, units: list[Task], *, template: str | None = None, instructed: bool | None = None,
                qids: dict[str, list[str]] | None = None, progress: bool = False) -> dict[str, float]:
    """MTEB's nDCG@10 (``ndcg_at_10`` of split ``test``) of a sentence-transformers model (object or folder) per unit.

    ``instructed`` (None: read from an exported folder's ``era`` config, else True) says whether queries carry
    their instructions; an export records its instruction setting and template there.
    """
    import mteb

    if isinstance(model, (str, Path)):
        import json

        from sentence_transformers import SentenceTransformer

        era = json.loads((Path(model) / "config_sentence_transformers.json").read_text()).get("era", {})
        if instructed is None and "instructions" in era:
            instructed = era.get("instruction_template") is not None
            template = template or era.get("instruction_template")
        model = SentenceTransformer(str(model), local_files_only=True, device="cpu")
    instructed = True if instructed is None else instructed
    out = {}
    for unit in units:
        task = mteb_task(unit, template=template, instructed=instructed,
                         qids=None if qids is None else qids[unit.name])
        result = mteb.evaluate(model, task, cache=None, show_progress_bar=progress,
                               encode_kwargs={"batch_size": 32})
        scores = result.task_results[0].scores["test"][0]
        out[unit.name] = float(scores["ndcg_at_10"])
    return out
