"""Rewrite the README's generated blocks from the files in ``results/`` (no number is typed by hand).

A block is the text between two marker lines::

    <!-- era:results:begin -->
    ... generated, overwritten on every run ...
    <!-- era:results:end -->

Each block name has a renderer and the files it reads (:data:`BLOCKS`). Sentences are built by
code from those files, with every number filled in, and worded so that they stay true when the
numbers change (``above``/``below`` is decided from the means). A block whose source file is
missing is left exactly as it was, with a warning naming the file (``--strict`` makes that an
error). ``--check`` writes nothing and exits 1 when the README (or its figure) would change.

``--time WHAT -- CMD ...`` runs CMD, measures its wall time and records it in
``results/timing/runtimes.json``, the source of the run-times block.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from era_core import paths, report
from era_core.errors import EraError
from era_core.io import atomic_write_bytes, atomic_write_text, read_json, write_json

_MARKER = re.compile(r"<!-- era:([A-Za-z0-9_-]+):(begin|end) -->")
#: Where the README's figure lives, relative to the README's folder (figures/ is not committed).
README_FIGURE = Path("docs/img/ndcg_vs_ratio.png")
RUNTIMES = Path("timing/runtimes.json")


class ReadmeError(EraError):
    """The README's markers are malformed, or a block's source is missing under ``--strict``."""


@dataclass(frozen=True)
class Context:
    """Where the generator reads from."""

    results: Path
    figures: Path

    def path(self, rel: str) -> Path:
        """A source path: ``figures/...`` under the figures folder, anything else under results."""
        if rel.startswith("figures/"):
            return self.figures / rel.removeprefix("figures/")
        return self.results / rel


# ---------------------------------------------------------------- formatting helpers


def _f(v: float) -> str:
    return f"{v:.3f}"


def _d(v: float) -> str:
    return f"{v:+.3f}".replace("-", "−")


def _r(r: float) -> str:
    return f"{r:g}"


def _span(values: list[float]) -> str:
    """``0.440 to 0.499``, or one value when all are equal as displayed."""
    lo, hi = _f(min(values)), _f(max(values))
    return lo if lo == hi else f"{lo} to {hi}"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _ratios(rs: list[float]) -> str:
    return ("ratio " if len(rs) == 1 else "ratios ") + ", ".join(_r(r) for r in rs)


def _shown(v: float) -> float:
    """A mean as the tables display it (3 decimals), so that prose differences match the table."""
    return float(_f(v))


def _versus(a: dict[float, float], b: dict[float, float] | float, label: str) -> str:
    """``above LABEL at every train ratio (+0.048 at 0.1, ...)``: where series ``a`` is above, level or below ``b``."""
    diffs = {r: _shown(a[r]) - _shown(b[r] if isinstance(b, dict) else b) for r in sorted(a)
             if not isinstance(b, dict) or r in b}
    if not diffs:
        return f"not comparable with {label} (no common train ratio)"
    groups: dict[str, list[float]] = {"above": [], "level with": [], "below": []}
    for r, d in diffs.items():
        groups["above" if round(d, 3) > 0 else "below" if round(d, 3) < 0 else "level with"].append(r)
    parts = []
    for word, rs in groups.items():
        if not rs:
            continue
        where = "at every train ratio" if len(rs) == len(diffs) and len(diffs) > 1 else f"at {_ratios(rs)}"
        shown = "" if word == "level with" else " (" + ", ".join(f"{_d(diffs[r])} at {_r(r)}" for r in rs) + ")"
        parts.append(f"{word} {'it' if parts else label} {where}{shown}")
    return _join(parts)


def _seconds(s: float) -> str:
    """``0.01 s``, ``9.4 s``, ``9 min 40 s``, ``1 h 2 min``."""
    if s < 1:
        return f"{s:.2f} s"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec} s"
    h, m = divmod(m, 60)
    return f"{h} h {m} min"


def _human(n: float) -> str:
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


# ---------------------------------------------------------------- reading tables


def _setting(df: pd.DataFrame, wanted: str = "on") -> tuple[pd.DataFrame, str]:
    """Rows of instruction setting ``wanted``, or of the only setting the file holds."""
    have = sorted(set(df["instructions"]))
    inst = wanted if wanted in have else have[0]
    return df[df["instructions"] == inst], inst


def _mean_by_ratio(df: pd.DataFrame, method: str, domain: str = "overall") -> dict[float, float]:
    s = df[(df["method"] == method) & (df["domain"] == domain) & df["train_ratio"].notna()]
    return {float(r): float(v) for r, v in zip(s["train_ratio"], s["ndcg@10_mean"])}


def _single(df: pd.DataFrame, method: str, domain: str = "overall") -> float | None:
    s = df[(df["method"] == method) & (df["domain"] == domain)]
    return float(s["ndcg@10_mean"].iloc[0]) if len(s) else None


def _std_at(df: pd.DataFrame, method: str, ratio: float, domain: str = "overall") -> float | None:
    s = df[(df["method"] == method) & (df["domain"] == domain) & (df["train_ratio"] == ratio)]
    v = s["ndcg@10_std"].iloc[0] if len(s) else float("nan")
    return None if pd.isna(v) else float(v)


# ---------------------------------------------------------------- renderers


def render_setup(ctx: Context) -> str:
    """Benchmark size, encoders, split and seeds of the main table, from zero_shot.json and training.json."""
    from era_core.encoders import REGISTRY

    zs, tr = read_json(ctx.path("zero_shot.json")), read_json(ctx.path("training.json"))
    setup, models = zs["setup"], zs["models"]
    ref = next(r for r in zs["records"] if r["encoder"] == setup["small_model"] and r["scope"] == "all")
    n_tasks = len(setup.get("tasks") or ref["per_task"])
    n_domains = len(set(ref["task_domain"].values()))
    n_queries = sum(int(v) for v in ref["n_queries"].values())
    params = tr.get("params", {})
    seeds = [str(s) for s in str(params.get("seeds", "")).split(",") if s.strip()]

    def model(key: str) -> str:
        spec = REGISTRY.get(key)
        name = spec.hub_id.rsplit("/", 1)[-1] if spec is not None else key
        extra = ", ONNX" if spec is not None and spec.backend == "onnx" else ""
        precision = f", `{models[key]['precision']}`" if "precision" in models[key] else ""
        return f"{name} ({_human(float(models[key]['params']))} parameters{extra}{precision})"

    text = (f"Benchmark `{setup['benchmark']}`: {n_tasks} tasks in {n_domains} domains, {n_queries:,} labelled "
            f"queries (see `results/datasheet.md`). Query encoder {model(setup['large_model'])} mapped into the "
            f"index of {model(setup['small_model'])}.")
    if "eval_ratio" in params:
        text += (f" nDCG@10 on each task's test split ({100 * float(params['eval_ratio']):g} % of its labelled "
                 f"queries), macro mean over tasks")
        text += f", mean ± std over seeds {', '.join(seeds)} (the seed also redraws the split)." if seeds else "."
    return text


def render_results(ctx: Context) -> str:
    """The README's figure, the main table (tables/main.md) and what its means show."""
    main = report.main_frame(ctx.results)
    view, inst = _setting(main)
    table = ctx.path("tables/main.md").read_text().rstrip("\n")
    lines = [f"![nDCG@10 against train ratio]({README_FIGURE.as_posix()})", "", table, "",
             f"What the means show (overall nDCG@10, test split, instructions {inst}):"]
    lines += _main_findings(view, "")
    lines += _significance_findings(ctx, inst)
    off = main[main["instructions"] != inst]
    if len(off):
        other = sorted(set(off["instructions"]))[0]
        off = off[off["instructions"] == other]
        parts = []
        for m, label in (("zero_shot_small", "zero-shot small"), ("zero_shot_large", "zero-shot large"),
                         ("alignment_only", "alignment only")):
            v = _single(off, m)
            if v is not None:
                parts.append(f"{label} {_f(v)}")
        for m, label in (("era", "ERA"), ("small_adapter", "small adapter"), ("label_only", "label only")):
            series = _mean_by_ratio(off, m)
            if series:
                parts.append(f"{label} {_span(list(series.values()))}")
        lines.append(f"- With instructions {other}: {_join(parts)} (`results/tables/main.csv`, rows "
                     f"`instructions={other}`).")
        lines += _main_findings(off, f" (instructions {other})", only_small=True)
    return "\n".join(lines)


