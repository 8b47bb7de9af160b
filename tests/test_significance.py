"""Paired significance of the main table, on a hand-built results folder."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from era_core.paper import significance as sig
from era_core.paper import stats
from era_core.errors import EraError
from era_core.paper.runs import PER_QUERY_FILE, make_run_id, run_dir
from era_core.io import write_json

QIDS = [f"q{i}" for i in range(12)]


def _test_split(seed: int) -> list[str]:
    # each seed's test split: a different half of the queries (overlapping across seeds, as the real split)
    return sorted(np.random.default_rng(seed).choice(QIDS, 6, replace=False).tolist())


def _values(offset: float, seed: int) -> dict[str, dict[str, float]]:
    return {"T": {q: round(0.1 * (i % 5) + offset + 0.001 * seed, 6) for i, q in enumerate(QIDS) if q in _test_split(seed)}}


@pytest.fixture
def results(tmp_path):
    seeds = [1, 2, 3]
    records = []
    for enc, off in (("small", 0.0), ("large", 0.2)):
        for s in seeds:
            records.append({"encoder": enc, "instructions": "native", "scope": "test", "seed": s,
                            "per_query": _values(off, s)})
    write_json(tmp_path / "zero_shot.json", {"setup": {"small_model": "small", "large_model": "large"},
                                             "records": records})
    runs = []
    for method, off in (("era", 0.1), ("small_adapter", 0.15), ("alignment_only", -0.05)):
        for ratio in (0.1, 0.4):
            for s in seeds:
                runs.append({"method": method, "train_ratio": ratio, "seed": s, "instructions": "native"})
                folder = run_dir(tmp_path, "in_domain", make_run_id(method, "native", ratio, s, {}))
                write_json(folder / PER_QUERY_FILE, _values(off + ratio / 10, s))
    write_json(tmp_path / "training.json", {"runs": runs})
    return tmp_path


def test_query_differences_average_over_the_seeds_that_scored_a_query():
    a = {1: {"T": {"q1": 0.5, "q2": 0.1}}, 2: {"T": {"q1": 0.7}}, 3: {"T": {"q3": 1.0}}}
    b = {1: {"T": {"q1": 0.25, "q2": 0.3}}, 2: {"T": {"q1": 0.2}}}
    got = sig.query_differences(a, b)
    # sorted by (unit, qid): q1 -> mean(0.25, 0.5), q2 -> -0.2; q3 has no baseline (seed 3 missing)
    assert got.tolist() == pytest.approx([0.375, -0.2])


def test_no_shared_query_is_an_error():
    with pytest.raises(EraError, match="no test query"):
        sig.query_differences({1: {"T": {"q1": 0.5}}}, {2: {"T": {"q1": 0.5}}})


def test_main_significance_family_and_holm(results):
    out = sig.main_significance(results, "native", n_resamples=2000, seed=0)
    rows = {(r["method"], r["train_ratio"], r["baseline"]): r for r in out["comparisons"]}
    # zero-shot rows, ERA and alignment_only (once: it ignores the ratio) against each other baseline
    assert ("era", 0.4, "small_adapter") in rows and ("era", 0.1, "zero_shot_large") in rows
    assert ("zero_shot_large", None, "zero_shot_small") in rows
    assert ("small_adapter", 0.1, "small_adapter") not in rows
    assert [k for k in rows if k[0] == "alignment_only"] == [("alignment_only", 0.1, b) for b in sig.BASELINES]
    era = rows[("era", 0.4, "zero_shot_small")]
    assert era["mean_diff"] == pytest.approx(0.14, abs=1e-9)
    assert era["n_queries"] == len(set().union(*(_test_split(s) for s in (1, 2, 3))))
    p = [r["p_value"] for r in out["comparisons"]]
    assert [r["p_holm"] for r in out["comparisons"]] == pytest.approx(stats.holm(p).tolist())
    assert all(r["significant"] == (r["p_holm"] < 0.05) for r in out["comparisons"])


def test_p_values_match_scipy_on_real_differences(results):
    out = sig.main_significance(results, "native", n_resamples=4096, seed=0)
    row = next(r for r in out["comparisons"] if (r["method"], r["train_ratio"], r["baseline"]) == ("era", 0.1, "small_adapter"))
    runs = sig._run_per_query(results, "native")
    diffs = sig.query_differences(runs[("era", 0.1)], runs[("small_adapter", 0.1)])
    # constant shift: a sign-flip test over n queries gives exactly 2 / 2^n (n small enough to enumerate)
    ref = sps.permutation_test((diffs,), np.mean, permutation_type="samples", n_resamples=np.inf,
                               alternative="two-sided").pvalue
    assert row["p_value"] == pytest.approx(ref)


def test_missing_per_query_file_names_the_fix(results):
    next(results.rglob(PER_QUERY_FILE)).unlink()
    with pytest.raises(EraError, match="rerun 03_training"):
        sig.main_significance(results, "native")
