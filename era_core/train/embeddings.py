"""The cached vectors one task feeds training, and the query vectors each mode's adapter takes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from era_core.adapter import fuse_queries
from era_core.errors import DataError
from era_core.methods import QUERY_SIDES
from era_core.train.checks import check_choice



@dataclass
class TaskEmbeddings:
    """The cached vectors of one task that training needs (rows in dataset / corpus order)."""

    name: str
    domain: str
    qids: list[str]
    qrels: dict[str, dict[str, int]]
    doc_ids: list[str]
    q_large: np.ndarray
    q_small: np.ndarray | None
    docs_small: np.ndarray
    #: The task's official split (qid → train / val / test), empty for ERA's ratio split (``splits.split_unit``).
    query_split: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Check row counts and dims agree; raises ``DataError`` naming the task."""
        if self.q_large.ndim != 2 or self.q_large.shape[0] != len(self.qids):
            raise DataError(f"task {self.name!r}: q_large has shape {self.q_large.shape} for {len(self.qids)} qids")
        if self.docs_small.ndim != 2 or self.docs_small.shape[0] != len(self.doc_ids):
            raise DataError(
                f"task {self.name!r}: docs_small has shape {self.docs_small.shape} for {len(self.doc_ids)} doc ids"
            )
        if self.q_small is not None and self.q_small.shape != (len(self.qids), self.docs_small.shape[1]):
            raise DataError(
                f"task {self.name!r}: q_small has shape {self.q_small.shape}, expected "
                f"({len(self.qids)}, {self.docs_small.shape[1]})"
            )
        unlabelled = [q for q in self.qids if q not in self.qrels]
        if unlabelled:
            raise DataError(
                f"task {self.name!r}: {len(unlabelled)} qids have no qrels (e.g. {unlabelled[:3]}); "
                f"TaskEmbeddings.qids must hold labelled queries only"
            )


def query_vectors(task: TaskEmbeddings, side: str) -> np.ndarray:
    """The query vectors an adapter of ``side`` takes: ``q_large``, ``q_small`` or ``[q_large ; q_small]``."""
    check_choice("query_side", side, QUERY_SIDES)
    if side == "large":
        return task.q_large
    if task.q_small is None:
        raise DataError(
            f"task {task.name!r} has no small-model query vectors (q_small), needed for query_side={side!r}; "
            f"embed its queries with the document model"
        )
    return task.q_small if side == "small" else fuse_queries(task.q_large, task.q_small)


def query_dim(task: TaskEmbeddings, side: str) -> int:
    """Input dimension of an adapter that takes ``side`` query vectors of ``task``."""
    d_small = task.docs_small.shape[1]
    return {"large": task.q_large.shape[1], "small": d_small, "fused": task.q_large.shape[1] + d_small}[side]