def _significance_findings(ctx: Context, inst: str) -> list[str]:
    """One sentence per trained method against the same-model control, from the main table's paired tests."""
    path = ctx.path("significance.json")
    if not path.is_file():
        return []
    sig = read_json(path).get(inst, {})
    out = []
    for method, name in (("era", "ERA"), ("fused", "Fused")):
        rows = sorted((r for r in sig.get("comparisons", []) if r["method"] == method
                       and r["baseline"] == "small_adapter"), key=lambda r: r["train_ratio"])
        if not rows:
            continue
        groups: dict[str, list[float]] = {}
        for r in rows:
            word = ("significantly higher" if r["mean_diff"] > 0 else "significantly lower") if r["significant"] \
                else "not significantly different"
            groups.setdefault(word, []).append(float(r["train_ratio"]))
        parts = [f"{word} at {_ratios(rs)}" for word, rs in groups.items()]
        out.append(f"- Paired test against the same-model control (Holm-adjusted p < {sig['alpha']:g}): {name} is "
                   f"{_join(parts)}.")
    return out


def _main_findings(view: pd.DataFrame, suffix: str, only_small: bool = False) -> list[str]:
    era = _mean_by_ratio(view, "era")
    if not era:
        return []
    out = []
    zs_small, zs_large = _single(view, "zero_shot_small"), _single(view, "zero_shot_large")
    if zs_small is not None:
        out.append(f"- ERA{suffix} is {_versus(era, zs_small, f'zero-shot small ({_f(zs_small)})')}.")
    if only_small:
        return out
    if zs_large is not None:
        top = max(era)
        std = _std_at(view, "era", top)
        shown = _f(era[top]) + ("" if std is None else f" ± {_f(std)}")
        out.append(f"- ERA is {_versus(era, zs_large, f'zero-shot large ({_f(zs_large)})')}; at ratio {_r(top)} "
                   f"it scores {shown}, with the corpus indexed by the small model only.")
    control = _mean_by_ratio(view, "small_adapter")
    if control:
        label = (f"the same-model control (`small_adapter`: the same Phase 2 on the small model's own query "
                 f"vectors; {_span(list(control.values()))})")
        out.append(f"- ERA is {_versus(era, control, label)}.")
    fused = _mean_by_ratio(view, "fused")
    if fused and control:
        out.append(f"- Fused (large ⊕ small query vectors mapped into the small space, starting as the control) is "
                   f"{_versus(fused, control, 'the same-model control')}.")
    label = _mean_by_ratio(view, "label_only")
    if label:
        text = f"the Embedding Adapter (label only, random init; {_span(list(label.values()))})"
        out.append(f"- ERA is {_versus(era, label, text)}.")
    return out


