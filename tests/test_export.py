"""The sentence-transformers export: Router folder, adapter Dense, prompts, model card, vectors equal to ours."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from era_core.adapter import AdaptedQueryEncoder, FusedAdapter, LinearAdapter
from era_core.cache import embed_texts
from era_core.encoders import load_encoder
from era_core.adapter.trained import TrainedAdapter
from era_core.adapter.router import ExportError, export_sentence_transformers

QUERIES = ["how do I sort a list in python", "symptoms of a rare genetic disease " * 12, "x"]
DOCS = ["sorted(iterable, key=None) returns a new sorted list", "Marfan syndrome affects connective tissue " * 20]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    adapter = LinearAdapter(384, 384)
    card = {"method": "era", "benchmark": "offline-smoke", "train_ratio": 0.4, "seed": 42, "instructions": "forced",
            "train_units": ["SymPy-API"], "test_metrics_overall": {"ndcg@10": 0.4321}}
    out = tmp_path_factory.mktemp("exp") / "model"
    export_sentence_transformers(TrainedAdapter(adapter, "minilm-l6", "minilm-l3-onnx", max_length=128, card=card), out,
                                 instructions={"code": "Retrieve the code"})
    return adapter, out


def test_router_folder_loads_offline_and_matches_our_vectors(exported, one_torch_thread):
    from sentence_transformers import SentenceTransformer

    adapter, out = exported
    model = SentenceTransformer(str(out), local_files_only=True, device="cpu")
    ours = AdaptedQueryEncoder(load_encoder("minilm-l6", dtype="float32", max_length=128), adapter,
                               instructions="forced")
    theirs = model.encode_query(QUERIES)
    assert theirs.shape == (3, 384)
    assert np.min(np.sum(ours.encode(QUERIES, progress=False) * theirs, axis=1)) >= 0.99999
    inst = ours.encode(QUERIES, instructions="Retrieve the code", progress=False)
    assert np.min(np.sum(inst * model.encode_query(QUERIES, prompt_name="code"), axis=1)) >= 0.99999
    # the ONNX-only document model, rebuilt as torch BERT, against its cached ONNX vectors
    cached = embed_texts(load_encoder("minilm-l3-onnx", max_length=128), DOCS, role="document", progress=False)
    assert np.min(np.sum(cached * model.encode_document(DOCS), axis=1)) >= 0.99999
    # and the adapter really is on the query route only: raw L6 vectors are different
    raw = load_encoder("minilm-l6", dtype="float32", max_length=128).encode(QUERIES, progress=False)
    assert np.max(np.sum(raw * theirs, axis=1)) < 0.99


def test_folder_layout_dense_identity_prompts_and_card(exported):
    _, out = exported
    router = json.loads((out / "router_config.json").read_text())
    assert [t.rsplit(".", 1)[-1] for t in router["types"].values()].count("Dense") == 1
    dense_dir = next(k for k, v in router["types"].items() if v.endswith("Dense"))
    dense = json.loads((out / dense_dir / "config.json").read_text())
    assert (dense["in_features"], dense["out_features"], dense["bias"]) == (384, 384, True)
    assert dense["activation_function"] == "torch.nn.modules.linear.Identity"
    assert router["structure"]["query"][-2:] == [dense_dir, router["structure"]["query"][-1]]
    assert router["types"][router["structure"]["query"][-1]].endswith("Normalize")
    cfg = json.loads((out / "config_sentence_transformers.json").read_text())
    assert cfg["prompts"]["code"] == "Instruct: Retrieve the code\nQuery: "
    assert cfg["era"]["instruction_template"] == "Instruct: {instruction}\nQuery: {query}"
    text = (out / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "sentence-transformers"
    assert front["base_model"] == ["sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/paraphrase-MiniLM-L3-v2"]
    assert front["license"] == "apache-2.0" and front["datasets"] == ["offline-smoke"]
    assert front["model-index"][0]["results"][0]["metrics"][0]["value"] == pytest.approx(0.4321)


def test_a_native_adapter_of_an_uninstructed_model_gets_no_instruction_prompts(tmp_path):
    adapter = LinearAdapter(384, 384)
    card = {"method": "era", "instructions": "native", "benchmark": "offline-smoke"}
    src = TrainedAdapter(adapter, "minilm-l6", "minilm-l3-onnx", max_length=128, card=card)
    with pytest.raises(ExportError, match="bare queries"):
        export_sentence_transformers(src, tmp_path / "m", instructions={"code": "Retrieve the code"})
    out = export_sentence_transformers(src, tmp_path / "m")
    cfg = json.loads((out / "config_sentence_transformers.json").read_text())
    assert cfg["era"]["instructions"] == "native" and cfg["era"]["instruction_template"] is None
    assert set(cfg["prompts"]) == {"query", "document"} and "pass none" in (out / "README.md").read_text()


def test_fused_and_mismatched_adapters_are_refused(tmp_path):
    with pytest.raises(ExportError, match="fused"):
        export_sentence_transformers(FusedAdapter.control_init(384, 384), tmp_path / "f",
                                     query_model="minilm-l6", doc_model="minilm-l3-onnx")
    with pytest.raises(ExportError, match="768"):
        export_sentence_transformers(LinearAdapter(384, 384), tmp_path / "m", query_model="embeddinggemma-300m",
                                     doc_model="minilm-l3-onnx")
    assert not (tmp_path / "f").exists() and not (tmp_path / "m").exists()
