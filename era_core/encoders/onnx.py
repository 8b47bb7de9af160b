"""The ``onnx`` backend: an onnxruntime session over an exported encoder, a ``tokenizers`` tokenizer.

ONNX models ship no tokenizer; the registry names the model whose ``tokenizer.json`` they use
(``weights.tokenizer_json_for``). They always run fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from era_core.encoders.pooling import Features, encode_longest_first, pool, unit_vectors
from era_core.encoders.spec import ModelSpec
from era_core.encoders.weights import tokenizer_json_for
from era_core.errors import ModelUnavailableError


class OnnxBackend:
    """An ``.onnx`` file whose rank-3 output is the token states, behind the backend interface."""

    def __init__(self, spec: ModelSpec, location: Path, *, device: str, threads: int | None, pooling: str,
                 truncate_dim: int | None) -> None:
        self.spec = spec
        self.location = location
        self.device = device
        self.threads = threads
        self.pooling = pooling
        self.truncate_dim = truncate_dim
        # The width the token-states output is matched against: the encoder's ``dim``, as before the split.
        self.dim = truncate_dim or spec.dim
        self.model: Any = None
        self.tokenizer: Any = None
        self.input_names: list[str] = []
        self.output_name = ""

    def load_tokenizer(self) -> None:
        """Load the donor model's ``tokenizer.json``, without its fixed padding and truncation."""
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_json_for(self.spec)))
        # The shipped tokenizer.json pads/truncates to a fixed 128; we pad per batch.
        tok.no_padding()
        tok.no_truncation()
        self.tokenizer = tok

    def load_model(self) -> None:
        """Open the inference session and find its token-states output; ModelUnavailableError on failure."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if self.threads is not None:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider"] if self.device.startswith("cuda") else ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(str(self.location), sess_options=opts, providers=providers)
        except Exception as exc:
            raise ModelUnavailableError(
                f"ONNX model {self.spec.key!r} could not be loaded from {self.location}: {type(exc).__name__}: {exc}"
            ) from None
        self.input_names = [i.name for i in session.get_inputs()]
        outs = [o for o in session.get_outputs() if self._is_token_states(o)]
        if not outs:
            raise ModelUnavailableError(
                f"ONNX model {self.spec.key!r} has no [batch, seq, {self.dim}] float output; outputs: "
                f"{[(o.name, o.shape) for o in session.get_outputs()]}"
            )
        self.output_name = outs[0].name
        self.model = session

    def _is_token_states(self, o: Any) -> bool:
        # Rank-3 float output whose last axis is the model dim (or left symbolic).
        last = o.shape[-1] if len(o.shape) == 3 else None
        return o.type == "tensor(float)" and len(o.shape) == 3 and (last == self.dim or not isinstance(last, int))

    def tokenize(self, texts: list[str], max_length: int) -> list[list[int]]:
        """Token ids with special tokens, truncated to ``max_length``."""
        self.tokenizer.enable_truncation(max_length=max_length)
        try:
            return [e.ids for e in self.tokenizer.encode_batch(texts)]
        finally:
            self.tokenizer.no_truncation()

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Untruncated token counts (with special tokens)."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts)]

    def features(self, texts: list[str], max_length: int) -> Features:
        """Ids, attention mask and token types per text, truncated, unpadded."""
        self.tokenizer.enable_truncation(max_length=max_length)
        try:
            encs = self.tokenizer.encode_batch(texts)
        finally:
            self.tokenizer.no_truncation()
        return [{"input_ids": e.ids, "attention_mask": e.attention_mask, "token_type_ids": e.type_ids} for e in encs]

    def pad(self, feats: Features) -> dict[str, np.ndarray]:
        """Right-pad one batch into int64 arrays (``[PAD]`` ids, zero mask)."""
        width = max(len(f["input_ids"]) for f in feats)
        names = ("input_ids", "attention_mask", "token_type_ids")
        out = {k: np.zeros((len(feats), width), dtype=np.int64) for k in names}
        pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        out["input_ids"].fill(pad_id)
        for r, f in enumerate(feats):
            n = len(f["input_ids"])
            for k in out:
                out[k][r, :n] = f[k]
        return out

    def run_batch(self, feats: Features) -> np.ndarray:
        """Pad one batch, run the session, pool, normalise."""
        import torch

        arrays = self.pad(feats)
        feed = {name: arrays[name] for name in self.input_names}
        hidden = torch.from_numpy(self.model.run([self.output_name], feed)[0])
        mask = torch.from_numpy(arrays["attention_mask"])
        return unit_vectors(pool(hidden.float(), mask, self.pooling), self.spec, self.location, self.truncate_dim)

    def encode(self, texts: list[str], *, max_length: int, dim: int, batch_size: int, desc: str,
               progress: bool) -> np.ndarray:
        """L2-normalised float32 ``[n, dim]``: tokenise once, then batch longest first."""
        feats = self.features(texts, max_length)
        return encode_longest_first(feats, self.run_batch, dim, batch_size=batch_size, desc=desc, progress=progress)
