"""Every table and figure of the paper package, built from the JSON files in ``results/`` only.

This package never encodes or trains: it reads what the experiment notebooks wrote and renders
long-form CSV, Markdown and LaTeX tables plus byte-stable PDF figures (no timestamps, fixed
fonts, fixed colours and ordering) and a byte-stable PNG of the README's figure. Standard
deviations are over seeds with ``ddof=1``; with a single seed the std is undefined and is
written as an empty CSV cell (shown without "±").

One job per module:

- :mod:`.vocab`: metric, domains, instruction settings, methods and their labels;
- :mod:`.load`: reading results files into per-seed rows;
- :mod:`.frames`: the aggregated pandas frames;
- :mod:`.tables`: CSV / Markdown / LaTeX writers and the significance column;
- :mod:`.style`: the figure theme, colours and byte-stable saving;
- :mod:`.main_figures`, :mod:`.domain_figures`, :mod:`.alignment_figures`: the figures, by topic;
- :mod:`.pairs`: the encoder-pair study's frames, table and figure;
- :mod:`.ladder`: the alignment-quality ladder's frame and figure;
- :mod:`.show`: inline previews in Jupyter;
- :mod:`.make`: :func:`make_all`.

The names below are the package's public API (``report.main_table(...)`` and so on).
"""

from __future__ import annotations

import sys

import matplotlib

if "ipykernel" not in sys.modules:
    # Headless outside Jupyter; inside a kernel keep its (inline) backend so the user's own plots still
    # show. The saved bytes never depend on the backend: PDF and PNG come from their own renderers.
    # Here, before any submodule imports pyplot: importing any of them runs this file first.
    matplotlib.use("Agg")

from era_core.paper.report.alignment_figures import (figure_alignment_curves, figure_alignment_scaling,  # noqa: E402
                                                     training_run_curves)
from era_core.paper.report.domain_figures import figure_domain_transfer, figure_lodo  # noqa: E402
from era_core.paper.report.frames import (alignment_scaling_frame, domain_specific_frame, lodo_frame, main_frame,  # noqa: E402
                     main_seed_frame, zero_shot_frame, zero_shot_long)
from era_core.paper.report.ladder_figure import (alignment_ladder_frame, figure_alignment_ladder, ladder_seed_frame, load_ladder,  # noqa: E402
                     pair_points)
from era_core.paper.report.load import INPUTS, load_results  # noqa: E402
from era_core.paper.report.main_figures import (figure_cost_quality, figure_domain_bars, figure_instructions,  # noqa: E402
                           figure_ndcg_vs_ratio, query_costs)
from era_core.paper.report.make import make_all  # noqa: E402
from era_core.paper.report.pairs import encoder_pairs_frame, encoder_pairs_seed_frame, encoder_pairs_table, figure_gap_closed  # noqa: E402
from era_core.paper.report.show import CAPTIONS, draw, preview, show, show_all  # noqa: E402
from era_core.paper.report.style import ERRORBAR, ERRORBAR_TEXT, METHOD_COLORS, PNG_DPI, PREVIEW_DPI, theme  # noqa: E402
from era_core.paper.report.tables import (SIG_BASELINES, SIG_COLUMN, domain_specific_table, lodo_table, main_table,  # noqa: E402
                     significance_caption, significance_marks, zero_shot_table)
from era_core.paper.report.vocab import (DOMAIN_ORDER, HEADLINE, INSTRUCTION_SETTINGS, LABEL_METHODS, METHOD_LABELS,  # noqa: E402
                    METHODS, OVERALL, OVERALL_QW, QUERY_SIDE, SHORT_LABELS)

__all__ = [
    # vocabulary
    "HEADLINE", "DOMAIN_ORDER", "OVERALL", "OVERALL_QW", "INSTRUCTION_SETTINGS", "METHODS", "LABEL_METHODS",
    "METHOD_LABELS", "SHORT_LABELS", "QUERY_SIDE",
    # loading and frames
    "INPUTS", "load_results", "alignment_scaling_frame", "zero_shot_long", "zero_shot_frame", "main_frame", "main_seed_frame", "lodo_frame",
    "domain_specific_frame",
    # tables
    "SIG_BASELINES", "SIG_COLUMN", "main_table", "significance_marks", "significance_caption", "zero_shot_table",
    "lodo_table", "domain_specific_table",
    # figures
    "theme", "METHOD_COLORS", "ERRORBAR", "ERRORBAR_TEXT", "PNG_DPI", "PREVIEW_DPI", "figure_ndcg_vs_ratio",
    "figure_domain_bars", "figure_instructions", "query_costs", "figure_cost_quality", "figure_lodo",
    "figure_domain_transfer", "figure_alignment_curves", "figure_alignment_scaling", "training_run_curves",
    # the alignment-quality ladder
    "load_ladder", "ladder_seed_frame", "alignment_ladder_frame", "figure_alignment_ladder", "pair_points",
    # encoder pairs
    "encoder_pairs_seed_frame", "encoder_pairs_frame", "encoder_pairs_table", "figure_gap_closed",
    # showing and everything
    "preview", "show", "draw", "CAPTIONS", "show_all", "make_all",
]
