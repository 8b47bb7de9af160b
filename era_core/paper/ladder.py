"""The alignment-quality ladder: how well must Phase 1 align before ERA beats the same-model control?

A pair where an exact linear map exists: queries from the large model (EmbeddingGemma, 768 dims by
default), the index from the same model truncated to its first ``k`` Matryoshka dimensions and
renormalised (``ladder_dims``). Everything comes from cached vectors; nothing new is encoded. Phase 1
climbs a ladder of rungs, each a map from the full to the truncated space:

- ``n<N>``: Phase 1 (the configured solver) fitted on ``N`` document pairs (``ladder_sizes``, nested
  samples drawn per task as the scaling study draws them);
- ``all``: fitted on every document of the benchmark;
- ``exact``: the truncation itself, ``[I_k | 0]``, whose cosine to the index is 1 on every text.

For each index width, rung, train ratio and seed the cell records Phase 1's hold-out cosine (documents),
its query-side cosine (mapped large query vs the truncated model's own query vector: where retrieval
applies the map), alignment-only test nDCG@10, and ERA's test nDCG@10 started from that rung. The
control (``small_adapter`` on the truncated model's own queries) and ``fused`` do not depend on the rung
and run once per width, ratio and seed. Learning rates follow the package rule (``select_label_lr``'s
criterion): per method and width, on the grid, at the smallest ratio and first seed; ERA's selection
starts from the ``all`` rung and its choice serves every rung.

Each cell is resumable under ``results/runs/alignment_ladder/`` (a content key, as the scaling study's).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from era_core import api
from era_core.cache.keys import code_version, config_hash
from era_core.errors import ParamsError
from era_core.io import write_json
from era_core.metrics import HEADLINE
from era_core.paper import sources as src
from era_core.paper.config import Config
from era_core.paper.pool import EmbeddingPool
from era_core.paper.runs import run_dir, run_is_done
from era_core.paper.selection import CRITERION
from era_core.identical_texts import mapped_cosine, query_side_cosine
from era_core.setup import Setup, encoder_identity, load_units
from era_core.splits import split_units, test_qids, test_split

PROTOCOL = "alignment_ladder"
RESULTS_FILE = "alignment_ladder.json"
#: The methods the ladder compares: ERA from each rung, the control and fused (rung-free).
LADDER_METHODS = ("era", "small_adapter", "fused")
#: Parameters a cell does not depend on (what to run, not how): left out of its key.
_NOT_IN_KEY = ("progress", "device", "ladder_dims", "ladder_sizes", "train_ratios", "seeds", "seed")


def truncate(x: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` dimensions of each row, renormalised (a Matryoshka truncation)."""
    y = np.ascontiguousarray(np.asarray(x, dtype=np.float32)[:, :k])
    return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)


def exact_map(d_in: int, k: int) -> Any:
    """The linear adapter ``[I_k | 0]`` with zero bias: the truncation as a Phase 1 map."""
    from era_core.adapter import LinearAdapter

    weight = np.zeros((k, d_in), dtype=np.float32)
    weight[:, :k] = np.eye(k, dtype=np.float32)
    return LinearAdapter.from_weights(weight, np.zeros(k, dtype=np.float32))


def truncated_embeddings(embs: list, k: int) -> list:
    """``TaskEmbeddings`` of the truncated pair: full large queries, the truncated model's queries and corpus."""
    return [replace(te, q_small=truncate(te.q_large, k), docs_small=truncate(te.docs_small, k)) for te in embs]


def rung_names(sizes: list[int]) -> list[str]:
    """The ladder's rungs, weakest first: ``n<N>`` per size, then ``all`` and ``exact``."""
    return [f"n{n}" for n in sizes] + ["all", "exact"]


