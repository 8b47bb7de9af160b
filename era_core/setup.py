"""What an experiment runs on: ``Setup`` (benchmark, tasks, the two encoders and how they run), its units,
memoised encoders and the content fingerprints that key runs and caches."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

from era_core.data import Unit, load_tasks, resolve_tasks
from era_core.errors import ParamsError


@dataclass(frozen=True)
class Setup:
    """Which benchmark, tasks and encoders an experiment uses, and how encoders run."""

    benchmark: str
    tasks: tuple[str, ...]
    large_model: str
    small_model: str
    max_length: int = 128
    batch_size: int = 32
    device: str = "cpu"
    dtype: str = "float32"
    progress: bool = True

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> "Setup":
        """Build a Setup from a validated notebook parameter dict."""
        return cls(
            benchmark=p["benchmark"],
            tasks=tuple(resolve_tasks(p["benchmark"], p["tasks"])),
            large_model=p["large_model"],
            small_model=p["small_model"],
            max_length=p["max_length"],
            batch_size=p["batch_size"],
            device=resolve_device(p["device"]),
            dtype=p["dtype"],
            progress=p["progress"],
        )


def resolve_device(device: str) -> str:
    """Map ``auto`` to ``cuda`` when available, else ``cpu``; refuse ``cuda`` on a machine without it."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ParamsError("device='cuda' was requested but torch sees no CUDA device; use device='cpu' or 'auto'")
    return device


_ENCODERS: dict[tuple, Any] = {}


def get_encoder(key: str, setup: Setup) -> Any:
    """Return a (lazily loaded, memoised) encoder: building it never loads the weights."""
    from era_core.encoders import load_encoder

    # "auto" lets the encoder pick (its registry dtype on CUDA; bf16 on CPUs with native bf16, else fp32).
    memo = (key, setup.device, setup.dtype, setup.max_length)
    if memo not in _ENCODERS:
        _ENCODERS[memo] = load_encoder(key, device=setup.device, dtype=setup.dtype, max_length=setup.max_length)
    return _ENCODERS[memo]


def load_units(setup: Setup) -> list[Unit]:
    """Load the setup's tasks and flatten them into evaluation units (sub-splits keep their own corpus)."""
    tasks = load_tasks(setup.benchmark, list(setup.tasks), progress=setup.progress)
    return [u for t in tasks for u in t.units()]


def unit_fingerprint(unit: Unit) -> str:
    """SHA-256 of what a unit feeds a run: its name, domain, queries, instructions, qrels, document ids and texts.

    Order is kept wherever it matters downstream (query order drives the split, document order the
    corpus rows), so a rebuilt benchmark that keeps task names but changes any label or text gets a
    new run key instead of serving an old ``summary.json``.
    """
    h = hashlib.sha256()
    parts = (unit.name, unit.domain, list(unit.queries.items()), list(unit.instructions.items()),
             list(unit.qrels.items()), list(unit.corpus.items()))
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def unit_fingerprints(units: Iterable[Unit]) -> dict[str, str]:
    """``{unit name: unit_fingerprint}`` of each unit, in the given order."""
    return {u.name: unit_fingerprint(u) for u in units}


def model_params(key: str) -> int:
    """Approximate parameter count of a registry model (for cost-quality plots)."""
    from era_core.encoders import REGISTRY

    return int(REGISTRY[key].params)


def loaded_encoders() -> list[str]:
    """Registry keys of the memoised encoders whose weights are loaded (sorted)."""
    return sorted(memo[0] for memo, enc in _ENCODERS.items() if enc.loaded)


def forget_encoders() -> None:
    """Drop every memoised encoder, so the next ``get_encoder`` builds (and later loads) afresh."""
    _ENCODERS.clear()


def encoder_identity(setup: Setup) -> dict[str, Any]:
    """The cache identity of the setup's large and small encoders and their instruction policy (part of every run key)."""
    out = {}
    for side, key in (("large", setup.large_model), ("small", setup.small_model)):
        enc = get_encoder(key, setup)
        out[side] = {**enc.cache_fields(), "instructed": bool(getattr(enc.spec, "instructed", False))}
    return out
