"""Legal tasks from the licence texts and detection rules of ScanCode (wheel read, never installed)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from era_core import paths
from era_core.data.offline.common import Candidate, SourceTask, clean, fetch_wheel

DIST, VERSION = "scancode-toolkit-mini", "32.5.0"
LICENCE = "CC-BY-4.0 (ScanCode LicenseDB data)"
NOTICES_NAME = "License-Notices"
REFERENCES_NAME = "License-References"
NOTICE_INSTRUCTIONS = (
    "Given a licence notice found in a source file, retrieve the full text of the licence it grants.",
)
REFERENCE_INSTRUCTIONS = (
    "Given a short mention of a software licence, retrieve the full text of the licence it refers to.",
)
_PREFIX = "licensedcode/data/"
_SINGLE_KEY = re.compile(r"^[a-z0-9][a-z0-9.+_-]*$")


def _split(raw: bytes) -> tuple[dict[str, str], str]:
    """Split a ScanCode ``---`` YAML front matter (top-level scalars only) from the text."""
    text = raw.decode("utf-8", errors="replace")
    meta: dict[str, str] = {}
    if text.startswith("---"):
        _, head, body = text.split("---", 2)
        for line in head.splitlines():
            if line and not line[0].isspace() and ": " in line:
                k, v = line.split(": ", 1)
                meta[k.strip()] = v.strip().strip("'\"")
        text = body
    return meta, text.strip()


def _wheel() -> Path:
    return fetch_wheel(DIST, VERSION, paths.DATA_CACHE / "sources")


def _read(flag: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Licence docs (key → name + text) and (rule text, key) pairs for rules carrying ``flag``."""
    docs: dict[str, str] = {}
    rules: list[tuple[str, str]] = []
    with zipfile.ZipFile(_wheel()) as zf:
        names = sorted(zf.namelist())
        for name in names:
            if name.startswith(_PREFIX + "licenses/") and name.endswith(".LICENSE"):
                meta, text = _split(zf.read(name))
                if any(meta.get(k) == "yes" for k in ("is_deprecated", "is_unknown", "is_generic")):
                    continue
                if len(text.split()) >= 30:
                    docs[meta.get("key", Path(name).stem)] = f"{meta.get('name', '')}\n\n{text}".strip()
        for name in names:
            if name.startswith(_PREFIX + "rules/") and name.endswith(".RULE"):
                meta, text = _split(zf.read(name))
                key = meta.get("license_expression", "")
                if meta.get(flag) != "yes" or meta.get("is_false_positive") == "yes" \
                        or meta.get("is_deprecated") == "yes" or not _SINGLE_KEY.match(key) or key not in docs:
                    continue
                # {{...}} marks ScanCode's required phrases; the braces are not part of the text.
                rules.append((clean(text.replace("{{", "").replace("}}", "")), key))
    return docs, rules


def build_notices() -> SourceTask:
    """Licence notice rule → full licence text."""
    docs, rules = _read("is_license_notice")
    cands = [Candidate(t, k) for t, k in rules if len(t.split()) >= 8]
    return SourceTask(
        name=NOTICES_NAME, domain="legal", source=DIST, source_version=VERSION, source_licence=LICENCE,
        description="ScanCode licence-notice rule (single licence) → the licence's name and full text.",
        instructions=NOTICE_INSTRUCTIONS, candidates=cands, docs=docs)


def build_references() -> SourceTask:
    """Short licence reference rule → full licence text."""
    docs, rules = _read("is_license_reference")
    cands = [Candidate(t, k) for t, k in rules if len(t.split()) >= 3]
    return SourceTask(
        name=REFERENCES_NAME, domain="legal", source=DIST, source_version=VERSION, source_licence=LICENCE,
        description="ScanCode licence-reference rule (a short mention such as 'licensed under the X licence', "
                    "single licence) → the licence's name and full text.",
        instructions=REFERENCE_INSTRUCTIONS, candidates=cands, docs=docs)
