"""``python -m era_core.readme``: rewrite README.md's generated blocks, check them, or record a run time."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from era_core import paths
from era_core.errors import EraError
from era_core.readme.blocks import BLOCKS
from era_core.readme.context import Context, ReadmeError
from era_core.readme.markers import update_readme
from era_core.readme.prose import fmt_seconds
from era_core.readme.runtimes import record_runtime


def main(argv: list[str] | None = None) -> int:
    """Command line: rewrite README.md's generated blocks from results/ (or check that they are current)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(
        prog="python -m era_core.readme",
        description="Rewrite every block of README.md between <!-- era:NAME:begin --> and <!-- era:NAME:end --> "
                    f"from the generated files in results/ (blocks: {', '.join(BLOCKS)}). A block whose source "
                    "is missing is left as it was, with a warning.")
    parser.add_argument("--results", type=Path, default=paths.RESULTS, help="results folder (default: %(default)s)")
    parser.add_argument("--figures", type=Path, default=paths.FIGURES, help="figures folder (default: %(default)s)")
    parser.add_argument("--readme", type=Path, default=paths.ROOT / "README.md", help="README to update")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the README would change")
    parser.add_argument("--strict", action="store_true", help="fail (exit 2) when a block's source is missing")
    parser.add_argument("--time", metavar="WHAT", help="run the command after `--`, record its wall time as WHAT "
                        "in RESULTS/timing/runtimes.json (the run-times block), then update the README")
    args = parser.parse_args(argv)
    try:
        if args.time is not None:
            seconds = record_runtime(args.results, args.time, command)
            print(f"readme: recorded {args.time!r}: {fmt_seconds(seconds)}")
        elif command:
            raise ReadmeError("a command after `--` needs --time WHAT")
        ctx = Context(Path(args.results), Path(args.figures))
        changed, warnings = update_readme(args.readme, ctx, check=args.check, strict=args.strict)
    except EraError as exc:
        print(f"readme: error: {exc}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"readme: warning: {w}", file=sys.stderr)
    if args.check:
        print(f"readme: {args.readme} is {'out of date (run `make readme`)' if changed else 'up to date'}")
        return 1 if changed else 0
    print(f"readme: {args.readme} {'updated' if changed else 'unchanged'}")
    return 0
