"""The ERA adapter: one affine layer followed by L2 normalisation, plus its file formats.

Modules: ``modules`` (the adapters, ``apply_adapter``, ``fuse_queries``), ``files`` (safetensors and
reference ``.pt`` I/O), ``query_encoder`` (``AdaptedQueryEncoder``).

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
- ``load_any_adapter`` dispatches on ``adapter_type`` (absent: linear).
"""

from era_core.adapter.files import (
    ADAPTER_KEYS,
    ADAPTER_SUFFIXES,
    load_adapter,
    load_any_adapter,
    load_fused_adapter,
    read_adapter_metadata,
    save_adapter,
)
from era_core.adapter.modules import FusedAdapter, LinearAdapter, apply_adapter, fuse_queries
from era_core.adapter.query_encoder import AdaptedQueryEncoder

__all__ = [
    "ADAPTER_KEYS", "ADAPTER_SUFFIXES", "AdaptedQueryEncoder", "FusedAdapter", "LinearAdapter",
    "apply_adapter", "fuse_queries", "load_adapter", "load_any_adapter", "load_fused_adapter",
    "read_adapter_metadata", "save_adapter",
]  # fmt: skip
