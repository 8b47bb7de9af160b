"""The ``st_runtime`` section: could sentence-transformers be the encoding runtime of every offline model?

For each offline model, sentence-transformers' own ``encode`` on the model folder, under the precision
policy era_core applies (bf16 autocast around it wherever era_core computes in CPU bf16), against
era_core's encoder at ``dtype='auto'``, on the same formatted texts, batch size and max_length. The rule
(``SWITCH_RULE``) was fixed before measuring: sentence-transformers becomes the runtime of a model
only if it reaches 95 % of era_core's throughput on passages and on queries, with min cosine
>= 0.9999 to era_core's vectors. A model sentence-transformers cannot load gets the reason instead.
For the token models it also counts the padded tokens each side's batching feeds the model: era_core
sorts by token count, sentence-transformers by character count.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from typing import Any, Callable

import numpy as np

from era_core.tools.bench.encoder_speed import _min_cosine, _prompted_texts, _reference_encoder
from era_core.tools.bench.sizes import BenchSizes
from era_core.tools.bench.timing import apply_threads, median, time_interleaved
from era_core.errors import ModelUnavailableError

#: The offline models, in the order the report lists them.
MODELS = ("minilm-l6", "minilm-l3-onnx", "embeddinggemma-300m", "potion-base-8m")
#: Issue 25's rule, fixed before any measurement.
SWITCH_RULE = {"min_relative_throughput": 0.95, "min_cosine": 0.9999}


def onnx_reference_unavailable() -> str:
    """Why sentence-transformers' ONNX backend cannot run here (it needs ``optimum.onnxruntime``)."""
    import importlib.metadata as md

    transformers = md.version("transformers")
    if importlib.util.find_spec("optimum") is None:
        return (f"sentence-transformers' ONNX backend imports optimum.onnxruntime (package optimum-onnx), which "
                f"is not installed; its newest release, 0.1.0, requires transformers<4.58, and this package "
                f"pins transformers {transformers}")
    try:
        # A probe, not a dependency: the package never needs optimum, so it is imported by name.
        importlib.import_module("optimum.onnxruntime")
    except Exception as exc:  # the version clash shows up as an ImportError inside optimum
        return (f"sentence-transformers' ONNX backend needs optimum.onnxruntime, which fails to import with "
                f"transformers {transformers}: {type(exc).__name__}: {str(exc)[:200]}")
    return ("optimum.onnxruntime imports, but a bare .onnx file with a borrowed tokenizer is not a model "
            "folder sentence-transformers loads; not attempted")


def padded_tokens(lengths: list[int], texts: list[str], batch_size: int) -> dict[str, int]:
    """Tokens the model runs on (padding included) when batches are cut by token count vs character count."""
    n = np.asarray(lengths)

    def fed(order: np.ndarray) -> int:
        batches = (order[s : s + batch_size] for s in range(0, len(order), batch_size))
        return int(sum(len(b) * n[b].max() for b in batches))

    by_tokens = np.argsort(-n, kind="stable")
    by_chars = np.argsort([-len(t) for t in texts], kind="stable")
    return {"real": int(n.sum()), "era_core": fed(by_tokens), "sentence_transformers": fed(by_chars)}


def _st_encode(st: Any, autocast: bool, batch_size: int) -> Callable[[list[str]], np.ndarray]:
    """sentence-transformers' ``encode``, under CPU bf16 autocast when era_core's side computes that way."""
    import torch

    def run(items: list[str]) -> np.ndarray:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with ctx:
            return st.encode(items, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                             show_progress_bar=False)

    return run


def _load_st(enc: Any, max_length: int) -> Any:
    """The sentence-transformers model on era_core's folder: fp32 weights, prompts off, same max_length."""
    if enc.spec.backend == "static":
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(enc.location), device="cpu")  # no max_length: StaticEmbedding has none
    return _reference_encoder(enc.location, max_length)[0]


