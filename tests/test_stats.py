"""Tests for era_core.paper.stats: paired tests against scipy, Holm against a hand example, the gap ratios."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from scipy import stats as sps

from era_core.errors import DataError, ParamsError
from era_core.paper.stats import (
    gap_closed,
    holm,
    paired_comparison,
    paired_t_p_value,
    randomisation_p_value,
    recovered_share,
)

# Hand case: 10 queries, nDCG-like values on a 1/8 grid so every sum is exact in floating point.
A = np.array([0.750, 0.500, 0.875, 0.625, 1.000, 0.250, 0.625, 0.875, 0.500, 0.750])
B = np.array([0.500, 0.500, 0.625, 0.750, 0.625, 0.125, 0.500, 0.500, 0.625, 0.375])


def _scipy_permutation_p(a, b, n_resamples, seed=0):
    res = sps.permutation_test(
        (a, b), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
        vectorized=True, n_resamples=n_resamples, alternative="two-sided", random_state=seed,
    )  # fmt: skip
    return res.pvalue


def test_exact_randomisation_test_matches_scipy_exactly():
    p = randomisation_p_value(A - B, n_resamples=10_000)  # 2^10 = 1024 <= 10,000: exact enumeration
    assert p == _scipy_permutation_p(A, B, 10_000)
    # By hand: the observed mean is 1.625/10; 2 x P(T >= t) over the 1024 flips.
    d = A - B
    signs = 1 - 2 * ((np.arange(1024)[:, None] >> np.arange(10)) & 1)
    assert p == pytest.approx(2 * np.mean(signs @ d >= d.sum()))
    # Smaller families, including ties (a zero difference) and a negative mean.
    for a, b in ((A[:5], B[:5]), (B[:7], A[:7]), (A[[1, 2, 3]], B[[1, 2, 3]])):
        assert randomisation_p_value(a - b) == _scipy_permutation_p(a, b, 10_000)


def test_drawn_randomisation_test_is_seeded_and_close_to_scipy():
    r = np.random.default_rng(0)
    a = r.uniform(size=40)
    b = a - 0.05 + 0.2 * r.normal(size=40)
    p1 = randomisation_p_value(a - b, n_resamples=20_000, seed=3)
    assert p1 == randomisation_p_value(a - b, n_resamples=20_000, seed=3)
    assert p1 != randomisation_p_value(a - b, n_resamples=20_000, seed=4)
    ref = _scipy_permutation_p(a, b, 20_000)
    # Both are Monte Carlo: 2 min(tail) has sd <= 1/sqrt(n) each, so 5/sqrt(n) is a wide bound (one-sided: ~0.38 off).
    assert abs(p1 - ref) < 5 / math.sqrt(20_000)
    # Never 0 for drawn flips: (count + 1) / (n + 1).
    assert randomisation_p_value(np.full(30, 0.1), n_resamples=99) == pytest.approx(2 / 100)
    assert randomisation_p_value(np.zeros(30), n_resamples=99) == 1.0


def test_paired_t_test_matches_scipy_ttest_rel():
    assert paired_t_p_value(A - B) == pytest.approx(sps.ttest_rel(A, B).pvalue, rel=1e-12)
    assert paired_t_p_value(B - A) == pytest.approx(sps.ttest_rel(B, A).pvalue, rel=1e-12)
    assert paired_t_p_value(np.zeros(5)) == 1.0
    assert paired_t_p_value(np.full(5, 0.25)) == 0.0
    with pytest.raises(DataError, match="at least 2"):
        paired_t_p_value([0.1])


def test_holm_matches_a_hand_computed_example():
    p = [0.01, 0.04, 0.03, 0.005]
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06.
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])
    assert holm([]).size == 0
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        holm([0.1, float("nan")])
    if importlib.util.find_spec("statsmodels") is not None:
        from statsmodels.stats.multitest import multipletests

        np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])


def test_gap_closed_and_recovered_share():
    assert gap_closed(0.45, 0.40, 0.50) == pytest.approx(0.5)
    assert gap_closed(0.55, 0.40, 0.50) == pytest.approx(1.5)
    assert gap_closed(0.35, 0.40, 0.50) == pytest.approx(-0.5)
    assert math.isnan(gap_closed(0.45, 0.50, 0.50))  # no gap
    assert math.isnan(gap_closed(0.45, 0.50, 0.40))  # large below small: the ratio would flip meaning
    assert math.isnan(gap_closed(0.45, 0.40, 0.41, min_gap=0.02))
    assert math.isnan(gap_closed(float("nan"), 0.40, 0.50))
    assert recovered_share(0.4, 0.8) == pytest.approx(0.5)
    assert math.isnan(recovered_share(0.4, 0.0))


def test_paired_comparison_over_query_keys():
    method = {("t1", f"q{i}"): float(v) for i, v in enumerate(A)}
    base = {("t1", f"q{i}"): float(v) for i, v in enumerate(B)}
    out = paired_comparison(method, dict(reversed(list(base.items()))))
    assert out == {"mean_diff": pytest.approx(0.1625), "p_value": _scipy_permutation_p(A, B, 10_000), "n": 10}
    assert paired_comparison(method, base, test="t")["p_value"] == pytest.approx(sps.ttest_rel(A, B).pvalue)
    with pytest.raises(DataError, match="same queries"):
        paired_comparison(method, {k: v for k, v in list(base.items())[:-1]})
    with pytest.raises(ParamsError, match="randomisation, t"):
        paired_comparison(method, base, test="wilcoxon")
    with pytest.raises(ParamsError, match="n_resamples"):
        randomisation_p_value(A - B, n_resamples=0)
