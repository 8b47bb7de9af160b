"""The paper's protocols: zero-shot, the in-domain sweep, leave-one-domain-out and domain-specific.

Each protocol reads embeddings through the cache (so only the first run encodes), trains with
``era_core.train``, scores with ``retrieval`` + ``metrics``, and returns plain dictionaries that
the notebooks write to ``results/`` with ``era_core.io``.

Scoring scopes: every method, baselines included, is scored per task on the *same* test split
(``scope="test"``), fixing the reference's mix of test-split adapters and all-query baselines
(spec §9.6). Tasks that a model did not train on are also scored on all labelled queries
(``scope="all"``), which is the reference's protocol for LODO and domain-specific runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from tqdm.auto import tqdm

from era_core import paths
from era_core.cache import CacheCorruptionWarning, embed_texts
from era_core.data import DOMAINS, Task, load_tasks
from era_core.errors import EraError, ParamsError
from era_core.io import dumps_json, read_json, sha256_file, write_json
from era_core.metrics import evaluate
from era_core.params import parse_pairs, resolve_tasks, split_csv
from era_core.retrieval import run_from_topk, topk_search
from era_core.splits import split_queries
from era_core.trec import QRELS_FILE, RUN_FILE, write_qrels, write_run

HEADLINE = "ndcg@10"
#: Per-query nDCG@10 of a run on each evaluation unit's test split (the queries paired tests compare).
PER_QUERY_FILE = "per_query.json"
METHOD_MODES = {"era": "both", "label_only": "label_only", "alignment_only": "alignment_only",
                "small_adapter": "small_adapter", "fused": "fused", "residual_mlp": "residual_mlp"}


# ---------------------------------------------------------------- setup and encoders


@dataclass(frozen=True)
class Setup:
    """Which benchmark, tasks and encoders an experiment uses, and how encoders run."""

    benchmark: str
    tasks: tuple[str, ...]
    large_model: str
    small_model: str
    max_length: int = 128
    batch_size: int = 32
    device: str = "cpu"
    dtype: str = "float32"
    progress: bool = True

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> "Setup":
        """Build a Setup from a validated notebook parameter dict."""
        return cls(
            benchmark=p["benchmark"],
            tasks=tuple(resolve_tasks(p["benchmark"], p["tasks"])),
            large_model=p["large_model"],
            small_model=p["small_model"],
            max_length=p["max_length"],
            batch_size=p["batch_size"],
            device=resolve_device(p["device"]),
            dtype=p["dtype"],
            progress=p["progress"],
        )


@functools.lru_cache(maxsize=1)
def machine() -> dict[str, Any]:
    """``hardware.describe()`` of this process's machine (read once)."""
    from era_core.hardware import describe

    return describe()


def resolve_device(device: str) -> str:
    """Map ``auto`` to ``cuda`` when available, else ``cpu``; refuse ``cuda`` on a machine without it."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ParamsError("device='cuda' was requested but torch sees no CUDA device; use device='cpu' or 'auto'")
    return device


_ENCODERS: dict[tuple, Any] = {}


def get_encoder(key: str, setup: Setup) -> Any:
    """Return a (lazily loaded, memoised) encoder: building it never loads the weights."""
    from era_core.encoders import load_encoder

    # "auto" lets the encoder pick (its registry dtype on CUDA; bf16 on CPUs with native bf16, else fp32).
    memo = (key, setup.device, setup.dtype, setup.max_length)
    if memo not in _ENCODERS:
        _ENCODERS[memo] = load_encoder(key, device=setup.device, dtype=setup.dtype, max_length=setup.max_length)
    return _ENCODERS[memo]


def load_units(setup: Setup) -> list[Task]:
    """Load the setup's tasks and flatten them into evaluation units (sub-splits keep their own corpus)."""
    tasks = load_tasks(setup.benchmark, list(setup.tasks), progress=setup.progress)
    return [u for t in tasks for u in t.units()]


def unit_task(unit: Task) -> str:
    """The task a unit belongs to (a sub-split is named ``task/sub``)."""
    return unit.name.split("/", 1)[0]


def unit_fingerprint(unit: Task) -> str:
    """SHA-256 of what a unit feeds a run: its name, domain, queries, instructions, qrels, document ids and texts.

    Order is kept wherever it matters downstream (query order drives the split, document order the
    corpus rows), so a rebuilt benchmark that keeps task names but changes any label or text gets a
    new run key instead of serving an old ``summary.json``.
    """
    h = hashlib.sha256()
    parts = (unit.name, unit.domain, list(unit.queries.items()), list(unit.instructions.items()),
             list(unit.qrels.items()), list(unit.corpus.items()))
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def unit_fingerprints(units: Iterable[Task]) -> dict[str, str]:
    """``{unit name: unit_fingerprint}`` of each unit, in the given order."""
    return {u.name: unit_fingerprint(u) for u in units}


# ---------------------------------------------------------------- embeddings


def query_inputs(unit: Task, use_instructions: bool) -> tuple[list[str], list[str], list[str] | None]:
    """Labelled query ids, their texts and (if on) their instructions, in dataset order."""
    qids = unit.labelled_qids()
    texts = [unit.queries[q] for q in qids]
    instructions = [unit.instructions.get(q, "") for q in qids] if use_instructions else None
    return qids, texts, instructions


