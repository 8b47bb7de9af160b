"""Phase 2 (§3.2): split each task's labelled queries, mine the tuples, minimise InfoNCE.

``prepare_label_data`` splits and mines; ``train_label`` runs AdamW with the LambdaLR
warmup/decay schedule (``era_core.train.schedule``) and early stopping on the pooled
validation loss (tau 0.05).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from era_core.adapter import LinearAdapter
from era_core.errors import DataError, ParamsError, TrainingError
from era_core.methods import QUERY_SIDES, SCHEDULES
from era_core.negatives import STRATEGIES, TrainingTuple, build_tuples, teacher_query_vectors
from era_core.splits import split_unit
from era_core.train.checks import check_choice, check_finite, check_positive
from era_core.train.embeddings import TaskEmbeddings, query_dim, query_vectors
from era_core.train.schedule import schedule_plan


@dataclass
class LabelConfig:
    """Phase 2 hyper-parameters; defaults are the paper configuration (``.sh``, §3.2)."""

    train_ratio: float = 0.1
    val_ratio: float = 0.1
    eval_ratio: float = 0.5
    num_negatives: int = 5
    strategy: str = "topk_percpos"
    top_k: int = 2000
    margin: float = 0.95
    lr: float = 1e-5
    weight_decay: float = 1e-4
    batch_size: int = 256
    epochs: int = 1000
    warmup_ratio: float = 0.1
    schedule: str = "reference"
    temperature: float = 0.05
    early_stopping: bool = True
    patience: int = 5
    min_delta: float = 0.0
    in_batch_negatives: bool = False
    #: Extra rounds, each re-mining the hard negatives with the adapter the previous round trained.
    remine_rounds: int = 0
    seed: int = 42
    data_seed: int | None = None
    device: str = "cpu"

    @property
    def split_seed(self) -> int:
        """Seed of the query splits and train tuples (val tuples use ``split_seed + 1``)."""
        return self.seed if self.data_seed is None else self.data_seed

    def validate(self) -> None:
        """Raise ``ParamsError`` for out-of-range values."""
        check_choice("negative strategy", self.strategy, STRATEGIES)
        check_choice("schedule", self.schedule, SCHEDULES)
        for name in ("num_negatives", "top_k", "batch_size", "epochs", "patience"):
            check_positive(f"label {name}", getattr(self, name))
        if self.remine_rounds < 0:
            raise ParamsError(f"remine_rounds must be >= 0, got {self.remine_rounds}")
        if self.train_ratio <= 0 or self.val_ratio < 0 or self.eval_ratio < 0:
            raise ParamsError(
                f"ratios must be train > 0, val >= 0, eval >= 0; got {self.train_ratio}, {self.val_ratio}, {self.eval_ratio}"
            )
        if self.train_ratio + self.val_ratio + self.eval_ratio > 1 + 1e-9:
            raise ParamsError(
                f"train_ratio + val_ratio + eval_ratio = {self.train_ratio + self.val_ratio + self.eval_ratio} > 1; "
                f"with val 0.1 and eval 0.5 the train ratio can be at most 0.4"
            )
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ParamsError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.temperature <= 0 or self.lr <= 0 or self.weight_decay < 0:
            raise ParamsError(
                f"temperature and lr must be > 0 and weight_decay >= 0; got temperature={self.temperature}, "
                f"lr={self.lr}, weight_decay={self.weight_decay}"
            )



@dataclass
class LabelData:
    """Stacked Phase 2 tensors (train and val) plus the per-task query splits."""

    train_q: torch.Tensor
    train_pos: torch.Tensor
    train_negs: torch.Tensor
    train_pos_keys: torch.Tensor
    val_q: torch.Tensor
    val_pos: torch.Tensor
    val_negs: torch.Tensor
    val_pos_keys: torch.Tensor
    splits: dict[str, dict[str, list[str]]]
    train_tuples: list[TrainingTuple] = field(default_factory=list)
    val_tuples: list[TrainingTuple] = field(default_factory=list)
    query_side: str = "large"
    num_queries: int = 0
    num_docs: int = 0

    @property
    def in_dim(self) -> int:
        """Query-vector dimension."""
        return int(self.train_q.shape[1])

    @property
    def out_dim(self) -> int:
        """Document-vector dimension."""
        return int(self.train_pos.shape[1])


@dataclass
class LabelResult:
    """Phase 2 outcome: adapter (best-val state when early stopping) and the per-epoch log."""

    adapter: LinearAdapter
    history: list[dict[str, float | None]]
    best_epoch: int
    best_val_loss: float | None
    stopped_early: bool
    elapsed_sec: float
    num_pairs: int = 0
    num_val_pairs: int = 0

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no weights)."""
        return {
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "stopped_early": self.stopped_early,
            "elapsed_sec": self.elapsed_sec,
            "num_pairs": self.num_pairs,
            "num_val_pairs": self.num_val_pairs,
        }



