"""Query-encoding cost per model, measured on the encoder itself (never through the embedding cache).

The zero-shot protocol reads query vectors through the cache, so timing it measures cache hits on
every run after the first. The cost-quality figure needs what a deployment pays per query: here a
fixed, deterministic sample of labelled queries (instructed as each model's instruction setting
says) is encoded directly, after a warm-up that keeps model loading out, and the best of a few repeats is kept
(the least disturbed by other work on the machine). Timings live in ``results/timing/``, apart from
the results, because they differ from run to run.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from era_core.errors import DataError


def query_sample(units: Sequence[Any], n: int) -> tuple[list[str], list[str]]:
    """The first ``n`` labelled queries taken round-robin over the units, and their instructions ('' if none)."""
    per_unit = [[(u.queries[q], u.instructions.get(q, "")) for q in u.labelled_qids()] for u in units]
    picked: list[tuple[str, str]] = []
    for i in range(max((len(p) for p in per_unit), default=0)):
        picked += [p[i] for p in per_unit if i < len(p)]
        if len(picked) >= n:
            break
    if not picked:
        raise DataError("no labelled query to time; the benchmark's units hold no labelled queries")
    picked = picked[:n]
    return [t for t, _ in picked], [i for _, i in picked]


def measure_query_cost(encoders: Mapping[str, Any], texts: list[str], instructions: list[str], setting: str, *,
                       batch_size: int = 32, repeats: int = 3) -> dict[str, float]:
    """Milliseconds per query of each encoder on ``texts`` under the instruction ``setting``: best of
    ``repeats`` direct encodes after a warm-up."""
    from era_core.instructions import query_instructions

    out: dict[str, float] = {}
    for key, enc in encoders.items():
        formatted = enc.format_queries(texts, query_instructions(enc.spec, setting, instructions))
        enc.encode(formatted[: min(len(formatted), batch_size)], batch_size=batch_size, progress=False)  # warm-up
        best = float("inf")
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            enc.encode(formatted, batch_size=batch_size, progress=False)
            best = min(best, time.perf_counter() - t0)
        out[key] = 1000.0 * best / len(formatted)
    return out
