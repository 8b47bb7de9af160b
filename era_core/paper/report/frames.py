"""The report's pandas frames: per-seed rows aggregated into mean ± std (ddof=1) over seeds, in display order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from era_core import paths
from era_core.errors import EraError
from era_core.paper.report.load import (_collapse_alignment_only, _headline, _lodo_rows, _runs, _training_rows, _zero_shot_rows,
                   load_results)
from era_core.paper.report.vocab import (INSTRUCTION_SETTINGS, METHOD_LABELS, METHODS, _VALUE_COLS, _check_instructions, _domain_key,
                    _method_key, is_real_column)


def _aggregate(rows: list[dict[str, Any]], keys: list[str]) -> pd.DataFrame:
    """Mean, std (ddof=1; NaN for one seed) and seed count of ``value`` over seeds, per ``keys``."""
    df = pd.DataFrame(rows)
    g = df.groupby(keys, dropna=False, sort=False)["value"]
    out = g.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": _VALUE_COLS[0], "std": _VALUE_COLS[1], "count": "n_seeds"})


def zero_shot_long(results: Path | str = paths.RESULTS) -> pd.DataFrame:
    """nDCG@10 of every zero-shot encoder × instructions × scope × domain, mean ± std over seeds."""
    data = load_results("zero_shot", results)
    models = data["models"]
    rows = []
    for i, rec in enumerate(data["records"]):
        enc = rec["encoder"]
        if enc not in models:
            raise EraError(f"zero_shot.json record {i} names encoder {enc!r}, absent from 'models' "
                           f"({', '.join(sorted(models))}); rerun 01_zero_shot")
        for dom, v in _headline(rec, f"zero_shot.json record {i}").items():
            rows.append({"encoder": enc, "role": models[enc]["role"], "instructions": rec["instructions"],
                         "scope": rec["scope"], "domain": dom, "seed": rec["seed"], "value": v})
    if not rows:
        raise EraError("zero_shot.json holds no records; rerun 01_zero_shot")
    out = _aggregate(rows, ["encoder", "role", "instructions", "scope", "domain"])
    role_rank = {"large": 0, "small": 1, "extra": 2}
    out["_k"] = [(role_rank.get(r, 3), e, INSTRUCTION_SETTINGS.index(i) if i in INSTRUCTION_SETTINGS else 9, s,
                  _domain_key(d)) for e, r, i, s, d in
                 zip(out.encoder, out.role, out.instructions, out.scope, out.domain)]
    return out.sort_values("_k", kind="stable").drop(columns="_k").reset_index(drop=True)


def zero_shot_frame(results: Path | str = paths.RESULTS) -> pd.DataFrame:
    """Wide view of :func:`zero_shot_long`: mean nDCG@10, rows encoder × instructions × scope, columns domains."""
    long = zero_shot_long(results)
    wide = long.pivot_table(index=["encoder", "instructions", "scope"], columns="domain",
                            values=_VALUE_COLS[0], sort=False)
    wide = wide[sorted(wide.columns, key=_domain_key)]
    wide.columns.name = None
    return wide


def _sort_main(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["_k"] = [(_method_key(m), -1.0 if pd.isna(r) else r, INSTRUCTION_SETTINGS.index(i), _domain_key(d))
                for m, r, i, d in zip(df.method, df.train_ratio, df.instructions, df.domain)]
    return df.sort_values("_k", kind="stable").drop(columns="_k").reset_index(drop=True)


def main_frame(results: Path | str = paths.RESULTS) -> pd.DataFrame:
    """Long-form main table: method × ratio × instructions × domain, nDCG@10 mean ± std over seeds (test split)."""
    zs = load_results("zero_shot", results)
    tr = load_results("training", results)
    rows = _zero_shot_rows(zs, "test") + _training_rows(tr, "test")
    out = _aggregate(rows, ["method", "train_ratio", "instructions", "domain"])
    out["metric_scope"] = "test"
    return _sort_main(out)


def main_seed_frame(results: Path | str = paths.RESULTS, main_instructions: str = "native") -> pd.DataFrame:
    """Per-seed rows behind :func:`main_frame` (one instruction setting): what seaborn aggregates into error bars."""
    _check_instructions(main_instructions)
    zs = load_results("zero_shot", results)
    tr = load_results("training", results)
    df = pd.DataFrame(_zero_shot_rows(zs, "test") + _training_rows(tr, "test"))
    view = df[df.instructions == main_instructions]
    if view.empty:
        raise EraError(f"no results with instructions={main_instructions!r}; available: "
                       f"{sorted(set(df.instructions))}; set main_instructions accordingly")
    return _with_labels(view.reset_index(drop=True))


def _with_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Add the display label of each method (seaborn's hue), keeping METHODS order as a category."""
    order = [METHOD_LABELS[m] for m in METHODS]
    return df.assign(Method=pd.Categorical([METHOD_LABELS[m] for m in df.method], categories=order))


def lodo_frame(results: Path | str = paths.RESULTS) -> pd.DataFrame:
    """Long-form LODO table: per held-out domain, LODO vs in-domain vs zero-shot nDCG@10 on that domain.

    ``evaluation`` is ``test`` (the domain's test split, comparable with in-domain training) or
    ``all`` (every labelled query of the held-out domain: the reference protocol). In-domain and
    zero-shot values use the LODO run's instruction setting (and, for in-domain, its train ratio).
    """
    rows = _lodo_rows(results)
    out = _aggregate(rows, ["held_out", "method", "source", "evaluation", "train_ratio", "instructions"])
    src = {"lodo": 0, "in_domain": 1, "zero_shot": 2}
    out["_k"] = [(_domain_key(d), s == "zero_shot", _method_key(m), src[s], e != "test", i)
                 for d, s, m, e, i in zip(out.held_out, out.source, out.method, out.evaluation, out.instructions)]
    return out.sort_values("_k", kind="stable").drop(columns="_k").reset_index(drop=True)


