"""The alignment-quality ladder: its table and the figure that places every studied pair on the same axes.

x: Phase 1's query-side cosine (the mapped large query against the small model's own query vector);
y: ERA − the same-model control, test nDCG@10, paired by seed. Ladder rungs come from
``alignment_ladder.json``; the default pair from ``training.json`` and the pair study from
``encoder_pairs.json``, each where its results exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from era_core import paths
from era_core.errors import EraError
from era_core.io import read_json
from era_core.paper.report.style import _figure
from era_core.paper.report.vocab import HEADLINE

LADDER_FILE = "alignment_ladder.json"


def _mean_sd(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if arr.size > 1 else float("nan"))


def load_ladder(results: Path | str = paths.RESULTS) -> dict[str, Any]:
    """``alignment_ladder.json``, or a clear error naming the notebook that writes it."""
    path = Path(results) / LADDER_FILE
    if not path.is_file():
        raise EraError(f"{path} is missing: it is written by notebook 08_alignment_ladder (run it, e.g. with "
                       "`make paper`)")
    return read_json(path)


def ladder_seed_frame(data: dict[str, Any]) -> pd.DataFrame:
    """One row per (width, rung, ratio, seed): Phase 1's cosines, alignment-only, ERA, control, fused, ERA − control."""
    rows = []
    for width in data["widths"]:
        k = width["k"]
        cells = {(c["method"], c["rung"], c["train_ratio"], c["seed"]): c[HEADLINE] for c in width["cells"]}
        for ph in width["phase1"]:
            for ratio in data["train_ratios"]:
                era = cells.get(("era", ph["rung"], ratio, ph["seed"]))
                control = cells.get(("small_adapter", None, ratio, ph["seed"]))
                fused = cells.get(("fused", None, ratio, ph["seed"]))
                if None in (era, control, fused):
                    continue
                rows.append({"k": k, "rung": ph["rung"], "train_ratio": ratio, "seed": ph["seed"],
                             "n_pairs": ph["n_pairs"], "eval_cosine": ph["eval_cosine"],
                             "query_cosine": ph["query_cosine"], "alignment_only": ph["alignment_only"],
                             "era": era, "control": control, "fused": fused, "era_minus_control": era - control})
    return pd.DataFrame(rows)


