"""GPU self-check (``make gpu-check``): CUDA vs CPU for encoding, training and retrieval, as JSON.

1. Encodes a few thousand smoke-benchmark texts with a bundled model on CUDA (fp32 and fp16) and
   on CPU: throughput (texts/s) and cosine agreement with CPU fp32.
2. Trains a small ERA adapter (alignment + label) on the smoke benchmark on CUDA and on CPU and
   compares the test nDCG@10.
3. Runs ``retrieval.topk_search`` with ``device="cuda"`` and on CPU: top-k overlap, score gap.

Without CUDA it exits with code 2 and says so, unless ``--cpu-only`` (which runs the CPU halves
only; used by the test suite to exercise this script on machines without a GPU).

For a GPU machine that has neither the models' packages nor the embedding cache: ``--weights DIR``
reads the timed model's files from a folder (a copy of its package folder, e.g. with the weights
converted to fp16 to travel; CPU and CUDA then run the same weights), and ``--vectors FILE`` reads the
training check's vectors from a file that ``--save-vectors FILE`` wrote on a machine that has them.
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


def local_encoder(key: str, folder: Path, *, device: str, dtype: str, max_length: int) -> Any:
    """An encoder of the registry's transformers model ``key`` that reads its files from ``folder``.

    ``folder`` holds what the model's package folder holds (config, tokenizer, weights); the
    fingerprint is that of the files found there, so vectors of a converted copy never pass for the
    package's. Otherwise it is built as ``load_encoder`` builds it (``encoders.loader.encoder_at``).
    """
    from era_core.encoders import REGISTRY
    from era_core.encoders.loader import encoder_at
    from era_core.encoders.precision import choose_dtype
    from era_core.errors import ParamsError

    spec = REGISTRY[key]
    if spec.backend != "transformers":
        raise ParamsError(f"--weights needs a transformers model; {key!r} has the {spec.backend} backend")
    folder = Path(folder).resolve()
    if not (folder / "config.json").is_file():
        raise ParamsError(f"--weights {folder}: no config.json there; copy the model's whole folder")
    return encoder_at(spec, folder, device=device, dtype=choose_dtype(spec, device, dtype), max_length=max_length)


def encode_check(model: str, texts: list[str], variants: list[tuple[str, str]], *, batch_size: int,
                 max_length: int, weights: Path | None = None) -> dict[str, Any]:
    """Throughput of each (device, dtype) and its cosine agreement with the first variant (CPU fp32).

    ``weights``: read the model's files from this folder (``local_encoder``) instead of its package.
    """
    from era_core.encoders import load_encoder

    out: dict[str, Any] = {}
    reference = None
    for device, dtype in variants:
        if weights is None:
            enc = load_encoder(model, device=device, dtype=dtype, max_length=max_length, progress=False)
        else:
            enc = local_encoder(model, weights, device=device, dtype=dtype, max_length=max_length)
        enc.load()
        enc.encode(texts[: min(len(texts), 2 * batch_size)], batch_size=batch_size, progress=False)  # warm-up
        sync_device(device)
        t0 = time.perf_counter()
        vecs = enc.encode(texts, batch_size=batch_size, progress=False)
        sync_device(device)
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


def sync_device(device: str) -> None:
    """Wait for ``device``'s queued work (CUDA), so a timer around it measures the work."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def device_info() -> dict[str, Any]:
    """torch's version, its CUDA build and the first GPU's name (None without CUDA), for a report's header."""
    import torch

    return {"torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def write_report(report: dict[str, Any], out: str | None) -> None:
    """Print ``report`` as sorted JSON and, with ``out``, also write it there atomically."""
    text = json.dumps(report, indent=2, sort_keys=True)
    print(text)
    if out:
        from era_core.io import atomic_write_text

        atomic_write_text(Path(out), text + "\n")


def training_inputs(tasks: list[str] | None, large: str, small: str) -> tuple[list, np.ndarray]:
    """The training check's vectors, read through the embedding cache on CPU: the smoke tasks'
    ``TaskEmbeddings`` and the large model's vectors of every document (Phase 1's inputs)."""
    from era_core.data import list_tasks
    from era_core.setup import Setup, load_units
    from era_core.vectors import embed_corpus, task_embeddings

    names = tuple(tasks) if tasks else tuple(list_tasks(SMOKE))
    setup = Setup(benchmark=SMOKE, tasks=names, large_model=large, small_model=small, progress=False)
    units = load_units(setup)
    embs = task_embeddings(units, setup, "native")
    x = np.concatenate([embed_corpus(large, u, setup) for u in units])
    return embs, x


def training_check(devices: list[str], *, tasks: list[str] | None, large: str, small: str, align_epochs: int,
                   label_epochs: int, seed: int = 42, inputs: tuple[list, np.ndarray] | None = None,
                   ) -> dict[str, Any]:
    """Train ERA (Phase 1 + Phase 2) on the smoke benchmark per device and score the test split.

    ``inputs``: ``training_inputs``' result, given (e.g. read by ``load_vectors``) or computed here.
    """
    from era_core.api import apply_and_score
    from era_core.metrics import summarise
    from era_core.seeding import seed_everything
    from era_core.splits import test_qids
    from era_core.train import (
        AlignmentConfig,
        LabelConfig,
        split_alignment_pairs,
        train_era,
    )

    embs, x = inputs if inputs is not None else training_inputs(tasks, large, small)
    y = np.concatenate([te.docs_small for te in embs])
    pairs = split_alignment_pairs(x, y, 0.1, seed)
    unit_domain = {te.name: te.domain for te in embs}
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


# ----------------------------------------------------------------------------- vectors that travel

_EMB_ARRAYS = ("q_large", "q_small", "docs_small")


def save_vectors(path: Path, embs: list, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> Path:
    """Write ``TaskEmbeddings``, named extra arrays and a JSON-able ``info`` to one ``.npz`` (no pickles)."""
    from era_core.io import atomic_write

    units = [{"name": te.name, "domain": te.domain, "qids": list(te.qids), "qrels": te.qrels,
              "doc_ids": list(te.doc_ids), "query_split": dict(te.query_split),
              "has_q_small": te.q_small is not None} for te in embs]
    payload: dict[str, np.ndarray] = {"meta": np.array(json.dumps({"units": units, "info": info}))}
    for i, te in enumerate(embs):
        for field in _EMB_ARRAYS:
            value = getattr(te, field)
            if value is not None:
                payload[f"unit{i}.{field}"] = np.asarray(value, dtype=np.float32)
    for name, value in arrays.items():
        payload[f"array.{name}"] = value

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **payload)

    return atomic_write(Path(path), write)


def load_vectors(path: Path) -> tuple[list, dict[str, np.ndarray], dict[str, Any]]:
    """``(TaskEmbeddings, extra arrays, info)`` as ``save_vectors`` wrote them."""
    from era_core.train import TaskEmbeddings

    with np.load(Path(path), allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        embs = []
        for i, u in enumerate(meta["units"]):
            vecs = {f: data[f"unit{i}.{f}"] for f in _EMB_ARRAYS if f"unit{i}.{f}" in data.files}
            te = TaskEmbeddings(name=u["name"], domain=u["domain"], qids=u["qids"], qrels=u["qrels"],
                                doc_ids=u["doc_ids"], q_large=vecs["q_large"], q_small=vecs.get("q_small"),
                                docs_small=vecs["docs_small"], query_split=u["query_split"])
            te.validate()
            embs.append(te)
        arrays = {k[len("array."):]: data[k] for k in data.files if k.startswith("array.")}
    return embs, arrays, meta["info"]


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
    ap.add_argument("--weights", default=None, metavar="DIR",
                    help="read --model's files from this folder (a copy of its package folder) instead of its package")
    ap.add_argument("--vectors", default=None, metavar="FILE",
                    help="read the training check's vectors from FILE (written by --save-vectors) instead of the cache")
    ap.add_argument("--save-vectors", default=None, metavar="FILE",
                    help="write the training check's vectors (read through the cache, on CPU) to FILE and exit")
    ap.add_argument("--cpu-only", action="store_true", help="run only the CPU halves (tests the script without a GPU)")
    ap.add_argument("--out", default=None, help="also write the JSON summary to this file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run every check and print one JSON summary; exit 2 when CUDA is missing (unless --cpu-only)."""
    import torch

    args = build_parser().parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] or None
    if args.save_vectors:
        embs, x = training_inputs(tasks, args.model, args.small_model)
        info = {"benchmark": SMOKE, "large_model": args.model, "small_model": args.small_model,
                "tasks": [te.name for te in embs]}
        save_vectors(Path(args.save_vectors), embs, {"large_docs": x}, info)
        print(f"gpu-check: wrote the training check's vectors of {len(embs)} units to {args.save_vectors}")
        return 0
    if not args.cpu_only and not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA device (torch.cuda.is_available() is False, torch "
              f"{torch.__version__}, CUDA build {torch.version.cuda}); run it on a machine with an NVIDIA GPU "
              "and a CUDA build of torch, or pass --cpu-only to test the script itself", file=sys.stderr)
        return EXIT_NO_CUDA
    devices = ["cpu"] if args.cpu_only else ["cuda", "cpu"]
    variants = [("cpu", "float32")] + ([] if args.cpu_only else [("cuda", "float32"), ("cuda", "float16")])
    summary: dict[str, Any] = {
        **device_info(), "cpu_only": args.cpu_only, "model": args.model, "weights": Path(args.weights).name if args.weights else None,
    }
    t0 = time.perf_counter()
    texts = smoke_texts(args.n_texts, tasks)
    summary["encode"] = encode_check(args.model, texts, variants, batch_size=args.batch_size,
                                     max_length=args.max_length, weights=Path(args.weights) if args.weights else None)
    large, small, inputs = args.model, args.small_model, None
    if args.vectors:
        embs, arrays, info = load_vectors(Path(args.vectors))
        large, small, inputs = info["large_model"], info["small_model"], (embs, arrays["large_docs"])
        summary["train_vectors"] = {"file": Path(args.vectors).name, **info}
    summary["train"] = training_check(devices, tasks=tasks, large=large, small=small,
                                      align_epochs=args.align_epochs, label_epochs=args.label_epochs, inputs=inputs)
    summary["retrieval"] = retrieval_check(devices, n_docs=args.retrieval_docs)
    summary["total_seconds"] = time.perf_counter() - t0
    write_report(summary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
