"""Content keys: the embedding cache's (every field that changes a vector: model, precision, role, texts,
instructions), configuration hashes, and the hash of the code that decides trained adapters and scores."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from era_core.cache.base import CACHE_FORMAT
from era_core.io import dumps_json


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _update_strings(h: Any, items: Sequence[str]) -> None:
    # Length-prefix every string (and the count) so no choice of separators can collide.
    h.update(len(items).to_bytes(8, "big"))
    for s in items:
        b = s.encode("utf-8")
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)


def cache_key(
    fields: dict[str, Any],
    role: str,
    texts: Sequence[str],
    instructions: Sequence[str] | str | None = None,
) -> str:
    """SHA-256 over the encoder's fields, the role, the instruction(s) and the ordered texts."""
    h = hashlib.sha256()
    h.update(_canonical({"cache_format": CACHE_FORMAT, "fields": fields, "role": role}))
    if instructions is None:
        h.update(b"\x00none")
    elif isinstance(instructions, str):
        h.update(b"\x01single")
        _update_strings(h, [instructions])
    else:
        h.update(b"\x02list")
        _update_strings(h, list(instructions))
    h.update(b"\x03texts")
    _update_strings(h, list(texts))
    return h.hexdigest()


def instructions_digest(instructions: Sequence[str] | str | None) -> Any:
    """A small manifest-friendly description of the instructions (the key holds the rest)."""
    if instructions is None or isinstance(instructions, str):
        return instructions
    h = hashlib.sha256()
    _update_strings(h, list(instructions))
    return {"per_query_sha256": h.hexdigest(), "n": len(instructions)}


def texts_digest(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    _update_strings(h, list(texts))
    return h.hexdigest()


def config_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-serialisable configuration."""
    return hashlib.sha256(dumps_json(obj).encode()).hexdigest()[:16]


#: The sources that decide a trained adapter or its scores (globs under era_core/): their text is part of every
#: run key, so editing them reruns the affected runs instead of serving stale results. The data package decides
#: which texts and labels a task holds; the method modules and the paper's run code train and score.
_CODE_GLOBS = ("api.py", "setup.py", "vectors.py", "identical_texts.py", "methods.py", "instructions.py", "negatives.py",
               "splits.py", "retrieval.py", "metrics.py", "data/**/*.py", "adapter/modules.py", "adapter/files.py",
               "adapter/trained.py", "train/**/*.py",
               *(f"paper/{m}.py" for m in ("config", "pool", "runs", "selection", "zero_shot", "protocols",
                                          "encoder_pairs")))


_ERA_CORE = Path(__file__).resolve().parent.parent


def source_hash(era_core_dir: Path) -> str:
    """Hash of the run-deciding sources under ``era_core_dir`` (``_CODE_GLOBS``), in a fixed order."""
    files = sorted({f for pattern in _CODE_GLOBS for f in era_core_dir.glob(pattern)})
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
