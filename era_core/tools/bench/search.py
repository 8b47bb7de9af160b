"""The ``search`` section: ``topk_search`` vs a NumPy full sort and ``faiss.IndexFlatIP``, ids compared."""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from era_core.tools.bench.memory import search_memory
from era_core.tools.bench.sizes import BenchSizes
from era_core.tools.bench.texts import unit_rows
from era_core.tools.bench.timing import median, ratio, time_interleaved


def numpy_full_sort(queries: np.ndarray, corpus: np.ndarray, k: int, *, block: int = 128) -> np.ndarray:
    """The naive reference: full score matrix, full argsort per row (in query blocks to bound memory)."""
    out = np.empty((len(queries), min(k, len(corpus))), dtype=np.int64)
    for s in range(0, len(queries), block):
        scores = queries[s : s + block] @ corpus.T
        out[s : s + block] = np.argsort(-scores, axis=1)[:, :k]
    return out


def compare_ids(ours: np.ndarray, ref: np.ndarray, queries: np.ndarray, corpus: np.ndarray) -> dict[str, int]:
    """Positions where two top-k id lists differ, and how many of those are not score ties."""
    diff_rows, diff_cols = np.nonzero(ours != ref)
    q = queries[diff_rows].astype(np.float64)
    s_ours = np.einsum("ij,ij->i", q, corpus[ours[diff_rows, diff_cols]].astype(np.float64))
    s_ref = np.einsum("ij,ij->i", q, corpus[ref[diff_rows, diff_cols]].astype(np.float64))
    # float32 scores from differently blocked sgemm calls may differ in the last bits.
    not_tie = np.abs(s_ours - s_ref) > 1e-6
    return {"positions_differing": int(len(diff_rows)), "not_ties": int(not_tie.sum())}


def compare_at_size(queries: np.ndarray, corpus: np.ndarray, k: int, repeats: int) -> dict[str, Any]:
    """Times, ratios and id agreement of era_core, NumPy and faiss on one corpus size."""
    import faiss

    from era_core.retrieval import topk_search

    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(corpus)
    times, res = time_interleaved(
        {
            "era": lambda: topk_search(queries, corpus, k=k)[1],
            "numpy": lambda: numpy_full_sort(queries, corpus, k),
            "faiss": lambda: index.search(queries, k)[1],
        },
        repeats,
    )
    t = {name: median(v) for name, v in times.items()}
    return {
        "docs": len(corpus),
        "era_s": t["era"],
        "numpy_s": t["numpy"],
        "faiss_s": t["faiss"],
        "vs_numpy_ratio": ratio(t["numpy"], t["era"]),
        "vs_faiss_ratio": ratio(t["faiss"], t["era"]),
        "ids_vs_numpy": compare_ids(res["era"], res["numpy"], queries, corpus),
        "ids_vs_faiss": compare_ids(res["era"], res["faiss"].astype(np.int64), queries, corpus),
        "times_s": times,
    }


def bench_search(sizes: BenchSizes, threads: int, *, progress: bool = False) -> dict[str, Any]:
    """``topk_search`` vs a NumPy full sort and faiss IndexFlatIP; ids compared; 1M-doc peak RSS."""
    import faiss  # noqa: F401  (missing faiss fails the section before any corpus is built)

    rng = np.random.default_rng(0)
    dim, k = 384, sizes.search_k
    queries = unit_rows(sizes.search_queries, dim, rng)
    corpus_all = unit_rows(max(sizes.search_docs), dim, rng)
    out: dict[str, Any] = {"dim": dim, "k": k, "queries": len(queries), "repeats": sizes.repeats, "sizes": {}}
    for n in tqdm(sizes.search_docs, desc="search sizes", disable=not progress):
        out["sizes"][str(n)] = compare_at_size(queries, corpus_all[:n], k, sizes.repeats)
    ok = all(v["ids_vs_numpy"]["not_ties"] == 0 and v["ids_vs_faiss"]["not_ties"] == 0 for v in out["sizes"].values())
    largest = out["sizes"][str(max(sizes.search_docs))]
    mem = search_memory(sizes.memory_docs, dim, sizes.search_queries, k, threads)
    out["memory"] = mem
    # The targets hold at every size, so the headline is the worst size.
    out["headline"] = {
        "search_vs_numpy_ratio": min(v["vs_numpy_ratio"] for v in out["sizes"].values()),
        "search_vs_faiss_ratio": min(v["vs_faiss_ratio"] for v in out["sizes"].values()),
        "search_peak_rss_mb_1m": mem["peak_rss_mb"],
        "search_memory_docs": mem["docs"],  # 1M in the full run; smaller with --quick
    }
    out["ratio_size"] = largest["docs"]
    out["ok"] = ok
    if not ok:
        out["error"] = "topk_search ids differ from numpy/faiss at positions that are not score ties"
    return out
