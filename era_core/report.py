"""Every table and figure of the paper package, built from the JSON files in ``results/`` only.

This module never encodes or trains: it reads what the experiment notebooks wrote and renders
long-form CSV, Markdown and LaTeX tables plus byte-stable PDF figures (no timestamps, fixed
fonts, fixed colours and ordering) and a byte-stable PNG of the README's figure. Standard
deviations are over seeds with ``ddof=1``; with a single seed the std is undefined and is
written as an empty CSV cell (shown without "±").
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import matplotlib

if "ipykernel" not in sys.modules:
    # Headless outside Jupyter; inside a kernel keep its (inline) backend so the user's own plots still
    # show. The saved bytes never depend on the backend: PDF and PNG come from their own renderers.
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from era_core import paths, stats  # noqa: E402
from era_core.errors import EraError  # noqa: E402
from era_core.io import atomic_write, atomic_write_text, read_json  # noqa: E402

HEADLINE = "ndcg@10"
#: MAIR's domain order; unknown domains (custom benchmarks) follow alphabetically.
DOMAIN_ORDER = ("academic", "code", "finance", "legal", "medical", "web")
OVERALL = "overall"
OVERALL_QW = "overall_query_weighted"
INSTRUCTION_SETTINGS = ("on", "off")

#: Every method of the main table, in display order.
METHODS = ("zero_shot_small", "zero_shot_large", "alignment_only", "label_only", "era", "small_adapter", "fused",
           "residual_mlp")
#: Methods trained on labels (they vary with the train ratio).
LABEL_METHODS = ("label_only", "era", "small_adapter", "fused", "residual_mlp")
METHOD_LABELS = {
    "zero_shot_small": "Zero-shot small",
    "zero_shot_large": "Zero-shot large",
    "alignment_only": "Alignment only",
    "label_only": "Embedding Adapter (label only)",
    "era": "ERA",
    "small_adapter": "Small adapter (same model)",
    "fused": "Fused (large ⊕ small queries)",
    "residual_mlp": "ERA, residual MLP",
}
#: Two-line labels for crowded category axes.
SHORT_LABELS = {
    "zero_shot_small": "Zero-shot\nsmall", "zero_shot_large": "Zero-shot\nlarge", "alignment_only": "Alignment\nonly",
    "label_only": "Embedding\nAdapter", "era": "ERA", "small_adapter": "Small\nadapter",
    "fused": "Fused", "residual_mlp": "ERA\nres. MLP",
}
#: One colour per method, identical in every figure.
METHOD_COLORS = {
    "zero_shot_small": "#7f7f7f",
    "zero_shot_large": "#000000",
    "alignment_only": "#9467bd",
    "label_only": "#ff7f0e",
    "era": "#1f77b4",
    "small_adapter": "#2ca02c",
    "fused": "#d62728",
    "residual_mlp": "#17becf",
}
#: Which encoder embeds the queries of each method (documents always use the small model).
QUERY_SIDE = {
    "zero_shot_small": "small", "zero_shot_large": "large", "alignment_only": "large",
    "label_only": "large", "era": "large", "small_adapter": "small", "fused": "large+small",
    "residual_mlp": "large",
}

#: results file of each input kind and the notebook that writes it.
INPUTS = {
    "zero_shot": ("zero_shot.json", "01_zero_shot"),
    "alignment": ("alignment.json", "02_alignment"),
    "training": ("training.json", "03_training"),
    "lodo": ("lodo.json", "04_lodo"),
    "domain_specific": ("domain_specific.json", "05_domain_specific"),
    "encoder_pairs": ("encoder_pairs.json", "07_encoder_pairs"),
    "significance": ("significance.json", "03_training"),
    "timing": ("timing/zero_shot.json", "01_zero_shot"),
}
#: Baselines of the main table's paired tests, in the order of its significance column.
SIG_BASELINES = ("zero_shot_small", "small_adapter", "zero_shot_large")
SIG_COLUMN = "vs ZS small / control / ZS large"

# Fixed rc settings so the PDFs depend on nothing but the data: TrueType (Type 42) fonts,
# the bundled DejaVu family, and no hash salt.
_RC = {
    "pdf.fonttype": 42,
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "svg.hashsalt": "era",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.axisbelow": True,
}


def theme() -> dict[str, Any]:
    """The one figure theme: seaborn's ``whitegrid`` style under the fixed rc settings above."""
    return {**sns.axes_style("whitegrid"), **_RC}


#: What the error bars of the statistical figures show (seaborn's ``errorbar`` and its caption).
ERRORBAR = "sd"
ERRORBAR_TEXT = "±1 sd over seeds"
_PDF_METADATA = {"CreationDate": None, "ModDate": None, "Creator": "era_core.report"}
_PNG_METADATA = {"Software": None}
#: Resolution of the PNG copies (the README's figure): sharp on screens, about 100 kB.
PNG_DPI = 150
_VALUE_COLS = [f"{HEADLINE}_mean", f"{HEADLINE}_std", "n_seeds"]


# ---------------------------------------------------------------- loading

_REQUIRED_KEYS = {"zero_shot": ("setup", "models", "records"),
                  "alignment": ("history", "eval_cosine", "ridge_eval_cosine"),
                  "encoder_pairs": ("rows",), "significance": (), "timing": ("query_ms_per_query",)}


