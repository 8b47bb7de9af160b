"""The Phase 1 scaling study (issue 17 §3): how good must alignment be before ERA pays?

For every text source × sample size × Phase 1 solver × seed (a *cell*) on the configured pair:
fit Phase 1 (AdamW with the configured ``align_*`` parameters, the closed-form ridge, and orthogonal
Procrustes when the dims are equal), measure its hold-out cosine (hold-out drawn from the same
sample), then score ``alignment_only`` and ERA at ``scaling_ratio`` started from that Phase 1 adapter
on the test split every protocol uses (``experiments.test_qids``).

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

from era_core import align_sources as src
from era_core import experiments as ex
from era_core.errors import EraError, ParamsError
from era_core.io import write_json
from era_core.params import split_csv
from era_core.train import AlignmentConfig, train_alignment, train_era

PROTOCOL = "alignment_scaling"
RESULTS_FILE = "alignment_scaling.json"
INITS = ("default", "ridge", "procrustes")
#: Parameters a cell does not depend on (what to run, not how): left out of its key.
_NOT_IN_KEY = ("progress", "device", "align_sources", "align_sizes", "scaling_inits", "scaling_seeds",
               "seed", "run_scaling")


@dataclass
class StudyContext:
    """What every cell of one study shares: setup, units, embeddings, parameters and the Phase 2 lr."""

    setup: ex.Setup
    pool: ex.EmbeddingPool
    p: dict[str, Any]
    results: Path
    label_lr: float
    _pairs: dict[tuple, src.SourcePairs] = field(default_factory=dict)

    def pairs(self, source: str, size: int, seed: int) -> src.SourcePairs:
        """The (memoised) sample of ``source`` at ``size`` for ``seed``."""
        memo = (source, size, seed)
        if memo not in self._pairs:
            p = self.p
            self._pairs[memo] = src.source_pairs(
                source, self.pool.units, self.setup, size, seed=seed, sample_seed=p["align_sample_seed"],
                samples_per_task=p["align_samples_per_task"], train_ratio=p["scaling_ratio"],
                val_ratio=p["val_ratio"], eval_ratio=p["eval_ratio"])
        return self._pairs[memo]


def study_code_version() -> str:
    """``experiments.code_version`` plus this study's own modules (editing them reruns its cells)."""
    h = hashlib.sha256(ex.code_version().encode())
    for path in (Path(src.__file__), Path(__file__)):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def parse_study(p: dict[str, Any], d_in: int, d_out: int) -> dict[str, Any]:
    """Sources, sizes, solvers and seeds of the study; Procrustes is dropped (and said so) when dims differ."""
    sources = split_csv(p["align_sources"])
    for s in sources:
        src.check_source(s, p["benchmark"])
    sizes = sorted({int(s) for s in split_csv(p["align_sizes"])})
    if sizes[0] < 1:
        raise ParamsError(f"align_sizes must be positive pair counts, got {p['align_sizes']!r}")
    if p["scaling_ratio"] + p["val_ratio"] + p["eval_ratio"] > 1 + 1e-9:
        raise ParamsError(f"scaling_ratio {p['scaling_ratio']} + val_ratio {p['val_ratio']} + eval_ratio "
                          f"{p['eval_ratio']} > 1; with val 0.1 and eval 0.5 the largest is 0.4")
    inits = split_csv(p["scaling_inits"])
    skipped = []
    if "procrustes" in inits and d_in != d_out:
        inits = [i for i in inits if i != "procrustes"]
        skipped.append(f"procrustes: needs equal dims, the pair maps {d_in} -> {d_out}")
    if not inits:
        raise ParamsError(f"scaling_inits leaves no Phase 1 solver for dims {d_in} -> {d_out}; add 'default' or 'ridge'")
    return {"sources": sources, "sizes": sizes, "inits": inits, "skipped": skipped,
            "seeds": [int(s) for s in split_csv(p["scaling_seeds"])]}


def align_cfg_for(p: dict[str, Any], init: str, seed: int, device: str) -> "AlignmentConfig":
    """Phase 1 config of one solver: AdamW from the default init, or a closed form with no epochs."""
    cfg = ex.align_config(p, seed, device)
    return replace(cfg, init="default") if init == "default" else replace(cfg, init=init, epochs=0)


def _score(adapter, embs: list, keep: dict[str, list[str]], unit_domain: dict[str, str]) -> dict[str, Any]:
    """Overall and per-domain nDCG@10 of ``adapter`` on the large query vectors, test split only."""
    per_query = ex.apply_and_score(adapter, embs, query_side="large", unit_domain=unit_domain)
    s = ex.summarise(per_query, unit_domain, keep)
    return {"overall": s["overall"][ex.HEADLINE], "per_domain": {d: v[ex.HEADLINE] for d, v in s["per_domain"].items()}}


