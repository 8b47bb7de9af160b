"""``load_encoder``: check the options, resolve and fingerprint a model's weights, build its ``Encoder``.

Nothing here loads a model: that waits for the first ``encode`` (see ``encoder``). API models
(``api.API_MODELS``) have no weights to resolve and are handed to ``api.load_api_encoder``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from era_core.encoders.openai_api import API_MODELS, load_api_encoder
from era_core.encoders.encoder import Encoder, check_max_length
from era_core.encoders.fingerprints import fingerprint_files
from era_core.encoders.precision import choose_dtype
from era_core.encoders.registry import REGISTRY
from era_core.encoders.spec import ModelSpec
from era_core.encoders.st_modules import read_st_pooling
from era_core.encoders.weights import resolve_weights, weight_files
from era_core.errors import ModelUnavailableError, ParamsError


def load_encoder(
    key: str,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    max_length: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    truncate_dim: int | None = None,
) -> Encoder:
    """Resolve and fingerprint a registry model's weights without loading the model.

    ``truncate_dim`` keeps the leading dims of a Matryoshka model (renormalised), e.g. 256 for
    EmbeddingGemma; only the widths the model lists in ``matryoshka_dims`` are accepted.
    """
    if key in API_MODELS:
        return load_api_encoder(key, device=device, dtype=dtype, max_length=max_length, threads=threads)  # type: ignore[return-value]
    if key not in REGISTRY:
        raise ModelUnavailableError(
            f"unknown model key {key!r}; registry keys: {', '.join(sorted(REGISTRY))}"
        )
    spec = REGISTRY[key]
    _check_device(device)
    dtype = choose_dtype(spec, device, dtype)
    if max_length is None:
        max_length = spec.max_length
    _check_options(spec, max_length, threads, truncate_dim)

    return encoder_at(spec, resolve_weights(spec, progress=progress), device=device, dtype=dtype,
                      max_length=max_length, threads=threads, truncate_dim=truncate_dim)


def encoder_at(spec: ModelSpec, location: Path, *, device: str, dtype: str, max_length: int,
               threads: int | None = None, truncate_dim: int | None = None) -> Encoder:
    """The ``Encoder`` of ``spec`` over the weights at ``location``, fingerprinted as found there (checked options)."""
    fingerprint = fingerprint_files(weight_files(spec, location))
    pooling = (read_st_pooling(location) if spec.backend == "transformers" else None) or spec.pooling
    return Encoder(
        spec,
        location,
        device=device,
        dtype=dtype,
        max_length=max_length,
        pooling=pooling,
        fingerprint=fingerprint,
        attention=_attention(spec, device, dtype),
        threads=threads,
        truncate_dim=truncate_dim,
    )


def _check_device(device: str) -> None:
    """ParamsError unless ``device`` is 'cpu' or an available 'cuda' / 'cuda:N'."""
    cuda = device.startswith("cuda")
    if device != "cpu" and not cuda:
        raise ParamsError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if cuda:
        import torch

        if not torch.cuda.is_available():
            raise ParamsError(f"device {device!r} requested but CUDA is not available; use device='cpu'")


def _check_options(spec: ModelSpec, max_length: int, threads: int | None, truncate_dim: int | None) -> None:
    """ParamsError for a bad ``max_length``, ``threads`` or ``truncate_dim``."""
    check_max_length(spec, max_length)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ParamsError(f"threads must be a positive integer or None, got {threads!r}")
    if truncate_dim is not None and truncate_dim not in spec.matryoshka_dims:
        allowed = ", ".join(map(str, spec.matryoshka_dims)) or "none: the model is not a Matryoshka model"
        raise ParamsError(f"truncate_dim for {spec.key!r} must be one of {allowed}; got {truncate_dim!r}")


def _attention(spec: ModelSpec, device: str, dtype: str) -> str:
    """``flash_attention_2`` for half-precision transformers models on CUDA when flash-attn is installed."""
    cuda = device.startswith("cuda")
    if cuda and dtype != "float32" and spec.backend == "transformers" and importlib.util.find_spec("flash_attn"):
        return "flash_attention_2"
    return "default"
