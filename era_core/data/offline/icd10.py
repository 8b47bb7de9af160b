"""Medical task from the ICD-10-CM tabular list shipped inside ``simple-icd-10-cm``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from era_core.data.offline.common import Candidate, SourceTask, clean, norm, require_package

DIST, VERSION = "simple-icd-10-cm", "1.5.0"
NAME = "ICD10-Inclusion"
INSTRUCTIONS = (
    "Given the name of a clinical condition as a clinician might write it, retrieve the ICD-10-CM code entry "
    "that covers it.",
)


def _tabular_xml() -> Path:
    data = require_package(DIST, VERSION, "simple_icd_10_cm") / "data"
    hits = sorted(data.glob("icd10*tabular*.xml"))
    if not hits:
        from era_core.errors import DataError

        raise DataError(f"No ICD-10-CM tabular XML in {data}; reinstall with: pip install {DIST}=={VERSION}")
    return hits[0]


def _notes(node: ET.Element, tag: str) -> list[str]:
    return [clean("".join(n.itertext())) for el in node.findall(tag) for n in el.findall("note")]


def build() -> SourceTask:
    """Inclusion term → ``code title``, its parent titles and Excludes1 notes (inclusion terms left out)."""
    root = ET.parse(_tabular_xml()).getroot()
    docs: dict[str, str] = {}
    cands: list[Candidate] = []

    def visit(diag: ET.Element, parents: list[str]) -> None:
        code = clean(diag.findtext("name") or "")
        title = clean(diag.findtext("desc") or "")
        lines = [f"{code} {title}"]
        if parents:
            lines.append("Within: " + " > ".join(parents))
        excl = _notes(diag, "excludes1")
        if excl:
            lines.append("Excludes: " + "; ".join(excl))
        docs[code] = "\n".join(lines)
        for term in _notes(diag, "inclusionTerm"):
            if norm(term) != norm(title):
                cands.append(Candidate(term, code))
        for child in diag.findall("diag"):
            visit(child, parents + [title])

    for chapter in root.findall("chapter"):
        for section in chapter.findall("section"):
            for diag in section.findall("diag"):
                visit(diag, [])
    return SourceTask(
        name=NAME, domain="medical", source=DIST, source_version=VERSION,
        source_licence="public domain (US CDC/NCHS ICD-10-CM); package MIT",
        description="ICD-10-CM inclusion term → its code entry (code, title, parent titles, Excludes1 notes; "
                    "the entry's own inclusion terms are not in the document). Tabular list April 2026.",
        instructions=INSTRUCTIONS, candidates=cands, docs=docs)
