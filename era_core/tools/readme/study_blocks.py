"""The lodo and encoder_pairs blocks: held-out and per-domain ERA, and the default-pair rule."""

from __future__ import annotations

import pandas as pd

from era_core.paper import report
from era_core.io import read_json
from era_core.tools.readme.context import Context
from era_core.tools.readme.picks import setting_rows
from era_core.tools.readme.prose import as_shown, fmt3, fmt_diff, fmt_ratio, fmt_span, join_and, versus


def render_lodo(ctx: Context) -> str:
    """LODO and domain-specific ERA against zero-shot small and the jointly trained ERA."""
    lodo, inst = setting_rows(report.lodo_frame(ctx.results))
    ds, _ = setting_rows(report.domain_specific_frame(ctx.results), inst)
    main, _ = setting_rows(report.main_frame(ctx.results), inst)
    lines = []
    test = lodo[lodo["evaluation"] == "test"]
    zs = test[(test["method"] == "zero_shot_small") & (test["source"] == "zero_shot")].set_index("held_out")
    ref = zs["ndcg@10_mean"]
    for method, name in (("era", "ERA"), ("small_adapter", "the same-model control"), ("fused", "fused")):
        rows = test[(test["method"] == method) & (test["source"] == "lodo")]
        if not len(rows):
            continue
        ratio = float(rows["train_ratio"].iloc[0])
        above = [f"{d} ({fmt3(v)} vs {fmt3(ref[d])})" for d, v in zip(rows["held_out"], rows["ndcg@10_mean"])
                 if d in ref.index and as_shown(v) > as_shown(ref[d])]
        n = sum(d in zs.index for d in rows["held_out"])
        where = (f"above the small model's zero-shot in {len(above)} of {n} held-out domains"
                 + (f": {join_and(above)}" if above else ""))
        lines.append(f"- Leave-one-domain-out, {name} (ratio {fmt_ratio(ratio)}, instructions {inst}) scores "
                     f"{fmt_span(list(rows['ndcg@10_mean']))} on the held-out domain's test split, {where} "
                     f"(`results/tables/lodo.md`).")
    for method, name in (("era", "ERA"), ("small_adapter", "same-model control"), ("fused", "fused")):
        dse = ds[(ds["method"] == method) & (ds["scope"] == "protocol")]
        if not len(dse):
            continue
        ratio = float(dse["train_ratio"].iloc[0])
        own = dse[dse["train_domain"] == dse["eval_domain"]]
        same = main[(main["method"] == method) & (main["train_ratio"] == ratio)]
        joint = dict(zip(same["domain"], same["ndcg@10_mean"]))
        beats = [d for d, v in zip(own["eval_domain"], own["ndcg@10_mean"])
                 if d in joint and as_shown(v) > as_shown(joint[d])]
        n = sum(d in joint for d in own["eval_domain"])
        other = dse[(dse["train_domain"] != dse["eval_domain"])
                    & ~dse["eval_domain"].isin([report.OVERALL, report.OVERALL_QW])]
        text = (f"- Domain-specific {name} adapters (ratio {fmt_ratio(ratio)}) score "
                f"{fmt_span(list(own['ndcg@10_mean']))} on their own domain, above the jointly trained {name} at the "
                f"same ratio in {len(beats)} of {n} domains")
        if len(other):
            text += f", and {fmt_span(list(other['ndcg@10_mean']))} on the other domains"
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
    df, inst = setting_rows(report.encoder_pairs_frame(ctx.results))
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
        text = (f"- `{pair}`: zero-shot large {fmt3(float(large['ndcg@10_mean'].iloc[0]))}, "
                f"{fmt_diff(gaps[pair])} over small→small")
        control = _pair_means(rows, "small_adapter")
        for method, name in (("era", "ERA"), ("fused", "fused")):
            series = _pair_means(rows, method)
            if series and control:
                text += f"; {name} is {versus(series, control, 'the same-model control')}"
        era = rows[(rows["method"] == "era") & rows["train_ratio"].notna() & rows["gap_closed_mean"].notna()]
        if len(era):
            top = era.loc[era["train_ratio"].idxmax()]
            closed = float(top["gap_closed_mean"])
            text += (f"; at ratio {fmt_ratio(float(top['train_ratio']))} ERA closes {fmt3(closed)} of the zero-shot gap"
                     if closed >= 0 else f"; at ratio {fmt_ratio(float(top['train_ratio']))} ERA falls below the small "
                     f"model's own zero-shot (share of the gap closed {fmt_diff(closed)})")
        lines.append(text + ".")
    if not lines:
        return "- The encoder-pair study holds no zero-shot rows (`results/tables/encoder_pairs.md`)."
    candidates = {p: g for p, g in gaps.items() if _index_is_transformer(p)}
    head = (f"Encoder-pair study (instructions {inst}, overall nDCG@10 on the test split, mean over seeds; "
            f"`results/tables/encoder_pairs.md`). The default pair is chosen by a rule fixed before any trained "
            f"score was looked at: among pairs whose index encoder is a transformer, the largest zero-shot gap "
            f"(large on both sides minus small on both sides) in that instruction setting.")
    if candidates:
        best = max(candidates, key=candidates.get)
        head += (f" By the measured gaps that is `{best}` ({fmt_diff(candidates[best])}), "
                 + ("which is the configured default." if best == default else
                    f"but the configured default is `{default}`: the rule and the configuration disagree."))
    return "\n".join([head, ""] + lines)


