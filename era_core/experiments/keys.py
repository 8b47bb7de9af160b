"""Content keys of runs and Phase 1 adapters: configurations from parameters, code and encoder identity."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from era_core.experiments.setup import Setup, get_encoder
from era_core.io import dumps_json

if TYPE_CHECKING:  # train (and torch) load only when a configuration is built
    from era_core.train import AlignmentConfig, LabelConfig


def config_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-serialisable configuration."""
    return hashlib.sha256(dumps_json(obj).encode()).hexdigest()[:16]


def align_config(p: dict[str, Any], seed: int, device: str) -> "AlignmentConfig":
    """Phase 1 configuration from notebook parameters."""
    from era_core.train import AlignmentConfig

    return AlignmentConfig(
        samples_per_task=p["align_samples_per_task"], eval_ratio=p["align_eval_ratio"], loss=p["align_loss"],
        lr=p["align_lr"], weight_decay=p["align_weight_decay"], batch_size=p["align_batch_size"],
        epochs=p["align_epochs"], seed=seed, init=p["align_init"], device=device,
    )


def label_config(p: dict[str, Any], train_ratio: float, seed: int, device: str) -> "LabelConfig":
    """Phase 2 configuration from notebook parameters."""
    from era_core.train import LabelConfig

    return LabelConfig(
        train_ratio=train_ratio, val_ratio=p["val_ratio"], eval_ratio=p["eval_ratio"],
        num_negatives=p["num_negatives"], strategy=p["negative_strategy"], top_k=p["hard_negative_top_k"],
        margin=p["hard_negative_margin"], lr=p["label_lr"], weight_decay=p["label_weight_decay"],
        batch_size=p["label_batch_size"], epochs=p["label_epochs"], warmup_ratio=p["warmup_ratio"],
        schedule=p["label_schedule"], temperature=p["temperature"], patience=p["label_patience"],
        in_batch_negatives=p["in_batch_negatives"], seed=seed, device=device,
    )


#: Modules whose code decides a trained adapter or its scores; their source is part of every run key,
#: so editing them reruns the affected runs instead of serving stale results.
_CODE_MODULES = ("negatives", "splits", "retrieval", "metrics", "data", "methods", "instructions")
#: Packages hashed whole (every ``.py`` below them): the offline builders decide which texts and labels a
#: task holds; ``adapter``, ``train`` and ``experiments`` train and score.
_CODE_PACKAGES = ("offline", "adapter", "train", "experiments")
_ERA_CORE = Path(__file__).resolve().parent.parent


def source_hash(era_core_dir: Path) -> str:
    """Hash of the run-deciding sources under ``era_core_dir`` (``_CODE_MODULES`` and ``_CODE_PACKAGES``)."""
    files = [era_core_dir / f"{name}.py" for name in _CODE_MODULES]
    files += [f for pkg in _CODE_PACKAGES for f in sorted((era_core_dir / pkg).rglob("*.py"))]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(era_core_dir).as_posix().encode() + b"\x00" + f.read_bytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the sources that produce data, adapters and scores (part of run and Phase 1 cache keys).

    Read once per process: a running kernel keeps executing the code it imported, so a source edit
    made after import must not give its old code a new key.
    """
    return source_hash(_ERA_CORE)


def encoder_identity(setup: Setup) -> dict[str, Any]:
    """The cache identity of the setup's large and small encoders and their instruction policy (part of every run key)."""
    out = {}
    for side, key in (("large", setup.large_model), ("small", setup.small_model)):
        enc = get_encoder(key, setup)
        out[side] = {**enc.cache_fields(), "instructed": bool(getattr(enc.spec, "instructed", False))}
    return out
