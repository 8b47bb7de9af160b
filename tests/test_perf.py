"""`make bench` (era_core.perf): quick mode writes every field, and era_core agrees with each reference.

Correctness only: no timing is asserted (the numbers of a quick run on a busy CI box mean nothing).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from era_core import paths, perf
from era_core.errors import ParamsError
from era_core.io import read_json
from era_core.retrieval import topk_search


def _run_perf(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "era_core.perf", *args], cwd=paths.ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = _run_perf("--quick", "--out", str(out / "results"), "--figures", str(out / "figures"), "--no-progress")
    assert proc.returncode == 0, f"perf --quick failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out, read_json(out / "results" / "bench.json")


def test_quick_writes_every_required_field(quick):
    out, report = quick
    for field in perf.REQUIRED_FIELDS:
        assert field in report, field
    assert report["quick"] is True and report["sections_missing"] == []
    for field in ("encode_vs_st_ratio", "encode_fp32_vs_st_ratio", "encode_queries_vs_st_ratio", "search_vs_numpy_ratio", "search_vs_faiss_ratio",
                  "metrics_vs_pytrec_ratio", "search_peak_rss_mb_1m", "phase1_steps_per_s", "ridge_time_s",
                  "zero_shot_cached_s"):
        assert isinstance(report[field], float) and math.isfinite(report[field]) and report[field] > 0, field
    # Either an up-to-date `make paper` was timed, or the report says why not.
    make = report["sections"]["cache"]["make_paper"]
    assert report["warm_make_paper_s"] is None or report["warm_make_paper_s"] > 0
    if report["warm_make_paper_s"] is None:
        assert "make -q paper" in make["reason"] or "make" in make["reason"]
    md = (out / "results" / "bench.md").read_text()
    for field in ("encode_vs_st_ratio", "search_vs_numpy_ratio", "metrics_vs_pytrec_ratio", "warm_make_paper_s"):
        assert field in md
    env = report["environment"]
    assert env["threads_requested"] == 2 and env["torch_num_threads"] == 2 and env["threadpools"]


def test_encoder_vectors_agree_with_sentence_transformers(quick):
    _, report = quick
    enc = report["sections"]["encode"]
    assert enc["max_length"] == 256 and enc["batch_size"] == 32
    for kind in ("passages", "queries"):
        assert enc[kind]["cosine_min"] > 0.9999, kind
        assert enc[kind]["fp32_cosine_min"] > 0.9999, kind
    assert report["encode_cosine_min"] > 0.9999
    # The timed default path is the profiles' `dtype: auto`: bf16 autocast where the CPU flags say bf16 is native.
    native = cpuinfo_has_native_bf16()
    assert enc["era_dtype"] == ("bfloat16" if native else "float32")
    assert report["encode_dtype"] == enc["era_precision"] == ("cpu-autocast-bf16" if native else "float32")


def test_search_ids_equal_numpy_and_faiss(quick):
    _, report = quick
    search = report["sections"]["search"]
    assert set(search["sizes"]) == {str(n) for n in perf.QUICK.search_docs}
    for size in search["sizes"].values():
        assert size["ids_vs_numpy"]["not_ties"] == 0
        assert size["ids_vs_faiss"]["not_ties"] == 0
    assert report["search_vs_faiss_ratio"] == min(v["vs_faiss_ratio"] for v in search["sizes"].values())
    mem = search["memory"]
    assert mem["docs"] == perf.QUICK.memory_docs
    assert mem["corpus_mb"] == pytest.approx(perf.QUICK.memory_docs * 384 * 4 / 2**20)
    # The peak holds at least the corpus itself.
    assert report["search_peak_rss_mb_1m"] >= mem["corpus_mb"]


def test_metric_values_equal_pytrec_eval(quick):
    _, report = quick
    m = report["sections"]["metrics"]
    assert m["same_queries"] is True
    assert m["max_abs_diff"] <= 1e-9
    assert m["queries"] == perf.QUICK.metrics_queries


def test_training_and_cache_sections(quick):
    _, report = quick
    t = report["sections"]["training"]
    assert t["dims"] == [768, 384] and t["steps"] > 0
    assert 0 <= t["epoch_to_99pct"] <= t["epochs"]
    # Quick mode trains on the planted pairs; the ridge's hold-out cosine is recomputed here in NumPy.
    assert t["data"].startswith("planted")
    x_tr, y_tr, x_ev, y_ev = (a.astype(np.float64) for a in perf.planted_pairs(perf.QUICK.train_pairs))
    x1 = np.hstack([x_tr, np.ones((len(x_tr), 1))])
    reg = np.full(x1.shape[1], 1e-2)  # AlignmentConfig's ridge_lambda; the bias is not penalised
    reg[-1] = 0.0
    theta = np.linalg.solve(x1.T @ x1 + np.diag(reg), x1.T @ y_tr)
    pred = x_ev @ theta[:-1] + theta[-1]
    cos = np.sum(pred * y_ev, axis=1) / np.linalg.norm(pred, axis=1) / np.linalg.norm(y_ev, axis=1)
    assert report["ridge_eval_cosine"] == pytest.approx(float(cos.mean()), abs=1e-5)
    # AdamW keeps its last epoch: the reported cosine is that epoch's hold-out cosine (1 - eval loss), which
    # training raised from its random start.
    curve = t["eval_cosine_curve"]
    assert len(curve) == t["epochs"] + 1
    assert report["adamw_eval_cosine"] == pytest.approx(curve[-1], abs=1e-5)
    assert curve[-1] > curve[0] + 0.02  # 0.001 -> 0.042 in the three quick epochs
    assert report["zero_shot_cached_loaded_models"] == []


def test_scaling_points_slopes_and_figure(quick):
    out, report = quick
    sc = report["scaling"]
    assert [p["n"] for p in sc["encode"]["points"]] == list(perf.QUICK.scaling_encode)
    assert [p["n"] for p in sc["search"]["points"]] == list(perf.QUICK.scaling_search)
    assert math.isfinite(sc["encode"]["slope"]) and math.isfinite(sc["search"]["slope"])
    pdf = out / "figures" / "bench_scaling.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")


def test_figure_is_byte_stable(tmp_path):
    scaling = {
        "encode": {"model": "m", "unit": "passages", "points": [{"n": 10, "s": 1.0}, {"n": 100, "s": 9.0}], "slope": 0.95},
        "search": {"unit": "documents", "points": [{"n": 10, "s": 0.1}, {"n": 100, "s": 1.2}], "slope": 1.08},
    }
    a = perf.plot_scaling(scaling, tmp_path / "a.pdf").read_bytes()
    b = perf.plot_scaling(scaling, tmp_path / "b.pdf").read_bytes()
    assert a == b


def test_only_reruns_one_section_and_keeps_the_others(quick, tmp_path):
    out, report = quick
    target = tmp_path / "results"
    target.mkdir()
    (target / "bench.json").write_bytes((out / "results" / "bench.json").read_bytes())
    proc = _run_perf("--quick", "--only", "metrics", "--out", str(target), "--figures", str(tmp_path), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = read_json(target / "bench.json")
    assert again["sections"]["encode"] == report["sections"]["encode"]
    assert again["encode_vs_st_ratio"] == report["encode_vs_st_ratio"]
    assert again["sections"]["metrics"]["max_abs_diff"] <= 1e-9


def test_bad_only_names_the_allowed_sections():
    with pytest.raises(ParamsError) as info:
        perf.parse_only("encode,gpu")
    assert "gpu" in str(info.value) and all(s in str(info.value) for s in perf.SECTIONS)
    assert perf.parse_only("scaling,encode") == ["encode", "scaling"]


def test_help_lists_the_options():
    proc = _run_perf("--help")
    assert proc.returncode == 0
    for opt in ("--quick", "--out", "--only", "--threads"):
        assert opt in proc.stdout


def test_numpy_reference_and_tie_check():
    rng = np.random.default_rng(5)
    q, d = perf.unit_rows(7, 16, rng), perf.unit_rows(300, 16, rng)
    ref = perf.numpy_full_sort(q, d, 10, block=3)
    assert np.array_equal(topk_search(q, d, k=10)[1], ref)
    assert perf.compare_ids(ref, ref, q, d) == {"positions_differing": 0, "not_ties": 0}
    # A duplicated document makes a real tie: swapping the two copies is not an error ...
    dup = np.vstack([d, d[ref[0, 0]][None]])
    swapped = ref.copy()
    swapped[0, 0] = len(d)
    assert perf.compare_ids(swapped, ref, q, dup) == {"positions_differing": 1, "not_ties": 0}
    # ... but a different, lower-scoring document is.
    wrong = ref.copy()
    wrong[0, 0] = ref[0, 9]
    assert perf.compare_ids(wrong, ref, q, d)["not_ties"] == 1


def test_synthetic_run_agrees_with_pytrec_eval_and_has_ties():
    import pytrec_eval

    from era_core.metrics import evaluate

    qrels, run = perf.synthetic_run(40, 30, seed=3)
    scores = [s for r in run.values() for s in r.values()]
    assert len(set(scores)) < len(scores)  # ties exist, so the doc-id tie-break is exercised
    ours = evaluate(qrels, run, (1, 10))
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.1,10", "recall.1,10", "recip_rank", "map"}).evaluate(run)
    for q in ours:
        for m, pm in perf._pytrec_names((1, 10)).items():
            assert ours[q][m] == pytest.approx(ref[q][pm], abs=1e-12)


def test_min_cosine_of_identical_and_perturbed_rows():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    assert perf._min_cosine(a, 5 * a) == pytest.approx(1.0, abs=1e-15)
    b = a.copy()
    b[1] = [2.0, 2.0]  # 45 degrees away from [0, 2]
    assert perf._min_cosine(a, b) == pytest.approx(1 / math.sqrt(2), abs=1e-15)
    assert perf._min_cosine(a, -a) == pytest.approx(-1.0, abs=1e-15)


# ----------------------------------------------------------------------------- the precision `auto` picks

NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_tile"}  # the CPU features torch's probes look for


def cpuinfo_flags() -> set[str]:
    """The CPU feature flags the Linux kernel reports (x86 ``flags``, Arm ``Features``)."""
    for line in open("/proc/cpuinfo").read().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpuinfo_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively, read from /proc/cpuinfo rather than from era_core."""
    return bool(cpuinfo_flags() & NATIVE_BF16_FLAGS)


