"""ERA training: Phase 1 (identical-text alignment), Phase 2 (label, InfoNCE), and the modes (§3).

Everything here runs on cached vectors only (unit rows, float32); no encoder is loaded.

- Phase 1 (§3.1): ``alignment_sample`` picks <= 1000 corpus docs per task (the caller embeds
  only those with the large model), ``alignment_holdout`` splits the pooled pairs 90/10, and
  ``train_alignment`` fits ``A(x_large) ~ y_small`` with a cosine (or MSE / smooth-L1) loss.
- Phase 2 (§3.2): ``prepare_label_data`` splits each task's labelled queries and mines the
  tuples; ``train_label`` minimises InfoNCE (tau 0.05) with AdamW, the LambdaLR warmup/decay
  schedule and early stopping on the pooled validation loss.
- ``train_era`` chains them per mode: ``both`` (ERA), ``label_only`` (Embedding Adapter
  baseline), ``alignment_only`` and ``small_adapter`` (same-model control, ours).
- Our extensions, each its own mode so the faithful modes are untouched:
  ``fused`` (a ``FusedAdapter`` on ``[q_large ; q_small]``, started at the control's identity on
  ``q_small`` and zero on ``q_large``; no Phase 1; mined with ``q_small`` like the control) and
  ``residual_mlp`` (ERA whose Phase 2 adapter is Phase 1's linear map plus a zero-output MLP;
  mined with the frozen Phase 1 adapter like ERA). ``MODE_QUERY_SIDE`` / ``query_vectors`` give
  the query vectors each mode's adapter takes.

Deviations from the reference
- Seeding (§9.12): torch is seeded (``torch.manual_seed(cfg.seed)``) before every adapter
  init, and batch order comes from a ``torch.Generator`` seeded with ``cfg.seed``, so two runs
  with the same configuration give identical weights. The reference never seeds torch.
- The query splits and tuple RNGs use ``LabelConfig.data_seed`` (val tuples ``data_seed + 1``);
  it defaults to ``seed`` (one seed for everything, as in the reference: 42 / 43) but can be
  fixed separately so the torch seed varies without moving the test split.
- Phase 1 embeds only the sampled documents with the large model (§9.11); the sample is the
  reference's, so the pairs are identical.
- In-batch negatives are available (``in_batch_negatives=True``) but off by default, which is
  the reference's actual behaviour (§9.3). Other queries' positives that are the same document
  as the query's own positive are masked out.
- ``schedule``: ``"reference"`` is faithful (T from the CONFIGURED epochs, so with early
  stopping the lr may stay on its warmup ramp, §9.2); ``"constant"`` (lr fixed) and
  ``"warmup_linear"`` (T from ``schedule_epochs``; training stops after that many epochs, since
  the lr is 0 afterwards) are our options.
- Alignment can start from a closed form (``init="ridge"``, or ``init="procrustes"``: orthogonal
  Procrustes, equal dims only, uncentred, zero bias); with ``epochs=0`` the closed form is the
  result. The reference only has the random init.
- Alignment ``best_epoch`` is tracked from epoch 0 (before training) onward; the early-stopping
  restore may therefore return the initial weights when no epoch improves on them.
- A NaN/inf loss raises ``TrainingError``; the caller's adapter is never modified in place
  (training works on a copy), and nothing is written to disk here.
- The logged ``lr`` of a Phase 2 epoch is the optimizer's lr after the epoch's last scheduler
  step, i.e. the lr of the next step.
- Phase 2 keeps the last epoch when early stopping is disabled, like Phase 1.
"""

from __future__ import annotations

import copy
import math
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from era_core.adapter import FusedAdapter, LinearAdapter, ResidualMLPAdapter, apply_adapter, fuse_queries
from era_core.errors import DataError, ParamsError, TrainingError
from era_core.negatives import STRATEGIES, TrainingTuple, build_tuples, teacher_query_vectors

MODES = ("both", "label_only", "alignment_only", "small_adapter", "fused", "residual_mlp")
ALIGNMENT_LOSSES = ("cosine", "mse", "smooth_l1")
ALIGNMENT_INITS = ("default", "ridge", "procrustes")
CLOSED_FORM_INITS = ("ridge", "procrustes")
SCHEDULES = ("reference", "constant", "warmup_linear")
QUERY_SIDES = ("large", "small", "fused")
# Which query vectors each mode's adapter takes (``query_vectors(task, side)`` builds them).
MODE_QUERY_SIDE = {
    "both": "large", "label_only": "large", "alignment_only": "large", "residual_mlp": "large",
    "small_adapter": "small", "fused": "fused",
}  # fmt: skip


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


