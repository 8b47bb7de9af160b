"""`make gpu-check` without a GPU: a clear exit code 2, and its CPU halves run end to end."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from era_core import gpu_check


def test_no_cuda_exits_2_with_a_clear_message(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == gpu_check.EXIT_NO_CUDA == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "--cpu-only" in err


def test_cpu_only_run_reports_every_section(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    code = gpu_check.main(["--cpu-only", "--tasks", "HPO-Synonyms", "--n-texts", "16", "--batch-size", "8",
                           "--align-epochs", "1", "--label-epochs", "1", "--retrieval-docs", "500",
                           "--out", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    enc = printed["encode"]["cpu/float32"]
    assert enc["texts"] == 16 and enc["texts_per_s"] > 0
    assert 0.0 <= printed["train"]["cpu"]["test_ndcg@10"] <= 1.0
    assert printed["retrieval"]["cpu"]["k"] == 100 and printed["cpu_only"] is True


def test_retrieval_and_encode_agreement_helpers_compare_against_the_first_device():
    # Two CPU "devices" must agree exactly: this is the comparison the GPU run reports.
    res = gpu_check.retrieval_check(["cpu", "cpu"], n_queries=8, n_docs=300, dim=16, k=10)
    assert res["cpu"]["topk_overlap"] == 1.0 and res["cpu"]["max_score_diff"] == 0.0
    texts = gpu_check.smoke_texts(5, ["HPO-Synonyms"])
    assert len(texts) == 5 and all(isinstance(t, str) and t for t in texts)
    enc = gpu_check.encode_check("minilm-l3-onnx", texts, [("cpu", "float32"), ("cpu", "float32")],
                                 batch_size=4, max_length=32)
    assert np.isclose(enc["cpu/float32"]["cosine_min"], 1.0, atol=1e-6)
