"""InsuranceQA V2: real, human-written insurance questions and their human-judged answers, with the official split.

Feng et al., "Applying deep learning to answer selection: a study and an open task", ASRU 2015 (arXiv 1508.01585).
The data ships inside the source distribution of ``insuranceqa-data==1.2`` on PyPI (later versions download it
instead). The sdist is fetched with pip as an archive, hash-checked, and read; it is never installed or imported,
and nothing of it is committed (the upstream data is for research purposes only; the package is GPL-3.0).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

from era_core import paths
from era_core.errors import DataError
from era_core.data.offline.common import Candidate, SourceTask, clean

NAME = "InsuranceQA"
DIST, VERSION = "insuranceqa-data", "1.2"
SDIST = "insuranceqa_data-1.2.tar.gz"
SDIST_SHA256 = "3e1eaa2a8cc3a785b059d52f473c0e7280ba5de045a300701cb731a8b8cb16b3"
#: The data files inside the sdist, with their SHA-256 (checked on every read).
FILES_SHA256 = {
    "answers.json.gz": "9d41cf7ed3c46bc273ffe68e8e9abcb79fcf1d7b973182f6910d9497f8c4451e",
    "train.json.gz": "c6b11732c8cc3ee00693b22b3bfdc19faa39099e140eb07702a7ecedc14d0d69",
    "valid.json.gz": "a0f05c75f4fca5fa2b34d3a2889039837f39149dd103f35d08452505bcfd11f5",
    "test.json.gz": "4625dc4ba5fb08c83387872410007c6ae7f19616b286832962f140612087b253",
}
#: Official split file → the split name of ``era_core.splits``.
SPLITS = {"train.json.gz": "train", "valid.json.gz": "val", "test.json.gz": "test"}
MEMBER_DIR = "insuranceqa_data-1.2/insuranceqa_data/"
INSTRUCTIONS = ("Given a question about insurance, retrieve the answer that responds to it.",)
CITATION = ("Minwei Feng, Bing Xiang, Michael R. Glass, Lidan Wang, Bowen Zhou. Applying deep learning to answer "
            "selection: a study and an open task. ASRU 2015. arXiv:1508.01585.")
LICENCE = "research use only (upstream InsuranceQA); package GPL-3.0"
OPT_OUT = ("or leave the task out: set the `tasks` parameter (params/<profile>/shared.yaml, or papermill "
           "-p tasks ...) to the other tasks of the benchmark")


def _fetch_argv(dest: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "-d", str(dest),
            f"{DIST}=={VERSION}"]


def fetch_command(dest: Path) -> str:
    """The pip command that downloads the pinned sdist into ``dest`` (no install, no build)."""
    return shlex.join(_fetch_argv(dest))


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sdist(path: Path) -> Path:
    """``path`` when it is the pinned sdist; a DataError naming the package, the hash and the fix otherwise."""
    if not path.is_file():
        raise DataError(f"{NAME} needs the sdist of {DIST}=={VERSION} at {path} (SHA-256 {SDIST_SHA256}); fetch it "
                        f"with: {fetch_command(path.parent)}, {OPT_OUT}.")
    found = sha256_of(path)
    if found != SDIST_SHA256:
        raise DataError(f"{path} is not the pinned sdist of {DIST}=={VERSION}: SHA-256 {found}, expected "
                        f"{SDIST_SHA256}. Delete it and fetch it again with: {fetch_command(path.parent)}, {OPT_OUT}.")
    return path


def fetch_sdist(dest: Path | None = None) -> Path:
    """The hash-checked sdist, downloaded once into ``dest`` (the data cache's ``sources/``) with pip."""
    dest = Path(dest) if dest is not None else paths.DATA_CACHE / "sources"
    path = dest / SDIST
    if not path.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(_fetch_argv(dest), capture_output=True, text=True)
        if proc.returncode != 0 or not path.is_file():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise DataError(f"Could not download {DIST}=={VERSION} (needs the package index). {tail}\n"
                            f"Fetch it by hand with: {fetch_command(dest)}, {OPT_OUT}.")
    return check_sdist(path)


def read_sdist(path: Path) -> tuple[dict[str, str], dict[str, dict[str, dict]]]:
    """(answer id → English text, official split → {question id → record}) of the sdist, each file hash-checked."""
    check_sdist(path)
    data = {}
    with tarfile.open(path, "r:gz") as tar:
        for name, expected in FILES_SHA256.items():
            try:
                raw = tar.extractfile(MEMBER_DIR + name).read()
            except (KeyError, AttributeError):
                raise DataError(f"{path} has no {MEMBER_DIR + name}; fetch the sdist again "
                                f"({fetch_command(path.parent)})") from None
            if hashlib.sha256(raw).hexdigest() != expected:
                raise DataError(f"{path}: {name} has SHA-256 {hashlib.sha256(raw).hexdigest()}, expected {expected}; "
                                f"the archive was altered. Delete it and fetch it again ({fetch_command(path.parent)}).")
            data[name] = json.loads(gzip.decompress(raw))
    answers = {aid: clean(rec["en"]) for aid, rec in data["answers.json.gz"].items()}
    return answers, {SPLITS[f]: data[f] for f in SPLITS}


def build(sdist: Path | None = None) -> SourceTask:
    """InsuranceQA as a source task: one candidate per (question, judged answer), labelled with its official split.

    Every answer is in the pool (in numeric id order), so the corpus sample and the Phase 1 corpus pool can draw
    on the answers no sampled question judges.
    """
    path = Path(sdist) if sdist is not None else fetch_sdist()
    answers, splits = read_sdist(path)
    order = sorted(answers, key=lambda a: (len(a), a))  # numeric ids in numeric order
    candidates = []
    for split, questions in splits.items():
        for qid in sorted(questions, key=lambda q: (len(q), q)):
            rec = questions[qid]
            for aid in rec["answers"]:
                if aid not in answers:
                    raise DataError(f"{NAME}: question {split}/{qid} in {path} judges unknown answer {aid!r}; "
                                    f"delete the file and fetch it again ({fetch_command(path.parent)}).")
                candidates.append(Candidate(query=rec["en"], doc_id=aid, split=split, group=f"{split}-{qid}"))
    return SourceTask(
        name=NAME, domain="finance", source=DIST, source_version=VERSION, source_licence=LICENCE,
        description="InsuranceQA V2 (Feng et al., ASRU 2015): real questions asked on an insurance Q&A website, "
                    "answered by professionals; the judged answers are the positives. English text only, "
                    "whitespace normalised; the official train / valid / test split is kept.",
        instructions=INSTRUCTIONS, candidates=candidates, docs={a: answers[a] for a in order},
        notes={"citation": CITATION, "sdist_sha256": SDIST_SHA256, "files_sha256": dict(FILES_SHA256)},
        kind="real")
