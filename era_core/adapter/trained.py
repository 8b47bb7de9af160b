"""``TrainedAdapter``: a trained adapter with what using, scoring or exporting it needs, and reading one from a folder.

A trained adapter's folder (``save``) holds ``adapter.safetensors`` (the weights; metadata: method, the two
encoders and the query side) and ``era_meta.json`` (its training record). A run folder of the paper's
protocols or of ``era train`` adds ``summary.json`` (its scores), from which the model-card facts come.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from era_core.errors import ParamsError
from era_core.io import read_json, write_json

WEIGHTS_FILE = "adapter.safetensors"
META_FILE = "era_meta.json"
SUMMARY_FILE = "summary.json"


@dataclass
class TrainedAdapter:
    """An adapter and its context: method, the pair's large (query) and small (index) encoders, truncation,
    instruction setting, its training record (``meta``: ``era_meta.json``) and model-card facts (``card``)."""

    adapter: Any
    large_model: str
    small_model: str
    method: str = "era"
    max_length: int = 128
    instructions: str = "native"
    meta: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    run: Path | None = None

    @property
    def query_side(self) -> str:
        """Which query vectors the adapter reads: ``large``, ``small`` or ``fused``."""
        from era_core.methods import get_method

        return get_method(self.method).query_side

    @property
    def query_model(self) -> str:
        """The encoder whose query vectors the adapter maps (the small one for a same-model adapter)."""
        return self.small_model if self.query_side == "small" else self.large_model

    @property
    def doc_model(self) -> str:
        """The index encoder: documents are never adapted."""
        return self.small_model

    @property
    def splits(self) -> dict[str, dict[str, list[str]]]:
        """The query split it was trained under, ``{task: {"train", "val", "test"}}`` (empty if unrecorded)."""
        label = self.meta.get("label_result") or {}
        out = {}
        for kind, key in (("train", "train_query_ids_per_task"), ("val", "val_query_ids_per_task"),
                          ("test", "eval_query_ids_per_task")):
            for task, qids in (label.get(key) or self.meta.get(key) or {}).items():
                out.setdefault(task, {})[kind] = list(qids)
        return out


def save_trained(trained: TrainedAdapter, folder: Path | str) -> Path:
    """Write ``adapter.safetensors`` and ``era_meta.json`` into ``folder``; returns the weights' path."""
    from era_core.adapter.files import save_adapter

    folder = Path(folder)
    weights = save_adapter(trained.adapter, folder / WEIGHTS_FILE,
                           {"method": trained.method, "large_model": trained.large_model,
                            "small_model": trained.small_model, "query_side": trained.query_side})
    write_json(folder / META_FILE, trained.meta)
    return weights


def run_card(folder: Path) -> dict[str, Any]:
    """Model-card facts of a run folder: encoders, dims, instruction template, data, ratio, seed, test metrics."""
    from era_core.encoders import REGISTRY

    meta, summary = read_json(folder / META_FILE), read_json(folder / SUMMARY_FILE)
    enc = meta["config"]["encoders"]
    large, small = meta["config"]["params"]["large_model"], meta["config"]["params"]["small_model"]
    return {
        "method": summary["method"],
        "query_model": large, "query_model_hub_id": REGISTRY[large].hub_id, "query_dim": REGISTRY[large].dim,
        "doc_model": small, "doc_model_hub_id": REGISTRY[small].hub_id, "doc_dim": REGISTRY[small].dim,
        # The model's own query prompt (EmbeddingGemma's) stands in front of the instruction template; a model
        # that takes no instruction in the run's setting sees the bare query.
        "instruction_template": (enc["large"].get("query_prefix") or "") + (
            (enc["large"].get("query_template") or "{query}")
            if summary["instructions"] == "forced" or enc["large"].get("instructed") else "{query}"),
        "benchmark": meta["config"]["params"]["benchmark"], "train_units": summary["train_units"],
        "train_ratio": summary["train_ratio"], "seed": summary["seed"], "instructions": summary["instructions"],
        "test_metrics_overall": summary["scopes"]["test"]["overall"],
        "test_metrics_per_domain": summary["scopes"]["test"]["per_domain"],
        "config_key": summary["config_key"],
        # era train's own-data runs: the training size and the validation comparison against no adapter
        **{k: summary[k] for k in ("n_train_queries", "validation") if k in summary},
    }


def load_trained(folder: Path | str, *, large_model: str | None = None, small_model: str | None = None,
                 max_length: int | None = None) -> TrainedAdapter:
    """A ``TrainedAdapter`` from a run folder (``adapter.safetensors`` + ``era_meta.json`` [+ ``summary.json``])."""
    from era_core.adapter.files import load_any_adapter, read_adapter_metadata

    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ParamsError(f"{folder} holds no {WEIGHTS_FILE}; pass a run folder (results/runs/<protocol>/<run>, or "
                          "the --out folder of `era train`)")
    adapter = load_any_adapter(weights)
    info = read_adapter_metadata(weights)
    meta = read_json(folder / META_FILE) if (folder / META_FILE).is_file() else {}
    params = (meta.get("config") or {}).get("params") or {}
    large = large_model or params.get("large_model", info.get("large_model"))
    small = small_model or params.get("small_model", info.get("small_model"))
    if not large or not small:
        raise ParamsError(f"{folder}'s adapter does not record its encoders; pass large_model= and small_model=")
    summary_ok = (folder / SUMMARY_FILE).is_file() and "config" in meta
    card = run_card(folder) if summary_ok else {}
    if card:
        card["query_side"] = info.get("query_side", "large")
    return TrainedAdapter(adapter, large, small,
                          method=info.get("method", meta.get("method", "era")),
                          max_length=max_length or int(params.get("max_length", 128)),
                          instructions=(meta.get("config") or {}).get("instructions", "native"), meta=meta,
                          card=card, run=folder)
