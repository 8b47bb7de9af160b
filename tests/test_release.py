"""`make release-adapter`: export a run folder, load it back, and read reference `.pt` adapters."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from era_core import release
from era_core.adapter import AdaptedQueryEncoder, LinearAdapter, apply_adapter, load_adapter, save_adapter
from era_core.encoders import INSTRUCT_TEMPLATE, format_queries
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
    """A run folder in the shapes experiments.run_job writes (summary, era_meta, adapter)."""
    torch.manual_seed(seed)
    adapter = adapter or LinearAdapter(DIM, DIM)
    run_id = f"{method}__native__train{ratio:g}__seed{seed}"
    folder = results / "runs" / "in_domain" / run_id
    fields = {"model": LARGE, "query_template": INSTRUCT_TEMPLATE, "dim": DIM}
    cfg = {"protocol": "in_domain", "method": method, "seed": seed, "train_ratio": ratio, "instructions": True,
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


def test_export_roundtrip_and_model_card(tmp_path):
    results = tmp_path / "results"
    make_run(results, ratio=0.1, seed=42)
    best, adapter = make_run(results, ratio=0.4, seed=43)
    make_run(results, ratio=0.4, seed=44)
    make_run(results, ratio=0.4, seed=1, method="label_only")
    assert release.largest_ratio_run(results) == best  # largest ratio, then lowest seed, of method era

    assert release.main(["--results", str(results)]) == 0
    out = results / "adapters" / "era"
    enc = AdaptedQueryEncoder.from_pretrained(out, query_encoder=FakeQueryEncoder())
    assert enc.dim == DIM and enc.doc_model == SMALL
    queries, instructions = ["what is a gamma function", "fever and rash"], ["Find the API", "Find the term"]
    got = enc.encode(queries, instructions, progress=False)
    # Trained in the native setting on a model that takes no instructions: it encodes the bare query.
    raw = FakeQueryEncoder().encode(queries)
    with torch.no_grad():
        manual = torch.nn.functional.normalize(adapter.proj(torch.from_numpy(raw)), dim=-1).numpy()
    np.testing.assert_allclose(got, manual, atol=1e-6)
    assert enc.instructions == "native" and enc.query_encoder.seen == queries
    forced = AdaptedQueryEncoder(FakeQueryEncoder(), adapter, doc_model=SMALL, instructions="forced")
    forced.encode(queries, instructions, progress=False)
    assert forced.query_encoder.seen == ["Instruct: Find the API\nQuery: what is a gamma function",
                                         "Instruct: Find the term\nQuery: fever and rash"]

    card = json.loads((out / "model_card.json").read_text())
    assert (card["query_model"], card["doc_model"], card["query_dim"], card["doc_dim"]) == (LARGE, SMALL, DIM, DIM)
    assert card["query_model_hub_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert card["instruction_template"] == "{query}"  # native, uninstructed model: the bare query
    assert (card["train_ratio"], card["seed"], card["method"], card["instructions"]) == (0.4, 43, "era", "native")
    assert card["test_metrics_overall"]["ndcg@10"] == pytest.approx(0.9)
    assert card["test_metrics_per_domain"]["medical"]["ndcg@10"] == pytest.approx(0.6)
    readme = (out / "README.md").read_text()
    for needle in (LARGE, SMALL, "384-d", "train ratio 0.4", "seed 43", "0.9000", "from_pretrained"):
        assert needle in readme
    config = json.loads((out / "config.json").read_text())
    assert config["instruction_template"] == "{query}" and config["card"]["seed"] == 43
    assert config["instructions"] == "native"


def test_wrong_query_encoder_is_refused(tmp_path):
    make_run(tmp_path / "r", ratio=0.2, seed=42)
    out = release.export_release(release.largest_ratio_run(tmp_path / "r"), tmp_path / "rel")
    other = FakeQueryEncoder()
    other.spec = SimpleNamespace(key="mpnet-base")
    with pytest.raises(Exception, match="mpnet-base"):
        AdaptedQueryEncoder.from_pretrained(out, query_encoder=other)


def test_reference_pt_state_dict_loads(tmp_path):
    torch.manual_seed(0)
    ref = LinearAdapter(DIM, 128)
    pt = tmp_path / "era_adapter.pt"
    torch.save({"proj.weight": ref.proj.weight.detach().clone(), "proj.bias": ref.proj.bias.detach().clone()}, pt)
    loaded = load_adapter(pt, expected_in_dim=DIM, expected_out_dim=128)
    x = FakeQueryEncoder().encode(["a", "b", "c"])
    np.testing.assert_array_equal(apply_adapter(loaded, x), apply_adapter(ref, x))
    # and it can be re-released as a from_pretrained folder
    folder = AdaptedQueryEncoder.save_adapter_folder(tmp_path / "rel", loaded, query_model=LARGE, doc_model="other")
    again = AdaptedQueryEncoder.from_pretrained(folder, query_encoder=FakeQueryEncoder())
    np.testing.assert_allclose(again.encode(["a"], None, progress=False), apply_adapter(ref, x[:1]), atol=1e-6)


def test_no_run_is_a_clear_error(tmp_path, capsys):
    assert release.main(["--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no finished in-domain 'era' run" in err and "03_training" in err
