"""Reading the results files and turning each run into per-seed headline rows (before any aggregation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from era_core import paths
from era_core.data.offline import REAL_TASKS
from era_core.errors import EraError
from era_core.io import read_json
from era_core.paper.report.vocab import HEADLINE, OVERALL, OVERALL_QW, _domain_key, _method_key, real_column

#: results file of each input kind and the notebook that writes it.
INPUTS = {
    "zero_shot": ("zero_shot.json", "01_zero_shot"),
    "alignment": ("alignment.json", "02_alignment"),
    "training": ("training.json", "03_training"),
    "lodo": ("lodo.json", "04_lodo"),
    "domain_specific": ("domain_specific.json", "05_domain_specific"),
    "encoder_pairs": ("encoder_pairs.json", "07_encoder_pairs"),
    "significance": ("significance.json", "03_training"),
    "timing": ("timing/zero_shot.json", "01_zero_shot"),
}
_REQUIRED_KEYS = {"zero_shot": ("setup", "models", "records"),
                  "alignment": ("history", "eval_cosine", "ridge_eval_cosine"),
                  "encoder_pairs": ("rows",), "significance": (), "timing": ("query_ms_per_query",)}


def load_results(kind: str, results: Path | str = paths.RESULTS) -> dict[str, Any]:
    """Read one results file (``kind`` in :data:`INPUTS`), raising a clear error if it is missing."""
    if kind not in INPUTS:
        raise EraError(f"unknown results kind {kind!r}; allowed values: {', '.join(INPUTS)}")
    name, notebook = INPUTS[kind]
    path = Path(results) / name
    if not path.is_file():
        raise EraError(f"{path} is missing: it is written by notebook {notebook} "
                       f"(run notebooks/{notebook}.ipynb, e.g. with `make paper`, or point `results` at "
                       f"the folder that holds {name})")
    data = read_json(path)
    required = _REQUIRED_KEYS.get(kind, ("runs",))
    missing = [k for k in required if k not in data]
    if missing:
        raise EraError(f"{path} lacks the keys {missing}; it was not written by this version of "
                       f"{notebook}: rerun that notebook")
    return data


def _headline(sb: dict[str, Any], where: str, real_tasks: bool = True) -> dict[str, float]:
    """``{domain|overall|overall_query_weighted: nDCG@10}`` of a summary block, plus each human-labelled task's own
    column (``real_column``) when ``real_tasks``."""
    try:
        row = {d: float(m[HEADLINE]) for d, m in sb["per_domain"].items()}
        if real_tasks:
            row |= {real_column(t): float(sb["per_task"][t][HEADLINE]) for t in REAL_TASKS
                    if t in sb.get("per_task", {})}
        row[OVERALL] = float(sb["overall"][HEADLINE])
        row[OVERALL_QW] = float(sb["overall_query_weighted"][HEADLINE])
    except KeyError as exc:
        raise EraError(f"{where}: summary block lacks {exc} (need per_domain/overall/overall_query_weighted "
                       f"with {HEADLINE!r}); rerun the notebook that wrote it") from None
    return row


def _runs(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    runs = data["runs"]
    if not runs:
        raise EraError(f"{INPUTS[kind][0]} holds no runs; rerun notebook {INPUTS[kind][1]} with at least one method")
    return runs


def _zero_shot_rows(data: dict[str, Any], scope: str) -> list[dict[str, Any]]:
    """Per-seed headline rows of the small and large zero-shot encoders, as methods."""
    setup = data["setup"]
    which = {setup["small_model"]: "zero_shot_small", setup["large_model"]: "zero_shot_large"}
    if len(which) == 1:
        # Same model on both sides: it is both references at once.
        which = {setup["small_model"]: None}
    rows = []
    for i, rec in enumerate(data["records"]):
        if rec["encoder"] not in which or rec["scope"] != scope:
            continue
        methods = [which[rec["encoder"]]] if which[rec["encoder"]] else ["zero_shot_small", "zero_shot_large"]
        for method in methods:
            for dom, v in _headline(rec, f"zero_shot.json record {i}").items():
                rows.append({"method": method, "train_ratio": np.nan, "instructions": rec["instructions"],
                             "domain": dom, "seed": rec["seed"], "value": v})
    found = {r["method"] for r in rows}
    for method in ("zero_shot_small", "zero_shot_large"):
        if method not in found:
            model = setup["small_model" if method == "zero_shot_small" else "large_model"]
            raise EraError(f"zero_shot.json has no {scope!r}-scope record for {method} (encoder {model!r}); "
                           f"rerun 01_zero_shot with that model")
    return rows


def _collapse_alignment_only(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One alignment-only run per (instructions, seed, labels): its test split ignores the ratio."""
    keep: dict[tuple, dict[str, Any]] = {}
    others = []
    for run in sorted(runs, key=lambda r: float(r["train_ratio"])):
        if run["method"] != "alignment_only":
            others.append(run)
            continue
        key = (run["instructions"], run["seed"], run.get("held_out"), run.get("train_domain"))
        keep.setdefault(key, run)
    return others + list(keep.values())


