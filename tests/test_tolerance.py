"""Measured tolerance between two results folders."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from era_core.tools import tolerance as tol
from era_core.errors import EraError
from test_report import write_results


def frame(rows):
    return pd.DataFrame(rows, columns=tol.KEYS + [tol.MEAN, tol.STD])


def test_compare_frames_takes_the_largest_move_and_the_larger_spread():
    a = frame([("era", 0.1, "native", "overall", 0.50, 0.010), ("era", 0.4, "native", "overall", 0.60, 0.002),
               ("era", 0.4, "native", "code", 0.40, 0.05), ("zero_shot_small", None, "native", "overall", 0.3, 0.001)])
    b = frame([("era", 0.1, "native", "overall", 0.507, 0.012), ("era", 0.4, "native", "overall", 0.599, 0.001),
               ("era", 0.4, "native", "code", 0.43, 0.05), ("zero_shot_small", None, "native", "overall", 0.3, 0.001)])
    rows = {r["method"]: r for r in tol.compare_frames(a, b)}
    assert rows["era"]["max_abs_diff_overall"] == pytest.approx(0.007)
    assert rows["era"]["max_abs_diff_domain"] == pytest.approx(0.03)
    assert rows["era"]["max_seed_sd_overall"] == pytest.approx(0.012)
    assert rows["zero_shot_small"]["max_abs_diff_overall"] == 0.0


def test_no_shared_cell_is_an_error():
    with pytest.raises(EraError, match="share no"):
        tol.compare_frames(frame([("era", 0.1, "native", "overall", 0.5, 0.1)]),
                           frame([("era", 0.2, "native", "overall", 0.5, 0.1)]))


def test_compare_results_and_the_file_keeps_one_entry_per_label(tmp_path):
    a, b = write_results(tmp_path / "a"), write_results(tmp_path / "b")
    # move every ERA run of b by +0.02 (more than its synthetic seed spread)
    tr = json.loads((b / "training.json").read_text())
    for run in tr["runs"]:
        if run["method"] == "era":
            for block in run["scopes"].values():
                block["overall"]["ndcg@10"] += 0.02
    (b / "training.json").write_text(json.dumps(tr))
    cmp = tol.compare_results(a, b, "synthetic shift")
    era = next(r for r in cmp["methods"] if r["method"] == "era")
    assert era["max_abs_diff_overall"] == pytest.approx(0.02)
    assert "era" in cmp["methods_moving_more_than_their_seed_sd"]
    assert next(r for r in cmp["methods"] if r["method"] == "small_adapter")["max_abs_diff_overall"] == 0.0
    out = tmp_path / "tolerance.json"
    tol.add_comparison(out, cmp)
    tol.add_comparison(out, cmp)
    assert [c["label"] for c in json.loads(out.read_text())["comparisons"]] == ["synthetic shift"]
    assert tol.main(["--a", str(a), "--b", str(tmp_path / "nothing"), "--label", "x", "--out", str(out)]) == 2
