"""Tables and figures from synthetic results files: content, bold best entries, determinism, missing inputs."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from era_core.paper import report
from era_core.errors import EraError
from era_core.paper.report import style

TASKS = {"Acad1": "academic", "Acad2": "academic", "Med1": "medical"}
TASK_OFFSET = {"Acad1": 0.00, "Acad2": 0.02, "Med1": -0.05}
N_QUERIES = {"Acad1": 10, "Acad2": 30, "Med1": 20}
SEEDS = (1, 2)
RATIOS = (0.1, 0.4)
BASE = {"zero_shot_small": 0.30, "zero_shot_large": 0.45, "alignment_only": 0.35, "label_only": 0.38,
        "era": 0.42, "small_adapter": 0.33}
METRICS = ["ndcg@1", "ndcg@5", "ndcg@10", "ndcg@20", "ndcg@100", "recall@1", "recall@10", "recall@100", "mrr", "map"]
SMALL, LARGE, EXTRA = "tiny-model", "big-model", "mid-model"

EXPECTED_TABLES = [f"{n}.{e}" for n in ("main", "lodo", "domain_specific") for e in ("csv", "md", "tex")] + [
    "zero_shot.csv", "zero_shot.md", "encoder_pairs.csv", "encoder_pairs.md"]
EXPECTED_FIGURES = ["ndcg_vs_ratio.pdf", "domain_bars.pdf", "instructions.pdf", "lodo.pdf", "domain_transfer.pdf",
                    "alignment_curves.pdf", "cost_quality.pdf", "encoder_pairs_gap.pdf"]
#: Measured query times of the synthetic results (ms/query): they round to 53 and 0.011 at 2 significant figures.
QUERY_MS = {SMALL: 0.011437, LARGE: 53.154, EXTRA: 7.9}
EXPECTED_PNGS = ["ndcg_vs_ratio.png"]  # the README's figure


def score(method: str, task: str, *, ratio: float | None = None, inst: str = "native", seed: int | None = 1,
          all_queries: bool = False) -> float:
    """The synthetic nDCG@10 of one task: simple, known arithmetic the tests can check by hand."""
    v = BASE[method] + TASK_OFFSET[task]
    if method in ("label_only", "era", "small_adapter"):
        v += 0.1 * ratio
    if method == "zero_shot_large" and TASKS[task] == "medical":
        v += 0.05  # so the large model is the best entry of the medical column
    if seed is not None:
        v += 0.003 * seed + (0.01 * (list(TASKS).index(task) + 1) if seed == 2 else 0.0)
    if inst == "forced":
        v -= 0.02
    if all_queries:
        v += 0.005
    return round(v, 6)


def summary_block(values: dict[str, float]) -> dict:
    """A summary block in the experiments' format (macro means over tasks, plus query-weighted)."""
    per_task = {t: {m: min(1.0, v * (1.0 + 0.01 * i)) if m != "ndcg@10" else v for i, m in enumerate(METRICS)}
                for t, v in values.items()}
    domains = sorted({TASKS[t] for t in values})
    per_domain = {d: {m: statistics.fmean(per_task[t][m] for t in values if TASKS[t] == d) for m in METRICS}
                  for d in domains}
    overall = {m: statistics.fmean(per_task[t][m] for t in values) for m in METRICS}
    total = sum(N_QUERIES[t] for t in values)
    weighted = {m: sum(per_task[t][m] * N_QUERIES[t] for t in values) / total for m in METRICS}
    return {"per_task": per_task, "n_queries": {t: N_QUERIES[t] for t in values}, "per_domain": per_domain,
            "overall": overall, "overall_query_weighted": weighted, "task_domain": {t: TASKS[t] for t in values}}


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, indent=2))


