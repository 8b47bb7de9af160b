"""Peak RSS of ``topk_search`` over a large corpus, measured in a fresh subprocess (``search`` section)."""

from __future__ import annotations

import contextlib
import gc
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from era_core import paths
from era_core.tools.bench.targets import BenchmarkError
from era_core.tools.bench.texts import unit_rows


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
    code = f"from era_core.tools.bench.memory import _memory_child; _memory_child({n_docs}, {dim}, {n_queries}, {k}, {threads})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=paths.ROOT)
    if proc.returncode != 0:
        raise BenchmarkError(
            f"the {n_docs}-document memory subprocess failed (exit {proc.returncode}); stderr tail:\n{proc.stderr[-2000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])
