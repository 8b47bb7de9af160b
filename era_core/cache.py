"""Content-addressed embedding cache: keyed, checksummed, sharded, locked, atomic arrays.

An entry lives in ``<root>/<model_key>/<key[:2]>/<key>/`` with ``embeddings.npy`` (float32,
memory-mappable) and ``manifest.json`` (written last). While an entry is being computed its rows
are committed shard by shard (``shard-00000.npy`` + ``shard-00000.json`` holding its checksum), so
a killed run resumes at the first missing shard (and the temp files it left are deleted). The key
covers every field that changes a vector, so a stale array is never served.

Integrity on a hit is sampled, not full, because re-hashing a corpus of many gigabytes on every
read would cost more than the read itself. At write time the manifest records, next to the
SHA-256 of the whole file, an ``integrity`` block: the file's size and mtime, the ``.npy`` header's
offset and digest, and the SHA-256 of ``SAMPLE_BLOCKS`` row blocks (``SAMPLE_BLOCK_BYTES`` each;
the first and the last always, the others picked by hashing the entry key, so an entry always
checks the same blocks). Every hit (``verify="sample"``) checks the size, the header (float32,
C order, the requested shape, data filling the file exactly), the header digest and the sampled
blocks: about 8 MiB read whatever the entry's size. That catches truncation, extension, a rewritten
or zeroed file and any damage inside a sampled block; it misses damage confined to unsampled blocks
(a single flipped bit in the middle of a large corpus) when the file's mtime is unchanged. The full
SHA-256 runs when asked (``verify="full"``), when the file's mtime differs from the recorded one
(something wrote to it, or it was copied without preserving times) and for entries whose manifest
has no ``integrity`` block (written before it existed); a full check that passes records a fresh
``integrity`` block, so the next hit is sampled again.
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
VERIFY_MODES = ("sample", "full")
#: Row blocks a sampled hit hashes (first and last included) and the target size of one block.
SAMPLE_BLOCKS = 8
SAMPLE_BLOCK_BYTES = 1 << 20
#: Version of the manifest's ``integrity`` block (an unknown one triggers a full check and a rewrite).
INTEGRITY_VERSION = 1


class CacheCorruptionWarning(UserWarning):
    """A cache file failed its checksum or did not match its request; it is recomputed."""


class SupportsEncode(Protocol):
    """What the cache needs from an encoder (``era_core.encoders.Encoder`` provides it)."""

    key: str
    dim: int

    def cache_fields(self) -> dict[str, Any]:
        """Everything that decides the vectors (model, weights fingerprint, precision, ...): part of the key."""

    def format_queries(self, queries: Sequence[str], instructions: Sequence[str] | str | None) -> list[str]:
        """The texts the model encodes for these queries (its prompt and the instruction template applied)."""

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = True) -> np.ndarray:
        """L2-normalised float32 vectors ``[n, dim]`` of already formatted texts, in input order."""


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


def _hash_range(path: Path, offset: int, length: int) -> str:
    """SHA-256 of ``length`` bytes of ``path`` from ``offset`` (every integrity read goes through here)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(offset)
        remaining = length
        while remaining > 0:
            block = fh.read(min(1 << 22, remaining))
            if not block:
                raise ValueError(f"file ends {remaining} bytes before offset {offset + length}")
            h.update(block)
            remaining -= len(block)
    return h.hexdigest()


def _sha256_file(path: Path) -> str:
    return _hash_range(path, 0, Path(path).stat().st_size)


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


def _read_npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and data offset of a ``.npy`` file (reads the header only)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
        return tuple(shape), bool(fortran), dtype, fh.tell()


def _check_layout(path: Path, shape: tuple[int, int]) -> tuple[int, int, int]:
    """Size, mtime_ns and data offset of ``path`` after checking its header against ``shape``."""
    if not path.is_file():
        raise ValueError("file is missing")
    st = path.stat()
    got_shape, fortran, dtype, offset = _read_npy_header(path)
    if dtype != np.dtype("<f4") or fortran or got_shape != tuple(shape):
        order = "Fortran" if fortran else "C"
        raise ValueError(f"array is {dtype}{got_shape} in {order} order, expected float32{tuple(shape)} in C order")
    expected_size = offset + shape[0] * shape[1] * 4
    if st.st_size != expected_size:
        raise ValueError(f"file has {st.st_size} bytes, its header implies {expected_size} (truncated or extended)")
    return st.st_size, st.st_mtime_ns, offset