def load_results(kind: str, results: Path | str = paths.RESULTS) -> dict[str, Any]:
    """Read one results file (``kind`` in :data:`INPUTS`), raising a clear error if it is missing."""
    if kind not in INPUTS:
        raise EraError(f"unknown results kind {kind!r}; allowed values: {', '.join(INPUTS)}")
    name, notebook = INPUTS[kind]
    path = Path(results) / name
    if not path.is_file():
        raise EraError(f"{path} is missing: it is written by notebook {notebook} "
                       f"(run notebooks/{notebook}.ipynb, e.g. with `make paper`, or point `results` at "
                       f"the folder that holds {name})")
    data = read_json(path)
    required = _REQUIRED_KEYS.get(kind, ("runs",))
    missing = [k for k in required if k not in data]
    if missing:
        raise EraError(f"{path} lacks the keys {missing}; it was not written by this version of "
                       f"{notebook}: rerun that notebook")
    return data


def _headline(sb: dict[str, Any], where: str) -> dict[str, float]:
    """``{domain|overall|overall_query_weighted: nDCG@10}`` of a summary block."""
    try:
        row = {d: float(m[HEADLINE]) for d, m in sb["per_domain"].items()}
        row[OVERALL] = float(sb["overall"][HEADLINE])
        row[OVERALL_QW] = float(sb["overall_query_weighted"][HEADLINE])
    except KeyError as exc:
        raise EraError(f"{where}: summary block lacks {exc} (need per_domain/overall/overall_query_weighted "
                       f"with {HEADLINE!r}); rerun the notebook that wrote it") from None
    return row


