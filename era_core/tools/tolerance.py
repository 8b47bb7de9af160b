"""How far two runs of the same parameters may differ: main-table means of two results folders, side by side.

Used to turn "bytes match only within one CPU kernel family" into a measured tolerance: run the same
profile twice with one thing changed (fp32 against bf16 autocast, or two CPUs), then compare. Each
method's largest move is set beside its own spread over seeds, because a move smaller than the
spread cannot change a conclusion drawn from mean ± sd. Reads results only; writes a plain JSON.

    python -m era_core.tools.tolerance --a /tmp/tol/float32 --b /tmp/tol/auto --label "fp32 vs bf16 autocast" \
        --out results/tolerance.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from era_core.errors import EraError
from era_core.io import read_json, write_json

KEYS = ["method", "train_ratio", "instructions", "domain"]
MEAN, STD = "ndcg@10_mean", "ndcg@10_std"


def compare_frames(a: pd.DataFrame, b: pd.DataFrame) -> list[dict[str, Any]]:
    """Per method: the largest |mean_a − mean_b| overall and in any domain, and the largest seed sd overall."""
    merged = a.merge(b, on=KEYS, suffixes=("_a", "_b"), how="inner")
    if merged.empty:
        raise EraError("the two results folders share no (method, ratio, instructions, domain) cell; "
                       "compare runs of the same profile and parameters")
    merged["diff"] = (merged[f"{MEAN}_a"] - merged[f"{MEAN}_b"]).abs()
    merged["spread"] = merged[[f"{STD}_a", f"{STD}_b"]].max(axis=1)
    rows = []
    for method, g in merged.groupby("method", sort=False):
        overall = g[g["domain"] == "overall"]
        domains = g[~g["domain"].isin(["overall", "overall_query_weighted"])]
        spread = overall["spread"].max()
        rows.append({
            "method": method,
            "max_abs_diff_overall": float(overall["diff"].max()) if len(overall) else None,
            "max_abs_diff_domain": float(domains["diff"].max()) if len(domains) else None,
            "max_seed_sd_overall": None if pd.isna(spread) else float(spread),
        })
    return rows


def compare_results(a: Path | str, b: Path | str, label: str) -> dict[str, Any]:
    """Compare the main-table frames of two results folders (``report.main_frame``)."""
    from era_core.paper.report import main_frame

    rows = compare_frames(main_frame(a), main_frame(b))
    exceeds = [r["method"] for r in rows
               if r["max_seed_sd_overall"] is not None and r["max_abs_diff_overall"] is not None
               and r["max_abs_diff_overall"] > r["max_seed_sd_overall"]]
    worst = max((r["max_abs_diff_overall"] or 0.0) for r in rows)
    return {"label": label, "a": str(a), "b": str(b), "methods": rows,
            "max_abs_diff_overall": float(np.round(worst, 6)), "methods_moving_more_than_their_seed_sd": exceeds}


def add_comparison(out: Path | str, comparison: dict[str, Any]) -> Path:
    """Add (or replace, by label) one comparison in the tolerance file."""
    out = Path(out)
    data = read_json(out) if out.is_file() else {"comparisons": []}
    data["comparisons"] = [c for c in data["comparisons"] if c["label"] != comparison["label"]] + [comparison]
    return write_json(out, data)


def main(argv: list[str] | None = None) -> int:
    """CLI: compare two results folders and record the comparison."""
    ap = argparse.ArgumentParser(prog="python -m era_core.tools.tolerance", description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="first results folder (holds zero_shot.json and training.json)")
    ap.add_argument("--b", required=True, help="second results folder, same profile and parameters")
    ap.add_argument("--label", required=True, help="what differs between the two, e.g. 'fp32 vs bf16 autocast'")
    ap.add_argument("--out", default="results/tolerance.json", help="file to add the comparison to (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        path = add_comparison(args.out, compare_results(args.a, args.b, args.label))
    except EraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
