"""Deterministic bench inputs: real smoke-corpus words and queries, passages cut from them, random unit rows."""

from __future__ import annotations

import numpy as np


def bench_words() -> list[str]:
    """The words of the offline smoke corpus (real code, docs and medical text), in corpus order."""
    from era_core.data import load_tasks

    words: list[str] = []
    for task in load_tasks("offline-smoke", progress=False):
        for unit in task.units():
            for doc in unit.corpus.values():
                words.extend(doc.split())
    return words


def bench_queries(n: int) -> list[str]:
    """``n`` real queries of the offline smoke benchmark (cycled when more are asked for)."""
    from era_core.data import load_tasks

    pool = [q for t in load_tasks("offline-smoke", progress=False) for u in t.units() for q in u.queries.values()]
    return [pool[i % len(pool)] for i in range(n)]


def bench_passages(n: int, words: list[str], *, min_words: int = 150, max_words: int = 250, seed: int = 0) -> list[str]:
    """``n`` deterministic ~200-word passages: consecutive windows of ``words`` (wrapping around)."""
    rng = np.random.default_rng(seed)
    out, pos = [], 0
    for length in rng.integers(min_words, max_words + 1, size=n):
        idx = (pos + np.arange(int(length))) % len(words)
        out.append(" ".join(words[i] for i in idx))
        pos += int(length)
    return out


def unit_rows(n: int, dim: int, rng: np.random.Generator, *, chunk: int = 16384) -> np.ndarray:
    """``n`` random unit-norm float32 rows, filled in chunks so no full-size temporary exists."""
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - s), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[s : s + len(block)] = block
    return out
