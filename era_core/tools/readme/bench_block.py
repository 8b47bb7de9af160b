"""The bench block: the `make bench` table from bench.json, with each headline's target and whether it is met."""

from __future__ import annotations

from typing import Any

from era_core.tools.bench import TARGETS
from era_core.io import read_json
from era_core.tools.readme.context import Context
from era_core.tools.readme.prose import fmt_count, fmt_seconds

_BENCH_EXTRA_TARGETS = {"warm_make_paper_s": (5.0, "<")}

Row = tuple[str, str, str, str, str]  # what, compared with, result, target, met


def _num(v: Any, fmt: str = "{:.3g}") -> str:
    return "—" if not isinstance(v, (int, float)) or isinstance(v, bool) else fmt.format(v)


def _met(b: dict[str, Any], field: str) -> tuple[str, str]:
    """``field``'s target as printed, and whether bench.json's value meets it (``—`` without target or value)."""
    target = TARGETS.get(field) or _BENCH_EXTRA_TARGETS.get(field)
    v = b.get(field)
    if target is None:
        return "—", "—"
    ok = None
    if isinstance(v, (int, float)):
        ok = {">=": v >= target[0], ">": v > target[0], "<": v < target[0]}[target[1]]
    return f"{target[1].replace('>=', '≥')} {target[0]:g}", "—" if ok is None else ("yes" if ok else "**no**")


def _encode_rows(b: dict[str, Any]) -> list[Row]:
    """MiniLM passages (auto precision and fp32) and short queries against sentence-transformers."""
    enc = b.get("sections", {}).get("encode", {})
    p, q = enc.get("passages", {}), enc.get("queries", {})
    t, m = _met(b, "encode_vs_st_ratio")
    return [
        (f"encoding, minilm-l6 passages, batch {enc.get('batch_size', '?')}, max_length "
         f"{enc.get('max_length', '?')}, `{b.get('encode_dtype') or enc.get('era_precision', '?')}`",
         "`SentenceTransformer.encode` (fp32)",
         f"{_num(b.get('encode_vs_st_ratio'))}× ({_num(p.get('era_texts_per_s'))} vs "
         f"{_num(p.get('st_texts_per_s'))} passages/s); min cosine {_num(b.get('encode_cosine_min'), '{:.5f}')}",
         t, m),
        ("same, fp32", "same", f"{_num(b.get('encode_fp32_vs_st_ratio'))}× "
         f"({_num(p.get('era_fp32_texts_per_s'))} passages/s)", "—", "—"),
        ("encoding, short queries", "same", f"{_num(b.get('encode_queries_vs_st_ratio'))}× "
         f"({_num(q.get('era_texts_per_s'))} vs {_num(q.get('st_texts_per_s'))} queries/s)", "—", "—"),
    ]


def _gemma_rows(b: dict[str, Any]) -> list[Row]:
    """EmbeddingGemma rows: a skip with its reason, the measured ratios, or none when the section never ran."""
    gem = b.get("sections", {}).get("encode_gemma", {})
    if gem.get("skipped"):
        return [("encoding, embeddinggemma-300m", "`SentenceTransformer.encode` (fp32)", f"skipped: {gem['skipped']}",
                 "≥ 1.2×, cosine > 0.9999", "—")]
    if not gem:
        return []
    gp, gq = gem.get("passages", {}), gem.get("queries", {})
    t, m = _met(b, "encode_gemma_vs_st_ratio")
    tc, mc = _met(b, "encode_gemma_cosine_min")
    return [
        (f"encoding, embeddinggemma-300m passages (with its prompts), batch {gem.get('batch_size', '?')}, "
         f"max_length {gem.get('max_length', '?')}, `{b.get('encode_gemma_dtype') or '?'}`",
         "`SentenceTransformer.encode` (fp32), same prompted texts",
         f"{_num(b.get('encode_gemma_vs_st_ratio'))}× ({_num(gp.get('era_texts_per_s'))} vs "
         f"{_num(gp.get('st_texts_per_s'))} passages/s); min cosine "
         f"{_num(b.get('encode_gemma_cosine_min'), '{:.5f}')}", f"{t}, cosine {tc}",
         "yes" if (m, mc) == ("yes", "yes") else ("—" if "—" in (m, mc) else "**no**")),
        ("same, fp32; short queries (bf16)", "same",
         f"{_num(b.get('encode_gemma_fp32_vs_st_ratio'))}× fp32; queries "
         f"{_num(b.get('encode_gemma_queries_vs_st_ratio'))}× ({_num(gq.get('era_texts_per_s'))} vs "
         f"{_num(gq.get('st_texts_per_s'))} queries/s)", "—", "—"),
    ]


def _st_runtime_rows(b: dict[str, Any]) -> list[Row]:
    """One row per offline model: sentence-transformers' own ``encode`` as the runtime, judged by the switch rule."""
    sec = b.get("sections", {}).get("st_runtime", {})
    rule = sec.get("rule", {})
    target = f"≥ {rule.get('min_relative_throughput', '?')}× on both, cosine ≥ {rule.get('min_cosine', '?')}"
    rows = []
    for key, m in sec.get("models", {}).items():
        what = f"sentence-transformers as the runtime of {key}" + (
            f", `{m['era_precision']}` on both sides" if m.get("era_precision") else "")
        if "passages" not in m:
            why = m.get("st_unavailable") or m.get("skipped") or "not measured"
            rows.append((what, "era_core's encoder", f"not run: {why}", target, "**no**"))
            continue
        p, q = m["passages"], m["queries"]
        pad = q.get("padded_tokens")
        padding = (f"; query batches {pad['sentence_transformers']:,} vs {pad['era_core']:,} padded tokens"
                   if pad else "")
        rows.append((what, "era_core's encoder, same texts",
                     f"{_num(p['st_relative_throughput'])}× passages, {_num(q['st_relative_throughput'])}× queries; "
                     f"min cosine {_num(min(p['cosine_min'], q['cosine_min']), '{:.5f}')}{padding}", target,
                     "yes" if m["verdict"]["switch"] else "**no**"))
    return rows


