"""The methods an experiment can train, one record each: how it trains, which query vectors it reads, its labels.

A ``Method`` ties a name (the ``methods`` parameter, run folders, tables) to a training mode of
``era_core.train``, the query side its adapter reads, whether it starts from Phase 1, Phase 2
settings it fixes for itself, and the labels the tables and figures print. Everything that lists
methods (parameters, protocols, report) reads ``METHODS``.

It also names, once, the values of Phase 1's loss and start and of Phase 2's schedule.

Variants: ``<method>+remine`` is ``<method>`` with one more Phase 2 round whose hard negatives are
re-mined with the adapter the first round trained (``LabelConfig.remine_rounds``); it reuses the
base method's learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from era_core.errors import ParamsError

#: Suffix of a method's re-mined variant.
REMINE_SUFFIX = "+remine"
#: Phase 1's losses, its starts (the closed forms need no epochs) and Phase 2's lr schedules.
ALIGNMENT_LOSSES = ("cosine", "mse", "smooth_l1")
ALIGNMENT_INITS = ("default", "ridge", "procrustes")
CLOSED_FORM_INITS = ("ridge", "procrustes")
SCHEDULES = ("reference", "constant")
#: The trainer's modes (``train.train_era``), which ones start from Phase 1, and the query vectors each reads.
MODES = ("both", "label_only", "alignment_only", "small_adapter", "fused")
PHASE1_MODES = ("both", "alignment_only")
QUERY_SIDES = ("large", "small", "fused")
MODE_QUERY_SIDE = {"both": "large", "label_only": "large", "alignment_only": "large", "small_adapter": "small",
                   "fused": "fused", "identity": "small"}


@dataclass(frozen=True)
class Method:
    """One trainable method: its training mode, query side, Phase 1 use and display labels."""

    name: str
    mode: str  # the trainer's mode (MODES), or "identity": no training at all
    label: str
    short: str  # two-line label for crowded axes
    faithful: bool  # the reference has it (ERA, its label-only and alignment-only baselines)
    #: Phase 2 settings this method fixes whatever the parameters say, as (LabelConfig field, value).
    label_overrides: tuple[tuple[str, Any], ...] = ()
    #: Extra Phase 2 rounds with negatives re-mined by the adapter the previous round trained.
    remine_rounds: int = 0

    @property
    def query_side(self) -> str:
        """The query vectors the adapter reads: ``large``, ``small`` or ``fused`` (both, concatenated)."""
        return MODE_QUERY_SIDE[self.mode]

    @property
    def phase1(self) -> bool:
        """Whether it starts from the Phase 1 (identical-text alignment) adapter."""
        return self.mode in PHASE1_MODES

    @property
    def trains_on_labels(self) -> bool:
        """Whether Phase 2 (label training) runs, so the train ratio and the learning rate matter."""
        return self.mode not in ("alignment_only", "identity")

    @property
    def base(self) -> str:
        """The method a variant derives from (itself when it is no variant)."""
        return self.name[: -len(REMINE_SUFFIX)] if self.name.endswith(REMINE_SUFFIX) else self.name

    def configure(self, label_cfg: Any) -> Any:
        """``label_cfg`` (a ``LabelConfig``) with this method's fixed Phase 2 settings and re-mining rounds."""
        return replace(label_cfg, **dict(self.label_overrides), remine_rounds=self.remine_rounds)


_BASE = (
    # The index model on both sides, no training: what every adapter must beat (era_core.validation_choice).
    Method("no_adapter", "identity", "No adapter (the index model alone)", "No\nadapter", False),
    Method("alignment_only", "alignment_only", "Alignment only", "Alignment\nonly", True),
    Method("label_only", "label_only", "Embedding Adapter (reference: label only)", "Embedding\nAdapter (ref.)", True),
    Method("era", "both", "ERA", "ERA", True),
    Method("small_adapter", "small_adapter", "Small adapter (same-model control)", "Small\nadapter", False),
    Method("fused", "fused", "Fused (large ⊕ small queries)", "Fused", False),
    # Chroma's public recipe: a query-only linear adapter on the index model's own query vectors,
    # negatives drawn at random from the documents not labelled relevant (no mining teacher).
    Method("embedding_adapter", "small_adapter", "Embedding Adapter (Chroma: same model, random negatives)",
           "Embedding\nAdapter (Chroma)", False, label_overrides=(("strategy", "random"),)),
)


def _remined(m: Method) -> Method:
    return replace(m, name=m.name + REMINE_SUFFIX, label=f"{m.label}, re-mined", short=f"{m.short}\n+re-mined",
                   remine_rounds=1)


#: Every method by name, in display order; each Phase 2 method is followed by its re-mined variant.
METHODS: dict[str, Method] = {}
for _m in _BASE:
    METHODS[_m.name] = _m
    if _m.trains_on_labels:
        METHODS[_m.name + REMINE_SUFFIX] = _remined(_m)
del _m


def get_method(name: str) -> Method:
    """The ``Method`` called ``name``; a ``ParamsError`` naming the known ones otherwise."""
    if name not in METHODS:
        raise ParamsError(f"unknown method {name!r}; allowed values: {', '.join(METHODS)}")
    return METHODS[name]
