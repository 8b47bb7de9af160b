"""era_core: a reproducible implementation of ERA (Align then Train: Efficient Retrieval Adapter Learning).

The method's public names come from ``era_core.api`` (``Setup``, ``load_units``, ``embed``, ``phase1``, ``fit``,
``compare``, ``evaluate``, ``save``, ``load``, ``export`` and the configurations); they are imported on first use, so
``import era_core`` stays cheap. The paper's protocols live in ``era_core.paper``, the tools in
``era_core.tools``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["AlignmentConfig", "Comparison", "LabelConfig", "Scores", "Setup", "TrainedAdapter", "compare", "embed",
           "evaluate", "export", "fit", "load", "load_encoder", "load_tasks", "load_units", "phase1", "save"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from era_core import api

        return getattr(api, name)
    raise AttributeError(f"module 'era_core' has no attribute {name!r}")
