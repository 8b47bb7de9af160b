"""The ladder block: ERA − control against Phase 1's fit on queries, and the answer to "when does ERA pay?"."""

from __future__ import annotations

from era_core import report
from era_core.readme.context import Context
from era_core.readme.prose import as_shown, fmt3, fmt_diff, fmt_ratio, join_and


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
    verdicts = []
    for k in sorted(set(frame["k"])):
        sel = frame[frame["k"] == k]
        for rung in dict.fromkeys(sel["rung"]):
            rows = {float(r.train_ratio): r for r in sel[sel["rung"] == rung].itertuples()}
            last = rows[ratios[-1]]
            cells = " | ".join(_pm(rows[r].era_minus_control_mean, rows[r].era_minus_control_std, rows[r].seeds)
                               for r in ratios)
            lines.append(f"| {k} | {rung} | {fmt3(last.query_cosine_mean)} | {fmt3(last.alignment_only_mean)} | "
                         f"{fmt3(last.control_mean)} | {cells} |")
        for r in ratios:
            at = sel[sel["train_ratio"] == r].sort_values("query_cosine_mean")
            wins = at[at["era_minus_control_mean"].map(as_shown) > 0]
            if wins.empty:
                verdicts.append(f"at k = {k}, ratio {fmt_ratio(r)}: on no rung, not even the exact map "
                                f"({fmt_diff(float(at['era_minus_control_mean'].iloc[-1]))})")
            else:
                first = wins.iloc[0]
                verdicts.append(f"at k = {k}, ratio {fmt_ratio(r)}: from rung `{first['rung']}` (query cosine "
                                f"{fmt3(first['query_cosine_mean'])}), by {fmt_diff(first['era_minus_control_mean'])}")
    lines += ["", f"- When does ERA pay? Its mean beats the same-model control {join_and(verdicts)}."]
    return "\n".join(lines)
