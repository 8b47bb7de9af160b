"""Content-addressed embedding cache: keyed, checksummed, sharded, locked, atomic arrays.

An entry lives in ``<root>/<model_key>/<key[:2]>/<key>/`` with ``embeddings.npy`` (float32,
memory-mappable) and ``manifest.json`` (written last). While an entry is being computed its rows
are committed shard by shard (``shard-00000.npy`` + ``shard-00000.json`` holding its checksum), so
a killed run resumes at the first missing shard (and the temp files it left are deleted). The key covers every field that changes a
vector, so a stale array is never served.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from era_core import io as eio
from era_core import __version__, paths
from era_core.errors import CacheError, ParamsError

#: Bump when the on-disk layout or the key recipe changes.
CACHE_FORMAT = 1
CREATED_BY = f"era-core {__version__} (cache format {CACHE_FORMAT})"
ROLES = ("query", "document")


class CacheCorruptionWarning(UserWarning):
    """A cache file failed its checksum or did not match its request; it is recomputed."""


class SupportsEncode(Protocol):
    """What the cache needs from an encoder (``era_core.encoders.Encoder`` provides it)."""

    key: str
    dim: int

    def cache_fields(self) -> dict[str, Any]: ...

    def format_queries(self, queries: Sequence[str], instructions: Sequence[str] | str | None) -> list[str]: ...

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = True) -> np.ndarray: ...


# ----------------------------------------------------------------------------- keys


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


def _instructions_digest(instructions: Sequence[str] | str | None) -> Any:
    """A small manifest-friendly description of the instructions (the key holds the rest)."""
    if instructions is None or isinstance(instructions, str):
        return instructions
    h = hashlib.sha256()
    _update_strings(h, list(instructions))
    return {"per_query_sha256": h.hexdigest(), "n": len(instructions)}


def _texts_digest(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    _update_strings(h, list(texts))
    return h.hexdigest()


# ----------------------------------------------------------------------------- files


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def entry_dir(root: Path, model_key: str, key: str) -> Path:
    """Directory of one cache entry."""
    return Path(root) / model_key / key[:2] / key


@contextlib.contextmanager
def _disk_guard(what: Path, nbytes: int, root: Path) -> Iterator[None]:
    """Turn ENOSPC during a write into a CacheError that says how much room the step needs."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise CacheError(
            f"disk full while writing {what}: this step needs {nbytes:,} bytes "
            f"({nbytes / 2**20:.1f} MiB) free on the file system of {root}; free space or point "
            "ERA_CACHE_DIR (or root=) at a larger disk. Earlier complete entries are untouched."
        ) from None


def _npy_nbytes(rows: int, dim: int) -> int:
    return rows * dim * 4 + 128  # float32 data plus the .npy header


def _load_verified(path: Path, sha256: str, shape: tuple[int, int], mmap: bool) -> np.ndarray | None:
    """Load a float32 .npy if its checksum and shape match, else warn and return None."""
    try:
        if not path.is_file():
            raise ValueError("file is missing")
        actual = _sha256_file(path)
        if actual != sha256:
            raise ValueError(f"sha256 {actual} != recorded {sha256} (truncated or modified)")
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if arr.dtype != np.float32 or arr.shape != shape:
            raise ValueError(f"array is {arr.dtype}{arr.shape}, expected float32{shape}")
        return arr
    except (OSError, ValueError) as exc:
        warnings.warn(
            f"embedding cache file {path} is unusable ({exc}); recomputing", CacheCorruptionWarning, stacklevel=3
        )
        return None


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        manifest = eio.read_json(path)
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
        return manifest
    except (OSError, ValueError) as exc:
        warnings.warn(
            f"embedding cache manifest {path} is unreadable ({exc}); recomputing", CacheCorruptionWarning, stacklevel=3
        )
        return None


def _lookup(edir: Path, expected: dict[str, Any], mmap: bool) -> np.ndarray | None:
    """The cached array if the manifest matches ``expected`` exactly and the file verifies."""
    manifest = _read_manifest(edir / "manifest.json")
    if manifest is None:
        return None
    # Everything but the checksum and provenance must equal the request exactly.
    keys = (set(expected) | set(manifest)) - {"sha256", "created_by"}
    mismatched = sorted(k for k in keys if manifest.get(k) != expected.get(k))
    if mismatched:
        warnings.warn(
            f"embedding cache manifest {edir / 'manifest.json'} does not match the request "
            f"(fields {mismatched}); it is not served and will be recomputed",
            CacheCorruptionWarning,
            stacklevel=3,
        )
        return None
    return _load_verified(edir / "embeddings.npy", manifest.get("sha256", ""), (expected["n"], expected["dim"]), mmap)


# ----------------------------------------------------------------------------- shards


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
    return _load_verified(npy, meta.get("sha256", ""), (stop - start, dim), mmap=False)


