"""The paper's protocols: zero-shot, the in-domain sweep, leave-one-domain-out and domain-specific.

Modules: ``setup`` (Setup, units, memoised encoders), ``embeddings`` (cached vectors, the pool),
``scoring`` (search + metrics + aggregates), ``keys`` (run and Phase 1 content keys), ``phase1``
(the protocols' Phase 1), ``runs`` (run folder layout), ``jobs`` (one resumable training run),
``selection`` (Phase 2 lr), ``zero_shot``, ``protocols`` (sweep, LODO, domain-specific),
``pairs`` (the encoder-pair study) and ``quickstart``.

Each protocol reads embeddings through the cache (so only the first run encodes), trains with
``era_core.train``, scores with ``retrieval`` + ``metrics``, and returns plain dictionaries that
the notebooks write to ``results/`` with ``era_core.io``.

Scoring scopes: every method, baselines included, is scored per task on the *same* test split
(``scope="test"``), fixing the reference's mix of test-split adapters and all-query baselines
(spec §9.6). Tasks that a model did not train on are also scored on all labelled queries
(``scope="all"``), which is the reference's protocol for LODO and domain-specific runs.
"""

from era_core.experiments.embeddings import (
    EmbeddingPool,
    embed_corpus,
    embed_queries,
    embed_raw_queries,
    model_instructions,
    query_inputs,
    task_embeddings,
)
from era_core.experiments.jobs import (
    load_trained,
    method_label_config,
    query_side_of,
    run_job,
    split_timing,
    train_method,
    training_key,
)
from era_core.experiments.keys import (
    align_config,
    code_version,
    config_hash,
    encoder_identity,
    label_config,
    source_hash,
)
from era_core.experiments.pairs import encoder_pair_study
from era_core.experiments.phase1 import (
    alignment_pairs,
    mapped_cosine,
    per_task_sample,
    query_side_cosine,
    train_alignment_cached,
)
from era_core.experiments.protocols import alignment_study, domain_specific, lodo, random_adapter_baseline, sweep
from era_core.experiments.quickstart import quickstart_compare
from era_core.experiments.runs import PER_QUERY_FILE, make_run_id, run_dir, run_is_done, trained_index
from era_core.experiments.scoring import (
    HEADLINE,
    apply_and_score,
    headline_per_query,
    score_unit,
    summarise,
    test_qids,
)
from era_core.experiments.selection import method_params, select_label_lr
from era_core.experiments.setup import (
    Setup,
    forget_encoders,
    get_encoder,
    load_units,
    loaded_encoders,
    machine,
    model_params,
    resolve_device,
    unit_fingerprint,
    unit_fingerprints,
)
from era_core.experiments.zero_shot import zero_shot

__all__ = [
    "HEADLINE", "PER_QUERY_FILE", "EmbeddingPool", "Setup",
    "align_config", "alignment_pairs", "alignment_study", "apply_and_score", "code_version", "config_hash",
    "domain_specific", "embed_corpus", "embed_queries", "embed_raw_queries", "encoder_identity", "encoder_pair_study", "forget_encoders", "get_encoder",
    "headline_per_query", "label_config", "load_trained", "load_units", "loaded_encoders", "lodo", "machine", "make_run_id", "mapped_cosine",
    "method_label_config", "method_params", "model_instructions", "model_params", "per_task_sample", "query_inputs", "query_side_cosine", "query_side_of", "quickstart_compare",
    "random_adapter_baseline", "resolve_device", "run_dir", "run_is_done", "run_job", "score_unit",
    "select_label_lr", "source_hash", "split_timing", "summarise", "sweep", "task_embeddings", "test_qids",
    "train_alignment_cached", "train_method", "trained_index", "training_key", "unit_fingerprint",
    "unit_fingerprints", "zero_shot",
]  # fmt: skip
