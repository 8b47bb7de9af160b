"""The alignment-quality ladder: the exact rung is exact, rungs are nested, cells resume, the frame pairs seeds."""

from __future__ import annotations

import numpy as np
import pytest

from era_core.paper import ladder as lad
from era_core.paper import report
from era_core.errors import ParamsError
from era_core.identical_texts import mapped_cosine
from era_core.paper.pool import EmbeddingPool
from era_core.setup import load_units
from conftest import smoke_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_exact_map_reaches_cosine_one_on_any_vectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 48)).astype(np.float32)
    for k in (4, 16):
        a = lad.exact_map(48, k)
        assert mapped_cosine(a, x, lad.truncate(x, k)) == pytest.approx(1.0, abs=1e-6)
        # Not a cosine that any map reaches: a random map of the same shape is far from 1.
        from era_core.adapter import LinearAdapter

        assert mapped_cosine(LinearAdapter(48, k), x, lad.truncate(x, k)) < 0.5


def test_truncate_keeps_the_leading_dims_and_renormalises():
    x = np.array([[3.0, 4.0, 12.0], [0.0, 2.0, 1.0]], dtype=np.float32)
    t = lad.truncate(x, 2)
    np.testing.assert_allclose(t, [[0.6, 0.8], [0.0, 1.0]], atol=1e-7)
    assert lad.rung_names([250, 1000]) == ["n250", "n1000", "all", "exact"]


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    cfg = smoke_config("08_alignment_ladder", label_epochs=3, ladder_dims="32", ladder_sizes="100",
                       train_ratios="0.4", seeds="42")
    setup = cfg.with_params(small_model=cfg.large_model).setup
    return lad.Ladder(EmbeddingPool(setup, load_units(setup)), cfg, tmp_path_factory.mktemp("ladder")), cfg


def test_the_exact_rung_is_exact_on_documents_and_queries_and_fitted_rungs_are_not(ladder):
    lad_, _ = ladder
    _, exact = lad_.phase1(32, "exact", 42)
    assert exact["eval_cosine"] == pytest.approx(1.0, abs=1e-6) and exact["query_cosine"] == pytest.approx(1.0, abs=1e-6)
    _, small = lad_.phase1(32, "n100", 42)
    _, full = lad_.phase1(32, "all", 42)
    assert small["n_pairs"] == 100 and full["n_pairs"] == sum(len(u.corpus) for u in lad_.pool.units)
    assert small["query_cosine"] < 0.999 and full["query_cosine"] < 0.999
    # The control's queries are the truncated model's own: exactly the exact map applied to the large queries.
    te = lad_.embs(32)[0]
    np.testing.assert_allclose(te.q_small, lad.truncate(te.q_large, 32), atol=1e-7)


def test_cells_resume_and_a_changed_lr_is_a_new_cell(ladder):
    lad_, _ = ladder
    first = lad_.results / "runs" / lad.PROTOCOL
    a = lad.run_cell(lad_, 32, "era", "exact", 0.4, 42, 1e-3)
    b = lad.run_cell(lad_, 32, "era", "exact", 0.4, 42, 1e-3)
    assert a == b and len(list(first.glob("*/summary.json"))) == 1
    lad.run_cell(lad_, 32, "small_adapter", None, 0.4, 42, 1e-3)
    lad.run_cell(lad_, 32, "era", "exact", 0.4, 42, 3e-3)
    assert len(list(first.glob("*/summary.json"))) == 3


def test_whole_ladder_writes_the_frame_the_report_reads(ladder, tmp_path):
    lad_, p = ladder
    out = lad.alignment_ladder(lad_.pool.setup, p.with_params(label_lr_grid="1e-3"), tmp_path)
    frame = report.alignment_ladder_frame(out)
    assert list(frame["rung"]) == ["n100", "all", "exact"]
    row = frame[frame["rung"] == "exact"].iloc[0]
    assert row["query_cosine_mean"] == pytest.approx(1.0, abs=1e-6)
    assert row["era_minus_control_mean"] == pytest.approx(row["era_mean"] - row["control_mean"])
    sel = out["widths"][0]["label_lr_selection"]
    assert set(sel) == {"era", "small_adapter", "fused"} and all(s["chosen"] == 1e-3 for s in sel.values())
    assert (tmp_path / lad.RESULTS_FILE).is_file()
    with pytest.raises(ParamsError, match="small_model = large_model"):
        lad.alignment_ladder(p.with_params(small_model="minilm-l3-onnx").setup, p, tmp_path)
    with pytest.raises(ParamsError, match="ladder_dims"):
        lad.parse_ladder(p.with_params(ladder_dims="384"), 384)