def alignment_ladder_frame(data: dict[str, Any]) -> pd.DataFrame:
    """The ladder per (width, rung, ratio): mean (and sd over seeds) of every measure of ``ladder_seed_frame``."""
    df = ladder_seed_frame(data)
    if df.empty:
        raise EraError("alignment_ladder.json holds no complete cell (ERA, control and fused); rerun 08_alignment_ladder")
    order = {r: i for i, r in enumerate(data["rungs"])}
    measures = ["eval_cosine", "query_cosine", "alignment_only", "era", "control", "fused", "era_minus_control"]
    g = df.groupby(["k", "rung", "train_ratio"], sort=False)
    out = g[measures].mean().add_suffix("_mean").join(g[["era", "control", "fused", "era_minus_control"]].std(ddof=1)
                                                     .add_suffix("_std")).join(g["seed"].count().rename("seeds"))
    out = out.reset_index()
    out["_o"] = out["rung"].map(order)
    return out.sort_values(["k", "train_ratio", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


def pair_points(results: Path | str) -> list[dict[str, Any]]:
    """ERA − control and Phase 1's query-side cosine of each studied pair (default pair, pair study), per ratio."""
    points: list[dict[str, Any]] = []

    def collect(label: str, runs: list[dict[str, Any]], cosine_of: Any, score_of: Any) -> None:
        by = {(r["method"], float(r["train_ratio"]), r["seed"]): r for r in runs if r.get("train_ratio") is not None}
        for (method, ratio, seed), run in by.items():
            control = by.get(("small_adapter", ratio, seed))
            if method != "era" or control is None or cosine_of(run) is None:
                continue
            points.append({"pair": label, "train_ratio": ratio, "seed": seed, "query_cosine": cosine_of(run),
                           "era_minus_control": score_of(run) - score_of(control)})

    training = Path(results) / "training.json"
    if training.is_file():
        data = read_json(training)
        setting = data["runs"][0]["instructions"] if data["runs"] else None  # the sweep runs its headline first
        runs = [r for r in data["runs"] if r["instructions"] == setting]
        setup = data.get("setup", {})
        label = f"{setup.get('large_model', 'large')}>{setup.get('small_model', 'small')} (main)"
        collect(label, runs, lambda r: (r.get("phase1") or {}).get("query_cosine"),
                lambda r: r["scopes"]["test"]["overall"][HEADLINE])
    pairs = Path(results) / "encoder_pairs.json"
    if pairs.is_file():
        rows = read_json(pairs)["rows"]
        for pair in dict.fromkeys(r["pair"] for r in rows):
            mine = [r for r in rows if r["pair"] == pair]
            collect(pair, mine, lambda r: (r.get("phase1") or {}).get("query_cosine"), lambda r: r["overall"])
    return points


def figure_alignment_ladder(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES) -> Path:
    """``alignment_ladder.pdf``: ERA − control against Phase 1's query-side cosine, one panel per train ratio."""
    data = load_ladder(results)
    ladder = ladder_seed_frame(data)
    if ladder.empty:
        raise EraError("alignment_ladder.json holds no complete cell; rerun 08_alignment_ladder")
    pts = pd.DataFrame(pair_points(results))
    ratios = sorted(set(ladder.train_ratio))
    widths = sorted(set(ladder.k))
    rung_order = {r: i for i, r in enumerate(data["rungs"])}
    pair_names = list(dict.fromkeys(pts["pair"])) if not pts.empty else []
    markers = dict(zip(pair_names, ("s", "D", "^", "v", "P", "X", "*", "<", ">")))
    n_seeds = int(ladder.groupby(["k", "rung", "train_ratio"]).seed.count().max())

    def render() -> plt.Figure:
        fig, axes = plt.subplots(1, len(ratios), figsize=(5.2 * len(ratios), 4.4), sharey=True, squeeze=False)
        for ax, ratio in zip(axes[0], ratios):
            for i, k in enumerate(widths):
                sel = ladder[(ladder.k == k) & (ladder.train_ratio == ratio)]
                g = sel.groupby("rung")[["query_cosine", "era_minus_control"]]
                m, s = g.mean(), g.std(ddof=1)
                m = m.loc[sorted(m.index, key=rung_order.get)]
                s = s.loc[m.index]
                color = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")[i % 4]
                ax.errorbar(m.query_cosine, m.era_minus_control, yerr=None if n_seeds < 2 else s.era_minus_control,
                            color=color, marker="o", ms=4, lw=1.3, capsize=2,
                            label=f"ladder: {data['setup']['query_model']} → first {k} dims")
                for rung, row in m.iterrows() if i == 0 else ():  # the widths share their rungs' names
                    # 'all' and 'exact' both sit near cosine 1: one label below the point, one above.
                    offset = {"all": (-14, -12), "exact": (-24, 7)}.get(rung, (5, 3))
                    ax.annotate(rung, (row.query_cosine, row.era_minus_control), textcoords="offset points",
                                xytext=offset, fontsize=7, color="#333333")
            if not pts.empty:
                for pair in pair_names:
                    sel = pts[(pts.pair == pair) & (pts.train_ratio == ratio)]
                    if sel.empty:
                        continue
                    mx, my = _mean_sd(list(sel.query_cosine)), _mean_sd(list(sel.era_minus_control))
                    ax.errorbar([mx[0]], [my[0]], yerr=None if np.isnan(my[1]) else [my[1]], color="#444444",
                                marker=markers[pair], ms=5, ls="none", capsize=2, label=pair.replace(">", " → "))
            ax.axhline(0.0, color="#888888", lw=1, ls="--")
            ax.set_title(f"train ratio {ratio:g}")
        axes[0][0].set_ylabel("ERA − same-model control (test nDCG@10)")
        fig.supxlabel("Phase 1 query-side cosine: the mapped large query vector against the index model's own "
                      "query vector", fontsize=9)
        axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, framealpha=0.9)
        spread = f"mean ± sd over {n_seeds} seeds" if n_seeds > 1 else "one seed, no error bars"
        fig.suptitle(f"When does ERA pay? ERA minus the control against Phase 1's fit on queries ({spread})",
                     fontsize=10)
        return fig

    return _figure(render, Path(figures) / "alignment_ladder.pdf")
