"""A profile's 03_training runs trained and scored on CUDA and on CPU from the same vectors, as JSON.

For a GPU machine that cannot encode the profile (its large model's weights do not travel), in two steps:

``export`` (on a machine with the profile's embedding cache; CPU): one instruction setting's
``TaskEmbeddings`` of every unit, Phase 1's identical-text pairs (the large model's sample vectors, the
rows of the small corpus they pair with) and the validated parameters go into one ``.npz``
(``gpu_check.save_vectors``). ``--selection`` names a 03_training results JSON: each method then runs
with the ``label_lr`` that run selected, and its test nDCG@10 there is kept as the reference.

``run`` (on the GPU machine): per device and method, Phase 1 from those pairs (methods that have it),
then ``api.fit`` with the run's query split and ``api.evaluate`` on its test queries, as ``paper.runs``
trains and scores a 03_training run; the report compares each device's test nDCG@10 with the first
device's and with the reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from era_core.tools.gpu_check import device_info, load_vectors, save_vectors, sync_device, write_report


def chosen_lrs(selection: Path | None, methods: list[str], instructions: str, train_ratio: float,
               seed: int) -> dict[str, dict[str, Any]]:
    """``{method: {"label_lr", "reference_test_ndcg@10"}}`` of the matching runs in a 03_training results JSON."""
    out: dict[str, dict[str, Any]] = {m: {"label_lr": None, "reference_test_ndcg@10": None} for m in methods}
    if selection is None:
        return out
    runs = json.loads(Path(selection).read_text(encoding="utf-8"))["runs"]
    for r in runs:
        if (r["method"] in out and r["instructions"] == instructions and r["seed"] == seed
                and abs(r["train_ratio"] - train_ratio) < 1e-9):
            chosen = (r.get("label_lr_selection") or {}).get("chosen")
            out[r["method"]] = {"label_lr": chosen, "reference_test_ndcg@10": r["scopes"]["test"]["overall"]["ndcg@10"]}
    return out


def export(out: Path, *, profile: str, methods: list[str], instructions: str, train_ratio: float, seed: int,
           selection: Path | None) -> dict[str, Any]:
    """Write the vectors and settings ``run`` needs (read through the embedding cache, on CPU) to ``out``."""
    from era_core.identical_texts import alignment_pairs, per_task_sample
    from era_core.paper.config import Config
    from era_core.paper.params import validate
    from era_core.paper.pool import EmbeddingPool
    from era_core.setup import load_units, loaded_encoders
    from era_core.train import alignment_holdout

    cfg = Config.from_params(validate("03_training", {"progress": False}, profile=profile))
    setup = cfg.setup
    units = load_units(setup)
    embs = EmbeddingPool(setup, units).get(instructions)
    n, eval_ratio = cfg.align_samples_per_task, cfg.align_eval_ratio
    x_tr, y_tr, x_ev, y_ev = alignment_pairs(units, setup, n, eval_ratio, seed)
    # The small side of each pair is a row of a unit's small corpus: store (unit, row), not the vectors.
    index = {u.name: i for i, u in enumerate(units)}
    rows = np.array([(index[u.name], r) for u, rs in per_task_sample(units, n, seed) for r in rs], dtype=np.int64)
    tr, ev = alignment_holdout(len(rows), eval_ratio, seed=seed)
    arrays = {"x_train": x_tr, "x_eval": x_ev, "rows_train": rows[tr], "rows_eval": rows[ev]}
    y_check = small_pairs(embs, rows[tr]), small_pairs(embs, rows[ev])
    if not (np.array_equal(y_check[0], y_tr) and np.array_equal(y_check[1], y_ev)):
        raise AssertionError("Phase 1's small-side rows do not give back its pairs; this is a bug")
    info = {"profile": profile, "params": cfg.params, "instructions": instructions, "train_ratio": train_ratio,
            "seed": seed, "methods": chosen_lrs(selection, methods, instructions, train_ratio, seed),
            "selection": str(selection) if selection else None, "encoders_loaded": loaded_encoders()}
    save_vectors(out, embs, arrays, info)
    return info


def small_pairs(embs: list, rows: np.ndarray) -> np.ndarray:
    """The small-corpus vectors at ``(unit index, row)`` pairs."""
    return np.stack([embs[u].docs_small[r] for u, r in rows]) if len(rows) else np.zeros((0, embs[0].docs_small.shape[1]), np.float32)


def _run_method(method: str, chosen: dict[str, Any], cfg: Any, setup: Any, embs: list, pairs: tuple, splits: dict,
                devices: list[str], seed: int, ratio: float, inst: str) -> dict[str, Any]:
    """One method's run on each device, as ``paper.runs.train_method`` trains it; scored on the test split."""
    from era_core import api
    from era_core.methods import get_method
    from era_core.seeding import seed_everything
    from era_core.splits import test_split
    from era_core.train import train_alignment

    keep = test_split(splits)
    lr = chosen["label_lr"] if chosen["label_lr"] is not None else cfg.label_lr
    mcfg = cfg.with_params(label_lr=lr, label_lr_grid="")
    row: dict[str, Any] = {"label_lr": lr, "reference_test_ndcg@10": chosen["reference_test_ndcg@10"]}
    for device in devices:
        seed_everything(seed)
        acfg = mcfg.alignment(seed, device)
        sync_device(device)
        t0 = time.perf_counter()
        start = None
        if get_method(method).phase1:
            start = train_alignment(*pairs, acfg, progress=False).adapter
            seed_everything(seed)  # as paper.runs.train_method: Phase 2 starts from a freshly seeded state
        trained = api.fit(setup, embs, method, label=mcfg.label(None, ratio, seed, device), align=acfg,
                          phase1=start, splits=splits, instructions=inst)
        sync_device(device)
        elapsed = time.perf_counter() - t0
        scores = api.evaluate(trained, embs)
        weight = trained.adapter.proj.weight.detach().cpu().numpy()
        # adapter_device: where the returned adapter lives; the trainers hand it back on CPU whatever they ran on.
        row[device] = {"seconds": elapsed, "test_ndcg@10": scores.summary(keep)["overall"]["ndcg@10"],
                       "weight_norm": float(np.linalg.norm(weight)),
                       "adapter_device": str(next(trained.adapter.parameters()).device)}
    first = row[devices[0]]["test_ndcg@10"]
    for device in devices[1:]:
        row[f"ndcg_abs_diff_{devices[0]}_vs_{device}"] = abs(first - row[device]["test_ndcg@10"])
    if row["reference_test_ndcg@10"] is not None:
        for device in devices:
            row[f"ndcg_abs_diff_{device}_vs_reference"] = abs(row[device]["test_ndcg@10"] - row["reference_test_ndcg@10"])
    return row


