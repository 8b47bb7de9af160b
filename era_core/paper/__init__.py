"""THE PAPER: the protocols the notebooks run, on top of the method (``era_core``); never imports ``era_core.tools``.

Modules: ``params`` (each notebook's parameter schema, validation), ``config`` (``Config``: the parameters,
typed), ``pool`` (a notebook's units and embeddings), ``runs`` (``Run``, one resumable training run and its
files), ``selection`` (Phase 2's lr), ``protocols`` (the in-domain sweep, LODO, domain-specific, the Phase 1
study), ``zero_shot``, ``encoder_pairs``, ``sources`` and ``scaling`` (the Phase 1 scaling study), ``ladder``
(the alignment-quality ladder), ``stats`` and ``significance`` (paired tests), ``provenance`` (machine,
query cost), ``datasheet``, ``release`` (an adapter with its model card), ``quickstart`` and ``report/``
(tables and figures, from ``results/`` only).

Scoring scopes: every method, baselines included, is scored per task on the *same* test split
(``scope="test"``), fixing the reference's mix of test-split adapters and all-query baselines
(spec §9.6). Tasks that a model did not train on are also scored on all labelled queries
(``scope="all"``), which is the reference's protocol for LODO and domain-specific runs.
"""
