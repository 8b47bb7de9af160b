"""Input sizes of every section: ``FULL`` for ``make bench``, ``QUICK`` for ``--quick`` and the tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchSizes:
    """Input sizes of every section; ``FULL`` takes about 8 minutes on 2 idle cores (EmbeddingGemma and
    st_runtime included), ``QUICK`` a few seconds each."""

    repeats: int
    enc_passages: int
    enc_queries: int
    enc_batch_size: int
    enc_max_length: int
    passage_words: tuple[int, int]  # min and max words of the encoded passages
    search_docs: tuple[int, ...]
    search_queries: int
    search_k: int
    memory_docs: int
    metrics_queries: int
    metrics_depth: int
    train_pairs: int  # planted pairs when no cached embeddings exist
    train_epochs: int
    train_from_cache: bool  # use the default profile's cached vectors when complete
    zero_shot_tasks: tuple[str, ...] | None  # None: every smoke task
    scaling_encode: tuple[int, ...]
    scaling_search: tuple[int, ...]
    scaling_budget_s: float  # per curve: larger points are skipped once they would overrun it
    # EmbeddingGemma runs ~10 passages/s on 2 threads at max_length 128: its own, smaller sizes.
    gemma_passages: int
    gemma_queries: int
    gemma_max_length: int
    gemma_repeats: int
    # st_runtime: the static lookup encodes thousands of texts a second; every model at the profiles' max_length.
    static_passages: int
    static_queries: int
    st_max_length: int


FULL = BenchSizes(
    repeats=3,
    enc_passages=256,
    enc_queries=512,
    enc_batch_size=32,
    enc_max_length=256,
    passage_words=(150, 250),
    search_docs=(10_000, 200_000),
    search_queries=1000,
    search_k=100,
    memory_docs=1_000_000,
    metrics_queries=10_000,
    metrics_depth=100,
    train_pairs=6000,
    train_epochs=100,
    train_from_cache=True,
    zero_shot_tasks=None,
    scaling_encode=(1000, 2000, 4000, 8000),
    scaling_search=(1000, 3000, 10_000, 30_000, 100_000),
    scaling_budget_s=200.0,
    gemma_passages=48,
    gemma_queries=96,
    gemma_max_length=128,
    gemma_repeats=3,
    static_passages=2000,
    static_queries=4000,
    st_max_length=128,
)
QUICK = BenchSizes(
    repeats=3,
    enc_passages=4,
    enc_queries=16,
    enc_batch_size=32,
    enc_max_length=256,
    passage_words=(30, 60),
    search_docs=(2000, 5000),
    search_queries=64,
    search_k=100,
    memory_docs=10_000,
    metrics_queries=300,
    metrics_depth=100,
    train_pairs=300,
    train_epochs=3,
    train_from_cache=False,
    zero_shot_tasks=("HPO-Synonyms",),
    scaling_encode=(4, 8, 16),
    scaling_search=(1000, 2000, 4000),
    scaling_budget_s=60.0,
    gemma_passages=2,
    gemma_queries=4,
    gemma_max_length=64,
    gemma_repeats=1,
    static_passages=16,
    static_queries=32,
    st_max_length=64,
)