def infonce_loss(
    q: torch.Tensor,
    pos: torch.Tensor,
    negs: torch.Tensor,
    temperature: float = 0.05,
    in_batch: bool = False,
    pos_keys: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean CE over logits ``[q.p, q.n_1..q.n_k] / tau`` with target 0 (§3.2.3); optional in-batch negatives."""
    pos_logit = (q * pos).sum(-1, keepdim=True)
    neg_logits = torch.einsum("bd,bkd->bk", q, negs)
    parts = [pos_logit, neg_logits]
    if in_batch:
        cross = q @ pos.T
        mask = torch.eye(q.shape[0], dtype=torch.bool, device=q.device)
        if pos_keys is not None:
            # Another query's positive that is this query's own positive is not a negative.
            mask = mask | (pos_keys[:, None] == pos_keys[None, :])
        parts.append(cross.masked_fill(mask, float("-inf")))
    logits = torch.cat(parts, dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


def split_task_queries(task: TaskEmbeddings, cfg: LabelConfig) -> dict[str, list[str]]:
    """One task's train / val / test qids under ``cfg``'s ratios and split seed (§3.2.1)."""
    return split_unit(task, cfg.train_ratio, cfg.val_ratio, cfg.eval_ratio, seed=cfg.split_seed)


def default_teacher(task: TaskEmbeddings) -> np.ndarray:
    """The mining teacher when none is given: the task's large query vectors, as in the reference."""
    return teacher_query_vectors(task.q_large, doc_dim=task.docs_small.shape[1], q_small=task.q_small)


def prepare_label_data(
    tasks: list[TaskEmbeddings],
    cfg: LabelConfig,
    *,
    teacher: Callable[[TaskEmbeddings], np.ndarray] | None = None,
    query_side: str = "large",
    splits: dict[str, dict[str, list[str]]] | None = None,
) -> LabelData:
    """Split every task's queries (or take ``splits``, computed once by the caller), mine train (seed 42) and val
    (seed 43) tuples, and stack the vectors."""
    cfg.validate()
    check_choice("query_side", query_side, QUERY_SIDES)
    if not tasks:
        raise DataError("no training tasks given")
    teacher = teacher or default_teacher
    given = splits
    splits = {}
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {"train": [], "val": []}
    all_tuples: dict[str, list[TrainingTuple]] = {"train": [], "val": []}
    offset, n_queries, n_docs = 0, 0, 0
    for task in tasks:
        task.validate()
        if task.name in splits:
            raise DataError(f"task {task.name!r} is listed twice")
        q_side = query_vectors(task, query_side)
        splits[task.name] = given[task.name] if given is not None else split_task_queries(task, cfg)
        train, val = splits[task.name]["train"], splits[task.name]["val"]
        rows = {q: i for i, q in enumerate(task.qids)}
        t_vecs = teacher(task) if cfg.strategy != "random" else None
        for kind, qids, seed in (("train", train, cfg.split_seed), ("val", val, cfg.split_seed + 1)):
            tuples = build_tuples(
                list(qids), rows, task.qrels, task.doc_ids, seed=seed, strategy=cfg.strategy,
                num_negatives=cfg.num_negatives, teacher_queries=t_vecs, doc_emb=task.docs_small,
                top_k=cfg.top_k, margin=cfg.margin, task=task.name,
            )  # fmt: skip
            all_tuples[kind].extend(tuples)
            if tuples:
                qr = np.array([t.query_row for t in tuples])
                pr = np.array([t.pos for t in tuples])
                nr = np.array([t.negs for t in tuples])
                parts[kind].append((q_side[qr], task.docs_small[pr], task.docs_small[nr], pr + offset))
        offset += len(task.doc_ids)
        n_queries += len(task.qids)
        n_docs += len(task.doc_ids)
    d_in = query_dim(tasks[0], query_side)
    d_out = tasks[0].docs_small.shape[1]
    stacked = {kind: _stack(parts[kind], d_in, d_out, cfg.num_negatives, kind) for kind in ("train", "val")}
    if stacked["train"][0].shape[0] == 0:
        raise DataError(
            "no training tuples: no training query has a positive document in its corpus "
            f"(tasks: {[t.name for t in tasks]}); check the qrels and doc ids"
        )
    return LabelData(
        *stacked["train"], *stacked["val"], splits=splits, train_tuples=all_tuples["train"],
        val_tuples=all_tuples["val"], query_side=query_side, num_queries=n_queries, num_docs=n_docs,
    )  # fmt: skip



def _stack(parts: list, d_in: int, d_out: int, k: int, kind: str) -> tuple[torch.Tensor, ...]:
    """Concatenate per-task arrays in task order into float32 tensors, checking they are finite."""
    if not parts:
        return (
            torch.empty(0, d_in), torch.empty(0, d_out), torch.empty(0, k, d_out), torch.empty(0, dtype=torch.long),
        )  # fmt: skip
    out = []
    for i, name in enumerate(("query", "positive", "negative")):
        arr = np.ascontiguousarray(np.concatenate([p[i] for p in parts]), dtype=np.float32)
        if not np.isfinite(arr).all():
            raise DataError(f"{kind} {name} vectors contain NaN/inf; rebuild the embedding cache")
        out.append(torch.from_numpy(arr))
    out.append(torch.from_numpy(np.concatenate([p[3] for p in parts]).astype(np.int64)))
    return tuple(out)



@torch.no_grad()
def _val_loss(model: LinearAdapter, data: LabelData, cfg: LabelConfig, dev: torch.device) -> float:
    """Unweighted mean of per-batch mean losses over the (unshuffled) val tuples."""
    losses = []
    for s in range(0, data.val_q.shape[0], cfg.batch_size):
        sl = slice(s, s + cfg.batch_size)
        loss = infonce_loss(
            model(data.val_q[sl].to(dev)), data.val_pos[sl].to(dev), data.val_negs[sl].to(dev),
            cfg.temperature, cfg.in_batch_negatives, data.val_pos_keys[sl].to(dev),
        )  # fmt: skip
        losses.append(loss.item())
    return float(np.mean(losses))


def _label_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, batches: tuple[torch.Tensor, ...],
                 perm: torch.Tensor, cfg: LabelConfig, epoch: int) -> list[float]:
    """One pass over the shuffled training tuples; returns each step's loss."""
    tq, tp, tn, tk = batches
    model.train()
    losses = []
    for step, s in enumerate(range(0, tq.shape[0], cfg.batch_size), start=1):
        idx = perm[s : s + cfg.batch_size]
        loss = infonce_loss(model(tq[idx]), tp[idx], tn[idx], cfg.temperature, cfg.in_batch_negatives, tk[idx])
        check_finite(loss.item(), "Phase 2 (label)", epoch, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def _check_weights_finite(model: torch.nn.Module, epoch: int, steps_per_epoch: int) -> None:
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise TrainingError(
            f"Phase 2 (label): adapter weights became NaN/inf at epoch {epoch}, step {steps_per_epoch}; "
            f"lower the learning rate; no weights were written"
        )


def _early_stopping_on(cfg: LabelConfig, has_val: bool) -> bool:
    if cfg.early_stopping and not has_val:
        warnings.warn("no validation tuples: early stopping disabled, keeping the last epoch", stacklevel=3)
        return False
    return cfg.early_stopping


def train_label(
    adapter: LinearAdapter, data: LabelData, cfg: LabelConfig | None = None, *, progress: bool = True
) -> LabelResult:
    """Phase 2: InfoNCE on the mined tuples, AdamW + LambdaLR per batch, early stopping on val loss."""
    cfg = cfg or LabelConfig()
    cfg.validate()
    if (adapter.in_dim, adapter.out_dim) != (data.in_dim, data.out_dim):
        raise ParamsError(
            f"adapter maps {adapter.in_dim} -> {adapter.out_dim} but the data needs {data.in_dim} -> {data.out_dim}"
        )
    n = data.train_q.shape[0]
    if n == 0:
        raise DataError("no training tuples to train on")
    start = time.time()
    dev = torch.device(cfg.device)
    model = copy.deepcopy(adapter).to(dev)  # the caller's adapter is never touched
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    factor, max_epochs = schedule_plan(cfg, steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    gen = torch.Generator().manual_seed(cfg.seed)
    has_val = data.val_q.shape[0] > 0
    early = _early_stopping_on(cfg, has_val)
    batches = tuple(t.to(dev) for t in (data.train_q, data.train_pos, data.train_negs, data.train_pos_keys))
    history: list[dict[str, float | None]] = []
    best_loss, best_epoch, best_state, bad, stopped = math.inf, 0, None, 0, False
    bar = tqdm(range(1, max_epochs + 1), desc="Phase 2 (label)", disable=not progress)
    for epoch in bar:
        perm = torch.randperm(n, generator=gen).to(dev)
        losses = _label_epoch(model, opt, sched, batches, perm, cfg, epoch)
        _check_weights_finite(model, epoch, steps_per_epoch)
        model.eval()
        val = _val_loss(model, data, cfg, dev) if has_val else None
        if val is not None:
            check_finite(val, "Phase 2 (label) validation", epoch, None)
        history.append(
            {"epoch": epoch, "train_loss": float(np.mean(losses)), "lr": opt.param_groups[0]["lr"], "val_loss": val}
        )
        bar.set_postfix(train=f"{np.mean(losses):.4f}", val="-" if val is None else f"{val:.4f}")
        if val is None:
            continue
        if val < best_loss - cfg.min_delta:
            best_loss, best_epoch, bad = val, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if early and bad >= cfg.patience:
                stopped = True
                break
    if early and best_state is not None:
        model.load_state_dict(best_state)
    return LabelResult(
        adapter=model.cpu().eval(), history=history, best_epoch=best_epoch if has_val else len(history),
        best_val_loss=None if not has_val else best_loss, stopped_early=stopped, elapsed_sec=time.time() - start,
        num_pairs=int(n), num_val_pairs=int(data.val_q.shape[0]),
    )  # fmt: skip
