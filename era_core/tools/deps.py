"""Which ``era_core`` source files a notebook (or a module) really runs: the import graph, read statically.

``make paper`` makes each executed notebook depend on exactly these files, so editing ``bench``,
``plan`` or ``readme`` reruns no notebook; ``tests/test_design.py`` checks the same graph
against the layer rule of ``docs/DESIGN.md``.

An import anywhere in a file counts (also inside a function: it runs when the function does).
Importing anything inside ``data/offline/`` counts as importing all of it, because it loads its
builders by name (``importlib``), which no static reading sees.

    python -m era_core.tools.deps --makefile OUT [--exe DIR] [--sources DIR]   # make rules (and source digests)
    python -m era_core.tools.deps notebooks/03_training.ipynb                  # the files, one per line

A notebook's own make prerequisite is the digest of its stripped source (``--sources``), not the file:
saving it with outputs in JupyterLab changes the file but not the digest, so nothing reruns.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import sys
from pathlib import Path

from era_core import paths
from era_core.io import atomic_write_bytes

PACKAGE = "era_core"
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # era_core/, this file being era_core/tools/deps.py


def _module_file(name: str) -> Path | None:
    """The source file of dotted module ``name`` inside era_core (a package's ``__init__.py``), or None."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    return None


def _module_name(path: Path) -> str:
    rel = path.resolve().relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(source: str, current: str | None = None, *, top_level: bool = False) -> set[str]:
    """Dotted era_core modules that ``source`` imports (``current``: its own module name, for relative imports);
    ``top_level`` counts only the imports that run when the module is imported, not those inside functions."""
    out: set[str] = set()
    tree = ast.parse(source)
    nodes = _top_level_nodes(tree) if top_level else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and current:
                pkg = current.split(".") if _is_package(current) else current.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            if base.split(".")[0] != PACKAGE:
                continue
            out.add(base)
            # `from era_core import train` imports the module era_core.train
            out.update(f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}") is not None)
    return {m for m in out if _module_file(m) is not None}


def _top_level_nodes(tree: ast.Module) -> list[ast.AST]:
    """Statements that run at import time: the module body, descending into if/try/with but not defs."""
    out: list[ast.AST] = []
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        out.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return out


def _is_package(name: str) -> bool:
    f = _module_file(name)
    return f is not None and f.name == "__init__.py"


#: Packages that load their modules by name (``importlib``), which no static reading sees: importing any
#: file of one counts as importing all of it.
BY_NAME_PACKAGES = (Path("data") / "offline",)


def _expand_packages(files: set[Path]) -> set[Path]:
    """``files`` plus every file of each by-name package any of them belongs to (see the module docstring)."""
    out = set(files)
    for f in files:
        rel = f.relative_to(PACKAGE_DIR)
        for pkg in BY_NAME_PACKAGES:
            if rel.parts[:len(pkg.parts)] == pkg.parts:
                out.update((PACKAGE_DIR / pkg).rglob("*.py"))
    return out


def module_graph(*, top_level: bool = False) -> dict[str, set[str]]:
    """``{module: era_core modules it imports}`` for every module of the package (see ``imported_modules``)."""
    return {m: set(v) for m, v in _graph(top_level, _source_stamp()).items()}


def _source_stamp() -> tuple[tuple[str, int], ...]:
    return tuple((str(f), f.stat().st_mtime_ns) for f in sorted(PACKAGE_DIR.rglob("*.py")))


@functools.lru_cache(maxsize=4)
def _graph(top_level: bool, stamp: tuple[tuple[str, int], ...]) -> dict[str, frozenset[str]]:
    # Parsing every file is the slow part; the stamp (paths and mtimes) makes an edited file reparse.
    graph = {}
    for name_path, _ in stamp:
        f = Path(name_path)
        name = _module_name(f)
        graph[name] = frozenset(imported_modules(f.read_text(encoding="utf-8"), name, top_level=top_level) - {name})
    return graph


def closure(start: set[str], graph: dict[str, set[str]] | None = None) -> set[Path]:
    """Source files of ``start`` and everything they import, transitively (parent packages included)."""
    graph = graph if graph is not None else module_graph()
    top = module_graph(top_level=True)
    seen: set[str] = set()
    todo = list(start)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        # Importing era_core.x.y runs era_core/__init__.py (and x/__init__.py) first, but only their
        # import-time statements: era_core's own lazy helpers import their modules when called.
        for parent in (".".join(parts[:i]) for i in range(1, len(parts))):
            if parent not in seen:
                seen.add(parent)
                todo.extend(top.get(parent, ()))
        todo.extend((top if _is_package(m) else graph).get(m, ()))
    files = {_module_file(m) for m in seen}
    return _expand_packages({f for f in files if f is not None})


def notebook_source(path: Path | str) -> str:
    """The code cells of a notebook, joined (IPython magics and shell lines dropped)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = ("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    lines = [ln for cell in cells for ln in cell.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def notebook_deps(path: Path | str, graph: dict[str, set[str]] | None = None) -> list[Path]:
    """Sorted era_core source files the notebook at ``path`` runs."""
    return sorted(closure(imported_modules(notebook_source(path)), graph))


def source_digest(path: Path | str) -> str:
    """SHA-256 of a notebook's code and markdown (cell types, sources and tags): outputs, execution counts and
    metadata, which a JupyterLab save changes, are left out."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = [[c["cell_type"], "".join(c["source"]), sorted(c.get("metadata", {}).get("tags", []))] for c in nb["cells"]]
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode("utf-8")).hexdigest()


