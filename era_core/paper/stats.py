"""Paired significance tests over test queries, Holm's correction, and the gap ratios of the encoder-pair study.

- ``randomisation_p_value``: two-sided paired randomisation (sign-flip) test of the mean of
  per-query differences. Under H0 each difference is as likely to have either sign, so the null
  distribution is the mean over all 2^n sign flips: enumerated exactly when ``2**n <=
  n_resamples``, otherwise drawn (seeded) ``n_resamples`` times. The p-value follows
  ``scipy.stats.permutation_test(permutation_type='samples')``: ``min(1, 2 min(P(T <= t),
  P(T >= t)))`` with a relative tie tolerance of 100 machine epsilons, and for drawn flips
  ``(count + 1) / (n_resamples + 1)``, so a p-value is never 0.
- ``paired_t_p_value``: two-sided paired t-test (``scipy.stats.ttest_1samp`` of the differences
  against 0, which equals ``ttest_rel``).
- ``holm``: Holm–Bonferroni adjusted p-values of one family, in input order.
- ``gap_closed`` and ``recovered_share``: the share of the zero-shot gap closed and of large→large recovered; NaN where undefined.
- ``paired_comparison``: the above for two ``{query key: value}`` maps over the same queries.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from era_core.errors import DataError, ParamsError

TESTS = ("randomisation", "t")
_CHUNK_VALUES = 1 << 22  # sign-matrix entries per block: bounds memory for thousands of queries


def _as_differences(diffs: Sequence[float] | np.ndarray) -> np.ndarray:
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise DataError(f"a paired test needs a non-empty 1-d array of per-query differences, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise DataError("per-query differences contain NaN/inf; check the per-query metrics")
    return d


def _null_means(d: np.ndarray, n_resamples: int, seed: int) -> tuple[np.ndarray, bool]:
    """Means of ``s * d`` over sign vectors ``s``: all 2^n if that fits in ``n_resamples``, else drawn."""
    n = d.size
    exact = n < 63 and 2**n <= n_resamples
    total = 2**n if exact else n_resamples
    rows = max(1, _CHUNK_VALUES // n)
    rng = np.random.default_rng(seed)
    bits = np.arange(n, dtype=np.int64)
    out = np.empty(total, dtype=np.float64)
    for start in range(0, total, rows):
        count = min(rows, total - start)
        if exact:
            codes = np.arange(start, start + count, dtype=np.int64)
            signs = 1.0 - 2.0 * ((codes[:, None] >> bits[None, :]) & 1)
        else:
            signs = 1.0 - 2.0 * rng.integers(0, 2, size=(count, n))
        out[start : start + count] = (signs @ d) / n
    return out, exact


def randomisation_p_value(diffs: Sequence[float] | np.ndarray, *, n_resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired sign-flip test of ``mean(diffs) == 0`` (exact when ``2**n <= n_resamples``)."""
    if not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ParamsError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    d = _as_differences(diffs)
    null, exact = _null_means(d, int(n_resamples), seed)
    observed = float(np.ones(d.size) @ d / d.size)
    gamma = abs(observed) * 100 * np.finfo(np.float64).eps  # as scipy: ties within rounding count as equal
    adjust = 0 if exact else 1
    less = (np.count_nonzero(null <= observed + gamma) + adjust) / (null.size + adjust)
    greater = (np.count_nonzero(null >= observed - gamma) + adjust) / (null.size + adjust)
    return float(min(1.0, 2.0 * min(less, greater)))


def paired_t_p_value(diffs: Sequence[float] | np.ndarray) -> float:
    """Two-sided paired t-test of ``mean(diffs) == 0`` via scipy.

    Degenerate cases scipy answers with NaN: all differences 0 gives 1.0 (no evidence of a
    difference); equal non-zero differences (zero variance) give 0.0 (the t statistic is infinite).
    """
    from scipy import stats as sps

    d = _as_differences(diffs)
    if d.size < 2:
        raise DataError("a paired t-test needs at least 2 queries")
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 0.0
    return float(sps.ttest_1samp(d, 0.0).pvalue)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in input order: reject ``i`` at level a iff ``adjusted[i] <= a``."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise DataError(f"holm needs a 1-d list of p-values, got shape {p.shape}")
    if p.size and (not np.isfinite(p).all() or p.min() < 0 or p.max() > 1):
        raise DataError(f"p-values must be finite and in [0, 1]; got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    # Step-down: the i-th smallest is multiplied by (m - i), made monotone, capped at 1.
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m, dtype=np.float64)
    out[order] = stepped
    return out


def gap_closed(method: float, zs_small: float, zs_large: float, *, min_gap: float = 0.0) -> float:
    """Fraction of the zero-shot gap closed: ``(method - zs_small) / (zs_large - zs_small)``.

    NaN when the gap ``zs_large - zs_small`` is not above ``min_gap`` (or any input is not
    finite): if the large model is not better than the small one there is no gap to close, and the
    ratio's sign would flip meaning. 1 means the method matches zero-shot large, above 1 beats it,
    below 0 is worse than zero-shot small.
    """
    gap = zs_large - zs_small
    if not all(math.isfinite(v) for v in (method, zs_small, zs_large)) or gap <= min_gap:
        return math.nan
    return float((method - zs_small) / gap)


def recovered_share(method: float, large_large: float) -> float:
    """Share of the large->large score recovered: ``method / large_large`` (Drift-Adapter's measure).

    NaN when ``large_large`` is not positive or an input is not finite (nDCG is >= 0, so a zero
    reference score leaves nothing to recover).
    """
    if not (math.isfinite(method) and math.isfinite(large_large)) or large_large <= 0:
        return math.nan
    return float(method / large_large)


def paired_comparison(
    method: Mapping[Hashable, float],
    baseline: Mapping[Hashable, float],
    *,
    test: str = "randomisation",
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, float | int]:
    """``{mean_diff, p_value, n}`` of ``method - baseline`` over the same query keys (e.g. ``(unit, qid)``)."""
    if test not in TESTS:
        raise ParamsError(f"unknown paired test {test!r}; allowed: {', '.join(TESTS)}")
    only_m, only_b = set(method) - set(baseline), set(baseline) - set(method)
    if only_m or only_b:
        raise DataError(
            f"method and baseline must score the same queries; only in method: {sorted(map(str, only_m))[:3]} "
            f"({len(only_m)}), only in baseline: {sorted(map(str, only_b))[:3]} ({len(only_b)})"
        )
    keys = sorted(method, key=repr)  # a fixed order, so the seeded draws do not depend on dict order
    d = _as_differences([float(method[k]) - float(baseline[k]) for k in keys])
    if test == "t":
        p = paired_t_p_value(d)
    else:
        p = randomisation_p_value(d, n_resamples=n_resamples, seed=seed)
    return {"mean_diff": float(d.mean()), "p_value": p, "n": int(d.size)}
