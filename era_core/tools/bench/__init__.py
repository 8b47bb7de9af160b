"""`make bench`: speed and memory of era_core's hot paths against reference implementations.

Every speed figure is a ratio ``reference_time / era_core_time`` (> 1 means era_core is faster),
both measured in this process, on the same inputs, as the median of ``repeats`` runs taken after
one warm-up run of each; the runs of the two sides are interleaved so background load hits both
alike. Sections (``--only`` picks some; the others are kept from an existing bench.json):

- ``encode``: ``Encoder.encode`` vs ``SentenceTransformer.encode`` (same folder, texts, batch,
  max length, threads); texts/s, ratio, cosine agreement, and where era_core's time goes.
- ``encode_gemma``: the same comparison for EmbeddingGemma-300M at smaller sizes, on texts carrying
  the model's prompts; an explicit skip when its weights are not unpacked.
- ``search``: ``topk_search`` vs a NumPy full sort and ``faiss.IndexFlatIP``; ids compared; peak
  RSS of a 1M-document search measured in a subprocess.
- ``metrics``: ``metrics.evaluate`` vs ``pytrec_eval`` on a seeded 10k-query run; values compared.
- ``training``: Phase 1 steps/s, time to 99% of the final hold-out cosine, closed-form ridge vs AdamW.
- ``cache``: wall time of an up-to-date ``make paper``; a zero-shot rerun that loads no model.
- ``scaling``: encode and search time against input size, log-log slope, ``bench_scaling.pdf``.

``python -m era_core.tools.bench --quick --out DIR`` runs everything at tiny sizes (well under a minute).

One module per section (``encode``, ``search`` with ``memory``, ``metrics``, ``training``, ``cache``,
``scaling``), shared ``targets``, ``sizes``, ``timing`` and ``texts``, the report in ``markdown`` and
the command line in ``runner``. Importing the package loads only ``targets`` (the README generator
reads the targets without pulling in the benchmarks).
"""

from era_core.tools.bench.targets import REQUIRED_FIELDS, SECTIONS, TARGETS

__all__ = ["REQUIRED_FIELDS", "SECTIONS", "TARGETS"]
