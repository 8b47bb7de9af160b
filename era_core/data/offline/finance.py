"""Finance tasks from the source of two quantitative-finance libraries (wheels read, never installed)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from era_core import paths
from era_core.data.offline.codefuncs import extract_functions
from era_core.data.offline.common import SourceTask, fetch_wheel

PRICING_NAME = "FinancePy-Pricing"
INDICATORS_NAME = "FinTA-Indicators"
PRICING_INSTRUCTIONS = (
    "Given a description of a financial valuation or risk calculation, retrieve the code that implements it.",
)
INDICATOR_INSTRUCTIONS = (
    "Given a description of a technical-analysis indicator used in trading, retrieve the code that computes it.",
)


def _wheel_sources(wheel: Path, package: str):
    """(module name, source) of every .py file of ``package`` inside a wheel, sorted by path."""
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            if name.startswith(package + "/") and name.endswith(".py") and "/tests/" not in name:
                yield name[:-3].replace("/", "."), zf.read(name).decode("utf-8", errors="replace")


def build_pricing() -> SourceTask:
    """financepy: docstring sentence of a pricing/risk function → its source."""
    dist, version = "financepy", "1.1.2"
    cands, docs, failed = extract_functions(
        _wheel_sources(fetch_wheel(dist, version, paths.DATA_CACHE / "sources"), dist), min_query_words=5)
    return SourceTask(
        name=PRICING_NAME, domain="finance", source=dist, source_version=version, source_licence="GPL-3.0-or-later",
        description="First docstring sentence of a financepy function/method (bond, swap, option, curve valuation) "
                    "→ its source with the docstring removed.",
        instructions=PRICING_INSTRUCTIONS, candidates=cands, docs=docs, notes={"unparsable_files": failed})


def build_indicators() -> SourceTask:
    """finta: first sentence of an indicator's description → the indicator's implementation."""
    dist, version = "finta", "1.3"
    cands, docs, failed = extract_functions(
        _wheel_sources(fetch_wheel(dist, version, paths.DATA_CACHE / "sources"), dist), min_query_words=3,
        max_query_words=60)
    return SourceTask(
        name=INDICATORS_NAME, domain="finance", source=dist, source_version=version, source_licence="LGPL-3.0-or-later",
        description="First sentence of a finta technical indicator's description → its implementation with the "
                    "docstring removed.",
        instructions=INDICATOR_INSTRUCTIONS, candidates=cands, docs=docs, notes={"unparsable_files": failed})
