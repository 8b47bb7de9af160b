"""``python -m era_core.tools.bench``: run the chosen sections, merge them into bench.json, write bench.md and the figure."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from era_core import paths
from era_core.tools.bench.cached_rerun import bench_cache
from era_core.tools.bench.encoder_speed import bench_encode, bench_encode_gemma
from era_core.tools.bench.markdown import render_markdown
from era_core.tools.bench.metric_speed import bench_metrics
from era_core.tools.bench.size_scaling import bench_scaling, plot_scaling
from era_core.tools.bench.search import bench_search
from era_core.tools.bench.sizes import FULL, QUICK
from era_core.tools.bench.st_runtime import bench_st_runtime
from era_core.tools.bench.targets import REQUIRED_FIELDS, SECTIONS
from era_core.tools.bench.timing import apply_threads, environment_info
from era_core.tools.bench.training import bench_training
from era_core.errors import EraError, ParamsError
from era_core.io import atomic_write_text, read_json, write_json


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "encode": bench_encode,
    "encode_gemma": bench_encode_gemma,
    "st_runtime": bench_st_runtime,
    "search": bench_search,
    "metrics": bench_metrics,
    "training": bench_training,
    "cache": bench_cache,
    "scaling": bench_scaling,
}


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
        prog="python -m era_core.tools.bench",
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
