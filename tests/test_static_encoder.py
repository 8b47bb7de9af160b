"""The static (model2vec) backend against the model2vec library on a tiny fixture folder."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from era_core.encoders import REGISTRY, Encoder, load_encoder
from era_core.encoders.static import StaticModel
from era_core.errors import ParamsError

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", "bank", "rate", "##s", "rose",
         "music", "guitar", ",", ".", "a"]
TEXTS = ["The cat sat on the mat.", "bank rates rose", "a guitar , music", "zzz qqq", "", "cat " * 40]


@pytest.fixture(scope="module")
def tiny_static(tmp_path_factory):
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    folder = tmp_path_factory.mktemp("tiny-static")
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.save(str(folder / "tokenizer.json"))
    rng = np.random.default_rng(0)
    save_file({"embeddings": rng.normal(size=(len(VOCAB), 8)).astype(np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "model2vec", "hidden_dim": 8, "normalize": True}))
    return folder


def test_matches_model2vec(tiny_static):
    from model2vec import StaticModel as Reference

    ref = Reference.from_pretrained(str(tiny_static)).encode(TEXTS, max_length=4)
    ours = StaticModel(tiny_static)
    got = ours.embed(ours.tokenize(TEXTS, 4))
    np.testing.assert_allclose(got, ref, atol=1e-6)
    ref_long = Reference.from_pretrained(str(tiny_static)).encode(TEXTS, max_length=None)
    np.testing.assert_allclose(ours.embed(ours.tokenize(TEXTS, None)), ref_long, atol=1e-6)


def test_by_hand_mean_of_rows_without_unknown_tokens(tiny_static):
    from safetensors.numpy import load_file

    table = load_file(str(tiny_static / "model.safetensors"))["embeddings"]
    ours = StaticModel(tiny_static)
    ids = ours.tokenize(["Bank rates, zzz"], None)[0]
    assert ids == [VOCAB.index("bank"), VOCAB.index("rate"), VOCAB.index("##s"), VOCAB.index(",")]  # [UNK] dropped
    mean = table[ids].mean(axis=0)
    np.testing.assert_allclose(ours.embed([ids])[0], mean / np.linalg.norm(mean), atol=1e-6)
    assert not ours.embed([[]]).any()  # nothing known: the zero vector, as model2vec


def test_encoder_backend_static(tiny_static):
    spec = dataclasses.replace(REGISTRY["potion-base-8m"], dim=8)
    enc = Encoder(spec, tiny_static, device="cpu", dtype="float32", max_length=512, pooling="mean",
                  fingerprint="tiny", attention="default", threads=1)
    vecs = enc.encode(TEXTS, batch_size=2, progress=False)
    assert vecs.shape == (len(TEXTS), 8) and vecs.dtype == np.float32
    norms = np.linalg.norm(vecs, axis=1)
    np.testing.assert_allclose(norms[[0, 1, 2, 5]], 1.0, atol=1e-6)
    assert norms[3] == 0 and norms[4] == 0
    assert enc.count_tokens(["bank rates", "cat " * 40]) == [3, 40]
    assert 0 < len(enc.tokenize(["cat " * 40], max_length=5)[0]) <= 5
    fields = enc.cache_fields()
    assert fields["backend"] == "static" and "query_prefix" not in fields and "modules" not in fields


def test_static_refuses_bf16():
    with pytest.raises(ParamsError, match="float32 only"):
        load_encoder("potion-base-8m", dtype="bfloat16")