def _block_rows(dim: int) -> int:
    return max(1, SAMPLE_BLOCK_BYTES // (4 * dim))


def _sample_blocks(key: str, n_blocks: int) -> list[int]:
    """The first, the last and further blocks picked by hashing the entry key, up to SAMPLE_BLOCKS."""
    if n_blocks == 0:
        return []
    chosen = {0, n_blocks - 1}
    want = min(max(SAMPLE_BLOCKS, 2), n_blocks)
    counter = 0
    while len(chosen) < want:
        digest = hashlib.sha256(f"{key}:block:{counter}".encode()).digest()
        chosen.add(int.from_bytes(digest[:8], "big") % n_blocks)
        counter += 1
    return sorted(chosen)


def _block_range(offset: int, block: int, block_rows: int, n: int, dim: int) -> tuple[int, int]:
    """Byte offset and length of row block ``block``."""
    start = block * block_rows
    if not 0 <= start < n:
        raise ValueError(f"row block {block} is outside the {n} rows")
    return offset + start * dim * 4, (min(n, start + block_rows) - start) * dim * 4


def _integrity_record(path: Path, key: str, shape: tuple[int, int]) -> dict[str, Any]:
    """What a sampled hit checks: size, mtime, header digest and the keyed row blocks' digests."""
    size, mtime_ns, offset = _check_layout(path, shape)
    n, dim = shape
    rows = _block_rows(dim)
    blocks = [[b, _hash_range(path, *_block_range(offset, b, rows, n, dim))]
              for b in _sample_blocks(key, math.ceil(n / rows))]
    return {
        "version": INTEGRITY_VERSION, "file_size": size, "mtime_ns": mtime_ns, "data_offset": offset,
        "header_sha256": _hash_range(path, 0, offset), "block_rows": rows, "blocks": blocks,
    }


def _check_embeddings(path: Path, manifest: dict[str, Any], shape: tuple[int, int], verify: str) -> int | None:
    """Raise ValueError unless ``path`` passes; returns the verified mtime_ns when ``integrity`` needs rewriting.

    Sampled unless ``verify == "full"``, the manifest has no (current) ``integrity`` block or the
    file's mtime differs from the recorded one; see the module docstring for what each catches.
    """
    record = manifest.get("integrity")
    current = isinstance(record, dict) and record.get("version") == INTEGRITY_VERSION
    if current and path.is_file() and (size := path.stat().st_size) != record.get("file_size"):
        # A size change can never pass, so do not hash gigabytes to find out.
        raise ValueError(
            f"file has {size} bytes, the manifest recorded {record.get('file_size')} (truncated or extended)"
        )
    _, mtime_ns, offset = _check_layout(path, shape)
    stale = not current or record.get("mtime_ns") != mtime_ns
    if verify == "full" or stale:
        actual = _sha256_file(path)
        if actual != manifest.get("sha256"):
            raise ValueError(f"sha256 {actual} != recorded {manifest.get('sha256')} (modified)")
        if path.stat().st_mtime_ns != mtime_ns:
            raise ValueError("file changed while it was being verified")
        return mtime_ns if stale else None
    try:
        n, dim = shape
        if record["data_offset"] != offset:
            raise ValueError(f"data starts at byte {offset}, the manifest recorded {record['data_offset']}")
        if _hash_range(path, 0, offset) != record["header_sha256"]:
            raise ValueError("the .npy header differs from the recorded one (modified)")
        for block, digest in record["blocks"]:
            if _hash_range(path, *_block_range(offset, int(block), int(record["block_rows"]), n, dim)) != digest:
                raise ValueError(f"sampled row block {block} fails its sha256 (modified)")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"the manifest's integrity record is malformed ({exc!r})") from None
    return None


