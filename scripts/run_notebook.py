"""Run one notebook with papermill, quietly: a start line, an end line with the elapsed time, the full log in a file.

Used by `make paper` for every notebook. Everything papermill and the kernel print (cell output,
tqdm redraws, kernel warnings) goes to the log file only. Where stdout is a terminal, one live
line shows the cell being run; elsewhere (CI, a log file) nothing is redrawn. A failing notebook
prints the log's path and its last error, and the exit status is non-zero.

    python scripts/run_notebook.py --log LOG [--name NAME] -- python -m papermill ... NOTEBOOK OUTPUT

The papermill command line stays in the Makefile; this wrapper only decides what reaches the terminal.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

_CELL = re.compile(r"Executing Cell (\d+)")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_ERROR = re.compile(r"^(?:[A-Za-z_][\w.]*)?(?:Error|Exception|Interrupt|Exit)\b.*?:.*\S")


def elapsed(seconds: float) -> str:
    """``75.3`` -> ``1m15s``; under a minute with one decimal."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes}m{sec:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m{sec:02d}s"


def count_cells(notebook: Path, injected: bool) -> int:
    """Cells papermill will execute: every cell (it logs markdown ones too), plus its injected-parameters cell."""
    return len(json.loads(notebook.read_text(encoding="utf-8"))["cells"]) + int(injected)


def last_error(log_text: str) -> str:
    """The last ``SomeError: message`` line of a log (ANSI colours removed), else its last non-empty line."""
    lines = [_ANSI.sub("", ln).rstrip() for ln in log_text.replace("\r", "\n").splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    errors = [ln.strip() for ln in lines if _ERROR.match(ln.strip())]
    if errors:
        return errors[-1]
    return lines[-1].strip() if lines else "(the log is empty)"


class _Live:
    """One redrawn progress line on a terminal: the cell papermill is executing and the time so far."""

    def __init__(self, name: str, log: Path, total: int, out: TextIO) -> None:
        self.name, self.log, self.total, self.out = name, log, total, out
        self.stop = threading.Event()
        self.start = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _cell(self) -> int:
        try:
            found = _CELL.findall(self.log.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return 0
        return int(found[-1]) if found else 0  # papermill numbers cells from 1

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            cell = self._cell()
            where = f"cell {cell}/{self.total}" if cell else "starting kernel"
            self.out.write(f"\r\x1b[K  … {self.name}: {where}, {elapsed(time.monotonic() - self.start)}")
            self.out.flush()

    def __enter__(self) -> "_Live":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.out.write("\r\x1b[K")
        self.out.flush()


def notebook_of(cmd: list[str]) -> Path:
    """The input notebook of a papermill command line: its first ``.ipynb`` argument."""
    for arg in cmd:
        if arg.endswith(".ipynb"):
            return Path(arg)
    raise SystemExit(f"run_notebook: no .ipynb argument in the command {' '.join(cmd)!r}")


def run(cmd: list[str], log: Path, name: str | None = None, out: TextIO = sys.stdout, live: bool = True) -> int:
    """Run the papermill command ``cmd`` with all its output in ``log``; report start and end; return its status."""
    notebook = notebook_of(cmd)
    name = name or notebook.stem
    log.parent.mkdir(parents=True, exist_ok=True)
    out.write(f"▶ {name} started\n")
    out.flush()
    t0 = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        if live and out.isatty():
            injected = "-f" in cmd or "-p" in cmd or "--parameters_file" in cmd
            with _Live(name, log, count_cells(notebook, injected), out):
                rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode
        else:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode
    took = elapsed(time.monotonic() - t0)
    if rc:
        error = last_error(log.read_text(encoding="utf-8", errors="replace"))
        out.write(f"✗ {name} failed after {took} (exit {rc}); log: {log}\n    {error}\n")
    else:
        out.write(f"✓ {name} finished in {took}; log: {log}\n")
    out.flush()
    return rc


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True, help="file for the command's full output")
    parser.add_argument("--name", help="name on the start and end lines (default: the notebook's stem)")
    parser.add_argument("--no-live", action="store_true",
                        help="no live line even on a terminal (notebooks running side by side would overwrite it)")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the papermill command line")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("give the papermill command after --")
    return run(cmd, args.log, args.name, live=not args.no_live)


if __name__ == "__main__":
    sys.exit(main())
