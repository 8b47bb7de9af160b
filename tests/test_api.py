"""The README's example, run as written: the public API on a tiny BEIR folder, and the errors it raises."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import era_core
from era_core import api, paths
from era_core.errors import DataError, ParamsError
from era_core.validation_choice import AUTO_CANDIDATES

README = (paths.ROOT / "README.md").read_text(encoding="utf-8")


def _block(lang: str, contains: str) -> str:
    blocks = re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)
    found = [b for b in blocks if contains in b]
    assert len(found) == 1, f"the README has {len(found)} {lang} blocks containing {contains!r}"
    return found[0]


@pytest.fixture(scope="module")
def readme_folder(tmp_path_factory):
    """The README's tiny index, written by the README's own snippet."""
    root = tmp_path_factory.mktemp("readme")
    maker = _block("bash", "my_index").split("<<'PY'", 1)[1].split("\nPY\n", 1)[0]
    subprocess.run([sys.executable, "-c", maker], cwd=root, check=True)
    return root


def test_the_readme_python_example_runs_and_scores_the_tiny_index(readme_folder, one_torch_thread):
    code = _block("python", "from era_core import")
    env = {**os.environ, "PYTHONPATH": str(paths.ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=readme_folder, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    ndcg = float(out.stdout.strip().splitlines()[-1])
    assert 0.5 < ndcg <= 1.0  # one unambiguous relevant document per query
    assert "validation nDCG@10 on" in out.stdout and "<- kept" in out.stdout  # the comparison table
    # What save wrote, load reads back: the kept method, its encoders and the comparison that chose it.
    again = api.load(readme_folder / "my-run-py")
    assert (again.large_model, again.small_model) == ("minilm-l6", "minilm-l3-onnx")
    assert again.method == again.meta["validation"]["chosen"] in AUTO_CANDIDATES
    exported = json.loads((readme_folder / "my-era-model-py" / "config_sentence_transformers.json").read_text())
    assert (exported["era"]["query_model"], exported["era"]["doc_model"]) == (again.query_model, "minilm-l3-onnx")


def test_the_package_face_is_the_api():
    for name in ("Setup", "load_units", "embed", "phase1", "fit", "compare", "evaluate", "save", "load", "export",
                 "LabelConfig"):
        assert getattr(era_core, name) is getattr(api, name)
    with pytest.raises(AttributeError, match="no attribute 'train_adapter'"):
        era_core.train_adapter  # noqa: B018


def test_api_errors_keep_their_types(readme_folder, tmp_path):
    setup = api.Setup(str(readme_folder / "my_index"), ("my_index",), large_model="minilm-l6",
                      small_model="minilm-l3-onnx", progress=False)
    units = api.load_units(setup)
    with pytest.raises(ParamsError, match="phase1="):
        api.fit(setup, api.embed(setup, units), "era")  # ERA starts from Phase 1
    with pytest.raises(ParamsError, match="instruction"):
        api.embed(setup, units, "on")
    with pytest.raises(ParamsError, match="no adapter.safetensors"):
        api.load(tmp_path)
    with pytest.raises(DataError):
        api.load_units(api.Setup(str(tmp_path), ("nothing",), "minilm-l6", "minilm-l3-onnx", progress=False))


def test_evaluate_without_an_adapter_is_the_index_models_zero_shot(readme_folder):
    setup = api.Setup(str(readme_folder / "my_index"), ("my_index",), large_model="minilm-l6",
                      small_model="minilm-l3-onnx", progress=False)
    embeddings = api.embed(setup, api.load_units(setup))
    scores = api.evaluate(None, embeddings)
    te = embeddings[0]
    # By hand: the small model's own query vectors against its documents; the relevant document's rank.
    ranks = []
    for i, q in enumerate(te.qids):
        order = np.argsort(-(te.docs_small @ te.q_small[i]), kind="stable")
        gold = te.doc_ids.index(next(iter(te.qrels[q])))
        ranks.append(int(np.where(order == gold)[0][0]))
    by_hand = np.mean([1 / np.log2(r + 2) if r < 10 else 0.0 for r in ranks])
    assert scores.summary()["overall"]["ndcg@10"] == pytest.approx(by_hand, abs=1e-6)