def _remove_shards(edir: Path) -> None:
    for p in list(edir.glob("shard-*.npy")) + list(edir.glob("shard-*.json")):
        p.unlink(missing_ok=True)


def _remove_stale_temps(edir: Path) -> None:
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

    Several processes (``era_core.encode`` under torchrun) can each encode some shards of the same
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
        return Path(str(self.edir) + ".lock")

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
        "instructions": _instructions_digest(instructions),
        "texts_sha256": _texts_digest(texts),
        "n": len(texts),
        "dim": dim,
        "dtype": "float32",
        "cache_format": CACHE_FORMAT,
    }
    to_encode = encoder.format_queries(texts, instructions) if role == "query" and texts else texts
    return EntryPlan(
        model_key=encoder.key, key=key, edir=entry_dir(root, encoder.key, key), root=root,
        expected=expected, texts=list(to_encode), dim=dim, shard_size=shard_size,
    )


def lookup_entry(plan: EntryPlan, *, mmap: bool = False) -> np.ndarray | None:
    """The finished, verified array of ``plan`` or None (warns if a stored file is damaged)."""
    if not (plan.edir / "manifest.json").is_file():
        return None
    return _lookup(plan.edir, plan.expected, mmap)


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
        with _disk_guard(npy, _npy_nbytes(stop - start, plan.dim), plan.root):
            eio.save_npy(npy, vecs)
            eio.write_json(meta_path, {"start": start, "stop": stop, "sha256": _sha256_file(npy)})


def finalize_entry(plan: EntryPlan) -> None:
    """Assemble the committed shards into ``embeddings.npy``, write the manifest last, drop the shards.

    The caller holds the entry's lock (``plan.lock_path``). Raises CacheError naming the missing
    shards if any is absent or fails its checksum (the committed ones are kept).
    """
    n, dim = plan.n, plan.dim
    final = plan.edir / "embeddings.npy"
    _remove_stale_temps(plan.edir)  # safe: the caller holds the lock every writer takes

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
    with _disk_guard(final, _npy_nbytes(n, dim), plan.root):
        eio.atomic_write(final, _assemble)
        manifest = {**plan.expected, "sha256": _sha256_file(final), "created_by": CREATED_BY}
        eio.write_json(plan.edir / "manifest.json", manifest)
    _remove_shards(plan.edir)


def _compute(encoder: SupportsEncode, plan: EntryPlan, *, batch_size: int, progress: bool) -> None:
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


# ----------------------------------------------------------------------------- public API


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
) -> np.ndarray | None:
    """Embeddings of ``texts`` from the cache, computing (and storing) them on a miss.

    With ``lookup_only=True`` a miss returns ``None`` instead of encoding (the model is never loaded).
    """
    from filelock import FileLock

    if not isinstance(texts, (list, tuple)):
        texts = list(texts)
    plan = plan_entry(encoder, texts, role=role, instructions=instructions, root=root, shard_size=shard_size)
    if plan.n == 0:
        return np.zeros((0, plan.dim), dtype=np.float32)
    edir, expected = plan.edir, plan.expected

    if not force and (edir / "manifest.json").is_file():
        hit = _lookup(edir, expected, mmap)  # lock-free fast path: entries are immutable once written
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
                hit = _lookup(edir, expected, mmap) if (edir / "manifest.json").is_file() else None
            if hit is not None:
                return hit
        else:
            _remove_shards(edir)
        _remove_stale_temps(edir)
        _compute(encoder, plan, batch_size=batch_size, progress=progress)
        result = _lookup(edir, expected, mmap)
    if result is None:
        raise CacheError(f"the entry just written to {edir} does not verify; the disk may be failing")
    return result


def cache_info(root: Path | None = None) -> list[dict[str, Any]]:
    """One dict per complete cache entry: model, role, n, dim, size in bytes, key, path."""
    root = Path(root) if root is not None else paths.EMBEDDING_CACHE
    rows: list[dict[str, Any]] = []
    if not root.is_dir():
        return rows
    for manifest_path in sorted(root.glob("*/*/*/manifest.json")):
        try:
            m = eio.read_json(manifest_path)
        except (OSError, ValueError):
            continue
        npy = manifest_path.parent / "embeddings.npy"
        rows.append(
            {
                "model": m.get("fields", {}).get("model", manifest_path.parts[-4]),
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
    """Delete every entry (or one model's); returns the number of entries removed."""
    root = Path(root) if root is not None else paths.EMBEDDING_CACHE
    if not root.is_dir():
        return 0
    targets = [root / model] if model else [p for p in root.iterdir() if p.is_dir()]
    count = 0
    for t in targets:
        if t.is_dir():
            count += len(list(t.glob("*/*/manifest.json")))
            shutil.rmtree(t)
    return count
