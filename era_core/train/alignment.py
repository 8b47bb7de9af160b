"""Phase 1 (§3.1): identical-text alignment of the large query model onto the small document model.

``alignment_sample`` picks <= 1000 corpus docs per task (the caller embeds only those with the
large model), ``alignment_holdout`` splits the pooled pairs 90/10, and ``train_alignment`` fits
``A(x_large) ~ y_small`` with a cosine (or MSE / smooth-L1) loss, from the random init or from a
closed form (ridge; orthogonal Procrustes for equal dims).
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from era_core.adapter import LinearAdapter, apply_adapter
from era_core.errors import DataError, ParamsError
from era_core.methods import ALIGNMENT_INITS, ALIGNMENT_LOSSES, CLOSED_FORM_INITS
from era_core.train.checks import as_tensor, check_choice, check_finite, check_pairs, check_positive, unit_rows



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
        check_choice("alignment loss", self.loss, ALIGNMENT_LOSSES)
        check_choice("alignment init", self.init, ALIGNMENT_INITS)
        check_positive("alignment batch_size", self.batch_size)
        check_positive("alignment samples_per_task", self.samples_per_task)
        check_positive("alignment patience", self.patience)
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
    check_choice("alignment init", init, ALIGNMENT_INITS)
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



def _initial_adapter(cfg: AlignmentConfig, x_train: np.ndarray, y_train: np.ndarray) -> LinearAdapter:
    """Phase 1's starting map: seeded random init, or a closed form fitted on the training pairs."""
    torch.manual_seed(cfg.seed)
    model = LinearAdapter(x_train.shape[1], y_train.shape[1])  # drawn even for a closed form: same torch RNG use
    if cfg.init == "ridge":
        w, b = ridge_solution(x_train, y_train, cfg.ridge_lambda)
        model = LinearAdapter.from_weights(w, b)
    elif cfg.init == "procrustes":
        model = LinearAdapter.from_weights(*procrustes_solution(x_train, y_train))
    return model


def _alignment_epoch(model: LinearAdapter, opt: torch.optim.Optimizer, xt: torch.Tensor, yt: torch.Tensor,
                     perm: torch.Tensor, cfg: AlignmentConfig, epoch: int) -> float:
    """One pass over the shuffled training pairs; returns the sample-weighted mean training loss."""
    model.train()
    bs, n, total = cfg.batch_size, xt.shape[0], 0.0
    for step, s in enumerate(range(0, n, bs), start=1):
        idx = perm[s : s + bs]
        loss = _alignment_loss(cfg.loss, model(xt[idx]), yt[idx])
        check_finite(loss.item(), "Phase 1 (alignment)", epoch, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * idx.shape[0]
    return total / n


def _check_alignment_inputs(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
                            cfg: AlignmentConfig) -> None:
    cfg.validate()
    check_pairs(x_train, y_train, "train")
    check_pairs(x_eval, y_eval, "eval")
    check_alignment_init(cfg.init, x_train.shape[1], y_train.shape[1])
    if x_eval.shape[1] != x_train.shape[1] or y_eval.shape[1] != y_train.shape[1]:
        raise DataError(f"alignment train/eval dims differ: {x_train.shape}/{y_train.shape} vs {x_eval.shape}/{y_eval.shape}")


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
    _check_alignment_inputs(x_train, y_train, x_eval, y_eval, cfg)
    start = time.time()
    dev = torch.device(cfg.device)
    model = _initial_adapter(cfg, x_train, y_train).to(dev)
    xt, yt = as_tensor(x_train, dev), as_tensor(y_train, dev)
    xe, ye = as_tensor(x_eval, dev), as_tensor(y_eval, dev)
    bs, n = cfg.batch_size, xt.shape[0]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(cfg.seed)

    model.eval()
    train0 = _mean_alignment_loss(model, xt, yt, cfg.loss, bs)
    eval0 = _mean_alignment_loss(model, xe, ye, cfg.loss, bs)
    check_finite(eval0, "Phase 1 (alignment) eval", 0, None)
    history = [{"epoch": 0, "train_loss": train0, "eval_loss": eval0}]
    best_loss, best_epoch, best_state, bad = eval0, 0, copy.deepcopy(model.state_dict()), 0
    stopped = False
    bar = tqdm(range(1, cfg.epochs + 1), desc="Phase 1 (alignment)", disable=not progress)
    for epoch in bar:
        perm = torch.randperm(n, generator=gen).to(dev)
        train_loss = _alignment_epoch(model, opt, xt, yt, perm, cfg, epoch)
        model.eval()
        eval_loss = _mean_alignment_loss(model, xe, ye, cfg.loss, bs)
        check_finite(eval_loss, "Phase 1 (alignment) eval", epoch, None)
        history.append({"epoch": epoch, "train_loss": train_loss, "eval_loss": eval_loss})
        bar.set_postfix(train=f"{train_loss:.4f}", eval=f"{eval_loss:.4f}")
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
    eval_cos = float(np.mean(np.sum(apply_adapter(model, x_eval) * unit_rows(y_eval), axis=1)))
    return AlignmentResult(
        adapter=model, history=history, best_epoch=best_epoch, best_eval_loss=best_loss, stopped_early=stopped,
        elapsed_sec=time.time() - start, eval_cosine=eval_cos, num_train=int(x_train.shape[0]),
        num_eval=int(x_eval.shape[0]),
    )  # fmt: skip
