"""Static (model2vec) embeddings: tokenise, look up one row per token, average, L2-normalise.

Follows model2vec's ``StaticModel.encode`` as of model2vec 0.10: the tokenizer runs without
special tokens, the unknown token is dropped, texts are first cut to ``max_length`` times the
median vocabulary token length in characters and then to ``max_length`` tokens, a text with no
tokens gets the zero vector. Optional per-token ``weights`` and a ``mapping`` (vocabulary
quantisation) are applied when the safetensors file has them. No torch involved.
``StaticBackend`` puts a ``StaticModel`` behind the backend interface of ``encoder.Encoder``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from era_core.errors import ModelUnavailableError


class StaticModel:
    """A model2vec folder (``model.safetensors`` + ``tokenizer.json`` + ``config.json``) loaded for lookup."""

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        try:
            self.config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            tensors = load_file(str(folder / "model.safetensors"))
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:
            raise ModelUnavailableError(f"static model at {folder} could not be loaded: {type(exc).__name__}: {exc}") from None
        if "embeddings" not in tensors:
            raise ModelUnavailableError(f"{folder / 'model.safetensors'} has no 'embeddings' tensor: {sorted(tensors)}")
        self.embeddings = np.asarray(tensors["embeddings"], dtype=np.float32)
        self.weights = tensors.get("weights")
        self.mapping = tensors.get("mapping")
        self.normalize = bool(self.config.get("normalize", False))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        vocab = self.tokenizer.get_vocab()
        if self.mapping is None and len(vocab) != len(self.embeddings):
            raise ModelUnavailableError(
                f"static model at {folder}: {len(vocab)} tokens but {len(self.embeddings)} embedding rows"
            )
        self.median_token_length = int(np.median([len(tok) for tok in vocab]))
        self.unk_id = self._unk_id()

    def _unk_id(self) -> int | None:
        model = self.tokenizer.model
        if hasattr(model, "unk_token"):
            return None if model.unk_token is None else self.tokenizer.token_to_id(model.unk_token)
        return json.loads(self.tokenizer.to_str())["model"].get("unk_id")

    @property
    def dim(self) -> int:
        """Width of the embedding rows."""
        return int(self.embeddings.shape[1])

    def tokenize(self, texts: Sequence[str], max_length: int | None) -> list[list[int]]:
        """Token ids per text as model2vec computes them (no special tokens, no unknown token)."""
        texts = list(texts)
        if max_length is not None:
            # Characters first (cheap bound on very long texts), then tokens.
            texts = [t[: max_length * self.median_token_length] for t in texts]
            self.tokenizer.enable_truncation(max_length)
        try:
            encs = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        finally:
            self.tokenizer.no_truncation()
        ids = [e.ids for e in encs]
        if self.unk_id is not None:
            ids = [[t for t in row if t != self.unk_id] for row in ids]
        return ids

    def embed(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Mean of the token rows per text, then L2 normalisation if the config asks for it."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for i, row in enumerate(ids):
            if not row:
                continue
            arr = np.asarray(row, dtype=np.int64)
            emb = self.embeddings[arr if self.mapping is None else self.mapping[arr]]
            if self.weights is not None:
                emb = emb * self.weights[arr][:, None]
            out[i] = emb.mean(axis=0)
        if self.normalize:
            out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-32
        return out


class StaticBackend:
    """The ``static`` backend: loading the tokenizer loads the whole (small) lookup table."""

    def __init__(self, location: Path) -> None:
        self.location = location
        self.model: StaticModel | None = None
        self.tokenizer: Any = None

    def load_tokenizer(self) -> None:
        """Load the model folder; its tokenizer is the model's."""
        self.model = StaticModel(self.location)
        self.tokenizer = self.model.tokenizer

    def load_model(self) -> None:
        """Nothing beyond ``load_tokenizer`` (the façade calls that first)."""
        if self.model is None:
            self.load_tokenizer()

    def tokenize(self, texts: list[str], max_length: int) -> list[list[int]]:
        """Token ids as model2vec computes them, cut to ``max_length``."""
        return self.model.tokenize(texts, max_length)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Untruncated token counts."""
        return [len(ids) for ids in self.model.tokenize(texts, None)]

    def encode(self, texts: list[str], *, max_length: int, dim: int, batch_size: int, desc: str,
               progress: bool) -> np.ndarray:
        """L2-normalised float32 ``[n, dim]``; texts without tokens keep the zero vector."""
        out = np.zeros((len(texts), dim), dtype=np.float32)
        step = max(batch_size, 1024)  # a lookup is cheap: big batches keep the bar readable
        for s in tqdm(range(0, len(texts), step), desc=desc, disable=not progress):
            vecs = self.model.embed(self.model.tokenize(texts[s : s + step], max_length))
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            out[s : s + step] = np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)
        return out