@dataclass
class Ladder:
    """What every cell of one ladder shares: the pool (large model on both sides), parameters and results."""

    pool: EmbeddingPool
    cfg: Config
    results: Path
    _embs: dict[int, list] = field(default_factory=dict)
    _phase1: dict[tuple, tuple[Any, dict[str, Any]]] = field(default_factory=dict)

    def embs(self, k: int) -> list:
        """The truncated pair's embeddings at index width ``k`` (memoised)."""
        if k not in self._embs:
            self._embs[k] = truncated_embeddings(self.pool.get(self.cfg.instructions), k)
        return self._embs[k]

    def doc_pairs(self, k: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Every corpus document as a (full, truncated) pair, units in order, and each row's task."""
        embs = self.embs(k)
        x = np.concatenate([te.docs_small for te in self.pool.get(self.cfg.instructions)])
        keys = [u.task_name for u, te in zip(self.pool.units, embs) for _ in te.doc_ids]
        return x, truncate(x, k), keys

    def phase1(self, k: int, rung: str, seed: int) -> tuple[Any, dict[str, Any]]:
        """The rung's Phase 1 map and its measures: hold-out cosine (documents), query-side cosine, pairs."""
        memo = (k, rung, seed)
        if memo not in self._phase1:
            self._phase1[memo] = self._fit(k, rung, seed)
        return self._phase1[memo]

    def _fit(self, k: int, rung: str, seed: int) -> tuple[Any, dict[str, Any]]:
        from era_core.train import train_alignment

        x, y, keys = self.doc_pairs(k)
        rows = list(range(len(x)))
        if rung.startswith("n"):
            rows = src.nested_rows(src._group_sizes(keys), min(int(rung[1:]), len(x)), self.cfg.align_sample_seed)
        pairs = src.SourcePairs(rung, x[rows], y[rows], [], len(x))
        x_tr, y_tr, x_ev, y_ev = src.holdout_split(pairs, self.cfg.align_eval_ratio, seed)
        if rung == "exact":
            adapter = exact_map(x.shape[1], k)
        else:
            acfg = self.cfg.alignment(seed, self.pool.setup.device)
            adapter = train_alignment(x_tr, y_tr, x_ev, y_ev, acfg, progress=False).adapter
        embs = self.embs(k)
        return adapter, {"n_pairs": len(rows), "eval_cosine": mapped_cosine(adapter, x_ev, y_ev),
                         "query_cosine": query_side_cosine(adapter, embs)}


def study_code_version() -> str:
    """``code_version`` plus this module and the sampling code (editing them reruns the cells)."""
    h = hashlib.sha256(code_version().encode())
    for path in (Path(src.__file__), Path(__file__)):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _score(trained: api.TrainedAdapter | None, embs: list, keep: dict[str, list[str]], side: str = "small") -> float:
    """Overall test nDCG@10 of ``trained`` (None: no adapter, the ``side`` query vectors as they are)."""
    return float(api.evaluate(trained, embs, query_side=side).summary(keep)["overall"][HEADLINE])


def run_cell(ladder: Ladder, k: int, method: str, rung: str | None, ratio: float, seed: int, lr: float,
             ) -> dict[str, Any]:
    """One trained cell: ``method`` at index width ``k`` (ERA from ``rung``), ratio, seed and lr; resumable."""
    from era_core.seeding import seed_everything

    key_obj = {"protocol": PROTOCOL, "k": k, "method": method, "rung": rung, "ratio": ratio, "seed": seed,
               "lr": lr, "params": {n: v for n, v in ladder.cfg.params.items() if n not in _NOT_IN_KEY},
               "units": ladder.pool.fingerprints(), "encoders": encoder_identity(ladder.pool.setup),
               "code": study_code_version()}
    cfg_key = config_hash(key_obj)
    name = f"k{k}__{method}{'__' + rung if rung else ''}__train{ratio:g}__seed{seed}__lr{lr:g}"
    folder = run_dir(ladder.results, PROTOCOL, name)
    done = run_is_done(folder, cfg_key)
    if done is not None:
        return done
    embs = ladder.embs(k)
    splits = split_units(embs, ratio, ladder.cfg.val_ratio, ladder.cfg.eval_ratio, seed)
    seed_everything(seed)
    lcfg = ladder.cfg.with_params(label_lr=lr).label(None, ratio, seed, ladder.pool.setup.device)
    start = ladder.phase1(k, rung, seed)[0] if method == "era" else None
    setup = replace(ladder.pool.setup, progress=False)
    trained = api.fit(setup, embs, method, label=lcfg, phase1=start, splits=splits, instructions=ladder.cfg.instructions)
    label = trained.meta["label_result"]
    summary = {"protocol": PROTOCOL, "k": k, "method": method, "rung": rung, "train_ratio": ratio, "seed": seed,
               "label_lr": lr, "ndcg@10": _score(trained, embs, test_split(splits)),
               "best_val_loss": label["best_val_loss"], "best_epoch": label["best_epoch"],
               "config_key": cfg_key}
    write_json(folder / "summary.json", summary)
    return summary


def parse_ladder(cfg: Config, d_in: int) -> dict[str, Any]:
    """Index widths, rungs, ratios and seeds of the ladder, checked against the query model's width."""
    dims = sorted(set(cfg.ladder_dims))
    bad = [d for d in dims if not 0 < d < d_in]
    if bad:
        raise ParamsError(f"ladder_dims {bad} must lie between 1 and the query model's width {d_in} (exclusive)")
    sizes = sorted(set(cfg.ladder_sizes))
    if sizes and sizes[0] < 2:
        raise ParamsError(f"ladder_sizes must be pair counts >= 2, got {cfg.params['ladder_sizes']!r}")
    return {"dims": dims, "rungs": rung_names(sizes), "ratios": sorted(cfg.train_ratios), "seeds": list(cfg.seeds)}


def select_lrs(ladder: Ladder, k: int, plan: dict[str, Any]) -> dict[str, Any]:
    """Each method's lr at width ``k``: lowest validation loss on the grid, smallest ratio, first seed."""
    grid = ladder.cfg.label_lr_grid or (ladder.cfg.label_lr,)
    ratio, seed = plan["ratios"][0], plan["seeds"][0]
    out = {}
    for method in LADDER_METHODS:
        rung = "all" if method == "era" else None
        losses = {f"{lr:g}": run_cell(ladder, k, method, rung, ratio, seed, lr)["best_val_loss"] for lr in grid}
        chosen = min(losses, key=lambda v: (losses[v], float(v)))
        out[method] = {"grid": losses, "chosen": float(chosen), "train_ratio": ratio, "seed": seed,
                       "criterion": CRITERION + ("; ERA from the 'all' rung" if method == "era" else "")}
    return out


def _references(ladder: Ladder, k: int, seeds: list[int]) -> dict[str, dict[int, float]]:
    """Zero-shot test nDCG@10 of the truncated model and of the full model on both sides, per seed."""
    embs, full = ladder.embs(k), ladder.pool.get(ladder.cfg.instructions)
    out: dict[str, dict[int, float]] = {"zero_shot_small": {}, "zero_shot_large": {}}
    for seed in seeds:
        keep = test_qids(embs, seed, ladder.cfg.val_ratio, ladder.cfg.eval_ratio)
        out["zero_shot_small"][seed] = _score(None, embs, keep)
        out["zero_shot_large"][seed] = _score(None, full, keep)
    return out


def alignment_ladder(setup: Setup, cfg: Config, results: Path) -> dict[str, Any]:
    """Run (or resume) every cell of the ladder and write ``results/alignment_ladder.json``; returns its content."""
    if setup.large_model != setup.small_model:
        raise ParamsError("the ladder's index is the query model truncated: build its Setup with small_model = "
                          f"large_model (got {setup.large_model!r} and {setup.small_model!r})")
    ladder = Ladder(EmbeddingPool(setup, load_units(setup)), cfg, Path(results))
    plan = parse_ladder(cfg, ladder.pool.get(cfg.instructions)[0].q_large.shape[1])
    widths = []
    for k in plan["dims"]:
        lrs = select_lrs(ladder, k, plan)
        cells, rungs = [], []
        jobs = [(m, r, ratio, s) for ratio in plan["ratios"] for s in plan["seeds"]
                for m, r in [("small_adapter", None), ("fused", None)] + [("era", r) for r in plan["rungs"]]]
        for method, rung, ratio, seed in tqdm(jobs, desc=f"ladder k={k}", disable=not setup.progress):
            cells.append(run_cell(ladder, k, method, rung, ratio, seed, lrs[method]["chosen"]))
        embs = ladder.embs(k)
        for rung in plan["rungs"]:
            for seed in plan["seeds"]:
                adapter, measures = ladder.phase1(k, rung, seed)
                keep = test_qids(embs, seed, cfg.val_ratio, cfg.eval_ratio)
                aligned = api.TrainedAdapter(adapter, setup.large_model, setup.small_model, method="alignment_only")
                rungs.append({"rung": rung, "seed": seed, **measures, "alignment_only": _score(aligned, embs, keep)})
        widths.append({"k": k, "label_lr_selection": lrs, "phase1": rungs, "cells": cells,
                       "references": _references(ladder, k, plan["seeds"])})
    out = {"setup": {"benchmark": setup.benchmark, "query_model": setup.large_model, "tasks": list(setup.tasks)},
           "instructions": cfg.instructions, "rungs": plan["rungs"], "train_ratios": plan["ratios"],
           "seeds": plan["seeds"], "widths": widths}
    write_json(Path(results) / RESULTS_FILE, out)
    return out