def domain_specific_frame(results: Path | str = paths.RESULTS) -> pd.DataFrame:
    """Long-form transfer matrix: train × eval domain nDCG@10 (protocol scope) per method, plus zero-shot small."""
    ds = load_results("domain_specific", results)
    zs = load_results("zero_shot", results)
    rows = []
    for i, run in enumerate(_collapse_alignment_only(_runs(ds, "domain_specific"))):
        if "train_domain" not in run:
            raise EraError(f"domain_specific.json run {i} lacks 'train_domain'; rerun 05_domain_specific")
        ratio = np.nan if run["method"] == "alignment_only" else float(run["train_ratio"])
        for dom, v in _headline(run["scopes"]["protocol"], f"domain_specific.json run {i}",
                                real_tasks=False).items():  # a transfer matrix of domains
            rows.append({"method": run["method"], "train_domain": run["train_domain"], "eval_domain": dom,
                         "scope": "protocol", "train_ratio": ratio, "instructions": run["instructions"],
                         "seed": run["seed"], "value": v})
    insts = sorted({r["instructions"] for r in rows})
    for scope in ("all", "test"):
        for r in _zero_shot_rows(zs, scope):
            if r["method"] == "zero_shot_small" and r["instructions"] in insts and not is_real_column(r["domain"]):
                rows.append({"method": "zero_shot_small", "train_domain": "none", "eval_domain": r["domain"],
                             "scope": scope, "train_ratio": np.nan, "instructions": r["instructions"],
                             "seed": r["seed"], "value": r["value"]})
    out = _aggregate(rows, ["method", "train_domain", "eval_domain", "scope", "train_ratio", "instructions"])
    out["_k"] = [(_method_key(m) if m != "zero_shot_small" else 99, _domain_key(t) if t != "none" else (99, ""),
                  s, i, _domain_key(e)) for m, t, s, i, e in
                 zip(out.method, out.train_domain, out.scope, out.instructions, out.eval_domain)]
    return out.sort_values("_k", kind="stable").drop(columns="_k").reset_index(drop=True)


def _check_unique(df: pd.DataFrame, keys: list[str], what: str) -> None:
    """Refuse to draw two results into one cell (e.g. two train ratios of one LODO method)."""
    dup = df[df.duplicated(keys, keep=False)]
    if dup.empty:
        return
    cell = {k: dup.iloc[0][k] for k in keys}
    differ = [c for c in ("train_ratio", "instructions", "scope") if c in dup and dup[c].nunique(dropna=False) > 1]
    raise EraError(f"{what}: several results fall into the cell {cell} (they differ in {differ}); keep one "
                   f"train ratio per protocol in the results, i.e. rerun that notebook with a single value")


def _one_setting(df: pd.DataFrame, wanted: str, source: str) -> pd.DataFrame:
    """Rows of instruction setting ``wanted``; a file holding one other setting is shown with that one (labelled)."""
    _check_instructions(wanted)
    have = sorted(set(df.instructions))
    if wanted in have:
        return df[df.instructions == wanted]
    if len(have) == 1:
        # LODO / domain-specific notebooks run one setting; show it rather than nothing (titles say which).
        return df[df.instructions == have[0]]
    raise EraError(f"{source} holds instruction settings {have}, not {wanted!r}; set main_instructions to one of them")


def _series(df: pd.DataFrame, **eq: Any) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for k, v in eq.items():
        mask &= (df[k] == v).to_numpy()
    return df[mask]


def main_view(results: Path | str, main_instructions: str, long: pd.DataFrame | None = None) -> pd.DataFrame:
    """The long main frame (``long``, read from ``results`` when not given) restricted to one instruction setting.

    An empty selection is an error that names the settings there are.
    """
    _check_instructions(main_instructions)
    long = main_frame(results) if long is None else long
    view = long[long.instructions == main_instructions]
    if view.empty:
        raise EraError(f"no results with instructions={main_instructions!r}; available: "
                       f"{sorted(set(long.instructions))}; set main_instructions accordingly")
    return view


def alignment_scaling_frame(data: dict[str, Any]) -> pd.DataFrame:
    """Phase 1 scaling cells (``alignment_scaling.json``) per (source, solver, pairs): seeds, mean and sd of the
    hold-out (document) and query-side cosines and of test nDCG@10 for ``alignment_only`` and ERA."""
    rows = [{"source": c["source"], "n_pairs": c["n_pairs"], "init": c["init"], "seed": c["seed"],
             "eval_cosine": c["eval_cosine"], "query_cosine": c["query_cosine"],
             "alignment_only": c["methods"]["alignment_only"]["overall"],
             "era": c["methods"]["era"]["overall"]} for c in data.get("cells", [])]
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    agg = df.groupby(["source", "init", "n_pairs"], sort=False).agg(
        seeds=("seed", "count"), **{f"{c}_{f}": (c, f) for c in ("eval_cosine", "query_cosine", "alignment_only", "era")
                                    for f in ("mean", "std")})
    return agg.reset_index()
