"""The ``cache`` section: an up-to-date ``make paper`` and a fully cached zero-shot rerun that loads no model."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any, Sequence

from era_core import paths
from era_core.tools.bench.sizes import BenchSizes
from era_core.tools.bench.timing import median, time_interleaved


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
    from era_core.data import list_tasks
    from era_core.paper.zero_shot import zero_shot
    from era_core.setup import Setup, forget_encoders, loaded_encoders

    setup = Setup(
        benchmark="offline-smoke",
        tasks=tuple(tasks) if tasks else tuple(list_tasks("offline-smoke")),
        large_model="minilm-l6",
        small_model="minilm-l3-onnx",
        progress=False,
    )
    models = [setup.large_model, setup.small_model]

    def run() -> list[str]:
        # The encoder memo outlives calls; a fresh one shows what this call alone had to load.
        forget_encoders()
        zero_shot(setup, models, instructions="forced", seeds=[42])
        loaded = loaded_encoders()
        forget_encoders()
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
