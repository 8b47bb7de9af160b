"""Paired significance of the main table: every method against each baseline, over test queries, Holm-corrected.

The unit of analysis is a query. The test split is redrawn with each seed, so a query is a test
query under some seeds only; its difference is the mean, over the seeds where it is a test query,
of (method − baseline) nDCG@10 for the adapters and baselines of that seed. Each query then enters
the paired test once, however many seeds scored it. The family that Holm's correction covers is
every (method, train ratio, baseline) comparison of one instruction setting.

Reads ``results/`` only (zero_shot.json, training.json and the runs' per_query.json); writes plain
results that ``report`` renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from era_core.paper import stats
from era_core.errors import EraError
from era_core.paper.runs import PER_QUERY_FILE, make_run_id, run_dir
from era_core.io import read_json

BASELINES = ("zero_shot_small", "small_adapter", "zero_shot_large")
PerQuery = dict[str, dict[str, float]]  # {unit: {qid: nDCG@10}}


def _zero_shot_per_query(results: Path, instructions: str) -> dict[str, dict[int, PerQuery]]:
    """``{zero_shot_small|zero_shot_large: {seed: per-query test values}}`` from zero_shot.json."""
    data = read_json(results / "zero_shot.json")
    roles = {data["setup"]["small_model"]: ["zero_shot_small"], data["setup"]["large_model"]: ["zero_shot_large"]}
    if data["setup"]["small_model"] == data["setup"]["large_model"]:
        roles = {data["setup"]["small_model"]: ["zero_shot_small", "zero_shot_large"]}
    out: dict[str, dict[int, PerQuery]] = {}
    for rec in data["records"]:
        if rec["scope"] == "test" and rec["instructions"] == instructions and rec["encoder"] in roles:
            if "per_query" not in rec:
                raise EraError(f"{results / 'zero_shot.json'} has no per-query values; rerun 01_zero_shot")
            for role in roles[rec["encoder"]]:
                out.setdefault(role, {})[int(rec["seed"])] = rec["per_query"]
    return out


def _run_per_query(results: Path, instructions: str) -> dict[tuple[str, float], dict[int, PerQuery]]:
    """``{(method, train ratio): {seed: per-query test values}}`` of the in-domain runs in training.json."""
    out: dict[tuple[str, float], dict[int, PerQuery]] = {}
    for run in read_json(results / "training.json")["runs"]:
        if run["instructions"] != instructions:
            continue
        run_id = make_run_id(run["method"], instructions, run["train_ratio"], run["seed"], {})
        path = run_dir(results, "in_domain", run_id) / PER_QUERY_FILE
        if not path.exists():
            raise EraError(f"{path} is missing; rerun 03_training (`make paper`) to write per-query values")
        out.setdefault((run["method"], float(run["train_ratio"])), {})[int(run["seed"])] = read_json(path)
    # Phase 1 alone ignores the train ratio: keep one copy so the family holds each comparison once.
    ratios = sorted(r for m, r in out if m == "alignment_only")
    for r in ratios[1:]:
        del out[("alignment_only", r)]
    return out


def query_differences(method: dict[int, PerQuery], baseline: dict[int, PerQuery]) -> np.ndarray:
    """Per-query mean over shared seeds of (method − baseline), one value per (unit, qid) scored by both."""
    sums: dict[tuple[str, str], list[float]] = {}
    for seed in sorted(set(method) & set(baseline)):
        for unit, rows in method[seed].items():
            other = baseline[seed].get(unit, {})
            for qid, v in rows.items():
                if qid in other:
                    sums.setdefault((unit, qid), []).append(v - other[qid])
    if not sums:
        raise EraError("no test query is scored by both sides of a comparison; do the seeds of 01 and 03 match?")
    return np.array([np.mean(sums[k]) for k in sorted(sums)], dtype=np.float64)


def main_significance(results: Path | str, instructions: str = "native", *, n_resamples: int = 10_000,
                      seed: int = 0, alpha: float = 0.05) -> dict[str, Any]:
    """Every method (and ratio) of the main table against each baseline: mean difference, p, Holm-adjusted p."""
    results = Path(results)
    zero = _zero_shot_per_query(results, instructions)
    runs = _run_per_query(results, instructions)
    rows: list[dict[str, Any]] = []
    candidates = [(m, None, v) for m, v in zero.items()] + [(m, r, v) for (m, r), v in sorted(runs.items())]
    for method, ratio, values in candidates:
        for base in BASELINES:
            if base == method:
                continue
            if base == "small_adapter":
                if ratio is None or ("small_adapter", ratio) not in runs:
                    continue
                base_values = runs[("small_adapter", ratio)]
            else:
                base_values = zero[base]
            diffs = query_differences(values, base_values)
            rows.append({"method": method, "train_ratio": ratio, "baseline": base, "n_queries": int(len(diffs)),
                         "mean_diff": float(diffs.mean()),
                         "p_value": stats.randomisation_p_value(diffs, n_resamples=n_resamples, seed=seed)})
    adjusted = stats.holm([r["p_value"] for r in rows])
    for r, p_adj in zip(rows, adjusted):
        r["p_holm"] = float(p_adj)
        r["significant"] = bool(p_adj < alpha)
    return {"instructions": instructions, "alpha": alpha, "n_resamples": n_resamples, "seed": seed,
            "test": "paired randomisation (sign-flip) test over test queries, two-sided; Holm correction over "
                    "every comparison listed", "unit": "query (difference averaged over the seeds that scored it)",
            "comparisons": rows}