def render_training(ctx: Context) -> str:
    """Phase 1 cosines (alignment.json) and the label-only adapter against an untrained random one."""
    al, tr = read_json(ctx.path("alignment.json")), read_json(ctx.path("training.json"))
    main, _ = _setting(report.main_frame(ctx.results))
    lines = [f"- Phase 1 (alignment on identical texts) reaches a hold-out cosine of {al['eval_cosine']:.4f}; the "
             f"closed-form ridge reaches {al['ridge_eval_cosine']:.4f} (`results/alignment.json`)."]
    label = _mean_by_ratio(main, "label_only")
    inst = sorted(set(main["instructions"]))[0]
    floor = [float(r["scopes"]["test"]["overall"]["ndcg@10"]) for r in tr.get("random_adapter", [])
             if r.get("instructions") == inst]
    if label and floor:
        low = min(label)
        p = tr.get("params", {})
        sched = ""
        if "label_epochs" in p and "label_patience" in p:
            sched = (f" (schedule `{p.get('label_schedule', '?')}`, {p['label_epochs']}-epoch budget, early-stopping "
                     f"patience {p['label_patience']})")
        word = "above" if round(label[low] - max(floor), 3) > 0 else "not above"
        lines.append(f"- The Embedding Adapter{sched} scores {_f(label[low])} at ratio {_r(low)}, {word} an "
                     f"untrained random adapter ({_span(floor)} over seeds).")
    return "\n".join(lines)


def render_lodo(ctx: Context) -> str:
    """LODO and domain-specific ERA against zero-shot small and the jointly trained ERA."""
    lodo, inst = _setting(report.lodo_frame(ctx.results))
    ds, _ = _setting(report.domain_specific_frame(ctx.results), inst)
    main, _ = _setting(report.main_frame(ctx.results), inst)
    lines = []
    test = lodo[lodo["evaluation"] == "test"]
    era = test[(test["method"] == "era") & (test["source"] == "lodo")]
    zs = test[(test["method"] == "zero_shot_small") & (test["source"] == "zero_shot")].set_index("held_out")
    if len(era):
        ratio = float(era["train_ratio"].iloc[0])
        ref = zs["ndcg@10_mean"]
        above = [f"{d} ({_f(v)} vs {_f(ref[d])})" for d, v in zip(era["held_out"], era["ndcg@10_mean"])
                 if d in ref.index and _shown(v) > _shown(ref[d])]
        n = sum(d in zs.index for d in era["held_out"])
        where = (f"above the small model's zero-shot in {len(above)} of {n} held-out domains"
                 + (f": {_join(above)}" if above else ""))
        lines.append(f"- Leave-one-domain-out ERA (ratio {_r(ratio)}, instructions {inst}) scores "
                     f"{_span(list(era['ndcg@10_mean']))} on the held-out domain's test split, {where} "
                     f"(`results/tables/lodo.md`).")
    dse = ds[(ds["method"] == "era") & (ds["scope"] == "protocol")]
    if len(dse):
        ratio = float(dse["train_ratio"].iloc[0])
        own = dse[dse["train_domain"] == dse["eval_domain"]]
        same = main[(main["method"] == "era") & (main["train_ratio"] == ratio)]
        joint = dict(zip(same["domain"], same["ndcg@10_mean"]))
        beats = [d for d, v in zip(own["eval_domain"], own["ndcg@10_mean"])
                 if d in joint and _shown(v) > _shown(joint[d])]
        n = sum(d in joint for d in own["eval_domain"])
        other = dse[(dse["train_domain"] != dse["eval_domain"])
                    & ~dse["eval_domain"].isin([report.OVERALL, report.OVERALL_QW])]
        text = (f"- Domain-specific ERA adapters (ratio {_r(ratio)}) score {_span(list(own['ndcg@10_mean']))} on "
                f"their own domain, above the jointly trained ERA at the same ratio in {len(beats)} of {n} domains")
        if len(other):
            text += f", and {_span(list(other['ndcg@10_mean']))} on the other domains"
        lines.append(text + " (`results/tables/domain_specific.md`).")
    return "\n".join(lines)