def _search_rows(b: dict[str, Any]) -> list[Row]:
    """Exact top-k against NumPy and faiss at every corpus size, and the peak RSS of the large search."""
    srch = b.get("sections", {}).get("search", {})
    sizes = list(srch.get("sizes", {}).values())
    docs = " / ".join(fmt_count(float(s["docs"])) for s in sizes) or "?"
    rows = []
    for ref, key, field in (("NumPy full `argsort`", "vs_numpy_ratio", "search_vs_numpy_ratio"),
                            ("`faiss.IndexFlatIP`", "vs_faiss_ratio", "search_vs_faiss_ratio")):
        t, m = _met(b, field)
        rows.append((f"exact top-{srch.get('k', '?')}, {srch.get('queries', '?')} queries × {docs} docs", ref,
                     " / ".join(f"{_num(s.get(key))}×" for s in sizes) or "—", t, m))
    mem = srch.get("memory", {})
    rows.append((f"peak RSS of a search over {fmt_count(float(mem.get('docs', 0)))} docs", "corpus array "
                 f"{_num(mem.get('corpus_mb'), '{:.0f}')} MB", f"{_num(b.get('search_peak_rss_mb_1m'), '{:.0f}')} MB "
                 f"(+{_num(mem.get('search_overhead_mb'), '{:.0f}')} MB during the search)", "—", "—"))
    return rows


def _pipeline_rows(b: dict[str, Any]) -> list[Row]:
    """Metrics against pytrec_eval, Phase 1 AdamW against the ridge, the caches, and the scaling slopes."""
    sec = b.get("sections", {})
    mt = sec.get("metrics", {})
    t, m = _met(b, "metrics_vs_pytrec_ratio")
    rows = [(f"metrics, {mt.get('queries', '?')} queries × top-{mt.get('depth', '?')}", "`pytrec_eval`",
             f"{_num(b.get('metrics_vs_pytrec_ratio'))}×, max abs diff {_num(b.get('metrics_max_abs_diff'))}", t, m)]
    tr = sec.get("training", {})
    rows.append((f"Phase 1, {tr.get('pairs_train', '?')} pairs, {tr.get('epochs', '?')} epochs",
                 "closed-form ridge (`align_init: ridge`)",
                 f"AdamW {_num(tr.get('adamw_s'))} s, {_num(b.get('phase1_steps_per_s'))} steps/s, 99 % of the final "
                 f"hold-out cosine at epoch {tr.get('epoch_to_99pct', '?')}; ridge {_num(b.get('ridge_time_s'))} s, "
                 f"hold-out cosine {_num(b.get('ridge_eval_cosine'), '{:.4f}')} vs AdamW "
                 f"{_num(b.get('adamw_eval_cosine'), '{:.4f}')}", "—", "—"))
    t, m = _met(b, "warm_make_paper_s")
    rows.append(("warm `make paper` (nothing stale)", "—", f"{_num(b.get('warm_make_paper_s'))} s", t, m))
    loaded = b.get("zero_shot_cached_loaded_models")
    rows.append(("zero-shot rerun with every embedding cached", "—",
                 f"{_num(b.get('zero_shot_cached_s'))} s, models loaded: {', '.join(loaded) if loaded else 'none'}",
                 "no model load", "—" if loaded is None else ("yes" if not loaded else "**no**")))
    sc = b.get("scaling") or {}
    if sc:
        rows.append(("scaling (log-log slope)", "linear = 1",
                     f"encode {_num(sc.get('encode', {}).get('slope'), '{:.2f}')}, search "
                     f"{_num(sc.get('search', {}).get('slope'), '{:.2f}')}", "—", "—"))
    return rows


def _head(b: dict[str, Any]) -> str:
    """Mode, total time, CPU, threads and BLAS of the run."""
    env = b.get("environment", {})
    blas = "; ".join(f"{p.get('internal_api')} {p.get('version') or ''}".strip() for p in env.get("threadpools", [])
                     if p.get("user_api") == "blas")
    total = sum(float(v) for v in b.get("section_seconds", {}).values())
    return (f"Measured by `make bench` ({'quick mode, toy sizes' if b.get('quick') else 'full mode'}, "
            f"{fmt_seconds(total)}) on {env.get('cpu', 'an unknown CPU')}, {env.get('threads_requested', '?')} threads"
            + (f", BLAS {blas}" if blas else "") + " (`results/bench.json`):")


def render_bench(ctx: Context) -> str:
    """The `make bench` table from bench.json: ratios, targets and whether each is met."""
    b = read_json(ctx.path("bench.json"))
    rows = _encode_rows(b) + _gemma_rows(b) + _st_runtime_rows(b) + _search_rows(b) + _pipeline_rows(b)
    table = ["| what | compared with | result | target | met |", "|---|---|---|---|---|"]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join([_head(b), "", *table])
