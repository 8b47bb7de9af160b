"""Which bytes a model's vectors come from: memoised file SHA-256s and one fingerprint over a file list.

Both ``weights`` (every model's fingerprint) and ``wheels`` (the pinned hashes of unpacked files)
hash through here, so a file is hashed once per size and mtime whichever of them asks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

from era_core import paths
from era_core.io import sha256_file, write_json


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised under MODEL_CACHE keyed by path, size and mtime."""
    real = Path(path).resolve()
    st = real.stat()
    memo_dir = paths.MODEL_CACHE / ".fingerprints"
    memo = memo_dir / (hashlib.sha256(str(real).encode("utf-8")).hexdigest()[:40] + ".json")
    stamp = {"path": str(real), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        cached = json.loads(memo.read_text(encoding="utf-8"))
        if {k: cached.get(k) for k in stamp} == stamp and isinstance(cached.get("sha256"), str):
            return cached["sha256"]
    except (OSError, ValueError):
        pass
    digest = sha256_file(real)
    try:
        write_json(memo, {**stamp, "sha256": digest})
    except OSError:
        pass  # memoisation is an optimisation; a read-only cache only costs a re-hash
    return digest


def fingerprint_files(files: Sequence[tuple[str, Path]]) -> str:
    """One SHA-256 over ``(name, size, sha256)`` of each file, in the given order."""
    h = hashlib.sha256()
    for name, p in files:
        h.update(json.dumps([name, p.stat().st_size, file_sha256(p)]).encode("utf-8"))
    return h.hexdigest()