def _pair_means(rows: pd.DataFrame, method: str) -> dict[float, float]:
    sel = rows[(rows["method"] == method) & rows["train_ratio"].notna()]
    return {float(r): float(v) for r, v in zip(sel["train_ratio"], sel["ndcg@10_mean"])}


def _index_is_transformer(pair: str) -> bool:
    """The rule's candidates: pairs whose document (index) encoder is a transformer, not a static embedding."""
    from era_core.encoders import REGISTRY

    small = pair.split(">", 1)[1]
    return small in REGISTRY and REGISTRY[small].backend != "static"


def render_encoder_pairs(ctx: Context) -> str:
    """The default-pair rule applied to the measured zero-shot gaps, then per pair: ERA and fused against the control."""
    df, inst = _setting(report.encoder_pairs_frame(ctx.results))
    zs = read_json(ctx.path("zero_shot.json"))["setup"]
    default = f"{zs['large_model']}>{zs['small_model']}"
    gaps: dict[str, float] = {}
    lines = []
    for pair in dict.fromkeys(df["pair"]):
        rows = df[df["pair"] == pair]
        large = rows[rows["method"] == "zero_shot_large"]
        if not len(large):
            continue
        gaps[pair] = float(large["delta_mean"].iloc[0])
        text = (f"- `{pair}`: zero-shot large {_f(float(large['ndcg@10_mean'].iloc[0]))}, "
                f"{_d(gaps[pair])} over small→small")
        control = _pair_means(rows, "small_adapter")
        for method, name in (("era", "ERA"), ("fused", "fused")):
            series = _pair_means(rows, method)
            if series and control:
                text += f"; {name} is {_versus(series, control, 'the same-model control')}"
        era = rows[(rows["method"] == "era") & rows["train_ratio"].notna() & rows["gap_closed_mean"].notna()]
        if len(era):
            top = era.loc[era["train_ratio"].idxmax()]
            text += (f"; at ratio {_r(float(top['train_ratio']))} ERA closes {_f(float(top['gap_closed_mean']))} of the "
                     f"zero-shot gap")
        lines.append(text + ".")
    if not lines:
        return "- The encoder-pair study holds no zero-shot rows (`results/tables/encoder_pairs.md`)."
    candidates = {p: g for p, g in gaps.items() if _index_is_transformer(p)}
    head = (f"Encoder-pair study (instructions {inst}, overall nDCG@10 on the test split, mean over seeds; "
            f"`results/tables/encoder_pairs.md`). The default pair is chosen by a rule fixed before any trained "
            f"score was looked at: among pairs whose index encoder is a transformer, the largest zero-shot gap "
            f"(large on both sides minus small on both sides) with instructions.")
    if candidates:
        best = max(candidates, key=candidates.get)
        head += (f" By the measured gaps that is `{best}` ({_d(candidates[best])}), "
                 + ("which is the configured default." if best == default else
                    f"but the configured default is `{default}`: the rule and the configuration disagree."))
    return "\n".join([head, ""] + lines)


_BENCH_EXTRA_TARGETS = {"warm_make_paper_s": (5.0, "<")}


