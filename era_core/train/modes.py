"""The training modes (§3): ERA (``both``), the baselines and our extensions, as one entry point ``train_era``.

``both`` (ERA) chains Phase 1 and Phase 2; ``label_only`` (Embedding Adapter baseline) and
``alignment_only`` run one phase; ``small_adapter`` (the same-model control) and ``fused`` are
ours, each its own mode so the faithful modes are untouched.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch

from era_core.adapter import FusedAdapter, LinearAdapter
from era_core.errors import DataError, ParamsError
from era_core.negatives import teacher_query_vectors
from era_core.train.alignment import AlignmentConfig, AlignmentResult, train_alignment
from era_core.train.checks import check_adapter_dims, check_choice
from era_core.methods import MODE_QUERY_SIDE, MODES, PHASE1_MODES
from era_core.train.embeddings import TaskEmbeddings, query_vectors
from era_core.train.label import (
    LabelConfig,
    LabelResult,
    default_teacher,
    prepare_label_data,
    split_task_queries,
    train_label,
)

#: Modes whose adapter starts from Phase 1.


@dataclass
@dataclass
class EraResult:
    """Result of ``train_era``: final adapter, per-phase results, query splits and ``era_meta`` content."""

    adapter: LinearAdapter
    mode: str
    alignment: AlignmentResult | None
    label: LabelResult | None
    splits: dict[str, dict[str, list[str]]]
    meta: dict[str, Any]


def _compute_splits(tasks: list[TaskEmbeddings], cfg: LabelConfig,
                    given: dict[str, dict[str, list[str]]] | None) -> dict[str, dict[str, list[str]]]:
    out = {}
    for task in tasks:
        task.validate()
        out[task.name] = given[task.name] if given is not None else split_task_queries(task, cfg)
    return out


def _phase2_start(
    mode: str,
    tasks: list[TaskEmbeddings],
    phase1: LinearAdapter | None,
    alignment_adapter: LinearAdapter | None,
    label_cfg: LabelConfig,
    d_in: int,
    d_out: int,
) -> tuple[Any, Callable[[TaskEmbeddings], np.ndarray], str]:
    """Phase 2's starting adapter, mining teacher and query side for ``mode``."""
    if mode == "both":
        init = copy.deepcopy(phase1)
        frozen = phase1
        teacher = lambda t: teacher_query_vectors(t.q_large, doc_dim=d_out, alignment_adapter=frozen)  # noqa: E731
        side = "large"
    elif mode == "label_only":
        torch.manual_seed(label_cfg.seed)
        if alignment_adapter is not None:  # the reference's --pretrained-adapter-path
            check_adapter_dims(alignment_adapter, d_in, d_out, "alignment_adapter")
            init = copy.deepcopy(alignment_adapter)
            frozen = copy.deepcopy(alignment_adapter).eval()
            teacher = lambda t: teacher_query_vectors(t.q_large, doc_dim=d_out, alignment_adapter=frozen)  # noqa: E731
        else:
            init = LinearAdapter(d_in, d_out)
            teacher = default_teacher
        side = "large"
    else:  # small_adapter, fused: both start as the identity on q_small and mine with q_small
        missing = [t.name for t in tasks if t.q_small is None]
        if missing:
            raise DataError(f"mode {mode!r} needs small-model query vectors (q_small); missing for {missing}")
        init = LinearAdapter.identity(d_out) if mode == "small_adapter" else FusedAdapter.control_init(d_in, d_out)
        teacher = lambda t: teacher_query_vectors(t.q_small, doc_dim=d_out, q_small=t.q_small)  # noqa: E731
        side = MODE_QUERY_SIDE[mode]
    return init, teacher, side


