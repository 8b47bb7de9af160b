"""The ladder block: ERA − control against Phase 1's fit on queries, and the answer to "when does ERA pay?"."""

from __future__ import annotations

from era_core.paper import report
from era_core.tools.readme.context import Context
from era_core.tools.readme.prose import as_shown, fmt3, fmt_diff, fmt_ratio, join_and


def _pm(mean: float, sd: float, n: int) -> str:
    return fmt_diff(mean) + ("" if n < 2 or sd != sd else f" ± {fmt3(sd)}")


def render_ladder(ctx: Context) -> str:
    """The alignment-quality ladder per width and rung, and the first rung (if any) where ERA beats the control."""
    data = report.load_ladder(ctx.results)
    frame = report.alignment_ladder_frame(data)
    ratios = sorted(set(frame["train_ratio"]))
    seeds = int(frame["seeds"].max())
    spread = f"mean ± sd over {seeds} seeds" if seeds > 1 else "one seed"
    head = " | ".join(f"ERA − control, ratio {fmt_ratio(r)}" for r in ratios)
    lines = [f"Alignment-quality ladder (`08_alignment_ladder`; index = {data['setup']['query_model']} truncated to "
             f"its first k dimensions, queries = the full model; test nDCG@10, {spread}; "
             "`results/alignment_ladder.json`, `figures/alignment_ladder.pdf`). Rungs fit Phase 1 on more and more "
             "document pairs, up to the exact truncation map; query cosine is Phase 1's fit on queries (mapped "
             "large query vs the truncated model's own query vector).", "",
             f"| k | rung | query cosine | alignment only | control, ratio {fmt_ratio(ratios[-1])} | {head} |",
             "|---|---|---|---|---|" + "---|" * len(ratios)]
    for k in sorted(set(frame["k"])):
        sel = frame[frame["k"] == k]
        for rung in dict.fromkeys(sel["rung"]):
            rows = {float(r.train_ratio): r for r in sel[sel["rung"] == rung].itertuples()}
            last = rows[ratios[-1]]
            cells = " | ".join(_pm(rows[r].era_minus_control_mean, rows[r].era_minus_control_std, rows[r].seeds)
                               for r in ratios)
            lines.append(f"| {k} | {rung} | {fmt3(last.query_cosine_mean)} | {fmt3(last.alignment_only_mean)} | "
                         f"{fmt3(last.control_mean)} | {cells} |")
    lines += ["", _verdict(frame, report.pair_points(ctx.results))]
    return "\n".join(lines)


def _span(values: list[float]) -> str:
    lo, hi = fmt_diff(min(values)), fmt_diff(max(values))
    return lo if lo == hi else f"{lo} to {hi}"


def _verdict(frame, points: list[dict]) -> str:
    """One plain answer: from which query-side cosine ERA's mean beats the control, and where real pairs sit."""
    shown = frame.assign(diff=frame["era_minus_control_mean"].map(as_shown))
    wins, losses = shown[shown["diff"] > 0], shown[shown["diff"] <= 0]
    if wins.empty:
        text = ("- When does ERA pay? On this ladder, never: its mean trails the same-model control on every rung, "
                f"even the exact map ({fmt_diff(float(shown[shown['rung'] == 'exact']['diff'].max()))}).")
    else:
        above = losses[losses["query_cosine_mean"] >= wins["query_cosine_mean"].min()]
        text = (f"- When does ERA pay? On this ladder, ERA's mean beats the same-model control only once Phase 1 "
                f"reproduces the index model's own query vectors almost exactly: query cosine "
                f"{fmt3(float(wins['query_cosine_mean'].min()))} or more (rung{'s' if wins['rung'].nunique() > 1 else ''} "
                f"{join_and([f'`{r}`' for r in dict.fromkeys(wins['rung'])])}), by {_span(list(wins['diff']))}")
        text += ("" if above.empty else f", not in every cell ({len(above)} cells at such cosines trail or tie)") + "."
        below = losses[losses["query_cosine_mean"] < wins["query_cosine_mean"].min()]
        if not below.empty:
            best = below.loc[below["query_cosine_mean"].idxmax()]
            text += (f" At query cosine {fmt3(float(best['query_cosine_mean']))} (rung `{best['rung']}`) it already "
                     f"trails it ({fmt_diff(float(best['diff']))}).")
    if points:
        cos = [p["query_cosine"] for p in points]
        diffs = [as_shown(p["era_minus_control"]) for p in points]
        text += (f" Every studied encoder pair sits at query cosine {fmt3(min(cos))} to {fmt3(max(cos))}, where ERA "
                 f"minus the control is {_span(diffs)} per seed "
                 "(`figures/alignment_ladder.pdf`).")
    return text
