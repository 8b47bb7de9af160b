"""The report's vocabulary: the headline metric, domains, instruction settings, methods and their display labels.

Every other report module sorts and labels by these, so the order of a table's rows, a figure's
legend and the README's numbers is defined once, here.
"""

from __future__ import annotations

from typing import Iterable

from era_core.instructions import INSTRUCTION_SETTINGS
from era_core.errors import EraError
from era_core.methods import METHODS as TRAINED

HEADLINE = "ndcg@10"
#: MAIR's domain order; unknown domains (custom benchmarks) follow alphabetically.
DOMAIN_ORDER = ("academic", "code", "finance", "legal", "medical", "web")
OVERALL = "overall"
#: Marks the column of a task with human-written queries and judgements (``era_core.data.offline.REAL_TASKS``).
REAL_SUFFIX = " (real)"
OVERALL_QW = "overall_query_weighted"
#: The zero-shot references, which are no trained method, then every trained method (``era_core.methods``).
_ZERO_SHOT = {"zero_shot_small": ("Zero-shot small", "Zero-shot\nsmall", "small"),
              "zero_shot_large": ("Zero-shot large", "Zero-shot\nlarge", "large")}
#: Every method of the main table, in display order.
METHODS = (*_ZERO_SHOT, *TRAINED)
#: Methods trained on labels (they vary with the train ratio).
LABEL_METHODS = tuple(m for m, rec in TRAINED.items() if rec.trains_on_labels)
METHOD_LABELS = {**{m: v[0] for m, v in _ZERO_SHOT.items()}, **{m: rec.label for m, rec in TRAINED.items()}}
#: Two-line labels for crowded category axes.
SHORT_LABELS = {**{m: v[1] for m, v in _ZERO_SHOT.items()}, **{m: rec.short for m, rec in TRAINED.items()}}
#: Which encoder embeds the queries of each method (documents always use the small model).
QUERY_SIDE = {**{m: v[2] for m, v in _ZERO_SHOT.items()},
              **{m: rec.query_side.replace("fused", "large+small") for m, rec in TRAINED.items()}}
_VALUE_COLS = [f"{HEADLINE}_mean", f"{HEADLINE}_std", "n_seeds"]


def _check_instructions(value: str) -> str:
    if value not in INSTRUCTION_SETTINGS:
        raise EraError(f"main_instructions={value!r} is not allowed; allowed values: {', '.join(INSTRUCTION_SETTINGS)}")
    return value


def _domain_key(d: str) -> tuple[int, str]:
    if d == OVERALL:
        return (len(DOMAIN_ORDER) + 1, d)
    if d == OVERALL_QW:
        return (len(DOMAIN_ORDER) + 2, d)
    return (DOMAIN_ORDER.index(d), d) if d in DOMAIN_ORDER else (len(DOMAIN_ORDER), d)


def _domains(values: Iterable[str]) -> list[str]:
    """The real domains among ``values`` (no overall or single-task columns), in MAIR order."""
    return sorted({v for v in values if v not in (OVERALL, OVERALL_QW) and not is_real_column(v)}, key=_domain_key)


def real_column(task: str) -> str:
    """The column that reports a human-labelled task on its own (it also counts in its domain and the overall)."""
    return f"{task}{REAL_SUFFIX}"


def is_real_column(name: str) -> bool:
    """True for a human-labelled task's own column (``real_column``), which is no domain."""
    return name.endswith(REAL_SUFFIX)


def real_task(column: str) -> str:
    """The task a ``real_column`` reports."""
    return column.removesuffix(REAL_SUFFIX)


def _real_columns(values: Iterable[str]) -> list[str]:
    """The single-task columns of human-labelled tasks among ``values``, sorted."""
    return sorted({v for v in values if is_real_column(v)})


def _method_key(m: str) -> int:
    if m not in METHODS:
        raise EraError(f"unknown method {m!r} in the results; allowed values: {', '.join(METHODS)}")
    return METHODS.index(m)


def _lodo_label(method: str, source: str) -> str:
    if source == "zero_shot":
        return METHOD_LABELS[method]
    return f"{METHOD_LABELS[method]} ({'LODO' if source == 'lodo' else 'in-domain'})"
