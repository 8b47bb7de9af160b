"""bench.md: the short human-readable report next to bench.json (headline table, one paragraph per section)."""

from __future__ import annotations

from typing import Any

from era_core.tools.bench.targets import REQUIRED_FIELDS, TARGETS, target_met


def _fmt_cos(v: float) -> str:
    # Cosines near 1 would all print as "1" with 4 significant digits.
    return f"{v:.7f}"


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def _isa_note(env: dict[str, Any]) -> str:
    isa = (env.get("hardware") or {}).get("isa") or {}
    return "[" + ", ".join(f"{flag}: {'yes' if on is True else 'no' if on is False else on}" for flag, on in isa.items()) + "] " if isa else ""


def _encode_paragraph(title: str, e: dict[str, Any], note: str = "") -> str:
    prof = e["passage_profile"]
    return (
        f"**{title}** ({e['model']}, batch {e['batch_size']}, max_length {e['max_length']}, era_core precision "
        f"`{e['era_precision']}`{note}): passages {_fmt(e['passages']['era_texts_per_s'])} texts/s "
        f"(fp32: {_fmt(e['passages']['era_fp32_texts_per_s'])}) vs {_fmt(e['passages']['st_texts_per_s'])} "
        f"(sentence-transformers, fp32), queries {_fmt(e['queries']['era_texts_per_s'])} "
        f"(fp32: {_fmt(e['queries']['era_fp32_texts_per_s'])}) vs {_fmt(e['queries']['st_texts_per_s'])}. "
        f"Min cosine with sentence-transformers: {_fmt_cos(e['cosine_min'])} (fp32 path: "
        f"{_fmt_cos(min(e['passages']['fp32_cosine_min'], e['queries']['fp32_cosine_min']))}). Passage time: forward {_fmt(prof['forward_share'])} of "
        f"{_fmt(prof['total_s'])} s, tokenisation {_fmt(prof['tokenize_s'])} s, rest {_fmt(prof['other_s'])} s."
    )


def _header(report: dict[str, Any]) -> list[str]:
    """Mode, threads and CPU, how ratios are measured, and the headline table with its targets."""
    env = report["environment"]
    lines = [
        "# era_core benchmarks",
        "",
        f"Mode: {'quick (tiny sizes; not representative)' if report['quick'] else 'full'}. "
        f"Threads: {env['threads_requested']} (torch {env['torch_num_threads']}); CPU: {env['cpu']} "
        f"{_isa_note(env)}"
        f"({env['cpus_available']} available). Ratios are reference time / era_core time (> 1: era_core "
        f"faster), medians of {report['repeats']} interleaved runs after a warm-up, same process and inputs.",
        "",
        "| field | value | target | met |",
        "|---|---|---|---|",
    ]
    for field in REQUIRED_FIELDS:
        if field == "scaling":
            continue
        value = report.get(field)
        target = TARGETS.get(field)
        ok = target_met(field, value)
        met = "" if ok is None else "yes" if ok else "**no**"
        shown = _fmt_cos(value) if "cosine" in field and isinstance(value, float) else _fmt(value)
        if value is None and field.startswith("encode_gemma"):
            shown = "not measured"
        lines.append(f"| `{field}` | {shown} | {'' if target is None else target[1] + ' ' + str(target[0])} | {met} |")
    return lines


def _gemma_paragraph(g: dict[str, Any] | None) -> str:
    """The EmbeddingGemma paragraph: measured, skipped (no weights) or not run."""
    if g is None:
        return ("**Encoding, EmbeddingGemma-300M**: not measured (section `encode_gemma` not run; "
                "`python -m era_core.tools.bench --only encode_gemma`).")
    if g.get("skipped"):
        return f"**Encoding, EmbeddingGemma-300M**: skipped, {g['skipped']}."
    note = (f", {g['n_passages']} passages and {g['n_queries']} queries with the model's prompts, medians of "
            f"{g['repeats']} runs")
    return _encode_paragraph("Encoding, EmbeddingGemma-300M", g, note)


def _st_runtime_lines(r: dict[str, Any]) -> list[str]:
    """One row per offline model: sentence-transformers' throughput relative to era_core's, cosine, verdict."""
    rule = r["rule"]
    lines = [f"**sentence-transformers as the runtime** (its `encode` under era_core's precision policy; rule: "
             f">= {rule['min_relative_throughput']}x era_core's throughput on passages and queries and min cosine "
             f">= {rule['min_cosine']}):", "",
             "| model | precision | passages (ST / era_core) | queries (ST / era_core) | min cosine "
             "| padded tokens, queries (era_core / ST) | switch |",
             "|---|---|---|---|---|---|---|"]
    for key, m in r["models"].items():
        if "passages" not in m:
            why = m.get("skipped") or m.get("st_unavailable")
            lines.append(f"| {key} | {m.get('era_precision', '—')} | — | — | — | — | no: {why} |")
            continue
        p, q = m["passages"], m["queries"]
        pad = q.get("padded_tokens")
        pads = f"{pad['era_core']} / {pad['sentence_transformers']}" if pad else "—"
        lines.append(f"| {key} | {m['era_precision']} | {_fmt(p['st_relative_throughput'])}x | "
                     f"{_fmt(q['st_relative_throughput'])}x | {_fmt_cos(min(p['cosine_min'], q['cosine_min']))} | "
                     f"{pads} | "
                     f"{'yes' if m['verdict']['switch'] else 'no: ' + m['verdict']['why']} |")
    return lines


