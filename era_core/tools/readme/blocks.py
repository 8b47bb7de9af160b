"""Every generated block: the files it reads, its renderer and what writes those files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from era_core.tools.readme.bench_block import render_bench
from era_core.tools.readme.context import RUNTIMES, Context
from era_core.tools.readme.ladder_block import render_ladder
from era_core.tools.readme.main_blocks import render_headline, render_results, render_setup, render_training
from era_core.tools.readme.runtimes import render_runtimes
from era_core.tools.readme.study_blocks import render_encoder_pairs, render_lodo, render_scaling
from era_core.tools.readme.tolerance_block import render_tolerance


@dataclass(frozen=True)
class Block:
    """A generated README block: the files it reads (results-relative, or ``figures/...``) and its renderer."""

    sources: tuple[str, ...]
    render: Callable[[Context], str]
    hint: str  # what writes the sources


#: Means come from the same frames (era_core.paper.report) as the tables, so prose and tables agree to the last digit.
BLOCKS: dict[str, Block] = {
    "headline": Block(("tables/main.md", "figures/ndcg_vs_ratio.png", "training.json", "significance.json"),
                      render_headline, "notebooks 03_training and 06_figures (`make paper`)"),
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
    "scaling": Block(("alignment_scaling.json", "training.json"), render_scaling, "notebooks 02_alignment and 03_training"),
    "ladder": Block(("alignment_ladder.json",), render_ladder, "notebook 08_alignment_ladder"),
    "bench": Block(("bench.json",), render_bench, "`make bench`"),
    "runtimes": Block((RUNTIMES.as_posix(),), render_runtimes, "`python -m era_core.tools.readme --time WHAT -- CMD`"),
    "tolerance": Block(("tolerance.json",), render_tolerance, "`python -m era_core.tools.tolerance` on two results folders"),
}

#: Blocks that show the headline figure: a document holding one gets docs/img/ndcg_vs_ratio.png refreshed.
FIGURE_BLOCKS = frozenset({"headline", "results"})