def _check_tasks(tasks: list[TaskEmbeddings]) -> tuple[int, int]:
    """Validate every task and return the shared ``(query dim, document dim)``."""
    if not tasks:
        raise DataError("train_era needs at least one task")
    for t in tasks:
        t.validate()
    d_in, d_out = tasks[0].q_large.shape[1], tasks[0].docs_small.shape[1]
    bad = [t.name for t in tasks if (t.q_large.shape[1], t.docs_small.shape[1]) != (d_in, d_out)]
    if bad:
        raise DataError(f"tasks {bad} have other dims than {tasks[0].name!r} ({d_in} -> {d_out})")
    return d_in, d_out


def _phase1(mode: str, align_cfg: AlignmentConfig, align_pairs: tuple[np.ndarray, ...] | None,
            alignment_adapter: LinearAdapter | None, d_in: int, d_out: int, progress: bool,
            ) -> tuple[LinearAdapter | None, AlignmentResult | None, dict[str, Any] | None]:
    """Run (or reuse) Phase 1 where ``mode`` has one; refuse Phase 1 inputs where it has none.

    Returns ``(phase-1 adapter, its result when trained here, its meta)``.
    """
    if mode not in PHASE1_MODES:
        if alignment_adapter is not None and mode in ("small_adapter", "fused"):
            raise ParamsError(
                f"mode {mode!r} starts from the identity map on the small query vectors; do not pass alignment_adapter"
            )
        if align_pairs is not None:
            raise ParamsError(f"mode {mode!r} has no Phase 1; do not pass align_pairs")
        return None, None, None
    if (align_pairs is None) == (alignment_adapter is None):
        raise ParamsError(
            f"mode {mode!r} needs exactly one of align_pairs (to run Phase 1) or alignment_adapter (to reuse it); "
            f"got {'both' if align_pairs is not None else 'neither'}"
        )
    if alignment_adapter is not None:
        check_adapter_dims(alignment_adapter, d_in, d_out, "alignment_adapter")
        return copy.deepcopy(alignment_adapter).eval(), None, {"reused": True}
    if align_pairs[0].shape[1] != d_in or align_pairs[1].shape[1] != d_out:
        raise DataError(
            f"alignment pairs map {align_pairs[0].shape[1]} -> {align_pairs[1].shape[1]} but the tasks need "
            f"{d_in} -> {d_out}"
        )
    alignment = train_alignment(*align_pairs, align_cfg, progress=progress)
    return alignment.adapter, alignment, alignment.summary()


def _era_meta(mode: str, tasks: list[TaskEmbeddings], final: Any, align_meta: dict[str, Any] | None,
              label: LabelResult | None, splits: dict[str, dict[str, list[str]]], align_cfg: AlignmentConfig,
              label_cfg: LabelConfig, d_in: int, d_out: int, start: float) -> dict[str, Any]:
    """The ``era_meta.json`` content of a finished training (the reference's keys, plus ours per mode)."""
    eval_ids = {name: s["test"] for name, s in splits.items()}
    val_ids = {name: s["val"] for name, s in splits.items()}
    meta: dict[str, Any] = {
        "training_mode": mode,
        "alignment_result": align_meta,
        "label_result": None
        if label is None
        else {
            **label.summary(),
            "eval_query_ids_per_task": eval_ids,
            "val_query_ids_per_task": val_ids,
            "train_query_ids_per_task": {name: s["train"] for name, s in splits.items()},
        },
        "eval_query_ids_per_task": eval_ids,
        "val_query_ids_per_task": val_ids,
        "tasks": [t.name for t in tasks],
        "in_dim": final.in_dim,
        "out_dim": final.out_dim,
        "total_elapsed_sec": time.time() - start,
        "config": {"alignment": asdict(align_cfg), "label": asdict(label_cfg)},
    }
    if mode == "fused":  # extra keys only for our modes, so the faithful modes' meta stays as it was
        meta["fused_dims"] = {"large": d_in, "small": d_out}
    return meta


