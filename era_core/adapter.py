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


class LinearAdapter(nn.Module):
    """``normalize(W x + b)``: the ERA query adapter (§2)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if int(in_dim) <= 0 or int(out_dim) <= 0:
            raise ParamsError(f"adapter dims must be positive, got in_dim={in_dim}, out_dim={out_dim}")
        # Default nn.Linear init (Kaiming-uniform a=sqrt(5), bias U(+-1/sqrt(in))); the caller
        # seeds torch beforehand so the init is reproducible.
        self.proj = nn.Linear(int(in_dim), int(out_dim), bias=True)

    @property
    def in_dim(self) -> int:
        """Input (query encoder) dimension."""
        return self.proj.in_features

    @property
    def out_dim(self) -> int:
        """Output (document encoder) dimension."""
        return self.proj.out_features

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


def apply_adapter(adapter: LinearAdapter, x: np.ndarray, chunk: int = 4096, device: str = "cpu") -> np.ndarray:
    """Push rows of ``x`` through ``adapter`` in chunks; returns float32 unit rows."""
    x = np.asarray(x)
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
    return atomic_write_bytes(path, _canonical_safetensors(save(tensors, metadata=meta)))


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
    """Query encoder + adapter: encodes raw queries straight into the document model's space."""

    def __init__(
        self,
        query_encoder: Any,
        adapter: LinearAdapter,
        instruction: str | None = None,
        doc_model: str | None = None,
    ) -> None:
        enc_dim = getattr(query_encoder, "dim", None)
        if enc_dim is not None and int(enc_dim) != adapter.in_dim:
            raise ParamsError(
                f"query encoder {_encoder_key(query_encoder)!r} has dim {enc_dim} but the adapter expects "
                f"in_dim {adapter.in_dim}; pair the adapter with the encoder it was trained on"
            )
        self.query_encoder = query_encoder
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
        texts = self.query_encoder.format_queries(list(queries), instructions)
        x = np.asarray(self.query_encoder.encode(texts, batch_size=batch_size, progress=progress), dtype=np.float32)
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
    ) -> Path:
        """Write a ``from_pretrained`` folder without loading the query encoder (used for releases)."""
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
        meta = {"query_model": query_model or "", "doc_model": doc_model or "", "card": dict(card or {})}
        save_adapter(adapter, folder / "adapter.safetensors", meta)
        write_json(folder / "config.json", config)  # written last: its presence marks a complete folder
        return folder

    @classmethod
    def from_pretrained(cls, folder: Path | str, *, query_encoder: Any = None) -> "AdaptedQueryEncoder":
        """Load a folder written by ``save_pretrained``; loads the query encoder by key if not given."""
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
        adapter = load_adapter(
            folder / "adapter.safetensors", expected_in_dim=int(config["in_dim"]), expected_out_dim=int(config["out_dim"])
        )
        if query_encoder is None:
            from era_core.encoders import load_encoder  # lazy: loading an encoder pulls in transformers

            query_encoder = load_encoder(config["query_model"])
        else:
            key = _encoder_key(query_encoder)
            if key is not None and config["query_model"] is not None and key != config["query_model"]:
                raise ParamsError(
                    f"adapter in {folder} was trained for query model {config['query_model']!r}, "
                    f"but query encoder {key!r} was given"
                )
        return cls(query_encoder, adapter, instruction=config.get("default_instruction"), doc_model=config["doc_model"])


def _encoder_key(encoder: Any) -> str | None:
    """The registry key of an encoder object (``encoder.spec.key``), if it has one."""
    spec = getattr(encoder, "spec", None)
    key = getattr(spec, "key", None)
    return None if key is None else str(key)
