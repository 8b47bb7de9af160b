"""One training run, end to end and resumable: train (or reuse an equal training), score, write its files."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from era_core.data import Unit
from era_core.errors import EraError
from era_core.experiments.embeddings import EmbeddingPool
from era_core.experiments.keys import align_config, code_version, config_hash, encoder_identity, label_config
from era_core.experiments.phase1 import query_side_cosine, train_alignment_cached
from era_core.experiments.runs import PER_QUERY_FILE, make_run_id, run_dir, run_is_done, trained_index
from era_core.experiments.scoring import apply_and_score, headline_per_query, summarise, test_qids
from era_core.experiments.setup import Setup, machine
from era_core.io import read_json, sha256_file, write_json
from era_core.methods import get_method
from era_core.trec import QRELS_FILE, RUN_FILE, write_qrels, write_run


def query_side_of(method: str) -> str:
    """Which query vectors a method's adapter reads: ``large``, ``small`` or ``fused`` (both, concatenated)."""
    return get_method(method).query_side


def method_label_config(method: str, p: dict[str, Any], train_ratio: float, seed: int, device: str) -> Any:
    """Phase 2 configuration of ``method``: the parameters' ``label_config`` with what the method fixes itself."""
    return get_method(method).configure(label_config(p, train_ratio, seed, device))


def train_method(method: str, train_embs: list, train_units: list[Unit], setup: Setup, p: dict[str, Any],
                 train_ratio: float, seed: int) -> tuple[Any, dict[str, Any]]:
    """Train one method on the given units and return (adapter, era_meta)."""
    from era_core.seeding import seed_everything
    from era_core.train import train_era

    m = get_method(method)
    seed_everything(seed)
    acfg = align_config(p, seed, setup.device)
    lcfg = method_label_config(method, p, train_ratio, seed, setup.device)
    align_adapter, align_meta = None, None
    if m.phase1:
        align_adapter, align_meta = train_alignment_cached(train_units, setup, acfg)
    result = train_era(train_embs, m.mode, align_cfg=acfg, label_cfg=lcfg,
                       alignment_adapter=align_adapter, progress=setup.progress)
    meta = dict(result.meta)
    meta["method"] = method
    if align_meta is not None:
        meta["alignment_result"] = {"reused_from_cache": align_meta["key"], "history": align_meta["history"],
                                    "eval_cosine": align_meta["eval_cosine"], "best_epoch": align_meta["best_epoch"],
                                    "query_cosine": query_side_cosine(align_adapter, train_embs)}
    return result.adapter, meta


def training_key(method: str, p: dict[str, Any], train_ratio: float, seed: int, instructions: str,
                 train_units: dict[str, str], setup: Setup) -> str:
    """Hash of everything that decides a trained adapter, and nothing it is scored on.

    An lr-selection run and the final run at the chosen lr (same seed and ratio) train the same
    adapter; so do the pair study and 03_training on the default pair. They share one training.
    """
    uses_alignment = get_method(method).phase1
    acfg = asdict(align_config(p, seed, setup.device))
    lcfg = asdict(method_label_config(method, p, train_ratio, seed, setup.device))
    for cfg in (acfg, lcfg):
        cfg.pop("device")  # as in the run key: a run's numbers are tied to its hardware record, not its key
    return config_hash({"method": method, "instructions": instructions, "train_units": train_units,
                        "alignment": acfg if uses_alignment else None, "label": lcfg,
                        "benchmark": setup.benchmark, "encoders": encoder_identity(setup), "code": code_version()})


def load_trained(results: Path, train_key: str) -> tuple[Any, dict[str, Any], str] | None:
    """(adapter, meta, run) of an earlier run that trained exactly this configuration, or None.

    Served only while that run's adapter still has the bytes recorded when it was indexed.
    """
    from era_core.adapter import load_any_adapter

    index = trained_index(results, train_key)
    if not index.exists():
        return None
    entry = read_json(index)
    weights = results / "runs" / entry["run"] / "adapter.safetensors"
    if not weights.exists() or sha256_file(weights) != entry["adapter_sha256"]:
        return None  # that run was redone with another configuration since: train afresh
    return load_any_adapter(weights), entry["meta"], entry["run"]


