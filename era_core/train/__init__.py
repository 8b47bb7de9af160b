"""ERA training: Phase 1 (identical-text alignment), Phase 2 (label, InfoNCE), and the modes (§3).

Modules: ``alignment`` (Phase 1), ``label`` (Phase 2), ``schedule`` (its lr schedule), ``modes``
(``train_era``), ``embeddings`` (``TaskEmbeddings`` and query sides), ``checks`` (shared checks).

Everything here runs on cached vectors only (unit rows, float32); no encoder is loaded.

- Phase 1 (§3.1): ``alignment_sample`` picks <= 1000 corpus docs per task (the caller embeds
  only those with the large model), ``alignment_holdout`` splits the pooled pairs 90/10, and
  ``train_alignment`` fits ``A(x_large) ~ y_small`` with a cosine (or MSE / smooth-L1) loss.
- Phase 2 (§3.2): ``prepare_label_data`` splits each task's labelled queries and mines the
  tuples; ``train_label`` minimises InfoNCE (tau 0.05) with AdamW, the LambdaLR warmup/decay
  schedule and early stopping on the pooled validation loss.
- ``train_era`` chains them per mode: ``both`` (ERA), ``label_only`` (Embedding Adapter
  baseline), ``alignment_only`` and ``small_adapter`` (same-model control, ours).
- Our extension, its own mode so the faithful modes are untouched: ``fused`` (a ``FusedAdapter``
  on ``[q_large ; q_small]``, started at the control's identity on ``q_small`` and zero on
  ``q_large``; no Phase 1; mined with ``q_small`` like the control). ``MODE_QUERY_SIDE`` /
  ``query_vectors`` give the query vectors each mode's adapter takes.

Deviations from the reference
- Seeding (§9.12): torch is seeded (``torch.manual_seed(cfg.seed)``) before every adapter
  init, and batch order comes from a ``torch.Generator`` seeded with ``cfg.seed``, so two runs
  with the same configuration give identical weights. The reference never seeds torch.
- The query splits and tuple RNGs use ``LabelConfig.data_seed`` (val tuples ``data_seed + 1``);
  it defaults to ``seed`` (one seed for everything, as in the reference: 42 / 43) but can be
  fixed separately so the torch seed varies without moving the test split.
- Phase 1 embeds only the sampled documents with the large model (§9.11); the sample is the
  reference's, so the pairs are identical.
- In-batch negatives are available (``in_batch_negatives=True``) but off by default, which is
  the reference's actual behaviour (§9.3). Other queries' positives that are the same document
  as the query's own positive are masked out.
- ``schedule``: ``"reference"`` is faithful (T from the CONFIGURED epochs, so with early
  stopping the lr may stay on its warmup ramp, §9.2); ``"constant"`` (lr fixed) is our option.
- Re-mining (``LabelConfig.remine_rounds``, ours): after Phase 2, each extra round mines the hard
  negatives again with the adapter just trained as teacher (the faithful recipe mines once, with
  the starting map) and trains on from that adapter; the query splits stay the same.
- Alignment can start from a closed form (``init="ridge"``, or ``init="procrustes"``: orthogonal
  Procrustes, equal dims only, uncentred, zero bias); with ``epochs=0`` the closed form is the
  result. The reference only has the random init.
- Alignment ``best_epoch`` is tracked from epoch 0 (before training) onward; the early-stopping
  restore may therefore return the initial weights when no epoch improves on them.
- A NaN/inf loss raises ``TrainingError``; the caller's adapter is never modified in place
  (training works on a copy), and nothing is written to disk here.
- The logged ``lr`` of a Phase 2 epoch is the optimizer's lr after the epoch's last scheduler
  step, i.e. the lr of the next step.
- Phase 2 keeps the last epoch when early stopping is disabled, like Phase 1.
"""

from era_core.train.alignment import (
    AlignmentConfig,
    AlignmentResult,
    alignment_holdout,
    alignment_sample,
    check_alignment_init,
    procrustes_solution,
    ridge_solution,
    split_alignment_pairs,
    train_alignment,
)
from era_core.methods import MODE_QUERY_SIDE, MODES, QUERY_SIDES
from era_core.train.embeddings import TaskEmbeddings, query_vectors
from era_core.train.label import LabelConfig, LabelData, LabelResult, infonce_loss, prepare_label_data, train_label
from era_core.train.modes import EraResult, train_era
from era_core.train.schedule import lr_multiplier

__all__ = [
    "MODES", "MODE_QUERY_SIDE", "QUERY_SIDES",
    "AlignmentConfig", "AlignmentResult", "EraResult", "LabelConfig", "LabelData", "LabelResult", "TaskEmbeddings",
    "alignment_holdout", "alignment_sample", "check_alignment_init", "infonce_loss", "lr_multiplier",
    "prepare_label_data", "procrustes_solution", "query_vectors", "ridge_solution", "split_alignment_pairs",
    "train_alignment", "train_era", "train_label",
]  # fmt: skip
