"""Entries computed shard by shard: the plan of an entry, shard commits, resume and the final merge."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from era_core import io as eio
from era_core import paths
from era_core.cache.base import CACHE_FORMAT, CREATED_BY, ROLES, SupportsEncode
from era_core.cache.integrity import (
    check_verify,
    disk_guard,
    entry_dir,
    integrity_record,
    load_verified,
    lock_path,
    lookup,
    npy_nbytes,
    sha256_file,
)
from era_core.cache.keys import cache_key, instructions_digest, texts_digest
from era_core.errors import CacheError, ParamsError


def _shard_paths(edir: Path, i: int) -> tuple[Path, Path]:
    return edir / f"shard-{i:05d}.npy", edir / f"shard-{i:05d}.json"


def _valid_shard(edir: Path, i: int, start: int, stop: int, dim: int) -> np.ndarray | None:
    """A finished shard of rows [start, stop) if its checksum file vouches for it."""
    npy, meta_path = _shard_paths(edir, i)
    if not meta_path.is_file():
        return None
    try:
        meta = eio.read_json(meta_path)
    except (OSError, ValueError):
        return None
    if meta.get("start") != start or meta.get("stop") != stop:
        return None  # written with another shard_size: redo it
    return load_verified(npy, meta.get("sha256", ""), (stop - start, dim), mmap=False)


def remove_shards(edir: Path) -> None:
    for p in list(edir.glob("shard-*.npy")) + list(edir.glob("shard-*.json")):
        p.unlink(missing_ok=True)


def remove_stale_temps(edir: Path) -> None:
    """Delete ``.*.tmp`` files a killed writer left in ``edir`` (a killed assembly leaves a full-size one).

    Only called while holding the entry's lock: every write into an entry happens under it, so no
    live writer can own one of these files.
    """
    if edir.is_dir():
        for p in edir.glob(".*.tmp"):
            p.unlink(missing_ok=True)


@dataclass(frozen=True)
class EntryPlan:
    """One cache entry before it is computed: its key, folder, expected manifest and shard layout.

    Several processes (``era_core.tools.encode`` under torchrun) can each encode some shards of the same
    plan; ``finalize_entry`` then assembles them, so the result equals a single-process run.
    """

    model_key: str
    key: str
    edir: Path
    root: Path
    expected: dict[str, Any]
    texts: list[str]  # what the encoder sees (queries already formatted)
    dim: int
    shard_size: int

    @property
    def n(self) -> int:
        """Number of rows."""
        return len(self.texts)

    @property
    def n_shards(self) -> int:
        """Number of shards (the last one may be short)."""
        return math.ceil(self.n / self.shard_size)

    @property
    def lock_path(self) -> Path:
        """The entry's lock file (next to the folder, so removing the folder never races it)."""
        return lock_path(self.edir)

    def shard_range(self, i: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of shard ``i``."""
        if not 0 <= i < self.n_shards:
            raise ParamsError(f"shard {i} is out of range; the entry has shards 0..{self.n_shards - 1}")
        return i * self.shard_size, min(self.n, (i + 1) * self.shard_size)


def plan_entry(
    encoder: SupportsEncode,
    texts: Sequence[str],
    *,
    role: str = "document",
    instructions: Sequence[str] | str | None = None,
    root: Path | None = None,
    shard_size: int = 1024,
) -> EntryPlan:
    """Validate a request and compute its key, folder and shard layout (never loads the model)."""
    if role not in ROLES:
        raise ParamsError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "document" and instructions is not None:
        raise ParamsError(
            "documents are never instructed: pass instructions only with role='query' "
            f"(got instructions={str(instructions)[:80]!r} with role='document')"
        )
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ParamsError(f"shard_size must be a positive integer, got {shard_size!r}")
    texts = list(texts)
    if any(not isinstance(t, str) for t in texts):
        raise ParamsError("texts must all be strings")
    if not isinstance(instructions, (str, type(None))):
        instructions = list(instructions)
        if len(instructions) != len(texts):
            raise ParamsError(f"got {len(instructions)} instructions for {len(texts)} queries; give one per query")
    dim = int(encoder.dim)
    root = Path(root) if root is not None else paths.EMBEDDING_CACHE
    fields = encoder.cache_fields()
    key = cache_key(fields, role, texts, instructions)
    expected = {
        "key": key,
        "fields": fields,
        "role": role,
        "instructions": instructions_digest(instructions),
        "texts_sha256": texts_digest(texts),
        "n": len(texts),
        "dim": dim,
        "dtype": "float32",
        "cache_format": CACHE_FORMAT,
    }
    if role == "query" and texts:
        to_encode = encoder.format_queries(texts, instructions)
    else:
        # Models with a document prompt (EmbeddingGemma) add it here; encoders without one (API encoders,
        # test doubles) take the texts as they are. The prompt is part of the encoder's cache fields.
        to_encode = getattr(encoder, "format_documents", list)(texts)
    return EntryPlan(
        model_key=encoder.key, key=key, edir=entry_dir(root, encoder.key, key), root=root,
        expected=expected, texts=list(to_encode), dim=dim, shard_size=shard_size,
    )


def lookup_entry(plan: EntryPlan, *, mmap: bool = False, verify: str = "sample") -> np.ndarray | None:
    """The finished, verified array of ``plan`` or None (warns if a stored file is damaged).

    ``verify="sample"`` checks size, header and the keyed sample of blocks (a full check when the
    file's mtime changed); ``verify="full"`` always re-hashes the whole file (module docstring).
    """
    check_verify(verify)
    if not (plan.edir / "manifest.json").is_file():
        return None
    return lookup(plan.edir, plan.expected, mmap, verify)


def shard_committed(plan: EntryPlan, i: int) -> bool:
    """Whether shard ``i`` is on disk and its checksum file vouches for it."""
    start, stop = plan.shard_range(i)
    return _valid_shard(plan.edir, i, start, stop, plan.dim) is not None


def missing_shards(plan: EntryPlan) -> list[int]:
    """Shards not (validly) committed yet."""
    return [i for i in range(plan.n_shards) if not shard_committed(plan, i)]


def encode_shard(
    encoder: SupportsEncode, plan: EntryPlan, i: int, *, batch_size: int = 32, progress: bool = False
) -> np.ndarray:
    """Encode the rows of shard ``i`` (batches never cross a shard) and check shape and finiteness."""
    start, stop = plan.shard_range(i)
    vecs = np.asarray(encoder.encode(plan.texts[start:stop], batch_size=batch_size, progress=progress))
    if vecs.shape != (stop - start, plan.dim):
        raise CacheError(
            f"model {encoder.key!r} returned shape {vecs.shape} for shard {i} (rows {start}:{stop}); "
            f"expected {(stop - start, plan.dim)}"
        )
    if not np.isfinite(vecs).all():
        bad = int((~np.isfinite(vecs).all(axis=1)).sum())
        raise CacheError(
            f"model {encoder.key!r} produced NaN/inf in {bad} of {stop - start} rows of shard {i} "
            f"(texts {start}:{stop}); nothing was cached for this shard. Check the dtype (fp16 "
            "overflow) and the input texts."
        )
    return np.ascontiguousarray(vecs, dtype=np.float32)


def commit_shard(plan: EntryPlan, i: int, vecs: np.ndarray, *, lock: bool = True) -> None:
    """Atomically write shard ``i`` and then its checksum file (which marks it committed).

    Takes the entry's lock for the (short) write, so every write into an entry happens under it;
    pass ``lock=False`` only when the caller already holds it.
    """
    from filelock import FileLock

    start, stop = plan.shard_range(i)
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    if vecs.shape != (stop - start, plan.dim):
        raise CacheError(f"shard {i} of {plan.edir} needs shape {(stop - start, plan.dim)}, got {vecs.shape}")
    plan.edir.mkdir(parents=True, exist_ok=True)
    npy, meta_path = _shard_paths(plan.edir, i)
    with FileLock(str(plan.lock_path)) if lock else contextlib.nullcontext():
        with disk_guard(npy, npy_nbytes(stop - start, plan.dim), plan.root):
            eio.save_npy(npy, vecs)
            eio.write_json(meta_path, {"start": start, "stop": stop, "sha256": sha256_file(npy)})


def finalize_entry(plan: EntryPlan) -> None:
    """Assemble the committed shards into ``embeddings.npy``, write the manifest last, drop the shards.

    The caller holds the entry's lock (``plan.lock_path``). Raises CacheError naming the missing
    shards if any is absent or fails its checksum (the committed ones are kept).
    """
    n, dim = plan.n, plan.dim
    final = plan.edir / "embeddings.npy"
    remove_stale_temps(plan.edir)  # safe: the caller holds the lock every writer takes

    def _assemble(tmp: Path) -> None:
        # Stream shards into a memmap so the full array is never held twice in memory.
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        missing = []
        for i in range(plan.n_shards):
            start, stop = plan.shard_range(i)
            shard = _valid_shard(plan.edir, i, start, stop, dim)
            if shard is None:
                missing.append(i)
            else:
                out[start:stop] = shard
        out.flush()
        del out
        if missing:
            raise CacheError(
                f"cannot assemble {plan.edir}: shard(s) {missing} of {plan.n_shards} are missing or fail their "
                "checksum; rerun the encoding job (committed shards are kept)"
            )

    plan.edir.mkdir(parents=True, exist_ok=True)
    with disk_guard(final, npy_nbytes(n, dim), plan.root):
        eio.atomic_write(final, _assemble)
        manifest = {
            **plan.expected, "sha256": sha256_file(final), "created_by": CREATED_BY,
            "integrity": integrity_record(final, plan.key, (n, dim)),
        }
        eio.write_json(plan.edir / "manifest.json", manifest)
    remove_shards(plan.edir)


def compute_entry(encoder: SupportsEncode, plan: EntryPlan, *, batch_size: int, progress: bool) -> None:
    """Encode missing shards, then assemble ``embeddings.npy`` and write the manifest last."""
    from tqdm.auto import tqdm

    n_shards = plan.n_shards
    plan.edir.mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(n_shards), desc=f"cache {encoder.key}", disable=not progress or n_shards < 2, total=n_shards):
        if shard_committed(plan, i):
            continue  # committed by an earlier (killed) run
        # One bar is enough: the shard bar when there are several shards, else the encoder's.
        vecs = encode_shard(encoder, plan, i, batch_size=batch_size, progress=progress and n_shards == 1)
        commit_shard(plan, i, vecs, lock=False)  # embed_texts holds the entry lock
    finalize_entry(plan)