def embed_queries(key: str, unit: Task, setup: Setup, use_instructions: bool) -> np.ndarray:
    """Labelled-query vectors of one unit for encoder ``key`` (cached)."""
    _, texts, instructions = query_inputs(unit, use_instructions)
    return embed_texts(
        get_encoder(key, setup), texts, role="query", instructions=instructions,
        batch_size=setup.batch_size, progress=setup.progress,
    )


def embed_corpus(key: str, unit: Task, setup: Setup, rows: list[int] | None = None) -> np.ndarray:
    """Corpus vectors of one unit for encoder ``key`` (cached); ``rows`` selects a subset of documents."""
    docs = list(unit.corpus.values())
    if rows is not None:
        docs = [docs[i] for i in rows]
    return embed_texts(get_encoder(key, setup), docs, role="document", batch_size=setup.batch_size, progress=setup.progress)


def task_embeddings(units: list[Task], setup: Setup, use_instructions: bool, *, need_small_queries: bool = True) -> list:
    """Build ``train.TaskEmbeddings`` for every unit: large queries, small queries and the small corpus."""
    from era_core.train import TaskEmbeddings

    out = []
    for unit in tqdm(units, desc="embeddings", disable=not setup.progress):
        qids, _, _ = query_inputs(unit, use_instructions)
        out.append(
            TaskEmbeddings(
                name=unit.name,
                domain=unit.domain,
                qids=qids,
                qrels={q: unit.qrels[q] for q in qids},
                doc_ids=list(unit.corpus),
                q_large=embed_queries(setup.large_model, unit, setup, use_instructions),
                q_small=embed_queries(setup.small_model, unit, setup, use_instructions) if need_small_queries else None,
                docs_small=embed_corpus(setup.small_model, unit, setup),
            )
        )
    return out


# ---------------------------------------------------------------- scoring


def score_unit(queries: np.ndarray, docs: np.ndarray, qids: list[str], doc_ids: list[str],
               qrels: dict[str, dict[str, int]], k: int = 100,
               run_out: dict[str, dict[str, float]] | None = None) -> dict[str, dict[str, float]]:
    """Exact top-k search then per-query metrics for one unit (all its labelled queries).

    ``run_out``, when given, receives the top-k run ``{qid: {doc_id: score}}`` (for TREC run files).
    """
    if len(qids) == 0:
        return {}
    scores, idx = topk_search(queries, docs, k=k, doc_ids=doc_ids)
    run = run_from_topk(qids, doc_ids, scores, idx)
    if run_out is not None:
        run_out.update(run)
    return evaluate({q: qrels[q] for q in qids}, run)


def test_qids(units: Iterable, seed: int, val_ratio: float = 0.1, eval_ratio: float = 0.5) -> dict[str, list[str]]:
    """Each unit's test split: independent of the train ratio (spec §3.2.1), so one split serves every method."""
    out = {}
    for u in units:
        qids = u.qids if hasattr(u, "qids") else u.labelled_qids()
        out[u.name] = split_queries(qids, 0.1, val_ratio, eval_ratio, seed=seed)[2] if qids else []
    return out


