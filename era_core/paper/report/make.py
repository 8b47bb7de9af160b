"""``make_all``: every table and figure the results allow, skipping (and saying so) those whose inputs are missing."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from era_core import paths
from era_core.errors import EraError
from era_core.paper.datasheet import results_datasheet
from era_core.paper.report.alignment_figures import figure_alignment_curves, figure_alignment_scaling
from era_core.paper.report.domain_figures import figure_domain_transfer, figure_lodo
from era_core.paper.report.ladder_figure import figure_alignment_ladder
from era_core.paper.report.main_figures import figure_cost_quality, figure_domain_bars, figure_instructions, figure_ndcg_vs_ratio
from era_core.paper.report.pairs import encoder_pairs_table, figure_gap_closed
from era_core.paper.report.tables import domain_specific_table, lodo_table, main_table, zero_shot_table
from era_core.paper.report.vocab import _check_instructions


def make_all(results: Path | str = paths.RESULTS, figures: Path | str = paths.FIGURES, bar_ratio: float = 0.4,
             main_instructions: str = "native") -> dict[str, list[Path]]:
    """Build every table and figure the results allow; print each one skipped and why."""
    _check_instructions(main_instructions)
    results, figures = Path(results), Path(figures)
    jobs: list[tuple[str, Callable[[], Path | list[Path]]]] = [
        ("main_table", lambda: main_table(results, main_instructions)),
        ("zero_shot_table", lambda: zero_shot_table(results)),
        ("lodo_table", lambda: lodo_table(results, main_instructions)),
        ("domain_specific_table", lambda: domain_specific_table(results, main_instructions)),
        ("encoder_pairs_table", lambda: encoder_pairs_table(results)),
        ("datasheet", lambda: results_datasheet(results)),  # after the pair table, which it includes
        ("ndcg_vs_ratio", lambda: figure_ndcg_vs_ratio(results, figures, main_instructions)),
        ("domain_bars", lambda: figure_domain_bars(results, figures, bar_ratio, main_instructions)),
        ("instructions", lambda: figure_instructions(results, figures, bar_ratio)),
        ("lodo", lambda: figure_lodo(results, figures, main_instructions)),
        ("domain_transfer", lambda: figure_domain_transfer(results, figures, main_instructions)),
        ("alignment_curves", lambda: figure_alignment_curves(results, figures)),
        ("alignment_scaling", lambda: figure_alignment_scaling(results, figures)),
        ("alignment_ladder", lambda: figure_alignment_ladder(results, figures)),
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
