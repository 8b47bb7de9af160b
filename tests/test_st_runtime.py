"""`make bench`'s st_runtime section: the switch rule, the padding count, and why the static model stays ours.

No timing is asserted: the rule's inputs are measured by `make bench` on the full sizes (results/bench.json).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from era_core.tools.bench import markdown, st_runtime
from tests.test_static_encoder import TEXTS, tiny_static  # noqa: F401  (the fixture)


def _row(rel_p: float, rel_q: float, cos_p: float = 1.0, cos_q: float = 1.0) -> dict:
    return {"passages": {"st_relative_throughput": rel_p, "cosine_min": cos_p},
            "queries": {"st_relative_throughput": rel_q, "cosine_min": cos_q}}


def test_verdict_applies_every_part_of_the_rule():
    assert st_runtime.verdict(_row(0.96, 1.3)) == {"switch": True, "why": "meets the rule"}
    slow = st_runtime.verdict(_row(1.02, 0.78))
    assert not slow["switch"] and slow["why"] == "queries: 0.78x era_core's throughput (< 0.95)"
    off = st_runtime.verdict(_row(1.0, 1.0, cos_p=0.9061))
    assert not off["switch"] and "passages: min cosine 0.906100 (< 0.9999)" in off["why"]
    both = st_runtime.verdict(_row(0.5, 0.94, cos_q=0.99989))
    assert both["why"].count(";") == 2  # three failures, each named
    gone = st_runtime.verdict({"st_unavailable": "needs optimum"})
    assert gone == {"switch": False, "why": "sentence-transformers cannot load it: needs optimum"}


def test_padded_tokens_counts_each_ordering_by_hand():
    # Character length and token length disagree: "aaaaaaaaaa" is one token, "a b c d" four.
    texts = ["aaaaaaaaaa", "a b c d", "bbbbbbbbb", "e f g"]
    lengths = [1, 4, 1, 3]
    out = st_runtime.padded_tokens(lengths, texts, batch_size=2)
    assert out["real"] == 9
    assert out["era_core"] == 2 * 4 + 2 * 1  # token order: [4, 3] then [1, 1]
    assert out["sentence_transformers"] == 2 * 1 + 2 * 4  # character order: [10, 9 chars] then [7, 5 chars]
    same = st_runtime.padded_tokens([2, 2, 2], ["x", "yy", "zzz"], batch_size=2)
    assert same == {"real": 6, "era_core": 6, "sentence_transformers": 6}


def test_onnx_reason_names_the_missing_backend_and_the_pin():
    import importlib.metadata as md

    reason = st_runtime.onnx_reference_unavailable()
    assert "optimum" in reason and md.version("transformers") in reason


def _st_folder(folder, tmp_path):
    """The tiny model2vec fixture as a sentence-transformers folder (StaticEmbedding + Normalize), as potion ships."""
    import shutil

    st_dir = tmp_path / "st-static"
    shutil.copytree(folder, st_dir)
    (st_dir / "1_Normalize").mkdir()
    (st_dir / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": ".", "type": "sentence_transformers.models.StaticEmbedding"},
        {"idx": 1, "name": "1", "path": "1_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    return st_dir


def test_sentence_transformers_static_embedding_is_not_model2vec(tiny_static, tmp_path):  # noqa: F811
    """Why potion keeps era_core's backend: ST averages unknown tokens in and never truncates; model2vec does not."""
    from model2vec import StaticModel as Reference
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(_st_folder(tiny_static, tmp_path)), device="cpu")
    ref = Reference.from_pretrained(str(tiny_static))
    plain = ["The cat sat on the mat.", "bank rates rose", "a guitar , music"]  # every token known
    np.testing.assert_allclose(st.encode(plain), ref.encode(plain, max_length=None), atol=1e-6)
    unknown = ["cat zzz"]  # [UNK]: model2vec drops it, ST averages its row in
    assert np.abs(st.encode(unknown) - ref.encode(unknown, max_length=None)).max() > 1e-3
    long = ["cat mat bank guitar music rose"]  # model2vec cuts at max_length tokens; ST has no max_length
    assert np.abs(st.encode(long) - ref.encode(long, max_length=2)).max() > 1e-3


@pytest.mark.parametrize("skipped", [False, True])
def test_report_lists_every_model_with_its_verdict(skipped):
    measured = {**_row(0.93, 0.77, 1.0, 0.99998), "era_precision": "cpu-autocast-bf16"}
    measured["queries"]["padded_tokens"] = {"real": 7206, "era_core": 9184, "sentence_transformers": 12736}
    measured["verdict"] = st_runtime.verdict(measured)
    onnx = {"era_precision": "float32", "st_unavailable": "needs optimum", "verdict": {"switch": False, "why": "x"}}
    models = {"minilm-l6": measured, "minilm-l3-onnx": onnx}
    if skipped:
        models["embeddinggemma-300m"] = {"skipped": "not fetched", "verdict": {"switch": False, "why": "not measured"}}
    lines = markdown._st_runtime_lines({"rule": st_runtime.SWITCH_RULE, "models": models})
    text = "\n".join(lines)
    assert "| minilm-l6 | cpu-autocast-bf16 | 0.93x | 0.77x | 0.9999800 | 9184 / 12736 | no: passages: 0.93x" in text
    assert "| minilm-l3-onnx | float32 | — | — | — | — | no: needs optimum |" in text
    assert ("| embeddinggemma-300m | — | — | — | — | — | no: not fetched |" in text) == skipped
