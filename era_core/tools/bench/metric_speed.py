"""The ``metrics`` section: ``metrics.evaluate`` vs ``pytrec_eval`` on a seeded synthetic run, values compared."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from era_core.tools.bench.sizes import BenchSizes
from era_core.tools.bench.timing import median, ratio, time_interleaved


def synthetic_run(n_queries: int, depth: int, seed: int = 0) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """Seeded qrels and a top-``depth`` run shaped like a retrieval run (graded labels, score ties)."""
    rng = np.random.default_rng(seed)
    doc_nums = rng.integers(0, 10**9, size=(n_queries, depth))
    # Three decimals give a few tied scores per query, exercising the tie-breaking by doc id.
    scores = np.round(np.sort(rng.random((n_queries, depth)))[:, ::-1], 3)
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for i in range(n_queries):
        qid = f"q{i}"
        ids = [f"d{x}" for x in doc_nums[i].tolist()]
        run[qid] = dict(zip(ids, scores[i].tolist()))
        judged: dict[str, int] = {}
        for _ in range(int(rng.integers(1, 6))):
            # Most relevant documents were retrieved somewhere in the run, some were missed.
            doc = ids[int(rng.integers(0, depth))] if rng.random() < 0.7 else f"m{int(rng.integers(0, 10**9))}"
            judged[doc] = int(rng.integers(1, 3))
        for _ in range(2):
            judged.setdefault(ids[int(rng.integers(0, depth))], 0)  # judged non-relevant
        qrels[qid] = judged
    return qrels, run


def _pytrec_names(ks: Sequence[int]) -> dict[str, str]:
    names = {f"ndcg@{k}": f"ndcg_cut_{k}" for k in ks}
    names.update({f"recall@{k}": f"recall_{k}" for k in ks})
    names.update({"mrr": "recip_rank", "map": "map"})
    return names


def bench_metrics(sizes: BenchSizes, threads: int, *, progress: bool = False) -> dict[str, Any]:
    """``metrics.evaluate`` vs ``pytrec_eval.RelevanceEvaluator`` (construction + evaluate) on one run."""
    import pytrec_eval

    from era_core.metrics import DEFAULT_K_VALUES, evaluate

    ks = DEFAULT_K_VALUES
    cut = ",".join(str(k) for k in ks)
    measures = {f"ndcg_cut.{cut}", f"recall.{cut}", "recip_rank", "map"}
    qrels, run = synthetic_run(sizes.metrics_queries, sizes.metrics_depth)

    def reference() -> dict:
        return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)

    times, res = time_interleaved({"era": lambda: evaluate(qrels, run, ks), "pytrec": reference}, sizes.repeats)
    ours, ref = res["era"], res["pytrec"]
    names = _pytrec_names(ks)
    same_queries = set(ours) == set(ref)
    max_diff = max(
        (abs(ours[q][m] - ref[q][pm]) for q in ours if q in ref for m, pm in names.items()), default=float("nan")
    )
    t_era, t_ref = median(times["era"]), median(times["pytrec"])
    ok = same_queries and max_diff <= 1e-9
    out = {
        "queries": sizes.metrics_queries,
        "depth": sizes.metrics_depth,
        "metrics": list(names),
        "era_s": t_era,
        "pytrec_s": t_ref,
        "ratio": ratio(t_ref, t_era),
        "max_abs_diff": max_diff,
        "same_queries": same_queries,
        "times_s": times,
        "headline": {"metrics_vs_pytrec_ratio": ratio(t_ref, t_era), "metrics_max_abs_diff": max_diff},
        "ok": ok,
    }
    if not ok:
        out["error"] = f"metrics differ from pytrec_eval: max abs diff {max_diff}, same query set: {same_queries}"
    return out