def render_bench(ctx: Context) -> str:
    """The `make bench` table from bench.json: ratios, targets and whether each is met."""
    from era_core.perf import TARGETS

    b = read_json(ctx.path("bench.json"))
    sec = b.get("sections", {})

    def num(v: Any, fmt: str = "{:.3g}") -> str:
        return "—" if not isinstance(v, (int, float)) or isinstance(v, bool) else fmt.format(v)

    def met(field: str) -> tuple[str, str]:
        target = TARGETS.get(field) or _BENCH_EXTRA_TARGETS.get(field)
        v = b.get(field)
        if target is None:
            return "—", "—"
        ok = None
        if isinstance(v, (int, float)):
            ok = {">=": v >= target[0], ">": v > target[0], "<": v < target[0]}[target[1]]
        return f"{target[1].replace('>=', '≥')} {target[0]:g}", "—" if ok is None else ("yes" if ok else "**no**")

    rows = []
    enc = sec.get("encode", {})
    p, q = enc.get("passages", {}), enc.get("queries", {})
    t, m = met("encode_vs_st_ratio")
    rows.append((f"encoding, minilm-l6 passages, batch {enc.get('batch_size', '?')}, max_length "
                 f"{enc.get('max_length', '?')}, `{b.get('encode_dtype') or enc.get('era_precision', '?')}`",
                 "`SentenceTransformer.encode` (fp32)",
                 f"{num(b.get('encode_vs_st_ratio'))}× ({num(p.get('era_texts_per_s'))} vs "
                 f"{num(p.get('st_texts_per_s'))} passages/s); min cosine {num(b.get('encode_cosine_min'), '{:.5f}')}",
                 t, m))
    rows.append(("same, fp32", "same", f"{num(b.get('encode_fp32_vs_st_ratio'))}× "
                 f"({num(p.get('era_fp32_texts_per_s'))} passages/s)", "—", "—"))
    rows.append(("encoding, short queries", "same", f"{num(b.get('encode_queries_vs_st_ratio'))}× "
                 f"({num(q.get('era_texts_per_s'))} vs {num(q.get('st_texts_per_s'))} queries/s)", "—", "—"))
    gem = sec.get("encode_gemma", {})
    if gem.get("skipped"):
        rows.append(("encoding, embeddinggemma-300m", "`SentenceTransformer.encode` (fp32)", f"skipped: {gem['skipped']}",
                     "≥ 1.2×, cosine > 0.9999", "—"))
    elif gem:
        gp, gq = gem.get("passages", {}), gem.get("queries", {})
        t, m = met("encode_gemma_vs_st_ratio")
        tc, mc = met("encode_gemma_cosine_min")
        rows.append((f"encoding, embeddinggemma-300m passages (with its prompts), batch {gem.get('batch_size', '?')}, "
                     f"max_length {gem.get('max_length', '?')}, `{b.get('encode_gemma_dtype') or '?'}`",
                     "`SentenceTransformer.encode` (fp32), same prompted texts",
                     f"{num(b.get('encode_gemma_vs_st_ratio'))}× ({num(gp.get('era_texts_per_s'))} vs "
                     f"{num(gp.get('st_texts_per_s'))} passages/s); min cosine "
                     f"{num(b.get('encode_gemma_cosine_min'), '{:.5f}')}", f"{t}, cosine {tc}",
                     "yes" if (m, mc) == ("yes", "yes") else ("—" if "—" in (m, mc) else "**no**")))
        rows.append(("same, fp32; short queries (bf16)", "same",
                     f"{num(b.get('encode_gemma_fp32_vs_st_ratio'))}× fp32; queries "
                     f"{num(b.get('encode_gemma_queries_vs_st_ratio'))}× ({num(gq.get('era_texts_per_s'))} vs "
                     f"{num(gq.get('st_texts_per_s'))} queries/s)", "—", "—"))
    srch = sec.get("search", {})
    sizes = list(srch.get("sizes", {}).values())
    docs = " / ".join(_human(float(s["docs"])) for s in sizes) or "?"
    for ref, key, field in (("NumPy full `argsort`", "vs_numpy_ratio", "search_vs_numpy_ratio"),
                            ("`faiss.IndexFlatIP`", "vs_faiss_ratio", "search_vs_faiss_ratio")):
        t, m = met(field)
        rows.append((f"exact top-{srch.get('k', '?')}, {srch.get('queries', '?')} queries × {docs} docs", ref,
                     " / ".join(f"{num(s.get(key))}×" for s in sizes) or "—", t, m))
    mem = srch.get("memory", {})
    rows.append((f"peak RSS of a search over {_human(float(mem.get('docs', 0)))} docs", "corpus array "
                 f"{num(mem.get('corpus_mb'), '{:.0f}')} MB", f"{num(b.get('search_peak_rss_mb_1m'), '{:.0f}')} MB "
                 f"(+{num(mem.get('search_overhead_mb'), '{:.0f}')} MB during the search)", "—", "—"))
    mt = sec.get("metrics", {})
    t, m = met("metrics_vs_pytrec_ratio")
    rows.append((f"metrics, {mt.get('queries', '?')} queries × top-{mt.get('depth', '?')}", "`pytrec_eval`",
                 f"{num(b.get('metrics_vs_pytrec_ratio'))}×, max abs diff {num(b.get('metrics_max_abs_diff'))}", t, m))
    tr = sec.get("training", {})
    rows.append((f"Phase 1, {tr.get('pairs_train', '?')} pairs, {tr.get('epochs', '?')} epochs",
                 "closed-form ridge (`align_init: ridge`)",
                 f"AdamW {num(tr.get('adamw_s'))} s, {num(b.get('phase1_steps_per_s'))} steps/s, 99 % of the final "
                 f"hold-out cosine at epoch {tr.get('epoch_to_99pct', '?')}; ridge {num(b.get('ridge_time_s'))} s, "
                 f"hold-out cosine {num(b.get('ridge_eval_cosine'), '{:.4f}')} vs AdamW "
                 f"{num(b.get('adamw_eval_cosine'), '{:.4f}')}", "—", "—"))
    t, m = met("warm_make_paper_s")
    rows.append(("warm `make paper` (nothing stale)", "—", f"{num(b.get('warm_make_paper_s'))} s", t, m))
    loaded = b.get("zero_shot_cached_loaded_models")
    rows.append(("zero-shot rerun with every embedding cached", "—",
                 f"{num(b.get('zero_shot_cached_s'))} s, models loaded: {', '.join(loaded) if loaded else 'none'}",
                 "no model load", "—" if loaded is None else ("yes" if not loaded else "**no**")))
    sc = b.get("scaling") or {}
    if sc:
        rows.append(("scaling (log-log slope)", "linear = 1",
                     f"encode {num(sc.get('encode', {}).get('slope'), '{:.2f}')}, search "
                     f"{num(sc.get('search', {}).get('slope'), '{:.2f}')}", "—", "—"))
    env = b.get("environment", {})
    blas = "; ".join(f"{p.get('internal_api')} {p.get('version') or ''}".strip() for p in env.get("threadpools", [])
                     if p.get("user_api") == "blas")
    total = sum(float(v) for v in b.get("section_seconds", {}).values())
    head = (f"Measured by `make bench` ({'quick mode, toy sizes' if b.get('quick') else 'full mode'}, "
            f"{_seconds(total)}) on {env.get('cpu', 'an unknown CPU')}, {env.get('threads_requested', '?')} threads"
            + (f", BLAS {blas}" if blas else "") + " (`results/bench.json`):")
    table = ["| what | compared with | result | target | met |", "|---|---|---|---|---|"]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join([head, "", *table])


