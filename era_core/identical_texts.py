"""Phase 1 on a benchmark's texts: the per-task document sample, its vector pairs, the cached alignment adapter,
and how well a Phase 1 map fits (on held-out pairs and on queries)."""

from __future__ import annotations

import warnings
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from era_core import paths
from era_core.cache import CacheCorruptionWarning, embed_texts
from era_core.cache.keys import code_version, config_hash
from era_core.data import Unit
from era_core.vectors import embed_corpus
from era_core.io import read_json, sha256_file, write_json
from era_core.setup import Setup, encoder_identity, get_encoder, unit_fingerprints

if TYPE_CHECKING:
    from era_core.train import AlignmentConfig


def per_task_sample(units: list[Unit], samples_per_task: int, seed: int) -> list[tuple[Unit, list[int]]]:
    """Phase 1's document sample, drawn per *task* as in the reference: a multi-split task's sub-split
    corpora are pooled (in unit order) and sampled once; returns ``(unit, rows of that unit's corpus)``
    pairs, rows in sample order, units without sampled rows left out. Single-split tasks get exactly
    ``alignment_sample``'s rows."""
    from era_core.train import alignment_sample

    by_task: dict[str, list[Unit]] = {}
    for u in units:
        by_task.setdefault(u.task_name, []).append(u)
    samples = alignment_sample([sum(len(u.corpus) for u in us) for us in by_task.values()], samples_per_task, seed=seed)
    out: list[tuple[Unit, list[int]]] = []
    for members, rows in zip(by_task.values(), samples):
        start = 0
        for u in members:
            stop = start + len(u.corpus)
            mine = [r - start for r in rows if start <= r < stop]
            if mine:
                out.append((u, mine))
            start = stop
    return out


def alignment_pairs(units: list[Unit], setup: Setup, samples_per_task: int, eval_ratio: float, seed: int,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Encode only the sampled documents with the large model (spec §9.11) and pair them with small-model vectors."""
    from era_core.train import alignment_holdout

    xs, ys = [], []
    large = get_encoder(setup.large_model, setup)
    for unit, rows in tqdm(per_task_sample(units, samples_per_task, seed), desc="alignment sample",
                           disable=not setup.progress):
        # When the zero-shot run already encoded this corpus with the large model, index it instead of
        # encoding the sample again; otherwise only the sample goes through the large model.
        full = embed_texts(large, list(unit.corpus.values()), role="document", lookup_only=True)
        xs.append(full[rows] if full is not None else embed_corpus(setup.large_model, unit, setup, rows=rows))
        ys.append(embed_corpus(setup.small_model, unit, setup)[rows])
    x, y = np.concatenate(xs), np.concatenate(ys)
    tr, ev = alignment_holdout(len(x), eval_ratio, seed=seed)
    return x[tr], y[tr], x[ev], y[ev]


def mapped_cosine(adapter: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Mean cosine between ``adapter(x)`` and ``y``, row by row."""
    from era_core.adapter import apply_adapter

    mapped = apply_adapter(adapter, x)
    mapped = mapped / np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12)
    y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.sum(mapped * y, axis=1)))


def query_side_cosine(adapter: Any, embs: list) -> float:
    """Mean cosine, over every labelled query of ``embs``, between Phase 1's map of the large query vector
    and the small model's own query vector (same instruction setting).

    Phase 1 is fitted on documents; this measures it where retrieval applies it, on queries. No label
    is read.
    """
    return mapped_cosine(adapter, np.concatenate([te.q_large for te in embs]),
                         np.concatenate([te.q_small for te in embs]))


def train_alignment_cached(units: list[Unit], setup: Setup, cfg: "AlignmentConfig") -> tuple[Any, dict[str, Any]]:
    """Phase 1, reused across a train-ratio sweep through the adapter cache keyed by its full configuration (§3.3)."""
    from era_core.adapter import load_adapter, save_adapter
    from era_core.train import train_alignment

    key_obj = {"phase": "alignment", "config": asdict(cfg), "units": unit_fingerprints(units),
               "benchmark": setup.benchmark, "encoders": encoder_identity(setup), "code": code_version()}
    key_obj["config"].pop("device", None)
    key = config_hash(key_obj)
    folder = paths.ADAPTER_CACHE / "alignment" / key
    weights, meta_path = folder / "adapter.safetensors", folder / "meta.json"
    if weights.exists() and meta_path.exists():
        meta = read_json(meta_path)
        if meta.get("key") == key:
            # Like embeddings, a cached Phase 1 adapter is served only when its bytes match the checksum
            # recorded when it was written; a damaged file is retrained, not trusted.
            if meta.get("adapter_sha256") == sha256_file(weights):
                return load_adapter(weights), meta
            warnings.warn(f"Phase 1 adapter {weights} does not match its recorded SHA-256; retraining it",
                          CacheCorruptionWarning, stacklevel=2)
    x_tr, y_tr, x_ev, y_ev = alignment_pairs(units, setup, cfg.samples_per_task, cfg.eval_ratio, cfg.seed)
    result = train_alignment(x_tr, y_tr, x_ev, y_ev, cfg, progress=setup.progress)
    meta = {"key": key, "config": key_obj, "history": result.history, "best_epoch": result.best_epoch,
            "best_eval_loss": result.best_eval_loss, "stopped_early": result.stopped_early,
            "eval_cosine": result.eval_cosine, "num_train_texts": int(len(x_tr)), "num_eval_texts": int(len(x_ev)),
            "in_dim": int(x_tr.shape[1]), "out_dim": int(y_tr.shape[1])}
    save_adapter(result.adapter, weights, {"key": key})
    meta["adapter_sha256"] = sha256_file(weights)
    write_json(meta_path, meta)  # written last: its presence marks a complete entry
    return result.adapter, meta
