"""One training run of a protocol, end to end and resumable: the ``Run`` record, its folder, train (or reuse an
equal training), score, write.

A run computes its units' query split once (``splits.split_units``) and hands it to the trainer and to the
scorer. Its files under ``results/runs/<protocol>/<run id>/``: ``adapter.safetensors`` and ``era_meta.json``
(``api.save``), ``per_query.json`` (test-split nDCG@10 for paired tests), ``run.trec.gz`` and ``qrels.trec``,
and ``summary.json``, written last, so a killed run is redone.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from era_core import api
from era_core.cache.keys import code_version, config_hash
from era_core.data import Unit
from era_core.errors import EraError
from era_core.instructions import check_instruction_setting
from era_core.io import read_json, sha256_file, write_json
from era_core.methods import get_method
from era_core.paper.config import Config
from era_core.paper.pool import EmbeddingPool
from era_core.paper.provenance import machine
from era_core.identical_texts import query_side_cosine
from era_core.setup import Setup, encoder_identity
from era_core.splits import split_units, test_split
from era_core.trec import QRELS_FILE, RUN_FILE, write_qrels, write_run

#: Per-query nDCG@10 of a run on each evaluation unit's test split (the queries paired tests compare).
PER_QUERY_FILE = "per_query.json"
#: Parameters that say what to run, not how: left out of a run's key (its params record).
_NOT_IN_KEY = ("progress", "seeds", "methods", "train_ratios", "instruction_settings", "domains", "device")


@dataclass(frozen=True)
class Run:
    """One run of a protocol: the method, seed, train ratio and instruction setting, the units it trains on,
    those it is scored on (None: every unit of the pool) and the tags that name it beyond those."""

    protocol: str
    method: str
    seed: int
    train_ratio: float
    instructions: str
    train_names: tuple[str, ...]
    eval_names: tuple[str, ...] | None = None
    tags: tuple[tuple[str, Any], ...] = ()

    @property
    def run_id(self) -> str:
        """The run's folder name under ``results/runs/<protocol>/``."""
        return make_run_id(self.method, self.instructions, self.train_ratio, self.seed, dict(self.tags))

    def folder(self, results: Path) -> Path:
        """Where the run's files live."""
        return run_dir(results, self.protocol, self.run_id)


def make_run_id(method: str, instructions: str, train_ratio: float, seed: int, tags: dict[str, Any]) -> str:
    """The folder name of one run under ``results/runs/<protocol>/`` (``instructions``: the setting's name)."""
    check_instruction_setting(instructions)
    return f"{method}__{instructions}__train{train_ratio:g}__seed{seed}" + "".join(f"__{k}-{v}" for k, v in tags.items())


def run_dir(results: Path, protocol: str, run_id: str) -> Path:
    """Folder of one training run's ``summary.json`` and ``era_meta.json``."""
    return results / "runs" / protocol / run_id


def run_is_done(folder: Path, cfg_key: str) -> dict | None:
    """Return a finished run's summary if it exists and was made with the same configuration, else None."""
    summary = folder / "summary.json"
    if summary.exists():
        data = read_json(summary)
        if data.get("config_key") == cfg_key:
            return data
    return None


def trained_index(results: Path, train_key: str) -> Path:
    """Where a finished training is indexed: which run folder holds its adapter, and its meta."""
    return results / "runs" / "_trained" / f"{train_key}.json"


def train_method(method: str, train_embs: list, train_units: list[Unit], setup: Setup, cfg: Config,
                 train_ratio: float, seed: int, splits: dict[str, dict[str, list[str]]] | None = None,
                 instructions: str = "native") -> tuple[Any, dict[str, Any]]:
    """Train one method on the given units through the API and return (adapter, era_meta)."""
    from era_core.seeding import seed_everything

    m = get_method(method)
    seed_everything(seed)
    acfg = cfg.alignment(seed, setup.device)
    start, start_meta = api.phase1(setup, train_units, acfg) if m.phase1 else (None, None)
    trained = api.fit(setup, train_embs, method, label=cfg.label(None, train_ratio, seed, setup.device),
                      align=acfg, phase1=start, splits=splits, instructions=instructions)
    meta = dict(trained.meta)
    if start_meta is not None:
        meta["alignment_result"] = {"reused_from_cache": start_meta["key"], "history": start_meta["history"],
                                    "eval_cosine": start_meta["eval_cosine"], "best_epoch": start_meta["best_epoch"],
                                    "query_cosine": query_side_cosine(start, train_embs)}
    return trained.adapter, meta