def split_timing(obj: Any) -> tuple[Any, dict[str, float]]:
    """Remove wall-clock fields (``*elapsed_sec``) from a nested dict, returning (clean copy, {path: seconds}).

    Timings live in ``results/timing/`` so that every other results file is byte-identical across runs.
    """
    found: dict[str, float] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if isinstance(k, str) and k.endswith("elapsed_sec"):
                    found[f"{path}{k}"] = v
                else:
                    out[k] = walk(v, f"{path}{k}.")
            return out
        if isinstance(node, list):
            return [walk(v, f"{path}{i}.") for i, v in enumerate(node)]
        return node

    return walk(obj, ""), found


def _run_config(protocol: str, method: str, seed: int, train_ratio: float, instructions: str,
                train_names: list[str], eval_units: list[Unit], pool: EmbeddingPool, p: dict[str, Any],
                run_tags: dict[str, Any]) -> dict[str, Any]:
    """Everything a run's results depend on; its hash is the run key (``config_key``)."""
    fingerprints = pool.fingerprints()
    return {
        "protocol": protocol, "method": method, "seed": seed, "train_ratio": train_ratio,
        "instructions": instructions, "train_units": {n: fingerprints[n] for n in train_names},
        "eval_units": {u.name: fingerprints[u.name] for u in eval_units},
        "params": {k: v for k, v in p.items() if k not in ("progress", "seeds", "methods", "train_ratios",
                                                           "instruction_settings", "domains", "device")},
        "encoders": encoder_identity(pool.setup), "code": code_version(), **run_tags,
    }


def _train_or_reuse(method: str, train_key: str, train_embs: list, train_units: list[Unit], pool: EmbeddingPool,
                    p: dict[str, Any], train_ratio: float, seed: int, results: Path,
                    ) -> tuple[Any, dict[str, Any], dict[str, Any], bool]:
    """``(adapter, era_meta, timings, reused)``: an earlier run's equal training if indexed, else a new one."""
    t0 = time.perf_counter()
    reused = load_trained(results, train_key)
    if reused is None:
        adapter, raw_meta = train_method(method, train_embs, train_units, pool.setup, p, train_ratio, seed)
        raw_meta, timings = split_timing(raw_meta)
    else:
        adapter, raw_meta, source = reused
        timings = {"reused_training_of": source}
    return adapter, raw_meta, {"train_elapsed_sec": time.perf_counter() - t0, **timings}, reused is not None


def _protocol_keep(meta: dict[str, Any], split_test: dict[str, list[str]], per_query: dict[str, Any],
                   train_names: list[str], eval_set: set[str]) -> dict[str, list[str]]:
    """The ``protocol`` scope's queries: training units on their test split, unseen units on all labelled queries.

    Refuses to score when the trainer's test split of a unit differs from the evaluator's (leaked queries).
    """
    trained_test = meta.get("label_result", {}) or {}
    trained_test = trained_test.get("eval_query_ids_per_task") or {n: split_test[n] for n in train_names}
    for n in (n for n in train_names if n in eval_set):
        if sorted(trained_test[n]) != sorted(split_test[n]):
            raise EraError(f"the trainer's test split of {n} differs from the evaluator's; refusing to score leaked queries")
    return {u: (split_test[u] if u in set(train_names) else list(per_query[u])) for u in per_query}


def _write_run(folder: Path, adapter: Any, meta: dict[str, Any], per_query: dict[str, Any],
               runs: dict[str, dict], embs: list, split_test: dict[str, list[str]], method: str, run_id: str,
               setup: Setup) -> Path:
    """Write a finished run's adapter, meta, per-query scores and TREC files (the caller writes ``summary.json`` last)."""
    from era_core.adapter import save_adapter

    weights = save_adapter(adapter, folder / "adapter.safetensors",
                           {"method": method, "large_model": setup.large_model, "small_model": setup.small_model,
                            "query_side": query_side_of(method)})
    write_json(folder / "era_meta.json", meta)
    write_json(folder / PER_QUERY_FILE, headline_per_query(per_query, split_test))
    # The test-split top-100 and its qrels in TREC format, readable by trec_eval, ir_measures and ranx.
    write_run(folder / RUN_FILE, runs, tag=run_id, keep=split_test)
    write_qrels(folder / QRELS_FILE, {te.name: te.qrels for te in embs}, keep=split_test)
    return weights


