"""Code task from the running interpreter's standard library: docstring sentence → function source."""

from __future__ import annotations

import platform
import sysconfig
from pathlib import Path

from era_core.data.offline.codefuncs import extract_functions
from era_core.data.offline.common import SourceTask

NAME = "Stdlib-Functions"
DOMAIN = "code"
_SKIP = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "__pycache__",
         "turtledemo", "ensurepip", "venv", "__phello__"}
INSTRUCTIONS = (
    "Given a one-sentence description of what a Python function does, retrieve the function's source code.",
)


def _sources(stdlib: Path):
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib)
        if any(part in _SKIP for part in rel.parts):
            continue
        module = ".".join(rel.with_suffix("").parts)
        yield module, path.read_text(encoding="utf-8", errors="replace")


def build() -> SourceTask:
    """Extract the stdlib task."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    candidates, docs, failed = extract_functions(_sources(stdlib))
    return SourceTask(
        name=NAME, domain=DOMAIN, source="python-stdlib", source_version=platform.python_version(),
        source_licence="PSF-2.0",
        description="First docstring sentence of a stdlib function/method → its source with the docstring removed "
                    "(test/, idlelib/, lib2to3/ skipped). Depends on the running interpreter's version.",
        instructions=INSTRUCTIONS, candidates=candidates, docs=docs, notes={"unparsable_files": failed})
