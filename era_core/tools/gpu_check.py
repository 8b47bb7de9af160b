"""GPU self-check (``make gpu-check``): CUDA vs CPU for encoding, training and retrieval, as JSON.

1. Encodes a few thousand smoke-benchmark texts with a bundled model on CUDA (fp32 and fp16) and
   on CPU: throughput (texts/s) and cosine agreement with CPU fp32.
2. Trains a small ERA adapter (alignment + label) on the smoke benchmark on CUDA and on CPU and
   compares the test nDCG@10.
3. Runs ``retrieval.topk_search`` with ``device="cuda"`` and on CPU: top-k overlap, score gap.

Without CUDA it exits with code 2 and says so, unless ``--cpu-only`` (which runs the CPU halves
only; used by the test suite to exercise this script on machines without a GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

EXIT_NO_CUDA = 2
SMOKE = "offline-smoke"


def smoke_texts(n: int, tasks: list[str] | None = None) -> list[str]:
    """Up to ``n`` documents and queries of the smoke benchmark, interleaved by unit, in a fixed order."""
    from era_core.data import load_tasks

    texts: list[str] = []
    for task in load_tasks(SMOKE, tasks, progress=False):
        for unit in task.units():
            texts += list(unit.corpus.values()) + [unit.queries[q] for q in unit.labelled_qids()]
    return texts[:n]


def encode_check(model: str, texts: list[str], variants: list[tuple[str, str]], *, batch_size: int,
                 max_length: int) -> dict[str, Any]:
    """Throughput of each (device, dtype) and its cosine agreement with the first variant (CPU fp32)."""
    from era_core.encoders import load_encoder

    out: dict[str, Any] = {}
    reference = None
    for device, dtype in variants:
        enc = load_encoder(model, device=device, dtype=dtype, max_length=max_length, progress=False)
        enc.load()
        enc.encode(texts[: min(len(texts), 2 * batch_size)], batch_size=batch_size, progress=False)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        vecs = enc.encode(texts, batch_size=batch_size, progress=False)
        _sync(device)
        elapsed = time.perf_counter() - t0
        row: dict[str, Any] = {"texts": len(texts), "seconds": elapsed, "texts_per_s": len(texts) / elapsed,
                               "attention": enc.attention}
        if reference is None:
            reference = vecs
        else:
            cos = np.sum(vecs * reference, axis=1)
            row.update(cosine_mean=float(cos.mean()), cosine_min=float(cos.min()))
        out[f"{device}/{dtype}"] = row
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def training_check(devices: list[str], *, tasks: list[str] | None, large: str, small: str, align_epochs: int,
                   label_epochs: int, seed: int = 42) -> dict[str, Any]:
    """Train ERA (Phase 1 + Phase 2) on the smoke benchmark per device and score the test split."""
    from era_core.setup import Setup, load_units
    from era_core.api import apply_and_score
    from era_core.metrics import summarise
    from era_core.vectors import task_embeddings
    from era_core.splits import test_qids
    from era_core.seeding import seed_everything
    from era_core.train import AlignmentConfig, LabelConfig, split_alignment_pairs, train_era

    names = tuple(tasks) if tasks else tuple(__import__("era_core.data", fromlist=["list_tasks"]).list_tasks(SMOKE))
    setup = Setup(benchmark=SMOKE, tasks=names, large_model=large, small_model=small, progress=False)
    units = load_units(setup)
    embs = task_embeddings(units, setup, "native")  # encoded once on CPU through the cache
    from era_core.vectors import embed_corpus

    x = np.concatenate([embed_corpus(large, u, setup) for u in units])
    y = np.concatenate([te.docs_small for te in embs])
    pairs = split_alignment_pairs(x, y, 0.1, seed)
    unit_domain = {u.name: u.domain for u in units}
    out: dict[str, Any] = {}
    for device in devices:
        seed_everything(seed)
        t0 = time.perf_counter()
        result = train_era(embs, "both", align_cfg=AlignmentConfig(epochs=align_epochs, seed=seed, device=device),
                           label_cfg=LabelConfig(train_ratio=0.4, epochs=label_epochs, lr=1e-4, seed=seed,
                                                 device=device),
                           align_pairs=pairs, progress=False)
        elapsed = time.perf_counter() - t0
        per_query = apply_and_score(result.adapter, embs, query_side="large", unit_domain=unit_domain)
        summary = summarise(per_query, unit_domain, test_qids(embs, seed))
        weight = result.adapter.proj.weight.detach().cpu().numpy()
        out[device] = {"seconds": elapsed, "test_ndcg@10": summary["overall"]["ndcg@10"],
                       "weight_norm": float(np.linalg.norm(weight))}
    if len(devices) > 1:
        a, b = (out[d]["test_ndcg@10"] for d in devices[:2])
        out["ndcg_abs_diff"] = abs(a - b)
    return out


def retrieval_check(devices: list[str], *, n_queries: int = 512, n_docs: int = 50_000, dim: int = 384,
                    k: int = 100, seed: int = 0) -> dict[str, Any]:
    """Exact top-k on random unit vectors per device; agreement with the CPU result."""
    from era_core.retrieval import topk_search

    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_queries, dim)).astype(np.float32)
    d = rng.standard_normal((n_docs, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    out: dict[str, Any] = {}
    ref = None
    for device in devices:
        t0 = time.perf_counter()
        scores, idx = topk_search(q, d, k=k, device=device)
        row: dict[str, Any] = {"seconds": time.perf_counter() - t0, "queries": n_queries, "docs": n_docs, "k": k}
        if ref is None:
            ref = (scores, idx)
        else:
            overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(idx, ref[1])])
            row.update(topk_overlap=float(overlap), max_score_diff=float(np.abs(scores - ref[0]).max()))
        out[device] = row
    return out


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    ap = argparse.ArgumentParser(prog="python -m era_core.tools.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm-l6", help="bundled model to time (default: %(default)s)")
    ap.add_argument("--small-model", default="minilm-l3-onnx", help="document model for the training check")
    ap.add_argument("--n-texts", type=int, default=3000, help="smoke texts to encode (default: %(default)s)")
    ap.add_argument("--tasks", default="", help="comma-separated smoke tasks (default: all)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--align-epochs", type=int, default=20)
    ap.add_argument("--label-epochs", type=int, default=20)
    ap.add_argument("--retrieval-docs", type=int, default=50_000)
    ap.add_argument("--cpu-only", action="store_true", help="run only the CPU halves (tests the script without a GPU)")
    ap.add_argument("--out", default=None, help="also write the JSON summary to this file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run every check and print one JSON summary; exit 2 when CUDA is missing (unless --cpu-only)."""
    import torch

    args = build_parser().parse_args(argv)
    if not args.cpu_only and not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA device (torch.cuda.is_available() is False, torch "
              f"{torch.__version__}, CUDA build {torch.version.cuda}); run it on a machine with an NVIDIA GPU "
              "and a CUDA build of torch, or pass --cpu-only to test the script itself", file=sys.stderr)
        return EXIT_NO_CUDA
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] or None
    devices = ["cpu"] if args.cpu_only else ["cuda", "cpu"]
    variants = [("cpu", "float32")] + ([] if args.cpu_only else [("cuda", "float32"), ("cuda", "float16")])
    summary: dict[str, Any] = {
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_only": args.cpu_only, "model": args.model,
    }
    t0 = time.perf_counter()
    texts = smoke_texts(args.n_texts, tasks)
    summary["encode"] = encode_check(args.model, texts, variants, batch_size=args.batch_size,
                                     max_length=args.max_length)
    summary["train"] = training_check(devices, tasks=tasks, large=args.model, small=args.small_model,
                                      align_epochs=args.align_epochs, label_epochs=args.label_epochs)
    summary["retrieval"] = retrieval_check(devices, n_docs=args.retrieval_docs)
    summary["total_seconds"] = time.perf_counter() - t0
    text = json.dumps(summary, indent=2, sort_keys=True)
    print(text)
    if args.out:
        from era_core.io import atomic_write_text

        atomic_write_text(Path(args.out), text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
