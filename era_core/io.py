"""Atomic, deterministic writers: every artefact of the package goes through these."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np


def _process_umask() -> int:
    """The process umask (read once: ``os.umask`` can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_process_umask()


def atomic_write(path: Path | str, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` on a temporary file next to ``path``, fsync it, then rename it into place.

    A crash (or SIGKILL) at any point leaves either the old file or the new one, never a
    truncated target. The temporary file is ``.<name>.<random>.tmp`` in the target's folder; a
    SIGKILL can leave one behind (never under the target's name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        try:
            # mkstemp creates 0600 files; give the target the mode a plain open() would (0644
            # under the usual umask) so results, figures and shared caches stay readable by others.
            os.fchmod(fd, _FILE_MODE)
        finally:
            os.close(fd)
        writer(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Atomically write bytes to ``path``."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Atomically write UTF-8 text to ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def dumps_json(obj: Any) -> str:
    """Serialise ``obj`` deterministically (sorted keys, 2-space indent, trailing newline)."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, default=_json_default) + "\n"


def write_json(path: Path | str, obj: Any) -> Path:
    """Atomically write ``obj`` as deterministic JSON."""
    return atomic_write_text(path, dumps_json(obj))


def read_json(path: Path | str) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def save_npy(path: Path | str, array: np.ndarray) -> Path:
    """Atomically save an array as ``.npy`` (so it can be memory-mapped later)."""

    def _w(p: Path) -> None:
        with open(p, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    return atomic_write(path, _w)


def sha256_file(path: Path | str, chunk: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file's bytes, read in chunks (never memoised: it is an integrity check)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
