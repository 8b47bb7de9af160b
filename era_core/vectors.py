"""Cached embeddings of units: query inputs, query and corpus vectors, and the ``TaskEmbeddings`` training reads."""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from era_core.cache import embed_texts
from era_core.data import Unit
from era_core.instructions import query_instructions
from era_core.setup import Setup, get_encoder


def query_inputs(unit: Unit) -> tuple[list[str], list[str], list[str]]:
    """Labelled query ids, their texts and their instructions ('' where none), in dataset order."""
    qids = unit.labelled_qids()
    return qids, [unit.queries[q] for q in qids], [unit.instructions.get(q, "") for q in qids]


def model_instructions(encoder: Any, setting: str, instructions: list[str]) -> list[str] | None:
    """What ``encoder`` receives of ``instructions`` under the instruction ``setting`` (None: the raw query)."""
    return query_instructions(encoder.spec, setting, instructions)


def embed_queries(key: str, unit: Unit, setup: Setup, instructions: str) -> np.ndarray:
    """Labelled-query vectors of one unit for encoder ``key`` under the instruction setting ``instructions`` (cached)."""
    _, texts, inst = query_inputs(unit)
    encoder = get_encoder(key, setup)
    return embed_texts(
        encoder, texts, role="query", instructions=model_instructions(encoder, instructions, inst),
        batch_size=setup.batch_size, progress=setup.progress,
    )


def embed_raw_queries(key: str, unit: Unit, setup: Setup) -> np.ndarray:
    """Labelled-query vectors of the bare query texts, never instructed (cached): identical texts for Phase 1."""
    _, texts, _ = query_inputs(unit)
    return embed_texts(get_encoder(key, setup), texts, role="query", instructions=None,
                       batch_size=setup.batch_size, progress=setup.progress)


def embed_corpus(key: str, unit: Unit, setup: Setup, rows: list[int] | None = None) -> np.ndarray:
    """Corpus vectors of one unit for encoder ``key`` (cached); ``rows`` selects a subset of documents."""
    docs = list(unit.corpus.values())
    if rows is not None:
        docs = [docs[i] for i in rows]
    return embed_texts(get_encoder(key, setup), docs, role="document", batch_size=setup.batch_size, progress=setup.progress)


def task_embeddings(units: list[Unit], setup: Setup, instructions: str, *, need_small_queries: bool = True) -> list:
    """Build ``train.TaskEmbeddings`` for every unit: large queries, small queries and the small corpus."""
    from era_core.train import TaskEmbeddings

    out = []
    for unit in tqdm(units, desc="embeddings", disable=not setup.progress):
        qids, _, _ = query_inputs(unit)
        out.append(
            TaskEmbeddings(
                name=unit.name,
                domain=unit.domain,
                qids=qids,
                qrels={q: unit.qrels[q] for q in qids},
                doc_ids=list(unit.corpus),
                q_large=embed_queries(setup.large_model, unit, setup, instructions),
                q_small=embed_queries(setup.small_model, unit, setup, instructions) if need_small_queries else None,
                docs_small=embed_corpus(setup.small_model, unit, setup),
                query_split={q: unit.query_split[q] for q in qids if q in unit.query_split},
            )
        )
    return out
