"""Figures across domains: leave-one-domain-out bars and the domain-specific transfer heatmaps."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from era_core import paths
from era_core.errors import EraError
from era_core.paper.report.frames import _check_unique, _one_setting, _series, domain_specific_frame, lodo_frame
from era_core.paper.report.load import _lodo_rows
from era_core.paper.report.style import ERRORBAR_TEXT, METHOD_COLORS, _bars, _figure, _lighter
from era_core.paper.report.vocab import METHOD_LABELS, METHODS, _VALUE_COLS, _domains, _lodo_label


def figure_lodo(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES,
                main_instructions: str = "native") -> Path:
    """``lodo.pdf``: per held-out domain, LODO vs in-domain vs zero-shot nDCG@10 as grouped bars (±1 sd over seeds),
    on the test split and on all labelled queries."""
    long = _one_setting(lodo_frame(results), main_instructions, "lodo.json")
    _check_unique(long, ["held_out", "method", "source", "evaluation"], "lodo.pdf")
    inst = long.instructions.iloc[0]
    seeds = pd.DataFrame(_lodo_rows(results))
    seeds = seeds[seeds.instructions == inst]
    seeds = seeds.assign(config=[_lodo_label(m, s) for m, s in zip(seeds.method, seeds.source)])
    groups = _domains(long.held_out)
    lodo_methods = [m for m in METHODS if m in set(long[long.source == "lodo"].method)]
    palette: dict[str, str] = {}
    for m in lodo_methods:
        palette[_lodo_label(m, "lodo")] = METHOD_COLORS[m]
        palette[_lodo_label(m, "in_domain")] = _lighter(METHOD_COLORS[m])
    for m in ("zero_shot_small", "zero_shot_large"):
        palette[_lodo_label(m, "zero_shot")] = METHOD_COLORS[m]

    def render() -> plt.Figure:
        from matplotlib.patches import Patch

        fig, axes = plt.subplots(1, 2, figsize=(max(9.0, 2.2 * len(groups) + 4), 5.0), sharey=True,
                                 layout="constrained")
        for ax, ev, title in ((axes[0], "test", "test split (comparable with in-domain)"),
                              (axes[1], "all", "all labelled queries (reference protocol)")):
            part = seeds[seeds.evaluation == ev]
            order = [c for c in palette if c in set(part.config)]
            _bars(ax, part, "held_out", groups, "config", order, palette)
            ax.get_legend().remove()
            ax.set_title(f"Held-out domain, {title}", fontsize=10)
            ax.set_xlabel("Held-out domain")
        axes[0].set_ylabel(f"nDCG@10 on the held-out domain ({ERRORBAR_TEXT})")
        shown = [c for c in palette if c in set(seeds.config)]
        fig.legend(handles=[Patch(facecolor=palette[c], label=c) for c in shown], loc="outside lower center",
                   ncol=min(4, len(shown)), framealpha=0.9)
        fig.suptitle(f"Leave-one-domain-out generalisation (instructions {inst})")
        return fig

    return _figure(render, Path(figures) / "lodo.pdf")


def figure_domain_transfer(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES,
                           main_instructions: str = "native") -> Path:
    """``domain_transfer.pdf``: annotated train-domain × eval-domain nDCG@10 heatmaps (ERA, and label-only if present)."""
    long = _one_setting(domain_specific_frame(results), main_instructions, "domain_specific.json")
    long = long[long.method != "zero_shot_small"]
    _check_unique(long, ["method", "train_domain", "eval_domain"], "domain_transfer.pdf")
    inst = long.instructions.iloc[0]
    methods = [m for m in ("era", "label_only") if m in set(long.method)]
    if not methods:
        raise EraError(f"domain_specific.json has no 'era' or 'label_only' runs (found {sorted(set(long.method))}); "
                       f"rerun 05_domain_specific with methods including era")
    evals = _domains(long.eval_domain)
    mean = _VALUE_COLS[0]

    def matrix(m: str) -> pd.DataFrame:
        s = _series(long, method=m)
        trains = _domains(s.train_domain)
        mat = pd.DataFrame(np.nan, index=trains, columns=evals)
        for t, e, v in zip(s.train_domain, s.eval_domain, s[mean]):
            if e in evals:
                mat.loc[t, e] = v
        return mat

    mats = {m: matrix(m) for m in methods}
    vmin = float(np.nanmin([np.nanmin(v.to_numpy()) for v in mats.values()]))
    vmax = float(np.nanmax([np.nanmax(v.to_numpy()) for v in mats.values()]))

    def render() -> plt.Figure:
        n_e = len(evals)
        n_t = max(len(v) for v in mats.values())
        fig, axes = plt.subplots(1, len(methods), figsize=(1.6 + (1.1 * n_e + 1.3) * len(methods), 1.9 + 0.75 * n_t),
                                 squeeze=False, layout="constrained")
        for k, (ax, m) in enumerate(zip(axes[0], methods)):
            last = k == len(methods) - 1
            sns.heatmap(mats[m], ax=ax, annot=True, fmt=".3f", annot_kws={"fontsize": 8}, cmap="viridis",
                        vmin=vmin, vmax=vmax, linewidths=0.6, linecolor="white", cbar=last,
                        cbar_kws={"label": "nDCG@10 (mean over seeds)", "shrink": 0.9})
            ax.set_xticklabels(ax.get_xticklabels(), rotation=30, ha="right")
            ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
            ax.set_title(METHOD_LABELS[m], fontsize=10)
            ax.set_xlabel("Evaluated on")
            ax.set_ylabel("Trained on" if k == 0 else "")
        fig.suptitle(f"Domain-specific adapters: transfer across domains (instructions {inst})")
        return fig

    return _figure(render, Path(figures) / "domain_transfer.pdf")
