"""`make gpu-check` without a GPU: a clear exit code 2, and its CPU halves run end to end."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from era_core.tools import gpu_check


def test_no_cuda_exits_2_with_a_clear_message(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == gpu_check.EXIT_NO_CUDA == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "--cpu-only" in err


def _test_ndcg10_by_hand(embs, adapter, seed=42):
    """Macro mean over tasks of the test queries' nDCG@10 (pytrec_eval), adapter applied in float64."""
    import pytrec_eval

    from era_core.splits import split_queries

    w = adapter.proj.weight.detach().double().numpy()
    b = adapter.proj.bias.detach().double().numpy()
    by_task: dict[str, list[float]] = {}
    for te in embs:
        test = split_queries(te.qids, 0.1, 0.1, 0.5, seed=seed)[2]
        z = te.q_large[[te.qids.index(q) for q in test]].astype(np.float64) @ w.T + b
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        scores = z @ te.docs_small.astype(np.float64).T
        run = {q: {te.doc_ids[j]: float(scores[i, j]) for j in np.argsort(-scores[i])[:100]} for i, q in enumerate(test)}
        per_q = pytrec_eval.RelevanceEvaluator({q: te.qrels[q] for q in test}, {"ndcg_cut.10"}).evaluate(run)
        by_task.setdefault(te.name.split("/", 1)[0], []).extend(v["ndcg_cut_10"] for v in per_q.values())
    return float(np.mean([np.mean(v) for v in by_task.values()]))