def _pm(mean: float, std: float, seeds: int) -> str:
    return fmt3(mean) if seeds < 2 or std != std else f"{fmt3(mean)} ± {fmt3(std)}"


def render_scaling(ctx: Context) -> str:
    """The Phase 1 scaling study: per source and size, hold-out cosine and test nDCG@10, against the control."""
    data = read_json(ctx.path("alignment_scaling.json"))
    frame = report.alignment_scaling_frame(data)
    if frame.empty:
        return "- The Phase 1 scaling study holds no cells (`results/alignment_scaling.json`)."
    ratio = float(data["train_ratio"])
    main = report.main_frame(ctx.results)
    inst = data.get("cells", [{}])[0].get("instructions", "native")
    sel = main[(main["method"] == "small_adapter") & (main["train_ratio"] == ratio) & (main["domain"] == report.OVERALL)
               & (main["instructions"] == inst)]
    control = float(sel["ndcg@10_mean"].iloc[0]) if len(sel) else None
    seeds = int(frame["seeds"].max())
    spread = f"mean ± sd over {seeds} seeds" if seeds > 1 else "one seed"
    lines = [f"Phase 1 scaling study (`02_alignment`; train ratio {fmt_ratio(ratio)}, instructions {inst}, {spread}; "
             "`results/alignment_scaling.json`, `figures/alignment_scaling.pdf`). "
             "Each row is one source of identical texts for Phase 1 at one size, solved by AdamW (`default`) or in "
             "closed form (`ridge`); hold-out cosine is Phase 1's fit on held-out pairs, query cosine its fit on the "
             "queries (mapped large query vs the small model's own), then test nDCG@10 of the Phase 1 map alone and "
             "of ERA started from it. `all_texts` is a diagnostic ceiling, not a method: Phase 1 fitted on every "
             "document and every query text, test queries included (never a label).", "",
             "| source | pairs | solver | hold-out cosine | query cosine | alignment only | ERA |",
             "|---|---|---|---|---|---|---|"]
    for r in frame.itertuples():
        lines.append(f"| {r.source} | {r.n_pairs:,} | {r.init} | {_pm(r.eval_cosine_mean, r.eval_cosine_std, r.seeds)} | "
                     f"{fmt3(r.query_cosine_mean)} | {_pm(r.alignment_only_mean, r.alignment_only_std, r.seeds)} | "
                     f"{_pm(r.era_mean, r.era_std, r.seeds)} |")
    if control is not None:
        best = frame.loc[frame["era_mean"].idxmax()]
        above = int((frame["era_mean"].map(as_shown) > as_shown(control)).sum())
        lines += ["", f"- The same-model control (`small_adapter`) scores {fmt3(control)} at this ratio. ERA is above it "
                  f"in {above} of {len(frame)} cells; its best cell is `{best['source']}` at {int(best['n_pairs']):,} "
                  f"pairs ({best['init']}): {fmt3(float(best['era_mean']))}, with hold-out cosine "
                  f"{fmt3(float(best['eval_cosine_mean']))}."]
    return "\n".join(lines)
