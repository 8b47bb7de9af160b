"""``python -m era_core.tools.readme``: rewrite the generated blocks of the README and docs/, check them, or time a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from era_core import paths
from era_core.errors import EraError
from era_core.tools.readme.blocks import BLOCKS
from era_core.tools.readme.context import DOCUMENTS, Context, ReadmeError
from era_core.tools.readme.markers import update_docs
from era_core.tools.readme.prose import fmt_seconds
from era_core.tools.readme.runtimes import record_runtime


def main(argv: list[str] | None = None) -> int:
    """Command line: rewrite the documents' generated blocks from results/ (or check that they are current)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(
        prog="python -m era_core.tools.readme",
        description="Rewrite every block between <!-- era:NAME:begin --> and <!-- era:NAME:end --> in the README and "
                    f"the docs/ result pages from the generated files in results/ (blocks: {', '.join(BLOCKS)}). A "
                    "block whose source is missing is left as it was, with a warning.")
    parser.add_argument("--results", type=Path, default=paths.RESULTS, help="results folder (default: %(default)s)")
    parser.add_argument("--figures", type=Path, default=paths.FIGURES, help="figures folder (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=paths.ROOT, help="repository root the documents and the "
                        "headline figure (docs/img/) are under (default: %(default)s)")
    parser.add_argument("--doc", type=Path, action="append", default=None,
                        help="a document to update, relative to --root; repeatable (default: "
                             f"{', '.join(d.as_posix() for d in DOCUMENTS)})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a document would change")
    parser.add_argument("--strict", action="store_true", help="fail (exit 2) when a block's source is missing")
    parser.add_argument("--time", metavar="WHAT", help="run the command after `--`, record its wall time as WHAT "
                        "in RESULTS/timing/runtimes.json (the run-times block), then update the documents")
    args = parser.parse_args(argv)
    try:
        if args.time is not None:
            seconds = record_runtime(args.results, args.time, command)
            print(f"readme: recorded {args.time!r}: {fmt_seconds(seconds)}")
        elif command:
            raise ReadmeError("a command after `--` needs --time WHAT")
        ctx = Context(Path(args.results), Path(args.figures))
        changed, warnings = update_docs(args.root, args.doc or list(DOCUMENTS), ctx, check=args.check,
                                        strict=args.strict)
    except EraError as exc:
        print(f"readme: error: {exc}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"readme: warning: {w}", file=sys.stderr)
    names = ", ".join(p.as_posix() for p in changed)
    if args.check:
        print(f"readme: {'out of date (run `make readme`): ' + names if changed else 'every document is up to date'}")
        return 1 if changed else 0
    print(f"readme: {'updated ' + names if changed else 'nothing changed'}")
    return 0