# ============================================================================ Phase 1


@dataclass
class AlignmentConfig:
    """Phase 1 hyper-parameters; defaults are the paper configuration (§3.1)."""

    samples_per_task: int = 1000
    eval_ratio: float = 0.1
    loss: str = "cosine"
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 256
    epochs: int = 100
    seed: int = 42
    early_stopping: bool = False
    patience: int = 20
    min_delta: float = 0.0
    init: str = "default"
    ridge_lambda: float = 1e-2
    device: str = "cpu"

    def validate(self) -> None:
        """Raise ``ParamsError`` for out-of-range values."""
        _check_choice("alignment loss", self.loss, ALIGNMENT_LOSSES)
        _check_choice("alignment init", self.init, ALIGNMENT_INITS)
        _check_positive("alignment batch_size", self.batch_size)
        _check_positive("alignment samples_per_task", self.samples_per_task)
        _check_positive("alignment patience", self.patience)
        if self.epochs < 0:
            raise ParamsError(f"alignment epochs must be >= 0, got {self.epochs}")
        if self.epochs == 0 and self.init not in CLOSED_FORM_INITS:
            raise ParamsError(
                f"alignment epochs=0 only makes sense with a closed-form init ({', '.join(CLOSED_FORM_INITS)}), "
                f"got init={self.init!r}"
            )
        if not 0.0 < self.eval_ratio < 1.0:
            raise ParamsError(f"alignment eval_ratio must be in (0, 1), got {self.eval_ratio}")
        if self.lr <= 0 or self.weight_decay < 0 or self.ridge_lambda < 0:
            raise ParamsError(
                f"alignment lr must be > 0 and weight_decay, ridge_lambda >= 0; got lr={self.lr}, "
                f"weight_decay={self.weight_decay}, ridge_lambda={self.ridge_lambda}"
            )


@dataclass
class AlignmentResult:
    """Phase 1 outcome: final adapter and the per-epoch log (epoch 0 = before training)."""

    adapter: LinearAdapter
    history: list[dict[str, float]]
    best_epoch: int
    best_eval_loss: float
    stopped_early: bool
    elapsed_sec: float
    eval_cosine: float
    num_train: int = 0
    num_eval: int = 0

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no weights)."""
        return {
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_eval_loss": self.best_eval_loss,
            "stopped_early": self.stopped_early,
            "elapsed_sec": self.elapsed_sec,
            "eval_cosine": self.eval_cosine,
            "num_train_texts": self.num_train,
            "num_eval_texts": self.num_eval,
            "in_dim": self.adapter.in_dim,
            "out_dim": self.adapter.out_dim,
        }


def alignment_sample(corpus_sizes: list[int], samples_per_task: int = 1000, seed: int = 42) -> list[list[int]]:
    """Per task, the corpus rows Phase 1 uses: ``Random(seed).sample(range(N), s)`` or all N shuffled."""
    out: list[list[int]] = []
    for n in corpus_sizes:
        rng = random.Random(seed)  # fresh per task, as in the reference
        if n > samples_per_task:
            out.append(rng.sample(range(n), samples_per_task))
        else:
            idx = list(range(n))
            rng.shuffle(idx)
            out.append(idx)
    return out


def alignment_holdout(m: int, eval_ratio: float = 0.1, seed: int = 42) -> tuple[list[int], list[int]]:
    """Split ``m`` pooled pairs: shuffle with ``Random(seed)``, first ``max(1, int(ratio*m))`` are eval."""
    if m < 1:
        raise DataError("alignment needs at least one document pair; no task has a corpus sample")
    idx = list(range(m))
    random.Random(seed).shuffle(idx)
    n_eval = max(1, int(eval_ratio * m))
    return sorted(idx[n_eval:]), sorted(idx[:n_eval])


def split_alignment_pairs(
    x: np.ndarray, y: np.ndarray, eval_ratio: float = 0.1, seed: int = 42
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply ``alignment_holdout`` to pooled pairs: ``(x_train, y_train, x_eval, y_eval)``."""
    if x.shape[0] != y.shape[0]:
        raise DataError(f"alignment pairs disagree: {x.shape[0]} large vs {y.shape[0]} small rows")
    train_idx, eval_idx = alignment_holdout(x.shape[0], eval_ratio, seed)
    return x[train_idx], y[train_idx], x[eval_idx], y[eval_idx]