def run_job(protocol: str, method: str, *, seed: int, train_ratio: float, instructions: str,
            train_names: list[str], pool: EmbeddingPool, p: dict[str, Any], results: Path,
            run_tags: dict[str, Any] | None = None, extra_meta: dict[str, Any] | None = None,
            eval_names: list[str] | None = None) -> dict[str, Any]:
    """Train ``method`` on the units named ``train_names`` and score the units ``eval_names`` (default: every
    unit of the pool); resumable.

    ``run_tags`` (e.g. ``{"lr": "1e-05"}``, ``{"held_out": "code"}``) name the run beyond method, ratio and
    seed: they are appended to the run id and recorded in its summary and key. The run key holds a
    content hash of every unit it trains or scores on (``unit_fingerprint``), so changed data never
    serves an old result.

    Returns the run's summary: two scopes, ``test`` (every unit on its test split, comparable across
    methods and protocols) and ``protocol`` (training units on their test split, unseen units on all
    labelled queries, as in the reference's LODO and domain-specific evaluations).
    """
    setup = pool.setup
    run_tags = run_tags or {}
    eval_set = set(eval_names) if eval_names is not None else {u.name for u in pool.units}
    unknown = (set(train_names) | eval_set) - {u.name for u in pool.units}
    if unknown:
        raise EraError(f"units {sorted(unknown)} are not in the pool; this is a bug in the protocol setup")
    eval_units = [u for u in pool.units if u.name in eval_set]
    cfg_obj = _run_config(protocol, method, seed, train_ratio, instructions, train_names, eval_units, pool, p,
                          run_tags)
    cfg_key = config_hash(cfg_obj)
    run_id = make_run_id(method, instructions, train_ratio, seed, run_tags)
    folder = run_dir(results, protocol, run_id)
    done = run_is_done(folder, cfg_key)
    if done is not None:
        return done

    by_name = {te.name: te for te in pool.get(instructions)}
    embs = [by_name[u.name] for u in eval_units]
    train_embs = [by_name[n] for n in train_names]
    train_units = [u for u in pool.units if u.name in set(train_names)]
    train_key = training_key(method, p, train_ratio, seed, instructions, cfg_obj["train_units"], setup)
    adapter, raw_meta, timings, reused = _train_or_reuse(method, train_key, train_embs, train_units, pool, p,
                                                         train_ratio, seed, results)
    meta = {**raw_meta, "training_key": train_key}

    unit_domain = {u.name: u.domain for u in eval_units}
    runs: dict[str, dict] = {}
    per_query = apply_and_score(adapter, embs, query_side=query_side_of(method), unit_domain=unit_domain, runs=runs)
    split_test = test_qids(embs, seed, p["val_ratio"], p["eval_ratio"])
    keep_protocol = _protocol_keep(meta, split_test, per_query, train_names, eval_set)
    summary = {
        "protocol": protocol, "method": method, "seed": seed, "train_ratio": train_ratio,
        "instructions": instructions, "train_units": train_names, **run_tags,
        "config_key": cfg_key,
        **({"phase1": {k: meta["alignment_result"][k] for k in ("eval_cosine", "query_cosine")}}
           if get_method(method).phase1 else {}),
        "dropped_rows": {u.name: u.dropped_counts() for u in eval_units},
        # Bytes match across machines only within one CPU kernel family (README, "Reproducibility").
        "hardware": machine(),
        "scopes": {
            "test": summarise(per_query, unit_domain, split_test),
            "protocol": summarise(per_query, unit_domain, keep_protocol),
        },
    }
    meta.update({"config": cfg_obj, "config_key": cfg_key, **(extra_meta or {})})
    meta, _ = split_timing(meta)
    weights = _write_run(folder, adapter, meta, per_query, runs, embs, split_test, method, run_id, setup)
    write_json(results / "timing" / "runs" / protocol / f"{run_id}.json", timings)
    write_json(folder / "summary.json", summary)  # marks the run complete, so a killed run is redone
    if not reused:
        write_json(trained_index(results, train_key), {"run": f"{protocol}/{run_id}", "meta": raw_meta,
                                                       "adapter_sha256": sha256_file(weights)})
    return summary
