"""docs/DESIGN.md's import rules, checked against the code's real import graph (era_core.deps)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from era_core import deps, paths

DESIGN = paths.ROOT / "docs" / "DESIGN.md"
RULE = re.compile(r"^- `(\w+)` never imports (.+)$")
NOTEBOOKS = sorted((paths.ROOT / "notebooks").glob("*.ipynb"))


def _rules() -> list[tuple[str, list[str]]]:
    text = DESIGN.read_text(encoding="utf-8")
    section = text.split("## Import rules", 1)[1].split("\n## ", 1)[0]
    rules = [(m.group(1), re.findall(r"`(\w+)`", m.group(2))) for m in map(RULE.match, section.splitlines()) if m]
    assert len(rules) >= 10, "DESIGN.md's import rules were not found; the test would check nothing"
    return rules


def _files_of(module: str) -> set[Path]:
    base = deps.PACKAGE_DIR / module
    if base.is_dir():
        return set(base.rglob("*.py"))
    assert base.with_suffix(".py").exists(), f"DESIGN.md names a module era_core.{module} that does not exist"
    return {base.with_suffix(".py")}


def _reach(module: str) -> set[Path]:
    return deps.closure({f"era_core.{module}"})


@pytest.mark.parametrize("module,forbidden", _rules(), ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_design_import_rules_hold(module, forbidden):
    reached = _reach(module)
    broken = [b for b in forbidden if reached & _files_of(b)]
    assert not broken, f"era_core.{module} imports (directly or through others) {broken}, which DESIGN.md forbids"


def test_the_walker_sees_every_kind_of_import(tmp_path):
    source = (
        "import era_core.train\n"
        "from era_core import stats, paths\n"
        "from era_core.io import write_json\n"
        "def later():\n    from era_core.report import main_table\n"
        "import numpy\n"
    )
    assert deps.imported_modules(source) == {"era_core.train", "era_core", "era_core.stats", "era_core.paths",
                                             "era_core.io", "era_core.report"}
    assert "era_core.report" not in deps.imported_modules(source, top_level=True)
    # relative imports resolve against the importing module's package
    assert deps.imported_modules("from .errors import DataError", "era_core.data") == {"era_core.errors"}
    assert deps.imported_modules("from ..errors import DataError", "era_core.offline.common") == {"era_core.errors"}
    assert deps.imported_modules("from .common import x", "era_core.offline") == {"era_core.offline.common"}


def test_a_rule_breach_is_caught(monkeypatch):
    # Guard against a checker that passes whatever the code does: add a forbidden arrow and expect it seen.
    graph = deps.module_graph()
    # report is a package: the planted arrow goes on one of its modules, inside a function (lazy).
    graph["era_core.report.tables"] = graph["era_core.report.tables"] | {"era_core.encoders"}
    assert _files_of("encoders") <= deps.closure({"era_core.report"}, graph)
    assert not (_files_of("encoders") & deps.closure({"era_core.report"}))


def test_no_import_time_cycle():
    graph = deps.module_graph(top_level=True)
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            assert state.get(n) != 1, f"import-time cycle: {' -> '.join(stack[stack.index(n):] + [n])}"
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_tools_are_outside_every_notebook_and_figures_only_read_results():
    tools = set().union(*map(_files_of, ("bench", "plan", "readme", "deps", "gpu_check", "tolerance", "cli")))
    assert len(NOTEBOOKS) >= 8
    for nb in NOTEBOOKS:
        used = set(deps.notebook_deps(nb))
        assert used, f"{nb.name}: no era_core import found; the walker is broken"
        assert not used & tools, f"{nb.name} runs {sorted(p.name for p in used & tools)}"
    figures = set(deps.notebook_deps(paths.ROOT / "notebooks" / "06_figures.ipynb"))
    heavy = set().union(*map(_files_of, ("experiments", "train", "cache", "adapter")))
    assert _files_of("report") <= figures and not figures & heavy


def test_makefile_rules_name_each_executed_notebook(tmp_path):
    out = tmp_path / "deps.mk"
    assert deps.main(["--makefile", str(out), "--exe", "results/executed"]) == 0
    lines = out.read_text().splitlines()[1:]
    targets = {ln.split(":", 1)[0] for ln in lines}
    assert targets == {f"results/executed/{nb.stem}.ipynb" for nb in NOTEBOOKS}
    train_line = next(ln for ln in lines if ln.startswith("results/executed/03_training.ipynb:"))
    assert "era_core/train/label.py" in train_line and "era_core/experiments/jobs.py" in train_line
    assert "era_core/bench/" not in train_line and "era_core/readme/" not in train_line
    mtime = out.stat().st_mtime_ns
    deps.main(["--makefile", str(out), "--exe", "results/executed"])
    assert out.stat().st_mtime_ns == mtime  # unchanged rules keep their mtime: make restarts for nothing else
