"""The ``scaling`` section: encode and search time against input size, log-log slopes, and their figure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from era_core.tools.bench.sizes import BenchSizes
from era_core.tools.bench.texts import bench_passages, bench_words, unit_rows
from era_core.tools.bench.timing import median, time_interleaved
from era_core.io import atomic_write


def loglog_slope(n: Sequence[float], t: Sequence[float]) -> float:
    """Least-squares slope of log(t) against log(n) (1 = linear)."""
    return float(np.polyfit(np.log(np.asarray(n, dtype=float)), np.log(np.asarray(t, dtype=float)), 1)[0])


def _budgeted_points(
    sizes: Sequence[int],
    run: Callable[[int], float],
    repeats: int,
    budget_s: float,
    progress: bool,
    desc: str,
    *,
    warmup: bool = True,
) -> tuple[list[dict[str, float]], list[int]]:
    """Median time of ``run(n)`` for each size, skipping sizes predicted (linearly) to overrun ``budget_s``."""
    points: list[dict[str, float]] = []
    skipped: list[int] = []
    start = time.perf_counter()
    for n in tqdm(sizes, desc=desc, disable=not progress):
        if points:
            last = points[-1]
            predicted = last["s"] * n / last["n"] * (repeats + int(warmup))
            if time.perf_counter() - start + predicted > budget_s:
                skipped.append(n)
                continue
        times, _ = time_interleaved({"era": lambda n=n: run(n)}, repeats, warmup=warmup)
        points.append({"n": n, "s": median(times["era"])})
    return points, skipped


def bench_scaling(sizes: BenchSizes, threads: int, *, progress: bool = False) -> dict[str, Any]:
    """Encode time (minilm-l3-onnx) and search time against input size, with fitted log-log slopes."""
    from era_core.encoders import load_encoder
    from era_core.retrieval import topk_search

    enc = load_encoder("minilm-l3-onnx", threads=threads, progress=False)
    lo, hi = sizes.passage_words
    passages = bench_passages(max(sizes.scaling_encode), bench_words(), min_words=lo, max_words=hi, seed=1)
    enc.encode(passages[:32], progress=False)  # session start and tokenizer load stay out of the points
    # One timed pass per size, no warm-up: the curve's shape over 1k-8k passages is the point, and
    # repeats would cost minutes per point (a ratio never comes from these timings).
    enc_points, enc_skipped = _budgeted_points(
        sizes.scaling_encode, lambda n: enc.encode(passages[:n], progress=False), 1,
        sizes.scaling_budget_s, progress, "scaling encode", warmup=False,
    )
    for p in enc_points:
        p["texts_per_s"] = p["n"] / p["s"]
    rng = np.random.default_rng(3)
    n_q = sizes.search_queries
    queries = unit_rows(n_q, 384, rng)
    corpus = unit_rows(max(sizes.scaling_search), 384, rng)
    search_points, search_skipped = _budgeted_points(
        sizes.scaling_search, lambda n: topk_search(queries, corpus[:n], k=sizes.search_k), sizes.repeats,
        sizes.scaling_budget_s, progress, "scaling search",
    )

    def slope(points: list[dict[str, float]]) -> float | None:
        return loglog_slope([p["n"] for p in points], [p["s"] for p in points]) if len(points) >= 2 else None

    scaling = {
        "encode": {
            "model": "minilm-l3-onnx",
            "max_length": enc.max_length,
            "unit": f"passages ({lo}-{hi} words)",
            "points": enc_points,
            "skipped_for_budget": enc_skipped,
            "slope": slope(enc_points),
        },
        "search": {
            "unit": f"documents (384-d, {n_q} queries, k={sizes.search_k})",
            "points": search_points,
            "skipped_for_budget": search_skipped,
            "slope": slope(search_points),
        },
        "budget_s_per_curve": sizes.scaling_budget_s,
    }
    return {"headline": {"scaling": scaling}, "ok": True}


def plot_scaling(scaling: dict[str, Any], path: Path) -> Path:
    """Log-log plot of the scaling points with a slope-1 reference line; byte-stable PDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, (name, title) in zip(axes, (("encode", "Encoding"), ("search", "Exact top-k search"))):
        part = scaling[name]
        n = np.array([p["n"] for p in part["points"]], dtype=float)
        t = np.array([p["s"] for p in part["points"]], dtype=float)
        fit = "n/a" if part["slope"] is None else f"{part['slope']:.2f}"
        ax.loglog(n, t, "o-", label=f"measured (slope {fit})")
        ax.loglog(n, t[0] * n / n[0], "--", color="grey", label="linear reference (slope 1)")
        ax.set_xlabel(part["unit"])
        ax.set_ylabel("seconds")
        ax.set_title(f"{title}" + (f" ({part['model']})" if "model" in part else ""))
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="pdf", metadata={"CreationDate": None}))
    plt.close(fig)
    return path
