"""Phase 1 text sources: which identical texts the alignment phase pairs, and how many.

Three sources, each a value of the ``align_source`` parameter:

- ``task_docs``: the reference (ERA_METHOD.md §3.1): ``samples_per_task`` corpus documents per task
  (``identical_texts.per_task_sample``). At full size its pairs are exactly ``identical_texts.alignment_pairs``.
- ``corpus_pool``: unlabelled documents of the offline builders' sources that the corpus caps left out:
  no text in any task's corpus and no query text of any task (compared after whitespace/case
  normalisation). Offline benchmarks only: MAIR ships each task's corpus and nothing beyond it.
- ``train_queries``: the texts of the train-split queries (§3.2.1, for the cell's seed and train
  ratio), never validation or test queries, and no labels. Both sides encode the bare query text,
  never an instruction: an identical-text pair, like the documents (an instruction template would
  make one instruction direction dominate the targets). Models with their own query prompt
  (EmbeddingGemma) keep it. These are the ``native`` query vectors of uninstructed models, so for
  them this source encodes nothing new.

- ``all_texts``: a diagnostic ceiling, not a method: every document of every task and every labelled
  query's bare text, *test queries included* (texts only, never a label). It always takes everything,
  whatever the size, and says how far more identical-text data of this kind could lift ERA on the pair.
  No new encoding: the corpora and the bare queries are in the zero-shot caches.

Sizes are nested: the texts of a source are ordered once (tasks interleaved round-robin, each task
shuffled by ``Random(f"{sample_seed}/{task index}")``), and size ``n`` takes the first ``n`` of that
order, capped by what the source has. The chosen pairs are returned in *source order*, so the full
``task_docs`` sample is today's Phase 1 pairs row for row.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from era_core.cache import embed_texts
from era_core.data import Task, load_tasks
from era_core.errors import ParamsError

SOURCES = ("task_docs", "corpus_pool", "train_queries", "all_texts")
#: corpus_pool texts are encoded in blocks of this many (in sample order), so a larger size reuses
#: every block a smaller one cached.
POOL_BLOCK = 1000


@dataclass
class SourcePairs:
    """Paired vectors of one source sample (rows in source order) and the source's size."""

    source: str
    x: np.ndarray  # large-model vectors
    y: np.ndarray  # small-model vectors of the same texts
    texts: list[str]
    n_available: int


def check_source(source: str, benchmark: str) -> None:
    """Raise ``ParamsError`` for an unknown source or ``corpus_pool`` on a non-offline benchmark."""
    if source not in SOURCES:
        raise ParamsError(f"align_source {source!r} is unknown; allowed values: {', '.join(SOURCES)}")
    if source == "corpus_pool" and benchmark not in ("offline", "offline-smoke"):
        raise ParamsError(
            f"align_source 'corpus_pool' is defined for the offline benchmarks only (it re-reads the offline "
            f"builders' sources); benchmark {benchmark!r} ships each task's corpus and no unused texts. "
            "Use 'task_docs' or 'train_queries'."
        )


def interleaved_order(group_sizes: list[int], seed: int) -> list[int]:
    """Global indices (groups concatenated) ordered round-robin over groups, each group shuffled by its own RNG."""
    queues, start = [], 0
    for g, n in enumerate(group_sizes):
        idx = list(range(start, start + n))
        random.Random(f"{seed}/{g}").shuffle(idx)
        queues.append(idx)
        start += n
    out: list[int] = []
    for depth in range(max(group_sizes, default=0)):
        out.extend(q[depth] for q in queues if depth < len(q))
    return out


def nested_rows(group_sizes: list[int], size: int, seed: int) -> list[int]:
    """The rows of a size-``size`` sample: the first ``size`` of ``interleaved_order``, in source order."""
    if size < 1:
        raise ParamsError(f"alignment sample size must be >= 1, got {size}")
    return sorted(interleaved_order(group_sizes, seed)[:size])


def _group_sizes(keys: list[str]) -> list[int]:
    """Lengths of the runs of equal consecutive keys (the task groups of a source-ordered list)."""
    sizes: list[int] = []
    for i, k in enumerate(keys):
        if i and k == keys[i - 1]:
            sizes[-1] += 1
        else:
            sizes.append(1)
    return sizes


# ---------------------------------------------------------------- task_docs


