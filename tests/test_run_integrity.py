"""Runs that stay honest: per-fold lr selection, data-keyed results, per-task Phase 1 samples, checksummed adapters."""

from __future__ import annotations

import copy
import dataclasses
import random
import shutil
import warnings

import numpy as np
import pytest

from era_core import paths
from era_core.cache import CacheCorruptionWarning
from era_core.cache import keys as cache_keys
from era_core.cache.keys import code_version, source_hash
from era_core.data import Task
from era_core.identical_texts import per_task_sample, train_alignment_cached
from era_core.io import read_json
from era_core.paper import runs as runs_module
from era_core.paper.pool import EmbeddingPool
from era_core.paper.protocols import lodo
from era_core.paper.runs import Run, make_run_id, run_dir, run_job, train_method
from era_core.paper.selection import method_config, select_label_lr
from era_core.setup import unit_fingerprint
from era_core.train import alignment_sample


@pytest.fixture(scope="module")
def pool_and_params(smoke_pool):
    # The smoke profile's asymmetric pair on two tasks of two domains (medical, academic).
    pool, cfg = smoke_pool
    assert {u.domain for u in pool.units} == {"medical", "academic"}
    return pool, cfg.with_params(label_epochs=4, label_lr_grid="1e-4,1e-3", seeds="42", train_ratios="0.2",
                                 instruction_settings="forced")


#: The selection these tests run: the sweep's first setting, ratio and seed.
SEL = {"instructions": "forced", "train_ratio": 0.2, "seed": 42}


def _poisoned_pool(pool: EmbeddingPool, domain: str) -> EmbeddingPool:
    """A copy of ``pool`` whose ``domain`` units have NaN query vectors (large and small) in both settings."""
    out = EmbeddingPool(pool.setup, pool.units)
    for setting in ("native", "forced"):
        embs = []
        for te in pool.get(setting):
            if te.domain == domain:
                te = dataclasses.replace(te, q_large=np.full_like(te.q_large, np.nan),
                                         q_small=np.full_like(te.q_small, np.nan))
            embs.append(te)
        out._by_setting[setting] = embs
    return out


def test_fold_selection_never_sees_the_held_out_domain(pool_and_params, tmp_path):
    pool, p = pool_and_params
    fold_units = [u.name for u in pool.units if u.domain != "medical"]
    clean = select_label_lr(pool, p, tmp_path / "clean", ["era", "small_adapter"], **SEL,
                               train_names=fold_units, fold={"held_out": "medical"})
    poisoned = select_label_lr(_poisoned_pool(pool, "medical"), p, tmp_path / "poisoned", ["era", "small_adapter"], **SEL,
                                  train_names=fold_units, fold={"held_out": "medical"})
    assert poisoned == clean
    assert clean["era"]["units"] == fold_units == ["SymPy-API"]
    assert clean["era"]["fold"] == {"held_out": "medical"}
    # and nothing outside the fold was trained or scored during selection
    for summary in (tmp_path / "poisoned").rglob("summary.json"):
        assert set(read_json(summary)["scopes"]["test"]["per_task"]) == {"SymPy-API"}


def test_lodo_records_its_fold_selection_in_era_meta(pool_and_params, tmp_path):
    pool, p = pool_and_params
    q = p.with_params(methods="small_adapter", train_ratio=0.2, instructions="forced", domains="medical")
    [summary] = lodo(pool, q, tmp_path, ["medical"])
    assert summary["train_units"] == ["SymPy-API"]
    meta = read_json(next((tmp_path / "runs" / "lodo").glob("*/era_meta.json")))
    assert meta["label_lr_selection"]["units"] == ["SymPy-API"]
    assert meta["label_lr_selection"]["fold"] == {"held_out": "medical"}


def test_selection_losses_are_the_runs_validation_losses(pool_and_params, tmp_path):
    pool, p = pool_and_params
    sel = select_label_lr(pool, p, tmp_path, ["small_adapter"], **SEL)["small_adapter"]
    embs = pool.get("forced")
    for lr_text, loss in sel["grid"].items():
        _, meta = train_method("small_adapter", embs, pool.units, pool.setup,
                               p.with_params(label_lr=float(lr_text), label_lr_grid=""), 0.2, 42)
        assert loss == pytest.approx(meta["label_result"]["best_val_loss"], rel=1e-6)
    assert sel["chosen"] == float(min(sel["grid"], key=sel["grid"].get))
    assert sel["units"] == [u.name for u in pool.units]


def _with_changed_label(units: list[Task]) -> list[Task]:
    changed = copy.deepcopy(units)
    qid = next(iter(changed[0].qrels))
    doc = next(d for d in changed[0].corpus if d not in changed[0].qrels[qid])
    changed[0].qrels[qid][doc] = 1
    return changed