def training_key(method: str, cfg: Config, train_ratio: float, seed: int, instructions: str,
                 train_units: dict[str, str], setup: Setup) -> str:
    """Hash of everything that decides a trained adapter, and nothing it is scored on.

    An lr-selection run and the final run at the chosen lr (same seed and ratio) train the same
    adapter; so do the pair study and 03_training on the default pair. They share one training.
    """
    acfg = asdict(cfg.alignment(seed, setup.device))
    lcfg = asdict(cfg.label(method, train_ratio, seed, setup.device))
    for part in (acfg, lcfg):
        part.pop("device")  # as in the run key: a run's numbers are tied to its hardware record, not its key
    return config_hash({"method": method, "instructions": instructions, "train_units": train_units,
                        "alignment": acfg if get_method(method).phase1 else None, "label": lcfg,
                        "benchmark": setup.benchmark, "encoders": encoder_identity(setup), "code": code_version()})


def reused_training(results: Path, train_key: str) -> tuple[Any, dict[str, Any], str] | None:
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


def _run_config(run: Run, eval_units: list[Unit], pool: EmbeddingPool, cfg: Config) -> dict[str, Any]:
    """Everything a run's results depend on; its hash is the run key (``config_key``)."""
    fingerprints = pool.fingerprints()
    return {
        "protocol": run.protocol, "method": run.method, "seed": run.seed, "train_ratio": run.train_ratio,
        "instructions": run.instructions, "train_units": {n: fingerprints[n] for n in run.train_names},
        "eval_units": {u.name: fingerprints[u.name] for u in eval_units},
        "params": {k: v for k, v in cfg.params.items() if k not in _NOT_IN_KEY},
        "encoders": encoder_identity(pool.setup), "code": code_version(), **dict(run.tags),
    }


def _train_or_reuse(run: Run, train_key: str, train_embs: list, train_units: list[Unit], pool: EmbeddingPool,
                    cfg: Config, splits: dict[str, dict[str, list[str]]], results: Path,
                    ) -> tuple[Any, dict[str, Any], dict[str, Any], bool]:
    """``(adapter, era_meta, timings, reused)``: an earlier run's equal training if indexed, else a new one."""
    t0 = time.perf_counter()
    reused = reused_training(results, train_key)
    if reused is None:
        adapter, raw_meta = train_method(run.method, train_embs, train_units, pool.setup, cfg, run.train_ratio,
                                         run.seed, splits={n: splits[n] for n in run.train_names},
                                         instructions=run.instructions)
        raw_meta, timings = split_timing(raw_meta)
    else:
        adapter, raw_meta, source = reused
        timings = {"reused_training_of": source}
    return adapter, raw_meta, {"train_elapsed_sec": time.perf_counter() - t0, **timings}, reused is not None


def _write_run(folder: Path, trained: Any, scores: Any, embs: list, keep: dict[str, list[str]], run_id: str) -> Path:
    """Write a finished run's adapter, meta, per-query scores and TREC files (the caller writes ``summary.json`` last)."""
    weights = api.save(trained, folder)
    write_json(folder / PER_QUERY_FILE, scores.headline(keep))
    # The test-split top-100 and its qrels in TREC format, readable by trec_eval, ir_measures and ranx.
    write_run(folder / RUN_FILE, scores.runs, tag=run_id, keep=keep)
    write_qrels(folder / QRELS_FILE, {te.name: te.qrels for te in embs}, keep=keep)
    return weights


def _eval_units(run: Run, pool: EmbeddingPool) -> list[Unit]:
    """The units ``run`` scores (every unit of the pool by default), after checking all its names exist."""
    eval_set = set(run.eval_names) if run.eval_names is not None else {u.name for u in pool.units}
    unknown = (set(run.train_names) | eval_set) - {u.name for u in pool.units}
    if unknown:
        raise EraError(f"units {sorted(unknown)} are not in the pool; this is a bug in the protocol setup")
    return [u for u in pool.units if u.name in eval_set]