def _era_from(ctx: StudyContext, adapter, acfg, seed: int, keep: dict[str, list[str]]):
    """ERA's Phase 2 at ``scaling_ratio`` from a given Phase 1 adapter; refuses a split that differs from ``keep``."""
    from era_core.seeding import seed_everything

    p = {**ctx.p, "label_lr": ctx.label_lr}
    embs = ctx.pool.get(ctx.p["instructions"])
    seed_everything(seed)
    lcfg = ex.label_config(p, ctx.p["scaling_ratio"], seed, ctx.setup.device)
    result = train_era(embs, "both", align_cfg=acfg, label_cfg=lcfg, alignment_adapter=adapter,
                       progress=ctx.setup.progress)
    for name, s in result.splits.items():
        if sorted(s["test"]) != sorted(keep[name]):
            raise EraError(f"the trainer's test split of {name} differs from test_qids; refusing to score leaked queries")
    return result


def cell_key(ctx: StudyContext, source: str, n: int, init: str, seed: int) -> dict[str, Any]:
    """Everything a cell's numbers depend on (hashed into its ``config_key``)."""
    key = {"protocol": PROTOCOL, "source": source, "n": n, "init": init, "seed": seed, "label_lr": ctx.label_lr,
           "params": {k: v for k, v in ctx.p.items() if k not in _NOT_IN_KEY},
           "units": ctx.pool.fingerprints(), "encoders": ex.encoder_identity(ctx.setup),
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
    cfg_key = ex.config_hash(key_obj)
    folder = ex.run_dir(ctx.results, PROTOCOL, f"{source}__n{n}__{init}__seed{seed}")
    done = ex.run_is_done(folder, cfg_key)
    if done is not None:
        return done
    pairs = ctx.pairs(source, n, seed)
    acfg = align_cfg_for(ctx.p, init, seed, ctx.setup.device)
    t0 = time.perf_counter()
    phase1 = train_alignment(*src.holdout_split(pairs, ctx.p["align_eval_ratio"], seed), acfg,
                             progress=ctx.setup.progress)
    embs = ctx.pool.get(ctx.p["instructions"])
    unit_domain = {te.name: te.domain for te in embs}
    keep = ex.test_qids(embs, seed, ctx.p["val_ratio"], ctx.p["eval_ratio"])
    era = _era_from(ctx, phase1.adapter, acfg, seed, keep)
    summary = {
        "protocol": PROTOCOL, "source": source, "n_pairs": len(pairs.x), "n_available": pairs.n_available,
        "n_train": phase1.num_train, "n_eval": phase1.num_eval, "init": init, "seed": seed,
        "eval_cosine": phase1.eval_cosine, "final_eval_loss": phase1.history[-1]["eval_loss"],
        "query_cosine": ex.query_side_cosine(phase1.adapter, embs),
        "train_ratio": ctx.p["scaling_ratio"], "label_lr": ctx.label_lr, "instructions": ctx.p["instructions"],
        "methods": {"alignment_only": _score(phase1.adapter, embs, keep, unit_domain),
                    "era": {**_score(era.adapter, embs, keep, unit_domain),
                            "best_epoch": era.label.best_epoch if era.label else None}},
        "config_key": cfg_key,
    }
    write_json(ctx.results / "timing" / "runs" / PROTOCOL / f"{folder.name}.json",
               {"train_elapsed_sec": time.perf_counter() - t0})
    write_json(folder / "summary.json", summary)  # last: marks the cell complete
    return summary


def _label_lr(pool: ex.EmbeddingPool, p: dict[str, Any], results: Path, seed: int) -> tuple[float, Any]:
    """Phase 2's lr: ``label_lr``, or chosen from ``label_lr_grid`` by ERA's validation loss (faithful Phase 1)."""
    if not split_csv(p["label_lr_grid"]):
        return p["label_lr"], None
    sel = ex.select_label_lr(pool, p, results, ["era"], instructions=p["instructions"], train_ratio=p["scaling_ratio"],
                             seed=seed, fold={"study": PROTOCOL})
    return sel["era"]["chosen"], sel["era"]


def alignment_scaling(setup: ex.Setup, p: dict[str, Any], results: Path) -> dict[str, Any]:
    """Run (or resume) every cell and write ``results/alignment_scaling.json``; returns its content."""
    pool = ex.EmbeddingPool(setup, ex.load_units(setup))
    embs = pool.get(p["instructions"])
    plan = parse_study(p, embs[0].q_large.shape[1], embs[0].docs_small.shape[1])
    label_lr, selection = _label_lr(pool, p, results, plan["seeds"][0])
    ctx = StudyContext(setup, pool, p, Path(results), label_lr)
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
           "train_ratio": p["scaling_ratio"], "label_lr": label_lr, "label_lr_selection": selection,
           "sample_seed": p["align_sample_seed"], "cells": cells}
    write_json(Path(results) / RESULTS_FILE, out)
    return out
