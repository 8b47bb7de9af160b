"""The adapter modules: ``LinearAdapter`` (ERA's), ``FusedAdapter`` (ours), and applying one."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from era_core.errors import DataError, ParamsError


class _Projection(nn.Module):
    """An adapter whose ``proj`` Linear layer fixes its input and output dimensions."""

    proj: nn.Linear

    @property
    def in_dim(self) -> int:
        """Input (query encoder) dimension."""
        return self.proj.in_features

    @property
    def out_dim(self) -> int:
        """Output (document encoder) dimension."""
        return self.proj.out_features


class LinearAdapter(_Projection):
    """``normalize(W x + b)``: the ERA query adapter (§2)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if int(in_dim) <= 0 or int(out_dim) <= 0:
            raise ParamsError(f"adapter dims must be positive, got in_dim={in_dim}, out_dim={out_dim}")
        # Default nn.Linear init (Kaiming-uniform a=sqrt(5), bias U(+-1/sqrt(in))); the caller
        # seeds torch beforehand so the init is reproducible.
        self.proj = nn.Linear(int(in_dim), int(out_dim), bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` ([..., in_dim]) to unit vectors ([..., out_dim])."""
        return F.normalize(self.proj(x), p=2, dim=-1, eps=1e-12)

    @classmethod
    def identity(cls, dim: int) -> "LinearAdapter":
        """An adapter that starts as the identity map with zero bias (same-model control)."""
        adapter = cls(dim, dim)
        with torch.no_grad():
            adapter.proj.weight.copy_(torch.eye(dim))
            adapter.proj.bias.zero_()
        return adapter

    @classmethod
    def from_weights(cls, weight: np.ndarray | torch.Tensor, bias: np.ndarray | torch.Tensor) -> "LinearAdapter":
        """Build an adapter from ``W`` [out, in] and ``b`` [out]."""
        w = torch.as_tensor(np.asarray(weight) if not torch.is_tensor(weight) else weight).detach().float()
        b = torch.as_tensor(np.asarray(bias) if not torch.is_tensor(bias) else bias).detach().float()
        if w.ndim != 2 or b.ndim != 1 or b.shape[0] != w.shape[0]:
            raise DataError(
                f"adapter weights must be proj.weight [out, in] and proj.bias [out]; got weight "
                f"{tuple(w.shape)} and bias {tuple(b.shape)}"
            )
        adapter = cls(w.shape[1], w.shape[0])
        with torch.no_grad():
            adapter.proj.weight.copy_(w)
            adapter.proj.bias.copy_(b)
        return adapter


class FusedAdapter(LinearAdapter):
    """``normalize(W [x_large ; x_small] + b)``: the ``fused`` method's adapter (ours, not the paper's).

    The input is the concatenation built by ``fuse_queries``; the output lives in the small
    (document) space, so ``out_dim == small_dim``. ``control_init`` starts it at zero on the large
    block and the identity on the small block: exactly the same-model control before training.
    """

    def __init__(self, large_dim: int, small_dim: int) -> None:
        if int(large_dim) <= 0 or int(small_dim) <= 0:
            raise ParamsError(f"fused adapter dims must be positive, got large_dim={large_dim}, small_dim={small_dim}")
        super().__init__(int(large_dim) + int(small_dim), int(small_dim))
        self.large_dim = int(large_dim)
        self.small_dim = int(small_dim)

    @classmethod
    def control_init(cls, large_dim: int, small_dim: int) -> "FusedAdapter":
        """Zero on the large block, identity on the small block, zero bias (= ``LinearAdapter.identity``)."""
        adapter = cls(large_dim, small_dim)
        with torch.no_grad():
            adapter.proj.weight.zero_()
            adapter.proj.weight[:, adapter.large_dim :].copy_(torch.eye(adapter.small_dim))
            adapter.proj.bias.zero_()
        return adapter

    @classmethod
    def identity(cls, dim: int) -> "FusedAdapter":
        """Not defined for a fused adapter; use ``control_init(large_dim, small_dim)``."""
        raise ParamsError("FusedAdapter has no identity(dim); use FusedAdapter.control_init(large_dim, small_dim)")

    @classmethod
    def from_weights(  # type: ignore[override]
        cls, weight: np.ndarray | torch.Tensor, bias: np.ndarray | torch.Tensor, *, large_dim: int
    ) -> "FusedAdapter":
        """Build from ``W`` [small, large + small] and ``b`` [small]; ``large_dim`` splits the input."""
        linear = LinearAdapter.from_weights(weight, bias)
        small = linear.in_dim - int(large_dim)
        if small != linear.out_dim:
            raise DataError(
                f"fused adapter weight {(linear.out_dim, linear.in_dim)} does not fit large_dim={large_dim}: "
                f"expected [small, large + small] with small = out_dim = {linear.out_dim}"
            )
        adapter = cls(int(large_dim), small)
        adapter.load_state_dict(linear.state_dict())
        return adapter

    def blocks(self) -> tuple[np.ndarray, np.ndarray]:
        """The weight's ``(large block [small, large], small block [small, small])`` as float32 arrays."""
        w = self.proj.weight.detach().cpu().float().numpy()
        return w[:, : self.large_dim].copy(), w[:, self.large_dim :].copy()


def fuse_queries(q_large: np.ndarray, q_small: np.ndarray, adapter: FusedAdapter | None = None) -> np.ndarray:
    """The fused adapter's input ``[q_large ; q_small]`` (float32), checked against ``adapter``'s dims if given."""
    q_large, q_small = np.asarray(q_large), np.asarray(q_small)
    if q_large.ndim != 2 or q_small.ndim != 2 or q_large.shape[0] != q_small.shape[0]:
        raise DataError(
            f"fuse_queries needs [n, large_dim] and [n, small_dim] query vectors of the same queries, got "
            f"{q_large.shape} and {q_small.shape}; encode the same queries with both encoders"
        )
    if adapter is not None and (q_large.shape[1], q_small.shape[1]) != (adapter.large_dim, adapter.small_dim):
        raise ParamsError(
            f"fused adapter expects large {adapter.large_dim}-d and small {adapter.small_dim}-d query vectors, got "
            f"{q_large.shape[1]}-d and {q_small.shape[1]}-d; use the encoders it was trained with, in that order"
        )
    return np.concatenate([q_large, q_small], axis=1).astype(np.float32, copy=False)


def apply_adapter(adapter: LinearAdapter, x: np.ndarray, chunk: int = 4096, device: str = "cpu") -> np.ndarray:
    """Push rows of ``x`` through ``adapter`` in chunks; returns float32 unit rows."""
    x = np.asarray(x)
    if isinstance(adapter, FusedAdapter) and (x.ndim != 2 or x.shape[1] != adapter.in_dim):
        raise ParamsError(
            f"the fused adapter expects [n, {adapter.in_dim}] = [q_large ({adapter.large_dim}) ; q_small "
            f"({adapter.small_dim})], got {x.shape}; build its input with fuse_queries(q_large, q_small)"
        )
    if x.ndim != 2 or x.shape[1] != adapter.in_dim:
        raise ParamsError(
            f"apply_adapter expects an array of shape [n, {adapter.in_dim}] (the adapter's in_dim), "
            f"got {x.shape}; use the query encoder the adapter was trained for"
        )
    if chunk <= 0:
        raise ParamsError(f"chunk must be positive, got {chunk}")
    out = np.empty((x.shape[0], adapter.out_dim), dtype=np.float32)
    was_training = adapter.training
    adapter.eval()
    param = next(adapter.parameters())
    moved = param.device != torch.device(device)
    model = adapter.to(device) if moved else adapter
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], chunk):
                xb = torch.from_numpy(np.ascontiguousarray(x[start : start + chunk], dtype=np.float32)).to(device)
                out[start : start + chunk] = model(xb).cpu().numpy()
    finally:
        if moved:
            adapter.to(param.device)
        adapter.train(was_training)
    return out