def headline_per_query(per_query: dict[str, dict[str, dict[str, float]]],
                       keep: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """``{unit: {qid: nDCG@10}}`` of the kept (test-split) queries: what paired tests over queries need."""
    return {unit: {q: per_query[unit][q][HEADLINE] for q in keep.get(unit, []) if q in per_query[unit]}
            for unit in per_query}


def summarise(per_query: dict[str, dict[str, dict[str, float]]], unit_domain: dict[str, str],
              keep: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Aggregate per-query metrics of units into per-task, per-domain and overall means.

    Task value = mean over the task's scored queries across its sub-splits (the official MAIR
    weighting inside a task). ``overall`` and ``per_domain`` are macro means over tasks (the
    reference's aggregate); ``overall_query_weighted`` weights tasks by query count (MAIR's).
    """
    task_rows: dict[str, list[dict[str, float]]] = {}
    task_domain: dict[str, str] = {}
    for unit, rows in per_query.items():
        chosen = rows if keep is None else {q: rows[q] for q in keep.get(unit, []) if q in rows}
        task = unit.split("/", 1)[0]
        task_domain[task] = unit_domain[unit]
        task_rows.setdefault(task, []).extend(chosen.values())
    per_task, n_queries = {}, {}
    for task, rows in task_rows.items():
        if not rows:
            continue
        names = sorted(rows[0])
        per_task[task] = {m: float(np.mean([r[m] for r in rows])) for m in names}
        n_queries[task] = len(rows)
    per_domain = {}
    for d in DOMAINS:
        ts = [t for t in per_task if task_domain[t] == d]
        if ts:
            per_domain[d] = {m: float(np.mean([per_task[t][m] for t in ts])) for m in per_task[ts[0]]}
    overall = {m: float(np.mean([v[m] for v in per_task.values()])) for m in next(iter(per_task.values()), {})}
    total = sum(n_queries.values())
    weighted = {m: float(sum(per_task[t][m] * n_queries[t] for t in per_task) / total) for m in overall} if total else {}
    return {"per_task": per_task, "n_queries": n_queries, "per_domain": per_domain, "overall": overall,
            "overall_query_weighted": weighted, "task_domain": {t: task_domain[t] for t in per_task}}


# ---------------------------------------------------------------- zero-shot


def zero_shot(setup: Setup, models: list[str], *, use_instructions: bool, seeds: list[int],
              val_ratio: float = 0.1, eval_ratio: float = 0.5,
              results: Path | None = None) -> tuple[list[dict], dict[str, float]]:
    """Score each model on both sides (no adapter); one record per model × scope (× seed for the test scope).

    With ``results``, each model's top-100 over all labelled queries and the qrels are written as TREC
    files to ``results/runs/zero_shot/<model>__inst<on|off>/``.

    Returns the records and the measured query-encoding milliseconds per query of each model
    (timing lives apart from results so results stay byte-identical across runs).
    """
    units = load_units(setup)
    unit_domain = {u.name: u.domain for u in units}
    records, ms_per_query = [], {}
    for key in models:
        per_query, runs, n_q, t_q = {}, {}, 0, 0.0
        for unit in tqdm(units, desc=f"zero-shot {key}", disable=not setup.progress):
            qids, _, _ = query_inputs(unit, use_instructions)
            t0 = time.perf_counter()
            q = embed_queries(key, unit, setup, use_instructions)
            t_q += time.perf_counter() - t0
            n_q += len(qids)
            d = embed_corpus(key, unit, setup)
            per_query[unit.name] = score_unit(q, d, qids, list(unit.corpus), unit.qrels,
                                              run_out=runs.setdefault(unit.name, {}))
        ms_per_query[key] = 1000.0 * t_q / max(n_q, 1)
        if results is not None:
            folder = run_dir(results, "zero_shot", f"{key}__inst{'on' if use_instructions else 'off'}")
            write_run(folder / RUN_FILE, runs, tag=f"{key}-zero-shot")
            write_qrels(folder / QRELS_FILE, {u.name: u.qrels for u in units})
        base = {"encoder": key, "instructions": "on" if use_instructions else "off", "train_ratio": None}
        records.append({**base, "scope": "all", "seed": None, **summarise(per_query, unit_domain)})
        for seed in seeds:
            keep = test_qids(units, seed, val_ratio, eval_ratio)
            records.append({**base, "scope": "test", "seed": seed, **summarise(per_query, unit_domain, keep),
                            "per_query": headline_per_query(per_query, keep)})
    return records, ms_per_query


# ---------------------------------------------------------------- Phase 1


def config_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-serialisable configuration."""
    return hashlib.sha256(dumps_json(obj).encode()).hexdigest()[:16]


def per_task_sample(units: list[Task], samples_per_task: int, seed: int) -> list[tuple[Task, list[int]]]:
    """Phase 1's document sample, drawn per *task* as in the reference: a multi-split task's sub-split
    corpora are pooled (in unit order) and sampled once; returns ``(unit, rows of that unit's corpus)``
    pairs, rows in sample order, units without sampled rows left out. Single-split tasks get exactly
    ``alignment_sample``'s rows."""
    from era_core.train import alignment_sample

    by_task: dict[str, list[Task]] = {}
    for u in units:
        by_task.setdefault(unit_task(u), []).append(u)
    samples = alignment_sample([sum(len(u.corpus) for u in us) for us in by_task.values()], samples_per_task, seed=seed)
    out: list[tuple[Task, list[int]]] = []
    for members, rows in zip(by_task.values(), samples):
        start = 0
        for u in members:
            stop = start + len(u.corpus)
            mine = [r - start for r in rows if start <= r < stop]
            if mine:
                out.append((u, mine))
            start = stop
    return out


def alignment_pairs(units: list[Task], setup: Setup, samples_per_task: int, eval_ratio: float, seed: int):
    """Encode only the sampled documents with the large model (spec §9.11) and pair them with small-model vectors."""
    from era_core.train import alignment_holdout

    xs, ys = [], []
    large = get_encoder(setup.large_model, setup)
    for unit, rows in tqdm(per_task_sample(units, samples_per_task, seed), desc="alignment sample",
                           disable=not setup.progress):
        # When the zero-shot run already encoded this corpus with the large model, index it instead of
        # encoding the sample again; otherwise only the sample goes through the large model.
        full = embed_texts(large, list(unit.corpus.values()), role="document", lookup_only=True)
        xs.append(full[rows] if full is not None else embed_corpus(setup.large_model, unit, setup, rows=rows))
        ys.append(embed_corpus(setup.small_model, unit, setup)[rows])
    x, y = np.concatenate(xs), np.concatenate(ys)
    tr, ev = alignment_holdout(len(x), eval_ratio, seed=seed)
    return x[tr], y[tr], x[ev], y[ev]


def align_config(p: dict[str, Any], seed: int, device: str):
    """Phase 1 configuration from notebook parameters."""
    from era_core.train import AlignmentConfig

    return AlignmentConfig(
        samples_per_task=p["align_samples_per_task"], eval_ratio=p["align_eval_ratio"], loss=p["align_loss"],
        lr=p["align_lr"], weight_decay=p["align_weight_decay"], batch_size=p["align_batch_size"],
        epochs=p["align_epochs"], seed=seed, init=p["align_init"], device=device,
    )


def label_config(p: dict[str, Any], train_ratio: float, seed: int, device: str):
    """Phase 2 configuration from notebook parameters."""
    from era_core.train import LabelConfig

    return LabelConfig(
        train_ratio=train_ratio, val_ratio=p["val_ratio"], eval_ratio=p["eval_ratio"],
        num_negatives=p["num_negatives"], strategy=p["negative_strategy"], top_k=p["hard_negative_top_k"],
        margin=p["hard_negative_margin"], lr=p["label_lr"], weight_decay=p["label_weight_decay"],
        batch_size=p["label_batch_size"], epochs=p["label_epochs"], warmup_ratio=p["warmup_ratio"],
        schedule=p["label_schedule"], temperature=p["temperature"], patience=p["label_patience"],
        in_batch_negatives=p["in_batch_negatives"], seed=seed, device=device,
    )


#: Modules whose code decides a trained adapter or its scores; their source is part of every run key,
#: so editing them reruns the affected runs instead of serving stale results.
_CODE_MODULES = ("adapter", "negatives", "train", "splits", "retrieval", "metrics", "experiments", "data")
#: Packages hashed whole: the offline builders decide which texts and labels a task holds.
_CODE_PACKAGES = ("offline",)


def code_version() -> str:
    """Hash of the sources that produce data, adapters and scores (part of run and Phase 1 cache keys)."""
    here = Path(__file__).parent
    files = [here / f"{name}.py" for name in _CODE_MODULES]
    files += [f for pkg in _CODE_PACKAGES for f in sorted((here / pkg).rglob("*.py"))]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(here).as_posix().encode() + b"\x00" + f.read_bytes())
    return h.hexdigest()[:16]


