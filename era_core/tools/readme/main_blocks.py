"""The setup, results and training blocks: the main table's setting, means, paired tests and Phase 1."""

from __future__ import annotations

import pandas as pd

from era_core.paper import report
from era_core.paper.report.vocab import _real_columns, real_task
from era_core.io import read_json
from era_core.tools.readme.context import README_FIGURE, Context
from era_core.tools.readme.picks import mean_by_ratio, setting_rows, single_mean, std_at
from era_core.tools.readme.prose import as_shown, fmt3, fmt_count, fmt_diff, fmt_ratio, fmt_ratios, fmt_span, join_and, versus


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
        return f"{name} ({fmt_count(float(models[key]['params']))} parameters{extra}{precision})"

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
    view, inst = setting_rows(main)
    table = ctx.path("tables/main.md").read_text().rstrip("\n")
    lines = [f"![nDCG@10 against train ratio]({ctx.link(README_FIGURE)})", "", table, "",
             f"What the means show (overall nDCG@10, test split, instructions {inst}):"]
    lines += _main_findings(view, "")
    lines += _significance_findings(ctx, inst)
    era = mean_by_ratio(view, "era")
    lines += [f"- {line.strip()}" for line in _real_task_lines(view, max(era)) if line] if era else []
    off = main[main["instructions"] != inst]
    if len(off):
        other = sorted(set(off["instructions"]))[0]
        off = off[off["instructions"] == other]
        parts = []
        for m, label in (("zero_shot_small", "zero-shot small"), ("zero_shot_large", "zero-shot large"),
                         ("alignment_only", "alignment only")):
            v = single_mean(off, m)
            if v is not None:
                parts.append(f"{label} {fmt3(v)}")
        for m, label in (("era", "ERA"), ("small_adapter", "small adapter"), ("label_only", "label only")):
            series = mean_by_ratio(off, m)
            if series:
                parts.append(f"{label} {fmt_span(list(series.values()))}")
        lines.append(f"- {SETTING_PHRASES.get(other, f'With instructions {other}')}: {join_and(parts)} "
                     f"(`results/tables/main.csv`, rows `instructions={other}`).")
        lines += _main_findings(off, f" (instructions {other})", only_small=True)
    return "\n".join(lines)


#: How the README names a setting that is not the headline.
SETTING_PHRASES = {"forced": "Stress test, the instruction template forced on every encoder (`forced`)",
                   "native": "With each encoder instructed as the reference does (`native`)"}


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
        parts = [f"{word} at {fmt_ratios(rs)}" for word, rs in groups.items()]
        out.append(f"- Paired test against the same-model control (Holm-adjusted p < {sig['alpha']:g}): {name} is "
                   f"{join_and(parts)}.")
    return out


def _main_findings(view: pd.DataFrame, suffix: str, only_small: bool = False) -> list[str]:
    era = mean_by_ratio(view, "era")
    if not era:
        return []
    out = []
    zs_small, zs_large = single_mean(view, "zero_shot_small"), single_mean(view, "zero_shot_large")
    if zs_small is not None:
        out.append(f"- ERA{suffix} is {versus(era, zs_small, f'zero-shot small ({fmt3(zs_small)})')}.")
    if only_small:
        return out
    if zs_large is not None:
        top = max(era)
        std = std_at(view, "era", top)
        shown = fmt3(era[top]) + ("" if std is None else f" ± {fmt3(std)}")
        out.append(f"- ERA is {versus(era, zs_large, f'zero-shot large ({fmt3(zs_large)})')}; at ratio {fmt_ratio(top)} "
                   f"it scores {shown}, with the corpus indexed by the small model only.")
    control = mean_by_ratio(view, "small_adapter")
    if control:
        label = (f"the same-model control (`small_adapter`: the same Phase 2 on the small model's own query "
                 f"vectors; {fmt_span(list(control.values()))})")
        out.append(f"- ERA is {versus(era, control, label)}.")
    fused = mean_by_ratio(view, "fused")
    if fused and control:
        out.append(f"- Fused (large ⊕ small query vectors mapped into the small space, starting as the control) is "
                   f"{versus(fused, control, 'the same-model control')}.")
    label = mean_by_ratio(view, "label_only")
    if label:
        text = f"the reference's Embedding Adapter (label only, random init; {fmt_span(list(label.values()))})"
        out.append(f"- ERA is {versus(era, label, text)}.")
    chroma = mean_by_ratio(view, "embedding_adapter")
    if chroma and control:
        out.append(f"- The Embedding Adapter as Chroma describes it (the index model's own queries, random negatives; "
                   f"{fmt_span(list(chroma.values()))}) is {versus(chroma, control, 'the same-model control')}.")
    moves = []
    for m, name in (("era", "ERA"), ("small_adapter", "the control"), ("fused", "fused"),
                    ("embedding_adapter", "the Chroma-style adapter"), ("label_only", "the reference's label-only")):
        base, again = mean_by_ratio(view, m), mean_by_ratio(view, m + "+remine")
        for r in sorted(set(base) & set(again)):
            moves.append(f"{name} {fmt_diff(as_shown(again[r]) - as_shown(base[r]))} ({fmt3(base[r])} → {fmt3(again[r])}, "
                         f"ratio {fmt_ratio(r)})")
    if moves:
        out.append(f"- Re-mining the hard negatives with the trained adapter (one more Phase 2 round, `+remine`) moves "
                   f"{join_and(moves)}.")
    return out


