"""The method in a few calls: ``embed``, ``phase1``, ``fit``, ``evaluate``, ``save``, ``load`` and ``export``.

The ``era`` command, the paper's protocols and the notebooks all call these. A session on your own data::

    setup = Setup("my_index/", ("my_index",), large_model="minilm-l6", small_model="minilm-l3-onnx")
    units = load_units(setup)
    embeddings = embed(setup, units)                      # through the embedding cache
    start, _ = phase1(setup, units)                       # identical-text alignment (cached)
    trained = fit(setup, embeddings, "era", phase1=start, label=LabelConfig(train_ratio=0.4))
    scores = evaluate(trained, embeddings)                # per query; ``summary(...)`` aggregates
    save(trained, "out/")                                 # adapter.safetensors + era_meta.json
    export(trained, "my-era-model/")                      # a sentence-transformers Router folder

Errors keep their types (``era_core.errors``): a bad value raises ``ParamsError``, bad data ``DataError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from era_core.adapter.trained import TrainedAdapter, load_trained, save_trained
from era_core.data import Unit, load_tasks
from era_core.encoders import load_encoder
from era_core.vectors import task_embeddings
from era_core.errors import ParamsError
from era_core.instructions import check_instruction_setting
from era_core.methods import get_method
from era_core.metrics import evaluate as metrics_of, headline_per_query, summarise
from era_core.identical_texts import train_alignment_cached
from era_core.retrieval import run_from_topk, topk_search
from era_core.setup import Setup, load_units
from era_core.splits import split_units
from era_core.train import AlignmentConfig, LabelConfig
from era_core.validation_choice import AUTO, Comparison, candidates, comparison

__all__ = ["AUTO", "AlignmentConfig", "Comparison", "LabelConfig", "Scores", "Setup", "TrainedAdapter", "apply_and_score",
           "compare", "embed", "evaluate", "export", "fit", "load", "load_encoder", "load_tasks", "load_units", "phase1",
           "save", "score_unit"]


def embed(setup: Setup, units: Sequence[Unit], instructions: str = "native") -> list:
    """``TaskEmbeddings`` of every unit (large and small query vectors, small corpus), read through the cache."""
    check_instruction_setting(instructions)
    return task_embeddings(list(units), setup, instructions)


def phase1(setup: Setup, units: Sequence[Unit], config: AlignmentConfig | None = None) -> tuple[Any, dict[str, Any]]:
    """Phase 1 (identical-text alignment) on the units' documents: ``(adapter, its record)``, cached by content."""
    return train_alignment_cached(list(units), setup, config or AlignmentConfig())


def fit(setup: Setup, embeddings: Sequence[Any], method: str = AUTO, *, label: LabelConfig | None = None,
        align: AlignmentConfig | None = None,
        phase1: Any = None, splits: Mapping[str, Mapping[str, list[str]]] | None = None,
        instructions: str = "native") -> TrainedAdapter:
    """Train ``method`` (``era_core.methods``, or ``auto``) on the embeddings' train split.

    ``auto`` (the default) trains every candidate of ``validation_choice`` and keeps the one with the best
    validation nDCG@10, which may be no adapter at all; ``meta["validation"]`` holds the comparison. ``phase1``
    is the start of the methods that have one (``phase1(...)``'s adapter). ``splits`` (``splits.split_units``) is
    the query split the caller also scores with; without it each task is split under ``label``.
    """
    if method == AUTO:
        trained, comp = compare(setup, embeddings, AUTO, label=label, align=align, phase1=phase1, splits=splits,
                                instructions=instructions)
        return trained[comp.chosen]
    m = get_method(method)
    if m.phase1 and phase1 is None:
        raise ParamsError(f"method {method!r} starts from Phase 1: pass phase1= (the adapter api.phase1 returns)")
    if m.mode == "identity":
        return _no_adapter(setup, embeddings, method, instructions)
    from era_core.train import train_era

    result = train_era(list(embeddings), m.mode, align_cfg=align, label_cfg=m.configure(label or LabelConfig()),
                       alignment_adapter=phase1 if m.phase1 else None,
                       splits=None if splits is None else {k: dict(v) for k, v in splits.items()},
                       progress=setup.progress)
    return TrainedAdapter(result.adapter, setup.large_model, setup.small_model, method=method,
                          max_length=setup.max_length, instructions=instructions,
                          meta={**result.meta, "method": method})


def _no_adapter(setup: Setup, embeddings: Sequence[Any], method: str, instructions: str) -> TrainedAdapter:
    """The identity on the index model's own query vectors: retrieval exactly as the index gives it today."""
    from era_core.adapter import LinearAdapter

    dim = int(list(embeddings)[0].docs_small.shape[1])
    return TrainedAdapter(LinearAdapter.identity(dim), setup.large_model, setup.small_model, method=method,
                          max_length=setup.max_length, instructions=instructions, meta={"method": method})


