"""API-reference tasks from installed packages' docstrings: summary line → rest of the documentation."""

from __future__ import annotations

import importlib
import inspect
import re

from era_core.data.offline.common import Candidate, SourceTask, first_paragraph, first_sentence, n_words, require_package

_SIGNATURE = re.compile(r"^[A-Za-z_][\w.]*\(.*\)")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _signature(obj: object) -> str:
    try:
        # Default values like <function f at 0x7f..> carry memory addresses: drop them for determinism.
        return _ADDRESS.sub("", str(inspect.signature(obj)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def extract_api(module_name: str, *, min_rest_words: int = 20) -> tuple[list[Candidate], dict[str, str]]:
    """Public names of a module: query = docstring summary sentence; doc = name, signature and the rest."""
    module = importlib.import_module(module_name)
    docs: dict[str, str] = {}
    cands: list[Candidate] = []
    seen_objs: dict[int, str] = {}
    for name in sorted(dir(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if inspect.ismodule(obj) or not (callable(obj) or inspect.isclass(obj)):
            continue
        raw = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else None
        if not raw:
            continue  # only objects with their OWN docstring (no inherited text)
        head, rest = first_paragraph(inspect.cleandoc(raw))
        sig = _signature(obj)
        if _SIGNATURE.match(head):  # C ufunc docstrings start with the signature paragraph
            sig, (head, rest) = head, first_paragraph(rest)
        summary = first_sentence(head)
        if not (4 <= n_words(summary) <= 40) or n_words(rest) < min_rest_words:
            continue
        # Aliases (one object under several names) share one document.
        doc_id = seen_objs.get(id(obj))
        if doc_id is None:
            doc_id = f"{module_name}.{name}"
            body = sig if sig.startswith(name) else f"{name}{sig}"
            docs[doc_id] = f"{body}\n\n{rest}"
            seen_objs[id(obj)] = doc_id
        cands.append(Candidate(summary, doc_id))
    return cands, docs


def _api_task(name: str, domain: str, dist: str, version: str, module: str, licence: str,
              instruction: str, what: str) -> SourceTask:
    require_package(dist, version, module.split(".")[0])
    cands, docs = extract_api(module)
    return SourceTask(
        name=name, domain=domain, source=dist, source_version=version, source_licence=licence,
        description=f"Summary sentence of a public {module} {what} docstring → its name, signature and the rest "
                    "of its documentation (summary removed).",
        instructions=(instruction,), candidates=cands, docs=docs)


def build_numpy() -> SourceTask:
    """numpy API reference task (code)."""
    return _api_task("NumPy-API", "code", "numpy", "2.4.6", "numpy", "BSD-3-Clause",
                     "Given a one-sentence description of an array operation, retrieve the NumPy API "
                     "documentation of the function that performs it.", "function/class")


def build_sympy() -> SourceTask:
    """sympy API reference task (academic: symbolic mathematics)."""
    return _api_task("SymPy-API", "academic", "sympy", "1.14.0", "sympy", "BSD-3-Clause",
                     "Given a one-sentence description of a mathematical object or operation, retrieve the "
                     "SymPy documentation that defines it.", "function/class")


def build_scipy_special() -> SourceTask:
    """scipy.special reference task (academic: special functions)."""
    return _api_task("SciPy-Special", "academic", "scipy", "1.17.1", "scipy.special", "BSD-3-Clause",
                     "Given a one-sentence description of a mathematical special function, retrieve its "
                     "reference documentation.", "special function")
