"""Rows and means picked out of era_core.paper.report's frames (method, domain, train ratio, instructions)."""

from __future__ import annotations

import pandas as pd


def setting_rows(df: pd.DataFrame, wanted: str = "native") -> tuple[pd.DataFrame, str]:
    """Rows of instruction setting ``wanted``, or of the only setting the file holds."""
    have = sorted(set(df["instructions"]))
    inst = wanted if wanted in have else have[0]
    return df[df["instructions"] == inst], inst


def mean_by_ratio(df: pd.DataFrame, method: str, domain: str = "overall") -> dict[float, float]:
    """``{train_ratio: mean nDCG@10}`` of a trained method in one domain."""
    s = df[(df["method"] == method) & (df["domain"] == domain) & df["train_ratio"].notna()]
    return {float(r): float(v) for r, v in zip(s["train_ratio"], s["ndcg@10_mean"])}


def single_mean(df: pd.DataFrame, method: str, domain: str = "overall") -> float | None:
    """The mean nDCG@10 of an untrained method (one row), or None when the frame has none."""
    s = df[(df["method"] == method) & (df["domain"] == domain)]
    return float(s["ndcg@10_mean"].iloc[0]) if len(s) else None


def std_at(df: pd.DataFrame, method: str, ratio: float, domain: str = "overall") -> float | None:
    """The seed std of a method at one train ratio, or None when absent or undefined (one seed)."""
    s = df[(df["method"] == method) & (df["domain"] == domain) & (df["train_ratio"] == ratio)]
    v = s["ndcg@10_std"].iloc[0] if len(s) else float("nan")
    return None if pd.isna(v) else float(v)