def render_runtimes(ctx: Context) -> str:
    """Wall times recorded with ``--time`` (results/timing/runtimes.json)."""
    entries = read_json(ctx.path(RUNTIMES.as_posix())).get("entries", [])
    if not entries:
        raise ReadmeError(f"{ctx.path(RUNTIMES.as_posix())} holds no entries; record one with "
                          f"`python -m era_core.readme --time WHAT -- CMD`")
    lines = ["| what | command | time |", "|---|---|---|"]
    for e in entries:
        lines.append(f"| {e['what']} | `{e['command']}` | {_seconds(float(e['seconds']))} |")
    return "\n".join(lines)


#: Recorded comparisons made on machines this repository cannot reach (read as they are, with provenance).
RECORDED_TOLERANCE = paths.ROOT / "docs" / "measurements"


def _tolerance_rows(cmp: dict[str, Any]) -> list[str]:
    def cell(v: Any) -> str:
        return "—" if v is None else _f(float(v))

    label = report.METHOD_LABELS.get
    rows = [f"| {cmp['label']} | {label(m, m)} | 0 (byte-identical) | 0 | — |" for m in cmp.get("byte_identical", [])]
    for r in cmp["methods"]:
        rows.append(f"| {cmp['label']} | {label(r['method'], r['method'])} | {cell(r['max_abs_diff_overall'])} | "
                    f"{cell(r['max_abs_diff_domain'])} | {cell(r['max_seed_sd_overall'])} |")
    return rows


def render_tolerance(ctx: Context) -> str:
    """Measured tolerances: results/tolerance.json (this machine) and docs/measurements/*.json (recorded elsewhere)."""
    measured = read_json(ctx.path("tolerance.json"))["comparisons"]
    recorded = [read_json(f) for f in sorted(RECORDED_TOLERANCE.glob("*.json"))]
    lines = ["| comparison | method | largest move, overall nDCG@10 | largest move in a domain | largest seed sd, overall |",
             "|---|---|---|---|---|"]
    for cmp in measured + recorded:
        lines += _tolerance_rows(cmp)
    notes = [f"- {c['label']}: {c['provenance']}." for c in recorded if c.get("provenance")]
    moving = sorted({m for c in measured for m in c.get("methods_moving_more_than_their_seed_sd", [])})
    verdict = ("every method moved by less than its own spread over seeds, so no conclusion drawn from mean ± sd "
               "depends on the precision" if not moving else
               f"{_join([report.METHOD_LABELS.get(m, m) for m in moving])} moved by more than its own spread over seeds")
    return "\n".join(lines + [""] + notes + [f"- On this machine's comparison(s), {verdict}."])


