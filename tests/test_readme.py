"""era_core.tools.readme: generated README blocks from a synthetic results folder, idempotence, missing sources, markers."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from era_core.tools import readme

from era_core.paper import report
from era_core.tools.readme import prose
from era_core.io import read_json, write_json
from test_report import write_results

BLOCK_NAMES = ("headline", "setup", "results", "training", "lodo", "encoder_pairs", "scaling", "ladder", "bench", "runtimes",
               "tolerance")
HEAD = "# Title\n\nHand-written intro with a number 12.5 that stays.\n\n"
TAIL = "\n## Later section\n\nText after the blocks, 3 × 4.\n"


def block(name: str, body: str) -> str:
    return f"<!-- era:{name}:begin -->\n{body}\n<!-- era:{name}:end -->\n"


def make_readme(path: Path, names: tuple[str, ...] = BLOCK_NAMES) -> str:
    text = HEAD + "\nbetween blocks\n\n".join(block(n, f"old {n} text 0.999") for n in names) + TAIL
    path.write_text(text)
    return text


def outside(text: str) -> list[str]:
    """The text outside every block (markers included), to compare byte for byte."""
    parts, pos = [], 0
    for span in readme.find_blocks(text):
        parts.append(text[pos:span.start])
        pos = span.end
    parts.append(text[pos:])
    return parts


def inside(text: str, name: str) -> str:
    span = next(s for s in readme.find_blocks(text) if s.name == name)
    return text[span.start:span.end]


def write_encoder_pairs(results: Path) -> None:
    rows = []
    # registry keys, so the rule can tell a transformer index (L3) from a static one (potion)
    for pair, small, large, era in (("embeddinggemma-300m>minilm-l3-onnx", 0.30, 0.45, 0.41),
                                    ("minilm-l6>minilm-l3-onnx", 0.30, 0.36, 0.33),
                                    ("embeddinggemma-300m>potion-base-8m", 0.10, 0.45, 0.30)):
        for seed in (1, 2):
            for method, ratio, value in (("zero_shot_small", None, small), ("zero_shot_large", None, large),
                                         ("era", 0.4, era), ("small_adapter", 0.4, small + 0.05)):
                rows.append({"pair": pair, "instructions": "native", "seed": seed, "method": method,
                             "train_ratio": ratio, "overall": value, "per_domain": {}})
    write_json(results / "encoder_pairs.json", {"rows": rows})


def write_scaling(results: Path) -> None:
    cells = [{"source": "task_docs", "n_pairs": n, "init": "default", "seed": seed, "eval_cosine": cos + 0.01 * seed,
              "query_cosine": cos - 0.2, "methods": {"alignment_only": {"overall": 0.2}, "era": {"overall": era + 0.01 * seed}}}
             for n, cos, era in ((100, 0.5, 0.30), (200, 0.7, 0.50)) for seed in (1, 2)]
    write_json(results / "alignment_scaling.json", {"train_ratio": 0.4, "cells": cells})


def write_ladder(results: Path) -> None:
    """Two rungs at one width: ERA trails the control at the fitted rung and beats it at the exact map."""
    cells, phase1 = [], []
    for seed in (1, 2):
        for ratio in (0.1, 0.4):
            cells += [{"method": "small_adapter", "rung": None, "train_ratio": ratio, "seed": seed, "ndcg@10": 0.60},
                      {"method": "fused", "rung": None, "train_ratio": ratio, "seed": seed, "ndcg@10": 0.61},
                      {"method": "era", "rung": "n100", "train_ratio": ratio, "seed": seed, "ndcg@10": 0.40},
                      {"method": "era", "rung": "exact", "train_ratio": ratio, "seed": seed,
                       "ndcg@10": 0.62 + 0.01 * seed}]
        phase1 += [{"rung": "n100", "seed": seed, "n_pairs": 100, "eval_cosine": 0.5, "query_cosine": 0.4,
                    "alignment_only": 0.2},
                   {"rung": "exact", "seed": seed, "n_pairs": 500, "eval_cosine": 1.0, "query_cosine": 1.0,
                    "alignment_only": 0.55}]
    write_json(results / "alignment_ladder.json", {
        "setup": {"query_model": "embeddinggemma-300m"}, "rungs": ["n100", "exact"], "train_ratios": [0.1, 0.4],
        "seeds": [1, 2], "widths": [{"k": 64, "phase1": phase1, "cells": cells}]})


def write_bench(results: Path) -> None:
    write_json(results / "bench.json", {
        "quick": False, "section_seconds": {"encode": 300.0, "search": 150.0},
        "encode_vs_st_ratio": 1.74, "encode_fp32_vs_st_ratio": 1.02, "encode_queries_vs_st_ratio": 2.46,
        "encode_cosine_min": 0.99995, "encode_dtype": "bfloat16", "search_vs_numpy_ratio": 6.1,
        "search_vs_faiss_ratio": 0.7, "search_peak_rss_mb_1m": 1563.0, "metrics_vs_pytrec_ratio": 1.48,
        "metrics_max_abs_diff": 0.0, "warm_make_paper_s": 0.007, "zero_shot_cached_s": 0.06,
        "zero_shot_cached_loaded_models": [],
        "encode_gemma_vs_st_ratio": 2.07, "encode_gemma_cosine_min": 0.99992, "encode_gemma_dtype": "cpu-autocast-bf16",
        "encode_gemma_fp32_vs_st_ratio": 1.1, "encode_gemma_queries_vs_st_ratio": 1.99,
        "sections": {"encode_gemma": {"batch_size": 32, "max_length": 128,
                                      "passages": {"era_texts_per_s": 8.13, "st_texts_per_s": 3.93},
                                      "queries": {"era_texts_per_s": 24.0, "st_texts_per_s": 12.1}},
                     "encode": {"batch_size": 32, "max_length": 256, "passages": {"era_texts_per_s": 37.5,
                                                                                  "st_texts_per_s": 21.6}},
                     "st_runtime": {"rule": {"min_relative_throughput": 0.95, "min_cosine": 0.9999}, "models": {
                         "minilm-l6": {"era_precision": "cpu-autocast-bf16", "verdict": {"switch": False, "why": "q"},
                                       "passages": {"st_relative_throughput": 0.961, "cosine_min": 1.0},
                                       "queries": {"st_relative_throughput": 0.784, "cosine_min": 0.99998,
                                                   "padded_tokens": {"real": 7206, "era_core": 9184,
                                                                     "sentence_transformers": 12736}}},
                         "minilm-l3-onnx": {"era_precision": "float32", "st_unavailable": "needs optimum.onnxruntime",
                                            "verdict": {"switch": False, "why": "x"}}}},
                     "search": {"k": 100, "queries": 1000, "sizes": {"a": {"docs": 10000, "vs_numpy_ratio": 6.1,
                                                                           "vs_faiss_ratio": 0.92}}}},
        "environment": {"cpu": "Test CPU 9000", "threads_requested": 2,
                        "threadpools": [{"user_api": "blas", "internal_api": "openblas", "version": "0.3.30"}]},
    })


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    results, figures = write_results(root / "results"), root / "figures"
    write_encoder_pairs(results)
    write_scaling(results)
    write_ladder(results)
    report.make_all(results=results, figures=figures, bar_ratio=0.4, main_instructions="native")
    write_bench(results)
    readme.record_runtime(results, "a quick command", [sys.executable, "-c", "pass"])
    from era_core.tools import tolerance

    tolerance.add_comparison(results / "tolerance.json", tolerance.compare_results(results, results, "same twice"))
    return root


def run(folder: Path, path: Path, *extra: str) -> int:
    return readme.main(["--results", str(folder / "results"), "--figures", str(folder / "figures"),
                        "--root", str(path.parent), "--doc", path.name, *extra])


def test_every_block_is_generated_outside_text_kept_and_second_run_changes_nothing(folder, tmp_path, capsys):
    path = tmp_path / "README.md"
    before = make_readme(path)
    assert run(folder, path) == 0
    after = path.read_text()
    assert outside(after) == outside(before)
    for name in BLOCK_NAMES:
        assert "old " + name not in inside(after, name), name
    results = folder / "results"
    # The main table is the generated Markdown, verbatim, and the figure is linked and copied.
    main_md = (results / "tables" / "main.md").read_text()
    assert main_md in inside(after, "results")
    assert "![nDCG@10 against train ratio](docs/img/ndcg_vs_ratio.png)" in after
    figure = (folder / "figures/ndcg_vs_ratio.png").read_bytes()
    assert (tmp_path / "docs/img/ndcg_vs_ratio.png").read_bytes() == figure
    # Synthetic data: ERA (0.42 + 0.1 r) beats zero-shot small (0.30) and trails zero-shot large (0.45).
    header = [c.strip() for c in main_md.splitlines()[0].split("|")]
    row = next(ln for ln in main_md.splitlines() if ln.startswith("| Zero-shot small")).split("|")
    zs_small = row[header.index("overall")].split()[0]
    summary = inside(after, "results")
    assert f"ERA is above zero-shot small ({zs_small}) at every train ratio" in summary
    assert "ERA is below zero-shot large" in summary and "Stress test, the instruction template forced" in summary
    # synthetic significance: ERA − control = 0.09 > 0.05 at both ratios, so both are significant
    assert "Paired test against the same-model control (Holm-adjusted p < 0.05): ERA is significantly higher at " \
           "ratios 0.1, 0.4." in summary
    assert "3 tasks in 2 domains, 60 labelled queries" in inside(after, "setup")
    training = inside(after, "training")
    assert "hold-out cosine of 0.8700" in training and "ridge reaches 0.8900" in training
    assert "held-out domain's test split" in inside(after, "lodo")
    pairs = inside(after, "encoder_pairs")
    assert "`embeddinggemma-300m>minilm-l3-onnx`: zero-shot large 0.450, +0.150 over small→small" in pairs
    assert "ERA is above the same-model control at ratio 0.4 (+0.060 at 0.4)" in pairs
    assert "at ratio 0.4 ERA closes 0.733 of the zero-shot gap" in pairs           # (0.41 - 0.30) / 0.15
    # the potion pair has the largest gap (+0.350) but a static index, so the rule skips it
    assert "that is `embeddinggemma-300m>minilm-l3-onnx` (+0.150)" in pairs
    assert "the configured default is `big-model>tiny-model`: the rule and the configuration disagree" in pairs
    scaling = inside(after, "scaling")
    assert "mean ± sd over 2 seeds" in scaling
    assert "| task_docs | 200 | default | 0.715 ± 0.007 | 0.500 | 0.200 ± 0.000 | 0.515 ± 0.007 |" in scaling
    control = float(next(ln for ln in main_md.splitlines() if ln.startswith("| Small adapter") and "| 0.4 " in ln)
                    .split("|")[header.index("overall")].split()[0])
    assert f"scores {control:.3f} at this ratio. ERA is above it in {int(0.515 > control) + int(0.315 > control)} of 2" \
        in scaling and "best cell is `task_docs` at 200 pairs (default): 0.515, with hold-out cosine 0.715" in scaling
    ladder = inside(after, "ladder")
    assert "| 64 | n100 | 0.400 | 0.200 | 0.600 | −0.200 ± 0.000 | −0.200 ± 0.000 |" in ladder
    assert "| 64 | exact | 1.000 | 0.550 | 0.600 | +0.035 ± 0.007 | +0.035 ± 0.007 |" in ladder
    assert "only once Phase 1 reproduces the index model's own query vectors almost exactly: query cosine 1.000 or " \
        "more (rung `exact`), by +0.035. At query cosine 0.400 (rung `n100`) it already trails it (−0.200)." \
        in ladder
    bench = inside(after, "bench")
    assert "| 1.74× (37.5 vs 21.6 passages/s); min cosine 0.99995 | ≥ 1.2 | yes |" in bench
    assert "| 0.92× | ≥ 1 | **no** |" in bench  # the headline 0.7 misses its target
    gemma = next(ln for ln in bench.splitlines() if "embeddinggemma-300m passages" in ln)
    assert "2.07× (8.13 vs 3.93 passages/s); min cosine 0.99992" in gemma and gemma.endswith("| yes |")
    assert "queries 1.99× (24 vs 12.1 queries/s)" in bench
    assert "Test CPU 9000" in bench and "openblas 0.3.30" in bench and "7 min 30 s" in bench
    assert ("| sentence-transformers as the runtime of minilm-l6, `cpu-autocast-bf16` on both sides | era_core's encoder, "
            "same texts | 0.961× passages, 0.784× queries; min cosine 0.99998; query batches 12,736 vs 9,184 padded "
            "tokens | ≥ 0.95× on both, cosine ≥ 0.9999 | **no** |") in bench
    assert "| not run: needs optimum.onnxruntime | ≥ 0.95× on both, cosine ≥ 0.9999 | **no** |" in bench
    assert "| a quick command | `" in inside(after, "runtimes")
    # Idempotent: a second run and --check leave every byte as it is.
    assert run(folder, path) == 0 and path.read_text() == after
    assert run(folder, path, "--check") == 0
    assert "up to date" in capsys.readouterr().out
    headline = inside(after, "headline")
    assert "![nDCG@10 against train ratio](docs/img/ndcg_vs_ratio.png)" in headline
    assert "| Zero-shot small: the index model on both sides (no adapter) | " + zs_small + " |" in headline
    assert "significantly above the same-model control at ratios 0.1, 0.4: here the stronger query model pays" \
        in headline


def test_check_exits_1_on_a_stale_block_and_writes_nothing(folder, tmp_path):
    path = tmp_path / "README.md"
    make_readme(path, ("results",))
    run(folder, path)
    stale = path.read_text().replace("What the means show", "What the numbers once showed")
    path.write_text(stale)
    assert run(folder, path, "--check") == 1
    assert path.read_text() == stale
    (tmp_path / "docs/img/ndcg_vs_ratio.png").write_bytes(b"old figure")
    run(folder, path)
    assert run(folder, path, "--check") == 0
    (tmp_path / "docs/img/ndcg_vs_ratio.png").write_bytes(b"old figure")
    assert run(folder, path, "--check") == 1  # a stale figure counts as a change too


def test_missing_source_leaves_its_block_untouched_with_a_warning(folder, tmp_path, capsys):
    results = tmp_path / "folder" / "results"
    shutil.copytree(folder, tmp_path / "folder")
    (results / "encoder_pairs.json").unlink()
    (results / "bench.json").unlink()
    path = tmp_path / "README.md"
    before = make_readme(path)
    assert run(tmp_path / "folder", path) == 0
    after = path.read_text()
    assert inside(after, "encoder_pairs") == inside(before, "encoder_pairs")
    assert inside(after, "bench") == inside(before, "bench")
    assert inside(after, "results") != inside(before, "results")
    err = capsys.readouterr().err
    assert f"block 'encoder_pairs' left as it was: {results / 'encoder_pairs.json'} is missing" in err
    assert f"block 'bench' left as it was: {results / 'bench.json'} is missing" in err and "make bench" in err
    strict = r"block 'encoder_pairs' cannot be generated: .*encoder_pairs\.json is missing"
    with pytest.raises(readme.ReadmeError, match=strict):
        readme.update_doc(tmp_path, Path("README.md"), readme.Context(results, tmp_path / "folder" / "figures"),
                          strict=True)
    assert run(tmp_path / "folder", path, "--strict") == 2


@pytest.mark.parametrize("text, message", [
    ("a\n<!-- era:results:begin -->\nbody\n", r"line 2: <!-- era:results:begin --> has no <!-- era:results:end -->"),
    ("<!-- era:results:end -->\n", r"line 1: <!-- era:results:end --> without a matching begin"),
    ("<!-- era:results:begin -->\n<!-- era:lodo:begin -->\n<!-- era:lodo:end -->\n<!-- era:results:end -->\n",
     r"line 2: <!-- era:lodo:begin --> inside block 'results'"),
    ("<!-- era:results:begin -->\n<!-- era:lodo:end -->\n", r"era:lodo:end --> without a matching begin \(expected "
     r"<!-- era:results:end -->\)"),
    ("<!-- era:nope:begin -->\n<!-- era:nope:end -->\n", r"unknown block 'nope'; known blocks: headline, setup, results"),
    (block("lodo", "x") + block("lodo", "y"), r"block 'lodo' appears twice"),
    ("<!-- era:lodo:begin -->\nx <!-- era:lodo:end -->\n", r"markers must stand on lines of their own"),
])
def test_malformed_markers_give_a_clear_error(folder, tmp_path, text, message):
    path = tmp_path / "README.md"
    path.write_text(text)
    with pytest.raises(readme.ReadmeError, match=message):
        readme.update_doc(tmp_path, Path("README.md"), readme.Context(folder / "results", folder / "figures"))
    assert path.read_text() == text
    assert run(folder, path) == 2


def test_comparison_wording_follows_the_numbers():
    label = "zero-shot large (0.470)"
    mixed = prose.versus({0.1: 0.44, 0.2: 0.47, 0.4: 0.5}, 0.47, label)
    assert mixed == ("above zero-shot large (0.470) at ratio 0.4 (+0.030 at 0.4), level with it at ratio 0.2 "
                     "and below it at ratio 0.1 (−0.030 at 0.1)")
    assert prose.versus({0.1: 0.5, 0.4: 0.6}, {0.1: 0.4, 0.4: 0.5}, "x") == \
        "above x at every train ratio (+0.100 at 0.1, +0.100 at 0.4)"
    # Differences are those of the displayed means: 0.4996 shows as 0.500, 0.4994 as 0.499.
    assert prose.versus({0.4: 0.4996}, 0.4994, "y") == "above y at ratio 0.4 (+0.001 at 0.4)"


def test_runtimes_are_recorded_in_place_and_a_failing_command_is_not(tmp_path):
    results = tmp_path / "results"
    readme.record_runtime(results, "first", [sys.executable, "-c", "pass"])
    readme.record_runtime(results, "second", [sys.executable, "-c", "pass"])
    readme.record_runtime(results, "first", [sys.executable, "-c", "import time; time.sleep(0.2)"])
    entries = read_json(results / "timing" / "runtimes.json")["entries"]
    assert [e["what"] for e in entries] == ["first", "second"]
    assert entries[0]["seconds"] >= 0.2 and entries[0]["command"].endswith("time.sleep(0.2)'")
    with pytest.raises(readme.ReadmeError, match="exited with 3; its time was not recorded"):
        readme.record_runtime(results, "third", [sys.executable, "-c", "raise SystemExit(3)"])
    assert [e["what"] for e in read_json(results / "timing" / "runtimes.json")["entries"]] == ["first", "second"]


def test_the_repository_documents_hold_every_block_once():
    from era_core import paths

    names = [s.name for doc in readme.DOCUMENTS for s in readme.find_blocks((paths.ROOT / doc).read_text())]
    assert sorted(names) == sorted(readme.BLOCKS)
    assert [s.name for s in readme.find_blocks((paths.ROOT / "README.md").read_text())] == ["headline"]


def test_blocks_spread_over_documents_link_the_figure_from_where_they_are(folder, tmp_path):
    (tmp_path / "docs").mkdir()
    make_readme(tmp_path / "README.md", ("headline",))
    make_readme(tmp_path / "docs" / "results.md", ("results", "setup"))
    args = ["--results", str(folder / "results"), "--figures", str(folder / "figures"), "--root", str(tmp_path)]
    assert readme.main([*args, "--doc", "README.md", "--doc", "docs/results.md"]) == 0
    assert "](docs/img/ndcg_vs_ratio.png)" in inside((tmp_path / "README.md").read_text(), "headline")
    assert "](img/ndcg_vs_ratio.png)" in inside((tmp_path / "docs" / "results.md").read_text(), "results")
    assert (tmp_path / "docs" / "img" / "ndcg_vs_ratio.png").is_file()
    make_readme(tmp_path / "docs" / "other.md", ("setup",))
    with pytest.raises(readme.ReadmeError, match="block 'setup' appears in both docs/results.md and docs/other.md"):
        readme.update_docs(tmp_path, [Path("docs/results.md"), Path("docs/other.md")],
                           readme.Context(folder / "results", folder / "figures"))


def test_tolerance_block_shows_measured_and_recorded_comparisons(folder, tmp_path):
    path = tmp_path / "README.md"
    make_readme(path)
    assert run(folder, path) == 0
    block = inside(path.read_text(), "tolerance")
    assert "| same twice | ERA | 0.000 |" in block
    assert "Intel Xeon (AMX)" in block and "byte-identical" in block           # the recorded cross-machine pair
    assert "every method moved by less than its own spread over seeds" in block


def test_headline_names_the_human_labelled_task_and_its_own_numbers(tmp_path, monkeypatch):
    from test_report import SEEDS, score

    from era_core.tools.readme.context import Context
    from era_core.tools.readme.main_blocks import render_headline

    monkeypatch.setattr("era_core.paper.report.load.REAL_TASKS", ("Med1",))  # the synthetic Med1 plays the real task
    results = write_results(tmp_path / "results")
    report.make_all(results=results, figures=tmp_path / "figures", bar_ratio=0.4, main_instructions="native")
    text = render_headline(Context(results, tmp_path / "figures"))
    era = sum(score("era", "Med1", ratio=0.4, seed=s) for s in SEEDS) / len(SEEDS)
    assert "Every task but Med1 is derived" in text and "`Med1 (real)`" in text
    assert f"ERA {prose.fmt3(era)}" in text.split("On it, at train ratio 0.4:")[1]
    monkeypatch.setattr("era_core.paper.report.load.REAL_TASKS", ())
    assert "derived" not in render_headline(Context(results, tmp_path / "figures"))
