"""Entry files on disk: paths, the ``.npy`` layout, sampled and full integrity checks, verified loads."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from era_core import io as eio
from era_core.cache.base import VERIFY_MODES, CacheCorruptionWarning
from era_core.errors import CacheError, ParamsError

#: Row blocks a sampled hit hashes (first and last included) and the target size of one block.
SAMPLE_BLOCKS = 8
SAMPLE_BLOCK_BYTES = 1 << 20
#: Version of the manifest's ``integrity`` block (an unknown one triggers a full check and a rewrite).
INTEGRITY_VERSION = 1


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


def sha256_file(path: Path) -> str:
    return _hash_range(path, 0, Path(path).stat().st_size)


def entry_dir(root: Path, model_key: str, key: str) -> Path:
    """Directory of one cache entry."""
    return Path(root) / model_key / key[:2] / key


@contextlib.contextmanager
def disk_guard(what: Path, nbytes: int, root: Path) -> Iterator[None]:
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


def npy_nbytes(rows: int, dim: int) -> int:
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


def integrity_record(path: Path, key: str, shape: tuple[int, int]) -> dict[str, Any]:
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
        actual = sha256_file(path)
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
        with contextlib.nullcontext() if lock_held else FileLock(str(lock_path(edir)), timeout=0):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CacheCorruptionWarning)
                if _read_manifest(edir / "manifest.json") != manifest:
                    return  # rewritten since we verified it
            record = integrity_record(path, manifest["key"], shape)
            if record["mtime_ns"] != verified_mtime_ns:
                return  # replaced since the full check: record nothing
            eio.write_json(edir / "manifest.json", {**manifest, "integrity": record})
    except (Timeout, OSError, ValueError):
        return


def load_verified(path: Path, sha256: str, shape: tuple[int, int], mmap: bool) -> np.ndarray | None:
    """Load a float32 .npy if its checksum and shape match, else warn and return None."""
    try:
        if not path.is_file():
            raise ValueError("file is missing")
        actual = sha256_file(path)
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


def check_verify(verify: str) -> None:
    if verify not in VERIFY_MODES:
        raise ParamsError(f"verify must be one of {', '.join(map(repr, VERIFY_MODES))}, got {verify!r}")


def lookup(
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


def lock_path(edir: Path) -> Path:
    # Next to the folder, so removing the folder never races it.
    return Path(str(edir) + ".lock")