def _encoder_identity(setup: Setup) -> dict[str, Any]:
    return {
        "large": get_encoder(setup.large_model, setup).cache_fields(),
        "small": get_encoder(setup.small_model, setup).cache_fields(),
    }


def train_alignment_cached(units: list[Task], setup: Setup, cfg) -> tuple[Any, dict[str, Any]]:
    """Phase 1, reused across a train-ratio sweep through the adapter cache keyed by its full configuration (§3.3)."""
    from era_core.adapter import load_adapter, save_adapter
    from era_core.train import train_alignment

    key_obj = {"phase": "alignment", "config": asdict(cfg), "units": unit_fingerprints(units),
               "benchmark": setup.benchmark, "encoders": _encoder_identity(setup), "code": code_version()}
    key_obj["config"].pop("device", None)
    key = config_hash(key_obj)
    folder = paths.ADAPTER_CACHE / "alignment" / key
    weights, meta_path = folder / "adapter.safetensors", folder / "meta.json"
    if weights.exists() and meta_path.exists():
        meta = read_json(meta_path)
        if meta.get("key") == key:
            # Like embeddings, a cached Phase 1 adapter is served only when its bytes match the checksum
            # recorded when it was written; a damaged file is retrained, not trusted.
            if meta.get("adapter_sha256") == sha256_file(weights):
                return load_adapter(weights), meta
            warnings.warn(f"Phase 1 adapter {weights} does not match its recorded SHA-256; retraining it",
                          CacheCorruptionWarning, stacklevel=2)
    x_tr, y_tr, x_ev, y_ev = alignment_pairs(units, setup, cfg.samples_per_task, cfg.eval_ratio, cfg.seed)
    result = train_alignment(x_tr, y_tr, x_ev, y_ev, cfg, progress=setup.progress)
    meta = {"key": key, "config": key_obj, "history": result.history, "best_epoch": result.best_epoch,
            "best_eval_loss": result.best_eval_loss, "stopped_early": result.stopped_early,
            "eval_cosine": result.eval_cosine, "num_train_texts": int(len(x_tr)), "num_eval_texts": int(len(x_ev)),
            "in_dim": int(x_tr.shape[1]), "out_dim": int(y_tr.shape[1])}
    save_adapter(result.adapter, weights, {"key": key})
    meta["adapter_sha256"] = sha256_file(weights)
    write_json(meta_path, meta)  # written last: its presence marks a complete entry
    return result.adapter, meta


# ---------------------------------------------------------------- adapters: train and score


def apply_and_score(adapter, embs: list, *, query_side: str, unit_domain: dict[str, str],
                    runs: dict[str, dict] | None = None) -> dict[str, dict]:
    """Per-query metrics of every unit with ``adapter`` applied to its query vectors (all labelled queries).

    ``runs``, when given, receives each unit's top-100 run (``{unit: {qid: {doc_id: score}}}``).
    """
    from era_core.adapter import apply_adapter
    from era_core.train import query_vectors

    per_query = {}
    for te in embs:
        q = query_vectors(te, query_side)
        q = apply_adapter(adapter, q) if adapter is not None else q
        per_query[te.name] = score_unit(q, te.docs_small, te.qids, te.doc_ids, te.qrels,
                                        run_out=None if runs is None else runs.setdefault(te.name, {}))
    return per_query


def train_method(method: str, train_embs: list, train_units: list[Task], setup: Setup, p: dict[str, Any],
                 train_ratio: float, seed: int) -> tuple[Any, dict[str, Any]]:
    """Train one method on the given units and return (adapter, era_meta)."""
    from era_core.seeding import seed_everything
    from era_core.train import train_era

    if method not in METHOD_MODES:
        raise ParamsError(f"unknown method {method!r}; allowed values: {', '.join(METHOD_MODES)}")
    seed_everything(seed)
    acfg = align_config(p, seed, setup.device)
    lcfg = label_config(p, train_ratio, seed, setup.device)
    align_adapter, align_meta = None, None
    if method in ("era", "alignment_only", "residual_mlp"):
        align_adapter, align_meta = train_alignment_cached(train_units, setup, acfg)
    result = train_era(train_embs, METHOD_MODES[method], align_cfg=acfg, label_cfg=lcfg,
                       alignment_adapter=align_adapter, progress=setup.progress)
    meta = dict(result.meta)
    meta["method"] = method
    if align_meta is not None:
        meta["alignment_result"] = {"reused_from_cache": align_meta["key"], "history": align_meta["history"],
                                    "eval_cosine": align_meta["eval_cosine"], "best_epoch": align_meta["best_epoch"]}
    return result.adapter, meta


