"""The quick start's side-by-side: one query's top documents three ways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from era_core import paths
from era_core.data import load_tasks
from era_core.errors import EraError
from era_core.experiments.embeddings import embed_corpus
from era_core.experiments.scoring import test_qids
from era_core.experiments.setup import Setup, get_encoder
from era_core.retrieval import topk_search


def quickstart_compare(setup: Setup, *, task: str, query: str, adapter_dir: str, k: int = 10) -> tuple[Any, str]:
    """Top-``k`` documents of one query three ways: small→small, ERA large→small, large→large.

    With ``query=""`` the first test query of the task is used, and relevant documents are marked.
    Returns a DataFrame (one row per rank) and a one-line description.
    """
    import pandas as pd

    from era_core.adapter import AdaptedQueryEncoder
    from era_core.data import list_tasks

    task = task or next(iter(list_tasks(setup.benchmark)))
    unit = load_tasks(setup.benchmark, [task], progress=False)[0].units()[0]
    qrels: dict[str, int] = {}
    if query:
        instruction = unit.default_instruction
    else:
        qid = test_qids([unit], 42)[unit.name][0]
        query, instruction, qrels = unit.queries[qid], unit.instructions.get(qid, ""), unit.qrels[qid]
    folder = Path(adapter_dir) if adapter_dir else paths.RESULTS / "adapters" / "era"
    folder = folder if folder.is_absolute() else paths.ROOT / folder
    if not folder.exists():
        raise EraError(f"no adapter at {folder}; run `make paper` (03_training exports one) or set adapter_dir")
    small, large = get_encoder(setup.small_model, setup), get_encoder(setup.large_model, setup)
    era = AdaptedQueryEncoder.from_pretrained(folder, query_encoder=large)
    doc_ids, texts = list(unit.corpus), list(unit.corpus.values())
    views = {
        f"{setup.small_model} → {setup.small_model}": (small.encode(small.format_queries([query], [instruction]), progress=False),
                                                     embed_corpus(setup.small_model, unit, setup)),
        f"ERA {setup.large_model} → {setup.small_model}": (era.encode([query], [instruction], progress=False),
                                                          embed_corpus(setup.small_model, unit, setup)),
        f"{setup.large_model} → {setup.large_model}": (large.encode(large.format_queries([query], [instruction]), progress=False),
                                                     embed_corpus(setup.large_model, unit, setup)),
    }
    columns = {}
    for name, (q, d) in views.items():
        _, idx = topk_search(q, d, k=k, doc_ids=doc_ids)
        columns[name] = [("✓ " if qrels.get(doc_ids[i], 0) > 0 else "") + texts[i][:120].replace("\n", " ") for i in idx[0]]
    frame = pd.DataFrame(columns, index=pd.RangeIndex(1, len(next(iter(columns.values()))) + 1, name="rank"))
    info = f"task {unit.name} ({unit.domain}); query: {query!r}; instruction: {instruction!r}"
    return frame, info
