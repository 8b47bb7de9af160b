"""The look of every figure (theme, colours, error bars) and its byte-stable PDF / PNG writing.

Named ``style`` rather than ``theme`` so that ``report.theme`` stays the function below and is
never shadowed by a submodule of the same name.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import matplotlib
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from era_core.io import atomic_write
from era_core.methods import METHODS, REMINE_SUFFIX

# Fixed rc settings so the PDFs depend on nothing but the data: TrueType (Type 42) fonts,
# the bundled DejaVu family, and no hash salt.
_RC = {
    "pdf.fonttype": 42,
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "svg.hashsalt": "era",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.axisbelow": True,
}


def theme() -> dict[str, Any]:
    """The one figure theme: seaborn's ``whitegrid`` style under the fixed rc settings above."""
    return {**sns.axes_style("whitegrid"), **_RC}


#: One colour per method, identical in every figure.
METHOD_COLORS = {
    "zero_shot_small": "#7f7f7f",
    "no_adapter": "#7f7f7f",  # the same vectors as zero-shot small
    "zero_shot_large": "#000000",
    "alignment_only": "#9467bd",
    "label_only": "#ff7f0e",
    "era": "#1f77b4",
    "small_adapter": "#2ca02c",
    "fused": "#d62728",
    "embedding_adapter": "#8c564b",
}
# A re-mined variant takes its base method's colour, lightened halfway to white.
METHOD_COLORS.update({m + REMINE_SUFFIX: mcolors.to_hex([(c + 1) / 2 for c in mcolors.to_rgb(METHOD_COLORS[m])])
                      for m in list(METHOD_COLORS) if m + REMINE_SUFFIX in METHODS})
#: What the error bars of the statistical figures show (seaborn's ``errorbar`` and its caption).
ERRORBAR = "sd"
ERRORBAR_TEXT = "±1 sd over seeds"
_PDF_METADATA = {"CreationDate": None, "ModDate": None, "Creator": "era_core.paper.report"}
_PNG_METADATA = {"Software": None}
#: Resolution of the PNG copies (the README's figure): sharp on screens, about 100 kB.
PNG_DPI = 150
#: Resolution of the inline previews that :func:`show` displays (never written to disk).
PREVIEW_DPI = 100
#: In-memory PNG preview of each figure saved in this process, keyed by its resolved PDF path.
_PREVIEWS: dict[str, bytes] = {}


def _save(fig: plt.Figure, path: Path, png: Path | None = None) -> list[Path]:
    """Save a figure as a byte-stable PDF (no timestamps) and optionally PNG, atomically, and close it.

    A PNG preview for :func:`show` is rendered last, from the same figure, after the files are
    written, so showing a figure can never change their bytes.
    """
    out = [path]
    try:
        atomic_write(path, lambda p: fig.savefig(p, format="pdf", metadata=_PDF_METADATA, bbox_inches="tight"))
        if png is not None:
            # Agg at a fixed dpi with no Software/time chunks: the same data give the same bytes.
            atomic_write(png, lambda p: fig.savefig(p, format="png", dpi=PNG_DPI, metadata=_PNG_METADATA,
                                                    bbox_inches="tight"))
            out.append(png)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=PREVIEW_DPI, metadata=_PNG_METADATA, bbox_inches="tight")
        _PREVIEWS[str(Path(path).resolve())] = buf.getvalue()
    finally:
        plt.close(fig)
    return out


def _draw(render: Callable[[], plt.Figure], path: Path, png: Path | None = None) -> list[Path]:
    """Render a figure under :func:`theme` and save it (see :func:`_save`); the files written."""
    # Every figure goes through here, so ``_save`` is looked up in this module alone (tests patch it here).
    with plt.rc_context(theme()):
        return _save(render(), path, png)


def _figure(render: Callable[[], plt.Figure], path: Path) -> Path:
    """:func:`_draw` for a figure written as a PDF only; its path."""
    return _draw(render, path)[0]


def _bars(ax: plt.Axes, data: pd.DataFrame, x: str, order: list[str], hue: str, hue_order: list[str],
          palette: dict[str, str]) -> None:
    """Seaborn grouped bars of per-seed ``value``: the mean, error bars ±1 sd over seeds (:data:`ERRORBAR`)."""
    sns.barplot(data=data.assign(**{hue: data[hue].astype(str)}), x=x, y="value", order=order, hue=hue,
                hue_order=hue_order, palette=palette, errorbar=ERRORBAR, capsize=0.12,
                err_kws={"linewidth": 0.8, "color": "#333333"}, edgecolor="white", linewidth=0.4, ax=ax)


def _lighter(color: str, amount: float = 0.5) -> str:
    """``color`` blended towards white (the in-domain twin of a LODO bar)."""
    rgb = np.array(matplotlib.colors.to_rgb(color))
    return matplotlib.colors.to_hex(rgb + (1.0 - rgb) * amount)
