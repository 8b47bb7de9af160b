"""Will an adapter help? The validation comparison, the auto rule, the warning, and export's refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from era_core import api
from era_core.adapter.router import ExportError, export_sentence_transformers
from era_core.errors import ParamsError
from era_core.setup import Setup
from era_core.splits import minimum_queries, split_units
from era_core.train import AlignmentConfig, LabelConfig, TaskEmbeddings, train_alignment
from era_core.validation_choice import AUTO, AUTO_CANDIDATES, comparison

pytestmark = pytest.mark.usefixtures("one_torch_thread")

D_LARGE, D_SMALL = 12, 8
LABEL = LabelConfig(train_ratio=0.4, lr=5e-3, epochs=40, schedule="constant", batch_size=32, top_k=50, patience=5)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def planted(informative: bool, n_tasks: int = 2, nq: int = 80, nd: int = 160):
    """Tasks whose documents live in a latent space z. The small (index) model sees a noisy view of z; the large
    model sees z sharply (``informative``) or pure noise, independent of z (an uninformative query model).
    Returns the tasks and Phase 1 pairs (large vs small document vectors)."""
    m = np.random.default_rng(7).normal(size=(D_SMALL, D_LARGE))
    tasks, xs, ys = [], [], []
    for t in range(n_tasks):
        r = np.random.default_rng(100 + t)
        z_docs = r.normal(size=(nd, D_LARGE))
        pos = r.integers(0, nd, size=nq)
        z_q = z_docs[pos] + 0.3 * r.normal(size=(nq, D_LARGE))
        large_q = z_q if informative else r.normal(size=(nq, D_LARGE))
        large_docs = z_docs if informative else r.normal(size=(nd, D_LARGE))
        qids, doc_ids = [f"t{t}-q{i}" for i in range(nq)], [f"t{t}-d{i}" for i in range(nd)]
        docs_small = _unit(z_docs @ m.T)
        tasks.append(TaskEmbeddings(name=f"t{t}", domain="web", qids=qids,
                                    qrels={q: {doc_ids[p]: 1} for q, p in zip(qids, pos)}, doc_ids=doc_ids,
                                    q_large=_unit(large_q), q_small=_unit(z_q @ m.T + 0.9 * r.normal(size=(nq, D_SMALL))),
                                    docs_small=docs_small))
        xs.append(_unit(large_docs))
        ys.append(docs_small)
    return tasks, np.concatenate(xs), np.concatenate(ys)


def _phase1(x: np.ndarray, y: np.ndarray):
    n = int(0.9 * len(x))
    return train_alignment(x[:n], y[:n], x[n:], y[n:], AlignmentConfig(init="ridge"), progress=False).adapter


SETUP = Setup("planted", ("t0", "t1"), large_model="fake-large", small_model="fake-small", progress=False)


@pytest.mark.parametrize("informative", [False, True])
def test_auto_never_keeps_an_adapter_below_no_adapter_and_picks_the_large_model_when_it_helps(informative):
    tasks, x, y = planted(informative)
    trained, comp = api.compare(SETUP, tasks, AUTO, label=LABEL, phase1=_phase1(x, y))
    assert set(trained) == set(AUTO_CANDIDATES) == {r.method for r in comp.rows}
    kept = next(r for r in comp.rows if r.method == comp.chosen)
    assert kept.ndcg10 >= comp.baseline and comp.warning is None
    assert round(kept.ndcg10, 4) == max(round(r.ndcg10, 4) for r in comp.rows)
    era = next(r for r in comp.rows if r.method == "era")
    if informative:
        # A sharp query model: ERA beats the index model's own noisy queries, and auto keeps a large-model path.
        assert era.delta > 0.05 and comp.chosen in ("era", "alignment_only", "fused")
    else:
        # Noise for queries: ERA is far below the index model alone, and auto keeps a small-model path.
        assert era.delta < -0.05 and comp.chosen in ("no_adapter", "small_adapter")
    # The comparison is on validation queries only, and travels with every trained adapter.
    splits = split_units(tasks, LABEL.train_ratio, LABEL.val_ratio, LABEL.eval_ratio, LABEL.split_seed)
    assert comp.n_val_queries == sum(len(s["val"]) for s in splits.values())
    assert trained[comp.chosen].meta["validation"]["chosen"] == comp.chosen
    # fit's default is auto, and returns the same choice
    assert api.fit(SETUP, tasks, label=LABEL, phase1=_phase1(x, y)).method == comp.chosen


def test_an_explicit_mode_below_no_adapter_is_kept_with_a_loud_warning_and_export_refuses_it(tmp_path):
    tasks, x, y = planted(informative=False)
    trained, comp = api.compare(SETUP, tasks, "era", label=LABEL, phase1=_phase1(x, y))
    assert set(trained) == {"no_adapter", "era"} and comp.chosen == "era"
    assert comp.warning is not None and "below the index model with no adapter" in comp.warning
    assert "no_adapter" in comp.warning  # it names the better option
    assert trained["era"].meta["validation"]["warning"] == comp.warning
    with pytest.raises(ExportError, match="refusing to export.*--force"):
        export_sentence_transformers(trained["era"], tmp_path / "m")


def test_the_rule_breaks_ties_towards_the_cheaper_query_path():
    tied = comparison({"no_adapter": 0.5, "small_adapter": 0.6, "era": 0.60001, "fused": 0.6}, AUTO, 10)
    assert tied.chosen == "small_adapter" and tied.best.method == "small_adapter"
    clear = comparison({"no_adapter": 0.5, "small_adapter": 0.6, "era": 0.61, "fused": 0.6}, AUTO, 10)
    assert clear.chosen == "era" and "era has the best validation nDCG@10 (0.6100, +0.1100" in clear.reason
    nothing = comparison({"no_adapter": 0.5, "small_adapter": 0.45, "era": 0.3}, AUTO, 10)
    assert nothing.chosen == "no_adapter" and "none is kept" in nothing.reason and nothing.warning is None
    asked = comparison({"no_adapter": 0.5, "era": 0.3}, "era", 10)
    assert asked.chosen == "era" and asked.warning.startswith("the era adapter scores 0.3000")
    table = clear.table().splitlines()
    assert table[1].split() == ["method", "nDCG@10", "vs", "none"] and table[2].split()[0] == "era"
    assert json.loads(json.dumps(clear.as_dict()))["rows"][0] == {"method": "no_adapter", "ndcg@10": 0.5,
                                                                 "delta_vs_no_adapter": 0.0}


def test_no_adapter_is_the_index_model_alone():
    tasks, _, _ = planted(informative=True)
    none = api.fit(SETUP, tasks, "no_adapter")
    assert none.query_model == "fake-small"  # its queries go through the index model
    assert api.evaluate(none, tasks).summary() == api.evaluate(None, tasks).summary()


def test_minimum_queries_is_the_smallest_task_that_splits_three_ways():
    from era_core.splits import split_queries

    for ratio in (0.1, 0.4):
        need = minimum_queries(ratio)
        assert all(split_queries([str(i) for i in range(need)], ratio, seed=s)[1] for s in range(3))
        assert not all(split_queries([str(i) for i in range(need - 1)], ratio, seed=0))


def test_era_train_refuses_unusable_user_data_before_any_encoding(tmp_path, capsys, monkeypatch):
    from era_core.tools.cli import main

    monkeypatch.setattr(api, "embed", lambda *a, **k: pytest.fail("encoded data that should have been refused"))
    folder = tmp_path / "d"
    (folder / "qrels").mkdir(parents=True)

    def write(n_queries: int, empty_doc: bool = False) -> None:
        docs = [{"_id": f"d{i}", "text": "" if (empty_doc and i == 1) else f"doc {i}"} for i in range(5)]
        (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
        (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"q {i}"}) + "\n"
                                                      for i in range(n_queries)))
        (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"q{i}\td{i % 5}\t1\n" for i in range(n_queries)))

    args = ["train", "--data", str(folder), "--query-model", "minilm-l6", "--doc-model", "minilm-l3-onnx",
            "--out", str(tmp_path / "o")]
    write(3)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "has 3 labelled queries" in err and f"needs at least {minimum_queries(0.4)}" in err
    write(30, empty_doc=True)
    assert main(args) == 2 and "empty text(s), e.g. document 'd1'" in capsys.readouterr().err
    write(30)
    with open(folder / "qrels" / "test.tsv", "a") as fh:
        fh.write("q0\td99\t1\n")  # a label naming a document that does not exist
    assert main(args) == 2 and "'d99' is not in corpus.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_era_train_prints_the_comparison_and_records_it(tmp_path, capsys, monkeypatch):
    """The CLI on planted vectors (no encoders): the table, the kept method, summary.json and the model card."""
    from era_core.tools import cli

    tasks, x, y = planted(informative=False)
    folder = tmp_path / "d"
    (folder / "qrels").mkdir(parents=True)
    te = tasks[0]
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": d}) + "\n" for d in te.doc_ids))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": q}) + "\n" for q in te.qids))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{next(iter(te.qrels[q]))}\t1\n" for q in te.qids))
    renamed = [TaskEmbeddings(**{**te.__dict__, "name": "d"})]
    monkeypatch.setattr(api, "embed", lambda *a, **k: renamed)
    monkeypatch.setattr(api, "phase1", lambda *a, **k: (_phase1(x, y), {}))
    monkeypatch.setattr(cli, "_train_config", lambda args, f: _config_for_planted(args))
    monkeypatch.setattr("era_core.setup.encoder_identity", lambda setup: {"large": {}, "small": {}})
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(folder), "--query-model", "minilm-l6", "--doc-model", "minilm-l3-onnx",
                     "--mode", "era", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "validation nDCG@10 on" in captured.out and "<- kept" in captured.out and "kept era" in captured.out
    assert "era train: WARNING: the era adapter scores" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requested"] == "era" and summary["warning"] and summary["n_train_queries"] > 0
    assert {r["method"] for r in summary["validation"]["rows"]} == {"no_adapter", "era"}
    assert cli.main(["export", str(out), "--out", str(tmp_path / "m")]) == 2
    assert "--force" in capsys.readouterr().err


def _config_for_planted(args):
    from conftest import smoke_config

    return smoke_config(label_lr=LABEL.lr, label_epochs=LABEL.epochs, label_schedule="constant",
                        label_batch_size=LABEL.batch_size, hard_negative_top_k=LABEL.top_k, seed=args.seed)


def test_auto_needs_phase1_and_validation_queries():
    tasks, _, _ = planted(informative=True, n_tasks=1)
    with pytest.raises(ParamsError, match="phase1="):
        api.compare(SETUP, tasks, AUTO, label=LABEL)
    empty_val = {t.name: {"train": t.qids[:10], "val": [], "test": t.qids[10:]} for t in tasks}
    with pytest.raises(ParamsError, match="no validation queries"):
        api.compare(SETUP, tasks, "small_adapter", label=LABEL, splits=empty_val)


def test_a_kept_fused_adapter_is_refused_naming_the_best_adapter_that_exports(tmp_path):
    tasks, x, y = planted(informative=True)
    trained, comp = api.compare(SETUP, tasks, AUTO, label=LABEL, phase1=_phase1(x, y))
    others = {r.method: r.ndcg10 for r in comp.rows if r.method != "fused"}
    best = max(others, key=others.get)
    with pytest.raises(ExportError, match=f"the best adapter that exports here is {best} "):
        export_sentence_transformers(trained["fused"], tmp_path / "f")