@dataclass(frozen=True)
class Block:
    """A generated README block: the files it reads (results-relative, or ``figures/...``) and its renderer."""

    sources: tuple[str, ...]
    render: Callable[[Context], str]
    hint: str  # what writes the sources


#: Means come from the same frames (era_core.report) as the tables, so prose and tables agree to the last digit.
BLOCKS: dict[str, Block] = {
    "setup": Block(("zero_shot.json", "training.json"), render_setup, "notebooks 01_zero_shot and 03_training"),
    "results": Block(("tables/main.md", "figures/ndcg_vs_ratio.png", "zero_shot.json", "training.json"),
                     render_results, "notebooks 01_zero_shot, 03_training and 06_figures (`make paper`)"),
    "training": Block(("alignment.json", "training.json", "zero_shot.json"), render_training,
                      "notebooks 01_zero_shot, 02_alignment and 03_training"),
    "lodo": Block(("tables/lodo.md", "tables/domain_specific.md", "lodo.json", "domain_specific.json",
                   "zero_shot.json", "training.json"), render_lodo,
                  "notebooks 04_lodo, 05_domain_specific and 06_figures (`make paper`)"),
    "encoder_pairs": Block(("tables/encoder_pairs.md", "encoder_pairs.json", "zero_shot.json"), render_encoder_pairs,
                           "notebook 07_encoder_pairs"),
    "bench": Block(("bench.json",), render_bench, "`make bench`"),
    "runtimes": Block((RUNTIMES.as_posix(),), render_runtimes, "`python -m era_core.readme --time WHAT -- CMD`"),
    "tolerance": Block(("tolerance.json",), render_tolerance, "`python -m era_core.tolerance` on two results folders"),
}


# ---------------------------------------------------------------- markers


@dataclass(frozen=True)
class Span:
    """One block in the README text: its name and the character range of its content."""

    name: str
    start: int  # just after the begin marker's line
    end: int  # at the start of the end marker


def find_blocks(text: str, where: str = "README.md") -> list[Span]:
    """Every marker pair in ``text``, in order; malformed markers raise :class:`ReadmeError`."""
    spans, open_name, open_at, open_line = [], None, 0, 0
    seen: set[str] = set()
    for m in _MARKER.finditer(text):
        name, kind = m.group(1), m.group(2)
        line = text.count("\n", 0, m.start()) + 1
        if kind == "begin":
            if open_name is not None:
                raise ReadmeError(f"{where} line {line}: <!-- era:{name}:begin --> inside block {open_name!r} "
                                  f"(begun on line {open_line}); add <!-- era:{open_name}:end --> before it")
            if name not in BLOCKS:
                raise ReadmeError(f"{where} line {line}: unknown block {name!r}; known blocks: {', '.join(BLOCKS)}")
            if name in seen:
                raise ReadmeError(f"{where} line {line}: block {name!r} appears twice; keep one")
            eol = text.find("\n", m.end())
            open_name, open_at, open_line = name, (len(text) if eol < 0 else eol + 1), line
        else:
            if open_name != name:
                expected = "no end marker" if open_name is None else f"<!-- era:{open_name}:end -->"
                raise ReadmeError(f"{where} line {line}: <!-- era:{name}:end --> without a matching begin "
                                  f"(expected {expected})")
            bol = text.rfind("\n", 0, m.start()) + 1
            if text[bol:m.start()].strip() or bol < open_at:
                raise ReadmeError(f"{where} line {line}: markers must stand on lines of their own")
            spans.append(Span(name, open_at, bol))
            seen.add(name)
            open_name = None
    if open_name is not None:
        raise ReadmeError(f"{where} line {open_line}: <!-- era:{open_name}:begin --> has no "
                          f"<!-- era:{open_name}:end -->; add the end marker after the block")
    return spans


