#!/usr/bin/env python
"""Check that two `make paper` output folders hold the same results: the before/after test of a refactor.

    .venv/bin/python scripts/same_results.py BEFORE AFTER     # each holding results/ and figures/

Every results file, table, adapter and figure must be byte-identical, with two exceptions that a
code change moves by design: JSON fields holding content hashes of the code (``code``,
``config_key``, ``training_key``, ``key``, and ``reused_from_cache``, the Phase 1 adapter's key), which are compared with those fields removed, and the
files that are keyed or drawn by those hashes or by wall-clock time (``results/runs/_trained/``,
``results/timing/``, ``results/executed/``, the timing figure ``figures/cost_quality.pdf``), which
are skipped. An exported adapter's safetensors header embeds its run's ``config_key``: its tensors
and the rest of its header must match. Exit status 0 when everything matches, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

#: Fields that hash the code (part of run and training keys): they change with any edit of the code.
HASH_FIELDS = frozenset({"code", "config_key", "training_key", "key", "reused_from_cache"})
#: Paths keyed by code hashes or wall-clock time.
SKIPPED = (("results", "runs", "_trained"), ("results", "timing"), ("results", "executed"))
TIMED_FIGURES = frozenset({Path("figures/cost_quality.pdf")})


def without_hashes(obj: object) -> object:
    """``obj`` with every ``HASH_FIELDS`` key removed, recursively (also inside JSON-encoded strings)."""
    if isinstance(obj, dict):
        return {k: without_hashes(v) for k, v in obj.items() if k not in HASH_FIELDS}
    if isinstance(obj, list):
        return [without_hashes(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("{"):
        try:
            return without_hashes(json.loads(obj))
        except ValueError:
            return obj
    return obj


def _safetensors_parts(data: bytes) -> tuple[object, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return without_hashes(json.loads(data[8 : 8 + n])), data[8 + n :]


def same_content(rel: Path, a: bytes, b: bytes) -> bool:
    """True when two versions of one output file hold the same results (see the module docstring)."""
    if a == b:
        return True
    try:
        if rel.suffix == ".json":
            return without_hashes(json.loads(a)) == without_hashes(json.loads(b))
        if rel.suffix == ".safetensors":
            return _safetensors_parts(a) == _safetensors_parts(b)
    except (ValueError, struct.error):
        return False
    return False


def compare(before: Path, after: Path) -> dict[str, list[str]]:
    """``{"identical", "hash_fields_only", "different", "missing", "extra"}``: relative paths of each kind."""
    def files(root: Path) -> set[Path]:
        out = set()
        for p in root.rglob("*"):
            rel = p.relative_to(root)
            if p.is_file() and not any(rel.parts[: len(s)] == s for s in SKIPPED) and rel not in TIMED_FIGURES:
                out.add(rel)
        return out

    fa, fb = files(before), files(after)
    report: dict[str, list[str]] = {"identical": [], "hash_fields_only": [], "different": [],
                                    "missing": sorted(map(str, fa - fb)), "extra": sorted(map(str, fb - fa))}
    for rel in sorted(fa & fb):
        a, b = (before / rel).read_bytes(), (after / rel).read_bytes()
        kind = "identical" if a == b else "hash_fields_only" if same_content(rel, a, b) else "different"
        report[kind].append(str(rel))
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI: print the comparison and exit 1 on any difference."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path, help="output folder of the old code (holding results/ and figures/)")
    ap.add_argument("after", type=Path, help="output folder of the new code")
    args = ap.parse_args(argv)
    for folder in (args.before, args.after):
        if not (folder / "results").is_dir():
            ap.error(f"{folder} has no results/ folder; pass the folder that `make paper RES=... FIG=...` wrote")
    report = compare(args.before, args.after)
    print(f"{len(report['identical'])} files byte-identical, {len(report['hash_fields_only'])} identical but for "
          f"code-hash fields")
    bad = False
    for kind in ("different", "missing", "extra"):
        for rel in report[kind]:
            print(f"{kind}: {rel}")
            bad = True
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
