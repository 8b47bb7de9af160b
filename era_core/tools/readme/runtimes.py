"""The run-times block and ``--time``: wall times recorded in results/timing/runtimes.json."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

from era_core.io import read_json, write_json
from era_core.tools.readme.context import RUNTIMES, Context, ReadmeError
from era_core.tools.readme.prose import fmt_seconds


def render_runtimes(ctx: Context) -> str:
    """Wall times recorded with ``--time`` (results/timing/runtimes.json)."""
    entries = read_json(ctx.path(RUNTIMES.as_posix())).get("entries", [])
    if not entries:
        raise ReadmeError(f"{ctx.path(RUNTIMES.as_posix())} holds no entries; record one with "
                          f"`python -m era_core.tools.readme --time WHAT -- CMD`")
    lines = ["| what | command | time |", "|---|---|---|"]
    for e in entries:
        lines.append(f"| {e['what']} | `{e['command']}` | {fmt_seconds(float(e['seconds']))} |")
    return "\n".join(lines)


def record_runtime(results: Path, what: str, command: list[str]) -> float:
    """Run ``command``, time it and record (what, command, seconds) in results/timing/runtimes.json."""
    if not command:
        raise ReadmeError("--time needs a command after `--`, e.g. `--time 'make paper, nothing stale' -- make paper`")
    t0 = time.perf_counter()
    rc = subprocess.call(command)
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise ReadmeError(f"`{shlex.join(command)}` exited with {rc}; its time was not recorded")
    path = Path(results) / RUNTIMES
    entries = read_json(path).get("entries", []) if path.is_file() else []
    entry = {"what": what, "command": shlex.join(command), "seconds": round(seconds, 2)}
    same = [i for i, e in enumerate(entries) if e["what"] == what]
    if same:
        entries[same[0]] = entry  # re-measured: same row, so the table keeps its order
    else:
        entries.append(entry)
    write_json(path, {"entries": entries})
    return seconds
