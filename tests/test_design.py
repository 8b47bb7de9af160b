"""docs/DESIGN.md's layer rule and size limits, checked against the code's real import graph (era_core.tools.deps)."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

from era_core import paths
from era_core.tools import deps

DESIGN = paths.ROOT / "docs" / "DESIGN.md"
NOTEBOOKS = sorted((paths.ROOT / "notebooks").glob("*.ipynb"))
PACKAGE = deps.PACKAGE_DIR
#: The layers, top down; a module's layer is the first whose folder holds it ("method": everything else).
LAYERS = {"tools": PACKAGE / "tools", "paper": PACKAGE / "paper"}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def layer_of(f: Path) -> str:
    """``tools``, ``paper`` or ``method`` for a source file of era_core."""
    return next((name for name, folder in LAYERS.items() if folder in f.resolve().parents), "method")


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _layer_rule() -> dict[str, set[str]]:
    """DESIGN.md's rule, read from its "## Layer rule" list: ``{layer: layers it never imports}``."""
    section = DESIGN.read_text(encoding="utf-8").split("## Layer rule", 1)[1].split("\n## ", 1)[0]
    rule = {m.group(1): set(re.findall(r"`(\w+)`", m.group(2)))
            for m in map(re.compile(r"^- `(\w+)` never imports (.+)$").match, section.splitlines()) if m}
    assert rule == {"method": {"paper", "tools"}, "paper": {"tools"}}, rule
    return rule


def breaches(graph: dict[str, set[str]] | None = None) -> list[str]:
    """Every ``a -> b`` import (lazy ones included) that the layer rule forbids."""
    graph = deps.module_graph() if graph is None else graph
    rule = _layer_rule()
    out = []
    for module, targets in graph.items():
        src = deps._module_file(module)
        for target in targets:
            if layer_of(deps._module_file(target)) in rule.get(layer_of(src), set()):
                out.append(f"{module} -> {target}")
    return sorted(out)


def test_no_module_imports_a_layer_above_its_own():
    assert breaches() == []


def test_a_planted_upward_import_is_caught():
    # Guard against a checker that passes whatever the code does.
    graph = deps.module_graph()
    graph["era_core.splits"] = graph["era_core.splits"] | {"era_core.paper.runs"}
    graph["era_core.paper.report.tables"] = graph["era_core.paper.report.tables"] | {"era_core.tools.cli"}
    assert breaches(graph) == ["era_core.paper.report.tables -> era_core.tools.cli", "era_core.splits -> era_core.paper.runs"]


def test_the_package_face_imports_only_the_api():
    init = (PACKAGE / "__init__.py").read_text(encoding="utf-8")
    assert deps.imported_modules(init) - {"era_core"} == {"era_core.api"}
    import era_core
    from era_core import api

    for name in era_core.__all__:
        assert getattr(era_core, name) is getattr(api, name)


def test_the_walker_sees_every_kind_of_import():
    source = (
        "import era_core.train\n"
        "from era_core import splits, paths\n"
        "from era_core.io import write_json\n"
        "def later():\n    from era_core.paper.report import main_table\n"
        "import numpy\n"
    )
    assert deps.imported_modules(source) == {"era_core.train", "era_core", "era_core.splits", "era_core.paths",
                                             "era_core.io", "era_core.paper.report"}
    assert "era_core.paper.report" not in deps.imported_modules(source, top_level=True)
    # relative imports resolve against the importing module's package
    assert deps.imported_modules("from .errors import DataError", "era_core.splits") == {"era_core.errors"}
    assert deps.imported_modules("from ..errors import DataError", "era_core.data.tasks") == {"era_core.errors"}
    assert deps.imported_modules("from .common import x", "era_core.data.offline") == {"era_core.data.offline.common"}


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


def test_modules_and_functions_stay_small():
    big, long = [], []
    for f in _sources():
        text = f.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            big.append(f"{f.relative_to(PACKAGE)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{f.relative_to(PACKAGE)}:{node.lineno} {node.name}: {n} lines")
    assert not big and not long, big + long


def test_no_two_modules_share_a_name():
    seen = defaultdict(list)
    for f in _sources():
        if f.name == "__main__.py":
            continue  # the name Python requires of every runnable package
        seen[f.parent.name if f.name == "__init__.py" else f.stem].append(str(f.relative_to(PACKAGE)))
    assert {name: files for name, files in seen.items() if len(files) > 1} == {}


def test_notebooks_never_run_a_tool_and_figures_only_read_results():
    tools = {f for f in _sources() if layer_of(f) == "tools"}
    assert len(NOTEBOOKS) >= 9
    for nb in NOTEBOOKS:
        used = set(deps.notebook_deps(nb))
        assert used, f"{nb.name}: no era_core import found; the walker is broken"
        assert not used & tools, f"{nb.name} runs {sorted(p.name for p in used & tools)}"
    figures = set(deps.notebook_deps(paths.ROOT / "notebooks" / "06_figures.ipynb"))
    report = set((PACKAGE / "paper" / "report").rglob("*.py"))
    heavy = {f for f in _sources() if f.relative_to(PACKAGE).parts[0] in ("train", "cache")}
    heavy |= {PACKAGE / "paper" / f"{m}.py" for m in ("runs", "protocols", "pool", "selection")}
    assert report <= figures and not figures & heavy, sorted(str(p) for p in figures & heavy)


@pytest.mark.parametrize("notebook", ["03_training", "06_figures"])
def test_make_rules_follow_each_notebooks_imports(tmp_path, notebook):
    out = tmp_path / "deps.mk"
    assert deps.main(["--makefile", str(out), "--exe", "results/executed"]) == 0
    lines = out.read_text().splitlines()[1:]
    assert {ln.split(":", 1)[0] for ln in lines} == {f"results/executed/{nb.stem}.ipynb" for nb in NOTEBOOKS}
    line = next(ln for ln in lines if ln.startswith(f"results/executed/{notebook}.ipynb:"))
    trains = notebook == "03_training"
    assert ("era_core/train/label.py" in line) is trains and ("era_core/paper/runs.py" in line) is trains
    assert "era_core/paper/report/make.py" in line
    assert "era_core/tools/" not in line



def test_source_digests_ignore_outputs_and_follow_code(tmp_path):
    import json
    import shutil

    nb = tmp_path / "03_training.ipynb"
    shutil.copy(paths.ROOT / "notebooks" / "03_training.ipynb", nb)
    src = tmp_path / "src"
    assert deps.main(["--makefile", str(tmp_path / "d.mk"), "--sources", str(src), str(nb)]) == 0
    stamp = src / "03_training.sha"
    mtime = stamp.stat().st_mtime_ns
    book = json.loads(nb.read_text())
    code = next(c for c in book["cells"] if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", []))
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["what a JupyterLab save keeps\n"]}]
    code["execution_count"] = 7
    book["metadata"]["widgets"] = {"state": {}}
    nb.write_text(json.dumps(book))
    deps.main(["--makefile", str(tmp_path / "d.mk"), "--sources", str(src), str(nb)])
    assert stamp.stat().st_mtime_ns == mtime  # outputs only: the digest, and so make's prerequisite, is untouched
    code["source"] = ["print('an edit')\n"]
    nb.write_text(json.dumps(book))
    deps.main(["--makefile", str(tmp_path / "d.mk"), "--sources", str(src), str(nb)])
    assert stamp.stat().st_mtime_ns != mtime