def render_headline(ctx: Context) -> str:
    """The README's few lines: the figure, four means at the largest train ratio and ERA against the control."""
    view, inst = setting_rows(report.main_frame(ctx.results))
    era, control = mean_by_ratio(view, "era"), mean_by_ratio(view, "small_adapter")
    top = max(era)
    rows = [("Zero-shot small: the index model on both sides (no adapter)", single_mean(view, "zero_shot_small"), None),
            ("**ERA**: the large model's queries mapped into the small index", era[top], std_at(view, "era", top)),
            ("Same-model control: the same Phase 2 on the small model's own queries", control.get(top),
             std_at(view, "small_adapter", top)),
            ("Zero-shot large: re-index everything with the large model", single_mean(view, "zero_shot_large"), None)]
    lines = [f"![nDCG@10 against train ratio]({ctx.link(README_FIGURE)})", "",
             f"| test nDCG@10 at train ratio {fmt_ratio(top)} (instructions `{inst}`) | mean ± sd over seeds |",
             "|---|---|"]
    lines += [f"| {label} | {fmt3(v)}{'' if sd is None else f' ± {fmt3(sd)}'} |" for label, v, sd in rows
              if v is not None]
    if ctx.path("significance.json").is_file():
        lines += ["", _claim_verdict(ctx, inst)]
    lines += _real_task_lines(view, top)
    return "\n".join(lines)


def _real_task_lines(view: pd.DataFrame, ratio: float) -> list[str]:
    """One line per human-labelled task: its own means beside the derived tasks', at one train ratio."""
    out = []
    for col in _real_columns(view["domain"]):
        parts = [f"{label} {fmt3(v)}" for label, v in (
            ("zero-shot small", single_mean(view, "zero_shot_small", col)),
            ("ERA", mean_by_ratio(view, "era", col).get(ratio)),
            ("the same-model control", mean_by_ratio(view, "small_adapter", col).get(ratio)),
            ("fused", mean_by_ratio(view, "fused", col).get(ratio)),
            ("zero-shot large", single_mean(view, "zero_shot_large", col))) if v is not None]
        task = real_task(col)
        out += ["", f"Every task but {task} is derived from text shipped in packages; {task} has human-written "
                    f"questions and human-judged answers (its own column `{col}` in the main table, and inside its "
                    f"domain's and the overall means). On it, at train ratio {fmt_ratio(ratio)}: {join_and(parts)}."]
    return out


def _claim_verdict(ctx: Context, inst: str) -> str:
    """Whether the stronger query model pays over the same-model control, from the paired tests at every ratio."""
    sig = read_json(ctx.path("significance.json")).get(inst, {})
    rows = sorted((r for r in sig.get("comparisons", []) if r["method"] == "era" and r["baseline"] == "small_adapter"),
                  key=lambda r: r["train_ratio"])
    if not rows:
        return "The paired tests hold no comparison of ERA with the same-model control."
    test = f"Paired tests (Holm-adjusted p < {sig['alpha']:g}) put ERA"
    at = fmt_ratios([float(r["train_ratio"]) for r in rows])
    if all(r["significant"] and r["mean_diff"] > 0 for r in rows):
        return f"{test} significantly above the same-model control at {at}: here the stronger query model pays."
    if all(r["significant"] and r["mean_diff"] < 0 for r in rows):
        return (f"{test} significantly below the same-model control at {at}. On this benchmark the stronger query "
                "model, mapped into the cheap index, costs quality instead of adding it: the paper's claim does not "
                "hold here.")
    return (f"{test} not consistently above the same-model control at {at}: on this benchmark the stronger query "
            "model does not reliably pay.")


def render_training(ctx: Context) -> str:
    """Phase 1 cosines (alignment.json) and the label-only adapter against an untrained random one."""
    al, tr = read_json(ctx.path("alignment.json")), read_json(ctx.path("training.json"))
    main, _ = setting_rows(report.main_frame(ctx.results))
    lines = [f"- Phase 1 (alignment on identical texts) reaches a hold-out cosine of {al['eval_cosine']:.4f}; the "
             f"closed-form ridge reaches {al['ridge_eval_cosine']:.4f} (`results/alignment.json`)."]
    label = mean_by_ratio(main, "label_only")
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
        lines.append(f"- The reference's Embedding Adapter (label only){sched} scores {fmt3(label[low])} at ratio {fmt_ratio(low)}, {word} an "
                     f"untrained random adapter ({fmt_span(floor)} over seeds).")
    return "\n".join(lines)
