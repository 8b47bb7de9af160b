"""Per-task query split into train / val / test, exactly as ERA's `split_queries_by_id`.

ERA_METHOD.md §3.2.1: shuffle a copy of the qids with a fresh `random.Random(seed)`; the test
set is the tail from `eval_start = max(1, int(N*(1-eval)))`, the val set the slice before it
from `val_start = max(1, int(N*(1-eval-val)))` (clipped to eval_start), and the train set the
prefix of `max(1, min(int(N*r), val_start))` qids. The float expressions are the reference's,
so `int()` flooring gives the same (non-monotone) sizes: N=4 gets 1 val query, N=12 gets 2,
N=13 gets 1. Test and val do not depend on the train ratio and train sets are nested prefixes.

Deviation: the reference crashes obscurely on an empty qid list; we raise a ParamsError.

Predefined splits (our extension, for tasks that ship an official split such as InsuranceQA): a unit whose
queries carry ``query_split`` labels (qid → ``train`` / ``val`` / ``test``) keeps them. Its test and validation
sets are exactly the officially labelled queries (``val_ratio`` and ``eval_ratio`` do not apply), and the train
ratio keeps its meaning as a share: the train set is the prefix of ``max(1, int(n_train * r))`` qids of the
official train queries shuffled with ``random.Random(seed)``, so train sets stay nested across ratios and no
official test or validation query is ever trained on.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from era_core.errors import ParamsError

_SUM_TOLERANCE = 1e-9


def split_queries(
    qids: Sequence[str],
    train_ratio: float,
    val_ratio: float = 0.1,
    eval_ratio: float = 0.5,
    seed: int = 42,
) -> tuple[list[str], list[str], list[str]]:
    """(train, val, test) qid lists of one task, reproducing ERA's split bit for bit."""
    ratios = {"train_ratio": train_ratio, "val_ratio": val_ratio, "eval_ratio": eval_ratio}
    for name, value in ratios.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ParamsError(f"{name} must be a number in [0, 1], got {value!r}.")
    if train_ratio + val_ratio + eval_ratio > 1.0 + _SUM_TOLERANCE:
        raise ParamsError(
            f"train_ratio + val_ratio + eval_ratio = {train_ratio} + {val_ratio} + {eval_ratio} = "
            f"{train_ratio + val_ratio + eval_ratio} exceeds 1; lower train_ratio (at most "
            f"{1.0 - val_ratio - eval_ratio:g} with these val/eval ratios)."
        )
    if len(qids) == 0:
        raise ParamsError("split_queries got no qids; a task needs at least one labelled query to split.")
    if len(set(qids)) != len(qids):
        raise ParamsError("split_queries got duplicate qids; query ids of a task must be unique.")

    shuffled = list(qids)
    random.Random(seed).shuffle(shuffled)
    n = len(shuffled)
    eval_start = max(1, int(n * (1 - eval_ratio)))
    val_start = min(max(1, int(n * (1 - eval_ratio - val_ratio))), eval_start)
    train_size = max(1, min(int(n * train_ratio), val_start))
    return shuffled[:train_size], shuffled[val_start:eval_start], shuffled[eval_start:]


SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


def predefined_split(qids: Sequence[str], labels: dict[str, str], train_ratio: float,
                     seed: int = 42) -> tuple[list[str], list[str], list[str]]:
    """(train, val, test) of a unit with official split ``labels``: val and test as labelled, train a seeded share."""
    if isinstance(train_ratio, bool) or not isinstance(train_ratio, (int, float)) or not 0.0 <= train_ratio <= 1.0:
        raise ParamsError(f"train_ratio must be a number in [0, 1], got {train_ratio!r}.")
    missing = [q for q in qids if q not in labels]
    bad = sorted({v for v in labels.values() if v not in SPLIT_NAMES})
    if missing or bad:
        raise ParamsError(f"a predefined split must label every query with one of {', '.join(SPLIT_NAMES)}; "
                          f"unlabelled qids {missing[:3]}, unknown labels {bad[:3]}")
    if len(set(qids)) != len(qids):
        raise ParamsError("predefined_split got duplicate qids; query ids of a task must be unique.")
    pool = [q for q in qids if labels[q] == "train"]
    random.Random(seed).shuffle(pool)
    train = pool[:max(1, int(len(pool) * train_ratio))] if pool else []
    return train, [q for q in qids if labels[q] == "val"], [q for q in qids if labels[q] == "test"]


def split_unit(unit, train_ratio: float, val_ratio: float = 0.1, eval_ratio: float = 0.5,
               seed: int = 42) -> dict[str, list[str]]:
    """``{"train", "val", "test"}`` qids of one unit: its official split when it has one, else ERA's ratio split."""
    qids = unit.qids if hasattr(unit, "qids") else unit.labelled_qids()
    if not qids:
        return {"train": [], "val": [], "test": []}
    labels = getattr(unit, "query_split", None)
    if labels:
        train, val, test = predefined_split(qids, labels, train_ratio, seed)
    else:
        train, val, test = split_queries(qids, train_ratio, val_ratio, eval_ratio, seed=seed)
    return {"train": list(train), "val": list(val), "test": list(test)}


def split_units(units: Sequence, train_ratio: float, val_ratio: float = 0.1, eval_ratio: float = 0.5,
                seed: int = 42) -> dict[str, dict[str, list[str]]]:
    """``{unit: {"train", "val", "test"}}`` of every unit (anything with ``name`` and ``qids`` or ``labelled_qids()``).

    A run computes this once and hands it to the trainer and to the scorer alike. The test and validation
    splits do not depend on ``train_ratio`` (module docstring), so a unit nobody trains on gets its test
    split from any ratio; units without labelled queries get empty splits, and a unit with ``query_split``
    labels keeps its official split (``predefined_split``).
    """
    return {u.name: split_unit(u, train_ratio, val_ratio, eval_ratio, seed) for u in units}


def test_split(splits: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    """``{unit: test qids}`` of ``split_units``'s result: the queries every method is scored on."""
    return {name: s["test"] for name, s in splits.items()}


def test_qids(units: Iterable, seed: int, val_ratio: float = 0.1, eval_ratio: float = 0.5) -> dict[str, list[str]]:
    """Each unit's test split: it does not depend on the train ratio (module docstring), so one split serves every
    method, trained or not (a predefined split's test set is its official one)."""
    return test_split(split_units(units, 0.0, val_ratio, eval_ratio, seed))


def minimum_queries(train_ratio: float, val_ratio: float = 0.1, eval_ratio: float = 0.5) -> int:
    """The fewest labelled queries a task needs under these ratios for one training, one validation and one test
    query (the reference's flooring leaves small tasks without a validation query)."""
    for n in range(1, 10_001):
        train, val, test = split_queries([str(i) for i in range(n)], train_ratio, val_ratio, eval_ratio, seed=0)
        if train and val and test:
            return n
    raise ParamsError(f"no task size up to 10,000 queries gives a validation query with val_ratio={val_ratio}; "
                      "raise val_ratio")