def train_era(
    tasks: list[TaskEmbeddings],
    mode: str,
    *,
    align_cfg: AlignmentConfig | None = None,
    label_cfg: LabelConfig | None = None,
    align_pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    alignment_adapter: LinearAdapter | None = None,
    splits: dict[str, dict[str, list[str]]] | None = None,
    progress: bool = True,
) -> EraResult:
    """Train an adapter in ``mode`` (``MODES``): ``both`` (ERA), ``label_only``, ``alignment_only`` or one of ours.

    Ours: ``small_adapter`` (same-model control) and ``fused`` (``[q_large ; q_small]`` -> small space,
    starting as the control).

    ``align_pairs`` = ``(x_train, y_train, x_eval, y_eval)`` for Phase 1; ``alignment_adapter``
    reuses a finished Phase 1 instead (e.g. across a train-ratio sweep). Pass one of them in
    modes ``both`` and ``alignment_only``. ``splits`` (``{task: {"train", "val",
    "test"}}``, from ``splits.split_units``) is the query split the caller also scores with; without it
    each task is split here under ``label_cfg``.
    """
    check_choice("training mode", mode, MODES)
    align_cfg = align_cfg or AlignmentConfig()
    label_cfg = label_cfg or LabelConfig()
    label_cfg.validate()
    d_in, d_out = _check_tasks(tasks)
    start = time.time()
    phase1, alignment, align_meta = _phase1(mode, align_cfg, align_pairs, alignment_adapter, d_in, d_out, progress)
    label: LabelResult | None = None
    remined: list[dict[str, Any]] = []
    if mode == "alignment_only":
        splits = _compute_splits(tasks, label_cfg, splits)
        final = phase1
    else:
        init, teacher, side = _phase2_start(mode, tasks, phase1, alignment_adapter, label_cfg, d_in, d_out)
        data = prepare_label_data(tasks, label_cfg, teacher=teacher, query_side=side, splits=splits)
        splits = data.splits
        label = train_label(init, data, label_cfg, progress=progress)
        final, remined = _remine(label.adapter, tasks, data, label_cfg, side, progress)
    meta = _era_meta(mode, tasks, final, align_meta, label, splits, align_cfg, label_cfg, d_in, d_out, start)
    if remined:
        meta["remine_result"] = remined
    return EraResult(adapter=final, mode=mode, alignment=alignment, label=label, splits=splits, meta=meta)


def adapter_teacher(adapter: Any, side: str) -> Callable[[TaskEmbeddings], np.ndarray]:
    """A mining teacher that ranks documents with ``adapter`` applied to the ``side`` query vectors."""
    frozen = copy.deepcopy(adapter).eval()
    return lambda t: teacher_query_vectors(query_vectors(t, side), doc_dim=t.docs_small.shape[1],  # noqa: E731
                                           alignment_adapter=frozen)


def changed_negatives(before: list, after: list) -> float:
    """Share of queries (by task and qid) whose set of negatives differs between two tuple lists."""
    old = {(t.task, t.qid): set(t.negs) for t in before}
    shared = [(t.task, t.qid) for t in after if (t.task, t.qid) in old]
    if not shared:
        return 0.0
    new = {(t.task, t.qid): set(t.negs) for t in after}
    return sum(new[k] != old[k] for k in shared) / len(shared)


def _remine(adapter: Any, tasks: list[TaskEmbeddings], data: Any, cfg: LabelConfig, side: str, progress: bool,
            ) -> tuple[Any, list[dict[str, Any]]]:
    """``cfg.remine_rounds`` more Phase 2 rounds, each on negatives mined by the adapter trained so far.

    The splits and the positives are the same in every round (same seeds); only the teacher that
    ranks the negatives changes. Returns the final adapter and one summary per round.
    """
    rounds = []
    for r in range(1, cfg.remine_rounds + 1):
        new = prepare_label_data(tasks, cfg, teacher=adapter_teacher(adapter, side), query_side=side, splits=data.splits)
        result = train_label(adapter, new, cfg, progress=progress)
        rounds.append({"round": r, **result.summary(),
                       "changed_negatives": changed_negatives(data.train_tuples, new.train_tuples)})
        adapter, data = result.adapter, new
    return adapter, rounds
