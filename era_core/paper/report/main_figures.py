"""Figures of the main sweep: nDCG@10 vs train ratio, per-domain bars, instructions on/off, cost vs quality."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from era_core import paths
from era_core.errors import EraError
from era_core.paper.report.frames import _series, _with_labels, main_frame, main_seed_frame, main_view
from era_core.paper.report.load import load_results
from era_core.paper.report.style import ERRORBAR, ERRORBAR_TEXT, METHOD_COLORS, _bars, _draw, _figure
from era_core.paper.report.vocab import (INSTRUCTION_SETTINGS, LABEL_METHODS, METHOD_LABELS, METHODS, OVERALL, QUERY_SIDE, SHORT_LABELS,
                    _VALUE_COLS, _check_instructions, _domains)


def _check_ratio(view: pd.DataFrame, ratio: float) -> None:
    ratios = sorted(set(view.train_ratio.dropna()))
    if not any(np.isclose(ratio, r) for r in ratios):
        raise EraError(f"bar_ratio={ratio} was not trained; trained ratios: {ratios}; set bar_ratio to one "
                       f"of them or rerun 03_training with it")


def _at_ratio(view: pd.DataFrame, ratio: float) -> pd.DataFrame:
    """Rows of label-free methods plus label methods at ``ratio``."""
    keep = view.train_ratio.isna() | np.isclose(view.train_ratio.fillna(-1.0), ratio)
    return view[keep]


def figure_ndcg_vs_ratio(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES,
                         main_instructions: str = "native") -> list[Path]:
    """``ndcg_vs_ratio.{pdf,png}``: overall nDCG@10 vs train ratio, mean and ±1 sd band over seeds (seaborn);
    zero-shot and alignment-only (no labels) as horizontal lines at their means.

    The PNG is the README's figure (``python -m era_core.tools.readme`` copies it to ``docs/img/``).
    """
    seeds = _series(main_seed_frame(results, main_instructions), domain=OVERALL)
    view = _series(main_view(results, main_instructions), domain=OVERALL)
    mean = _VALUE_COLS[0]
    labelled = seeds[seeds.method.isin(LABEL_METHODS)].assign(Method=lambda d: d.Method.astype(str))
    present = [m for m in METHODS if m in set(view.method)]

    def render() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ratios = sorted(set(labelled.train_ratio.dropna()))
        trained = [METHOD_LABELS[m] for m in LABEL_METHODS if m in present]
        if trained:
            sns.lineplot(data=labelled, x="train_ratio", y="value", hue="Method", hue_order=trained,
                         palette={METHOD_LABELS[m]: METHOD_COLORS[m] for m in LABEL_METHODS}, errorbar=ERRORBAR,
                         marker="o", lw=1.8, err_kws={"alpha": 0.18, "lw": 0}, legend=False, ax=ax)
        styles = {"zero_shot_small": "--", "zero_shot_large": "--", "alignment_only": ":"}
        for m, ls in styles.items():
            s = _series(view, method=m)
            if not s.empty:
                ax.axhline(float(s[mean].iloc[0]), color=METHOD_COLORS[m], ls=ls, lw=1.4)
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=METHOD_COLORS[m], ls=styles.get(m, "-"), marker=None if m in styles else "o",
                          lw=1.6, label=METHOD_LABELS[m]) for m in present]
        ax.set_xticks(ratios)
        ax.set_xticklabels([f"{r:g}" for r in ratios])
        ax.set_xlabel("Fraction of labelled queries used for training (train ratio)")
        ax.set_ylabel("nDCG@10 (test split, macro over tasks)")
        ax.set_title(f"Retrieval quality vs. labelled data (instructions {main_instructions})")
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), framealpha=0.9,
                  title=f"band: {ERRORBAR_TEXT}", title_fontsize=8)
        return fig

    return _draw(render, Path(figures) / "ndcg_vs_ratio.pdf", png=Path(figures) / "ndcg_vs_ratio.png")


def figure_domain_bars(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES,
                       bar_ratio: float = 0.4, main_instructions: str = "native") -> Path:
    """``domain_bars.pdf``: per-domain nDCG@10 of every method at ``bar_ratio``, error bars ±1 sd over seeds."""
    seeds = main_seed_frame(results, main_instructions)
    _check_ratio(seeds, bar_ratio)
    seeds = _at_ratio(seeds, bar_ratio)
    groups = _domains(seeds.domain) + [OVERALL]
    seeds = seeds[seeds.domain.isin(groups)]
    present = [METHOD_LABELS[m] for m in METHODS if m in set(seeds.method)]

    def render() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(max(6.4, 1.25 * len(groups) + 2.5), 4.2))
        _bars(ax, seeds, "domain", groups, "Method", present, {METHOD_LABELS[m]: c for m, c in METHOD_COLORS.items()})
        ax.set_xlabel("Domain")
        ax.set_ylabel(f"nDCG@10 (test split; {ERRORBAR_TEXT})")
        ax.set_title(f"nDCG@10 per domain (train ratio {bar_ratio:g}, instructions {main_instructions})")
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), framealpha=0.9, title=None)
        return fig

    return _figure(render, Path(figures) / "domain_bars.pdf")


def figure_instructions(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES,
                        bar_ratio: float = 0.4) -> Path:
    """``instructions.pdf``: overall nDCG@10 with vs without query instructions, per method at ``bar_ratio``."""
    long = main_frame(results)
    have = sorted(set(long.instructions))
    if have != sorted(INSTRUCTION_SETTINGS):
        raise EraError(f"instructions.pdf compares instruction settings but the results only hold {have}; "
                       f"rerun 01_zero_shot and 03_training with instruction_settings='native,forced'")
    _check_ratio(long, bar_ratio)
    seeds = pd.concat([main_seed_frame(results, inst) for inst in INSTRUCTION_SETTINGS], ignore_index=True)
    seeds = _series(_at_ratio(seeds, bar_ratio), domain=OVERALL)
    methods = [m for m in METHODS if m in set(seeds.method)]
    seeds = seeds.assign(Short=[SHORT_LABELS[m] for m in seeds.method])

    def render() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(7.2, 4.2))
        _bars(ax, seeds, "Short", [SHORT_LABELS[m] for m in methods], "instructions", list(INSTRUCTION_SETTINGS),
              {"native": "#1f77b4", "forced": "#aec7e8"})
        ax.set_xlabel("Method")
        ax.set_ylabel(f"nDCG@10 (test split, overall; {ERRORBAR_TEXT})")
        ax.set_title(f"Effect of query instructions (train ratio {bar_ratio:g})")
        sns.move_legend(ax, "upper left", framealpha=0.9, title="instructions")
        return fig

    return _figure(render, Path(figures) / "instructions.pdf")


def _two_sig(v: float) -> float:
    """``v`` rounded to 2 significant figures: measured times vary run to run, the figure's bytes should not."""
    return float(f"{v:.2g}")


