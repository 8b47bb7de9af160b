"""The task records: ``Task`` and ``Unit`` (what is encoded, searched and split), MAIR's domains, dropped-row kinds."""

from __future__ import annotations

from dataclasses import dataclass, field

from era_core.errors import DataError

DOMAINS: tuple[str, ...] = ("academic", "code", "finance", "legal", "medical", "web")

# The task order is ERA_METHOD.md §4.1 (ALL_MAIR_TASKS); it fixes the training order.

#: What the tolerant loader drops (keeping the first occurrence of a repeated id):
#: labels naming a doc id absent from the unit's corpus, repeated doc ids, repeated qids.
DROP_KINDS: tuple[str, ...] = ("label_missing_doc", "duplicate_doc_id", "duplicate_qid")


class DataQualityWarning(UserWarning):
    """The tolerant loader dropped rows of a task (one warning per unit, with counts)."""


@dataclass
class Task:
    """One retrieval task (or one sub-split of a multi-split task) in MAIR's structure.

    For a multi-split task (CQADupStack, IFEval, MISeD, ...) the parent's ``queries``,
    ``instructions``, ``qrels`` and ``corpus`` are left EMPTY on purpose: ids may collide
    across sub-collections and each sub-split has its own corpus (official MAIR evaluation;
    the reference code's merge is a bug, ERA_METHOD.md §9.7). Use :meth:`units`.
    """

    name: str
    domain: str
    queries: dict[str, str] = field(default_factory=dict)
    instructions: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    corpus: dict[str, str] = field(default_factory=dict)
    subsplits: dict[str, "Task"] = field(default_factory=dict)
    #: Rows the tolerant loader dropped from THIS unit, by kind (:data:`DROP_KINDS`); empty on a
    #: multi-split parent. Use :meth:`dropped_counts` for the task's total.
    dropped: dict[str, int] = field(default_factory=dict)
    #: The task's official split, qid → "train" / "val" / "test" (a ``split`` key on every query row); empty when
    #: the task has none and ERA's ratio split applies (``era_core.splits.split_unit``).
    query_split: dict[str, str] = field(default_factory=dict)

    def units(self) -> list["Unit"]:
        """The independently encoded/searched/split units: the sub-splits, or ``[self]``."""
        return list(self.subsplits.values()) if self.subsplits else [self]

    @property
    def task_name(self) -> str:
        """The task this unit belongs to: the parent task of a sub-split, else its own name."""
        return task_of_unit(self.name)

    def labelled_qids(self) -> list[str]:
        """Qids with at least one label, in dataset order (single-split tasks and units only)."""
        if self.subsplits:
            raise DataError(
                f"Task {self.name!r} has {len(self.subsplits)} sub-splits whose qids may collide; "
                "call labelled_qids() on each of task.units() instead."
            )
        return list(self.qrels)

    def dropped_counts(self) -> dict[str, int]:
        """Rows dropped while loading, per kind of :data:`DROP_KINDS`, summed over the units (zeros kept)."""
        return {k: sum(u.dropped.get(k, 0) for u in self.units()) for k in DROP_KINDS}

    @property
    def default_instruction(self) -> str:
        """Instruction of the first query (of the first unit for multi-split tasks)."""
        for unit in self.units():
            for qid in unit.queries:
                return unit.instructions.get(qid, "")
        return ""

    @property
    def has_per_query_instructions(self) -> bool:
        """True when the task's queries carry more than one distinct instruction."""
        distinct = {i for u in self.units() for i in u.instructions.values()}
        return len(distinct) > 1

    @property
    def n_docs(self) -> int:
        """Number of documents (summed over sub-splits)."""
        return sum(len(u.corpus) for u in self.units())

    @property
    def n_labelled(self) -> int:
        """Number of labelled queries (summed over sub-splits)."""
        return sum(len(u.qrels) for u in self.units())


#: One unit: what is encoded, searched and split on its own. A single-split ``Task`` is its own
#: unit; a multi-split task's units are its sub-splits (``Task`` objects named ``task/sub``).
Unit = Task


def task_of_unit(unit_name: str) -> str:
    """The task a unit name belongs to (a sub-split is named ``task/sub``)."""
    return unit_name.split("/", 1)[0]