def _runs(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    runs = data["runs"]
    if not runs:
        raise EraError(f"{INPUTS[kind][0]} holds no runs; rerun notebook {INPUTS[kind][1]} with at least one method")
    return runs


def _check_instructions(value: str) -> str:
    if value not in INSTRUCTION_SETTINGS:
        raise EraError(f"main_instructions={value!r} is not allowed; allowed values: {', '.join(INSTRUCTION_SETTINGS)}")
    return value


def _domain_key(d: str) -> tuple[int, str]:
    if d == OVERALL:
        return (len(DOMAIN_ORDER) + 1, d)
    if d == OVERALL_QW:
        return (len(DOMAIN_ORDER) + 2, d)
    return (DOMAIN_ORDER.index(d), d) if d in DOMAIN_ORDER else (len(DOMAIN_ORDER), d)


def _domains(values: Iterable[str]) -> list[str]:
    """The real domains among ``values`` (no overall columns), in MAIR order."""
    return sorted({v for v in values if v not in (OVERALL, OVERALL_QW)}, key=_domain_key)


def _method_key(m: str) -> int:
    if m not in METHODS:
        raise EraError(f"unknown method {m!r} in the results; allowed values: {', '.join(METHODS)}")
    return METHODS.index(m)


def _aggregate(rows: list[dict[str, Any]], keys: list[str]) -> pd.DataFrame:
    """Mean, std (ddof=1; NaN for one seed) and seed count of ``value`` over seeds, per ``keys``."""
    df = pd.DataFrame(rows)
    g = df.groupby(keys, dropna=False, sort=False)["value"]
    out = g.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": _VALUE_COLS[0], "std": _VALUE_COLS[1], "count": "n_seeds"})


# ---------------------------------------------------------------- frames


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


def _zero_shot_rows(data: dict[str, Any], scope: str) -> list[dict[str, Any]]:
    """Per-seed headline rows of the small and large zero-shot encoders, as methods."""
    setup = data["setup"]
    which = {setup["small_model"]: "zero_shot_small", setup["large_model"]: "zero_shot_large"}
    if len(which) == 1:
        # Same model on both sides: it is both references at once.
        which = {setup["small_model"]: None}
    rows = []
    for i, rec in enumerate(data["records"]):
        if rec["encoder"] not in which or rec["scope"] != scope:
            continue
        methods = [which[rec["encoder"]]] if which[rec["encoder"]] else ["zero_shot_small", "zero_shot_large"]
        for method in methods:
            for dom, v in _headline(rec, f"zero_shot.json record {i}").items():
                rows.append({"method": method, "train_ratio": np.nan, "instructions": rec["instructions"],
                             "domain": dom, "seed": rec["seed"], "value": v})
    found = {r["method"] for r in rows}
    for method in ("zero_shot_small", "zero_shot_large"):
        if method not in found:
            model = setup["small_model" if method == "zero_shot_small" else "large_model"]
            raise EraError(f"zero_shot.json has no {scope!r}-scope record for {method} (encoder {model!r}); "
                           f"rerun 01_zero_shot with that model")
    return rows


def _collapse_alignment_only(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One alignment-only run per (instructions, seed, labels): its test split ignores the ratio."""
    keep: dict[tuple, dict[str, Any]] = {}
    others = []
    for run in sorted(runs, key=lambda r: float(r["train_ratio"])):
        if run["method"] != "alignment_only":
            others.append(run)
            continue
        key = (run["instructions"], run["seed"], run.get("held_out"), run.get("train_domain"))
        keep.setdefault(key, run)
    return others + list(keep.values())


def _same_ratio(a: float, b: float) -> bool:
    return bool(np.isnan(a) and np.isnan(b)) or bool(np.isclose(a, b))


def _training_rows(data: dict[str, Any], scope: str, kind: str = "training") -> list[dict[str, Any]]:
    rows = []
    for i, run in enumerate(_collapse_alignment_only(_runs(data, kind))):
        _method_key(run["method"])
        ratio = np.nan if run["method"] == "alignment_only" else float(run["train_ratio"])
        for dom, v in _headline(run["scopes"][scope], f"{INPUTS[kind][0]} run {i} scope {scope!r}").items():
            rows.append({"method": run["method"], "train_ratio": ratio, "instructions": run["instructions"],
                         "domain": dom, "seed": run["seed"], "value": v})
    return rows


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


def main_seed_frame(results: Path | str = paths.RESULTS, main_instructions: str = "on") -> pd.DataFrame:
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


def _lodo_rows(results: Path | str) -> list[dict[str, Any]]:
    """Per-seed rows of :func:`lodo_frame` (before aggregation)."""
    lodo = load_results("lodo", results)
    zs = load_results("zero_shot", results)
    tr = load_results("training", results)
    rows: list[dict[str, Any]] = []
    settings = set()
    for i, run in enumerate(_collapse_alignment_only(_runs(lodo, "lodo"))):
        d = run.get("held_out")
        if d is None:
            raise EraError(f"lodo.json run {i} lacks 'held_out'; rerun 04_lodo")
        ratio = np.nan if run["method"] == "alignment_only" else float(run["train_ratio"])
        settings.add((run["method"], ratio, run["instructions"]))
        for ev, scope in (("test", "test"), ("all", "protocol")):
            vals = _headline(run["scopes"][scope], f"lodo.json run {i} scope {scope!r}")
            if d not in vals:
                raise EraError(f"lodo.json run {i}: held-out domain {d!r} was not scored; rerun 04_lodo")
            rows.append({"held_out": d, "method": run["method"], "source": "lodo", "evaluation": ev,
                         "train_ratio": ratio, "instructions": run["instructions"], "seed": run["seed"],
                         "value": vals[d]})
    held = sorted({r["held_out"] for r in rows}, key=_domain_key)
    in_domain = _training_rows(tr, "test")
    for method, ratio, inst in sorted(settings, key=lambda s: (_method_key(s[0]), str(s[1]), s[2])):
        match = [r for r in in_domain if r["method"] == method and r["instructions"] == inst
                 and _same_ratio(r["train_ratio"], ratio)]
        if not match:
            have = sorted({(r["train_ratio"], r["instructions"]) for r in in_domain if r["method"] == method})
            raise EraError(f"lodo needs the in-domain {method} run at train_ratio={ratio}, instructions={inst!r} "
                           f"from training.json, which has only {have or 'none'}; rerun 03_training with "
                           f"that ratio and instruction setting")
        for r in match:
            if r["domain"] in held:
                rows.append({**r, "held_out": r["domain"], "source": "in_domain", "evaluation": "test"})
    for inst in sorted({s[2] for s in settings}):
        for scope, ev in (("test", "test"), ("all", "all")):
            for r in _zero_shot_rows(zs, scope):
                if r["instructions"] == inst and r["domain"] in held:
                    rows.append({**r, "held_out": r["domain"], "source": "zero_shot", "evaluation": ev})
    for r in rows:
        r.pop("domain", None)
    return rows


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
        for dom, v in _headline(run["scopes"]["protocol"], f"domain_specific.json run {i}").items():
            rows.append({"method": run["method"], "train_domain": run["train_domain"], "eval_domain": dom,
                         "scope": "protocol", "train_ratio": ratio, "instructions": run["instructions"],
                         "seed": run["seed"], "value": v})
    insts = sorted({r["instructions"] for r in rows})
    for scope in ("all", "test"):
        for r in _zero_shot_rows(zs, scope):
            if r["method"] == "zero_shot_small" and r["instructions"] in insts:
                rows.append({"method": "zero_shot_small", "train_domain": "none", "eval_domain": r["domain"],
                             "scope": scope, "train_ratio": np.nan, "instructions": r["instructions"],
                             "seed": r["seed"], "value": r["value"]})
    out = _aggregate(rows, ["method", "train_domain", "eval_domain", "scope", "train_ratio", "instructions"])
    out["_k"] = [(_method_key(m) if m != "zero_shot_small" else 99, _domain_key(t) if t != "none" else (99, ""),
                  s, i, _domain_key(e)) for m, t, s, i, e in
                 zip(out.method, out.train_domain, out.scope, out.instructions, out.eval_domain)]
    return out.sort_values("_k", kind="stable").drop(columns="_k").reset_index(drop=True)


# ---------------------------------------------------------------- table writers


def _cell(mean: float, std: float, n: int) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.3f}" if n < 2 or pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "$": r"\$",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def _best_mask(means: pd.DataFrame, groups: pd.Series | None = None) -> pd.DataFrame:
    """True where a mean is the best (as displayed, 3 decimals) of its column, within each group."""
    rounded = means.round(3)
    groups = pd.Series(0, index=means.index) if groups is None else groups
    best = rounded.groupby(groups.values).transform("max")
    best.index = means.index
    return (rounded == best) & rounded.notna()


def _render(labels: pd.DataFrame, means: pd.DataFrame, stds: pd.DataFrame, counts: pd.DataFrame,
            groups: pd.Series | None = None, bold: bool = True) -> tuple[str, str]:
    """Markdown and booktabs LaTeX of a ``mean ± std`` grid, the best of each column (per group) in bold."""
    best = _best_mask(means, groups) if bold else pd.DataFrame(False, index=means.index, columns=means.columns)
    md_cells = labels.copy()
    tex_rows = []
    for col in means.columns:
        md_cells[col] = [("**" + _cell(m, s, n) + "**") if b else _cell(m, s, n) for m, s, n, b in
                         zip(means[col], stds[col], counts[col].fillna(0), best[col])]
    markdown = md_cells.to_markdown(index=False, disable_numparse=True) + "\n"
    cols = list(labels.columns) + list(means.columns)
    spec = "l" * labels.shape[1] + "r" * means.shape[1]
    lines = ["% generated by era_core.report from results/*.json; do not edit by hand",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_tex_escape(str(c)) for c in cols) + r" \\", r"\midrule"]
    prev_group = None
    for idx in range(len(labels)):
        g = None if groups is None else groups.iloc[idx]
        if prev_group is not None and g != prev_group:
            lines.append(r"\midrule")
        prev_group = g
        cells = [_tex_escape(str(v)) for v in labels.iloc[idx]]
        for col in means.columns:
            text = _cell(means[col].iloc[idx], stds[col].iloc[idx], int(counts[col].fillna(0).iloc[idx]))
            text = text.replace("±", r"$\pm$")
            cells.append(rf"\textbf{{{text}}}" if best[col].iloc[idx] else text)
        tex_rows.append(" & ".join(cells) + r" \\")
        lines.append(tex_rows[-1])
    lines += [r"\bottomrule", r"\end{tabular}"]
    return markdown, "\n".join(lines) + "\n"


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    if "train_ratio" in df:
        # Ratios are labels, not measurements: write them as typed (0.4, not 0.400000).
        df = df.assign(train_ratio=[_ratio_text(r) for r in df.train_ratio])
    return atomic_write_text(path, df.to_csv(index=False, float_format="%.6f", na_rep="", lineterminator="\n"))


def _write_table(long: pd.DataFrame, views: tuple[str, str] | None, tables: Path, name: str,
                 tex: bool = True) -> list[Path]:
    """Write ``<name>.csv`` (long form) and, when given, the ``.md`` / ``.tex`` views."""
    out = [_write_csv(long, tables / f"{name}.csv")]
    if views is not None:
        out.append(atomic_write_text(tables / f"{name}.md", views[0]))
        if tex:
            out.append(atomic_write_text(tables / f"{name}.tex", views[1]))
    return out


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


def _grid(df: pd.DataFrame, row_keys: list[str], col_key: str, cols: list[str]) -> tuple[pd.DataFrame, ...]:
    """Pivot mean, std and n_seeds of a long frame into aligned grids (row order as first seen)."""
    _check_unique(df, [*row_keys, col_key], "table")
    df = df.copy()
    df["_row"] = pd.factorize(pd.MultiIndex.from_frame(df[row_keys].astype(str)))[0]
    grids = []
    for v in _VALUE_COLS:
        g = df.pivot_table(index="_row", columns=col_key, values=v, aggfunc="first", dropna=False)
        grids.append(g.reindex(columns=cols).reset_index(drop=True))
    firsts = df.drop_duplicates("_row").sort_values("_row")[row_keys].reset_index(drop=True)
    return (firsts, *grids)


def _ratio_text(r: float) -> str:
    return "" if pd.isna(r) else f"{r:g}"


def main_table(results: Path | str = paths.RESULTS, main_instructions: str = "on") -> list[Path]:
    """Write ``tables/main.{csv,md,tex}``: CSV has both instruction settings, views the main one."""
    _check_instructions(main_instructions)
    long = main_frame(results)
    view = long[long.instructions == main_instructions]
    if view.empty:
        raise EraError(f"no results with instructions={main_instructions!r}; available: "
                       f"{sorted(set(long.instructions))}; set main_instructions accordingly")
    cols = _domains(view.domain) + [OVERALL]
    keys, means, stds, counts = _grid(view, ["method", "train_ratio"], "domain", cols)
    labels = pd.DataFrame({"Method": [METHOD_LABELS[m] for m in keys.method],
                           "Train ratio": [_ratio_text(r) for r in keys.train_ratio]})
    sig = load_results("significance", results).get(main_instructions)
    if sig is None:
        raise EraError(f"significance.json has no {main_instructions!r} block; rerun 03_training with that setting")
    md, tex = _render(labels, means, stds, counts)
    marks = significance_marks(sig, keys)
    md = _md_add_column(md, SIG_COLUMN, marks) + "\n" + significance_caption(sig) + "\n"
    return _write_table(long, (md, _tex_add_column(tex, SIG_COLUMN, marks)), Path(results) / "tables", "main")


def significance_marks(sig: dict[str, Any], keys: pd.DataFrame) -> list[str]:
    """Per main-table row, one mark per baseline: ``+`` / ``−`` significantly above / below, ``ns``, ``·`` self."""
    by = {}
    for r in sig["comparisons"]:
        ratio = r["train_ratio"]
        # alignment_only ignores the ratio (one row in the table, one comparison per baseline)
        key = (r["method"], None if ratio is None or r["method"] == "alignment_only" else float(ratio), r["baseline"])
        by[key] = r
    out = []
    for method, ratio in zip(keys.method, keys.train_ratio):
        ratio = None if pd.isna(ratio) or method == "alignment_only" else float(ratio)
        marks = []
        for base in SIG_BASELINES:
            r = by.get((method, ratio, base))
            if method == base:
                marks.append("·")
            elif r is None:
                marks.append("n/a")
            else:
                marks.append(("+" if r["mean_diff"] > 0 else "−") if r["significant"] else "ns")
        out.append(" / ".join(marks))
    return out


def significance_caption(sig: dict[str, Any]) -> str:
    """One generic sentence stating the test behind the significance column."""
    return (f"Last column: {sig['test']} against zero-shot small, the same-model control "
            f"(same train ratio) and zero-shot large; `+`/`−` = significantly higher/lower at Holm-adjusted "
            f"p < {sig['alpha']:g}, `ns` = not significant, `·` = the baseline itself, `n/a` = not compared. "
            f"Unit: {sig['unit']}; {sig['n_resamples']:,} sign flips (exact when fewer suffice).")


def _md_add_column(md: str, title: str, values: list[str]) -> str:
    """Append one text column to a rendered Markdown table (header, rule, one cell per row)."""
    lines = md.rstrip("\n").splitlines()
    lines[0] += f" {title} |"
    lines[1] += ":" + "-" * max(3, len(title) - 1) + "|"
    for i, v in enumerate(values):
        lines[2 + i] += f" {v} |"
    return "\n".join(lines) + "\n"


def _tex_add_column(tex: str, title: str, values: list[str]) -> str:
    """Append one text column to a rendered booktabs table (the first row ending in \\\\ is the header)."""
    lines = tex.splitlines()
    rows = [i for i, line in enumerate(lines) if line.endswith(r"\\")]
    cells = [_tex_escape(title)] + [v.replace("−", "$-$").replace("·", "--") for v in values]
    for i, cell in zip(rows, cells):
        lines[i] = lines[i][:-2].rstrip() + f" & {cell} " + r"\\"
    lines = [line.replace(r"\begin{tabular}{", r"\begin{tabular}{l", 1) for line in lines]
    return "\n".join(lines) + "\n"


def zero_shot_table(results: Path | str = paths.RESULTS) -> list[Path]:
    """Write ``tables/zero_shot.{csv,md}``: every encoder × instructions × scope × domain."""
    long = zero_shot_long(results)
    cols = _domains(long.domain) + [OVERALL, OVERALL_QW]
    keys, means, stds, counts = _grid(long, ["encoder", "role", "instructions", "scope"], "domain", cols)
    labels = keys.rename(columns=str.capitalize)
    means.columns = stds.columns = counts.columns = [c if c != OVERALL_QW else "overall (query-weighted)" for c in cols]
    # No bold here: rows mix scopes and instruction settings, so a column-wise best means nothing.
    views = _render(labels, means, stds, counts, bold=False)
    return _write_table(long, views, Path(results) / "tables", "zero_shot", tex=False)


def lodo_table(results: Path | str = paths.RESULTS, main_instructions: str = "on") -> list[Path]:
    """Write ``tables/lodo.{csv,md,tex}``: per held-out domain, best configuration per evaluation in bold."""
    long = lodo_frame(results)
    view = _one_setting(long, main_instructions, "lodo.json")
    view = view.assign(config=[_lodo_label(m, s) for m, s in zip(view.method, view.source)])
    keys, means, stds, counts = _grid(view, ["held_out", "config"], "evaluation", ["test", "all"])
    labels = pd.DataFrame({"Held-out domain": keys.held_out, "Configuration": keys.config})
    for g in (means, stds, counts):
        g.columns = ["Test split", "All queries"]
    views = _render(labels, means, stds, counts, groups=keys.held_out)
    return _write_table(long, views, Path(results) / "tables", "lodo")


def _lodo_label(method: str, source: str) -> str:
    if source == "zero_shot":
        return METHOD_LABELS[method]
    return f"{METHOD_LABELS[method]} ({'LODO' if source == 'lodo' else 'in-domain'})"


def domain_specific_table(results: Path | str = paths.RESULTS, main_instructions: str = "on") -> list[Path]:
    """Write ``tables/domain_specific.{csv,md,tex}``: a transfer matrix per method, best per column in bold."""
    long = domain_specific_frame(results)
    view = _one_setting(long, main_instructions, "domain_specific.json")
    cols = _domains(view.eval_domain) + [OVERALL]
    blocks = []
    zs = view[(view.method == "zero_shot_small") & (view.scope == "all")]
    for method in [m for m in METHODS if m in set(view.method) and m != "zero_shot_small"]:
        blocks.append(view[view.method == method].assign(block=method))
        blocks.append(zs.assign(block=method))
    view = pd.concat(blocks, ignore_index=True)
    keys, means, stds, counts = _grid(view, ["block", "method", "train_domain"], "eval_domain", cols)
    labels = pd.DataFrame({
        "Method": [METHOD_LABELS[b] for b in keys.block],
        "Trained on": ["zero-shot small (all queries)" if m == "zero_shot_small" else t
                       for m, t in zip(keys.method, keys.train_domain)]})
    views = _render(labels, means, stds, counts, groups=keys.block)
    return _write_table(long, views, Path(results) / "tables", "domain_specific")


# ---------------------------------------------------------------- figures


#: Resolution of the inline previews that :func:`show` displays (never written to disk).
PREVIEW_DPI = 100
#: In-memory PNG preview of each figure saved in this process, keyed by its resolved PDF path.
_PREVIEWS: dict[str, bytes] = {}


def _save(fig: plt.Figure, path: Path, png: Path | None = None) -> list[Path]:
    """Save a figure as a byte-stable PDF (no timestamps) and optionally PNG, atomically, and close it.

    A PNG preview for :func:`show` is rendered last, from the same figure, after the files are
    written, so showing a figure can never change their bytes.
    """
    out = [path]
    try:
        atomic_write(path, lambda p: fig.savefig(p, format="pdf", metadata=_PDF_METADATA, bbox_inches="tight"))
        if png is not None:
            # Agg at a fixed dpi with no Software/time chunks: the same data give the same bytes.
            atomic_write(png, lambda p: fig.savefig(p, format="png", dpi=PNG_DPI, metadata=_PNG_METADATA,
                                                    bbox_inches="tight"))
            out.append(png)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=PREVIEW_DPI, metadata=_PNG_METADATA, bbox_inches="tight")
        _PREVIEWS[str(Path(path).resolve())] = buf.getvalue()
    finally:
        plt.close(fig)
    return out


def _figure(render: Callable[[], plt.Figure], path: Path) -> Path:
    with plt.rc_context(theme()):
        fig = render()
        return _save(fig, path)[0]


def preview(path: Path | str) -> bytes:
    """PNG bytes of the preview of a figure saved in this process (``path`` = its PDF)."""
    key = str(Path(path).resolve())
    if key not in _PREVIEWS:
        raise EraError(f"no preview of {path}: it was not drawn in this Python process; call the report function "
                       f"that writes it (e.g. report.make_all or report.figure_<name>) first, then show it")
    return _PREVIEWS[key]


def show(*figures: Path | str | Iterable[Path | str]) -> None:
    """Display figures inline in Jupyter (PNG previews of their PDFs); non-PDF paths (tables) are ignored."""
    from IPython.display import Image, display

    flat: list[Path] = []
    for item in figures:
        flat.extend([Path(item)] if isinstance(item, (str, Path)) else [Path(p) for p in item])
    for pdf in flat:
        if pdf.suffix == ".pdf":
            display(Image(data=preview(pdf), format="png"))


#: Heading and generic caption of each figure (by file stem), for notebooks that show them all.
CAPTIONS = {
    "ndcg_vs_ratio": ("nDCG@10 against the train ratio",
                      "Overall nDCG@10 on the test split (macro over tasks) of each label-trained method against the "
                      "fraction of labelled queries it was trained on; lines are means, bands ±1 sd over seeds. "
                      "Dashed lines: the zero-shot references; dotted: alignment only, which uses no labels."),
    "domain_bars": ("nDCG@10 per domain",
                    "Every method at one train ratio, per domain and overall; bars are means, error bars ±1 sd "
                    "over seeds."),
    "instructions": ("Query instructions on and off",
                     "Overall nDCG@10 of every method with and without query instructions, at one train ratio; "
                     "error bars ±1 sd over seeds."),
    "lodo": ("Leave one domain out",
             "For each held-out domain: the adapter trained without it (LODO), the in-domain adapter and the "
             "zero-shot references; bars are means, error bars ±1 sd over seeds."),
    "domain_transfer": ("Transfer across domains",
                        "Rows: the domain an adapter was trained on; columns: the domain it was scored on; each "
                        "cell is nDCG@10, mean over seeds."),
    "alignment_curves": ("Phase 1 alignment",
                         "Alignment loss per epoch on the training texts and on held-out texts, with the hold-out "
                         "cosine of the trained adapter and of the closed-form ridge solution."),
    "cost_quality": ("Cost against quality",
                     "Measured query cost (ms per query, rounded to 2 significant figures) against overall nDCG@10 "
                     "of every method; error bars ±1 sd over seeds."),
    "encoder_pairs_gap": ("Encoder pairs: gap closed",
                          "Per encoder pair and train ratio, the share of the gap between zero-shot small and "
                          "zero-shot large that each trained method closes (0 = zero-shot small, 1 = zero-shot "
                          "large); lines are means, bands ±1 sd over seeds."),
}


def show_all(written: dict[str, list[Path]]) -> None:
    """Display every figure of a :func:`make_all` result inline, each under its heading and caption."""
    from IPython.display import Markdown, display

    for files in written.values():
        for pdf in files:
            if pdf.suffix == ".pdf":
                title, text = CAPTIONS.get(pdf.stem, (pdf.stem.replace("_", " "), ""))
                display(Markdown(f"### {title}\n\n{text}".rstrip()))
                show(pdf)


def _series(df: pd.DataFrame, **eq: Any) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for k, v in eq.items():
        mask &= (df[k] == v).to_numpy()
    return df[mask]


def _main_view(results: Path | str, main_instructions: str) -> pd.DataFrame:
    _check_instructions(main_instructions)
    long = main_frame(results)
    view = long[long.instructions == main_instructions]
    if view.empty:
        raise EraError(f"no results with instructions={main_instructions!r}; available: "
                       f"{sorted(set(long.instructions))}")
    return view


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
                         main_instructions: str = "on") -> list[Path]:
    """``ndcg_vs_ratio.{pdf,png}``: overall nDCG@10 vs train ratio, mean and ±1 sd band over seeds (seaborn);
    zero-shot and alignment-only (no labels) as horizontal lines at their means.

    The PNG is the README's figure (``python -m era_core.readme`` copies it to ``docs/img/``).
    """
    seeds = _series(main_seed_frame(results, main_instructions), domain=OVERALL)
    view = _series(_main_view(results, main_instructions), domain=OVERALL)
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

    with plt.rc_context(theme()):
        return _save(render(), Path(figures) / "ndcg_vs_ratio.pdf", png=Path(figures) / "ndcg_vs_ratio.png")


def _bars(ax: plt.Axes, data: pd.DataFrame, x: str, order: list[str], hue: str, hue_order: list[str],
          palette: dict[str, str]) -> None:
    """Seaborn grouped bars of per-seed ``value``: the mean, error bars ±1 sd over seeds (:data:`ERRORBAR`)."""
    sns.barplot(data=data.assign(**{hue: data[hue].astype(str)}), x=x, y="value", order=order, hue=hue,
                hue_order=hue_order, palette=palette, errorbar=ERRORBAR, capsize=0.12,
                err_kws={"linewidth": 0.8, "color": "#333333"}, edgecolor="white", linewidth=0.4, ax=ax)


def figure_domain_bars(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES,
                       bar_ratio: float = 0.4, main_instructions: str = "on") -> Path:
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
                       f"rerun 01_zero_shot and 03_training with instruction_settings='on,off'")
    _check_ratio(long, bar_ratio)
    seeds = pd.concat([main_seed_frame(results, inst) for inst in INSTRUCTION_SETTINGS], ignore_index=True)
    seeds = _series(_at_ratio(seeds, bar_ratio), domain=OVERALL)
    methods = [m for m in METHODS if m in set(seeds.method)]
    seeds = seeds.assign(Short=[SHORT_LABELS[m] for m in seeds.method])

    def render() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(7.2, 4.2))
        _bars(ax, seeds, "Short", [SHORT_LABELS[m] for m in methods], "instructions", list(INSTRUCTION_SETTINGS),
              {"on": "#1f77b4", "off": "#aec7e8"})
        ax.set_xlabel("Method")
        ax.set_ylabel(f"nDCG@10 (test split, overall; {ERRORBAR_TEXT})")
        ax.set_title(f"Effect of query instructions (train ratio {bar_ratio:g})")
        sns.move_legend(ax, "upper left", framealpha=0.9, title="instructions")
        return fig

    return _figure(render, Path(figures) / "instructions.pdf")


def _lighter(color: str, amount: float = 0.5) -> str:
    """``color`` blended towards white (the in-domain twin of a LODO bar)."""
    rgb = np.array(matplotlib.colors.to_rgb(color))
    return matplotlib.colors.to_hex(rgb + (1.0 - rgb) * amount)


def figure_lodo(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES,
                main_instructions: str = "on") -> Path:
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
                           main_instructions: str = "on") -> Path:
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


def _two_sig(v: float) -> float:
    """``v`` rounded to 2 significant figures: measured times vary run to run, the figure's bytes should not."""
    return float(f"{v:.2g}")


def query_costs(results: Path | str = paths.RESULTS, main_instructions: str = "on") -> dict[str, float]:
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
                        main_instructions: str = "on") -> Path:
    """``cost_quality.pdf``: measured query cost (ms/query, log x) vs overall nDCG@10 (±1 sd) for every method."""
    zs = load_results("zero_shot", results)
    costs = query_costs(results, main_instructions)
    view = _series(_main_view(results, main_instructions), domain=OVERALL)
    mean, std = _VALUE_COLS[0], _VALUE_COLS[1]
    points = _with_labels(view.assign(ms=[costs[m] for m in view.method]))
    markers = {"zero_shot_small": "s", "zero_shot_large": "s", "alignment_only": "D", "label_only": "^",
               "era": "o", "small_adapter": "v", "fused": "P", "residual_mlp": "X"}
    present = [m for m in METHODS if m in set(points.method)]
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
            for x, r, y in zip(s.ms, s.train_ratio, s[mean]):
                if not pd.isna(r):
                    # Ratio labels go left, model names right, so they never collide.
                    ax.annotate(f"r={r:g}", (x, y), xytext=(-8, 0), textcoords="offset points", fontsize=7,
                                va="center", ha="right", color=METHOD_COLORS[m])
        ax.set_xscale("log")
        lo, hi = min(costs[m] for m in present), max(costs[m] for m in present)
        ax.set_xlim(lo / 3.0, hi * 3.0)
        ax.set_xlabel("Measured query cost (ms per query, log scale; 2 significant figures)")
        ax.set_ylabel(f"nDCG@10 (test split, overall; {ERRORBAR_TEXT})")
        ax.set_title(f"Cost vs. quality (instructions {main_instructions})")
        # Below the axes, so the note never hides a point.
        ax.text(0.5, -0.16, "Query cost = measured query-encoder time (01_zero_shot); documents are indexed once "
                "with the small model.\nERA, Embedding Adapter and alignment-only use the large model, the small "
                "adapter the small one, fused both.", transform=ax.transAxes, fontsize=7.5, va="top", ha="center",
                color="#333333")
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), framealpha=0.9, title=None)
        return fig

    return _figure(render, Path(figures) / "cost_quality.pdf")


