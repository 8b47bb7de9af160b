"""``Config``: a notebook's parameters, validated once and read typed everywhere after.

``Config.from_params(p)`` takes ``params.validate``'s result. Lists arrive as comma-separated strings
(papermill's ``-p`` cannot pass a list) and are parsed here, once: ``cfg.seeds`` is a tuple of ints,
``cfg.train_ratios`` of floats. Every other parameter reads as an attribute of its validated type
(``cfg.val_ratio``). ``cfg.alignment(seed)`` and ``cfg.label(method, ratio, seed)`` build Phase 1's
and Phase 2's configurations. ``cfg.params`` is the validated dict itself: runs record it (and hash it
into their keys) as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from era_core.errors import ParamsError
from era_core.methods import get_method
from era_core.paper.params import split_csv
from era_core.setup import Setup

if TYPE_CHECKING:  # train (and torch) load only when a configuration is built
    from era_core.train import AlignmentConfig, LabelConfig

#: Comma-separated parameters and the type of their items.
_LISTS = {"methods": str, "train_ratios": float, "seeds": int, "instruction_settings": str, "stress_ratios": float,
          "remine_ratios": float, "label_lr_grid": float, "align_sources": str, "align_sizes": int,
          "scaling_inits": str, "scaling_seeds": int, "ladder_dims": int, "ladder_sizes": int, "extra_models": str}


@dataclass(frozen=True)
class Config:
    """A notebook's validated parameters (``params``), read typed: lists parsed, configurations built."""

    params: dict[str, Any]

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> "Config":
        """The configuration of a validated parameter dict (``params.validate``)."""
        return cls(dict(p))

    def __getattr__(self, name: str) -> Any:
        params = object.__getattribute__(self, "params")
        if name not in params:
            raise AttributeError(f"this notebook has no parameter {name!r}")
        value = params[name]
        return tuple(_LISTS[name](v) for v in split_csv(value)) if name in _LISTS else value

    def with_params(self, **changes: Any) -> "Config":
        """A copy with some parameters replaced (a method's chosen ``label_lr``, a pair's encoders)."""
        return Config({**self.params, **changes})

    @property
    def setup(self) -> Setup:
        """What the experiment runs on (benchmark, tasks, encoders), from ``large_model``/``small_model``."""
        return Setup.from_params(self.params)

    def alignment(self, seed: int, device: str) -> "AlignmentConfig":
        """Phase 1's configuration for ``seed``."""
        from era_core.train import AlignmentConfig

        p = self.params
        return AlignmentConfig(
            samples_per_task=p["align_samples_per_task"], eval_ratio=p["align_eval_ratio"], loss=p["align_loss"],
            lr=p["align_lr"], weight_decay=p["align_weight_decay"], batch_size=p["align_batch_size"],
            epochs=p["align_epochs"], seed=seed, init=p["align_init"], device=device,
        )

    def label(self, method: str | None, train_ratio: float, seed: int, device: str) -> "LabelConfig":
        """Phase 2's configuration at ``train_ratio`` and ``seed``, with what ``method`` fixes itself (None: as given)."""
        from era_core.train import LabelConfig

        p = self.params
        cfg = LabelConfig(
            train_ratio=train_ratio, val_ratio=p["val_ratio"], eval_ratio=p["eval_ratio"],
            num_negatives=p["num_negatives"], strategy=p["negative_strategy"], top_k=p["hard_negative_top_k"],
            margin=p["hard_negative_margin"], lr=p["label_lr"], weight_decay=p["label_weight_decay"],
            batch_size=p["label_batch_size"], epochs=p["label_epochs"], warmup_ratio=p["warmup_ratio"],
            schedule=p["label_schedule"], temperature=p["temperature"], patience=p["label_patience"],
            in_batch_negatives=p["in_batch_negatives"], seed=seed, device=device,
        )
        return cfg if method is None else get_method(method).configure(cfg)

    def require(self, *names: str) -> None:
        """Refuse, naming them, parameters this protocol needs but the notebook did not declare."""
        missing = [n for n in names if n not in self.params]
        if missing:
            raise ParamsError(f"these parameters are needed here but were not given: {', '.join(missing)}")