def _refresh_integrity(
    edir: Path, manifest: dict[str, Any], shape: tuple[int, int], verified_mtime_ns: int, lock_held: bool
) -> None:
    """Record a fresh ``integrity`` block after a full check passed, so the next hit is sampled again."""
    from filelock import FileLock, Timeout

    path = edir / "embeddings.npy"
    try:
        # Every write into an entry happens under its lock; never wait for it here: a busy lock
        # (an encode in progress) or a read-only cache only means the next hit checks fully again.
        with contextlib.nullcontext() if lock_held else FileLock(str(_lock_path(edir)), timeout=0):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CacheCorruptionWarning)
                if _read_manifest(edir / "manifest.json") != manifest:
                    return  # rewritten since we verified it
            record = _integrity_record(path, manifest["key"], shape)
            if record["mtime_ns"] != verified_mtime_ns:
                return  # replaced since the full check: record nothing
            eio.write_json(edir / "manifest.json", {**manifest, "integrity": record})
    except (Timeout, OSError, ValueError):
        return


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


def _check_verify(verify: str) -> None:
    if verify not in VERIFY_MODES:
        raise ParamsError(f"verify must be one of {', '.join(map(repr, VERIFY_MODES))}, got {verify!r}")


def _lookup(
    edir: Path, expected: dict[str, Any], mmap: bool, verify: str = "sample", lock_held: bool = False
) -> np.ndarray | None:
    """The cached array if the manifest matches ``expected`` exactly and the file verifies."""
    manifest = _read_manifest(edir / "manifest.json")
    if manifest is None:
        return None
    # Everything but the checksums and provenance must equal the request exactly.
    keys = (set(expected) | set(manifest)) - {"sha256", "created_by", "integrity"}
    mismatched = sorted(k for k in keys if manifest.get(k) != expected.get(k))
    if mismatched:
        warnings.warn(
            f"embedding cache manifest {edir / 'manifest.json'} does not match the request "
            f"(fields {mismatched}); it is not served and will be recomputed",
            CacheCorruptionWarning,
            stacklevel=3,
        )
        return None
    path, shape = edir / "embeddings.npy", (expected["n"], expected["dim"])
    try:
        verified_mtime_ns = _check_embeddings(path, manifest, shape, verify)
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if arr.dtype != np.float32 or arr.shape != shape:
            raise ValueError(f"array is {arr.dtype}{arr.shape}, expected float32{shape}")
    except (OSError, ValueError) as exc:
        warnings.warn(
            f"embedding cache file {path} is unusable ({exc}); recomputing", CacheCorruptionWarning, stacklevel=3
        )
        return None
    if verified_mtime_ns is not None:
        _refresh_integrity(edir, manifest, shape, verified_mtime_ns, lock_held)
    return arr


def _lock_path(edir: Path) -> Path:
    # Next to the folder, so removing the folder never races it.
    return Path(str(edir) + ".lock")


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
        return _lock_path(self.edir)

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
    _check_verify(verify)
    if not (plan.edir / "manifest.json").is_file():
        return None
    return _lookup(plan.edir, plan.expected, mmap, verify)


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
        manifest = {
            **plan.expected, "sha256": _sha256_file(final), "created_by": CREATED_BY,
            "integrity": _integrity_record(final, plan.key, (n, dim)),
        }
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
    verify: str = "sample",
) -> np.ndarray | None:
    """Embeddings of ``texts`` from the cache, computing (and storing) them on a miss.

    With ``lookup_only=True`` a miss returns ``None`` instead of encoding (the model is never loaded).
    A hit is checked by size, header and a keyed sample of blocks (``verify="sample"``), or by the
    SHA-256 of the whole file (``verify="full"``, and automatically when the file's mtime changed);
    a damaged entry warns (CacheCorruptionWarning) and is recomputed.
    """
    from filelock import FileLock

    _check_verify(verify)
    if not isinstance(texts, (list, tuple)):
        texts = list(texts)
    plan = plan_entry(encoder, texts, role=role, instructions=instructions, root=root, shard_size=shard_size)
    if plan.n == 0:
        return np.zeros((0, plan.dim), dtype=np.float32)
    edir, expected = plan.edir, plan.expected

    if not force and (edir / "manifest.json").is_file():
        hit = _lookup(edir, expected, mmap, verify)  # lock-free fast path: entries are immutable once written
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
                    hit = _lookup(edir, expected, mmap, verify, lock_held=True)
            if hit is not None:
                return hit
        else:
            _remove_shards(edir)
        _remove_stale_temps(edir)
        _compute(encoder, plan, batch_size=batch_size, progress=progress)
        result = _lookup(edir, expected, mmap, lock_held=True)
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
