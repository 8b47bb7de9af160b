"""The instruction policy per encoder family: what text each model encodes under `native` and `forced`."""

from __future__ import annotations

import numpy as np
import pytest

from era_core.cache import embed_texts
from era_core.encoders import REGISTRY, format_queries
from era_core.encoders.openai_api import API_MODELS
from era_core.errors import ParamsError
from era_core.instructions import INSTRUCTION_SETTINGS, query_instructions
from era_core.paper.params import validate
from era_core.vectors import embed_queries, query_inputs
from era_core.setup import get_encoder

QUERIES = ["what is a lemma", "sort a list"]
INSTR = ["Retrieve the proof", "Find the function"]


def _encoded(spec, setting):
    """The texts a model's encoder receives: ``Encoder.format_queries`` after the setting's policy."""
    return format_queries(QUERIES, query_instructions(spec, setting, INSTR), template=spec.query_template,
                          prefix=getattr(spec, "query_prefix", ""))


@pytest.mark.parametrize("key", ["qwen3-8b", "qwen3-0.6b", "bge-m3"])
def test_qwen_and_bge_get_the_reference_template_in_both_settings(key):
    spec = REGISTRY[key]
    expected = ["Instruct: Retrieve the proof\nQuery: what is a lemma", "Instruct: Find the function\nQuery: sort a list"]
    assert _encoded(spec, "native") == expected and _encoded(spec, "forced") == expected


@pytest.mark.parametrize("key", sorted(API_MODELS))
def test_openai_models_get_instruction_newline_query(key):
    expected = ["Retrieve the proof\nwhat is a lemma", "Find the function\nsort a list"]
    assert _encoded(API_MODELS[key], "native") == expected == _encoded(API_MODELS[key], "forced")


@pytest.mark.parametrize("key", ["minilm-l6", "minilm-l3-onnx", "potion-base-8m"])
def test_generic_models_see_the_raw_query_natively_and_the_template_only_when_forced(key):
    spec = REGISTRY[key]
    assert _encoded(spec, "native") == QUERIES
    assert _encoded(spec, "forced") == ["Instruct: Retrieve the proof\nQuery: what is a lemma",
                                        "Instruct: Find the function\nQuery: sort a list"]


def test_embeddinggemma_keeps_its_own_query_prompt_and_is_not_instructed_natively():
    spec = REGISTRY["embeddinggemma-300m"]
    assert _encoded(spec, "native") == ["task: search result | query: what is a lemma",
                                        "task: search result | query: sort a list"]
    assert _encoded(spec, "forced")[0] == ("task: search result | query: Instruct: Retrieve the proof\n"
                                           "Query: what is a lemma")


def test_only_the_reference_instructed_families_are_marked_instructed():
    assert {k for k, s in REGISTRY.items() if s.instructed} == {"qwen3-8b", "qwen3-0.6b", "bge-m3"}
    assert all(s.instructed for s in API_MODELS.values())


def test_an_unknown_setting_is_refused_with_the_allowed_values():
    with pytest.raises(ParamsError, match="native, forced"):
        query_instructions(REGISTRY["minilm-l6"], "on", INSTR)
    with pytest.raises(ParamsError, match="native, forced"):
        validate("04_lodo", {"instructions": "on"})
    assert INSTRUCTION_SETTINGS == ("native", "forced")


def test_the_pool_reads_raw_query_vectors_natively_and_instructed_ones_when_forced(smoke_pool):
    pool, _ = smoke_pool
    unit = next(u for u in pool.units if u.name == "SymPy-API")
    qids, texts, inst = query_inputs(unit)
    assert any(inst), "the fixture task must carry instructions"
    for key in ("minilm-l6", "minilm-l3-onnx"):
        enc = get_encoder(key, pool.setup)
        raw = embed_texts(enc, texts, role="query", instructions=None, progress=False)
        instructed = embed_texts(enc, texts, role="query", instructions=inst, progress=False)
        assert not np.allclose(raw, instructed)
        assert np.array_equal(embed_queries(key, unit, pool.setup, "native"), raw)
        assert np.array_equal(embed_queries(key, unit, pool.setup, "forced"), instructed)
    native, forced = (next(te for te in pool.get(s) if te.name == unit.name) for s in ("native", "forced"))
    assert native.qids == forced.qids == qids and not np.allclose(native.q_large, forced.q_large)