def task_docs_full(units: list[Task], setup: Any, samples_per_task: int, seed: int) -> tuple:
    """Today's pooled Phase 1 sample before the hold-out split: ``(x, y, texts, task per row)``."""
    from era_core.vectors import embed_corpus
    from era_core.identical_texts import per_task_sample
    from era_core.setup import get_encoder

    xs, ys, texts, keys = [], [], [], []
    large = get_encoder(setup.large_model, setup)
    for unit, rows in per_task_sample(units, samples_per_task, seed):
        # The same calls as identical_texts.alignment_pairs, so the vectors are bit-identical to today's.
        full = embed_texts(large, list(unit.corpus.values()), role="document", lookup_only=True)
        xs.append(full[rows] if full is not None else embed_corpus(setup.large_model, unit, setup, rows=rows))
        ys.append(embed_corpus(setup.small_model, unit, setup)[rows])
        docs = list(unit.corpus.values())
        texts += [docs[r] for r in rows]
        keys += [unit.task_name] * len(rows)
    return np.concatenate(xs), np.concatenate(ys), texts, keys


# ---------------------------------------------------------------- corpus_pool


def _norm(text: str) -> str:
    from era_core.data.offline.common import norm

    return norm(text)


def _builders(benchmark: str) -> dict[str, Any]:
    """Task name -> the offline builder that reads its source (offline/ is frozen: reuse, never copy)."""
    from era_core.data.offline import _TASKS, offline_task_table

    table = offline_task_table(smoke=benchmark == "offline-smoke")
    return {name: build for name, _, build in _TASKS if name in table}


def excluded_texts(tasks: list[Task]) -> set[str]:
    """Normalised texts no alignment text may equal: every corpus document and every query of ``tasks``."""
    out: set[str] = set()
    for task in tasks:
        for unit in task.units():
            out.update(_norm(t) for t in unit.corpus.values())
            out.update(_norm(t) for t in unit.queries.values())
    return out