def rewrite(text: str, ctx: Context, *, strict: bool = False, where: str = "README.md") -> tuple[str, list[str]]:
    """``text`` with every block regenerated, and a warning per block left as it was (missing source)."""
    out, warnings, pos = [], [], 0
    for span in find_blocks(text, where):
        block = BLOCKS[span.name]
        missing = [ctx.path(s) for s in block.sources if not ctx.path(s).is_file()]
        out.append(text[pos:span.start])
        if missing:
            why = (f"{', '.join(str(p) for p in missing)} {'is' if len(missing) == 1 else 'are'} missing "
                   f"(written by {block.hint})")
            if strict:
                raise ReadmeError(f"block {span.name!r} cannot be generated: {why}; without --strict it is left "
                                  f"as it was")
            warnings.append(f"block {span.name!r} left as it was: {why}")
            out.append(text[span.start:span.end])
        else:
            try:
                body = block.render(ctx)
            except (KeyError, IndexError, ValueError, StopIteration, TypeError) as exc:
                raise ReadmeError(f"block {span.name!r} could not be built from {', '.join(block.sources)} "
                                  f"({type(exc).__name__}: {exc}); they were not written by this version of "
                                  f"{block.hint}: rerun it") from exc
            out.append(body.rstrip("\n") + "\n")
        pos = span.end
    out.append(text[pos:])
    return "".join(out), warnings


def update_readme(readme: Path, ctx: Context, *, check: bool = False, strict: bool = False) -> tuple[bool, list[str]]:
    """Rewrite ``readme``'s blocks (and copy its figure); return (whether anything changed or would, warnings)."""
    readme = Path(readme)
    if not readme.is_file():
        raise ReadmeError(f"{readme} does not exist; pass --readme with the README to update")
    old = readme.read_text()
    new, warnings = rewrite(old, ctx, strict=strict, where=str(readme))
    changed = new != old
    figure_src, figure_dst = ctx.path("figures/ndcg_vs_ratio.png"), readme.parent / README_FIGURE
    copy_figure = ("results" in {s.name for s in find_blocks(old, str(readme))} and figure_src.is_file()
                   and (not figure_dst.is_file() or figure_dst.read_bytes() != figure_src.read_bytes()))
    if not check:
        if changed:
            atomic_write_text(readme, new)
        if copy_figure:
            figure_dst.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(figure_dst, figure_src.read_bytes())
    return changed or copy_figure, warnings


# ---------------------------------------------------------------- run times


def record_runtime(results: Path, what: str, command: list[str]) -> float:
    """Run ``command``, time it and record (what, command, seconds) in results/timing/runtimes.json."""
    if not command:
        raise ReadmeError("--time needs a command after `--`, e.g. `--time 'make paper, nothing stale' -- make paper`")
    t0 = time.perf_counter()
    rc = subprocess.call(command)
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise ReadmeError(f"`{shlex.join(command)}` exited with {rc}; its time was not recorded")
    path = Path(results) / RUNTIMES
    entries = read_json(path).get("entries", []) if path.is_file() else []
    entry = {"what": what, "command": shlex.join(command), "seconds": round(seconds, 2)}
    same = [i for i, e in enumerate(entries) if e["what"] == what]
    if same:
        entries[same[0]] = entry  # re-measured: same row, so the table keeps its order
    else:
        entries.append(entry)
    write_json(path, {"entries": entries})
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Command line: rewrite README.md's generated blocks from results/ (or check that they are current)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(
        prog="python -m era_core.readme",
        description="Rewrite every block of README.md between <!-- era:NAME:begin --> and <!-- era:NAME:end --> "
                    f"from the generated files in results/ (blocks: {', '.join(BLOCKS)}). A block whose source "
                    "is missing is left as it was, with a warning.")
    parser.add_argument("--results", type=Path, default=paths.RESULTS, help="results folder (default: %(default)s)")
    parser.add_argument("--figures", type=Path, default=paths.FIGURES, help="figures folder (default: %(default)s)")
    parser.add_argument("--readme", type=Path, default=paths.ROOT / "README.md", help="README to update")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the README would change")
    parser.add_argument("--strict", action="store_true", help="fail (exit 2) when a block's source is missing")
    parser.add_argument("--time", metavar="WHAT", help="run the command after `--`, record its wall time as WHAT "
                        "in RESULTS/timing/runtimes.json (the run-times block), then update the README")
    args = parser.parse_args(argv)
    try:
        if args.time is not None:
            seconds = record_runtime(args.results, args.time, command)
            print(f"readme: recorded {args.time!r}: {_seconds(seconds)}")
        elif command:
            raise ReadmeError("a command after `--` needs --time WHAT")
        ctx = Context(Path(args.results), Path(args.figures))
        changed, warnings = update_readme(args.readme, ctx, check=args.check, strict=args.strict)
    except EraError as exc:
        print(f"readme: error: {exc}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"readme: warning: {w}", file=sys.stderr)
    if args.check:
        print(f"readme: {args.readme} is {'out of date (run `make readme`)' if changed else 'up to date'}")
        return 1 if changed else 0
    print(f"readme: {args.readme} {'updated' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
