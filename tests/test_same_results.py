"""scripts/same_results.py: the before/after comparison of a refactor's `make paper` outputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from era_core import paths

_spec = importlib.util.spec_from_file_location("same_results", paths.ROOT / "scripts" / "same_results.py")
same_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(same_results)


def _tree(root: Path, *, ndcg: float = 0.5, key: str = "k1", weight: float = 1.0) -> Path:
    (root / "results" / "runs" / "in_domain" / "era").mkdir(parents=True)
    (root / "results" / "tables").mkdir()
    (root / "figures").mkdir()
    run = root / "results" / "runs" / "in_domain" / "era"
    (run / "summary.json").write_text(json.dumps({"config_key": key, "scopes": {"test": {"ndcg@10": ndcg}}}))
    card = json.dumps({"config_key": key, "seed": 42})
    save_file({"weight": torch.full((2, 2), weight)}, str(run / "adapter.safetensors"), metadata={"card": card})
    (root / "results" / "tables" / "main.csv").write_text(f"method,ndcg\nera,{ndcg}\n")
    (root / "figures" / "main.pdf").write_bytes(b"%PDF same")
    (root / "results" / "timing").mkdir()
    (root / "results" / "timing" / "t.json").write_text(json.dumps({"sec": key}))  # skipped: wall-clock
    return root


def test_only_code_hashes_differ_passes(tmp_path, capsys):
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b", key="k2")
    report = same_results.compare(a, b)
    assert report["different"] == report["missing"] == report["extra"] == []
    assert sorted(report["hash_fields_only"]) == ["results/runs/in_domain/era/adapter.safetensors",
                                                  "results/runs/in_domain/era/summary.json"]
    assert same_results.main([str(a), str(b)]) == 0


def test_a_changed_metric_or_weight_is_reported(tmp_path):
    a = _tree(tmp_path / "a")
    b = _tree(tmp_path / "b", ndcg=0.51, weight=1.0 + 1e-7)
    report = same_results.compare(a, b)
    assert sorted(report["different"]) == ["results/runs/in_domain/era/adapter.safetensors",
                                           "results/runs/in_domain/era/summary.json", "results/tables/main.csv"]
    assert same_results.main([str(a), str(b)]) == 1


def test_a_missing_file_is_reported(tmp_path):
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    (b / "figures" / "main.pdf").unlink()
    assert same_results.compare(a, b)["missing"] == ["figures/main.pdf"]
