"""The Phase 1 scaling study: how good must alignment be before ERA pays?

For every text source × sample size × Phase 1 solver × seed (a *cell*) on the configured pair:
fit Phase 1 (AdamW with the configured ``align_*`` parameters, the closed-form ridge, and orthogonal
Procrustes when the dims are equal), measure its hold-out cosine (hold-out drawn from the same
sample), then score ``alignment_only`` and ERA at ``scaling_ratio`` started from that Phase 1 adapter
on the test split every protocol uses (``splits.test_qids``).

Each cell is resumable: ``results/runs/alignment_scaling/<source>__n<n>__<init>__seed<seed>/summary.json``
is written last and carries a content hash of everything the cell depends on (units, encoders,
parameters, the code of the training modules and of this study, and for ``corpus_pool`` the pool's
texts), so a finished cell is served and a changed input reruns it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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
from era_core.paper.selection import select_label_lr
from era_core.identical_texts import query_side_cosine
from era_core.setup import Setup, encoder_identity, load_units
from era_core.splits import split_units, test_split
from era_core.train import AlignmentConfig, train_alignment

PROTOCOL = "alignment_scaling"
RESULTS_FILE = "alignment_scaling.json"
#: Parameters a cell does not depend on (what to run, not how): left out of its key.
_NOT_IN_KEY = ("progress", "device", "align_sources", "align_sizes", "scaling_inits", "scaling_seeds",
               "seed", "run_scaling")


@dataclass
class StudyContext:
    """What every cell of one study shares: setup, units, embeddings, parameters and the Phase 2 lr."""

    setup: Setup
    pool: EmbeddingPool
    cfg: Config
    results: Path
    label_lr: float
    _pairs: dict[tuple, src.SourcePairs] = field(default_factory=dict)

    def pairs(self, source: str, size: int, seed: int) -> src.SourcePairs:
        """The (memoised) sample of ``source`` at ``size`` for ``seed``."""
        memo = (source, size, seed)
        if memo not in self._pairs:
            c = self.cfg
            self._pairs[memo] = src.source_pairs(
                source, self.pool.units, self.setup, size, seed=seed, sample_seed=c.align_sample_seed,
                samples_per_task=c.align_samples_per_task, train_ratio=c.scaling_ratio,
                val_ratio=c.val_ratio, eval_ratio=c.eval_ratio)
        return self._pairs[memo]


def study_code_version() -> str:
    """``code_version`` plus this study's own modules (editing them reruns its cells)."""
    h = hashlib.sha256(code_version().encode())
    for path in (Path(src.__file__), Path(__file__)):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def parse_study(cfg: Config, d_in: int, d_out: int) -> dict[str, Any]:
    """Sources, sizes, solvers and seeds of the study; Procrustes is dropped (and said so) when dims differ."""
    sources = list(cfg.align_sources)
    for s in sources:
        src.check_source(s, cfg.benchmark)
    sizes = sorted(set(cfg.align_sizes))
    if sizes[0] < 1:
        raise ParamsError(f"align_sizes must be positive pair counts, got {cfg.params['align_sizes']!r}")
    if cfg.scaling_ratio + cfg.val_ratio + cfg.eval_ratio > 1 + 1e-9:
        raise ParamsError(f"scaling_ratio {cfg.scaling_ratio} + val_ratio {cfg.val_ratio} + eval_ratio "
                          f"{cfg.eval_ratio} > 1; with val 0.1 and eval 0.5 the largest is 0.4")
    inits = list(cfg.scaling_inits)
    skipped = []
    if "procrustes" in inits and d_in != d_out:
        inits = [i for i in inits if i != "procrustes"]
        skipped.append(f"procrustes: needs equal dims, the pair maps {d_in} -> {d_out}")
    if not inits:
        raise ParamsError(f"scaling_inits leaves no Phase 1 solver for dims {d_in} -> {d_out}; add 'default' or 'ridge'")
    return {"sources": sources, "sizes": sizes, "inits": inits, "skipped": skipped,
            "seeds": list(cfg.scaling_seeds)}


def align_cfg_for(cfg: Config, init: str, seed: int, device: str) -> "AlignmentConfig":
    """Phase 1 config of one solver: AdamW from the default init, or a closed form with no epochs."""
    acfg = cfg.alignment(seed, device)
    return replace(acfg, init="default") if init == "default" else replace(acfg, init=init, epochs=0)


def _score(trained: api.TrainedAdapter, embs: list, keep: dict[str, list[str]]) -> dict[str, Any]:
    """Overall and per-domain nDCG@10 of ``trained`` on the test split only."""
    s = api.evaluate(trained, embs).summary(keep)
    return {"overall": s["overall"][HEADLINE], "per_domain": {d: v[HEADLINE] for d, v in s["per_domain"].items()}}


def _era_from(ctx: StudyContext, adapter: Any, acfg: AlignmentConfig, seed: int,
              splits: dict[str, dict[str, list[str]]]) -> api.TrainedAdapter:
    """ERA's Phase 2 at ``scaling_ratio`` from a given Phase 1 adapter, on the cell's query split."""
    from era_core.seeding import seed_everything

    embs = ctx.pool.get(ctx.cfg.instructions)
    seed_everything(seed)
    lcfg = ctx.cfg.with_params(label_lr=ctx.label_lr).label(None, ctx.cfg.scaling_ratio, seed, ctx.setup.device)
    return api.fit(ctx.setup, embs, "era", label=lcfg, align=acfg, phase1=adapter, splits=splits,
                   instructions=ctx.cfg.instructions)


