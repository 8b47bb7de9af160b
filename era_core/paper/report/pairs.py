"""The encoder-pair study: its per-seed and aggregated frames, its table and its gap-closed figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from era_core import paths

from era_core.paper import stats
from era_core.errors import EraError
from era_core.io import atomic_write_text
from era_core.paper.report.frames import _one_setting
from era_core.paper.report.load import load_results
from era_core.paper.report.style import ERRORBAR, ERRORBAR_TEXT, METHOD_COLORS, _figure
from era_core.paper.report.tables import _write_csv
from era_core.paper.report.vocab import METHOD_LABELS, METHODS


def encoder_pairs_seed_frame(results: Path | str = paths.RESULTS) -> pd.DataFrame:
    """Per-seed rows of the encoder-pair study with the two ratios to its own zero-shot references.

    ``delta_vs_small`` = method − zero-shot small→small; ``gap_closed`` = (method − zero-shot small)
    / (zero-shot large − zero-shot small) (:func:`era_core.paper.stats.gap_closed`, NaN without a gap);
    ``recovered_share`` = method / zero-shot large→large (:func:`era_core.paper.stats.recovered_share`).
    All on the same pair, instruction setting, seed and test split.
    """
    data = load_results("encoder_pairs", results)
    df = pd.DataFrame(data["rows"])
    if df.empty:
        raise EraError("encoder_pairs.json holds no rows; rerun 07_encoder_pairs")
    keys = ["pair", "instructions", "seed"]

    def ref(method: str) -> pd.Series:
        return df[df["method"] == method].set_index(keys)["overall"]

    small, large = ref("zero_shot_small"), ref("zero_shot_large")
    idx = list(zip(df["pair"], df["instructions"], df["seed"]))
    missing = [k for k in idx if k not in small.index]
    if missing:
        raise EraError(f"encoder_pairs.json has no zero_shot_small row for (pair, instructions, seed)={missing[0]}; "
                       f"rerun 07_encoder_pairs")
    zs_small = np.array([small[k] for k in idx], dtype=float)
    zs_large = np.array([large[k] if k in large.index else np.nan for k in idx], dtype=float)
    overall = df["overall"].to_numpy(dtype=float)
    return df.assign(delta_vs_small=overall - zs_small,
                     gap_closed=[stats.gap_closed(o, s, lg) for o, s, lg in zip(overall, zs_small, zs_large)],
                     recovered_share=[stats.recovered_share(o, lg) for o, lg in zip(overall, zs_large)])


def encoder_pairs_frame(results: Path | str = paths.RESULTS) -> pd.DataFrame:
    """Encoder-pair study: overall nDCG@10 per pair × instructions × method × ratio, mean ± std over seeds, the
    difference to the pair's zero-shot small→small, the share of the zero-shot gap closed and the share of
    large→large recovered (means over seeds; see :func:`encoder_pairs_seed_frame`)."""
    df = encoder_pairs_seed_frame(results)
    g = df.groupby(["pair", "instructions", "method", "train_ratio"], sort=False, dropna=False)
    out = g.agg(ndcg_mean=("overall", "mean"), ndcg_std=("overall", "std"), delta_mean=("delta_vs_small", "mean"),
                delta_std=("delta_vs_small", "std"), gap_closed_mean=("gap_closed", "mean"),
                recovered_share_mean=("recovered_share", "mean"), n_seeds=("seed", "nunique")).reset_index()
    return out.rename(columns={"ndcg_mean": "ndcg@10_mean", "ndcg_std": "ndcg@10_std"})


def encoder_pairs_table(results: Path | str = paths.RESULTS) -> list[Path]:
    """Write ``tables/encoder_pairs.{csv,md}`` and return the paths."""
    df = encoder_pairs_frame(results)
    tables = Path(results) / "tables"
    md = df.copy()
    for col in ("ndcg@10_mean", "ndcg@10_std", "delta_mean", "delta_std", "gap_closed_mean", "recovered_share_mean"):
        md[col] = md[col].map(lambda v: "" if pd.isna(v) else f"{v:+.3f}" if col.startswith("delta") else f"{v:.3f}")
    return [_write_csv(df, tables / "encoder_pairs.csv"),
            atomic_write_text(tables / "encoder_pairs.md", md.to_markdown(index=False) + "\n")]


def figure_gap_closed(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES,
                      main_instructions: str = "native") -> Path:
    """``encoder_pairs_gap.pdf``: share of the zero-shot gap closed per pair and method, one panel per train ratio
    (±1 sd)."""
    seeds = _one_setting(encoder_pairs_seed_frame(results), main_instructions, "encoder_pairs.json")
    inst = seeds.instructions.iloc[0]
    trained = seeds[seeds.train_ratio.notna() & seeds.gap_closed.notna()]
    if trained.empty:
        raise EraError("encoder_pairs.json has no trained rows with a zero-shot gap (zero-shot large above small); "
                       "rerun 07_encoder_pairs with methods and a pair whose large model beats its small one")
    trained = trained.assign(train_ratio=trained.train_ratio.astype(float),
                             Method=[METHOD_LABELS[m] for m in trained.method])
    methods = [m for m in METHODS if m in set(trained.method)]
    pairs = list(dict.fromkeys(trained.pair))
    ratios = sorted(set(trained.train_ratio))

    def render() -> plt.Figure:
        # One dot per pair and method (seeds' mean, ±1 sd), pairs side by side: a train ratio is a panel, not an
        # axis, so a study at one ratio does not stack every marker in one column.
        fig, axes = plt.subplots(1, len(ratios), figsize=(1.6 + 1.9 * len(pairs) * len(ratios), 4.6), squeeze=False,
                                 sharey=True)
        for ax, ratio in zip(axes[0], ratios):
            sns.pointplot(data=trained[trained.train_ratio == ratio], x="pair", y="gap_closed", order=pairs,
                          hue="Method", hue_order=[METHOD_LABELS[m] for m in methods],
                          palette={METHOD_LABELS[m]: METHOD_COLORS[m] for m in methods},
                          dodge=0.45 if len(methods) > 1 else False,  # seaborn divides by (hues - 1)
                          linestyle="none", errorbar=ERRORBAR, capsize=0.08, err_kws={"linewidth": 1.0},
                          markersize=6, ax=ax)
            ax.axhline(0.0, color=METHOD_COLORS["zero_shot_small"], ls="--", lw=1.2)
            ax.axhline(1.0, color=METHOD_COLORS["zero_shot_large"], ls="--", lw=1.2)
            ax.set_xticks(range(len(pairs)))
            ax.set_xticklabels([p.replace(">", "\n→ ") for p in pairs], fontsize=7)
            ax.set_xlabel(f"Encoder pair (query → index), train ratio {ratio:g}")
            ax.set_ylabel(f"Gap closed ({ERRORBAR_TEXT})")
            if ax is not axes[0][-1]:
                ax.get_legend().remove()
        last = axes[0][-1]
        last.text(1.0, 0.0, " zero-shot small", transform=last.get_yaxis_transform(), va="center", ha="left", fontsize=7)
        last.text(1.0, 1.0, " zero-shot large", transform=last.get_yaxis_transform(), va="center", ha="left", fontsize=7)
        sns.move_legend(last, "upper left", bbox_to_anchor=(1.16, 1.0), framealpha=0.9, title=None)
        fig.suptitle(f"Encoder pairs: share of the zero-shot gap closed (instructions {inst})", fontsize=10)
        return fig

    return _figure(render, Path(figures) / "encoder_pairs_gap.pdf")