def _search_paragraph(s: dict[str, Any]) -> str:
    rows = "; ".join(
        f"{v['docs']} docs: {_fmt(v['era_s'])} s vs numpy {_fmt(v['numpy_s'])} s ({_fmt(v['vs_numpy_ratio'])}x), "
        f"faiss {_fmt(v['faiss_s'])} s ({_fmt(v['vs_faiss_ratio'])}x)"
        for v in s["sizes"].values()
    )
    m = s["memory"]
    return (
        f"**Search** ({s['queries']} queries, k={s['k']}; headline ratios are the worst size): {rows}. Memory at {m['docs']} docs: peak RSS "
        f"{_fmt(m['peak_rss_mb'])} MB, of which the corpus array is {_fmt(m['corpus_mb'])} MB "
        f"(RSS before the search {_fmt(m['rss_before_search_mb'])} MB; growth during the search "
        f"{_fmt(m['search_overhead_mb'])} MB)."
    )


def _metrics_paragraph(m: dict[str, Any]) -> str:
    return (f"**Metrics** ({m['queries']} queries x top-{m['depth']}): {_fmt(m['era_s'])} s vs pytrec_eval "
            f"{_fmt(m['pytrec_s'])} s; max abs diff {_fmt(m['max_abs_diff'])}.")


def _training_paragraph(t: dict[str, Any]) -> str:
    return (f"**Phase 1** ({t['data']}; {t['pairs_train']} train pairs, {t['epochs']} epochs): AdamW "
            f"{_fmt(t['adamw_s'])} s, ridge {_fmt(t['ridge_s'])} s ({_fmt(t['ridge_speedup_vs_adamw'])}x); "
            f"99% of the final hold-out cosine at epoch {t['epoch_to_99pct']}.")


def _cache_paragraph(c: dict[str, Any]) -> str:
    mk, zs = c["make_paper"], c["zero_shot"]
    why = f" ({mk['reason']})" if mk.get("warm_make_paper_s") is None else ""
    return (f"**Cache**: warm `make paper`: {_fmt(mk.get('warm_make_paper_s'))} s{why}. Zero-shot on "
            f"{', '.join(zs['tasks'])}: first call {_fmt(zs['zero_shot_first_s'])} s (loaded "
            f"{zs['zero_shot_first_loaded_models'] or 'no model'}), cached "
            f"{_fmt(zs['zero_shot_cached_s'])} s, models loaded by the cached run: "
            f"{zs['zero_shot_cached_loaded_models'] or 'none'}.")


def _scaling_paragraph(report: dict[str, Any]) -> str:
    sc = report["scaling"]
    return (f"**Scaling** (figure `{report.get('figure', 'bench_scaling.pdf')}`): encode slope "
            f"{_fmt(sc['encode']['slope'])} over {[p['n'] for p in sc['encode']['points']]} passages; search "
            f"slope {_fmt(sc['search']['slope'])} over {[p['n'] for p in sc['search']['points']]} documents"
            + "".join(f"; {k} sizes skipped for the time budget: {sc[k]['skipped_for_budget']}"
                      for k in ("encode", "search") if sc[k].get("skipped_for_budget")) + ".")


def render_markdown(report: dict[str, Any]) -> str:
    """The short human-readable report next to bench.json."""
    lines = _header(report)
    sec = report["sections"]
    if "encode" in sec:
        lines += ["", _encode_paragraph("Encoding", sec["encode"])]
    lines += ["", _gemma_paragraph(sec.get("encode_gemma"))]
    if "st_runtime" in sec:
        lines += [""] + _st_runtime_lines(sec["st_runtime"])
    for name, paragraph in (("search", _search_paragraph), ("metrics", _metrics_paragraph),
                            ("training", _training_paragraph), ("cache", _cache_paragraph)):
        if name in sec:
            lines += ["", paragraph(sec[name])]
    if report.get("scaling"):
        lines += ["", _scaling_paragraph(report)]
    errors = {k: v["error"] for k, v in sec.items() if v.get("error")}
    if errors:
        lines += ["", "## Correctness failures", ""] + [f"- {k}: {v}" for k, v in errors.items()]
    lines += ["", "BLAS / OpenMP pools: " + "; ".join(
        f"{p['library']}: {p['internal_api']} {p['version'] or ''} ({p['num_threads']} threads)"
        for p in report["environment"]["threadpools"]
    ), ""]
    return "\n".join(lines)