def write_results(folder: Path, seeds: tuple[int, ...] = SEEDS) -> Path:
    """Write all five results files for 2 domains, 3 tasks, the given seeds, ratios 0.1/0.4, every method."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for enc, method in ((SMALL, "zero_shot_small"), (LARGE, "zero_shot_large"), (EXTRA, "zero_shot_small")):
        for inst in ("native", "forced"):
            base = {"encoder": enc, "instructions": inst, "train_ratio": None}
            records.append({**base, "scope": "all", "seed": None, **summary_block(
                {t: score(method, t, inst=inst, seed=None, all_queries=True) for t in TASKS})})
            for s in seeds:
                records.append({**base, "scope": "test", "seed": s, **summary_block(
                    {t: score(method, t, inst=inst, seed=s) for t in TASKS})})
    write_json(folder / "zero_shot.json", {
        "setup": {"benchmark": "synthetic", "large_model": LARGE, "small_model": SMALL},
        "models": {SMALL: {"params": 22_000_000, "dim": 384, "role": "small"},
                   LARGE: {"params": 335_000_000, "dim": 1024, "role": "large"},
                   EXTRA: {"params": 110_000_000, "dim": 768, "role": "extra"}},
        "records": records})
    (folder / "timing").mkdir(exist_ok=True)
    write_json(folder / "timing" / "zero_shot.json", {"query_ms_per_query": {"native": QUERY_MS, "forced": QUERY_MS}})
    write_json(folder / "alignment.json", {
        "history": [{"epoch": e, "train_loss": 0.9 / (1 + 3 * e), "eval_loss": 0.95 / (1 + 2.5 * e)} for e in range(6)],
        "eval_cosine": 0.87, "ridge_eval_cosine": 0.89, "best_epoch": 5, "num_train_texts": 900,
        "num_eval_texts": 100, "in_dim": 1024, "out_dim": 384, "large_model": LARGE, "small_model": SMALL,
        "units": list(TASKS), "config": {"epochs": 5}})

    def run(protocol: str, method: str, ratio: float, inst: str, seed: int, test: dict, proto: dict, **label) -> dict:
        return {"protocol": protocol, "method": method, "seed": seed, "train_ratio": ratio, "instructions": inst,
                "train_units": list(TASKS), "config_key": "k", **label,
                "scopes": {"test": summary_block(test), "protocol": summary_block(proto)}}

    methods = ("era", "label_only", "alignment_only", "small_adapter")
    runs = []
    for inst in ("native", "forced"):
        for s in seeds:
            for r in RATIOS:
                for m in methods:
                    vals = {t: score(m, t, ratio=r, inst=inst, seed=s) for t in TASKS}
                    runs.append(run("in_domain", m, r, inst, s, vals, vals))
    write_json(folder / "training.json", {"setup": {}, "runs": runs})
    write_json(folder / "significance.json", {inst: significance_block(methods) for inst in ("native", "forced")})

    lodo_runs = []
    for d in ("academic", "medical"):
        for s in seeds:
            for m in methods:
                test = {t: score(m, t, ratio=0.4, seed=s) - (0.03 if TASKS[t] == d else 0.0) for t in TASKS}
                proto = {t: v + (0.005 if TASKS[t] == d else 0.0) for t, v in test.items()}
                lodo_runs.append(run("lodo", m, 0.4, "native", s, test, proto, held_out=d))
    write_json(folder / "lodo.json", {"setup": {}, "runs": lodo_runs})

    ds_runs = []
    for d in ("academic", "medical"):
        for s in seeds:
            for m in methods:
                proto = {t: score(m, t, ratio=0.4, seed=s) - (0.0 if TASKS[t] == d else 0.04) for t in TASKS}
                ds_runs.append(run("domain_specific", m, 0.4, "native", s, proto, proto, train_domain=d))
    write_json(folder / "domain_specific.json", {"setup": {}, "runs": ds_runs})
    return folder


def synthetic_difference(method: str, ratio: float | None, baseline: str) -> float:
    """The known mean difference of the synthetic scores (offsets per task and seed cancel in a pair)."""
    def level(m: str) -> float:
        return BASE[m] + (0.1 * ratio if m in ("label_only", "era", "small_adapter") else 0.0)
    return round(level(method) - level(baseline), 6)


def significance_block(methods: tuple[str, ...]) -> dict:
    """significance.json's block for one setting: significant exactly when |difference| > 0.05."""
    rows = [("zero_shot_large", None)] + [(m, r) for m in methods for r in RATIOS]
    comparisons = []
    for m, r in rows:
        for base in report.SIG_BASELINES:
            if base == m or (base == "small_adapter" and r is None):
                continue
            d = synthetic_difference(m, r if r is not None else 0.0, base)
            comparisons.append({"method": m, "train_ratio": r, "baseline": base, "mean_diff": d,
                                "p_value": 0.001 if abs(d) > 0.05 else 0.4, "p_holm": 0.002 if abs(d) > 0.05 else 0.8,
                                "significant": abs(d) > 0.05, "n_queries": 10})
    return {"alpha": 0.05, "n_resamples": 100, "test": "paired randomisation test", "unit": "query",
            "comparisons": comparisons}


