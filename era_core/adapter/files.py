"""Adapter files: our ``.safetensors`` (tensors plus string metadata) and the reference release's ``.pt``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from era_core.adapter.modules import FusedAdapter, LinearAdapter
from era_core.errors import DataError, ModelUnavailableError, ParamsError
from era_core.io import atomic_write_bytes

ADAPTER_KEYS = ("proj.bias", "proj.weight")
ADAPTER_SUFFIXES = (".safetensors", ".pt")


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
    """What ``load_any_adapter`` needs to rebuild a fused adapter (nothing for ``LinearAdapter``)."""
    if isinstance(adapter, FusedAdapter):
        return {"adapter_type": "fused", "large_dim": str(adapter.large_dim), "small_dim": str(adapter.small_dim)}
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


def load_any_adapter(path: Path | str) -> nn.Module:
    """Load a linear or ``fused`` adapter, dispatching on its ``adapter_type`` metadata."""
    path = Path(path)
    kind = read_adapter_metadata(path).get("adapter_type", "linear") if path.suffix == ".safetensors" else "linear"
    if kind == "fused":
        return load_fused_adapter(path)
    if kind != "linear":
        raise DataError(f"adapter {path} has unknown adapter_type {kind!r}; allowed: linear, fused")
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
