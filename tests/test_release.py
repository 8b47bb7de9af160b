"""`make release-adapter`: the largest-ratio run exported as a sentence-transformers model with its card; reference
`.pt` adapters."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from era_core.paper import release
from era_core.adapter import AdaptedQueryEncoder, LinearAdapter, apply_adapter, load_adapter, save_adapter
from era_core.encoders import INSTRUCT_TEMPLATE, format_queries
from era_core.errors import ParamsError
from era_core.io import write_json

LARGE, SMALL = "minilm-l6", "minilm-l3-onnx"  # both 384-d, so a tiny adapter fits the registry dims
DIM = 384


class FakeQueryEncoder:
    """Stands in for the large model: deterministic unit vectors, the registry key of LARGE."""

    spec = SimpleNamespace(key=LARGE)
    key, dim = LARGE, DIM

    def __init__(self):
        self.seen: list[str] = []

    def format_queries(self, queries, instructions):
        return format_queries(queries, instructions, template=INSTRUCT_TEMPLATE)

    def encode(self, texts, *, batch_size=32, progress=True):
        self.seen.extend(texts)
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "big")
            v = np.random.default_rng(seed).standard_normal(DIM)
            rows.append(v / np.linalg.norm(v))
        return np.array(rows, dtype=np.float32)


def metrics(value: float) -> dict[str, float]:
    return {"ndcg@10": value, "recall@100": value + 0.1}


def make_run(results: Path, *, ratio: float, seed: int, method: str = "era", adapter: LinearAdapter | None = None
             ) -> tuple[Path, LinearAdapter]:
    """A run folder in the shapes paper.runs.run_job writes (summary, era_meta, adapter)."""
    torch.manual_seed(seed)
    adapter = adapter or LinearAdapter(DIM, DIM)
    run_id = f"{method}__native__train{ratio:g}__seed{seed}"
    folder = results / "runs" / "in_domain" / run_id
    fields = {"model": LARGE, "query_template": INSTRUCT_TEMPLATE, "dim": DIM}
    cfg = {"protocol": "in_domain", "method": method, "seed": seed, "train_ratio": ratio, "instructions": "native",
           "train_units": ["SymPy-API", "HPO-Synonyms"], "eval_units": ["SymPy-API", "HPO-Synonyms"],
           "params": {"benchmark": "offline-smoke", "large_model": LARGE, "small_model": SMALL, "max_length": 128},
           "encoders": {"large": fields, "small": {**fields, "model": SMALL}}}
    summary = {"protocol": "in_domain", "method": method, "seed": seed, "train_ratio": ratio, "instructions": "native",
               "train_units": cfg["train_units"], "config_key": f"key{seed}{ratio}",
               "scopes": {s: {"overall": metrics(0.5 + ratio), "per_domain": {"academic": metrics(0.4),
                                                                              "medical": metrics(0.6)},
                              "per_task": {}} for s in ("test", "protocol")}}
    save_adapter(adapter, folder / "adapter.safetensors", {"method": method, "large_model": LARGE, "small_model": SMALL})
    write_json(folder / "era_meta.json", {"method": method, "config": cfg, "config_key": summary["config_key"]})
    write_json(folder / "summary.json", summary)
    return folder, adapter


def test_release_exports_the_largest_ratio_run_with_its_model_card(tmp_path):
    results = tmp_path / "results"
    make_run(results, ratio=0.1, seed=42)
    best, adapter = make_run(results, ratio=0.4, seed=43)
    make_run(results, ratio=0.4, seed=44)
    make_run(results, ratio=0.4, seed=1, method="label_only")
    assert release.largest_ratio_run(results) == best  # largest ratio, then lowest seed, of method era

    assert release.main(["--results", str(results)]) == 0
    out = results / "adapters" / "era"
    card = json.loads((out / "model_card.json").read_text())
    assert (card["query_model"], card["doc_model"], card["query_dim"], card["doc_dim"]) == (LARGE, SMALL, DIM, DIM)
    assert card["query_model_hub_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert card["instruction_template"] == "{query}"  # native, uninstructed model: the bare query
    assert (card["train_ratio"], card["seed"], card["method"], card["instructions"]) == (0.4, 43, "era", "native")
    assert card["test_metrics_overall"]["ndcg@10"] == pytest.approx(0.9)
    assert card["test_metrics_per_domain"]["medical"]["ndcg@10"] == pytest.approx(0.6)
    readme = (out / "README.md").read_text()
    for needle in (LARGE, SMALL, "0.9000"):
        assert needle in readme
    # The release is the Router export: the large model's query, through this run's adapter, in the small space.
    from sentence_transformers import SentenceTransformer

    from era_core.encoders import load_encoder

    queries = ["what is a gamma function", "fever and rash"]
    model = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    expected = apply_adapter(adapter, load_encoder(LARGE, dtype="float32", progress=False).encode(queries, progress=False))
    np.testing.assert_allclose(model.encode_query(queries), expected, atol=1e-4)


def test_a_query_encoder_of_another_width_is_refused():
    wide = FakeQueryEncoder()
    wide.dim = 768
    with pytest.raises(ParamsError, match="has dim 768 but the adapter expects in_dim 384"):
        AdaptedQueryEncoder(wide, LinearAdapter(DIM, DIM), doc_model=SMALL)


def test_reference_pt_state_dict_loads_and_encodes(tmp_path):
    torch.manual_seed(0)
    ref = LinearAdapter(DIM, 128)
    pt = tmp_path / "era_adapter.pt"
    torch.save({"proj.weight": ref.proj.weight.detach().clone(), "proj.bias": ref.proj.bias.detach().clone()}, pt)
    loaded = load_adapter(pt, expected_in_dim=DIM, expected_out_dim=128)
    x = FakeQueryEncoder().encode(["a", "b", "c"])
    np.testing.assert_array_equal(apply_adapter(loaded, x), apply_adapter(ref, x))
    # and it encodes raw queries as the reference adapter would
    enc = AdaptedQueryEncoder(FakeQueryEncoder(), loaded, doc_model="other")
    np.testing.assert_allclose(enc.encode(["a"], None, progress=False), apply_adapter(ref, x[:1]), atol=1e-6)


def test_no_run_is_a_clear_error(tmp_path, capsys):
    assert release.main(["--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no finished in-domain 'era' run" in err and "03_training" in err