def query_costs(results: Path | str = paths.RESULTS, main_instructions: str = "native") -> dict[str, float]:
    """Measured query cost (ms/query, 2 significant figures) of each method's query side, from ``timing/``.

    Documents are encoded once, offline, so a method's serving cost is the time to embed a query:
    the small model's, the large model's, or both (fused). The adapter's matrix product is not
    included (it is far below either encoder's time).
    """
    zs = load_results("zero_shot", results)
    timing = load_results("timing", results)["query_ms_per_query"]
    _check_instructions(main_instructions)
    if main_instructions in timing:
        ms = timing[main_instructions]
    elif len(timing) == 1:
        ms = next(iter(timing.values()))
    else:
        raise EraError(f"timing/zero_shot.json has settings {sorted(timing)}, not {main_instructions!r}")
    setup = zs["setup"]
    try:
        small, large = float(ms[setup["small_model"]]), float(ms[setup["large_model"]])
    except KeyError as exc:
        raise EraError(f"timing/zero_shot.json lacks the query time of {exc}; rerun 01_zero_shot") from None
    side = {"small": small, "large": large, "large+small": large + small}
    costs = {m: _two_sig(side[QUERY_SIDE[m]]) for m in METHODS}
    if min(costs.values()) <= 0:
        raise EraError(f"timing/zero_shot.json holds a non-positive query time ({ms}); rerun 01_zero_shot")
    return costs


