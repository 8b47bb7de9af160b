"""Interleaved timing, medians and ratios, thread pinning, and the environment a run reports."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from era_core.errors import ParamsError


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


def ratio(ref_s: float, ours_s: float) -> float:
    """``ref_s / ours_s`` (> 1: era_core is faster); infinite when era_core took no measurable time."""
    return float(ref_s / ours_s) if ours_s > 0 else float("inf")


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
    from era_core.paper.provenance import describe

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
