"""cuda_pass without a GPU: its CPU side trains and scores a 03_training run as paper.runs does."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from era_core.tools import cuda_pass, gpu_check


def _few_epochs(path, **changes):
    embs, arrays, info = gpu_check.load_vectors(path)
    info["params"].update(changes)
    gpu_check.save_vectors(path, embs, arrays, info)
    return info


def test_cpu_run_reproduces_the_paper_run(tmp_path, monkeypatch):
    from era_core import paths
    from era_core.paper.config import Config
    from era_core.paper.pool import EmbeddingPool
    from era_core.paper.runs import Run, run_job
    from era_core.setup import load_units

    monkeypatch.setattr(paths, "ADAPTER_CACHE", tmp_path / "adapters")  # Phase 1 trained afresh on both sides
    selection = tmp_path / "training.json"
    selection.write_text(json.dumps({"runs": [
        {"method": "era", "instructions": "native", "seed": 42, "train_ratio": 0.4,
         "label_lr_selection": {"chosen": 3e-4}, "scopes": {"test": {"overall": {"ndcg@10": 0.5}}}}]}))
    from era_core.setup import forget_encoders

    vectors = tmp_path / "smoke.npz"
    kwargs = dict(profile="smoke", methods=["era", "small_adapter"], instructions="native", train_ratio=0.4,
                  seed=42, selection=selection)
    cuda_pass.export(vectors, **kwargs)  # fills the embedding cache if this test runs first
    forget_encoders()  # encoders other tests loaded in this process must not count
    info = cuda_pass.export(vectors, **kwargs)
    assert info["encoders_loaded"] == []  # a warm cache: read through it, no model loaded
    assert info["methods"]["era"] == {"label_lr": 3e-4, "reference_test_ndcg@10": 0.5}
    assert info["methods"]["small_adapter"]["label_lr"] is None  # not in the selection: the profile's label_lr
    info = _few_epochs(vectors, align_epochs=2, label_epochs=2)

    report = cuda_pass.run(vectors, ["cpu"])
    era = report["methods"]["era"]
    assert era["label_lr"] == 3e-4 and era["ndcg_abs_diff_cpu_vs_reference"] == pytest.approx(
        abs(era["cpu"]["test_ndcg@10"] - 0.5))

    cfg = Config.from_params(info["params"])
    setup = cfg.setup
    pool = EmbeddingPool(setup, load_units(setup))
    names = tuple(u.name for u in pool.units)
    for method, lr in (("era", 3e-4), ("small_adapter", cfg.label_lr)):
        summary = run_job(Run("in_domain", method, 42, 0.4, "native", names), pool,
                          cfg.with_params(label_lr=lr, label_lr_grid=""), tmp_path / "results")
        assert report["methods"][method]["cpu"]["test_ndcg@10"] == summary["scopes"]["test"]["overall"]["ndcg@10"]


def test_run_refuses_cuda_without_it(monkeypatch, capsys, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda_pass.main(["run", str(tmp_path / "missing.npz")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
