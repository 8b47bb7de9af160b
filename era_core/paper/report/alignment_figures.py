"""Training figures: Phase 1's loss curves and scaling study (pairs drawn vs cosine and nDCG@10), and one run's
curves for inline display."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from era_core import paths
from era_core.errors import EraError
from era_core.io import read_json
from era_core.paper.report.load import load_results
from era_core.paper.report.style import _figure, theme


def figure_alignment_curves(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES) -> Path:
    """``alignment_curves.pdf``: Phase 1 train and hold-out loss per epoch, with hold-out and ridge cosines."""
    data = load_results("alignment", results)
    hist = pd.DataFrame(data["history"])
    need = {"epoch", "train_loss", "eval_loss"}
    if hist.empty or not need <= set(hist.columns):
        raise EraError(f"alignment.json 'history' must list {sorted(need)} per epoch; rerun 02_alignment")
    hist = hist.sort_values("epoch")

    def render() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for col, label, color in (("train_loss", "train loss", "#1f77b4"), ("eval_loss", "hold-out loss", "#d62728")):
            y = hist[col].astype(float)
            ax.plot(hist.epoch, y, marker="o", ms=3, color=color, label=label)
        vals = hist[["train_loss", "eval_loss"]].to_numpy(dtype=float)
        finite = vals[np.isfinite(vals)]
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 5:
            ax.set_yscale("log")  # the epoch-0 loss dwarfs the trained ones
        if "best_epoch" in data:
            ax.axvline(data["best_epoch"], color="#555555", ls=":", lw=1.2, label=f"best epoch ({data['best_epoch']})")
        text = (f"hold-out cosine (AdamW): {data['eval_cosine']:.4f}\n"
                f"hold-out cosine (closed-form ridge): {data['ridge_eval_cosine']:.4f}")
        ax.text(0.03, 0.04, text, transform=ax.transAxes, ha="left", va="bottom", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.9, "edgecolor": "#bbbbbb"})
        ax.set_xlabel("Epoch (0 = before training)")
        ax.set_ylabel("Alignment loss")
        pair = f"{data.get('large_model', 'large')} → {data.get('small_model', 'small')}"
        ax.set_title(f"Phase 1 alignment on identical texts ({pair})")
        ax.legend(loc="upper right", framealpha=0.9)
        return fig

    return _figure(render, Path(figures) / "alignment_curves.pdf")


def figure_alignment_scaling(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES) -> Path:
    """``alignment_scaling.pdf``: Phase 1 hold-out cosine and downstream nDCG@10 vs pairs (log x), per source and solver."""
    path = Path(results) / "alignment_scaling.json"
    if not path.is_file():
        raise EraError(f"{path} is missing: it is written by notebook 02_alignment (run "
                       "notebooks/02_alignment.ipynb with run_scaling true, e.g. with `make paper`)")
    data = read_json(path)
    rows = [{"source": c["source"], "init": c["init"], "n": c["n_pairs"], "seed": c["seed"],
             "cosine": c["eval_cosine"], **{m: c["methods"][m]["overall"] for m in ("era", "alignment_only")}}
            for c in data.get("cells", [])]
    if not rows:
        raise EraError(f"{path} has no cells; rerun 02_alignment with run_scaling true")
    df = pd.DataFrame(rows).sort_values(["source", "init", "n", "seed"], kind="stable")
    grouped = df.drop(columns="seed").groupby(["source", "init", "n"], sort=True)
    mean, std = grouped.mean().reset_index(), grouped.std(ddof=1).reset_index()
    n_seeds = int(df.groupby(["source", "init", "n"]).seed.count().max())
    sources = [s for s in data.get("sources", []) if s in set(df.source)] or sorted(set(df.source))
    inits = [i for i in data.get("inits", []) if i in set(df.init)] or sorted(set(df.init))
    colors = dict(zip(sources, ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")))
    styles = {"default": "-", "ridge": "--", "procrustes": ":"}

    def render() -> plt.Figure:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11.0, 4.4))
        for src in sources:
            for init in inits:
                sel = (mean.source == src) & (mean.init == init)
                m, s = mean[sel].sort_values("n"), std[sel].sort_values("n")
                for ax, col, label, marker in ((a1, "cosine", f"{src}, {init}", "o"),
                                               (a2, "era", f"ERA: {src}, {init}", "o"),
                                               (a2, "alignment_only", f"Alignment only: {src}, {init}", "x")):
                    if m.empty:
                        continue
                    err = np.nan_to_num(s[col].to_numpy(float)) if n_seeds > 1 else None
                    ax.errorbar(m.n.to_numpy(float), m[col].to_numpy(float), yerr=err, color=colors[src],
                                ls=styles.get(init, "-"), marker=marker, ms=4, lw=1.4, capsize=2, label=label)
        for ax, ylabel in ((a1, "Phase 1 hold-out cosine"), (a2, "nDCG@10 (test split, macro over tasks)")):
            ax.set_xscale("log")
            ax.set_xlabel("Identical-text pairs drawn (log scale; 90 % train, 10 % hold-out)")
            ax.set_ylabel(ylabel)
        a1.legend(loc="best", framealpha=0.9, fontsize=7)
        a2.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), framealpha=0.9, fontsize=7)
        setup = data.get("setup", {})
        spread = f"mean ± sd over {n_seeds} seeds" if n_seeds > 1 else "one seed, no error bars"
        fig.suptitle(f"Phase 1 scaling: {setup.get('large_model', 'large')} → {setup.get('small_model', 'small')}, "
                     f"ERA at train ratio {data.get('train_ratio', '?')} ({spread}; line style = Phase 1 solver)",
                     fontsize=10)
        return fig

    return _figure(render, Path(figures) / "alignment_scaling.pdf")


def training_run_curves(phase1_history: list[dict[str, Any]] | None, label_history: list[dict[str, Any]]) -> plt.Figure:
    """One run's losses per epoch, drawn for inline display (never written): Phase 1's train and hold-out loss
    (when the method has a Phase 1), then Phase 2's train and validation InfoNCE with its learning rate."""
    panels = 2 if phase1_history else 1
    with plt.rc_context(theme()):
        fig, axes = plt.subplots(1, panels, figsize=(5.6 * panels, 3.8), squeeze=False)
        if phase1_history:
            h = pd.DataFrame(phase1_history)
            ax = axes[0][0]
            ax.plot(h.epoch, h.train_loss, marker="o", ms=2, label="train loss")
            ax.plot(h.epoch, h.eval_loss, marker="o", ms=2, label="hold-out loss")
            ax.set_yscale("log")
            ax.set(xlabel="Epoch (0 = before training)", ylabel="Alignment loss", title="Phase 1: identical texts")
            ax.legend()
        h = pd.DataFrame(label_history)
        ax = axes[0][-1]
        ax.plot(h.epoch, h.train_loss, marker="o", ms=2, label="train InfoNCE")
        ax.plot(h.epoch, h.val_loss, marker="o", ms=2, label="validation InfoNCE")
        ax.set(xlabel="Epoch", ylabel="Loss", title="Phase 2: labelled queries")
        lr = ax.twinx()
        lr.plot(h.epoch, h.lr, color="#999999", ls=":", label="learning rate")
        lr.set_ylabel("Learning rate (dotted)")
        ax.legend(loc="upper right")
        fig.tight_layout()
    plt.close(fig)
    return fig
