"""Marker pairs in a document, and regenerating what lies between them (plus the headline figure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from era_core.io import atomic_write_bytes, atomic_write_text
from era_core.tools.readme.blocks import BLOCKS, FIGURE_BLOCKS
from era_core.tools.readme.context import README_FIGURE, Context, ReadmeError

_MARKER = re.compile(r"<!-- era:([A-Za-z0-9_-]+):(begin|end) -->")


@dataclass(frozen=True)
class Span:
    """One block in the README text: its name and the character range of its content."""

    name: str
    start: int  # just after the begin marker's line
    end: int  # at the start of the end marker


def find_blocks(text: str, where: str = "README.md") -> list[Span]:
    """Every marker pair in ``text``, in order; malformed markers raise :class:`ReadmeError`."""
    spans, open_name, open_at, open_line = [], None, 0, 0
    seen: set[str] = set()
    for m in _MARKER.finditer(text):
        name, kind = m.group(1), m.group(2)
        line = text.count("\n", 0, m.start()) + 1
        if kind == "begin":
            if open_name is not None:
                raise ReadmeError(f"{where} line {line}: <!-- era:{name}:begin --> inside block {open_name!r} "
                                  f"(begun on line {open_line}); add <!-- era:{open_name}:end --> before it")
            if name not in BLOCKS:
                raise ReadmeError(f"{where} line {line}: unknown block {name!r}; known blocks: {', '.join(BLOCKS)}")
            if name in seen:
                raise ReadmeError(f"{where} line {line}: block {name!r} appears twice; keep one")
            eol = text.find("\n", m.end())
            open_name, open_at, open_line = name, (len(text) if eol < 0 else eol + 1), line
        else:
            if open_name != name:
                expected = "no end marker" if open_name is None else f"<!-- era:{open_name}:end -->"
                raise ReadmeError(f"{where} line {line}: <!-- era:{name}:end --> without a matching begin "
                                  f"(expected {expected})")
            bol = text.rfind("\n", 0, m.start()) + 1
            if text[bol:m.start()].strip() or bol < open_at:
                raise ReadmeError(f"{where} line {line}: markers must stand on lines of their own")
            spans.append(Span(name, open_at, bol))
            seen.add(name)
            open_name = None
    if open_name is not None:
        raise ReadmeError(f"{where} line {open_line}: <!-- era:{open_name}:begin --> has no "
                          f"<!-- era:{open_name}:end -->; add the end marker after the block")
    return spans


def rewrite(text: str, ctx: Context, *, strict: bool = False, where: str = "README.md") -> tuple[str, list[str]]:
    """``text`` with every block regenerated, and a warning per block left as it was (missing source)."""
    out, warnings, pos = [], [], 0
    for span in find_blocks(text, where):
        block = BLOCKS[span.name]
        missing = [ctx.path(s) for s in block.sources if not ctx.path(s).is_file()]
        out.append(text[pos:span.start])
        if missing:
            why = (f"{', '.join(str(p) for p in missing)} {'is' if len(missing) == 1 else 'are'} missing "
                   f"(written by {block.hint})")
            if strict:
                raise ReadmeError(f"block {span.name!r} cannot be generated: {why}; without --strict it is left "
                                  f"as it was")
            warnings.append(f"block {span.name!r} left as it was: {why}")
            out.append(text[span.start:span.end])
        else:
            try:
                body = block.render(ctx)
            except (KeyError, IndexError, ValueError, StopIteration, TypeError) as exc:
                raise ReadmeError(f"block {span.name!r} could not be built from {', '.join(block.sources)} "
                                  f"({type(exc).__name__}: {exc}); they were not written by this version of "
                                  f"{block.hint}: rerun it") from exc
            out.append(body.rstrip("\n") + "\n")
        pos = span.end
    out.append(text[pos:])
    return "".join(out), warnings


def update_doc(root: Path, doc: Path, ctx: Context, *, check: bool = False,
               strict: bool = False) -> tuple[bool, list[str], set[str]]:
    """Rewrite the blocks of ``root/doc``; return whether it changed (or would), warnings and its block names."""
    path = Path(root) / doc
    if not path.is_file():
        raise ReadmeError(f"{path} does not exist; pass --root with the repository holding it, or --doc to name "
                          "the documents to update")
    old = path.read_text()
    new, warnings = rewrite(old, replace(ctx, doc=Path(doc)), strict=strict, where=str(path))
    if new != old and not check:
        atomic_write_text(path, new)
    return new != old, warnings, {s.name for s in find_blocks(old, str(path))}


def update_docs(root: Path, docs: list[Path], ctx: Context, *, check: bool = False,
                strict: bool = False) -> tuple[list[Path], list[str]]:
    """Rewrite every document's blocks (and copy the headline figure); return what changed (or would), warnings."""
    changed, warnings, owner = [], [], {}
    for doc in docs:
        did, warn, names = update_doc(root, doc, ctx, check=check, strict=strict)
        for name in names:
            if name in owner:
                raise ReadmeError(f"block {name!r} appears in both {owner[name]} and {doc}; keep one")
            owner[name] = doc
        changed += [Path(doc)] if did else []
        warnings += warn
    figure_src, figure_dst = ctx.path("figures/ndcg_vs_ratio.png"), Path(root) / README_FIGURE
    if (owner.keys() & FIGURE_BLOCKS and figure_src.is_file()
            and (not figure_dst.is_file() or figure_dst.read_bytes() != figure_src.read_bytes())):
        changed.append(README_FIGURE)
        if not check:
            figure_dst.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(figure_dst, figure_src.read_bytes())
    return changed, warnings