def _alignment_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(pred, target, dim=-1).mean()
    if kind == "mse":
        return F.mse_loss(pred, target)
    return F.smooth_l1_loss(pred, target, beta=1.0)


def ridge_solution(x: np.ndarray, y: np.ndarray, lam: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Closed form ``argmin_{W,b} ||X W^T + b - Y||^2 + lam ||W||^2`` (bias unpenalised): ``(W, b)``."""
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    x1 = torch.cat([xt, torch.ones(xt.shape[0], 1, dtype=torch.float64)], dim=1)
    if lam > 0:
        reg = torch.full((x1.shape[1],), float(lam), dtype=torch.float64)
        reg[-1] = 0.0
        theta = torch.linalg.solve(x1.T @ x1 + torch.diag(reg), x1.T @ yt)
    else:
        theta = torch.linalg.lstsq(x1, yt).solution
    return theta[:-1].T.float().numpy(), theta[-1].float().numpy()


def check_alignment_init(init: str, d_in: int, d_out: int) -> None:
    """Raise ``ParamsError`` if ``init`` cannot map ``d_in -> d_out`` (Procrustes needs equal dims)."""
    _check_choice("alignment init", init, ALIGNMENT_INITS)
    if init == "procrustes" and d_in != d_out:
        raise ParamsError(
            f"align_init='procrustes' (orthogonal Procrustes) needs equal query and document dims, got "
            f"{d_in} -> {d_out}; use align_init='ridge' (closed-form least squares) for unequal dims"
        )


def procrustes_solution(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthogonal Procrustes ``argmin_{W orthogonal} ||X W^T - Y||_F`` (no centring, zero bias): ``(W, b)``."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise DataError(f"procrustes needs paired [n, d] arrays, got {x.shape} and {y.shape}")
    check_alignment_init("procrustes", x.shape[1], y.shape[1])
    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    # max_W <W, Y^T X> over orthogonal W is U V^T for Y^T X = U S V^T.
    u, _, vh = torch.linalg.svd(yt.T @ xt)
    w = (u @ vh).float().numpy()
    return w, np.zeros(y.shape[1], dtype=np.float32)


@torch.no_grad()
def _mean_alignment_loss(model: LinearAdapter, x: torch.Tensor, y: torch.Tensor, kind: str, bs: int) -> float:
    """Sample-weighted mean of per-batch losses (eval mode, no grad)."""
    total = 0.0
    for s in range(0, x.shape[0], bs):
        total += _alignment_loss(kind, model(x[s : s + bs]), y[s : s + bs]).item() * min(bs, x.shape[0] - s)
    return total / max(1, x.shape[0])


def train_alignment(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    cfg: AlignmentConfig | None = None,
    *,
    progress: bool = True,
) -> AlignmentResult:
    """Phase 1: fit ``normalize(W x + b) ~ y`` on identical-text pairs (§3.1)."""
    cfg = cfg or AlignmentConfig()
    cfg.validate()
    _check_pairs(x_train, y_train, "train")
    _check_pairs(x_eval, y_eval, "eval")
    check_alignment_init(cfg.init, x_train.shape[1], y_train.shape[1])
    if x_eval.shape[1] != x_train.shape[1] or y_eval.shape[1] != y_train.shape[1]:
        raise DataError(f"alignment train/eval dims differ: {x_train.shape}/{y_train.shape} vs {x_eval.shape}/{y_eval.shape}")
    start = time.time()
    dev = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = LinearAdapter(x_train.shape[1], y_train.shape[1])
    if cfg.init == "ridge":
        w, b = ridge_solution(x_train, y_train, cfg.ridge_lambda)
        model = LinearAdapter.from_weights(w, b)
    elif cfg.init == "procrustes":
        model = LinearAdapter.from_weights(*procrustes_solution(x_train, y_train))
    model = model.to(dev)
    xt, yt = _tensor(x_train, dev), _tensor(y_train, dev)
    xe, ye = _tensor(x_eval, dev), _tensor(y_eval, dev)
    bs, n = cfg.batch_size, xt.shape[0]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(cfg.seed)

    model.eval()
    train0 = _mean_alignment_loss(model, xt, yt, cfg.loss, bs)
    eval0 = _mean_alignment_loss(model, xe, ye, cfg.loss, bs)
    _check_finite(eval0, "Phase 1 (alignment) eval", 0, None)
    history = [{"epoch": 0, "train_loss": train0, "eval_loss": eval0}]
    best_loss, best_epoch, best_state, bad = eval0, 0, copy.deepcopy(model.state_dict()), 0
    stopped = False
    bar = tqdm(range(1, cfg.epochs + 1), desc="Phase 1 (alignment)", disable=not progress)
    for epoch in bar:
        model.train()
        total = 0.0
        perm = torch.randperm(n, generator=gen).to(dev)
        for step, s in enumerate(range(0, n, bs), start=1):
            idx = perm[s : s + bs]
            loss = _alignment_loss(cfg.loss, model(xt[idx]), yt[idx])
            _check_finite(loss.item(), "Phase 1 (alignment)", epoch, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * idx.shape[0]
        model.eval()
        eval_loss = _mean_alignment_loss(model, xe, ye, cfg.loss, bs)
        _check_finite(eval_loss, "Phase 1 (alignment) eval", epoch, None)
        history.append({"epoch": epoch, "train_loss": total / n, "eval_loss": eval_loss})
        bar.set_postfix(train=f"{total / n:.4f}", eval=f"{eval_loss:.4f}")
        if eval_loss < best_loss - cfg.min_delta:
            best_loss, best_epoch, bad = eval_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if cfg.early_stopping and bad >= cfg.patience:
                stopped = True
                break
    if cfg.early_stopping:
        model.load_state_dict(best_state)
    model = model.cpu().eval()
    pred = apply_adapter(model, x_eval)
    eval_cos = float(np.mean(np.sum(pred * _unit(y_eval), axis=1)))
    return AlignmentResult(
        adapter=model,
        history=history,
        best_epoch=best_epoch,
        best_eval_loss=best_loss,
        stopped_early=stopped,
        elapsed_sec=time.time() - start,
        eval_cosine=eval_cos,
        num_train=int(x_train.shape[0]),
        num_eval=int(x_eval.shape[0]),
    )


# ============================================================================ Phase 2


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
    schedule_epochs: int | None = None
    temperature: float = 0.05
    early_stopping: bool = True
    patience: int = 5
    min_delta: float = 0.0
    in_batch_negatives: bool = False
    seed: int = 42
    data_seed: int | None = None
    device: str = "cpu"

    @property
    def split_seed(self) -> int:
        """Seed of the query splits and train tuples (val tuples use ``split_seed + 1``)."""
        return self.seed if self.data_seed is None else self.data_seed

    def validate(self) -> None:
        """Raise ``ParamsError`` for out-of-range values."""
        _check_choice("negative strategy", self.strategy, STRATEGIES)
        _check_choice("schedule", self.schedule, SCHEDULES)
        for name in ("num_negatives", "top_k", "batch_size", "epochs", "patience"):
            _check_positive(f"label {name}", getattr(self, name))
        if self.schedule_epochs is not None:
            _check_positive("label schedule_epochs", self.schedule_epochs)
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


def lr_multiplier(step: int, total_steps: int, warmup_ratio: float = 0.1) -> float:
    """LambdaLR factor (§3.2.4): ``s/W`` for ``s < W``, then ``(T-s)/(T-W)``; ``W = int(ratio*T)``."""
    if total_steps <= 0:
        raise ParamsError(f"total_steps must be positive, got {total_steps}")
    warm = int(warmup_ratio * total_steps)
    if step < warm:
        return step / warm
    if total_steps == warm:
        return 1.0
    return max(0.0, (total_steps - step) / (total_steps - warm))


def _schedule_plan(cfg: LabelConfig, steps_per_epoch: int) -> tuple[Callable[[int], float], int]:
    """The per-step lr factor and the number of epochs to run for ``cfg.schedule``."""
    if cfg.schedule == "constant":
        return (lambda s: 1.0), cfg.epochs
    if cfg.schedule == "reference":
        total = steps_per_epoch * cfg.epochs  # configured epochs, even if early stopping ends sooner
        return (lambda s: lr_multiplier(s, total, cfg.warmup_ratio)), cfg.epochs
    budget = cfg.schedule_epochs or cfg.epochs
    total = steps_per_epoch * budget
    return (lambda s: lr_multiplier(s, total, cfg.warmup_ratio)), min(cfg.epochs, budget)


def query_vectors(task: TaskEmbeddings, side: str) -> np.ndarray:
    """The query vectors an adapter of ``side`` takes: ``q_large``, ``q_small`` or ``[q_large ; q_small]``."""
    _check_choice("query_side", side, QUERY_SIDES)
    if side == "large":
        return task.q_large
    if task.q_small is None:
        raise DataError(
            f"task {task.name!r} has no small-model query vectors (q_small), needed for query_side={side!r}; "
            f"embed its queries with the document model"
        )
    return task.q_small if side == "small" else fuse_queries(task.q_large, task.q_small)


def _query_dim(task: TaskEmbeddings, side: str) -> int:
    d_small = task.docs_small.shape[1]
    return {"large": task.q_large.shape[1], "small": d_small, "fused": task.q_large.shape[1] + d_small}[side]


def _default_teacher(task: TaskEmbeddings) -> np.ndarray:
    return teacher_query_vectors(task.q_large, doc_dim=task.docs_small.shape[1], q_small=task.q_small)


def prepare_label_data(
    tasks: list[TaskEmbeddings],
    cfg: LabelConfig,
    *,
    teacher: Callable[[TaskEmbeddings], np.ndarray] | None = None,
    query_side: str = "large",
) -> LabelData:
    """Split every task's queries, mine train (seed 42) and val (seed 43) tuples, and stack the vectors."""
    from era_core.splits import split_queries

    cfg.validate()
    _check_choice("query_side", query_side, QUERY_SIDES)
    if not tasks:
        raise DataError("no training tasks given")
    teacher = teacher or _default_teacher
    splits: dict[str, dict[str, list[str]]] = {}
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {"train": [], "val": []}
    all_tuples: dict[str, list[TrainingTuple]] = {"train": [], "val": []}
    offset, n_queries, n_docs = 0, 0, 0
    for task in tasks:
        task.validate()
        if task.name in splits:
            raise DataError(f"task {task.name!r} is listed twice")
        q_side = query_vectors(task, query_side)
        train, val, test = split_queries(task.qids, cfg.train_ratio, cfg.val_ratio, cfg.eval_ratio, seed=cfg.split_seed)
        splits[task.name] = {"train": list(train), "val": list(val), "test": list(test)}
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
    d_in = _query_dim(tasks[0], query_side)
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
    bs = cfg.batch_size
    steps_per_epoch = math.ceil(n / bs)
    factor, max_epochs = _schedule_plan(cfg, steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    gen = torch.Generator().manual_seed(cfg.seed)
    has_val = data.val_q.shape[0] > 0
    early = cfg.early_stopping
    if early and not has_val:
        warnings.warn("no validation tuples: early stopping disabled, keeping the last epoch", stacklevel=2)
        early = False
    tq, tp, tn, tk = (t.to(dev) for t in (data.train_q, data.train_pos, data.train_negs, data.train_pos_keys))
    history: list[dict[str, float | None]] = []
    best_loss, best_epoch, best_state, bad, stopped = math.inf, 0, None, 0, False
    bar = tqdm(range(1, max_epochs + 1), desc="Phase 2 (label)", disable=not progress)
    for epoch in bar:
        model.train()
        losses = []
        perm = torch.randperm(n, generator=gen).to(dev)
        for step, s in enumerate(range(0, n, bs), start=1):
            idx = perm[s : s + bs]
            loss = infonce_loss(model(tq[idx]), tp[idx], tn[idx], cfg.temperature, cfg.in_batch_negatives, tk[idx])
            _check_finite(loss.item(), "Phase 2 (label)", epoch, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise TrainingError(
                f"Phase 2 (label): adapter weights became NaN/inf at epoch {epoch}, step {steps_per_epoch}; "
                f"lower the learning rate; no weights were written"
            )
        model.eval()
        val = _val_loss(model, data, cfg, dev) if has_val else None
        if val is not None:
            _check_finite(val, "Phase 2 (label) validation", epoch, None)
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
    if not has_val:
        best_epoch = len(history)
    return LabelResult(
        adapter=model.cpu().eval(),
        history=history,
        best_epoch=best_epoch,
        best_val_loss=None if not has_val else best_loss,
        stopped_early=stopped,
        elapsed_sec=time.time() - start,
        num_pairs=int(n),
        num_val_pairs=int(data.val_q.shape[0]),
    )


# ============================================================================ modes


@dataclass
class EraResult:
    """Result of ``train_era``: final adapter, per-phase results, query splits and ``era_meta`` content."""

    adapter: LinearAdapter
    mode: str
    alignment: AlignmentResult | None
    label: LabelResult | None
    splits: dict[str, dict[str, list[str]]]
    meta: dict[str, Any]


def _compute_splits(tasks: list[TaskEmbeddings], cfg: LabelConfig) -> dict[str, dict[str, list[str]]]:
    from era_core.splits import split_queries

    out = {}
    for task in tasks:
        task.validate()
        train, val, test = split_queries(task.qids, cfg.train_ratio, cfg.val_ratio, cfg.eval_ratio, seed=cfg.split_seed)
        out[task.name] = {"train": list(train), "val": list(val), "test": list(test)}
    return out


def _phase2_start(
    mode: str,
    tasks: list[TaskEmbeddings],
    phase1: LinearAdapter | None,
    alignment_adapter: LinearAdapter | None,
    label_cfg: LabelConfig,
    d_in: int,
    d_out: int,
    mlp_hidden: int | None,
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
            _check_adapter_dims(alignment_adapter, d_in, d_out, "alignment_adapter")
            init = copy.deepcopy(alignment_adapter)
            frozen = copy.deepcopy(alignment_adapter).eval()
            teacher = lambda t: teacher_query_vectors(t.q_large, doc_dim=d_out, alignment_adapter=frozen)  # noqa: E731
        else:
            init = LinearAdapter(d_in, d_out)
            teacher = _default_teacher
        side = "large"
    elif mode == "residual_mlp":
        # ERA with a non-linear head: Phase 1's linear map plus a zero-output MLP; mined like ERA.
        torch.manual_seed(label_cfg.seed)
        init = ResidualMLPAdapter.from_linear(phase1, mlp_hidden or d_out)
        frozen = phase1
        teacher = lambda t: teacher_query_vectors(t.q_large, doc_dim=d_out, alignment_adapter=frozen)  # noqa: E731
        side = "large"
    else:  # small_adapter, fused: both start as the identity on q_small and mine with q_small
        missing = [t.name for t in tasks if t.q_small is None]
        if missing:
            raise DataError(f"mode {mode!r} needs small-model query vectors (q_small); missing for {missing}")
        init = LinearAdapter.identity(d_out) if mode == "small_adapter" else FusedAdapter.control_init(d_in, d_out)
        teacher = lambda t: teacher_query_vectors(t.q_small, doc_dim=d_out, q_small=t.q_small)  # noqa: E731
        side = MODE_QUERY_SIDE[mode]
    return init, teacher, side


def train_era(
    tasks: list[TaskEmbeddings],
    mode: str,
    *,
    align_cfg: AlignmentConfig | None = None,
    label_cfg: LabelConfig | None = None,
    align_pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    alignment_adapter: LinearAdapter | None = None,
    mlp_hidden: int | None = None,
    progress: bool = True,
) -> EraResult:
    """Train an adapter in ``mode`` (``MODES``): ``both`` (ERA), ``label_only``, ``alignment_only`` or one of ours.

    Ours: ``small_adapter`` (same-model control), ``fused`` (``[q_large ; q_small]`` -> small space,
    starting as the control) and ``residual_mlp`` (ERA with a zero-initialised residual MLP head).

    ``align_pairs`` = ``(x_train, y_train, x_eval, y_eval)`` for Phase 1; ``alignment_adapter``
    reuses a finished Phase 1 instead (e.g. across a train-ratio sweep). Pass one of them in
    modes ``both``, ``alignment_only`` and ``residual_mlp``. ``mlp_hidden`` is the residual MLP's
    width (default: the document dim); other modes reject it.
    """
    _check_choice("training mode", mode, MODES)
    if mlp_hidden is not None and (mode != "residual_mlp" or mlp_hidden < 1):
        raise ParamsError(
            f"mlp_hidden must be a positive width and is only for mode 'residual_mlp'; got {mlp_hidden} in mode {mode!r}"
        )
    align_cfg = align_cfg or AlignmentConfig()
    label_cfg = label_cfg or LabelConfig()
    label_cfg.validate()
    if not tasks:
        raise DataError("train_era needs at least one task")
    for t in tasks:
        t.validate()
    d_in, d_out = tasks[0].q_large.shape[1], tasks[0].docs_small.shape[1]
    bad = [t.name for t in tasks if (t.q_large.shape[1], t.docs_small.shape[1]) != (d_in, d_out)]
    if bad:
        raise DataError(f"tasks {bad} have other dims than {tasks[0].name!r} ({d_in} -> {d_out})")
    start = time.time()

    alignment: AlignmentResult | None = None
    align_meta: dict[str, Any] | None = None
    phase1: LinearAdapter | None = None
    if mode in ("both", "alignment_only", "residual_mlp"):
        if (align_pairs is None) == (alignment_adapter is None):
            raise ParamsError(
                f"mode {mode!r} needs exactly one of align_pairs (to run Phase 1) or alignment_adapter (to reuse it); "
                f"got {'both' if align_pairs is not None else 'neither'}"
            )
        if alignment_adapter is not None:
            _check_adapter_dims(alignment_adapter, d_in, d_out, "alignment_adapter")
            phase1 = copy.deepcopy(alignment_adapter).eval()
            align_meta = {"reused": True}
        else:
            if align_pairs[0].shape[1] != d_in or align_pairs[1].shape[1] != d_out:
                raise DataError(
                    f"alignment pairs map {align_pairs[0].shape[1]} -> {align_pairs[1].shape[1]} but the tasks need "
                    f"{d_in} -> {d_out}"
                )
            alignment = train_alignment(*align_pairs, align_cfg, progress=progress)
            phase1 = alignment.adapter
            align_meta = alignment.summary()
    elif alignment_adapter is not None and mode in ("small_adapter", "fused"):
        raise ParamsError(
            f"mode {mode!r} starts from the identity map on the small query vectors; do not pass alignment_adapter"
        )
    elif align_pairs is not None:
        raise ParamsError(f"mode {mode!r} has no Phase 1; do not pass align_pairs")

    label: LabelResult | None = None
    if mode == "alignment_only":
        splits = _compute_splits(tasks, label_cfg)
        final = phase1
    else:
        init, teacher, side = _phase2_start(mode, tasks, phase1, alignment_adapter, label_cfg, d_in, d_out, mlp_hidden)
        data = prepare_label_data(tasks, label_cfg, teacher=teacher, query_side=side)
        splits = data.splits
        label = train_label(init, data, label_cfg, progress=progress)
        final = label.adapter

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
    elif mode == "residual_mlp":
        meta["mlp_hidden"] = final.hidden_dim
    return EraResult(adapter=final, mode=mode, alignment=alignment, label=label, splits=splits, meta=meta)


# ============================================================================ helpers


def _check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ParamsError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")


def _check_positive(what: str, value: int) -> None:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ParamsError(f"{what} must be a positive integer, got {value!r}")


def _check_finite(value: float, phase: str, epoch: int, step: int | None) -> None:
    if not math.isfinite(value):
        where = f"epoch {epoch}, step {step}" if step is not None else f"the end of epoch {epoch}"
        raise TrainingError(
            f"{phase} loss is {value} at {where}; lower the learning rate or check the "
            f"embeddings for NaN/inf. No weights were written."
        )


def _check_pairs(x: np.ndarray, y: np.ndarray, kind: str) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise DataError(f"alignment {kind} pairs must be [n, d_in] and [n, d_out]; got {x.shape} and {y.shape}")
    if x.shape[0] == 0:
        raise DataError(f"alignment {kind} set is empty; sample more documents")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DataError(f"alignment {kind} pairs contain NaN/inf; rebuild the embedding cache")


def _check_adapter_dims(adapter: LinearAdapter, d_in: int, d_out: int, what: str) -> None:
    if (adapter.in_dim, adapter.out_dim) != (d_in, d_out):
        raise ParamsError(f"{what} maps {adapter.in_dim} -> {adapter.out_dim}, but the tasks need {d_in} -> {d_out}")


def _tensor(x: np.ndarray, dev: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
