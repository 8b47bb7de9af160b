"""The ``transformers`` backend: AutoTokenizer + AutoModel, then the folder's sentence-transformers head.

The model runs in ``dtype``; on CPU, bf16 instead runs the fp32 weights under autocast, so layer
norms, softmax and the residual stream stay fp32 (``precision``). What a sentence-transformers
folder lists after its Transformer (Dense layers) runs through ``st_modules``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from era_core.encoders.pooling import Features, encode_longest_first, pool, unit_vectors
from era_core.encoders.precision import torch_dtype
from era_core.encoders.spec import ModelSpec
from era_core.encoders.st_modules import ModulesSpec, apply_head, load_head
from era_core.errors import ModelUnavailableError


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' info/warning chatter and load bars while loading (errors still raise)."""
    from transformers.utils import logging as tlog

    level = tlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if bars:
            tlog.enable_progress_bar()


class HfBackend:
    """A transformers model folder (optionally with a ``modules.json`` head) behind the backend interface."""

    def __init__(
        self,
        spec: ModelSpec,
        location: Path,
        *,
        device: str,
        dtype: str,
        autocast: bool,
        attention: str,
        threads: int | None,
        pooling: str,
        truncate_dim: int | None,
        modules: ModulesSpec | None,
    ) -> None:
        self.spec = spec
        self.location = location
        self.device = device
        self.dtype = dtype
        self.autocast = autocast
        self.attention = attention
        self.threads = threads
        self.pooling = pooling
        self.truncate_dim = truncate_dim
        self.modules = modules
        self.model: Any = None
        self.tokenizer: Any = None
        self.head: list[Any] = []

    def load_tokenizer(self) -> None:
        """Load the folder's tokenizer (local files only)."""
        from transformers import AutoTokenizer

        with quiet_transformers():
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.location), local_files_only=True)

    def load_model(self) -> None:
        """Load the weights (and the Dense head) onto the device; ModelUnavailableError on any failure."""
        import torch
        from transformers import AutoModel

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        weights = "float32" if self.autocast else self.dtype
        kwargs: dict[str, Any] = {"dtype": torch_dtype(weights), "local_files_only": True}
        if self.attention == "flash_attention_2":
            kwargs["attn_implementation"] = "flash_attention_2"
        model_dir = self.location / (self.modules.transformer_path if self.modules else "")
        try:
            with quiet_transformers():
                model = AutoModel.from_pretrained(str(model_dir), **kwargs)
            if self.modules is not None:
                self.head = load_head(self.location, self.modules, self.device)
        except ModelUnavailableError:
            raise
        except Exception as exc:
            raise ModelUnavailableError(
                f"model {self.spec.key!r} could not be loaded from {self.location}: {type(exc).__name__}: "
                f"{str(exc)[:500]}"
            ) from None
        model.eval()
        self.model = model.to(self.device)

    def tokenize(self, texts: list[str], max_length: int) -> list[list[int]]:
        """Token ids with special tokens, truncated to ``max_length``."""
        enc = self.tokenizer(texts, truncation=True, max_length=max_length, padding=False)
        return [list(ids) for ids in enc["input_ids"]]

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Untruncated token counts (with special tokens)."""
        with quiet_transformers():  # silence the "longer than model_max_length" warning
            enc = self.tokenizer(texts, truncation=False, padding=False)
        return [len(ids) for ids in enc["input_ids"]]

    def features(self, texts: list[str], max_length: int) -> Features:
        """The tokenizer's inputs per text (ids, mask, ...), truncated, unpadded."""
        enc = self.tokenizer(texts, truncation=True, max_length=max_length, padding=False)
        keys = list(enc.keys())
        return [{k: enc[k][i] for k in keys} for i in range(len(texts))]

    def run_batch(self, feats: Features) -> np.ndarray:
        """Pad one batch, run the model (under CPU bf16 autocast if asked), pool, run the head, normalise."""
        import torch

        batch = self.tokenizer.pad(feats, padding=True, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            hidden = self.model(**batch).last_hidden_state
        pooled = pool(hidden.float(), batch["attention_mask"], self.pooling)
        if self.head:
            pooled = apply_head(pooled, self.head)
        return unit_vectors(pooled, self.spec, self.location, self.truncate_dim)

    def encode(self, texts: list[str], *, max_length: int, dim: int, batch_size: int, desc: str,
               progress: bool) -> np.ndarray:
        """L2-normalised float32 ``[n, dim]``: tokenise once, then batch longest first."""
        feats = self.features(texts, max_length)
        return encode_longest_first(feats, self.run_batch, dim, batch_size=batch_size, desc=desc, progress=progress)
