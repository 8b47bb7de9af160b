"""The era command: every subcommand on a tiny BEIR folder, --help, and exit code 2 on bad input."""

from __future__ import annotations

import gzip
import json

import pytest

from era_core.paths import ROOT
from era_core.tools.cli import main
from era_core.io import read_json

WORDS = ["apple", "river", "engine", "violin", "planet", "garden", "castle", "pepper", "rocket", "forest",
         "copper", "lemon", "tiger", "harbor", "marble", "candle", "saddle", "comet", "walnut", "falcon"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "tiny"
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as fh:
        for i, w in enumerate(WORDS):
            fh.write(json.dumps({"_id": f"d{i}", "title": w, "text": f"All about the {w} and its uses."}) + "\n")
    with (folder / "queries.jsonl").open("w") as fh:
        for i, w in enumerate(WORDS):
            fh.write(json.dumps({"_id": f"q{i}", "text": f"tell me about {w}", "instruction": "Find the page"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(20)))
    return folder


def test_every_subcommand_has_help(capsys):
    for cmd in (["--help"], ["train", "--help"], ["eval", "--help"], ["export", "--help"], ["params", "--help"],
                ["encode", "--help"], ["plan", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(cmd)
        assert exc.value.code == 0
        assert "usage" in capsys.readouterr().out.lower()


def test_bad_input_exits_2_with_a_fix(tiny, tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path / "nope"), "--model", "minilm-l6", "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "--data", str(tiny), "--out", str(tmp_path / "o")]) == 2
    assert "exactly one of --adapter" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(tiny), "--query-model", "minilm-l6", "--doc-model", "x", "--mode", "bogus",
              "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_train_eval_export_on_a_tiny_folder(tiny, tmp_path, capsys, one_torch_thread):
    out = tmp_path / "res"
    assert main(["train", "--data", str(tiny), "--query-model", "minilm-l6", "--doc-model", "minilm-l3-onnx",
                 "--train-ratio", "0.4", "--align-epochs", "2", "--label-epochs", "2", "--out", str(out)]) == 0
    run = out  # the run folder itself
    summary = read_json(run / "summary.json")
    assert summary["requested"] == "auto" and summary["method"] == summary["validation"]["chosen"]
    assert (run / "adapter.safetensors").is_file() and "validation nDCG@10" in capsys.readouterr().out
    lines = gzip.decompress((run / "run.trec.gz").read_bytes()).decode().splitlines()
    assert lines and all(len(line.split()) == 6 for line in lines)
    ev = tmp_path / "ev"
    assert main(["eval", "--data", str(tiny), "--adapter", str(run), "--out", str(ev)]) == 0
    zs = tmp_path / "zs"
    assert main(["eval", "--data", str(tiny), "--model", "minilm-l3-onnx", "--out", str(zs)]) == 0
    import ir_measures
    from ir_measures import nDCG

    got = ir_measures.calc_aggregate([nDCG @ 10], ir_measures.read_trec_qrels(str(ev / "qrels.trec")),
                                     ir_measures.read_trec_run(str(ev / "run.trec.gz")))[nDCG @ 10]
    assert got == pytest.approx(read_json(ev / "summary.json")["overall"]["ndcg@10"], abs=1e-9)
    model = tmp_path / "model"
    assert main(["export", str(run), "--out", str(model)]) == 0
    assert (model / "router_config.json").is_file()
    assert main(["plan", "--profile", "smoke"]) == 0
    assert main(["params", "check", str(ROOT / "params" / "smoke" / "03_training.yaml"), "03_training"]) == 0
    assert main(["params", "show", "03_training"]) == 0 and "label_lr: float" in capsys.readouterr().out
    assert main(["params", "show", "07_magic"]) == 2 and "known notebooks" in capsys.readouterr().err
