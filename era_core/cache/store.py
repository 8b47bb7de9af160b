"""The cache's public API: ``embed_texts`` (lookup or compute), ``cache_info`` and ``clear_cache``."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from era_core import io as eio
from era_core import paths
from era_core.cache.base import CacheCorruptionWarning, SupportsEncode
from era_core.cache.entries import compute_entry, plan_entry, remove_shards, remove_stale_temps
from era_core.cache.integrity import check_verify, lookup
from era_core.errors import CacheError, ParamsError


def embed_texts(
    encoder: SupportsEncode,
    texts: Sequence[str],
    *,
    role: str = "document",
    instructions: Sequence[str] | str | None = None,
    root: Path | None = None,
    force: bool = False,
    shard_size: int = 1024,
    batch_size: int = 32,
    progress: bool = True,
    mmap: bool = False,
    lookup_only: bool = False,
    verify: str = "sample",
) -> np.ndarray | None:
    """Embeddings of ``texts`` from the cache, computing (and storing) them on a miss.

    With ``lookup_only=True`` a miss returns ``None`` instead of encoding (the model is never loaded).
    A hit is checked by size, header and a keyed sample of blocks (``verify="sample"``), or by the
    SHA-256 of the whole file (``verify="full"``, and automatically when the file's mtime changed);
    a damaged entry warns (CacheCorruptionWarning) and is recomputed.
    """
    from filelock import FileLock

    check_verify(verify)
    if not isinstance(texts, (list, tuple)):
        texts = list(texts)
    plan = plan_entry(encoder, texts, role=role, instructions=instructions, root=root, shard_size=shard_size)
    if plan.n == 0:
        return np.zeros((0, plan.dim), dtype=np.float32)
    edir, expected = plan.edir, plan.expected

    if not force and (edir / "manifest.json").is_file():
        hit = lookup(edir, expected, mmap, verify)  # lock-free fast path: entries are immutable once written
        if hit is not None:
            return hit
    if lookup_only:
        return None

    edir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(plan.lock_path)):
        if not force:
            # Another process may have finished this entry while we waited for the lock.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CacheCorruptionWarning)  # already reported above
                hit = None
                if (edir / "manifest.json").is_file():
                    hit = lookup(edir, expected, mmap, verify, lock_held=True)
            if hit is not None:
                return hit
        else:
            remove_shards(edir)
        remove_stale_temps(edir)
        compute_entry(encoder, plan, batch_size=batch_size, progress=progress)
        result = lookup(edir, expected, mmap, lock_held=True)
    if result is None:
        raise CacheError(f"the entry just written to {edir} does not verify; the disk may be failing")
    return result


def cache_info(root: Path | None = None) -> list[dict[str, Any]]:
    """One dict per complete cache entry: model, role, n, dim, size in bytes, key, path.

    ``model`` is the entry's model folder, the name ``clear_cache(model=...)`` takes. Complete means
    a readable ``manifest.json``: the shards of an interrupted encode (no manifest yet) are not
    listed, though ``clear_cache`` removes them. Nothing is verified here (``embed_texts`` does that).
    """
    root = Path(root) if root is not None else paths.EMBEDDING_CACHE
    rows: list[dict[str, Any]] = []
    if not root.is_dir():
        return rows
    for manifest_path in sorted(root.glob("*/*/*/manifest.json")):
        try:
            m = eio.read_json(manifest_path)
        except (OSError, ValueError):
            continue
        if not isinstance(m, dict):
            continue
        npy = manifest_path.parent / "embeddings.npy"
        rows.append(
            {
                "model": manifest_path.parts[-4],
                "role": m.get("role"),
                "n": m.get("n"),
                "dim": m.get("dim"),
                "size": npy.stat().st_size if npy.is_file() else 0,
                "key": m.get("key"),
                "path": str(manifest_path.parent),
            }
        )
    return rows


def clear_cache(root: Path | None = None, *, model: str | None = None) -> int:
    """Delete every entry (or one model's), partial ones included; returns the number of complete entries removed.

    Without ``model`` the root is emptied (the root folder itself stays). Do not run it while an
    encode is writing into the same root.
    """
    if model is not None and (
        not isinstance(model, str) or model in ("", ".", "..") or "/" in model or "\\" in model
    ):
        raise ParamsError(
            f"model must be one model folder's name as cache_info() lists it (e.g. 'minilm-l6'), got {model!r}"
        )
    root = Path(root) if root is not None else paths.EMBEDDING_CACHE
    if not root.is_dir():
        return 0
    targets = [root / model] if model is not None else sorted(root.iterdir())
    count = 0
    for t in targets:
        if t.is_dir() and not t.is_symlink():
            count += sum(1 for _ in t.glob("*/*/manifest.json"))
            shutil.rmtree(t)
        elif model is None and (t.is_symlink() or t.exists()):
            t.unlink()  # a stray file or link at the root: never follow a link out of the cache
    return count
