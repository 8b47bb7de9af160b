"""split_queries reproduces ERA's split_queries_by_id (ERA_METHOD.md §3.2.1, §9.13)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from era_core.errors import ParamsError
from era_core.splits import split_queries

RATIOS = (0.05, 0.1, 0.2, 0.4)

# ERA_METHOD.md §3.2.1 small-N table: (train, val, eval) sizes for r = 0.05 / 0.1 / 0.2 / 0.4.
TABLE = {
    1: [(1, 0, 0)] * 4,
    2: [(1, 0, 1)] * 4,
    5: [(1, 0, 3), (1, 0, 3), (1, 0, 3), (2, 0, 3)],
    10: [(1, 1, 5), (1, 1, 5), (2, 1, 5), (4, 1, 5)],
    100: [(5, 10, 50), (10, 10, 50), (20, 10, 50), (40, 10, 50)],
}


def _qids(n: int) -> list[str]:
    return [f"q{i}" for i in range(n)]


@pytest.mark.parametrize("n", sorted(TABLE))
@pytest.mark.parametrize("ratio_index", range(len(RATIOS)))
def test_small_n_table(n: int, ratio_index: int) -> None:
    train, val, test = split_queries(_qids(n), RATIOS[ratio_index])
    assert (len(train), len(val), len(test)) == TABLE[n][ratio_index]


@pytest.mark.parametrize(("n", "n_val"), [(1, 0), (2, 0), (3, 0), (4, 1), (5, 0), (12, 2), (13, 1)])
def test_val_sizes_follow_int_flooring(n: int, n_val: int) -> None:
    # §9.13: int() flooring is not monotone in N.
    assert len(split_queries(_qids(n), 0.1)[1]) == n_val


def test_matches_reference_procedure() -> None:
    # The reference, written out step by step from §3.2.1, on an N where every part is non-trivial.
    qids = _qids(37)
    expected = list(qids)
    random.Random(42).shuffle(expected)
    eval_start = max(1, int(37 * (1 - 0.5)))
    val_start = min(max(1, int(37 * (1 - 0.5 - 0.1))), eval_start)
    train_size = max(1, min(int(37 * 0.2), val_start))
    train, val, test = split_queries(qids, 0.2)
    assert train == expected[:train_size]
    assert val == expected[val_start:eval_start]
    assert test == expected[eval_start:]
    assert (len(train), len(val), len(test)) == (7, 4, 19)


def test_input_is_not_mutated_and_seed_matters() -> None:
    qids = _qids(50)
    original = list(qids)
    a = split_queries(qids, 0.4, seed=42)
    b = split_queries(qids, 0.4, seed=7)
    assert qids == original
    assert a != b


@pytest.mark.parametrize(("r", "v", "e"), [(0.41, 0.1, 0.5), (0.4, 0.2, 0.5), (0.3, 0.1, 0.7)])
def test_ratio_sum_above_one_raises_naming_values(r: float, v: float, e: float) -> None:
    with pytest.raises(ParamsError) as info:
        split_queries(_qids(10), r, v, e)
    for value in (r, v, e):
        assert str(value) in str(info.value)


def test_ratio_sum_within_tolerance_is_accepted() -> None:
    # 0.4 + 0.1 + 0.5 is exactly the paper's largest ratio; float noise below 1e-9 is allowed.
    assert len(split_queries(_qids(100), 0.4 + 5e-10)[0]) == 40


@pytest.mark.parametrize(("r", "v", "e"), [(-0.1, 0.1, 0.5), (0.1, -0.1, 0.5), (0.1, 0.1, 1.5), (1.2, 0.0, 0.0)])
def test_out_of_range_ratio_raises(r: float, v: float, e: float) -> None:
    with pytest.raises(ParamsError, match="must be a number in \\[0, 1\\]"):
        split_queries(_qids(10), r, v, e)


def test_empty_qids_raises() -> None:
    with pytest.raises(ParamsError, match="no qids"):
        split_queries([], 0.1)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=400),
    seed=st.integers(min_value=0, max_value=2**31),
    val_ratio=st.sampled_from([0.0, 0.05, 0.1, 0.2]),
    eval_ratio=st.sampled_from([0.0, 0.3, 0.5, 0.6]),
)
def test_invariants(n: int, seed: int, val_ratio: float, eval_ratio: float) -> None:
    qids = _qids(n)
    ratios = [r for r in (0.0, 0.05, 0.1, 0.2, 0.3, 0.4) if r + val_ratio + eval_ratio <= 1 + 1e-9]
    splits = [split_queries(qids, r, val_ratio, eval_ratio, seed) for r in ratios]
    previous_train: list[str] = []
    for (train, val, test), r in zip(splits, ratios):
        assert set(train).isdisjoint(val) and set(train).isdisjoint(test) and set(val).isdisjoint(test)
        assert set(train) | set(val) | set(test) <= set(qids)
        assert len(train) >= 1
        assert train[: len(previous_train)] == previous_train  # nested prefixes as r grows
        previous_train = train
        assert (val, test) == splits[0][1:]  # independent of the train ratio
        assert split_queries(qids, r, val_ratio, eval_ratio, seed) == (train, val, test)


def test_predefined_split_keeps_official_val_and_test_and_shares_train() -> None:
    from era_core.splits import predefined_split

    qids = [f"q{i}" for i in range(20)]
    labels = {q: ("test" if i % 4 == 0 else "val" if i % 4 == 1 else "train") for i, q in enumerate(qids)}
    pool = [q for q in qids if labels[q] == "train"]
    train, val, test = predefined_split(qids, labels, 0.5, seed=3)
    assert test == qids[0::4] and val == qids[1::4]
    assert len(train) == 5 and set(train) <= set(pool)
    assert predefined_split(qids, labels, 1.0, seed=3)[0][:5] == train  # nested across ratios
    assert predefined_split(qids, labels, 0.5, seed=4)[0] != train  # the seed draws the share
    with pytest.raises(ParamsError, match="unlabelled qids \\['q19'\\]"):
        predefined_split(qids, {q: v for q, v in labels.items() if q != "q19"}, 0.5)
    with pytest.raises(ParamsError, match="unknown labels \\['dev'\\]"):
        predefined_split(qids, {**labels, "q2": "dev"}, 0.5)
    with pytest.raises(ParamsError, match="train_ratio"):
        predefined_split(qids, labels, 1.5)