def query_side_of(method: str) -> str:
    """Which query vectors a method's adapter reads: ``large``, ``small`` or ``fused`` (both, concatenated)."""
    from era_core.train import MODE_QUERY_SIDE

    return MODE_QUERY_SIDE[METHOD_MODES[method]]


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


class EmbeddingPool:
    """Memoises ``TaskEmbeddings`` per instruction setting within one notebook run."""

    def __init__(self, setup: Setup, units: list[Task]):
        self.setup, self.units = setup, units
        self._by_setting: dict[bool, list] = {}
        self._fingerprints: dict[str, str] | None = None

    def fingerprints(self) -> dict[str, str]:
        """Content hash of every unit (computed once per pool: units are not modified after loading)."""
        if self._fingerprints is None:
            self._fingerprints = unit_fingerprints(self.units)
        return self._fingerprints

    def get(self, use_instructions: bool) -> list:
        """Embeddings of every unit for one instruction setting (cache-backed)."""
        if use_instructions not in self._by_setting:
            self._by_setting[use_instructions] = task_embeddings(self.units, self.setup, use_instructions)
        return self._by_setting[use_instructions]


def run_job(protocol: str, method: str, *, seed: int, train_ratio: float, use_instructions: bool,
            train_names: list[str], pool: EmbeddingPool, p: dict[str, Any], results: Path,
            label: dict[str, Any] | None = None, extra_meta: dict[str, Any] | None = None,
            eval_names: list[str] | None = None) -> dict[str, Any]:
    """Train ``method`` on the units named ``train_names`` and score the units ``eval_names`` (default: every
    unit of the pool); resumable.

    The run key holds a content hash of every unit it trains or scores on (``unit_fingerprint``), so
    changed data never serves an old result.

    Returns the run's summary: two scopes, ``test`` (every unit on its test split, comparable across
    methods and protocols) and ``protocol`` (training units on their test split, unseen units on all
    labelled queries, as in the reference's LODO and domain-specific evaluations).
    """
    from era_core.adapter import save_adapter

    setup = pool.setup
    label = label or {}
    eval_set = set(eval_names) if eval_names is not None else {u.name for u in pool.units}
    unknown = (set(train_names) | eval_set) - {u.name for u in pool.units}
    if unknown:
        raise EraError(f"units {sorted(unknown)} are not in the pool; this is a bug in the protocol setup")
    eval_units = [u for u in pool.units if u.name in eval_set]
    fingerprints = pool.fingerprints()
    cfg_obj = {
        "protocol": protocol, "method": method, "seed": seed, "train_ratio": train_ratio,
        "instructions": use_instructions, "train_units": {n: fingerprints[n] for n in train_names},
        "eval_units": {u.name: fingerprints[u.name] for u in eval_units},
        "params": {k: v for k, v in p.items() if k not in ("progress", "seeds", "methods", "train_ratios",
                                                           "instruction_settings", "domains", "device")},
        "encoders": _encoder_identity(setup), "code": code_version(), **label,
    }
    cfg_key = config_hash(cfg_obj)
    instr = "on" if use_instructions else "off"
    run_id = make_run_id(method, use_instructions, train_ratio, seed, label)
    folder = run_dir(results, protocol, run_id)
    done = run_is_done(folder, cfg_key)
    if done is not None:
        return done

    by_name = {te.name: te for te in pool.get(use_instructions)}
    embs = [by_name[u.name] for u in eval_units]
    train_embs = [by_name[n] for n in train_names]
    train_units = [u for u in pool.units if u.name in set(train_names)]
    train_key = training_key(method, p, train_ratio, seed, use_instructions, cfg_obj["train_units"], setup)
    t0 = time.perf_counter()
    reused = load_trained(results, train_key)
    if reused is None:
        adapter, raw_meta = train_method(method, train_embs, train_units, setup, p, train_ratio, seed)
        raw_meta, timings = split_timing(raw_meta)
    else:
        adapter, raw_meta, source = reused
        timings = {"reused_training_of": source}
    elapsed = time.perf_counter() - t0
    meta = {**raw_meta, "training_key": train_key}

    unit_domain = {u.name: u.domain for u in eval_units}
    query_side = query_side_of(method)
    runs: dict[str, dict] = {}
    per_query = apply_and_score(adapter, embs, query_side=query_side, unit_domain=unit_domain, runs=runs)
    split_test = test_qids(embs, seed, p["val_ratio"], p["eval_ratio"])
    trained_test = meta.get("label_result", {}) or {}
    trained_test = trained_test.get("eval_query_ids_per_task") or {n: split_test[n] for n in train_names}
    for n in (n for n in train_names if n in eval_set):
        if sorted(trained_test[n]) != sorted(split_test[n]):
            raise EraError(f"the trainer's test split of {n} differs from the evaluator's; refusing to score leaked queries")
    keep_protocol = {u: (split_test[u] if u in set(train_names) else list(per_query[u])) for u in per_query}
    base = {"protocol": protocol, "method": method, "seed": seed, "train_ratio": train_ratio,
            "instructions": instr, "train_units": train_names, **label}
    summary = {
        **base,
        "config_key": cfg_key,
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
    weights = save_adapter(adapter, folder / "adapter.safetensors",
                           {"method": method, "large_model": setup.large_model, "small_model": setup.small_model,
                            "query_side": query_side})
    write_json(folder / "era_meta.json", meta)
    write_json(folder / PER_QUERY_FILE, headline_per_query(per_query, split_test))
    # The test-split top-100 and its qrels in TREC format, readable by trec_eval, ir_measures and ranx.
    write_run(folder / RUN_FILE, runs, tag=run_id, keep=split_test)
    write_qrels(folder / QRELS_FILE, {te.name: te.qrels for te in embs}, keep=split_test)
    write_json(results / "timing" / "runs" / protocol / f"{run_id}.json", {"train_elapsed_sec": elapsed, **timings})
    write_json(folder / "summary.json", summary)  # marks the run complete, so a killed run is redone
    if reused is None:
        write_json(trained_index(results, train_key), {"run": f"{protocol}/{run_id}", "meta": raw_meta,
                                                       "adapter_sha256": sha256_file(weights)})
    return summary


def training_key(method: str, p: dict[str, Any], train_ratio: float, seed: int, use_instructions: bool,
                 train_units: dict[str, str], setup: Setup) -> str:
    """Hash of everything that decides a trained adapter, and nothing it is scored on.

    An lr-selection run and the final run at the chosen lr (same seed and ratio) train the same
    adapter; so do the pair study and 03_training on the default pair. They share one training.
    """
    uses_alignment = method in ("era", "alignment_only", "residual_mlp")
    acfg, lcfg = asdict(align_config(p, seed, setup.device)), asdict(label_config(p, train_ratio, seed, setup.device))
    for cfg in (acfg, lcfg):
        cfg.pop("device")  # as in the run key: a run's numbers are tied to its hardware record, not its key
    return config_hash({"method": method, "instructions": use_instructions, "train_units": train_units,
                        "alignment": acfg if uses_alignment else None, "label": lcfg,
                        "benchmark": setup.benchmark, "encoders": _encoder_identity(setup), "code": code_version()})


def trained_index(results: Path, train_key: str) -> Path:
    """Where a finished training is indexed: which run folder holds its adapter, and its meta."""
    return results / "runs" / "_trained" / f"{train_key}.json"


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


def select_label_lr(pool: EmbeddingPool, p: dict[str, Any], results: Path, methods: list[str],
                    train_names: list[str] | None = None, fold: dict[str, str] | None = None) -> dict[str, Any]:
    """Pick Phase 2's learning rate per method from ``label_lr_grid`` by the pooled validation loss.

    Trains on ``train_names`` only (default: every unit) and scores nothing else, so a fold's
    held-out units never enter its selection; ``fold`` (e.g. ``{"held_out": "code"}``) names the fold
    in the run ids. Uses the smallest train ratio (or ``train_ratio``), the first seed and the first
    instruction setting; the test split is never looked at. Returns
    ``{method: {"grid": {lr: val_loss}, "chosen": lr, "units": [...], ...}}``.
    """
    grid = [float(x) for x in split_csv(p.get("label_lr_grid", ""))]
    if not grid:
        return {}
    ratio = min(map(float, split_csv(p["train_ratios"]))) if "train_ratios" in p else p["train_ratio"]
    seed = int(split_csv(p["seeds"])[0])
    inst = split_csv(p.get("instruction_settings", "on" if p.get("use_instructions", True) else "off"))[0] == "on"
    names = list(train_names) if train_names is not None else [u.name for u in pool.units]
    fold = fold or {}
    out: dict[str, Any] = {}
    for method in methods:
        if method == "alignment_only":
            continue
        losses = {}
        for lr in grid:
            label = {**fold, "lr": f"{lr:g}"}
            run_job("lr_selection", method, seed=seed, train_ratio=ratio, use_instructions=inst, train_names=names,
                    pool=pool, p={**p, "label_lr": lr, "label_lr_grid": ""}, results=results, label=label,
                    eval_names=names)
            meta = read_json(run_dir(results, "lr_selection", make_run_id(method, inst, ratio, seed, label)) / "era_meta.json")
            val = (meta.get("label_result") or {}).get("best_val_loss")
            if val is None:
                raise EraError(f"cannot select label_lr for {method}: the runs have no validation queries; set label_lr_grid ''")
            losses[f"{lr:g}"] = val
        chosen = min(losses, key=lambda k: (losses[k], float(k)))
        out[method] = {"grid": losses, "chosen": float(chosen), "train_ratio": ratio, "seed": seed,
                       "instructions": "on" if inst else "off", "criterion": "best pooled validation InfoNCE loss",
                       "units": names, **({"fold": fold} if fold else {})}
    return out


def make_run_id(method: str, use_instructions: bool, train_ratio: float, seed: int, label: dict[str, Any]) -> str:
    """The folder name of one run under ``results/runs/<protocol>/``."""
    instr = "on" if use_instructions else "off"
    return f"{method}__inst{instr}__train{train_ratio:g}__seed{seed}" + "".join(f"__{k}-{v}" for k, v in label.items())


def method_params(p: dict[str, Any], method: str, selection: dict[str, Any]) -> dict[str, Any]:
    """Parameters of one method, with the selected ``label_lr`` when a selection was made."""
    if method in selection:
        return {**p, "label_lr": selection[method]["chosen"], "label_lr_grid": ""}
    return p


def sweep(pool: EmbeddingPool, p: dict[str, Any], results: Path) -> list[dict[str, Any]]:
    """The in-domain experiment: every method × train ratio × instruction setting × seed, trained on all units."""
    selection = select_label_lr(pool, p, results, split_csv(p["methods"]))
    names = [u.name for u in pool.units]
    jobs = [(m, r, s, i) for i in split_csv(p["instruction_settings"]) for s in map(int, split_csv(p["seeds"]))
            for r in map(float, split_csv(p["train_ratios"])) for m in split_csv(p["methods"])]
    out = []
    for method, ratio, seed, inst in tqdm(jobs, desc="sweep", disable=not pool.setup.progress):
        summary = run_job("in_domain", method, seed=seed, train_ratio=ratio, use_instructions=inst == "on",
                          train_names=names, pool=pool, p=method_params(p, method, selection), results=results,
                          extra_meta={"label_lr_selection": selection.get(method)})
        out.append({**summary, "label_lr_selection": selection.get(method)})
    return out


def _per_domain(protocol: str, pool: EmbeddingPool, p: dict[str, Any], results: Path, domains: list[str],
                label_key: str, trains_on: Callable[[str, str], bool]) -> list[dict[str, Any]]:
    """One adapter per (domain, method, seed), trained on the units ``trains_on(unit_domain, domain)`` selects."""
    out = []
    methods = split_csv(p["methods"])
    fold_units = {d: [u.name for u in pool.units if trains_on(u.domain, d)] for d in domains}
    # Selection per fold, on that fold's training units only: the held-out domain never chooses the lr.
    selections = {d: select_label_lr(pool, p, results, methods, train_names=fold_units[d], fold={label_key: d})
                  for d in domains}
    jobs = [(d, m, s) for d in domains for s in map(int, split_csv(p["seeds"])) for m in methods]
    for domain, method, seed in tqdm(jobs, desc=protocol, disable=not pool.setup.progress):
        names, selection = fold_units[domain], selections[domain]
        out.append(run_job(protocol, method, seed=seed, train_ratio=p["train_ratio"],
                           use_instructions=p["use_instructions"], train_names=names, pool=pool,
                           p=method_params(p, method, selection), results=results, label={label_key: domain},
                           extra_meta={"label_lr_selection": selection.get(method)}))
    return out


def lodo(pool: EmbeddingPool, p: dict[str, Any], results: Path, domains: list[str]) -> list[dict[str, Any]]:
    """Leave-one-domain-out: for each held-out domain, train on the others and score everything."""
    return _per_domain("lodo", pool, p, results, domains, "held_out", lambda unit_d, d: unit_d != d)


def domain_specific(pool: EmbeddingPool, p: dict[str, Any], results: Path, domains: list[str]) -> list[dict[str, Any]]:
    """One adapter per domain, trained on that domain only and scored on every task."""
    return _per_domain("domain_specific", pool, p, results, domains, "train_domain", lambda unit_d, d: unit_d == d)


def alignment_study(setup: Setup, p: dict[str, Any]) -> dict[str, Any]:
    """Phase 1 on the configured tasks: loss curves and hold-out cosine, plus the closed-form ridge for reference."""
    units = load_units(setup)
    cfg = align_config(p, p["seed"], setup.device)
    _, meta = train_alignment_cached(units, setup, cfg)
    ridge_cfg = replace(cfg, init="ridge", epochs=0)
    _, ridge_meta = train_alignment_cached(units, setup, ridge_cfg)
    return {"config": meta["config"]["config"], "history": meta["history"], "eval_cosine": meta["eval_cosine"],
            "best_epoch": meta["best_epoch"], "num_train_texts": meta["num_train_texts"],
            "num_eval_texts": meta["num_eval_texts"], "in_dim": meta["in_dim"], "out_dim": meta["out_dim"],
            "ridge_eval_cosine": ridge_meta["eval_cosine"], "units": [u.name for u in units],
            "large_model": setup.large_model, "small_model": setup.small_model}


def model_params(key: str) -> int:
    """Approximate parameter count of a registry model (for cost-quality plots)."""
    from era_core.encoders import REGISTRY

    return int(REGISTRY[key].params)


def quickstart_compare(setup: Setup, *, task: str, query: str, adapter_dir: str, k: int = 10):
    """Top-``k`` documents of one query three ways: small→small, ERA large→small, large→large.

    With ``query=""`` the first test query of the task is used, and relevant documents are marked.
    Returns a DataFrame (one row per rank) and a one-line description.
    """
    import pandas as pd

    from era_core.adapter import AdaptedQueryEncoder
    from era_core.data import list_tasks

    task = task or next(iter(list_tasks(setup.benchmark)))
    unit = load_tasks(setup.benchmark, [task], progress=False)[0].units()[0]
    qrels: dict[str, int] = {}
    if query:
        instruction = unit.default_instruction
    else:
        qid = test_qids([unit], 42)[unit.name][0]
        query, instruction, qrels = unit.queries[qid], unit.instructions.get(qid, ""), unit.qrels[qid]
    folder = Path(adapter_dir) if adapter_dir else paths.RESULTS / "adapters" / "era"
    folder = folder if folder.is_absolute() else paths.ROOT / folder
    if not folder.exists():
        raise EraError(f"no adapter at {folder}; run `make paper` (03_training exports one) or set adapter_dir")
    small, large = get_encoder(setup.small_model, setup), get_encoder(setup.large_model, setup)
    era = AdaptedQueryEncoder.from_pretrained(folder, query_encoder=large)
    doc_ids, texts = list(unit.corpus), list(unit.corpus.values())
    views = {
        f"{setup.small_model} → {setup.small_model}": (small.encode(small.format_queries([query], [instruction]), progress=False),
                                                     embed_corpus(setup.small_model, unit, setup)),
        f"ERA {setup.large_model} → {setup.small_model}": (era.encode([query], [instruction], progress=False),
                                                          embed_corpus(setup.small_model, unit, setup)),
        f"{setup.large_model} → {setup.large_model}": (large.encode(large.format_queries([query], [instruction]), progress=False),
                                                     embed_corpus(setup.large_model, unit, setup)),
    }
    columns = {}
    for name, (q, d) in views.items():
        _, idx = topk_search(q, d, k=k, doc_ids=doc_ids)
        columns[name] = [("✓ " if qrels.get(doc_ids[i], 0) > 0 else "") + texts[i][:120].replace("\n", " ") for i in idx[0]]
    frame = pd.DataFrame(columns, index=pd.RangeIndex(1, len(next(iter(columns.values()))) + 1, name="rank"))
    info = f"task {unit.name} ({unit.domain}); query: {query!r}; instruction: {instruction!r}"
    return frame, info


def encoder_pair_study(p: dict[str, Any], results: Path) -> list[dict[str, Any]]:
    """The paper's encoder-pair experiment in small: zero-shot of both models and trained methods, per pair.

    Returns one row per pair × instruction setting × seed × method × ratio with the overall and
    per-domain nDCG@10 on the test split, plus the zero-shot rows (``method`` = ``zero_shot_small``
    / ``zero_shot_large``) on the same split.
    """
    rows: list[dict[str, Any]] = []
    seeds = [int(s) for s in split_csv(p["seeds"])]
    for large, small in parse_pairs(p["pairs"]):
        setup = Setup.from_params({**p, "large_model": large, "small_model": small})
        pool = EmbeddingPool(setup, load_units(setup))
        unit_domain = {u.name: u.domain for u in pool.units}
        pair = f"{large}>{small}"
        pair_p = {**p, "large_model": large, "small_model": small}
        pair_label = {"pair": pair.replace(">", "-to-")}
        # Each pair picks its own Phase 2 lr by validation loss, as 03_training does (never by test scores).
        selection = select_label_lr(pool, pair_p, results, split_csv(p["methods"]), fold=pair_label)
        for inst in split_csv(p["instruction_settings"]):
            on = inst == "on"
            embs = pool.get(on)
            for seed in seeds:
                keep = test_qids(embs, seed, p["val_ratio"], p["eval_ratio"])
                for role, key in (("zero_shot_small", small), ("zero_shot_large", large)):
                    per_query = {}
                    for unit, te in zip(pool.units, embs):
                        q = te.q_small if role == "zero_shot_small" else te.q_large
                        d = te.docs_small if role == "zero_shot_small" else embed_corpus(key, unit, setup)
                        per_query[te.name] = score_unit(q, d, te.qids, te.doc_ids, te.qrels)
                    s = summarise(per_query, unit_domain, keep)
                    rows.append({"pair": pair, "instructions": inst, "seed": seed, "method": role, "train_ratio": None,
                                 "overall": s["overall"]["ndcg@10"],
                                 "per_domain": {d: v["ndcg@10"] for d, v in s["per_domain"].items()}})
                for method in split_csv(p["methods"]):
                    for ratio in map(float, split_csv(p["train_ratios"])):
                        s = run_job("encoder_pairs", method, seed=seed, train_ratio=ratio, use_instructions=on,
                                    train_names=[u.name for u in pool.units], pool=pool,
                                    p=method_params(pair_p, method, selection), results=results, label=pair_label,
                                    extra_meta={"label_lr_selection": selection.get(method)})
                        t = s["scopes"]["test"]
                        rows.append({"pair": pair, "instructions": inst, "seed": seed, "method": method,
                                     "train_ratio": ratio, "overall": t["overall"]["ndcg@10"],
                                     "per_domain": {d: v["ndcg@10"] for d, v in t["per_domain"].items()}})
    return rows


def random_adapter_baseline(pool: EmbeddingPool, p: dict[str, Any]) -> list[dict[str, Any]]:
    """A randomly initialised, untrained adapter on the large query vectors: the floor every trained method must beat."""
    from era_core.adapter import LinearAdapter
    from era_core.seeding import seed_everything

    out = []
    unit_domain = {u.name: u.domain for u in pool.units}
    for inst in split_csv(p["instruction_settings"]):
        embs = pool.get(inst == "on")
        for seed in map(int, split_csv(p["seeds"])):
            seed_everything(seed)
            adapter = LinearAdapter(embs[0].q_large.shape[1], embs[0].docs_small.shape[1])
            per_query = apply_and_score(adapter, embs, query_side="large", unit_domain=unit_domain)
            keep = test_qids(embs, seed, p["val_ratio"], p["eval_ratio"])
            out.append({"method": "random_adapter", "instructions": inst, "seed": seed,
                        "scopes": {"test": summarise(per_query, unit_domain, keep)}})
    return out
