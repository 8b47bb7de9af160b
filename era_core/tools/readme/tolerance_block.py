"""The tolerance block: measured (results/tolerance.json) and recorded (docs/measurements/) comparisons."""

from __future__ import annotations

from typing import Any

from era_core import paths

from era_core.paper import report
from era_core.io import read_json
from era_core.tools.readme.context import Context
from era_core.tools.readme.prose import fmt3, join_and


#: Recorded comparisons made on machines this repository cannot reach (read as they are, with provenance).
RECORDED_TOLERANCE = paths.ROOT / "docs" / "measurements"


def _tolerance_rows(cmp: dict[str, Any]) -> list[str]:
    def cell(v: Any) -> str:
        return "—" if v is None else fmt3(float(v))

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
               f"{join_and([report.METHOD_LABELS.get(m, m) for m in moving])} moved by more than its own spread over seeds")
    return "\n".join(lines + [""] + notes + [f"- On this machine's comparison(s), {verdict}."])
