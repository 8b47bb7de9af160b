"""Shared test fixtures: one torch thread, and the smoke profile's pool on two small tasks."""

from __future__ import annotations

import pytest
import torch

#: The smoke profile's pair: two different 384-d models, so a swapped pairing changes every vector.
LARGE, SMALL = "minilm-l6", "minilm-l3-onnx"
SMOKE_TASKS = "HPO-Synonyms,SymPy-API"


def smoke_config(notebook: str = "03_training", **overrides):
    """A validated ``Config`` of ``notebook`` on the smoke pair and two tasks, with short training."""
    from era_core.paper.config import Config
    from era_core.paper.params import SCHEMAS, validate

    values = {k: v.default for k, v in SCHEMAS[notebook].items()}
    values |= {"large_model": LARGE, "small_model": SMALL, "progress": False, "tasks": SMOKE_TASKS}
    values |= {k: v for k, v in (("align_epochs", 3), ("label_epochs", 6)) if k in values}
    return Config.from_params(validate(notebook, values | overrides))


@pytest.fixture(scope="session")
def smoke_pool():
    """(EmbeddingPool, Config) of the smoke pair on two tasks; its vectors come through the test cache."""
    from era_core.paper.pool import EmbeddingPool
    from era_core.setup import load_units

    cfg = smoke_config()
    return EmbeddingPool(cfg.setup, load_units(cfg.setup)), cfg


@pytest.fixture
def one_torch_thread():
    """Tiny problems: one torch thread avoids oversubscribing the shared CI cores and keeps runs bit-reproducible."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