# ---------------------------------------------------------------- everything


def make_all(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES, bar_ratio: float = 0.4,
             main_instructions: str = "on") -> dict[str, list[Path]]:
    """Build every table and figure the results allow; print each one skipped and why."""
    _check_instructions(main_instructions)
    results, figures = Path(results), Path(figures)
    jobs: list[tuple[str, Callable[[], Path | list[Path]]]] = [
        ("main_table", lambda: main_table(results, main_instructions)),
        ("zero_shot_table", lambda: zero_shot_table(results)),
        ("lodo_table", lambda: lodo_table(results, main_instructions)),
        ("domain_specific_table", lambda: domain_specific_table(results, main_instructions)),
        ("encoder_pairs_table", lambda: encoder_pairs_table(results)),
        ("ndcg_vs_ratio", lambda: figure_ndcg_vs_ratio(results, figures, main_instructions)),
        ("domain_bars", lambda: figure_domain_bars(results, figures, bar_ratio, main_instructions)),
        ("instructions", lambda: figure_instructions(results, figures, bar_ratio)),
        ("lodo", lambda: figure_lodo(results, figures, main_instructions)),
        ("domain_transfer", lambda: figure_domain_transfer(results, figures, main_instructions)),
        ("alignment_curves", lambda: figure_alignment_curves(results, figures)),
        ("alignment_scaling", lambda: figure_alignment_scaling(results, figures)),
        ("cost_quality", lambda: figure_cost_quality(results, figures, main_instructions)),
        ("gap_closed", lambda: figure_gap_closed(results, figures, main_instructions)),
    ]
    written: dict[str, list[Path]] = {}
    skipped: list[tuple[str, str]] = []
    for name, job in jobs:
        try:
            out = job()
        except EraError as exc:  # a missing or partial results file: build the rest, report this one
            skipped.append((name, str(exc)))
            continue
        written[name] = out if isinstance(out, list) else [out]
    for name, why in skipped:
        print(f"report: skipped {name}: {why}")
    if skipped:
        print(f"report: built {len(written)} of {len(jobs)} outputs; {len(skipped)} skipped (see above)")
    return written