def write_source_digests(notebooks: list[Path], folder: Path) -> list[Path]:
    """``<folder>/<stem>.sha`` per notebook, written only when the digest changed (its mtime is what make reads)."""
    written = []
    for nb in notebooks:
        out = Path(folder) / f"{Path(nb).stem}.sha"
        digest = source_digest(nb) + "\n"
        if not out.is_file() or out.read_text() != digest:
            atomic_write_bytes(out, digest.encode("utf-8"))
            written.append(out)
    return written


def makefile_rules(notebooks: list[Path], exe: str) -> str:
    """One prerequisite-only make rule per notebook: ``<exe>/<stem>.ipynb: <files>``."""
    graph = module_graph()
    root = paths.ROOT.resolve()
    lines = ["# Generated by `python -m era_core.tools.deps --makefile`: each notebook's era_core imports. Do not edit."]
    for nb in sorted(notebooks):
        files = " ".join(f.resolve().relative_to(root).as_posix() for f in notebook_deps(nb, graph))
        lines.append(f"{exe}/{Path(nb).stem}.ipynb: {files}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description="era_core files each notebook imports (static import graph)")
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--makefile", type=Path, help="write make rules here instead of listing files")
    parser.add_argument("--exe", default="results/executed", help="folder of the executed notebooks (make targets)")
    parser.add_argument("--sources", type=Path, help="with --makefile: also write <DIR>/<notebook>.sha, each "
                        "notebook's stripped-source digest, rewritten only when it changes")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((paths.ROOT / "notebooks").glob("*.ipynb"))
    missing = [str(n) for n in notebooks if not Path(n).exists()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    if args.makefile:
        if args.sources is not None:
            write_source_digests(notebooks, args.sources)
        # Always rewritten: make reruns this when any prerequisite is newer (a notebook saved with outputs), and
        # a fresh mtime keeps the next make from running it again. Nothing depends on the file's time.
        atomic_write_bytes(args.makefile, makefile_rules(notebooks, args.exe).encode("utf-8"))
        return 0
    root = paths.ROOT.resolve()
    for nb in notebooks:
        for f in notebook_deps(nb):
            print(f.resolve().relative_to(root).as_posix())
    return 0


if __name__ == "__main__":
    sys.exit(main())