def test_cpu_only_run_reports_every_section(tmp_path, capsys, monkeypatch):
    from era_core import train

    trained = []
    real_train_era = train.train_era

    def recording_train_era(tasks, *args, **kwargs):
        result = real_train_era(tasks, *args, **kwargs)
        trained.append((tasks, result.adapter))
        return result

    monkeypatch.setattr(train, "train_era", recording_train_era)
    out = tmp_path / "gpu_check.json"
    code = gpu_check.main(["--cpu-only", "--tasks", "HPO-Synonyms", "--n-texts", "16", "--batch-size", "8",
                           "--align-epochs", "1", "--label-epochs", "1", "--retrieval-docs", "500",
                           "--out", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    enc = printed["encode"]["cpu/float32"]
    assert enc["texts"] == 16 and enc["texts_per_s"] > 0
    # The reported test nDCG@10 is that of the adapter it trained, recomputed here from its vectors.
    (embs, adapter), = trained
    assert [te.name for te in embs] == ["HPO-Synonyms"]
    assert printed["train"]["cpu"]["test_ndcg@10"] > 0.0  # some relevant document is found: the match below is informative
    assert printed["train"]["cpu"]["test_ndcg@10"] == pytest.approx(_test_ndcg10_by_hand(embs, adapter), abs=1e-6)
    assert printed["retrieval"]["cpu"]["k"] == 100 and printed["cpu_only"] is True


class _FixedEncoder:
    """Stands in for a loaded encoder: returns given vectors for any texts."""

    attention = "fake"

    def __init__(self, vectors):
        self.vectors = vectors

    def load(self):
        return self

    def encode(self, texts, *, batch_size, progress):
        return self.vectors[: len(texts)]


def test_encode_check_reports_the_cosine_to_the_first_variant(monkeypatch):
    from era_core import encoders

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((6, 8)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    moved = ref.copy()
    moved[2] = ref[2] + 0.5 * ref[3]  # one row leans towards another
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    by_dtype = {"float32": ref, "float16": moved}
    monkeypatch.setattr(encoders, "load_encoder", lambda model, *, device, dtype, **kw: _FixedEncoder(by_dtype[dtype]))
    res = gpu_check.encode_check("m", ["t"] * 6, [("cpu", "float32"), ("cpu", "float16")], batch_size=2, max_length=8)
    cos = np.sum(moved.astype(np.float64) * ref, axis=1)
    assert cos.min() < 0.99  # the perturbation is visible
    assert res["cpu/float16"]["cosine_min"] == pytest.approx(cos.min(), abs=1e-6)
    assert res["cpu/float16"]["cosine_mean"] == pytest.approx(cos.mean(), abs=1e-6)
    assert "cosine_min" not in res["cpu/float32"]  # the reference itself


def test_retrieval_and_encode_agreement_helpers_compare_against_the_first_device():
    # Two CPU "devices" must agree exactly: this is the comparison the GPU run reports.
    res = gpu_check.retrieval_check(["cpu", "cpu"], n_queries=8, n_docs=300, dim=16, k=10)
    assert res["cpu"]["topk_overlap"] == 1.0 and res["cpu"]["max_score_diff"] == 0.0
    texts = gpu_check.smoke_texts(5, ["HPO-Synonyms"])
    assert len(texts) == 5 and all(isinstance(t, str) and t for t in texts)
    enc = gpu_check.encode_check("minilm-l3-onnx", texts, [("cpu", "float32"), ("cpu", "float32")],
                                 batch_size=4, max_length=32)
    assert np.isclose(enc["cpu/float32"]["cosine_min"], 1.0, atol=1e-6)


def test_vectors_file_round_trips_task_embeddings(tmp_path):
    from era_core.train import TaskEmbeddings

    rng = np.random.default_rng(1)
    te = TaskEmbeddings(name="T/a", domain="d", qids=["q1", "q2"], qrels={"q1": {"d1": 1}, "q2": {"d2": 2}},
                        doc_ids=["d1", "d2", "d3"], q_large=rng.standard_normal((2, 5)).astype(np.float32),
                        q_small=None, docs_small=rng.standard_normal((3, 4)).astype(np.float32),
                        query_split={"q1": "train"})
    extra = {"rows": np.arange(6, dtype=np.int64).reshape(3, 2)}
    gpu_check.save_vectors(tmp_path / "v.npz", [te], extra, {"large_model": "m"})
    (back,), arrays, info = gpu_check.load_vectors(tmp_path / "v.npz")
    assert info == {"large_model": "m"} and np.array_equal(arrays["rows"], extra["rows"])
    assert (back.name, back.domain, back.qids, back.qrels, back.doc_ids, back.query_split) == (
        te.name, te.domain, te.qids, te.qrels, te.doc_ids, te.query_split)
    assert back.q_small is None and np.array_equal(back.q_large, te.q_large)
    assert np.array_equal(back.docs_small, te.docs_small)


def test_training_check_from_a_vectors_file_matches_the_cache(tmp_path, capsys):
    common = ["--cpu-only", "--tasks", "HPO-Synonyms", "--n-texts", "4", "--batch-size", "4",
              "--align-epochs", "1", "--label-epochs", "1", "--retrieval-docs", "200"]
    vectors = tmp_path / "smoke.npz"
    assert gpu_check.main(["--tasks", "HPO-Synonyms", "--save-vectors", str(vectors)]) == 0
    capsys.readouterr()
    assert gpu_check.main(common) == 0
    through_cache = json.loads(capsys.readouterr().out)
    assert gpu_check.main(common + ["--vectors", str(vectors)]) == 0
    from_file = json.loads(capsys.readouterr().out)
    for result in (from_file, through_cache):
        result["train"]["cpu"].pop("seconds")
    assert from_file["train"] == through_cache["train"]
    assert from_file["train_vectors"]["tasks"] == ["HPO-Synonyms"]
    assert from_file["train_vectors"]["large_model"] == "minilm-l6"


def test_weights_folder_encodes_like_the_package(tmp_path):
    from era_core.encoders import REGISTRY, load_encoder, resolve_weights
    from era_core.errors import ParamsError

    package = resolve_weights(REGISTRY["minilm-l6"])
    folder = tmp_path / "copy"
    for f in package.rglob("*"):
        if f.is_file():
            (folder / f.relative_to(package)).parent.mkdir(parents=True, exist_ok=True)
            (folder / f.relative_to(package)).symlink_to(f)
    texts = gpu_check.smoke_texts(6, ["HPO-Synonyms"])
    mine = gpu_check.local_encoder("minilm-l6", folder, device="cpu", dtype="float32", max_length=32)
    ref = load_encoder("minilm-l6", device="cpu", dtype="float32", max_length=32, progress=False)
    assert mine.location == folder.resolve() and mine.fingerprint == ref.fingerprint  # same bytes, same fingerprint
    assert np.allclose(mine.encode(texts, batch_size=4, progress=False), ref.encode(texts, batch_size=4, progress=False),
                       atol=1e-6)
    res = gpu_check.encode_check("minilm-l6", texts, [("cpu", "float32")], batch_size=4, max_length=32, weights=folder)
    assert res["cpu/float32"]["texts"] == 6
    with pytest.raises(ParamsError, match="transformers model"):
        gpu_check.local_encoder("minilm-l3-onnx", folder, device="cpu", dtype="float32", max_length=32)
    with pytest.raises(ParamsError, match="config.json"):
        gpu_check.local_encoder("minilm-l6", tmp_path, device="cpu", dtype="float32", max_length=32)