def test_cpu_bf16_probe_agrees_with_proc_cpuinfo():
    from era_core.encoders import cpu_has_native_bf16

    assert cpu_has_native_bf16() is cpuinfo_has_native_bf16()


# dtype="auto" per registry model: (CPU with native bf16, CPU without, CUDA).
AUTO_DTYPES = {
    "minilm-l6": ("bfloat16", "float32", "float32"),
    "mpnet-base": ("bfloat16", "float32", "float32"),
    "minilm-l3-onnx": ("float32", "float32", "float32"),  # ONNX has no bf16 path
    "embeddinggemma-300m": ("bfloat16", "float32", "bfloat16"),
    "potion-base-8m": ("float32", "float32", "float32"),  # static embeddings: no matmuls to speed up
    "qwen3-8b": ("bfloat16", "float32", "bfloat16"),
    "qwen3-0.6b": ("bfloat16", "float32", "float16"),
    "bge-m3": ("bfloat16", "float32", "float32"),
}


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_per_model_and_device(monkeypatch, native):
    from era_core import encoders

    monkeypatch.setattr(encoders, "cpu_has_native_bf16", lambda: native)
    assert set(encoders.REGISTRY) <= set(AUTO_DTYPES)  # a new model needs its row here
    for key, spec in encoders.REGISTRY.items():
        cpu_native, cpu_plain, cuda = AUTO_DTYPES[key]
        assert encoders.auto_dtype(spec, "cpu") == (cpu_native if native else cpu_plain), key
        assert encoders.auto_dtype(spec, "cuda") == encoders.auto_dtype(spec, "cuda:1") == cuda, key


def test_loglog_slope_recovers_a_power_law():
    n = [10, 100, 1000]
    assert perf.loglog_slope(n, [2.0 * x**1.5 for x in n]) == pytest.approx(1.5)
