"""``AdaptedQueryEncoder``: a query encoder and a trained adapter together, encoding queries into the index's space.

It runs in this process. To use an adapter elsewhere, export it (``era_core.api.export``): a
sentence-transformers folder that loads without this package.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from era_core.adapter.modules import FusedAdapter, LinearAdapter, apply_adapter, fuse_queries
from era_core.errors import ParamsError


class AdaptedQueryEncoder:
    """Query encoder + adapter: encodes raw queries straight into the document model's space.

    A ``FusedAdapter`` also needs ``small_query_encoder`` (the small model, encoding the same
    queries with its own query template); its input is ``fuse_queries(large, small)``.
    ``instructions`` is the instruction setting the adapter was trained in (``era_core.instructions``):
    under ``native`` an encoder that was not trained on instructions gets the bare query.
    """

    def __init__(
        self,
        query_encoder: Any,
        adapter: LinearAdapter,
        instruction: str | None = None,
        doc_model: str | None = None,
        small_query_encoder: Any = None,
        instructions: str = "native",
    ) -> None:
        from era_core.instructions import check_instruction_setting

        check_instruction_setting(instructions)
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
        self.instructions = instructions

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
        x = _encode_queries(self.query_encoder, queries, instructions, self.instructions, batch_size, progress)
        if self.small_query_encoder is not None:
            small = _encode_queries(self.small_query_encoder, queries, instructions, self.instructions, batch_size,
                                    progress)
            x = fuse_queries(x, small, self.adapter)
        return apply_adapter(self.adapter, x)


def _encode_queries(encoder: Any, queries: list[str], instructions: Any, setting: str, batch_size: int,
                    progress: bool) -> np.ndarray:
    from era_core.instructions import query_instructions

    texts = encoder.format_queries(list(queries), query_instructions(getattr(encoder, "spec", None), setting,
                                                                     instructions))
    return np.asarray(encoder.encode(texts, batch_size=batch_size, progress=progress), dtype=np.float32)


def _encoder_key(encoder: Any) -> str | None:
    """The registry key of an encoder object (``encoder.spec.key``), if it has one."""
    spec = getattr(encoder, "spec", None)
    key = getattr(spec, "key", None)
    return None if key is None else str(key)
