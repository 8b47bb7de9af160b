"""Phase 2's learning-rate schedule (§3.2.4): the reference's LambdaLR, and a constant lr."""

from __future__ import annotations

from typing import Callable, Protocol

from era_core.errors import ParamsError



class ScheduleConfig(Protocol):
    """The fields of ``LabelConfig`` that decide the schedule."""

    schedule: str
    epochs: int
    warmup_ratio: float


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


def schedule_plan(cfg: ScheduleConfig, steps_per_epoch: int) -> tuple[Callable[[int], float], int]:
    """The per-step lr factor and the number of epochs to run for ``cfg.schedule``."""
    if cfg.schedule == "constant":
        return (lambda s: 1.0), cfg.epochs
    total = steps_per_epoch * cfg.epochs  # configured epochs, even if early stopping ends sooner
    return (lambda s: lr_multiplier(s, total, cfg.warmup_ratio)), cfg.epochs
