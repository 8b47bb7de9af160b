"""The report's vocabulary: the headline metric, domains, instruction settings, methods and their display labels.

Every other report module sorts and labels by these, so the order of a table's rows, a figure's
legend and the README's numbers is defined once, here.
"""

from __future__ import annotations

from typing import Iterable

from ..errors import EraError

HEADLINE = "ndcg@10"
#: MAIR's domain order; unknown domains (custom benchmarks) follow alphabetically.
DOMAIN_ORDER = ("academic", "code", "finance", "legal", "medical", "web")
OVERALL = "overall"
OVERALL_QW = "overall_query_weighted"
INSTRUCTION_SETTINGS = ("on", "off")
#: Every method of the main table, in display order.
METHODS = ("zero_shot_small", "zero_shot_large", "alignment_only", "label_only", "era", "small_adapter", "fused",
           "residual_mlp")
#: Methods trained on labels (they vary with the train ratio).
LABEL_METHODS = ("label_only", "era", "small_adapter", "fused", "residual_mlp")
METHOD_LABELS = {
    "zero_shot_small": "Zero-shot small",
    "zero_shot_large": "Zero-shot large",
    "alignment_only": "Alignment only",
    "label_only": "Embedding Adapter (label only)",
    "era": "ERA",
    "small_adapter": "Small adapter (same model)",
    "fused": "Fused (large ⊕ small queries)",
    "residual_mlp": "ERA, residual MLP",
}
#: Two-line labels for crowded category axes.
SHORT_LABELS = {
    "zero_shot_small": "Zero-shot\nsmall", "zero_shot_large": "Zero-shot\nlarge", "alignment_only": "Alignment\nonly",
    "label_only": "Embedding\nAdapter", "era": "ERA", "small_adapter": "Small\nadapter",
    "fused": "Fused", "residual_mlp": "ERA\nres. MLP",
}
#: Which encoder embeds the queries of each method (documents always use the small model).
QUERY_SIDE = {
    "zero_shot_small": "small", "zero_shot_large": "large", "alignment_only": "large",
    "label_only": "large", "era": "large", "small_adapter": "small", "fused": "large+small",
    "residual_mlp": "large",
}
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
    """The real domains among ``values`` (no overall columns), in MAIR order."""
    return sorted({v for v in values if v not in (OVERALL, OVERALL_QW)}, key=_domain_key)


def _method_key(m: str) -> int:
    if m not in METHODS:
        raise EraError(f"unknown method {m!r} in the results; allowed values: {', '.join(METHODS)}")
    return METHODS.index(m)


def _lodo_label(method: str, source: str) -> str:
    if source == "zero_shot":
        return METHOD_LABELS[method]
    return f"{METHOD_LABELS[method]} ({'LODO' if source == 'lodo' else 'in-domain'})"
