"""Argument and data checks shared by both training phases; each error says what to change."""

from __future__ import annotations

import math

import numpy as np
import torch

from era_core.errors import DataError, ParamsError, TrainingError


def check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise ``ParamsError`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ParamsError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")


def check_positive(what: str, value: int) -> None:
    """Raise ``ParamsError`` unless ``value`` is a positive integer."""
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ParamsError(f"{what} must be a positive integer, got {value!r}")


def check_finite(value: float, phase: str, epoch: int, step: int | None) -> None:
    """Raise ``TrainingError`` for a NaN/inf loss, naming the phase, epoch and step."""
    if not math.isfinite(value):
        where = f"epoch {epoch}, step {step}" if step is not None else f"the end of epoch {epoch}"
        raise TrainingError(
            f"{phase} loss is {value} at {where}; lower the learning rate or check the "
            f"embeddings for NaN/inf. No weights were written."
        )


def check_pairs(x: np.ndarray, y: np.ndarray, kind: str) -> None:
    """Raise ``DataError`` unless ``x``/``y`` are non-empty, finite, row-paired matrices."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise DataError(f"alignment {kind} pairs must be [n, d_in] and [n, d_out]; got {x.shape} and {y.shape}")
    if x.shape[0] == 0:
        raise DataError(f"alignment {kind} set is empty; sample more documents")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DataError(f"alignment {kind} pairs contain NaN/inf; rebuild the embedding cache")


def check_adapter_dims(adapter: torch.nn.Module, d_in: int, d_out: int, what: str) -> None:
    """Raise ``ParamsError`` unless ``adapter`` maps ``d_in -> d_out``."""
    if (adapter.in_dim, adapter.out_dim) != (d_in, d_out):
        raise ParamsError(f"{what} maps {adapter.in_dim} -> {adapter.out_dim}, but the tasks need {d_in} -> {d_out}")


def as_tensor(x: np.ndarray, dev: torch.device) -> torch.Tensor:
    """A contiguous float32 tensor of ``x`` on ``dev``."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