def encoder_pairs_seed_frame(results: Path | str = paths.RESULTS) -> pd.DataFrame:
    """Per-seed rows of the encoder-pair study with the two ratios to its own zero-shot references.

    ``delta_vs_small`` = method − zero-shot small→small; ``gap_closed`` = (method − zero-shot small)
    / (zero-shot large − zero-shot small) (:func:`era_core.stats.gap_closed`, NaN without a gap);
    ``recovered_share`` = method / zero-shot large→large (:func:`era_core.stats.recovered_share`).
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
                      main_instructions: str = "on") -> Path:
    """``encoder_pairs_gap.pdf``: share of the zero-shot gap closed vs train ratio, per pair and method (±1 sd)."""
    seeds = _one_setting(encoder_pairs_seed_frame(results), main_instructions, "encoder_pairs.json")
    inst = seeds.instructions.iloc[0]
    trained = seeds[seeds.train_ratio.notna() & seeds.gap_closed.notna()]
    if trained.empty:
        raise EraError("encoder_pairs.json has no trained rows with a zero-shot gap (zero-shot large above small); "
                       "rerun 07_encoder_pairs with methods and a pair whose large model beats its small one")
    trained = trained.assign(train_ratio=trained.train_ratio.astype(float),
                             Method=[METHOD_LABELS[m] for m in trained.method])
    methods = [METHOD_LABELS[m] for m in METHODS if m in set(trained.method)]
    pairs = list(dict.fromkeys(trained.pair))
    colors = sns.color_palette("colorblind", n_colors=max(len(pairs), 1)).as_hex()

    def render() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(7.2, 4.4))
        sns.lineplot(data=trained, x="train_ratio", y="gap_closed", hue="pair", hue_order=pairs,
                     palette=dict(zip(pairs, colors)), style="Method", style_order=methods, markers=True,
                     errorbar=ERRORBAR, err_kws={"alpha": 0.15, "lw": 0}, lw=1.6, ms=7, ax=ax)
        ax.axhline(0.0, color=METHOD_COLORS["zero_shot_small"], ls="--", lw=1.2)
        ax.axhline(1.0, color=METHOD_COLORS["zero_shot_large"], ls="--", lw=1.2)
        ax.text(1.0, 0.0, " zero-shot small", transform=ax.get_yaxis_transform(), va="center", ha="left", fontsize=7)
        ax.text(1.0, 1.0, " zero-shot large", transform=ax.get_yaxis_transform(), va="center", ha="left", fontsize=7)
        ratios = sorted(set(trained.train_ratio))
        ax.set_xticks(ratios)
        ax.set_xticklabels([f"{r:g}" for r in ratios])
        ax.set_xlabel("Train ratio")
        ax.set_ylabel(f"Gap closed ({ERRORBAR_TEXT})")
        ax.set_title(f"Encoder pairs: share of the zero-shot gap closed (instructions {inst})")
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.16, 1.0), framealpha=0.9)
        return fig

    return _figure(render, Path(figures) / "encoder_pairs_gap.pdf")