def compare_model(enc: Any, st: Any, texts: dict[str, list[str]], *, batch_size: int,
                  repeats: int) -> dict[str, Any]:
    """Per kind of text: both throughputs, their ratio (sentence-transformers / era_core), min cosine, max |diff|."""
    # The static backend looks up at least 1024 texts at a time (static.StaticBackend); ST gets the same batches.
    st_batch = max(batch_size, 1024) if enc.spec.backend == "static" else batch_size
    st_run = _st_encode(st, enc.autocast, st_batch)
    out: dict[str, Any] = {}
    for kind, items in texts.items():
        times, vecs = time_interleaved(
            {"era": lambda items=items: enc.encode(items, batch_size=batch_size, progress=False),
             "st": lambda items=items: st_run(items)},
            repeats,
        )
        t_era, t_st = median(times["era"]), median(times["st"])
        row: dict[str, Any] = {
            "texts": len(items), "st_batch_size": st_batch,
            "era_texts_per_s": len(items) / t_era, "st_texts_per_s": len(items) / t_st,
            "st_relative_throughput": t_era / t_st, "cosine_min": _min_cosine(vecs["era"], vecs["st"]),
            "max_abs_diff": float(np.abs(vecs["era"] - vecs["st"]).max()),
            "times_era_s": times["era"], "times_st_s": times["st"],
        }
        if enc.spec.backend != "static":
            row["padded_tokens"] = padded_tokens([len(t) for t in enc.tokenize(items)], items, batch_size)
        out[kind] = row
    return out


def verdict(row: dict[str, Any]) -> dict[str, Any]:
    """Whether ``SWITCH_RULE`` lets sentence-transformers run this model, and which part of it fails."""
    if row.get("st_unavailable"):
        return {"switch": False, "why": f"sentence-transformers cannot load it: {row['st_unavailable']}"}
    fails = []
    for kind in ("passages", "queries"):
        rel, cos = row[kind]["st_relative_throughput"], row[kind]["cosine_min"]
        if rel < SWITCH_RULE["min_relative_throughput"]:
            fails.append(f"{kind}: {rel:.2f}x era_core's throughput (< {SWITCH_RULE['min_relative_throughput']})")
        if cos < SWITCH_RULE["min_cosine"]:
            fails.append(f"{kind}: min cosine {cos:.6f} (< {SWITCH_RULE['min_cosine']})")
    return {"switch": not fails, "why": "; ".join(fails) or "meets the rule"}


def model_sizes(key: str, sizes: BenchSizes) -> tuple[int, int, int]:
    """(passages, queries, repeats) for ``key``: EmbeddingGemma is slow, the static lookup very fast."""
    if key == "embeddinggemma-300m":
        return sizes.gemma_passages, sizes.gemma_queries, sizes.gemma_repeats
    if key == "potion-base-8m":
        return sizes.static_passages, sizes.static_queries, sizes.repeats
    return sizes.enc_passages, sizes.enc_queries, sizes.repeats


def measure_model(key: str, sizes: BenchSizes, threads: int) -> dict[str, Any]:
    """One model's row: era_core vs sentence-transformers, or why sentence-transformers cannot run it."""
    from era_core.encoders import load_encoder

    max_length = sizes.st_max_length
    enc = load_encoder(key, dtype="auto", threads=threads, max_length=max_length, progress=False)
    n_passages, n_queries, repeats = model_sizes(key, sizes)
    row: dict[str, Any] = {"backend": enc.spec.backend, "era_precision": enc.precision, "max_length": max_length,
                           "batch_size": sizes.enc_batch_size, "repeats": repeats}
    if enc.spec.backend == "onnx":
        row["st_unavailable"] = onnx_reference_unavailable()
    else:
        enc.load()  # only here: a model sentence-transformers cannot run is never loaded
        st = _load_st(enc, max_length)
        apply_threads(threads)  # model loading may have reset torch's pool
        _, texts = _prompted_texts(enc, n_passages, n_queries, sizes.passage_words)
        row["st_precision"] = "cpu-autocast-bf16" if enc.autocast else "float32"
        row.update(compare_model(enc, st, texts, batch_size=sizes.enc_batch_size, repeats=repeats))
    row["verdict"] = verdict(row)
    return row


def bench_st_runtime(sizes: BenchSizes, threads: int, *, progress: bool = False) -> dict[str, Any]:
    """Every offline model: sentence-transformers as the runtime vs era_core's, judged by ``SWITCH_RULE``."""
    models: dict[str, Any] = {}
    for key in MODELS:
        try:
            models[key] = measure_model(key, sizes, threads)
        except ModelUnavailableError as exc:  # weights not fetched: say so, keep the other models
            models[key] = {"skipped": str(exc).splitlines()[0], "verdict": {"switch": False, "why": "not measured"}}
    switched = [k for k, m in models.items() if m["verdict"]["switch"]]
    return {"rule": SWITCH_RULE, "models": models,
            "headline": {"st_runtime_switched": switched,
                         "st_runtime_measured": [k for k, m in models.items() if "skipped" not in m]}}
