"""Rewrite the generated blocks of the README and the docs/ result pages from ``results/`` (no number typed by hand).

A block is the text between two marker lines::

    <!-- era:results:begin -->
    ... generated, overwritten on every run ...
    <!-- era:results:end -->

Each block name has a renderer and the files it reads (:data:`BLOCKS`). Sentences are built by
code from those files, with every number filled in, and worded so that they stay true when the
numbers change (``above``/``below`` is decided from the means). A block whose source file is
missing is left exactly as it was, with a warning naming the file (``--strict`` makes that an
error). ``--check`` writes nothing and exits 1 when a document (or the headline figure) would change.
Each block lives in one document: the README holds the short ``headline``; ``docs/results.md``,
``docs/reproducibility.md`` and ``docs/performance.md`` hold the rest.

``--time WHAT -- CMD ...`` runs CMD, measures its wall time and records it in
``results/timing/runtimes.json``, the source of the run-times block.

Modules: ``context`` (where sources are read, the documents, the error), ``prose`` and ``picks`` (number
wording, table lookups), one renderer module per group of blocks (``main_blocks``,
``study_blocks``, ``bench_block``, ``runtimes``, ``tolerance_block``), ``blocks`` (the registry),
``markers`` (finding and regenerating blocks) and ``command`` (``python -m era_core.tools.readme``).
"""

from era_core.tools.readme.blocks import BLOCKS, Block
from era_core.tools.readme.command import main
from era_core.tools.readme.context import DOCUMENTS, Context, ReadmeError
from era_core.tools.readme.markers import Span, find_blocks, rewrite, update_doc, update_docs
from era_core.tools.readme.runtimes import record_runtime

__all__ = ["BLOCKS", "Block", "Context", "DOCUMENTS", "ReadmeError", "Span", "find_blocks", "main", "record_runtime",
           "rewrite", "update_doc", "update_docs"]