def cell_key(ctx: StudyContext, source: str, n: int, init: str, seed: int) -> dict[str, Any]:
    """Everything a cell's numbers depend on (hashed into its ``config_key``)."""
    key = {"protocol": PROTOCOL, "source": source, "n": n, "init": init, "seed": seed, "label_lr": ctx.label_lr,
           "params": {k: v for k, v in ctx.cfg.params.items() if k not in _NOT_IN_KEY},
           "units": ctx.pool.fingerprints(), "encoders": encoder_identity(ctx.setup),
           "code": study_code_version()}
    if source == "corpus_pool":
        h = hashlib.sha256()
        for task, text in src.corpus_pool_texts(ctx.setup.benchmark, tuple(ctx.setup.tasks)):
            h.update(task.encode() + b"\x00" + text.encode() + b"\x01")
        key["pool_sha256"] = h.hexdigest()
    return key


def run_cell(ctx: StudyContext, source: str, n: int, init: str, seed: int) -> dict[str, Any]:
    """One cell: Phase 1, its hold-out cosine, alignment_only and ERA test nDCG@10; resumable."""
    key_obj = cell_key(ctx, source, n, init, seed)
    cfg_key = config_hash(key_obj)
    folder = run_dir(ctx.results, PROTOCOL, f"{source}__n{n}__{init}__seed{seed}")
    done = run_is_done(folder, cfg_key)
    if done is not None:
        return done
    pairs = ctx.pairs(source, n, seed)
    acfg = align_cfg_for(ctx.cfg, init, seed, ctx.setup.device)
    t0 = time.perf_counter()
    phase1 = train_alignment(*src.holdout_split(pairs, ctx.cfg.align_eval_ratio, seed), acfg,
                             progress=ctx.setup.progress)
    embs = ctx.pool.get(ctx.cfg.instructions)
    splits = split_units(embs, ctx.cfg.scaling_ratio, ctx.cfg.val_ratio, ctx.cfg.eval_ratio, seed)
    keep = test_split(splits)
    era = _era_from(ctx, phase1.adapter, acfg, seed, splits)
    aligned = api.TrainedAdapter(phase1.adapter, ctx.setup.large_model, ctx.setup.small_model, method="alignment_only")
    summary = {
        "protocol": PROTOCOL, "source": source, "n_pairs": len(pairs.x), "n_available": pairs.n_available,
        "n_train": phase1.num_train, "n_eval": phase1.num_eval, "init": init, "seed": seed,
        "eval_cosine": phase1.eval_cosine, "final_eval_loss": phase1.history[-1]["eval_loss"],
        "query_cosine": query_side_cosine(phase1.adapter, embs),
        "train_ratio": ctx.cfg.scaling_ratio, "label_lr": ctx.label_lr, "instructions": ctx.cfg.instructions,
        "methods": {"alignment_only": _score(aligned, embs, keep),
                    "era": {**_score(era, embs, keep), "best_epoch": era.meta["label_result"]["best_epoch"]}},
        "config_key": cfg_key,
    }
    write_json(ctx.results / "timing" / "runs" / PROTOCOL / f"{folder.name}.json",
               {"train_elapsed_sec": time.perf_counter() - t0})
    write_json(folder / "summary.json", summary)  # last: marks the cell complete
    return summary


def _label_lr(pool: EmbeddingPool, cfg: Config, results: Path, seed: int) -> tuple[float, Any]:
    """Phase 2's lr: ``label_lr``, or chosen from ``label_lr_grid`` by ERA's validation loss (faithful Phase 1)."""
    if not cfg.label_lr_grid:
        return cfg.label_lr, None
    sel = select_label_lr(pool, cfg, results, ["era"], instructions=cfg.instructions, train_ratio=cfg.scaling_ratio,
                          seed=seed, fold={"study": PROTOCOL})
    return sel["era"]["chosen"], sel["era"]


def alignment_scaling(setup: Setup, cfg: Config, results: Path) -> dict[str, Any]:
    """Run (or resume) every cell and write ``results/alignment_scaling.json``; returns its content."""
    pool = EmbeddingPool(setup, load_units(setup))
    embs = pool.get(cfg.instructions)
    plan = parse_study(cfg, embs[0].q_large.shape[1], embs[0].docs_small.shape[1])
    label_lr, selection = _label_lr(pool, cfg, results, plan["seeds"][0])
    ctx = StudyContext(setup, pool, cfg, Path(results), label_lr)
    cells, available = [], {}
    for source in plan["sources"]:
        for seed in plan["seeds"]:
            # Sizes past what the source has collapse onto its full size: run that cell once.
            actual = sorted({len(ctx.pairs(source, size, seed).x) for size in plan["sizes"]})
            available[source] = ctx.pairs(source, plan["sizes"][-1], seed).n_available
            jobs = [(n, init) for n in actual for init in plan["inits"]]
            for n, init in tqdm(jobs, desc=f"scaling {source} seed {seed}", disable=not setup.progress):
                cells.append(run_cell(ctx, source, n, init, seed))
    out = {"setup": {"benchmark": setup.benchmark, "large_model": setup.large_model, "small_model": setup.small_model,
                     "tasks": list(setup.tasks)},
           "sources": plan["sources"], "sizes_requested": plan["sizes"], "inits": plan["inits"],
           "seeds": plan["seeds"], "skipped": plan["skipped"], "available": available,
           "train_ratio": cfg.scaling_ratio, "label_lr": label_lr, "label_lr_selection": selection,
           "sample_seed": cfg.align_sample_seed, "cells": cells}
    write_json(Path(results) / RESULTS_FILE, out)
    return out