def _summary(run: Run, cfg_key: str, meta: dict[str, Any], eval_units: list[Unit],
             scopes: dict[str, Any]) -> dict[str, Any]:
    """A run's ``summary.json``: what ran, its Phase 1 cosines, the rows its units dropped, the machine, its scores."""
    return {
        "protocol": run.protocol, "method": run.method, "seed": run.seed, "train_ratio": run.train_ratio,
        "instructions": run.instructions, "train_units": list(run.train_names), **dict(run.tags),
        "config_key": cfg_key,
        **({"phase1": {k: meta["alignment_result"][k] for k in ("eval_cosine", "query_cosine")}}
           if get_method(run.method).phase1 else {}),
        "dropped_rows": {u.name: u.dropped_counts() for u in eval_units},
        # Bytes match across machines only within one CPU kernel family (README, "Reproducibility").
        "hardware": machine(),
        "scopes": scopes,
    }


def run_job(run: Run, pool: EmbeddingPool, cfg: Config, results: Path,
            extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``run.method`` on ``run.train_names`` and score ``run.eval_names`` (default: every unit of the pool);
    resumable.

    The run key holds a content hash of every unit it trains or scores on (``unit_fingerprint``), so changed
    data never serves an old result. Returns the run's summary: two scopes, ``test`` (every unit on its test
    split, comparable across methods and protocols) and ``protocol`` (training units on their test split,
    unseen units on all labelled queries, as in the reference's LODO and domain-specific evaluations).
    """
    setup = pool.setup
    eval_units = _eval_units(run, pool)
    eval_set = {u.name for u in eval_units}
    cfg_obj = _run_config(run, eval_units, pool, cfg)
    cfg_key = config_hash(cfg_obj)
    folder = run.folder(results)
    done = run_is_done(folder, cfg_key)
    if done is not None:
        return done

    by_name = {te.name: te for te in pool.get(run.instructions)}
    embs = [by_name[u.name] for u in eval_units]
    train_embs = [by_name[n] for n in run.train_names]
    train_units = [u for u in pool.units if u.name in set(run.train_names)]
    # The query split, computed once: the trainer trains on it and the scorer scores its test part.
    splits = split_units(embs + [te for te in train_embs if te.name not in eval_set], run.train_ratio,
                         cfg.val_ratio, cfg.eval_ratio, run.seed)
    train_key = training_key(run.method, cfg, run.train_ratio, run.seed, run.instructions, cfg_obj["train_units"],
                             setup)
    adapter, raw_meta, timings, reused = _train_or_reuse(run, train_key, train_embs, train_units, pool, cfg, splits,
                                                         results)
    meta = {**raw_meta, "training_key": train_key}
    trained = api.TrainedAdapter(adapter, setup.large_model, setup.small_model, method=run.method,
                                 max_length=setup.max_length, instructions=run.instructions, meta=meta)
    scores = api.evaluate(trained, embs)
    keep_test = test_split({te.name: splits[te.name] for te in embs})
    # Units a run trains on are scored on their test split; units it never saw on every labelled query.
    keep_protocol = {u: (keep_test[u] if u in set(run.train_names) else list(scores.per_query[u]))
                     for u in scores.per_query}
    summary = _summary(run, cfg_key, meta, eval_units, {"test": scores.summary(keep_test),
                                                         "protocol": scores.summary(keep_protocol)})
    meta.update({"config": cfg_obj, "config_key": cfg_key, **(extra_meta or {})})
    trained.meta, _ = split_timing(meta)
    weights = _write_run(folder, trained, scores, embs, keep_test, run.run_id)
    write_json(results / "timing" / "runs" / run.protocol / f"{run.run_id}.json", timings)
    write_json(folder / "summary.json", summary)  # marks the run complete, so a killed run is redone
    if not reused:
        write_json(trained_index(results, train_key), {"run": f"{run.protocol}/{run.run_id}", "meta": raw_meta,
                                                       "adapter_sha256": sha256_file(weights)})
    return summary