def run(vectors: Path, devices: list[str]) -> dict[str, Any]:
    """Train and score every method of the file on each device; compare with the first device and the reference."""
    from era_core.paper.config import Config
    from era_core.setup import Setup
    from era_core.splits import split_units, test_split

    embs, arrays, info = load_vectors(vectors)
    cfg = Config.from_params(info["params"])
    p = cfg.params
    setup = Setup(benchmark=p["benchmark"], tasks=tuple(te.name for te in embs), large_model=p["large_model"],
                  small_model=p["small_model"], max_length=p["max_length"], batch_size=p["batch_size"],
                  device="cpu", dtype=p["dtype"], progress=False)
    seed, ratio, inst = info["seed"], info["train_ratio"], info["instructions"]
    splits = split_units(embs, ratio, cfg.val_ratio, cfg.eval_ratio, seed)
    keep = test_split(splits)
    pairs = (arrays["x_train"], small_pairs(embs, arrays["rows_train"]),
             arrays["x_eval"], small_pairs(embs, arrays["rows_eval"]))
    out: dict[str, Any] = {"vectors": Path(vectors).name, "profile": info["profile"], "instructions": inst,
                           "train_ratio": ratio, "seed": seed, "devices": devices,
                           "units": len(embs), "test_queries": sum(len(v) for v in keep.values()),
                           "phase1_pairs": [len(pairs[0]), len(pairs[2])], "methods": {}}
    for device in devices:  # start each device before timing anything on it (CUDA's context, cuBLAS)
        import torch

        torch.ones(64, 64, device=device).matmul(torch.ones(64, 64, device=device)).sum().item()
    for method, chosen in info["methods"].items():
        out["methods"][method] = _run_method(method, chosen, cfg, setup, embs, pairs, splits, devices, seed, ratio, inst)
    if any(d.startswith("cuda") for d in devices):
        import torch

        out["cuda_max_memory_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    ap = argparse.ArgumentParser(prog="python -m era_core.tools.cuda_pass", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write a profile's vectors and settings to an .npz (CPU, reads the cache)")
    ex.add_argument("out")
    ex.add_argument("--profile", default="default")
    ex.add_argument("--methods", default="era,small_adapter")
    ex.add_argument("--instructions", default="native")
    ex.add_argument("--train-ratio", type=float, default=0.4)
    ex.add_argument("--seed", type=int, default=42)
    ex.add_argument("--selection", default=None, help="a 03_training results JSON: each method's chosen label_lr")
    rn = sub.add_parser("run", help="train and score the exported runs on each device")
    rn.add_argument("vectors")
    rn.add_argument("--devices", default="cuda,cpu")
    rn.add_argument("--out", default=None, help="also write the JSON report to this file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """``export`` or ``run``; ``run`` exits 2 when it is asked for CUDA and torch sees none."""
    args = build_parser().parse_args(argv)
    if args.command == "export":
        info = export(Path(args.out), profile=args.profile, methods=[m for m in args.methods.split(",") if m],
                      instructions=args.instructions, train_ratio=args.train_ratio, seed=args.seed,
                      selection=Path(args.selection) if args.selection else None)
        print(f"cuda-pass: wrote {args.out}: {json.dumps(info['methods'])}")
        return 0
    import torch

    devices = [d for d in args.devices.split(",") if d]
    if any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        print("cuda-pass: torch sees no CUDA device; pass --devices cpu to run the CPU side only", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    report = {**device_info(), **run(Path(args.vectors), devices)}
    report["total_seconds"] = time.perf_counter() - t0
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
