"""The dry run (`make dry-run`): right counts, 126 MAIR tasks, and never a model or the hub."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from era_core import encoders

from era_core.tools import plan
from era_core.data import DOMAINS, MAIR_TASKS, load_tasks

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_models(monkeypatch):
    """Any attempt to resolve or load a model fails the test."""

    def boom(*args, **kwargs):
        raise AssertionError("the dry run must not load a model")

    monkeypatch.setattr(encoders, "load_encoder", boom)
    # Patched where they are looked up: load_encoder resolves weights in loader, tokenizers in weights.
    monkeypatch.setattr(encoders.loader, "resolve_weights", boom)
    monkeypatch.setattr(encoders.weights, "resolve_weights", boom)
    monkeypatch.setattr(encoders.Encoder, "load", boom)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run_json(capsys, profile: str) -> dict:
    assert plan.main(["--profile", profile, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_smoke_counts_match_the_built_benchmark(capsys, no_models):
    result = run_json(capsys, "smoke")
    units = [u for t in load_tasks("offline-smoke", progress=False) for u in t.units()]
    queries = sum(len(u.qrels) for u in units)
    docs = sum(len(u.corpus) for u in units)
    c = result["counts"]
    assert c["exact"] and (c["units"], c["queries"], c["docs"]) == (len(units), queries, docs)
    assert c["sample"] == sum(min(1000, len(u.corpus)) for u in units)
    by = {(e["scenario"], e["role"]): e for e in result["encoders"]}
    large = by[("configured", "large")]
    assert large["model"] == "minilm-l6" and large["queries"] == queries and large["docs"] == docs
    assert large["cache_bytes"] == (queries + docs) * 384 * 4
    assert by[("configured", "small")]["model"] == "minilm-l3-onnx"
    assert "cpu" in large["hours_kind"]
    expected_hours = docs / 52.0 / 3600 + queries / 203.0 / 3600  # the measured minilm-l6 CPU rates
    assert large["hours"] == pytest.approx(expected_hours)
    assert sorted(result["tasks_by_domain"]) == sorted({u.domain for u in units})


def test_paper_profile_lists_126_tasks_and_mair_totals(capsys, no_models):
    result = run_json(capsys, "paper")
    assert result["n_tasks"] == 126 and result["benchmark"] == "mair"
    assert sum(len(v) for v in result["tasks_by_domain"].values()) == 126
    assert set(result["tasks_by_domain"]) == set(DOMAINS)
    assert result["tasks_by_domain"]["medical"] == [t for t, d in MAIR_TASKS.items() if d == "medical"]
    c = result["counts"]
    assert (c["queries"], c["docs"], c["sample"], c["exact"]) == (10_038, 4_274_916, 126_000, False)
    by = {(e["scenario"], e["role"]): e for e in result["encoders"]}
    assert by[("configured", "large")]["cache_bytes"] == (10_038 + 4_274_916) * 4096 * 4
    assert by[("era-minimum", "large")]["docs"] == 126_000
    assert by[("era-minimum", "small")]["model"] == "qwen3-0.6b"
    g = result["gpu_assumption"]
    expected = 2 * 7_570_000_000 * (126_000 * g["doc_tokens"] + 10_038 * g["query_tokens"])
    expected /= g["peak_tflops"] * 1e12 * g["utilisation"] * 3600
    assert by[("era-minimum", "large")]["hours"] == pytest.approx(expected)
    assert "gpu" in by[("era-minimum", "large")]["hours_kind"]
    assert set(plan.NOTEBOOKS) <= set(result["notebooks"])


def test_text_output_and_overrides(capsys, no_models):
    assert plan.main(["--profile", "paper", "--utilisation", "0.7"]) == 0
    text = capsys.readouterr().out
    for needle in ("126 tasks", "4,274,916", "qwen3-8b", "era-minimum", "0.7 utilisation", "make gpu-check",
                   "params/paper/03_training.yaml"):
        assert needle in text
    assert plan.main(["--profile", "paper", "--utilisation", "2"]) == 2
    assert "--utilisation" in capsys.readouterr().err


def test_cli_runs_fast_without_torch_or_transformers():
    code = ("import sys, era_core.tools.plan as p; p.main(['--profile', 'paper']); "
            "bad = [m for m in ('torch', 'transformers', 'onnxruntime', 'datasets') if m in sys.modules]; "
            "print('HEAVY', bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