def figure_cost_quality(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES,
                        main_instructions: str = "native") -> Path:
    """``cost_quality.pdf``: measured query cost (ms/query, log x) vs overall nDCG@10 (±1 sd) for every method."""
    zs = load_results("zero_shot", results)
    costs = query_costs(results, main_instructions)
    view = _series(main_view(results, main_instructions), domain=OVERALL)
    mean, std = _VALUE_COLS[0], _VALUE_COLS[1]
    points = _with_labels(view.assign(ms=[costs[m] for m in view.method]))
    markers = {"zero_shot_small": "s", "zero_shot_large": "s", "alignment_only": "D", "label_only": "^",
               "era": "o", "small_adapter": "v", "fused": "P", "embedding_adapter": "<"}
    # A re-mined variant costs what its base method costs: it would sit on top of it.
    present = [m for m in METHODS if m in set(points.method) and m in markers]
    # One point per method: the trained ones at the largest train ratio (ndcg_vs_ratio.pdf has the others), so
    # that no two labels of one method stack at its single query cost.
    top = float(points.train_ratio.max())
    points = points[points.method.isin(present) & (points.train_ratio.isna() | (points.train_ratio == top))]
    setup = zs["setup"]

    def render() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(6.8, 4.6))
        sns.scatterplot(data=points.assign(Method=points.Method.astype(str)), x="ms", y=mean, hue="Method",
                        hue_order=[METHOD_LABELS[m] for m in present], style="Method",
                        style_order=[METHOD_LABELS[m] for m in present],
                        markers={METHOD_LABELS[m]: markers[m] for m in present},
                        palette={METHOD_LABELS[m]: METHOD_COLORS[m] for m in present}, s=55, alpha=0.9, ax=ax)
        for m in present:
            s = _series(points, method=m).sort_values("train_ratio")
            ax.errorbar(s.ms, s[mean], yerr=np.nan_to_num(s[std].to_numpy()), fmt="none", ecolor=METHOD_COLORS[m],
                        elinewidth=0.8, capsize=2)
            if m in ("zero_shot_small", "zero_shot_large"):
                key = setup["small_model" if m == "zero_shot_small" else "large_model"]
                # Above the point: the legend sits right of the axes and ratio labels go left.
                ax.annotate(f"{key} ({costs[m]:g} ms)", (float(s.ms.iloc[0]), float(s[mean].iloc[0])), xytext=(0, 8),
                            textcoords="offset points", fontsize=7, va="bottom", ha="center", color=METHOD_COLORS[m])
        ax.set_xscale("log")
        lo, hi = min(costs[m] for m in present), max(costs[m] for m in present)
        ax.set_xlim(lo / 3.0, hi * 3.0)
        ax.set_xlabel("Measured query cost (ms per query, log scale; 2 significant figures)")
        ax.set_ylabel(f"nDCG@10 (test split, overall; {ERRORBAR_TEXT})")
        ax.set_title(f"Cost vs. quality (instructions {main_instructions}; trained methods at train ratio {top:g})")
        # Below the axes, so the note never hides a point.
        ax.text(0.5, -0.16, "Query cost = measured query-encoder time (01_zero_shot); documents are indexed once "
                "with the small model.\nERA, Embedding Adapter and alignment-only use the large model, the small "
                "adapter the small one, fused both.", transform=ax.transAxes, fontsize=7.5, va="top", ha="center",
                color="#333333")
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), framealpha=0.9, title=None)
        return fig

    return _figure(render, Path(figures) / "cost_quality.pdf")
