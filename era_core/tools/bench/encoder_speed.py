"""The ``encode`` and ``encode_gemma`` sections: era_core's encoder vs sentence-transformers on the same texts."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from era_core.tools.bench.sizes import BenchSizes
from era_core.tools.bench.targets import TARGETS
from era_core.tools.bench.texts import bench_passages, bench_queries, bench_words
from era_core.tools.bench.timing import apply_threads, median, ratio, time_interleaved
from era_core.errors import ModelUnavailableError

GEMMA_KEY = "embeddinggemma-300m"
GEMMA_FETCH = f"python -m era_core.encoders.wheels fetch {GEMMA_KEY}"


def _forward_timer(model: Any) -> tuple[list[float], Callable[[], None]]:
    """Accumulate the wall time of ``model``'s forward calls; returns (totals, remove_hooks)."""
    acc = [0.0]
    start: list[float] = []
    pre = model.register_forward_pre_hook(lambda *_: start.append(time.perf_counter()))

    def post(*_: Any) -> None:
        acc[0] += time.perf_counter() - start.pop()

    hook = model.register_forward_hook(post)
    return acc, lambda: (pre.remove(), hook.remove())


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float((np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def compare_encoders(
    era: Any,
    era_fp32: Any,
    st: Any,
    texts: dict[str, list[str]],
    *,
    batch_size: int,
    max_length: int,
    repeats: int,
    progress: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict[str, Any]]:
    """Per kind of text: era_core (``auto`` and fp32) vs sentence-transformers times, ratios and min cosines."""
    out: dict[str, dict[str, Any]] = {}
    for kind, items in texts.items():
        tokens = era.count_tokens(items)
        times, vecs = time_interleaved(
            {
                "era": lambda items=items: era.encode(items, batch_size=batch_size, progress=progress),
                "era_fp32": lambda items=items: era_fp32.encode(items, batch_size=batch_size, progress=progress),
                "st": lambda items=items: st.encode(
                    items, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=progress,
                ),
            },
            repeats,
            clock=clock,
        )
        t_era, t_fp32, t_st = median(times["era"]), median(times["era_fp32"]), median(times["st"])
        out[kind] = {
            "era_s": t_era,
            "era_fp32_s": t_fp32,
            "st_s": t_st,
            "era_texts_per_s": len(items) / t_era,
            "era_fp32_texts_per_s": len(items) / t_fp32,
            "st_texts_per_s": len(items) / t_st,
            "ratio": ratio(t_st, t_era),
            "fp32_ratio": ratio(t_st, t_fp32),
            "cosine_min": _min_cosine(vecs["era"], vecs["st"]),
            "fp32_cosine_min": _min_cosine(vecs["era_fp32"], vecs["st"]),
            "tokens_mean": float(np.mean(tokens)),
            "truncated_share": float(np.mean(np.asarray(tokens) > max_length)),
            "times_era_s": times["era"],
            "times_era_fp32_s": times["era_fp32"],
            "times_st_s": times["st"],
        }
    return out


def encode_headline(prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    """Headline fields ``{prefix}_vs_st_ratio`` etc. of an encode section, and its ok/error verdict in ``out``."""
    cos_min = min([1.0, *(out[kind]["cosine_min"] for kind in ("passages", "queries"))])
    out["cosine_min"] = cos_min
    out["headline"] = {
        f"{prefix}_vs_st_ratio": out["passages"]["ratio"],
        f"{prefix}_fp32_vs_st_ratio": out["passages"]["fp32_ratio"],
        f"{prefix}_queries_vs_st_ratio": out["queries"]["ratio"],
        f"{prefix}_cosine_min": cos_min,
        f"{prefix}_dtype": out["era_precision"],
    }
    limit = TARGETS[f"{prefix}_cosine_min"][0]
    out["ok"] = cos_min > limit
    if not out["ok"]:
        out["error"] = f"era_core and sentence-transformers vectors disagree: min cosine {cos_min:.7f} <= {limit:g}"
    return out["headline"]


def _load_encoders(key: str, *, threads: int, max_length: int) -> tuple[Any, Any]:
    """era_core's encoder for ``key`` at the profiles' ``auto`` precision and at fp32, both loaded."""
    from era_core.encoders import load_encoder

    # "auto" is what every profile's params use: bf16 matmuls on CPUs with native bf16, else fp32.
    enc = load_encoder(key, dtype="auto", threads=threads, max_length=max_length, progress=False)
    fp32 = load_encoder(key, dtype="float32", threads=threads, max_length=max_length, progress=False)
    enc.load()
    fp32.load()
    return enc, fp32


def _reference_encoder(folder: Any, max_length: int) -> tuple[Any, str | None, int]:
    """sentence-transformers on ``folder`` in fp32, prompts off, ``max_length``; and its default prompt and length."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu")
    st.float()  # the reference is fp32 whatever dtype the folder's config names
    default_prompt = st.default_prompt_name
    st.default_prompt_name = None  # the texts below carry their prompts already; ST must not add another
    default_len = st.max_seq_length
    st.max_seq_length = max_length
    return st, default_prompt, default_len


def _prompted_texts(enc: Any, n_passages: int, n_queries: int,
                    passage_words: tuple[int, int]) -> tuple[list[str], dict[str, list[str]]]:
    """The raw passages, and passages and queries as both sides embed them."""
    words = bench_words()
    passages = bench_passages(n_passages, words, min_words=passage_words[0], max_words=passage_words[1])
    # Formatted once by era_core's own prompt functions (no-ops for unprompted models such as MiniLM),
    # so both sides embed exactly the same strings.
    texts = {"passages": enc.format_documents(passages), "queries": enc.format_queries(bench_queries(n_queries), None)}
    return passages, texts


def passage_profile(enc: Any, passages: list[str], batch_size: int) -> dict[str, Any]:
    """Where era_core's passage time goes: one extra, instrumented pass (tokenisation, forward, the rest)."""
    t0 = time.perf_counter()
    enc.tokenize(passages)
    tok_s = time.perf_counter() - t0
    acc, remove = _forward_timer(enc.model)  # the loaded torch module
    try:
        t0 = time.perf_counter()
        enc.encode(passages, batch_size=batch_size, progress=False)
        total = time.perf_counter() - t0
    finally:
        remove()
    return {
        "total_s": total,
        "tokenize_s": tok_s,
        "forward_s": acc[0],
        "other_s": max(0.0, total - tok_s - acc[0]),  # padding, pooling, normalisation, copies
        "forward_share": acc[0] / total if total > 0 else None,
    }


def encode_section(
    key: str,
    *,
    prefix: str,
    n_passages: int,
    n_queries: int,
    passage_words: tuple[int, int],
    batch_size: int,
    max_length: int,
    repeats: int,
    threads: int,
    progress: bool = False,
    skip_hint: str | None = None,
) -> dict[str, Any]:
    """era_core's encoder for registry model ``key`` (``auto`` precision, and fp32) vs sentence-transformers.

    With ``skip_hint``, weights that are not unpacked give ``{"ok": False, "skipped": ...}`` instead of raising.
    """
    try:
        enc, fp32 = _load_encoders(key, threads=threads, max_length=max_length)
    except ModelUnavailableError as exc:
        if skip_hint is None:
            raise
        return {"ok": False, "model": key, "skipped": f"not available: run `{skip_hint}`", "reason": str(exc)}
    st, st_default_prompt, st_default_len = _reference_encoder(enc.location, max_length)
    apply_threads(threads)  # model loading may have reset torch's pool
    passages, texts = _prompted_texts(enc, n_passages, n_queries, passage_words)
    out: dict[str, Any] = {
        "model": key,
        "folder": str(enc.location),
        "era_dtype": enc.dtype,
        "era_precision": enc.cache_fields().get("precision", enc.dtype),
        "st_dtype": str(next(st.parameters()).dtype).removeprefix("torch."),
        "batch_size": batch_size,
        "max_length": max_length,
        "st_default_max_seq_length": st_default_len,
        "threads": threads,
        "repeats": repeats,
        "n_passages": len(texts["passages"]),
        "n_queries": len(texts["queries"]),
        "passage_words_mean": float(np.mean([len(t.split()) for t in passages])),
    }
    if enc.spec.query_prefix or enc.spec.document_prefix:
        out["prompts"] = {"query": enc.spec.query_prefix, "document": enc.spec.document_prefix,
                          "st_default_prompt_name": st_default_prompt}
    out.update(compare_encoders(enc, fp32, st, texts, batch_size=batch_size, max_length=max_length,
                                repeats=repeats, progress=progress))
    out["passage_profile"] = passage_profile(enc, texts["passages"], batch_size)
    encode_headline(prefix, out)
    return out


def bench_encode(sizes: BenchSizes, threads: int, *, progress: bool = False) -> dict[str, Any]:
    """era_core's encoder (default ``auto`` precision, and fp32) vs sentence-transformers, same folder and texts."""
    return encode_section(
        "minilm-l6", prefix="encode", n_passages=sizes.enc_passages, n_queries=sizes.enc_queries,
        passage_words=sizes.passage_words, batch_size=sizes.enc_batch_size, max_length=sizes.enc_max_length,
        repeats=sizes.repeats, threads=threads, progress=progress,
    )


def bench_encode_gemma(sizes: BenchSizes, threads: int, *, progress: bool = False) -> dict[str, Any]:
    """EmbeddingGemma-300M, prompts applied by era_core, vs sentence-transformers; a reported skip without weights."""
    return encode_section(
        GEMMA_KEY, prefix="encode_gemma", n_passages=sizes.gemma_passages, n_queries=sizes.gemma_queries,
        passage_words=sizes.passage_words, batch_size=sizes.enc_batch_size, max_length=sizes.gemma_max_length,
        repeats=sizes.gemma_repeats, threads=threads, progress=progress, skip_hint=GEMMA_FETCH,
    )
