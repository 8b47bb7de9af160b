"""Generic "docstring summary → function source without its docstring" extraction with ``ast``."""

from __future__ import annotations

import ast
import textwrap
from typing import Iterable

from era_core.data.offline.common import Candidate, first_paragraph, first_sentence, n_words


def _functions(tree: ast.AST) -> Iterable[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualified name, node) for every function and method, in source order."""
    def walk(node: ast.AST, prefix: str):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
                yield from walk(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".")
    yield from walk(tree, "")


def extract_functions(
    sources: Iterable[tuple[str, str]],
    *,
    min_query_words: int = 4,
    max_query_words: int = 40,
    min_body_lines: int = 2,
) -> tuple[list[Candidate], dict[str, str], int]:
    """From (module name, source text) pairs, return candidates, docs and the number of files that failed to parse.

    Query = first sentence of the docstring; doc = the function's source with the docstring
    lines removed (decorators excluded). Doc id = ``module:Qual.name``.
    """
    candidates: list[Candidate] = []
    docs: dict[str, str] = {}
    failed = 0
    for module, text in sources:
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            failed += 1  # e.g. files written for another Python version
            continue
        lines = text.splitlines()
        for qual, node in _functions(tree):
            doc = ast.get_docstring(node)
            body = node.body
            if not doc or not body or not isinstance(body[0], ast.Expr) or node.end_lineno is None:
                continue
            ds = body[0]
            kept = lines[node.lineno - 1: ds.lineno - 1] + lines[ds.end_lineno: node.end_lineno]
            src = textwrap.dedent("\n".join(kept)).strip("\n")
            if len(src.splitlines()) < 1 + min_body_lines:
                continue
            summary = first_sentence(first_paragraph(doc)[0])
            doc_id = f"{module}:{qual}"
            if doc_id in docs:  # conditional redefinitions: keep the first
                continue
            docs[doc_id] = src
            if min_query_words <= n_words(summary) <= max_query_words:
                candidates.append(Candidate(summary, doc_id))
    return candidates, docs, failed