def test_a_changed_label_reruns_the_run(pool_and_params, tmp_path, monkeypatch):
    pool, p = pool_and_params
    names = tuple(u.name for u in pool.units)
    q = p.with_params(label_lr_grid="")
    first = run_job(Run("in_domain", "small_adapter", 42, 0.2, "forced", names), pool, q, tmp_path)
    # every summary says which machine produced it and what the loader dropped
    assert set(first["hardware"]) >= {"cpu_model", "isa", "blas", "cpu_bf16_autocast", "torch"}
    assert first["dropped_rows"] == {u.name: u.dropped_counts() for u in pool.units}
    calls = []
    real = train_method
    monkeypatch.setattr(runs_module, "train_method", lambda *a, **k: calls.append(1) or real(*a, **k))
    same = run_job(Run("in_domain", "small_adapter", 42, 0.2, "forced", names),
                   EmbeddingPool(pool.setup, copy.deepcopy(pool.units)), q, tmp_path)
    assert same == first and calls == []          # equal data (a fresh copy): served from the finished run
    changed = EmbeddingPool(pool.setup, _with_changed_label(pool.units))
    again = run_job(Run("in_domain", "small_adapter", 42, 0.2, "forced", names), changed, q, tmp_path)
    assert calls == [1]
    assert again["config_key"] != first["config_key"]


def test_unit_fingerprint_sees_every_field():
    base = Task("T", "code", queries={"q1": "a", "q2": "b"}, instructions={"q1": "i"},
                qrels={"q1": {"d1": 1}, "q2": {"d2": 2}}, corpus={"d1": "x", "d2": "y"})
    fp = unit_fingerprint(base)
    variants = [
        dataclasses.replace(base, queries={"q1": "a!", "q2": "b"}),
        dataclasses.replace(base, instructions={"q1": "j"}),
        dataclasses.replace(base, qrels={"q1": {"d1": 2}, "q2": {"d2": 2}}),
        dataclasses.replace(base, qrels={"q2": {"d2": 2}, "q1": {"d1": 1}}),   # query order drives the split
        dataclasses.replace(base, corpus={"d1": "x", "d2": "z"}),
        dataclasses.replace(base, corpus={"d2": "y", "d1": "x"}),              # corpus order gives the rows
        dataclasses.replace(base, domain="legal"),
    ]
    fps = [unit_fingerprint(v) for v in variants]
    assert fp == unit_fingerprint(copy.deepcopy(base))
    assert len({fp, *fps}) == len(variants) + 1