@functools.lru_cache(maxsize=4)
def corpus_pool_texts(benchmark: str, tasks: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``(task, text)`` of every unused source document of ``tasks``, task order then source order, deduplicated.

    Documents are truncated as the build truncated its corpora (``max_words`` of its caps), then any
    text equal (normalised) to a corpus document or a query of ANY task of the benchmark is dropped.
    """
    from era_core.io import read_json
    from era_core.data.offline import default_root
    from era_core.data.offline.common import truncate_words

    check_source("corpus_pool", benchmark)
    from era_core.data import list_tasks
    from era_core.data.offline import DOWNLOADS

    # Every task of the benchmark, except a downloaded one the run leaves out (it needs no download then).
    everything = load_tasks(benchmark, [t for t in list_tasks(benchmark) if t not in DOWNLOADS or t in tasks],
                            progress=False)  # also builds the benchmark if missing
    max_words = read_json(default_root(benchmark == "offline-smoke") / "tasks.json")["caps"]["max_words"]
    seen = excluded_texts(everything)
    builders = _builders(benchmark)
    out: list[tuple[str, str]] = []
    for name in tasks:
        for text in builders[name]().docs.values():
            text = truncate_words(text, max_words)[0]
            key = _norm(text)
            if key and key not in seen:
                seen.add(key)  # also drops repeats across sources that share texts (the two licence tasks)
                out.append((name, text))
    return tuple(out)


def corpus_pool_pairs(setup: Any, size: int, sample_seed: int) -> SourcePairs:
    """A nested ``corpus_pool`` sample, encoded by both models in cached blocks of ``POOL_BLOCK`` texts."""
    from era_core.setup import get_encoder

    pool = corpus_pool_texts(setup.benchmark, tuple(setup.tasks))
    order = interleaved_order(_group_sizes([t for t, _ in pool]), sample_seed)
    n = min(size, len(order))
    chosen = order[:n]
    xs, ys = [], []
    for start in range(0, n, POOL_BLOCK):
        block = [pool[i][1] for i in order[start:start + POOL_BLOCK]]
        for key, acc in ((setup.large_model, xs), (setup.small_model, ys)):
            acc.append(embed_texts(get_encoder(key, setup), block, role="document",
                                   batch_size=setup.batch_size, progress=setup.progress))
    x, y = np.concatenate(xs)[:n], np.concatenate(ys)[:n]
    back = np.argsort(chosen, kind="stable")  # sample order -> source order
    return SourcePairs("corpus_pool", x[back], y[back], [pool[chosen[i]][1] for i in back], len(order))


# ---------------------------------------------------------------- train_queries


def train_query_rows(units: list[Task], seed: int, train_ratio: float, val_ratio: float,
                     eval_ratio: float) -> list[tuple[int, int]]:
    """``(unit index, row in its labelled-query list)`` of every train-split query, units in order."""
    from era_core.splits import split_unit

    out = []
    for ui, unit in enumerate(units):
        qids = unit.labelled_qids()
        if not qids:
            continue
        train = split_unit(unit, train_ratio, val_ratio, eval_ratio, seed)["train"]
        pos = {q: i for i, q in enumerate(qids)}
        out += [(ui, pos[q]) for q in sorted(train, key=pos.__getitem__)]
    return out


def train_queries_pairs(units: list[Task], setup: Any, size: int, sample_seed: int, *, seed: int,
                        train_ratio: float, val_ratio: float, eval_ratio: float) -> SourcePairs:
    """A nested sample of train-split query texts, as (large, small) vectors of the bare texts (cached)."""
    from era_core.vectors import embed_raw_queries, query_inputs

    rows = train_query_rows(units, seed, train_ratio, val_ratio, eval_ratio)
    keys = [units[ui].task_name for ui, _ in rows]
    chosen = nested_rows(_group_sizes(keys), min(size, len(rows)), sample_seed)
    need = sorted({units[rows[i][0]].name for i in chosen})
    vecs = {}
    for unit in (u for u in units if u.name in need):
        vecs[unit.name] = (embed_raw_queries(setup.large_model, unit, setup),
                           embed_raw_queries(setup.small_model, unit, setup), query_inputs(unit)[1])
    picked = [(units[rows[i][0]].name, rows[i][1]) for i in chosen]
    x = np.stack([vecs[u][0][r] for u, r in picked])
    y = np.stack([vecs[u][1][r] for u, r in picked])
    return SourcePairs("train_queries", x, y, [vecs[u][2][r] for u, r in picked], len(rows))


# ---------------------------------------------------------------- all_texts (diagnostic ceiling)


def all_texts_pairs(units: list[Task], setup: Any) -> SourcePairs:
    """Every corpus document and every labelled query's bare text of ``units``, through both models (cached)."""
    from era_core.vectors import embed_corpus, embed_raw_queries, query_inputs

    xs, ys, texts = [], [], []
    for unit in units:
        xs += [embed_corpus(setup.large_model, unit, setup), embed_raw_queries(setup.large_model, unit, setup)]
        ys += [embed_corpus(setup.small_model, unit, setup), embed_raw_queries(setup.small_model, unit, setup)]
        texts += list(unit.corpus.values()) + query_inputs(unit)[1]
    x, y = np.concatenate(xs), np.concatenate(ys)
    return SourcePairs("all_texts", x, y, texts, len(x))


# ---------------------------------------------------------------- one entry point


def source_pairs(source: str, units: list[Task], setup: Any, size: int, *, seed: int, sample_seed: int,
                 samples_per_task: int, train_ratio: float, val_ratio: float, eval_ratio: float) -> SourcePairs:
    """The size-``size`` sample of ``source`` (capped by what it has), rows in source order."""
    check_source(source, setup.benchmark)
    if source == "corpus_pool":
        return corpus_pool_pairs(setup, size, sample_seed)
    if source == "all_texts":
        return all_texts_pairs(units, setup)
    if source == "train_queries":
        return train_queries_pairs(units, setup, size, sample_seed, seed=seed, train_ratio=train_ratio,
                                   val_ratio=val_ratio, eval_ratio=eval_ratio)
    x, y, texts, keys = task_docs_full(units, setup, samples_per_task, seed)
    rows = nested_rows(_group_sizes(keys), min(size, len(keys)), sample_seed)
    return SourcePairs("task_docs", x[rows], y[rows], [texts[i] for i in rows], len(keys))


def holdout_split(pairs: SourcePairs, eval_ratio: float, seed: int) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_eval, y_eval)`` by ``train.alignment_holdout``: the hold-out is drawn from the same sample."""
    from era_core.train import alignment_holdout

    tr, ev = alignment_holdout(len(pairs.x), eval_ratio, seed=seed)
    return pairs.x[tr], pairs.y[tr], pairs.x[ev], pairs.y[ev]
