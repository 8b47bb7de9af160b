"""Sharded multi-process encoding (torchrun, gloo on CPU) fills the same cache entry as embed_texts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from era_core.tools import encode
from era_core.cache import embed_texts, entry_dir, plan_entry
from era_core.data import load_tasks
from era_core.encoders import load_encoder
from era_core.errors import ParamsError
from era_core.vectors import query_inputs

ROOT = Path(__file__).resolve().parent.parent
TASK, MODEL, SHARD = "HPO-Synonyms", "minilm-l3-onnx", 16


def torchrun(cache: Path, report: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "era_core.tools.encode", "--model", MODEL, "--benchmark", "offline-smoke", "--tasks", TASK,
           "--role", "query", "--instructions", "forced", "--shard-size", str(SHARD), "--batch-size", "32",
           "--device", "auto", "--threads", "1", "--cache-dir", str(cache), "--report-dir", str(report),
           "--no-progress", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def shards_of(report: Path, key: str) -> dict[int, list[int]]:
    out = {}
    for r in (0, 1):
        data = json.loads((report / f"rank-{r}.json").read_text())
        assert data["world_size"] == 2 and data["device"] == "cpu"
        out[r] = sorted(i for label, i in data[key] if label == f"{TASK}:query")
    return out


def test_two_ranks_resume_and_match_single_process(tmp_path):
    unit = load_tasks("offline-smoke", [TASK], progress=False)[0].units()[0]
    _, texts, instructions = query_inputs(unit)
    n_shards = -(-len(texts) // SHARD)
    assert n_shards >= 6  # several shards per rank

    # 1) a job stopped after two shards per rank (as if killed): shards committed, no manifest
    cache = tmp_path / "cache"
    first = torchrun(cache, tmp_path / "rep1", "--max-shards", "2")
    assert first.returncode != 0, first.stdout + first.stderr
    assert "entries incomplete" in first.stdout + first.stderr
    assert shards_of(tmp_path / "rep1", "encoded") == {0: [0, 2], 1: [1, 3]}
    enc = load_encoder(MODEL, threads=1)
    plan = plan_entry(enc, texts, role="query", instructions=instructions, root=cache, shard_size=SHARD)
    assert sorted(p.name for p in plan.edir.glob("shard-*.json")) == [f"shard-{i:05d}.json" for i in range(4)]
    assert not (plan.edir / "manifest.json").exists()

    # 2) damage one committed shard and drop another's checksum file (a write killed half-way)
    npy2 = plan.edir / "shard-00002.npy"
    npy2.write_bytes(npy2.read_bytes()[:200])
    (plan.edir / "shard-00003.json").unlink()

    # 3) the restarted job redoes exactly the missing/damaged shards, then rank 0 assembles
    second = torchrun(cache, tmp_path / "rep2")
    assert second.returncode == 0, second.stdout + second.stderr
    encoded = shards_of(tmp_path / "rep2", "encoded")
    assert encoded == {0: [i for i in range(2, n_shards) if i % 2 == 0], 1: [i for i in range(3, n_shards) if i % 2 == 1]}
    assert shards_of(tmp_path / "rep2", "skipped") == {0: [0], 1: [1]}
    assert not list(plan.edir.glob("shard-*"))

    # 4) a plain embed_texts is now a hit, byte-identical to a single-process run of the same layout
    again = load_encoder(MODEL, threads=1)
    hit = embed_texts(again, texts, role="query", instructions=instructions, root=cache, shard_size=SHARD,
                      progress=False)
    assert not again.loaded
    single = embed_texts(enc, texts, role="query", instructions=instructions, root=tmp_path / "single",
                         shard_size=SHARD, batch_size=32, progress=False)
    assert enc.loaded and hit.shape == (len(texts), 384)
    assert hit.tobytes() == single.tobytes()
    assert entry_dir(cache, MODEL, plan.key) == plan.edir

    # 5) rerunning a finished job (here as one plain process, no torchrun) encodes nothing
    os.environ.pop("WORLD_SIZE", None)
    code = encode.main(["--model", MODEL, "--benchmark", "offline-smoke", "--tasks", TASK, "--role", "query",
                        "--instructions", "forced", "--shard-size", str(SHARD), "--cache-dir", str(cache), "--report-dir", str(tmp_path / "rep3"),
                        "--device", "cpu", "--no-progress"])
    assert code == 0
    rep = json.loads((tmp_path / "rep3" / "rank-0.json").read_text())
    assert rep["world_size"] == 1 and rep["encoded"] == [] and rep["skipped"] == []


class _Plan:
    def __init__(self, n_shards):
        self.n_shards = n_shards


def test_shard_assignment_is_round_robin_over_all_entries():
    jobs = [encode.Job("a", _Plan(3)), encode.Job("b", _Plan(1)), encode.Job("c", _Plan(2))]
    r0, r1 = encode.assign_shards(jobs, 0, 2), encode.assign_shards(jobs, 1, 2)
    assert r0 == [(0, 0), (0, 2), (2, 0)] and r1 == [(0, 1), (1, 0), (2, 1)]
    assert sorted(r0 + r1) == [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (2, 1)]
    assert encode.assign_shards(jobs, 0, 1) == sorted(r0 + r1)


def test_sample_role_matches_the_alignment_sample_rows():
    from era_core.train import alignment_sample

    unit = load_tasks("offline-smoke", [TASK], progress=False)[0].units()[0]
    texts, instr, role = encode.unit_requests(unit, "sample", encoder=None, instructions="forced", samples_per_task=50, seed=7)
    rows = alignment_sample([len(unit.corpus)], 50, seed=7)[0]
    docs = list(unit.corpus.values())
    assert role == "document" and instr is None and texts == [docs[i] for i in rows] and len(texts) == 50


def test_cli_help_and_argument_errors(capsys, monkeypatch):
    with pytest.raises(SystemExit) as info:
        encode.main(["--help"])
    assert info.value.code == 0 and "torchrun" in capsys.readouterr().out
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert encode.main(["--model", MODEL, "--benchmark", "offline-smoke", "--role", "queries"]) == 2
    assert "allowed values are document, query, sample" in capsys.readouterr().err
    assert encode.main(["--model", MODEL, "--benchmark", "offline-smoke", "--tasks", "Nope"]) == 2
    assert "Nope" in capsys.readouterr().err


def test_device_resolution_without_cuda():
    import torch

    if torch.cuda.is_available():  # pragma: no cover - the CI machines have no GPU
        assert encode.resolve_device("auto", 0) == "cuda:0"
        return
    assert encode.resolve_device("auto", 3) == "cpu"
    assert encode.resolve_device("cpu") == "cpu"
    with pytest.raises(ParamsError, match="no CUDA"):
        encode.resolve_device("cuda", 0)
    with pytest.raises(ParamsError, match="auto, cpu, cuda"):
        encode.resolve_device("tpu")
