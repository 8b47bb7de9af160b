"""The ERA adapter: one affine layer followed by L2 normalisation, plus its file formats.

The adapter maps a query vector of the query-side (large) encoder into the document-side
(small) encoder's space (ERA_METHOD.md §2): ``y = normalize(W x + b)`` with ``proj.weight``
of shape ``[out_dim, in_dim]`` and ``proj.bias`` of shape ``[out_dim]``. Documents are never
adapted.

Files:
- ``.safetensors`` (our format): tensors ``proj.weight`` and ``proj.bias``, string metadata.
- ``.pt`` (the reference release): a plain ``state_dict`` with exactly those two keys. It is
  read with ``torch.load(weights_only=True)``, so no pickled code is ever executed.

Deviations from the reference
- ``apply_adapter`` normalises once (the reference normalises a second time, a no-op) and
  never wraps the layer in ``DataParallel``; the chunk size is fixed by the caller.
- ``LinearAdapter.identity`` is our addition for the same-model ``small_adapter`` control.

Our extensions (new methods; the faithful ``LinearAdapter`` path and its file bytes are unchanged)
- ``FusedAdapter``: a ``LinearAdapter`` on ``fuse_queries(q_large, q_small)`` = ``[q_large ; q_small]``,
  mapping into the small space; ``control_init`` = zero on the large block, identity on the small
  block, i.e. the ``small_adapter`` start. Its file has the same two tensors plus metadata
  ``adapter_type=fused``, ``large_dim``, ``small_dim`` (``load_fused_adapter``).
- ``ResidualMLPAdapter``: ``normalize(W x + b + MLP(x))`` with a zero-initialised MLP output
  layer; metadata ``adapter_type=residual_mlp``, ``hidden_dim`` (``load_residual_mlp_adapter``).
- ``load_any_adapter`` dispatches on ``adapter_type`` (absent: linear).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from era_core.errors import DataError, ModelUnavailableError, ParamsError
from era_core.io import atomic_write_bytes, write_json

ADAPTER_KEYS = ("proj.bias", "proj.weight")
ADAPTER_SUFFIXES = (".safetensors", ".pt")


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


class ResidualMLPAdapter(_Projection):
    """``normalize(W x + b + MLP(x))`` (Drift-Adapter's residual MLP; ours, not the paper's).

    MLP = Linear(in, hidden) -> GELU -> Linear(hidden, out) with the last layer zero-initialised,
    so a fresh adapter computes exactly its linear part.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int) -> None:
        super().__init__()
        if min(int(in_dim), int(out_dim), int(hidden_dim)) <= 0:
            raise ParamsError(f"adapter dims must be positive, got in={in_dim}, out={out_dim}, hidden={hidden_dim}")
        self.proj = nn.Linear(int(in_dim), int(out_dim), bias=True)
        self.mlp = nn.Sequential(nn.Linear(int(in_dim), int(hidden_dim)), nn.GELU(), nn.Linear(int(hidden_dim), int(out_dim)))
        with torch.no_grad():
            self.mlp[2].weight.zero_()
            self.mlp[2].bias.zero_()

    @property
    def hidden_dim(self) -> int:
        """Width of the MLP's hidden layer."""
        return self.mlp[0].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` ([..., in_dim]) to unit vectors ([..., out_dim])."""
        return F.normalize(self.proj(x) + self.mlp(x), p=2, dim=-1, eps=1e-12)

    @classmethod
    def from_linear(cls, linear: LinearAdapter, hidden_dim: int) -> "ResidualMLPAdapter":
        """Start from ``linear``'s weights (e.g. Phase 1) with a fresh, zero-output MLP (torch RNG for its first layer)."""
        adapter = cls(linear.in_dim, linear.out_dim, hidden_dim)
        with torch.no_grad():
            adapter.proj.weight.copy_(linear.proj.weight)
            adapter.proj.bias.copy_(linear.proj.bias)
        return adapter


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


# ----------------------------------------------------------------------------- file I/O


def _stringify_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """safetensors metadata must be ``str -> str``; non-strings are stored as JSON."""
    out: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        out[str(key)] = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return out


def _canonical_safetensors(blob: bytes) -> bytes:
    """Rewrite a safetensors header with sorted keys, so equal weights and metadata give equal bytes.

    The safetensors writer orders ``__metadata__`` through a hash map, which differs from call to
    call; the data section (offsets are relative to it) is left untouched.
    """
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # keep the data section 8-byte aligned, as the writer does
    return len(text).to_bytes(8, "little") + text + blob[8 + n :]


def save_adapter(adapter: LinearAdapter, path: Path | str, metadata: Mapping[str, Any] | None = None) -> Path:
    """Atomically write ``adapter`` as ``.safetensors`` (``proj.weight``, ``proj.bias``) with string metadata.

    The file is byte-reproducible: the same weights and metadata always give the same bytes.
    """
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ParamsError(f"save_adapter writes .safetensors files only, got {path.name!r}; rename it to *.safetensors")
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in adapter.state_dict().items()}
    meta = _stringify_metadata(metadata)
    meta.setdefault("in_dim", str(adapter.in_dim))
    meta.setdefault("out_dim", str(adapter.out_dim))
    for key, value in _type_metadata(adapter).items():
        meta.setdefault(key, value)
    return atomic_write_bytes(path, _canonical_safetensors(save(tensors, metadata=meta)))


def _type_metadata(adapter: nn.Module) -> dict[str, str]:
    """What ``load_any_adapter`` needs to rebuild a non-linear or fused adapter (nothing for ``LinearAdapter``)."""
    if isinstance(adapter, FusedAdapter):
        return {"adapter_type": "fused", "large_dim": str(adapter.large_dim), "small_dim": str(adapter.small_dim)}
    if isinstance(adapter, ResidualMLPAdapter):
        return {"adapter_type": "residual_mlp", "hidden_dim": str(adapter.hidden_dim)}
    return {}


def _read_state_dict(path: Path) -> Mapping[str, Any]:
    """Read the raw tensors of an adapter file, turning every failure into a clear error."""
    if not path.exists():
        raise ModelUnavailableError(f"adapter file not found: {path}; train one or pass the right path")
    if not path.is_file():
        raise DataError(f"adapter path is not a file: {path}")
    suffix = path.suffix
    if suffix not in ADAPTER_SUFFIXES:
        raise ParamsError(f"unknown adapter file type {suffix!r} for {path}; allowed: {', '.join(ADAPTER_SUFFIXES)}")
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise DataError(f"cannot read adapter {path} as safetensors ({type(exc).__name__}: {exc})") from exc
    try:
        # weights_only: tensors and plain containers only, so a malicious pickle cannot run code.
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(
            f"cannot read adapter {path} as a plain PyTorch state dict ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); expected a dict with exactly "
            f"{list(ADAPTER_KEYS)} saved by torch.save(adapter.state_dict())"
        ) from exc
    if not isinstance(obj, Mapping):
        raise DataError(
            f"adapter {path} holds a {type(obj).__name__}, not a state dict; expected a dict with "
            f"exactly {list(ADAPTER_KEYS)}"
        )
    return obj


def load_adapter(
    path: Path | str, *, expected_in_dim: int | None = None, expected_out_dim: int | None = None
) -> LinearAdapter:
    """Load a ``.safetensors`` or reference ``.pt`` adapter, checking keys and shapes."""
    path = Path(path)
    state = _read_state_dict(path)
    keys = sorted(str(k) for k in state.keys())
    if keys != list(ADAPTER_KEYS):
        raise DataError(f"adapter {path} has keys {keys}; expected exactly {list(ADAPTER_KEYS)}")
    weight, bias = state["proj.weight"], state["proj.bias"]
    if not (torch.is_tensor(weight) and torch.is_tensor(bias)):
        raise DataError(
            f"adapter {path}: proj.weight and proj.bias must be tensors, got "
            f"{type(weight).__name__} and {type(bias).__name__}"
        )
    if weight.ndim != 2 or bias.ndim != 1 or bias.shape[0] != weight.shape[0]:
        raise DataError(
            f"adapter {path}: expected proj.weight [out, in] and proj.bias [out], got "
            f"{tuple(weight.shape)} and {tuple(bias.shape)}"
        )
    if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
        raise DataError(
            f"adapter {path} holds NaN/inf in proj.weight or proj.bias; it would map every query to NaN. "
            "The file is damaged or came from a diverged run: retrain it"
        )
    out_dim, in_dim = int(weight.shape[0]), int(weight.shape[1])
    if (expected_in_dim is not None and in_dim != expected_in_dim) or (
        expected_out_dim is not None and out_dim != expected_out_dim
    ):
        raise ParamsError(
            f"adapter {path} maps {in_dim} -> {out_dim} (proj.weight {tuple(weight.shape)}), but the encoders "
            f"need {expected_in_dim} -> {expected_out_dim} (proj.weight ({expected_out_dim}, {expected_in_dim})); "
            f"use the adapter trained for this query/document encoder pair"
        )
    return LinearAdapter.from_weights(weight, bias)


def _metadata_int(path: Path, meta: Mapping[str, str], key: str) -> int:
    try:
        return int(meta[key])
    except (KeyError, ValueError) as exc:
        raise DataError(f"adapter {path}: metadata {key!r} is missing or not an integer ({meta.get(key)!r})") from exc


def load_fused_adapter(
    path: Path | str, *, expected_large_dim: int | None = None, expected_small_dim: int | None = None
) -> FusedAdapter:
    """Load a ``fused`` adapter written by ``save_adapter`` (its metadata records the two input dims)."""
    path = Path(path)
    meta = read_adapter_metadata(path)
    if meta.get("adapter_type") != "fused":
        raise DataError(f"adapter {path} is a {meta.get('adapter_type', 'linear')!r} adapter, not 'fused'")
    large, small = _metadata_int(path, meta, "large_dim"), _metadata_int(path, meta, "small_dim")
    if (expected_large_dim is not None and large != expected_large_dim) or (
        expected_small_dim is not None and small != expected_small_dim
    ):
        raise ParamsError(
            f"fused adapter {path} takes large {large}-d + small {small}-d query vectors, but the encoders give "
            f"{expected_large_dim} + {expected_small_dim}; use the adapter trained for this encoder pair"
        )
    linear = load_adapter(path, expected_in_dim=large + small, expected_out_dim=small)
    return FusedAdapter.from_weights(linear.proj.weight, linear.proj.bias, large_dim=large)


def load_residual_mlp_adapter(
    path: Path | str, *, expected_in_dim: int | None = None, expected_out_dim: int | None = None
) -> ResidualMLPAdapter:
    """Load a ``residual_mlp`` adapter written by ``save_adapter``, checking keys, shapes and finiteness."""
    path = Path(path)
    meta = read_adapter_metadata(path)
    if meta.get("adapter_type") != "residual_mlp":
        raise DataError(f"adapter {path} is a {meta.get('adapter_type', 'linear')!r} adapter, not 'residual_mlp'")
    state = _read_state_dict(path)
    w = state.get("proj.weight")
    if not torch.is_tensor(w) or w.ndim != 2:
        raise DataError(f"adapter {path} lacks a 2-d proj.weight; keys: {sorted(state)}")
    out_dim, in_dim = int(w.shape[0]), int(w.shape[1])
    if (expected_in_dim is not None and in_dim != expected_in_dim) or (
        expected_out_dim is not None and out_dim != expected_out_dim
    ):
        raise ParamsError(
            f"adapter {path} maps {in_dim} -> {out_dim}, but the encoders need {expected_in_dim} -> "
            f"{expected_out_dim}; use the adapter trained for this query/document encoder pair"
        )
    adapter = ResidualMLPAdapter(in_dim, out_dim, _metadata_int(path, meta, "hidden_dim"))
    expected = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items() if torch.is_tensor(v)}
    if got != expected:
        raise DataError(f"adapter {path} has tensors {got}; a residual_mlp adapter needs {expected}")
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise DataError(f"adapter {path} holds NaN/inf weights; the file is damaged or came from a diverged run")
    adapter.load_state_dict(dict(state))
    return adapter.eval()


def load_any_adapter(path: Path | str) -> nn.Module:
    """Load a linear, ``fused`` or ``residual_mlp`` adapter, dispatching on its ``adapter_type`` metadata."""
    path = Path(path)
    kind = read_adapter_metadata(path).get("adapter_type", "linear") if path.suffix == ".safetensors" else "linear"
    if kind == "fused":
        return load_fused_adapter(path)
    if kind == "residual_mlp":
        return load_residual_mlp_adapter(path)
    if kind != "linear":
        raise DataError(f"adapter {path} has unknown adapter_type {kind!r}; allowed: linear, fused, residual_mlp")
    return load_adapter(path)


def read_adapter_metadata(path: Path | str) -> dict[str, str]:
    """The string metadata stored in a ``.safetensors`` adapter (empty for none)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise ModelUnavailableError(f"adapter file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:
        raise DataError(f"cannot read safetensors metadata of {path} ({type(exc).__name__}: {exc})") from exc


# ----------------------------------------------------------------------------- query encoder


class AdaptedQueryEncoder:
    """Query encoder + adapter: encodes raw queries straight into the document model's space.

    A ``FusedAdapter`` also needs ``small_query_encoder`` (the small model, encoding the same
    queries with its own query template); its input is ``fuse_queries(large, small)``.
    """

    def __init__(
        self,
        query_encoder: Any,
        adapter: LinearAdapter,
        instruction: str | None = None,
        doc_model: str | None = None,
        small_query_encoder: Any = None,
    ) -> None:
        fused = isinstance(adapter, FusedAdapter)
        if fused != (small_query_encoder is not None):
            raise ParamsError(
                "a fused adapter needs small_query_encoder (the small model encodes the query too); "
                "other adapters take the query encoder only"
            )
        pairs = [(query_encoder, adapter.large_dim if fused else adapter.in_dim, "in_dim")]
        if fused:
            pairs.append((small_query_encoder, adapter.small_dim, "small_dim"))
        for encoder, expected, what in pairs:
            enc_dim = getattr(encoder, "dim", None)
            if enc_dim is not None and int(enc_dim) != expected:
                raise ParamsError(
                    f"query encoder {_encoder_key(encoder)!r} has dim {enc_dim} but the adapter expects "
                    f"{what} {expected}; pair the adapter with the encoder it was trained on"
                )
        self.query_encoder = query_encoder
        self.small_query_encoder = small_query_encoder
        self.adapter = adapter
        self.instruction = instruction
        self.doc_model = doc_model

    @property
    def dim(self) -> int:
        """Output dimension (the document model's)."""
        return self.adapter.out_dim

    def encode(
        self,
        queries: list[str],
        instructions: list[str] | str | None = None,
        batch_size: int = 32,
        progress: bool = True,
    ) -> np.ndarray:
        """Format with the query template, encode, adapt: float32 unit rows in the doc space."""
        if instructions is None:
            instructions = self.instruction
        if isinstance(instructions, list) and len(instructions) != len(queries):
            raise ParamsError(f"got {len(queries)} queries but {len(instructions)} instructions; pass one per query")
        x = _encode_queries(self.query_encoder, queries, instructions, batch_size, progress)
        if self.small_query_encoder is not None:
            small = _encode_queries(self.small_query_encoder, queries, instructions, batch_size, progress)
            x = fuse_queries(x, small, self.adapter)
        return apply_adapter(self.adapter, x)

    def save_pretrained(self, folder: Path | str, card: Mapping[str, Any] | None = None) -> Path:
        """Write ``adapter.safetensors`` and ``config.json`` into ``folder``."""
        return self.save_adapter_folder(
            folder,
            self.adapter,
            query_model=_encoder_key(self.query_encoder),
            doc_model=self.doc_model,
            # Recorded by formatting placeholders, so it shows the encoder's real template.
            instruction_template=self.query_encoder.format_queries(["{query}"], "{instruction}")[0],
            default_instruction=self.instruction,
            card=card,
            small_query_model=None if self.small_query_encoder is None else _encoder_key(self.small_query_encoder),
            small_instruction_template=None
            if self.small_query_encoder is None
            else self.small_query_encoder.format_queries(["{query}"], "{instruction}")[0],
        )

    @staticmethod
    def save_adapter_folder(
        folder: Path | str,
        adapter: LinearAdapter,
        *,
        query_model: str | None,
        doc_model: str | None,
        instruction_template: str | None = None,
        default_instruction: str | None = None,
        card: Mapping[str, Any] | None = None,
        small_query_model: str | None = None,
        small_instruction_template: str | None = None,
    ) -> Path:
        """Write a ``from_pretrained`` folder without loading the query encoder (used for releases).

        A ``FusedAdapter`` also records ``small_query_model`` (the encoder of its small input block).
        """
        folder = Path(folder)
        config = {
            "query_model": query_model,
            "doc_model": doc_model,
            "in_dim": adapter.in_dim,
            "out_dim": adapter.out_dim,
            "instruction_template": instruction_template,
            "default_instruction": default_instruction,
            "card": dict(card or {}),
        }
        if isinstance(adapter, FusedAdapter):  # extra keys only here: linear folders stay as they were
            if not small_query_model:
                raise ParamsError("a fused adapter folder needs small_query_model (the small encoder's key)")
            config.update({"adapter_type": "fused", "large_dim": adapter.large_dim, "small_dim": adapter.small_dim,
                           "small_query_model": small_query_model,
                           "small_instruction_template": small_instruction_template})
        elif small_query_model is not None:
            raise ParamsError("small_query_model is only for fused adapters")
        meta = {"query_model": query_model or "", "doc_model": doc_model or "", "card": dict(card or {})}
        save_adapter(adapter, folder / "adapter.safetensors", meta)
        write_json(folder / "config.json", config)  # written last: its presence marks a complete folder
        return folder

    @classmethod
    def from_pretrained(
        cls, folder: Path | str, *, query_encoder: Any = None, small_query_encoder: Any = None
    ) -> "AdaptedQueryEncoder":
        """Load a folder written by ``save_pretrained``; loads the query encoder(s) by key if not given."""
        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.exists():
            raise ModelUnavailableError(f"no config.json in {folder}; expected a folder written by save_pretrained")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read {cfg_path}: {exc}") from exc
        missing = [k for k in ("query_model", "doc_model", "in_dim", "out_dim") if k not in config]
        if missing:
            raise DataError(f"{cfg_path} lacks keys {missing}")
        fused = config.get("adapter_type") == "fused"
        if fused:
            adapter: LinearAdapter = load_fused_adapter(
                folder / "adapter.safetensors", expected_large_dim=int(config["large_dim"]),
                expected_small_dim=int(config["small_dim"]),
            )  # fmt: skip
            small_query_encoder = _encoder_for(small_query_encoder, config.get("small_query_model"), folder)
        elif small_query_encoder is not None:
            raise ParamsError(f"adapter in {folder} is not fused; do not pass small_query_encoder")
        else:
            adapter = load_adapter(
                folder / "adapter.safetensors", expected_in_dim=int(config["in_dim"]),
                expected_out_dim=int(config["out_dim"]),
            )  # fmt: skip
        query_encoder = _encoder_for(query_encoder, config["query_model"], folder)
        return cls(query_encoder, adapter, instruction=config.get("default_instruction"), doc_model=config["doc_model"],
                   small_query_encoder=small_query_encoder)


def _encoder_for(encoder: Any, key: str | None, folder: Path) -> Any:
    """``encoder`` checked against the recorded ``key``, or the encoder loaded by ``key`` if none is given."""
    if encoder is None:
        from era_core.encoders import load_encoder  # lazy: loading an encoder pulls in transformers

        return load_encoder(key)
    given = _encoder_key(encoder)
    if given is not None and key is not None and given != key:
        raise ParamsError(f"adapter in {folder} was trained for query model {key!r}, but query encoder {given!r} was given")
    return encoder


def _encode_queries(encoder: Any, queries: list[str], instructions: Any, batch_size: int, progress: bool) -> np.ndarray:
    texts = encoder.format_queries(list(queries), instructions)
    return np.asarray(encoder.encode(texts, batch_size=batch_size, progress=progress), dtype=np.float32)


def _encoder_key(encoder: Any) -> str | None:
    """The registry key of an encoder object (``encoder.spec.key``), if it has one."""
    spec = getattr(encoder, "spec", None)
    key = getattr(spec, "key", None)
    return None if key is None else str(key)