def test_code_version_covers_data_and_the_offline_builders(tmp_path, monkeypatch):
    pkg = tmp_path / "era_core"
    shutil.copytree(paths.ROOT / "era_core", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    base = source_hash(pkg)
    assert base == code_version()  # the copy holds the same sources as the running package
    for rel in ("data/mair.py", "data/offline/common.py", "train/label.py", "paper/runs.py", "methods.py"):
        f = pkg / rel
        original = f.read_bytes()
        f.write_bytes(original + b"\n# edited\n")
        assert source_hash(pkg) != base, rel
        f.write_bytes(original)
    # What only reports, exports or measures is not part of the key: editing it reruns no training.
    for rel in ("paper/report/tables.py", "adapter/router.py", "tools/bench/search.py", "paper/stats.py"):
        f = pkg / rel
        original = f.read_bytes()
        f.write_bytes(original + b"\n# edited\n")
        assert source_hash(pkg) == base, rel
        f.write_bytes(original)
    assert source_hash(pkg) == base


def _unit(name: str, n_docs: int) -> Task:
    return Task(name, "code", corpus={f"{name}-d{i}": f"text {i}" for i in range(n_docs)})


def test_phase1_sample_is_drawn_per_task_across_sub_splits():
    units = [_unit("Multi/a", 5), _unit("Multi/b", 7), _unit("Single", 9)]
    got = per_task_sample(units, samples_per_task=4, seed=3)
    pooled = random.Random(3).sample(range(12), 4)      # the reference samples the merged pool once
    want_a = [r for r in pooled if r < 5]
    want_b = [r - 5 for r in pooled if r >= 5]
    expected = [(n, rows) for n, rows in (("Multi/a", want_a), ("Multi/b", want_b)) if rows]
    expected.append(("Single", alignment_sample([9], 4, seed=3)[0]))
    assert [(u.name, rows) for u, rows in got] == expected
    assert sum(len(rows) for _, rows in got) == 8          # 4 per task, not 4 per sub-split


def test_single_split_tasks_keep_the_reference_sample():
    units = [_unit("A", 30), _unit("B", 3)]
    got = per_task_sample(units, samples_per_task=10, seed=42)
    assert [rows for _, rows in got] == alignment_sample([30, 3], 10, seed=42)


def test_damaged_phase1_adapter_is_retrained(pool_and_params, monkeypatch, tmp_path):
    pool, p = pool_and_params
    monkeypatch.setattr(paths, "ADAPTER_CACHE", tmp_path / "adapters")
    cfg = p.alignment(42, "cpu")
    adapter, meta = train_alignment_cached(pool.units, pool.setup, cfg)
    weights = next((tmp_path / "adapters").rglob("adapter.safetensors"))
    assert meta["adapter_sha256"]
    blob = bytearray(weights.read_bytes())
    blob[-3] ^= 0x01                                     # a flipped bit inside the tensor data: still loadable
    weights.write_bytes(bytes(blob))
    with pytest.warns(CacheCorruptionWarning, match="SHA-256"):
        again, _ = train_alignment_cached(pool.units, pool.setup, cfg)
    assert np.array_equal(again.proj.weight.detach().numpy(), adapter.proj.weight.detach().numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheCorruptionWarning)   # repaired: a clean hit now
        train_alignment_cached(pool.units, pool.setup, cfg)


def test_the_final_run_reuses_the_selection_runs_training(pool_and_params, tmp_path, monkeypatch):
    pool, p = pool_and_params
    sel = select_label_lr(pool, p, tmp_path, ["era"], **SEL)
    chosen = sel["era"]["chosen"]
    fresh_dir = tmp_path / "fresh"
    names = tuple(u.name for u in pool.units)
    fresh = run_job(Run("in_domain", "era", 42, 0.2, "forced", names), pool, method_config(p, "era", sel), fresh_dir)

    def no_training(*args, **kwargs):
        raise AssertionError("the final run trained again instead of reusing the selection run")

    monkeypatch.setattr(runs_module, "train_method", no_training)
    reused = run_job(Run("in_domain", "era", 42, 0.2, "forced", names), pool, method_config(p, "era", sel), tmp_path)
    assert reused == fresh
    run = "era__forced__train0.2__seed42"
    for name in ("adapter.safetensors", "era_meta.json", "summary.json", "per_query.json", "run.trec.gz"):
        assert (run_dir(tmp_path, "in_domain", run) / name).read_bytes() == \
            (run_dir(fresh_dir, "in_domain", run) / name).read_bytes(), name
    selection_run = run_dir(tmp_path, "lr_selection", make_run_id("era", "forced", 0.2, 42, {"lr": f"{chosen:g}"}))
    assert (selection_run / "adapter.safetensors").read_bytes() == \
        (run_dir(tmp_path, "in_domain", run) / "adapter.safetensors").read_bytes()


def test_a_changed_selection_adapter_is_not_reused(pool_and_params, tmp_path, monkeypatch):
    pool, p = pool_and_params
    q = p.with_params(label_lr_grid="")
    names = tuple(u.name for u in pool.units)
    run_job(Run("lr_selection", "small_adapter", 42, 0.2, "forced", names, tags=(("lr", "x"),)), pool, q, tmp_path)
    weights = run_dir(tmp_path, "lr_selection", "small_adapter__forced__train0.2__seed42__lr-x") / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")  # damaged after it was indexed
    calls = []
    real = train_method
    monkeypatch.setattr(runs_module, "train_method", lambda *a, **k: calls.append(1) or real(*a, **k))
    run_job(Run("in_domain", "small_adapter", 42, 0.2, "forced", names), pool, q, tmp_path)
    assert calls == [1]


def test_training_is_identical_on_one_and_two_threads(pool_and_params, tmp_path, monkeypatch):
    # make paper trains two notebooks side by side on one thread each; their adapters must not depend on it.
    import torch

    from era_core import paths

    pool, p = pool_and_params
    embs = pool.get("forced")
    q = p.with_params(label_lr_grid="")
    before = torch.get_num_threads()
    states = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            monkeypatch.setattr(paths, "ADAPTER_CACHE", tmp_path / str(threads))  # Phase 1 trained each time too
            adapter, _ = train_method("era", embs, pool.units, pool.setup, q, 0.2, 42)
            states.append({k: v.clone() for k, v in adapter.state_dict().items()})
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert (tmp_path / "1").is_dir() and (tmp_path / "2").is_dir()


def test_code_version_hashes_the_sources_once_per_process(monkeypatch):
    calls = []
    code_version.cache_clear()
    try:
        monkeypatch.setattr(cache_keys, "source_hash", lambda root: calls.append(root) or "h")
        assert code_version() == code_version() == "h"
        assert len(calls) == 1
    finally:
        monkeypatch.undo()
        code_version.cache_clear()
    assert code_version() == source_hash(paths.ROOT / "era_core")
