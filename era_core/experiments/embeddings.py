"""Cached embeddings of units: query inputs, query and corpus vectors, and the per-notebook pool."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from era_core.cache import embed_texts
from era_core.data import Unit
from era_core.experiments.setup import Setup, get_encoder, unit_fingerprints


def query_inputs(unit: Unit, use_instructions: bool) -> tuple[list[str], list[str], list[str] | None]:
    """Labelled query ids, their texts and (if on) their instructions, in dataset order."""
    qids = unit.labelled_qids()
    texts = [unit.queries[q] for q in qids]
    instructions = [unit.instructions.get(q, "") for q in qids] if use_instructions else None
    return qids, texts, instructions


def embed_queries(key: str, unit: Unit, setup: Setup, use_instructions: bool) -> np.ndarray:
    """Labelled-query vectors of one unit for encoder ``key`` (cached)."""
    _, texts, instructions = query_inputs(unit, use_instructions)
    return embed_texts(
        get_encoder(key, setup), texts, role="query", instructions=instructions,
        batch_size=setup.batch_size, progress=setup.progress,
    )


def embed_corpus(key: str, unit: Unit, setup: Setup, rows: list[int] | None = None) -> np.ndarray:
    """Corpus vectors of one unit for encoder ``key`` (cached); ``rows`` selects a subset of documents."""
    docs = list(unit.corpus.values())
    if rows is not None:
        docs = [docs[i] for i in rows]
    return embed_texts(get_encoder(key, setup), docs, role="document", batch_size=setup.batch_size, progress=setup.progress)


def task_embeddings(units: list[Unit], setup: Setup, use_instructions: bool, *, need_small_queries: bool = True) -> list:
    """Build ``train.TaskEmbeddings`` for every unit: large queries, small queries and the small corpus."""
    from era_core.train import TaskEmbeddings

    out = []
    for unit in tqdm(units, desc="embeddings", disable=not setup.progress):
        qids, _, _ = query_inputs(unit, use_instructions)
        out.append(
            TaskEmbeddings(
                name=unit.name,
                domain=unit.domain,
                qids=qids,
                qrels={q: unit.qrels[q] for q in qids},
                doc_ids=list(unit.corpus),
                q_large=embed_queries(setup.large_model, unit, setup, use_instructions),
                q_small=embed_queries(setup.small_model, unit, setup, use_instructions) if need_small_queries else None,
                docs_small=embed_corpus(setup.small_model, unit, setup),
            )
        )
    return out


class EmbeddingPool:
    """Memoises ``TaskEmbeddings`` per instruction setting within one notebook run."""

    def __init__(self, setup: Setup, units: list[Unit]):
        self.setup, self.units = setup, units
        self._by_setting: dict[bool, list] = {}
        self._fingerprints: dict[str, str] | None = None

    def fingerprints(self) -> dict[str, str]:
        """Content hash of every unit (computed once per pool: units are not modified after loading)."""
        if self._fingerprints is None:
            self._fingerprints = unit_fingerprints(self.units)
        return self._fingerprints

    def get(self, use_instructions: bool) -> list:
        """Embeddings of every unit for one instruction setting (cache-backed)."""
        if use_instructions not in self._by_setting:
            self._by_setting[use_instructions] = task_embeddings(self.units, self.setup, use_instructions)
        return self._by_setting[use_instructions]
