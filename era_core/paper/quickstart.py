"""The quick start's side-by-side: one query's top documents three ways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from era_core import paths
from era_core.data import load_tasks
from era_core.errors import EraError
from era_core.vectors import embed_corpus, model_instructions
from era_core.splits import test_qids
from era_core.setup import Setup, get_encoder
from era_core.retrieval import topk_search


def quickstart_compare(setup: Setup, *, task: str, query: str, run: str, k: int = 10) -> tuple[Any, str]:
    """Top-``k`` documents of one query three ways: small→small, ERA large→small, large→large.

    With ``query=""`` the first test query of the task is used, and relevant documents are marked.
    ``run`` is a run folder with a trained ERA adapter ('' = the largest-ratio one of ``results/``).
    Returns a DataFrame (one row per rank) and a one-line description.
    """
    import pandas as pd

    from era_core import api
    from era_core.adapter import AdaptedQueryEncoder
    from era_core.data import list_tasks
    from era_core.paper.release import largest_ratio_run

    task = task or next(iter(list_tasks(setup.benchmark)))
    unit = load_tasks(setup.benchmark, [task], progress=False)[0].units()[0]
    qrels: dict[str, int] = {}
    if query:
        instruction = unit.default_instruction
    else:
        qid = test_qids([unit], 42)[unit.name][0]
        query, instruction, qrels = unit.queries[qid], unit.instructions.get(qid, ""), unit.qrels[qid]
    folder = Path(run) if run else largest_ratio_run(paths.RESULTS)
    folder = folder if folder.is_absolute() else paths.ROOT / folder
    if not (folder / "adapter.safetensors").exists():
        raise EraError(f"no trained adapter in {folder}: run 03_training first (`make paper`), or set run_dir to a "
                       "run folder under results/runs/")
    trained = api.load(folder)
    if (trained.large_model, trained.small_model) != (setup.large_model, setup.small_model):
        raise EraError(f"the adapter in {folder} maps {trained.large_model} into {trained.small_model}, but this "
                       f"notebook's encoders are {setup.large_model} and {setup.small_model}: run it with the "
                       "profile that trained the adapter (ERA_PROFILE), or set run_dir to one of this pair's runs")
    small, large = get_encoder(setup.small_model, setup), get_encoder(setup.large_model, setup)
    era = AdaptedQueryEncoder(large, trained.adapter, doc_model=setup.small_model, instructions=trained.instructions)
    doc_ids, texts = list(unit.corpus), list(unit.corpus.values())

    def zero_shot(encoder: Any) -> Any:  # each encoder instructed as the adapter's setting says
        return encoder.encode(encoder.format_queries([query], model_instructions(encoder, trained.instructions,
                                                                                  [instruction])), progress=False)

    views = {
        f"{setup.small_model} → {setup.small_model}": (zero_shot(small),
                                                     embed_corpus(setup.small_model, unit, setup)),
        f"ERA {setup.large_model} → {setup.small_model}": (era.encode([query], [instruction], progress=False),
                                                          embed_corpus(setup.small_model, unit, setup)),
        f"{setup.large_model} → {setup.large_model}": (zero_shot(large),
                                                     embed_corpus(setup.large_model, unit, setup)),
    }
    columns = {}
    for name, (q, d) in views.items():
        _, idx = topk_search(q, d, k=k, doc_ids=doc_ids)
        columns[name] = [("✓ " if qrels.get(doc_ids[i], 0) > 0 else "") + texts[i][:120].replace("\n", " ") for i in idx[0]]
    frame = pd.DataFrame(columns, index=pd.RangeIndex(1, len(next(iter(columns.values()))) + 1, name="rank"))
    info = f"task {unit.name} ({unit.domain}); query: {query!r}; instruction: {instruction!r}"
    return frame, info
