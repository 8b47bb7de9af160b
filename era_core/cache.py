"""Content-addressed embedding cache: keyed, checksummed, sharded, locked, atomic arrays.

An entry lives in ``<root>/<model_key>/<key[:2]>/<key>/`` with ``embeddings.npy`` (float32,
memory-mappable) and ``manifest.json`` (written last). While an entry is being computed its rows
are committed shard by shard (``shard-00000.npy`` + ``shard-00000.json`` holding its checksum), so
a killed run resumes at the first missing shard. The key covers every field that changes a
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


def _compute(
    encoder: SupportsEncode,
    texts: list[str],
    edir: Path,
    root: Path,
    manifest: dict[str, Any],
    *,
    shard_size: int,
    batch_size: int,
    progress: bool,
) -> None:
    """Encode missing shards, then assemble ``embeddings.npy`` and write the manifest last."""
    from tqdm.auto import tqdm

    n, dim = len(texts), int(encoder.dim)
    edir.mkdir(parents=True, exist_ok=True)
    n_shards = math.ceil(n / shard_size)
    shards = range(n_shards)
    for i in tqdm(shards, desc=f"cache {encoder.key}", disable=not progress or n_shards < 2, total=n_shards):
        start, stop = i * shard_size, min(n, (i + 1) * shard_size)
        if _valid_shard(edir, i, start, stop, dim) is not None:
            continue  # committed by an earlier (killed) run
        # One bar is enough: the shard bar when there are several shards, else the encoder's.
        inner = progress and n_shards == 1
        vecs = np.asarray(encoder.encode(texts[start:stop], batch_size=batch_size, progress=inner))
        if vecs.shape != (stop - start, dim):
            raise CacheError(
                f"model {encoder.key!r} returned shape {vecs.shape} for shard {i} (rows {start}:{stop}); "
                f"expected {(stop - start, dim)}"
            )
        if not np.isfinite(vecs).all():
            bad = int((~np.isfinite(vecs).all(axis=1)).sum())
            raise CacheError(
                f"model {encoder.key!r} produced NaN/inf in {bad} of {stop - start} rows of shard {i} "
                f"(texts {start}:{stop}); nothing was cached for this shard. Check the dtype (fp16 "
                "overflow) and the input texts."
            )
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        npy, meta_path = _shard_paths(edir, i)
        with _disk_guard(npy, _npy_nbytes(stop - start, dim), root):
            eio.save_npy(npy, vecs)
            eio.write_json(meta_path, {"start": start, "stop": stop, "sha256": _sha256_file(npy)})

    final = edir / "embeddings.npy"

    def _assemble(tmp: Path) -> None:
        # Stream shards into a memmap so the full array is never held twice in memory.
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        for i in range(n_shards):
            start, stop = i * shard_size, min(n, (i + 1) * shard_size)
            shard = _valid_shard(edir, i, start, stop, dim)
            if shard is None:
                raise CacheError(f"shard {i} of {edir} vanished or changed while assembling; rerun")
            out[start:stop] = shard
        out.flush()
        del out

    with _disk_guard(final, _npy_nbytes(n, dim), root):
        eio.atomic_write(final, _assemble)
        manifest = {**manifest, "sha256": _sha256_file(final), "created_by": CREATED_BY}
        eio.write_json(edir / "manifest.json", manifest)
    _remove_shards(edir)


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

    if role not in ROLES:
        raise ParamsError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "document" and instructions is not None:
        raise ParamsError(
            "documents are never instructed: pass instructions only with role='query' "
            f"(got instructions={str(instructions)[:80]!r} with role='document')"
        )
    if not isinstance(shard_size, int) or shard_size < 1:
        raise ParamsError(f"shard_size must be a positive integer, got {shard_size!r}")
    texts = list(texts)
    if any(not isinstance(t, str) for t in texts):
        raise ParamsError("texts must all be strings")
    if not isinstance(instructions, (str, type(None))):
        instructions = list(instructions)
        if len(instructions) != len(texts):
            raise ParamsError(f"got {len(instructions)} instructions for {len(texts)} queries; give one per query")
    dim = int(encoder.dim)
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)

    root = Path(root) if root is not None else paths.EMBEDDING_CACHE
    fields = encoder.cache_fields()
    key = cache_key(fields, role, texts, instructions)
    edir = entry_dir(root, encoder.key, key)
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

    if not force and (edir / "manifest.json").is_file():
        hit = _lookup(edir, expected, mmap)  # lock-free fast path: entries are immutable once written
        if hit is not None:
            return hit
    if lookup_only:
        return None

    edir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(edir) + ".lock"):
        if not force:
            # Another process may have finished this entry while we waited for the lock.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CacheCorruptionWarning)  # already reported above
                hit = _lookup(edir, expected, mmap) if (edir / "manifest.json").is_file() else None
            if hit is not None:
                return hit
        else:
            _remove_shards(edir)
        to_encode = encoder.format_queries(texts, instructions) if role == "query" else texts
        _compute(
            encoder, to_encode, edir, root, expected, shard_size=shard_size, batch_size=batch_size, progress=progress
        )
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
