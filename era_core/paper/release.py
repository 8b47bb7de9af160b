"""Release a trained adapter: the largest-ratio run of a method, exported as a sentence-transformers folder with its
model card (``make release-adapter``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from era_core import paths
from era_core.errors import EraError
from era_core.io import read_json, write_json


def largest_ratio_run(results: Path, method: str = "era", instructions: str = "native") -> Path:
    """The in-domain run folder of ``method`` with the largest train ratio (lowest seed on ties)."""
    root = results / "runs" / "in_domain"
    candidates = []
    for summary in sorted(root.glob("*/summary.json")):
        s = read_json(summary)
        if s["method"] == method and s["instructions"] == instructions:
            candidates.append((-s["train_ratio"], s["seed"], summary.parent))
    if not candidates:
        raise EraError(f"no finished in-domain {method!r} run with instructions {instructions} under {root}; "
                       "run notebooks/03_training.ipynb first (make paper)")
    return min(candidates)[2]


def export_release(run: Path, out: Path) -> Path:
    """A run's adapter as a sentence-transformers ``Router`` folder (``api.export``) with ``model_card.json``."""
    from era_core import api

    trained = api.load(run)
    api.export(trained, out)
    write_json(out / "model_card.json", trained.card)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI behind ``make release-adapter``."""
    ap = argparse.ArgumentParser(prog="python -m era_core.paper.release", description="Export a trained ERA adapter with a model card.")
    ap.add_argument("--results", default=str(paths.RESULTS), help="results folder of a profile (default: %(default)s)")
    ap.add_argument("--method", default="era", help="method whose run to export (default: era)")
    ap.add_argument("--run", default=None, help="explicit run folder (default: the largest-ratio run)")
    ap.add_argument("--out", default=None, help="output folder (default: <results>/adapters/<method>)")
    args = ap.parse_args(argv)
    results = Path(args.results)
    try:
        run = Path(args.run) if args.run else largest_ratio_run(results, args.method)
        out = export_release(run, Path(args.out) if args.out else results / "adapters" / args.method)
    except EraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {run.name} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
