"""Cache keys: a hash of every field that changes a vector (model, precision, role, texts, instructions)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

from era_core.cache.base import CACHE_FORMAT


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
