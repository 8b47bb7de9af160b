"""The benchmarks' data: task records (``tasks``), MAIR (``mair``), BEIR folders (``beir``), the offline builders
(``offline/``), and the one dispatcher ``load_tasks`` / ``list_tasks`` that picks among them by benchmark name."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from era_core.data.mair import BENCHMARKS, HUB_DOCS, HUB_QUERIES, MAIR_TASKS, load_mair_task
from era_core.data.tasks import DOMAINS, DROP_KINDS, DataQualityWarning, Task, Unit, task_of_unit
from era_core.errors import DataError, ParamsError

__all__ = ["BENCHMARKS", "DOMAINS", "DROP_KINDS", "HUB_DOCS", "HUB_QUERIES", "MAIR_TASKS", "DataQualityWarning", "Task",
           "Unit", "list_tasks", "load_mair_task", "load_tasks", "resolve_tasks", "task_of_unit"]


def list_tasks(benchmark: str) -> dict[str, str]:
    """Task → domain of a benchmark (a name, or a MAIR- or BEIR-format folder) in canonical order, loading no data."""
    from .beir import is_folder_benchmark, list_folder_tasks  # lazy: beir imports this module

    if is_folder_benchmark(benchmark):
        return list_folder_tasks(benchmark)
    if benchmark == "mair":
        return dict(MAIR_TASKS)
    if benchmark in ("offline", "offline-smoke"):
        from .offline import offline_task_table  # lazy: offline imports this module

        return offline_task_table(smoke=benchmark == "offline-smoke")
    raise ParamsError(f"Unknown benchmark {benchmark!r}; allowed: {', '.join(BENCHMARKS)}, or the path of a "
                      f"MAIR- or BEIR-format folder.")


def load_tasks(
    benchmark: str,
    tasks: list[str] | None = None,
    *,
    root: Path | None = None,
    progress: bool = True,
    strict: bool = False,
) -> list[Task]:
    """Load several tasks of a benchmark (building the offline benchmark first if missing).

    ``strict`` is passed to :func:`load_mair_task`: drop bad rows with a warning (default) or raise.
    """
    from .beir import is_folder_benchmark, load_folder_tasks

    if is_folder_benchmark(benchmark):
        return load_folder_tasks(benchmark, tasks, strict=strict, progress=progress)
    table = list_tasks(benchmark)
    names = list(table) if tasks is None else list(tasks)
    bad = [t for t in names if t not in table]
    if bad:
        raise DataError(f"Unknown task(s) {bad} for benchmark {benchmark!r}; allowed: {', '.join(table)}.")
    if benchmark != "mair":
        from .offline import build_offline_benchmark

        # Returns at once when a complete build (tasks.json written last) is already there.
        root = build_offline_benchmark(root, smoke=benchmark == "offline-smoke", progress=progress, tasks=names)
    return [load_mair_task(t, root, strict=strict)
            for t in tqdm(names, desc=f"load {benchmark}", disable=not progress)]


def resolve_tasks(benchmark: str, tasks: str) -> list[str]:
    """Turn the ``tasks`` parameter into a list of task names, checked against the benchmark's task table."""
    table = list_tasks(benchmark)
    if tasks.strip() == "all":
        return list(table)
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise ParamsError(f"the task list is empty; give 'all' or comma-separated task names of {benchmark}")
    unknown = [t for t in names if t not in table]
    if unknown:
        raise ParamsError(f"unknown task(s) {unknown} in benchmark {benchmark}; allowed values: {', '.join(table)}")
    return names
