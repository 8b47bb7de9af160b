"""Showing figures inline in Jupyter: from the in-memory previews drawn when they were saved, or drawn without
writing (``draw``: the notebook that computes a result shows it, ``06_figures`` alone writes it)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from era_core.errors import EraError
from era_core.paper.report.style import _PREVIEWS


def preview(path: Path | str) -> bytes:
    """PNG bytes of the preview of a figure saved in this process (``path`` = its PDF)."""
    key = str(Path(path).resolve())
    if key not in _PREVIEWS:
        raise EraError(f"no preview of {path}: it was not drawn in this Python process; call the report function "
                       f"that writes it (e.g. report.make_all or report.figure_<name>) first, then show it")
    return _PREVIEWS[key]


def show(*figures: Path | str | Iterable[Path | str]) -> None:
    """Display figures inline in Jupyter (PNG previews of their PDFs); non-PDF paths (tables) are ignored."""
    from IPython.display import Image, display

    flat: list[Path] = []
    for item in figures:
        flat.extend([Path(item)] if isinstance(item, (str, Path)) else [Path(p) for p in item])
    for pdf in flat:
        if pdf.suffix == ".pdf":
            display(Image(data=preview(pdf), format="png"))


def draw(figure: Callable[..., Any], results: Path | str, *args: Any, **kwargs: Any) -> None:
    """Show ``figure(results, <a temporary folder>, *args, **kwargs)`` inline under its heading and caption,
    writing nothing into ``figures/`` (``06_figures`` writes every figure once)."""
    from IPython.display import Markdown, display

    with tempfile.TemporaryDirectory(prefix="era-draw-") as tmp:
        out = figure(Path(results), Path(tmp), *args, **kwargs)
        pdfs = [p for p in (out if isinstance(out, list) else [out]) if Path(p).suffix == ".pdf"]
        for pdf in pdfs:
            title, text = CAPTIONS.get(Path(pdf).stem, (Path(pdf).stem.replace("_", " "), ""))
            display(Markdown(f"### {title}\n\n{text}".rstrip()))
            show(pdf)


#: Heading and generic caption of each figure (by file stem), for notebooks that show them all.
CAPTIONS = {
    "ndcg_vs_ratio": ("nDCG@10 against the train ratio",
                      "Overall nDCG@10 on the test split (macro over tasks) of each label-trained method against the "
                      "fraction of labelled queries it was trained on; lines are means, bands ±1 sd over seeds. "
                      "Dashed lines: the zero-shot references; dotted: alignment only, which uses no labels."),
    "domain_bars": ("nDCG@10 per domain",
                    "Every method at one train ratio, per domain and overall; bars are means, error bars ±1 sd "
                    "over seeds."),
    "instructions": ("Instruction settings: native and forced",
                     "Overall nDCG@10 of every method at one train ratio, with each encoder instructed as the "
                     "reference instructs it (native: only models trained on instructions get them) and with the "
                     "instruction template forced on every encoder (the stress test); error bars ±1 sd over seeds."),
    "lodo": ("Leave one domain out",
             "For each held-out domain: the adapter trained without it (LODO), the in-domain adapter and the "
             "zero-shot references; bars are means, error bars ±1 sd over seeds."),
    "domain_transfer": ("Transfer across domains",
                        "Rows: the domain an adapter was trained on; columns: the domain it was scored on; each "
                        "cell is nDCG@10, mean over seeds."),
    "alignment_curves": ("Phase 1 alignment",
                         "Alignment loss per epoch on the training texts and on held-out texts, with the hold-out "
                         "cosine of the trained adapter and of the closed-form ridge solution."),
    "alignment_scaling": ("Phase 1 scaling",
                          "Phase 1's hold-out cosine (left) and test nDCG@10 of alignment only and of ERA started "
                          "from it (right) against the number of identical-text pairs, per text source and solver; "
                          "error bars ±1 sd over seeds."),
    "alignment_ladder": ("When does ERA pay? The alignment-quality ladder",
                         "ERA minus the same-model control (test nDCG@10) against Phase 1's query-side cosine. "
                         "Coloured lines: the ladder, an index made of the query model truncated to its first k "
                         "dimensions, with Phase 1 fitted on more and more documents up to the exact truncation map; "
                         "grey markers: the studied encoder pairs. Above the dashed line ERA beats the control; "
                         "error bars ±1 sd over seeds."),
    "cost_quality": ("Cost against quality",
                     "Measured query cost (ms per query, rounded to 2 significant figures) against overall nDCG@10 "
                     "of every method, the trained ones at the largest train ratio; error bars ±1 sd over seeds."),
    "encoder_pairs_gap": ("Encoder pairs: gap closed",
                          "Per encoder pair (one panel per train ratio), the share of the gap between zero-shot small "
                          "and zero-shot large that each trained method closes (0 = zero-shot small, 1 = zero-shot "
                          "large); markers are means, error bars ±1 sd over seeds. Below 0, the method is worse than "
                          "the index model's own zero-shot."),
}


def show_all(written: dict[str, list[Path]]) -> None:
    """Display every figure of a :func:`make_all` result inline, each under its heading and caption."""
    from IPython.display import Markdown, display

    for files in written.values():
        for pdf in files:
            if pdf.suffix == ".pdf":
                title, text = CAPTIONS.get(pdf.stem, (pdf.stem.replace("_", " "), ""))
                display(Markdown(f"### {title}\n\n{text}".rstrip()))
                show(pdf)
