"""``Encoder``: one lazily loaded local embedding model behind one interface, whatever its backend.

The façade owns what every backend shares: the cache key (``cache_fields``), the model prompts,
the input checks and the lazy loading (the model loads on the first ``encode``, so a cache hit
never pays for it). The backend object (``hf``, ``onnx`` or ``static``) owns the tokenizer, the
model and the forward pass; backends do not import each other.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from era_core.encoders.hf import HfBackend
from era_core.encoders.onnx import OnnxBackend
from era_core.encoders.precision import CPU_AUTOCAST
from era_core.encoders.spec import ModelSpec, SpecIdentity, check_encode_inputs, format_queries
from era_core.encoders.st_modules import read_modules
from era_core.encoders.static import StaticBackend
from era_core.errors import ModelUnavailableError, ParamsError

#: Bump when pooling/tokenisation code changes in a way that changes vectors.
ENCODER_VERSION = 1


def check_max_length(spec: ModelSpec, max_length: Any) -> None:
    """ParamsError unless ``max_length`` is an integer in ``[2, spec.max_positions]``."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 2 <= max_length <= spec.max_positions:
        raise ParamsError(
            f"max_length for {spec.key!r} must be an integer in [2, {spec.max_positions}], got {max_length!r}"
        )


class Encoder(SpecIdentity):
    """A lazily loaded embedding model: ``encode`` returns L2-normalised float32 ``[n, dim]``."""

    def __init__(
        self,
        spec: ModelSpec,
        location: Path,
        *,
        device: str,
        dtype: str,
        max_length: int,
        pooling: str,
        fingerprint: str,
        attention: str,
        threads: int | None,
        truncate_dim: int | None = None,
    ) -> None:
        self.spec = spec
        self.location = location
        self.device = device
        self.dtype = dtype
        self.max_length = max_length
        self.pooling = pooling
        self.fingerprint = fingerprint
        self.attention = attention
        self.threads = threads
        # On CPU, bf16 runs fp32 weights under autocast: layer norms, softmax and the residual
        # stream stay fp32, so vectors keep cosine > 0.9999 with fp32 (tests/test_encoders.py).
        self.autocast = device == "cpu" and dtype == "bfloat16"
        self.truncate_dim = truncate_dim
        # What a sentence-transformers folder runs after the transformer (None: plain AutoModel + pooling).
        self.modules = read_modules(location) if spec.backend == "transformers" else None
        self.backend = self._make_backend()

    def _make_backend(self) -> Any:
        if self.spec.backend == "static":
            return StaticBackend(self.location)
        if self.spec.backend == "onnx":
            return OnnxBackend(self.spec, self.location, device=self.device, threads=self.threads,
                               pooling=self.pooling, truncate_dim=self.truncate_dim)
        return HfBackend(self.spec, self.location, device=self.device, dtype=self.dtype, autocast=self.autocast,
                         attention=self.attention, threads=self.threads, pooling=self.pooling,
                         truncate_dim=self.truncate_dim, modules=self.modules)

    @property
    def dim(self) -> int:
        """Embedding dimension (the Matryoshka width when ``truncate_dim`` is set)."""
        return self.truncate_dim or self.spec.dim

    @property
    def loaded(self) -> bool:
        """Whether the model weights have been loaded (a cache hit must leave this False)."""
        return self.backend.model is not None

    @property
    def model(self) -> Any:
        """The loaded model (torch module, ONNX session or ``StaticModel``), None before loading."""
        return self.backend.model

    @property
    def precision(self) -> str:
        """How the model computes: its dtype, or ``cpu-autocast-bf16`` for bf16 on CPU."""
        return CPU_AUTOCAST if self.autocast else self.dtype

    def __repr__(self) -> str:
        return (
            f"Encoder({self.key!r}, backend={self.spec.backend}, device={self.device}, dtype={self.dtype}, "
            f"max_length={self.max_length}, loaded={self.loaded})"
        )

    def cache_fields(self) -> dict[str, Any]:
        """Everything that changes a vector, for the embedding cache key."""
        fields = {
            "model": self.spec.key,
            "hub_id": self.spec.hub_id,
            "fingerprint": self.fingerprint,
            "backend": self.spec.backend,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "dtype": self.dtype,
            "attention": self.attention,
            "query_template": self.spec.query_template,
            "normalize": "l2",
            "dim": self.spec.dim,
            "encoder_version": ENCODER_VERSION,
        }
        if self.autocast:  # only then, so fp32 and CUDA keys (and their caches) stay as they were
            fields["precision"] = self.precision
        # Each of these only when it applies, so the keys of models without them never change.
        if self.spec.query_prefix:
            fields["query_prefix"] = self.spec.query_prefix
        if self.spec.document_prefix:
            fields["document_prefix"] = self.spec.document_prefix
        if self.modules is not None and self.modules.dense:
            fields["modules"] = self.modules.layout
        if self.truncate_dim is not None:
            fields["truncate_dim"] = self.truncate_dim
        return fields

    def with_max_length(self, max_length: int) -> "Encoder":
        """A copy truncating at ``max_length`` that shares this encoder's (loaded) model."""
        check_max_length(self.spec, max_length)
        clone = copy.copy(self)
        # Its own backend object holding the same model and tokenizer: loading one later leaves the other as it is.
        clone.backend = copy.copy(self.backend)
        clone.max_length = max_length
        return clone

    def format_queries(self, queries: Sequence[str], instructions: Sequence[str] | str | None) -> list[str]:
        """Apply this model's query prompt and instruction template (documents never go through this)."""
        return format_queries(
            queries, instructions, template=self.spec.query_template, prefix=self.spec.query_prefix
        )

    def format_documents(self, texts: Sequence[str]) -> list[str]:
        """Put this model's document prompt in front of each text (no-op for models without one)."""
        return [self.spec.document_prefix + t for t in texts]

    def _check_prompted(self, texts: Sequence[str]) -> None:
        # A prompted model fed raw text gives quietly worse vectors; refuse it instead.
        prompts = tuple(p for p in (self.spec.query_prefix, self.spec.document_prefix) if p)
        if prompts:
            raw = [i for i, t in enumerate(texts) if not t.startswith(prompts)]
            if raw:
                raise ParamsError(
                    f"model {self.key!r} expects its prompts: text {raw[0]} ({texts[raw[0]][:60]!r}) starts with "
                    f"neither {' nor '.join(map(repr, prompts))}; pass queries through format_queries() and "
                    "documents through format_documents()"
                )

    # -- tokenisation (cheap; loaded separately from the model)
    def _load_tokenizer(self) -> Any:
        if self.backend.tokenizer is not None:
            return self.backend.tokenizer
        try:
            self.backend.load_tokenizer()  # the static backend's tokenizer load is its model load
        except ModelUnavailableError:
            raise
        except Exception as exc:
            raise ModelUnavailableError(
                f"tokenizer of model {self.key!r} could not be loaded from {self.location}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        return self.backend.tokenizer

    def tokenize(self, texts: Sequence[str], *, max_length: int | None = None) -> list[list[int]]:
        """Token ids of each text with special tokens, truncated to ``max_length`` (default: the encoder's)."""
        limit = self.max_length if max_length is None else max_length
        self._load_tokenizer()
        texts = list(texts)
        if not texts:
            return []
        return self.backend.tokenize(texts, limit)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Untruncated token counts (with special tokens), e.g. to see what truncation drops."""
        self._load_tokenizer()
        return self.backend.count_tokens(list(texts))

    # -- model
    def load(self) -> None:
        """Load the model now (``encode`` does this on first use)."""
        if self.backend.model is not None:
            return
        self._load_tokenizer()
        if self.backend.model is None:
            self.backend.load_model()

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = True) -> np.ndarray:
        """Embed already formatted texts: L2-normalised float32 ``[n, dim]`` in input order."""
        texts = check_encode_inputs(texts, batch_size)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._check_prompted(texts)
        self.load()
        return self.backend.encode(texts, max_length=self.max_length, dim=self.dim, batch_size=batch_size,
                                   desc=f"encode {self.key}", progress=progress)