def _same_ratio(a: float, b: float) -> bool:
    return bool(np.isnan(a) and np.isnan(b)) or bool(np.isclose(a, b))


def _training_rows(data: dict[str, Any], scope: str, kind: str = "training") -> list[dict[str, Any]]:
    rows = []
    for i, run in enumerate(_collapse_alignment_only(_runs(data, kind))):
        _method_key(run["method"])
        ratio = np.nan if run["method"] == "alignment_only" else float(run["train_ratio"])
        for dom, v in _headline(run["scopes"][scope], f"{INPUTS[kind][0]} run {i} scope {scope!r}").items():
            rows.append({"method": run["method"], "train_ratio": ratio, "instructions": run["instructions"],
                         "domain": dom, "seed": run["seed"], "value": v})
    return rows


def _lodo_rows(results: Path | str) -> list[dict[str, Any]]:
    """Per-seed rows of :func:`lodo_frame` (before aggregation)."""
    lodo = load_results("lodo", results)
    zs = load_results("zero_shot", results)
    tr = load_results("training", results)
    rows: list[dict[str, Any]] = []
    settings = set()
    for i, run in enumerate(_collapse_alignment_only(_runs(lodo, "lodo"))):
        d = run.get("held_out")
        if d is None:
            raise EraError(f"lodo.json run {i} lacks 'held_out'; rerun 04_lodo")
        ratio = np.nan if run["method"] == "alignment_only" else float(run["train_ratio"])
        settings.add((run["method"], ratio, run["instructions"]))
        for ev, scope in (("test", "test"), ("all", "protocol")):
            vals = _headline(run["scopes"][scope], f"lodo.json run {i} scope {scope!r}")
            if d not in vals:
                raise EraError(f"lodo.json run {i}: held-out domain {d!r} was not scored; rerun 04_lodo")
            rows.append({"held_out": d, "method": run["method"], "source": "lodo", "evaluation": ev,
                         "train_ratio": ratio, "instructions": run["instructions"], "seed": run["seed"],
                         "value": vals[d]})
    held = sorted({r["held_out"] for r in rows}, key=_domain_key)
    in_domain = _training_rows(tr, "test")
    for method, ratio, inst in sorted(settings, key=lambda s: (_method_key(s[0]), str(s[1]), s[2])):
        match = [r for r in in_domain if r["method"] == method and r["instructions"] == inst
                 and _same_ratio(r["train_ratio"], ratio)]
        if not match:
            have = sorted({(r["train_ratio"], r["instructions"]) for r in in_domain if r["method"] == method})
            raise EraError(f"lodo needs the in-domain {method} run at train_ratio={ratio}, instructions={inst!r} "
                           f"from training.json, which has only {have or 'none'}; rerun 03_training with "
                           f"that ratio and instruction setting")
        for r in match:
            if r["domain"] in held:
                rows.append({**r, "held_out": r["domain"], "source": "in_domain", "evaluation": "test"})
    for inst in sorted({s[2] for s in settings}):
        for scope, ev in (("test", "test"), ("all", "all")):
            for r in _zero_shot_rows(zs, scope):
                if r["instructions"] == inst and r["domain"] in held:
                    rows.append({**r, "held_out": r["domain"], "source": "zero_shot", "evaluation": ev})
    for r in rows:
        r.pop("domain", None)
    return rows
