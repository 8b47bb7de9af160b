"""MTEB scores an exported model on a smoke task built in memory, to our nDCG@10."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from era_core.adapter import AdaptedQueryEncoder, LinearAdapter
from era_core.cache import embed_texts
from era_core.data import load_tasks
from era_core.encoders import load_encoder
from era_core.adapter.trained import TrainedAdapter
from era_core.adapter.router import export_sentence_transformers
from era_core.metrics import evaluate
from era_core.tools.mteb_eval import mteb_ndcg10
from era_core.retrieval import run_from_topk, topk_search


def test_mteb_ndcg10_equals_ours_on_a_smoke_task(tmp_path, one_torch_thread):
    torch.manual_seed(1)
    adapter = LinearAdapter(384, 384)
    with torch.no_grad():  # near the identity, so retrieval is far from random and the check means something
        adapter.proj.weight.copy_(torch.eye(384) + 0.05 * adapter.proj.weight)
    out = export_sentence_transformers(TrainedAdapter(adapter, "minilm-l6", "minilm-l3-onnx", max_length=128), tmp_path / "m")
    unit = load_tasks("offline-smoke", ["SymPy-API"], progress=False)[0]
    qids = list(unit.qrels)[:60]
    ours_q = AdaptedQueryEncoder(load_encoder("minilm-l6", dtype="float32", max_length=128), adapter).encode(
        [unit.queries[q] for q in qids], instructions=[unit.instructions[q] for q in qids], progress=False)
    docs = embed_texts(load_encoder("minilm-l3-onnx", max_length=128), list(unit.corpus.values()), role="document",
                       progress=False)
    scores, idx = topk_search(ours_q, docs, k=100, doc_ids=list(unit.corpus))
    per_q = evaluate({q: unit.qrels[q] for q in qids}, run_from_topk(qids, list(unit.corpus), scores, idx))
    ours = float(np.mean([per_q[q]["ndcg@10"] for q in qids]))
    theirs = mteb_ndcg10(out, [unit], qids={unit.name: qids})[unit.name]
    assert ours > 0.01  # far from zero, so equal scores are not both trivially 0
    assert theirs == pytest.approx(ours, abs=1e-4)
