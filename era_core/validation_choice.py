"""Will an adapter help on this index? Candidates scored on the validation split against no adapter, and ``auto``.

Every comparison includes ``no_adapter``: the index model on both sides, exactly what the index gives today. The
``auto`` rule trains ``AUTO_CANDIDATES``, scores each on the validation queries (never the test split) and keeps
the best validation nDCG@10 (macro mean over tasks); a tie, equal to ``TIE_DIGITS`` decimals, goes to the cheaper
query path, which is the order of ``AUTO_CANDIDATES``: no adapter and the same-model control (the small model
encodes the query), alignment-only and ERA (the large model does), fused (both do). Because ``no_adapter`` is a
candidate, ``auto`` never returns an adapter that scores below the index model alone on validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The mode that compares and chooses.
AUTO = "auto"
#: What ``auto`` trains, cheapest query path first (a tie goes to the earlier one).
AUTO_CANDIDATES = ("no_adapter", "small_adapter", "alignment_only", "era", "fused")
BASELINE = "no_adapter"
TIE_DIGITS = 4
RULE = ("the best validation nDCG@10 (macro over tasks) among no adapter, the same-model control, alignment-only, "
        f"ERA and fused; a tie at {TIE_DIGITS} decimals goes to the cheaper query path, in that order")


@dataclass(frozen=True)
class ValidationRow:
    """One candidate's validation nDCG@10 and its difference to no adapter."""

    method: str
    ndcg10: float
    delta: float


@dataclass(frozen=True)
class Comparison:
    """The validation table of one training call, what was asked for and what is kept."""

    rows: tuple[ValidationRow, ...]
    requested: str
    chosen: str
    n_val_queries: int

    @property
    def baseline(self) -> float:
        """Validation nDCG@10 of no adapter (the index model alone)."""
        return next(r.ndcg10 for r in self.rows if r.method == BASELINE)

    @property
    def best(self) -> ValidationRow:
        """The row the ``auto`` rule picks."""
        return self.rows_by_rule()[0]

    def rows_by_rule(self) -> list[ValidationRow]:
        """The rows best first under the ``auto`` rule."""
        rank = {m: i for i, m in enumerate(AUTO_CANDIDATES)}
        return sorted(self.rows, key=lambda r: (-round(r.ndcg10, TIE_DIGITS), rank.get(r.method, len(rank))))

    @property
    def warning(self) -> str | None:
        """A warning when the kept adapter scores below no adapter on validation (only an explicit mode can)."""
        kept = next(r for r in self.rows if r.method == self.chosen)
        if round(kept.delta, TIE_DIGITS) >= 0:
            return None
        return (f"the {self.chosen} adapter scores {kept.ndcg10:.4f} nDCG@10 on the validation queries, below the "
                f"index model with no adapter ({self.baseline:.4f}): it would make retrieval worse. The better "
                f"option here is {self.best.method} ({self.best.ndcg10:.4f}); train with --mode auto (or "
                f"--mode {self.best.method}) instead")

    @property
    def reason(self) -> str:
        """Why ``chosen`` was kept, in one sentence."""
        if self.requested != AUTO:
            return f"{self.chosen} was asked for (--mode {self.requested})"
        best = self.best
        if best.method == BASELINE:
            return "no adapter beats the index model alone on the validation queries, so none is kept"
        return (f"{best.method} has the best validation nDCG@10 ({best.ndcg10:.4f}, {best.delta:+.4f} over no "
                "adapter)")

    def table(self) -> str:
        """The comparison as a small text table, best first."""
        lines = [f"validation nDCG@10 on {self.n_val_queries} queries (never the test split):",
                 f"  {'method':<16}{'nDCG@10':>9}{'vs none':>9}"]
        for r in self.rows_by_rule():
            mark = "  <- kept" if r.method == self.chosen else ""
            lines.append(f"  {r.method:<16}{r.ndcg10:>9.4f}{r.delta:>+9.4f}{mark}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """What ``summary.json`` and the model card keep."""
        return {"rule": RULE, "requested": self.requested, "chosen": self.chosen, "reason": self.reason,
                "n_val_queries": self.n_val_queries, "warning": self.warning,
                "rows": [{"method": r.method, "ndcg@10": r.ndcg10, "delta_vs_no_adapter": r.delta}
                         for r in self.rows]}


def comparison(scores: dict[str, float], requested: str, n_val_queries: int) -> Comparison:
    """The ``Comparison`` of validation scores ``{method: nDCG@10}`` (``no_adapter`` among them)."""
    base = scores[BASELINE]
    rows = tuple(ValidationRow(m, float(v), float(v) - base) for m, v in scores.items())
    draft = Comparison(rows, requested, BASELINE, n_val_queries)
    return Comparison(rows, requested, draft.best.method if requested == AUTO else requested, n_val_queries)


def candidates(requested: str) -> tuple[str, ...]:
    """What a training call with ``requested`` trains and scores: every candidate for ``auto``, else no adapter
    beside the requested method."""
    return AUTO_CANDIDATES if requested == AUTO else tuple(dict.fromkeys((BASELINE, requested)))
