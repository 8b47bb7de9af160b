"""Query cost is measured on the encoder, not through the cache."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from era_core.data import Task
from era_core.errors import DataError
from era_core.query_cost import measure_query_cost, query_sample


class SleepyEncoder:
    """Encodes in a known time per text and records what it was asked to encode."""

    def __init__(self, seconds_per_text: float, instructed: bool = False) -> None:
        self.seconds, self.calls = seconds_per_text, []
        self.spec = SimpleNamespace(instructed=instructed)

    def format_queries(self, texts, instructions):
        return [f"{i}|{t}" for t, i in zip(texts, instructions or [""] * len(texts))]

    def encode(self, texts, *, batch_size=32, progress=True):
        self.calls.append(list(texts))
        time.sleep(self.seconds * len(texts))
        return np.ones((len(texts), 4), dtype=np.float32)


def _unit(name, n):
    return Task(name, "code", queries={f"{name}{i}": f"{name} query {i}" for i in range(n)},
                instructions={f"{name}{i}": f"instr {name}" for i in range(n)},
                qrels={f"{name}{i}": {"d": 1} for i in range(n)}, corpus={"d": "doc"})


def test_sample_is_round_robin_and_carries_the_instructions():
    units = [_unit("a", 3), _unit("b", 1)]
    texts, instr = query_sample(units, 3)
    assert texts == ["a query 0", "b query 0", "a query 1"] and instr == ["instr a", "instr b", "instr a"]
    assert query_sample(units, 10)[0] == ["a query 0", "b query 0", "a query 1", "a query 2"]
    with pytest.raises(DataError):
        query_sample([_unit("c", 0)], 5)


def test_cost_is_timed_on_the_encoder_after_a_warm_up(tmp_path, monkeypatch):
    monkeypatch.setenv("ERA_CACHE_DIR", str(tmp_path / "cache"))
    slow, fast = SleepyEncoder(0.004, instructed=True), SleepyEncoder(0.0)
    texts, instr = query_sample([_unit("a", 20)], 20)
    ms = measure_query_cost({"slow": slow, "fast": fast}, texts, instr, "native", batch_size=8, repeats=2)
    assert ms["slow"] >= 4.0 > ms["fast"]                               # sleep() guarantees the lower bound
    assert [len(c) for c in slow.calls] == [8, 20, 20]                 # one warm-up batch, then the timed repeats
    assert slow.calls[1][0] == "instr a|a query 0"                     # an instructed model gets the template
    assert fast.calls[1][0] == "|a query 0"                            # natively, a generic model the raw query
    measure_query_cost({"fast": fast}, texts, instr, "forced", batch_size=8, repeats=1)
    assert fast.calls[-1][0] == "instr a|a query 0"                    # forced: every model gets the template
    assert not (tmp_path / "cache").exists()                           # nothing was read from or written to a cache