#: Encoder-pair study, overall nDCG@10 per seed: (zero-shot small, zero-shot large, ERA at 0.1, ERA at 0.4).
PAIR_SCORES = {1: (0.40, 0.60, 0.45, 0.50), 2: (0.42, 0.58, 0.46, 0.48)}


def write_pairs(folder: Path, pair: str = "big>tiny", scores: dict = PAIR_SCORES) -> None:
    """encoder_pairs.json with one pair, two seeds, zero-shot rows and ERA at two ratios."""
    rows = []
    for seed, (small, large, era1, era4) in scores.items():
        for method, ratio, value in (("zero_shot_small", None, small), ("zero_shot_large", None, large),
                                     ("era", 0.1, era1), ("era", 0.4, era4)):
            rows.append({"pair": pair, "instructions": "native", "seed": seed, "method": method, "train_ratio": ratio,
                         "overall": value, "per_domain": {}})
    write_json(folder / "encoder_pairs.json", {"rows": rows})


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def snapshot(*folders: Path) -> dict[str, bytes]:
    return {str(p.relative_to(f)): p.read_bytes() for f in folders for p in sorted(f.rglob("*")) if p.is_file()
            and p.suffix != ".json"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    results, figures = write_results(root / "results"), root / "figures"
    write_pairs(results)
    written = report.make_all(results=results, figures=figures, bar_ratio=0.4, main_instructions="native")
    return results, figures, written


def test_make_all_writes_every_table_and_figure(built, capsys):
    results, figures, written = built
    for name in EXPECTED_TABLES:
        assert (results / "tables" / name).is_file(), name
    for name in EXPECTED_FIGURES:
        pdf = figures / name
        assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF"), name
    for name in EXPECTED_PNGS:
        assert (figures / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name
    produced = {p.name for files in written.values() for p in files}
    assert produced == set(EXPECTED_TABLES) | set(EXPECTED_FIGURES) | set(EXPECTED_PNGS)
    assert not list((results / "tables").glob(".*.tmp")) and not list(figures.glob(".*.tmp"))


def test_main_csv_columns_methods_and_hand_checked_cell(built):
    rows = read_csv(built[0] / "tables" / "main.csv")
    need = {"method", "train_ratio", "domain", "ndcg@10_mean", "ndcg@10_std", "n_seeds", "instructions", "metric_scope"}
    assert need <= set(rows[0])
    assert {r["method"] for r in rows} == {"zero_shot_small", "zero_shot_large", "alignment_only", "label_only", "era",
                                           "small_adapter"}  # the methods of the synthetic runs
    assert {r["domain"] for r in rows} == {"academic", "medical", "overall", "overall_query_weighted"}
    assert {r["instructions"] for r in rows} == {"native", "forced"} and {r["metric_scope"] for r in rows} == {"test"}

    def cell(method, ratio, domain, inst="native"):
        hits = [r for r in rows if r["method"] == method and r["train_ratio"] == ratio and r["domain"] == domain
                and r["instructions"] == inst]
        assert len(hits) == 1, (method, ratio, domain, hits)
        return hits[0]

    # ERA, ratio 0.4, academic: seed 1 tasks 0.463, 0.483 -> 0.473; seed 2 tasks 0.476, 0.506 -> 0.491.
    c = cell("era", "0.4", "academic")
    assert float(c["ndcg@10_mean"]) == pytest.approx(0.482, abs=1e-6)
    assert float(c["ndcg@10_std"]) == pytest.approx(0.018 / math.sqrt(2), abs=1e-6)
    assert c["n_seeds"] == "2"
    # Query-weighted overall, ERA 0.1, seed 1: (0.433*10 + 0.453*30 + 0.383*20)/60 = 25.58/60; seed 2 adds
    # 0.003 + (0.01*10 + 0.02*30 + 0.03*20)/60 = 0.003 + 1.3/60.
    qw = cell("era", "0.1", "overall_query_weighted")
    assert float(qw["ndcg@10_mean"]) == pytest.approx(25.58 / 60 + (0.003 + 1.3 / 60) / 2, abs=1e-6)
    # Alignment only: one row per domain (no ratio), the two seeds of distinct runs, not 4 runs.
    al = [r for r in rows if r["method"] == "alignment_only" and r["instructions"] == "native" and r["domain"] == "medical"]
    assert len(al) == 1 and al[0]["train_ratio"] == "" and al[0]["n_seeds"] == "2"
    # Zero-shot small is the setup's small model (not the extra model): medical seed 1 0.253, seed 2 0.286.
    zs = cell("zero_shot_small", "", "medical")
    assert float(zs["ndcg@10_mean"]) == pytest.approx((0.253 + 0.286) / 2, abs=1e-6)
    assert cell("zero_shot_small", "", "medical", inst="forced")["n_seeds"] == "2"


def _tex_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text().splitlines()
    body = [ln for ln in lines if ln.endswith(r"\\")]
    split = [[c.strip() for c in ln[:-2].split(" & ")] for ln in body]
    return split[0], split[1:]


def test_latex_booktabs_and_bold_best_per_column(built):
    tex = (built[0] / "tables" / "main.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert tex.count(rule) == 1, rule
    header, rows = _tex_rows(built[0] / "tables" / "main.tex")
    assert header[:2] == ["Method", "Train ratio"]
    assert header[2:] == ["academic", "medical", "overall", report.SIG_COLUMN]
    acad, med = header.index("academic"), header.index("medical")
    bold = {(r[0], r[1]): [i for i, c in enumerate(r) if c.startswith(r"\textbf{")] for r in rows}
    assert acad in bold[("ERA", "0.4")] and med not in bold[("ERA", "0.4")]
    assert med in bold[("Zero-shot large", "")] and acad not in bold[("Zero-shot large", "")]
    assert sum(acad in cols for cols in bold.values()) == 1
    assert r"\textbf{0.482 $\pm$ 0.013}" in tex
    md = (built[0] / "tables" / "main.md").read_text()
    assert "**0.482 ± 0.013**" in md and "Small adapter" in md
    # The views show the main instruction setting only: 2 zero-shot + alignment + 3 methods × 2 ratios.
    assert len(rows) == 9


def test_lodo_and_domain_specific_tables(built):
    lodo = read_csv(built[0] / "tables" / "lodo.csv")

    def val(**eq):
        hits = [r for r in lodo if all(r[k] == v for k, v in eq.items())]
        assert len(hits) == 1, (eq, hits)
        return float(hits[0]["ndcg@10_mean"])

    # ERA in-domain on medical at 0.4: seeds 0.413, 0.446; LODO is 0.03 lower on the test split, +0.005 on all.
    assert val(held_out="medical", method="era", source="in_domain", evaluation="test") == pytest.approx(0.4295)
    assert val(held_out="medical", method="era", source="lodo", evaluation="test") == pytest.approx(0.3995, abs=1e-6)
    assert val(held_out="medical", method="era", source="lodo", evaluation="all") == pytest.approx(0.4045, abs=1e-6)
    assert val(held_out="medical", method="zero_shot_large", source="zero_shot", evaluation="all") == \
        pytest.approx(0.455, abs=1e-6)
    tex = (built[0] / "tables" / "lodo.tex").read_text()
    assert r"\toprule" in tex and r"\textbf{" in tex

    ds = read_csv(built[0] / "tables" / "domain_specific.csv")
    hit = [r for r in ds if r["method"] == "era" and r["train_domain"] == "academic" and r["eval_domain"] == "medical"]
    assert len(hit) == 1 and float(hit[0]["ndcg@10_mean"]) == pytest.approx(0.4295 - 0.04, abs=1e-6)
    assert hit[0]["scope"] == "protocol"
    ref = [r for r in ds if r["method"] == "zero_shot_small" and r["scope"] == "all" and r["eval_domain"] == "medical"]
    assert len(ref) == 1 and float(ref[0]["ndcg@10_mean"]) == pytest.approx(0.255, abs=1e-6)
    assert ref[0]["n_seeds"] == "1" and ref[0]["ndcg@10_std"] == ""


def test_rerun_is_byte_identical_and_pdfs_have_no_timestamp(built, tmp_path):
    results, figures, _ = built
    before = snapshot(results, figures)
    report.make_all(results=results, figures=figures, bar_ratio=0.4, main_instructions="native")
    assert snapshot(results, figures) == before
    # A fresh output folder gives the same bytes too (nothing depends on paths or time).
    other = tmp_path / "figs"
    report.figure_domain_bars(results, other, bar_ratio=0.4)
    assert (other / "domain_bars.pdf").read_bytes() == (figures / "domain_bars.pdf").read_bytes()
    for name in EXPECTED_FIGURES:
        data = (figures / name).read_bytes()
        assert b"CreationDate" not in data and b"ModDate" not in data, name


def _png_chunks(data: bytes) -> list[bytes]:
    """Chunk types of a PNG file, in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kinds.append(data[pos + 4:pos + 8])
        pos += 12 + length
    return kinds


def test_readme_png_is_byte_stable_and_carries_no_metadata(built, tmp_path):
    results, figures, _ = built
    written = report.figure_ndcg_vs_ratio(results, tmp_path / "again")
    assert [p.name for p in written] == ["ndcg_vs_ratio.pdf", "ndcg_vs_ratio.png"]
    png = (tmp_path / "again" / "ndcg_vs_ratio.png").read_bytes()
    assert png == (figures / "ndcg_vs_ratio.png").read_bytes()
    kinds = _png_chunks(png)
    # No Software text, no modification time: nothing but the image and its physical size.
    assert not {b"tEXt", b"iTXt", b"zTXt", b"tIME"} & set(kinds), kinds
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    # Other data give other pixels (the file is not a constant).
    changed = write_results(tmp_path / "other", seeds=(1,))
    report.figure_ndcg_vs_ratio(changed, tmp_path / "other_figs")
    assert (tmp_path / "other_figs" / "ndcg_vs_ratio.png").read_bytes() != png


def test_missing_inputs_raise_clear_errors_and_make_all_reports_skips(tmp_path, capsys):
    results = write_results(tmp_path / "results")
    (results / "lodo.json").unlink()
    (results / "alignment.json").unlink()
    with pytest.raises(EraError, match=r"lodo\.json is missing.*04_lodo"):
        report.lodo_table(results)
    with pytest.raises(EraError, match=r"alignment\.json is missing.*02_alignment"):
        report.figure_alignment_curves(results, tmp_path / "figs")
    written = report.make_all(results=results, figures=tmp_path / "figs")
    out = capsys.readouterr().out
    for name in ("lodo_table", "lodo", "alignment_curves"):
        assert name not in written
        assert f"skipped {name}:" in out
    assert "04_lodo" in out and "02_alignment" in out
    assert "main_table" in written and "domain_transfer" in written
    assert not (tmp_path / "figs" / "lodo.pdf").exists()

    (results / "training.json").unlink()
    with pytest.raises(EraError, match=r"training\.json is missing.*03_training"):
        report.main_table(results)
    assert report.zero_shot_frame(results).loc[(LARGE, "native", "all"), "medical"] == pytest.approx(0.455)


def test_bad_arguments_name_the_allowed_values(built, tmp_path):
    results = built[0]
    with pytest.raises(EraError, match=r"bar_ratio=0\.25 was not trained.*0\.1, 0\.4"):
        report.figure_domain_bars(results, tmp_path, bar_ratio=0.25)
    with pytest.raises(EraError, match=r"main_instructions='maybe'.*native, forced"):
        report.make_all(results=results, figures=tmp_path, main_instructions="maybe")
    with pytest.raises(EraError, match="unknown results kind"):
        report.load_results("nope", results)


def test_single_seed_has_empty_std_and_no_plus_minus(tmp_path):
    results = write_results(tmp_path / "results", seeds=(1,))
    report.main_table(results)
    rows = read_csv(results / "tables" / "main.csv")
    assert {r["n_seeds"] for r in rows} == {"1"} and {r["ndcg@10_std"] for r in rows} == {""}
    assert "±" not in (results / "tables" / "main.md").read_text()
    # ERA 0.4 academic, seed 1 only: 0.473.
    assert "0.473" in (results / "tables" / "main.md").read_text()


def test_lodo_needs_matching_in_domain_runs_and_off_view_works(tmp_path):
    results = write_results(tmp_path / "results")
    lodo = json.loads((results / "lodo.json").read_text())
    for run in lodo["runs"]:
        run["train_ratio"] = 0.3
    write_json(results / "lodo.json", lodo)
    with pytest.raises(EraError, match=r"in-domain label_only run at train_ratio=0\.3.*has only.*0\.4.*03_training"):
        report.lodo_table(results)

    report.main_table(results, main_instructions="forced")
    header, rows = _tex_rows(results / "tables" / "main.tex")
    era = [r for r in rows if r[:2] == ["ERA", "0.4"]][0]
    # Instructions off are 0.02 lower: 0.482 - 0.02 in academic.
    assert era[header.index("academic")].startswith(r"\textbf{0.462")


def test_encoder_pairs_table_deltas_are_against_the_pairs_own_small_model(tmp_path):
    from era_core.io import write_json

    rows = []
    for seed, small, era in ((1, 0.40, 0.50), (2, 0.42, 0.48)):
        rows += [
            {"pair": "L>S", "instructions": "native", "seed": seed, "method": "zero_shot_small", "train_ratio": None,
             "overall": small, "per_domain": {}},
            {"pair": "L>S", "instructions": "native", "seed": seed, "method": "era", "train_ratio": 0.4,
             "overall": era, "per_domain": {}},
        ]
    write_json(tmp_path / "encoder_pairs.json", {"rows": rows})
    df = report.encoder_pairs_frame(tmp_path)
    era = df[df["method"] == "era"].iloc[0]
    assert era["ndcg@10_mean"] == pytest.approx(0.49)
    assert era["delta_mean"] == pytest.approx(((0.50 - 0.40) + (0.48 - 0.42)) / 2)
    assert era["n_seeds"] == 2
    paths_written = report.encoder_pairs_table(tmp_path)
    assert all(p.is_file() for p in paths_written)


def test_main_table_marks_significance_per_baseline(built):
    results, _, _ = built
    md = (results / "tables" / "main.md").read_text()
    assert report.SIG_COLUMN in md.splitlines()[0] and "Holm" in md
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line.strip("|").split("|")[-1].strip()
            for line in md.splitlines()[2:] if line.startswith("|")}

    def expected(method: str, ratio: float | None) -> str:
        marks = []
        for base in report.SIG_BASELINES:
            if base == method:
                marks.append("·")
                continue
            if base == "small_adapter" and ratio is None:
                marks.append("n/a")        # a zero-shot row has no control at its ratio
                continue
            d = synthetic_difference(method, ratio or 0.0, base)
            marks.append(("+" if d > 0 else "−") if abs(d) > 0.05 else "ns")
        return " / ".join(marks)

    assert rows[("ERA", "0.4")] == expected("era", 0.4)
    assert rows[("Embedding Adapter (reference: label only)", "0.1")] == expected("label_only", 0.1)
    assert rows[("Zero-shot large", "")] == expected("zero_shot_large", None)
    assert rows[("Zero-shot small", "")] == "· / n/a / n/a"     # the baselines are not tested against themselves
    tex = (results / "tables" / "main.tex").read_text()
    assert all(line.count("&") == tex.splitlines()[3].count("&") for line in tex.splitlines() if line.endswith("\\\\"))


def test_encoder_pairs_table_has_gap_closed_and_recovered_share(built):
    rows = read_csv(built[0] / "tables" / "encoder_pairs.csv")
    era = [r for r in rows if r["method"] == "era" and r["train_ratio"] == "0.4"]
    assert len(era) == 1
    # Seed 1: (0.50 - 0.40) / (0.60 - 0.40) = 0.5, 0.50 / 0.60; seed 2: 0.06 / 0.16 = 0.375, 0.48 / 0.58.
    assert float(era[0]["gap_closed_mean"]) == pytest.approx((0.5 + 0.375) / 2, abs=1e-6)
    assert float(era[0]["recovered_share_mean"]) == pytest.approx((0.50 / 0.60 + 0.48 / 0.58) / 2, abs=1e-6)
    large = [r for r in rows if r["method"] == "zero_shot_large"][0]
    assert float(large["gap_closed_mean"]) == pytest.approx(1.0) and float(large["recovered_share_mean"]) == 1.0
    md = (built[0] / "tables" / "encoder_pairs.md").read_text()
    assert "gap_closed_mean" in md.splitlines()[0] and "recovered_share_mean" in md.splitlines()[0]


def test_gap_closed_figure_needs_a_gap(tmp_path):
    # The large model is no better than the small one: there is no gap to close, so no figure.
    write_pairs(tmp_path, scores={1: (0.50, 0.45, 0.47, 0.49)})
    df = report.encoder_pairs_seed_frame(tmp_path)
    assert df[df.method == "era"].gap_closed.isna().all()
    with pytest.raises(EraError, match="no trained rows with a zero-shot gap"):
        report.figure_gap_closed(tmp_path, tmp_path / "figs")


def test_query_costs_are_measured_and_rounded_to_two_significant_figures(built, tmp_path):
    results = built[0]
    costs = report.query_costs(results, "native")
    assert costs["zero_shot_small"] == 0.011 and costs["small_adapter"] == 0.011
    assert costs["era"] == costs["zero_shot_large"] == costs["label_only"] == 53.0
    assert costs["fused"] == 53.0  # 53.154 + 0.011437 encodes both queries
    # Times that round alike give identical bytes; a different rounded time gives a different figure.
    pdf = (built[1] / "cost_quality.pdf").read_bytes()
    for ms, same in ((53.42, True), (61.0, False)):
        copy = tmp_path / f"r{ms}"
        write_results(copy)
        timing = {**QUERY_MS, LARGE: ms}
        write_json(copy / "timing" / "zero_shot.json", {"query_ms_per_query": {"native": timing, "forced": timing}})
        again = report.figure_cost_quality(copy, tmp_path / f"f{ms}").read_bytes()
        assert (again == pdf) is same, ms
    (tmp_path / "r61.0" / "timing" / "zero_shot.json").unlink()
    with pytest.raises(EraError, match=r"timing/zero_shot\.json is missing.*01_zero_shot"):
        report.query_costs(tmp_path / "r61.0")


def _capture(monkeypatch) -> list:
    """Keep the figures report draws open (instead of closing them after saving) and return them."""
    figs = []
    real_save = style._save

    def save(fig, path, png=None):
        figs.append(fig)
        monkeypatch.setattr(style.plt, "close", lambda *_: None)
        try:
            return real_save(fig, path, png)
        finally:
            monkeypatch.undo()

    # Every figure is saved through report.style._draw, which looks _save up in report.style.
    monkeypatch.setattr(style, "_save", save)
    return figs


def test_bars_show_the_mean_and_one_sd_over_seeds(built, tmp_path, monkeypatch):
    figs = _capture(monkeypatch)
    report.figure_domain_bars(built[0], tmp_path, bar_ratio=0.4)
    ax = figs[0].axes[0]
    heights = [p.get_height() for p in ax.patches]
    # ERA at 0.4, academic: seeds 0.473 and 0.491 -> mean 0.482, sd 0.018 / sqrt(2).
    assert any(h == pytest.approx(0.482, abs=1e-9) for h in heights)
    sd = 0.018 / math.sqrt(2)
    # Each error bar is one line (cap, bar, cap with NaN breaks): its extent is mean ± sd.
    spans = [(np.nanmin(line.get_ydata()), np.nanmax(line.get_ydata())) for line in ax.lines]
    assert any(lo == pytest.approx(0.482 - sd, abs=1e-9) and hi == pytest.approx(0.482 + sd, abs=1e-9)
               for lo, hi in spans), spans
    assert "sd over seeds" in ax.get_ylabel()


def test_transfer_heatmap_is_annotated_with_the_means(built, tmp_path, monkeypatch):
    figs = _capture(monkeypatch)
    report.figure_domain_transfer(built[0], tmp_path)
    texts = {t.get_text() for ax in figs[0].axes for t in ax.texts}
    # ERA trained and evaluated on academic (protocol scope): seeds 0.473 and 0.491.
    assert "0.482" in texts
    # Trained on academic, evaluated on medical: 0.04 lower than in-domain 0.4295 (seeds 0.413, 0.446).
    assert f"{(0.413 + 0.446) / 2 - 0.04:.3f}" in texts


def test_show_displays_previews_and_leaves_the_pdf_bytes_alone(built, tmp_path, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    results, figures, written = built
    pdf = report.figure_lodo(results, tmp_path / "a")
    before = pdf.read_bytes()
    report.show(pdf, written["main_table"])  # tables among the paths are skipped
    assert len(shown) == 1 and shown[0].data.startswith(b"\x89PNG\r\n\x1a\n")
    assert pdf.read_bytes() == before == (figures / "lodo.pdf").read_bytes()
    with pytest.raises(EraError, match="not drawn in this Python process"):
        report.show(tmp_path / "never.pdf")


def test_show_all_gives_every_figure_a_heading_and_caption(built, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    written = report.make_all(results=built[0], figures=built[1], bar_ratio=0.4)
    report.show_all(written)
    pdfs = [p for files in written.values() for p in files if p.suffix == ".pdf"]
    assert len(shown) == 2 * len(pdfs) == 2 * len(EXPECTED_FIGURES)
    headings = [obj.data for obj in shown[0::2]]
    assert all(isinstance(obj, IPython.display.Image) for obj in shown[1::2])
    for pdf, text in zip(pdfs, headings):
        title, caption = report.CAPTIONS[pdf.stem]
        assert text == f"### {title}\n\n{caption}"


def test_a_human_labelled_task_gets_its_own_column_and_stays_in_its_domain(tmp_path, monkeypatch):
    # The synthetic Med1 plays the real task: its own column beside the domains, and still inside "medical".
    monkeypatch.setattr("era_core.paper.report.load.REAL_TASKS", ("Med1",))
    results = write_results(tmp_path / "results")
    write_pairs(results)
    report.make_all(results=results, figures=tmp_path / "figures", bar_ratio=0.4, main_instructions="native")
    rows = read_csv(results / "tables" / "main.csv")
    own = [r for r in rows if r["method"] == "era" and r["train_ratio"] == "0.4" and r["domain"] == "Med1 (real)"
           and r["instructions"] == "native"]
    want = statistics.fmean(score("era", "Med1", ratio=0.4, seed=s) for s in SEEDS)
    assert len(own) == 1 and float(own[0]["ndcg@10_mean"]) == pytest.approx(want, abs=1e-6)
    medical = [r for r in rows if r["method"] == "era" and r["train_ratio"] == "0.4" and r["domain"] == "medical"
               and r["instructions"] == "native"]
    assert float(medical[0]["ndcg@10_mean"]) == pytest.approx(want, abs=1e-6)  # Med1 is medical's only task
    header = (results / "tables" / "main.md").read_text().splitlines()[0]
    assert header.index("medical") < header.index("Med1 (real)") < header.index("overall")
    assert "Med1 (real)" in (results / "tables" / "zero_shot.md").read_text().splitlines()[0]
    for name in ("lodo.csv", "domain_specific.csv"):  # domain tables stay domain tables
        assert "(real)" not in (results / "tables" / name).read_text()
