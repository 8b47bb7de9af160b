"""The section names, the headline fields bench.json always has, their targets, and the bench's error."""

from __future__ import annotations

from typing import Any

from era_core.errors import EraError

SECTIONS = ("encode", "encode_gemma", "st_runtime", "search", "metrics", "training", "cache", "scaling")

#: Headline fields, their targets and the direction that meets a target.
TARGETS: dict[str, tuple[float, str]] = {
    "encode_vs_st_ratio": (1.2, ">="),
    "search_vs_numpy_ratio": (5.0, ">="),
    # Exact blocked search against faiss's flat index on the same rows: no slower than the library a user would pick.
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
    "st_runtime_switched",
    "st_runtime_measured",
    "search_vs_numpy_ratio",
    "search_vs_faiss_ratio",
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


def target_met(field: str, value: Any) -> bool | None:
    """Whether ``value`` meets ``field``'s target in TARGETS; None when it has no target or no number."""
    target = TARGETS.get(field)
    if target is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value >= target[0] if target[1] == ">=" else value > target[0]