def compare(setup: Setup, embeddings: Sequence[Any], requested: str = AUTO, *, label: LabelConfig | None = None,
            align: AlignmentConfig | None = None, phase1: Any = None,
            splits: Mapping[str, Mapping[str, list[str]]] | None = None,
            instructions: str = "native") -> tuple[dict[str, TrainedAdapter], Comparison]:
    """Train ``requested`` (every candidate for ``auto``) and no adapter on one query split, score each on its
    validation queries and apply the ``auto`` rule: ``({method: TrainedAdapter}, Comparison)``."""
    label = label or LabelConfig()
    embs = list(embeddings)
    if splits is None:
        splits = split_units(embs, label.train_ratio, label.val_ratio, label.eval_ratio, label.split_seed)
    val = {name: list(s["val"]) for name, s in splits.items()}
    if not any(val.values()):
        raise ParamsError("no validation queries: the comparison needs some; raise val_ratio or label more queries")
    trained, scores = {}, {}
    for method in candidates(requested):
        trained[method] = fit(setup, embs, method, label=label, align=align, phase1=phase1, splits=splits,
                              instructions=instructions)
        scores[method] = evaluate(trained[method], embs).summary(val)["overall"]["ndcg@10"]
    comp = comparison(scores, requested, sum(len(v) for v in val.values()))
    for t in trained.values():
        t.meta["validation"] = comp.as_dict()
    return trained, comp


def score_unit(queries: np.ndarray, docs: np.ndarray, qids: list[str], doc_ids: list[str],
               qrels: dict[str, dict[str, int]], k: int = 100,
               run_out: dict[str, dict[str, float]] | None = None) -> dict[str, dict[str, float]]:
    """Exact top-k search then per-query metrics for one unit (all its labelled queries).

    ``run_out``, when given, receives the top-k run ``{qid: {doc_id: score}}`` (for TREC run files).
    """
    if len(qids) == 0:
        return {}
    scores, idx = topk_search(queries, docs, k=k, doc_ids=doc_ids)
    run = run_from_topk(qids, doc_ids, scores, idx)
    if run_out is not None:
        run_out.update(run)
    return metrics_of({q: qrels[q] for q in qids}, run)


def apply_and_score(adapter: Any, embs: list, *, query_side: str, unit_domain: dict[str, str] | None = None,
                    runs: dict[str, dict] | None = None) -> dict[str, dict]:
    """Per-query metrics of every unit with ``adapter`` (None: none) applied to its ``query_side`` vectors.

    ``runs``, when given, receives each unit's top-100 run (``{unit: {qid: {doc_id: score}}}``).
    """
    from era_core.adapter import apply_adapter
    from era_core.train import query_vectors

    per_query = {}
    for te in embs:
        q = query_vectors(te, query_side)
        q = apply_adapter(adapter, q) if adapter is not None else q
        per_query[te.name] = score_unit(q, te.docs_small, te.qids, te.doc_ids, te.qrels,
                                        run_out=None if runs is None else runs.setdefault(te.name, {}))
    return per_query


@dataclass
class Scores:
    """What ``evaluate`` measured: per-query metrics and top-100 runs of every unit, and the units' domains."""

    per_query: dict[str, dict[str, dict[str, float]]]
    runs: dict[str, dict[str, dict[str, float]]]
    unit_domain: dict[str, str] = field(default_factory=dict)

    def summary(self, keep: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
        """Per-task, per-domain and overall means, over the ``keep`` queries of each unit (None: all)."""
        return summarise(self.per_query, self.unit_domain, None if keep is None else dict(keep))

    def headline(self, keep: Mapping[str, list[str]]) -> dict[str, dict[str, float]]:
        """``{unit: {qid: nDCG@10}}`` of the ``keep`` queries: what paired tests over queries need."""
        return headline_per_query(self.per_query, dict(keep))


def evaluate(trained: TrainedAdapter | None, embeddings: Sequence[Any], *, query_side: str = "small") -> Scores:
    """Score ``trained`` (None: the index model's own queries, zero-shot) on every unit's labelled queries."""
    embs = list(embeddings)
    runs: dict[str, dict] = {}
    adapter, side = (None, query_side) if trained is None else (trained.adapter, trained.query_side)
    per_query = apply_and_score(adapter, embs, query_side=side, runs=runs)
    return Scores(per_query, runs, {te.name: te.domain for te in embs})


def save(trained: TrainedAdapter, folder: Path | str) -> Path:
    """Write ``adapter.safetensors`` and ``era_meta.json`` into ``folder``; returns the weights' path."""
    return save_trained(trained, folder)


def load(folder: Path | str, **encoders: Any) -> TrainedAdapter:
    """The ``TrainedAdapter`` saved in a run folder (``large_model=``/``small_model=`` override its encoders)."""
    return load_trained(folder, **encoders)


def export(trained: TrainedAdapter | Path | str, out: Path | str, **kwargs: Any) -> Path:
    """A sentence-transformers ``Router`` folder (query encoder + adapter | index encoder) that loads anywhere."""
    from era_core.adapter.router import export_sentence_transformers

    return export_sentence_transformers(trained, out, **kwargs)
