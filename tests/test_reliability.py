"""Reliability: bad inputs, SIGKILL while encoding / training / drawing, cache integrity,
NaN/inf, and full disks. Each test checks what the user sees and what is (not) left on disk.

The SIGKILL tests start real Python subprocesses that import this module (for the shared fakes),
kill them with a real ``SIGKILL`` at a point they announce, and then inspect the files.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import era_core.io as eio
from era_core import train as train_mod
from era_core.adapter import LinearAdapter, load_adapter, save_adapter
from era_core.cache import CacheCorruptionWarning, cache_key, embed_texts, entry_dir
from era_core.data import Task
from era_core.errors import EraError, ParamsError, TrainingError
from era_core.paper import runs as runs_module
from era_core.paper.config import Config
from era_core.paper.params import SCHEMAS, validate
from era_core.paper.pool import EmbeddingPool
from era_core.paper.runs import Run, run_job
from era_core.tools.cli import main as era_main
from era_core.train import TaskEmbeddings
from era_core.setup import Setup

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ============================================================================ shared fakes


def fake_vector(text: str, dim: int = 8) -> np.ndarray:
    """A deterministic unit vector per text (seeded by its SHA-256)."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class Killed(Exception):
    """Stands in for a crash inside ``encode`` (the in-process variant of a kill)."""


class SlowEncoder:
    """An encoder that sleeps per call and records what it encoded (for kill and resume tests)."""

    key, dim = "slow", 8

    def __init__(self, delay: float = 0.0, fail_after: int | None = None) -> None:
        self.delay, self.fail_after = delay, fail_after
        self.calls = 0
        self.encoded: list[str] = []

    def cache_fields(self) -> dict:
        return {"model": self.key, "dim": self.dim, "max_length": 16}

    def format_queries(self, queries, instructions):
        return list(queries)

    def encode(self, texts, *, batch_size=32, progress=True):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise Killed(f"killed after {self.calls} calls")
        self.calls += 1
        self.encoded.extend(texts)
        if self.delay:
            time.sleep(self.delay)
        return np.stack([fake_vector(t, self.dim) for t in texts])


TEXTS = [f"passage {i} on subject {i % 4}" for i in range(16)]
SHARD = 2  # 8 shards


def _edir(root: Path, texts=TEXTS) -> Path:
    return entry_dir(root, SlowEncoder.key, cache_key(SlowEncoder().cache_fields(), "document", texts))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def planted_task(name: str, seed: int, nq: int = 30, nd: int = 60, d_in: int = 10, d_out: int = 6) -> TaskEmbeddings:
    """A small learnable retrieval task: queries are noisy copies of their positive document."""
    r = np.random.default_rng(seed)
    m = np.random.default_rng(7).normal(size=(d_out, d_in))
    z_docs = r.normal(size=(nd, d_in))
    pos = r.integers(0, nd, size=nq)
    z_q = z_docs[pos] + 0.3 * r.normal(size=(nq, d_in))
    qids = [f"{name}-q{i}" for i in range(nq)]
    doc_ids = [f"{name}-d{i}" for i in range(nd)]
    return TaskEmbeddings(
        name=name, domain="web", qids=qids, qrels={q: {doc_ids[p]: 1} for q, p in zip(qids, pos)},
        doc_ids=doc_ids, q_large=_unit(z_q), q_small=_unit(z_q @ m.T + 0.3 * r.normal(size=(nq, d_out))),
        docs_small=_unit(z_docs @ m.T),
    )  # fmt: skip


class FixedPool(EmbeddingPool):
    """An EmbeddingPool serving fixed TaskEmbeddings (no data, no encoders)."""

    def __init__(self, embs: list[TaskEmbeddings]) -> None:
        setup = Setup(benchmark="offline-smoke", tasks=tuple(e.name for e in embs), large_model="fake-large",
                         small_model="fake-small", progress=False)
        # Tasks carrying the planted ids, so run keys hash their content like real units.
        units = [Task(name=e.name, domain=e.domain, queries={q: q for q in e.qids}, qrels=e.qrels,
                      corpus={d: d for d in e.doc_ids}) for e in embs]
        super().__init__(setup, units)
        self.embs = embs

    def get(self, instructions: str) -> list[TaskEmbeddings]:
        return self.embs


JOB_CONFIG = Config.from_params({
    **{k: v.default for k, v in SCHEMAS["03_training"].items()},
    "label_epochs": 6, "label_batch_size": 8, "label_lr": 5e-3, "label_schedule": "constant",
    "hard_negative_top_k": 20, "progress": False,
})


def _fake_identity(setup) -> dict:
    return {"large": {"model": setup.large_model}, "small": {"model": setup.small_model}}


def run_tiny_job(results: Path) -> dict:
    """``run_job`` for label_only on two planted tasks (the encoder identity is faked: no model files)."""
    runs_module.encoder_identity = _fake_identity  # run keys and training keys read it there
    pool = FixedPool([planted_task("t0", 0), planted_task("t1", 1)])
    return run_job(Run("in_domain", "label_only", 42, 0.4, "forced", ("t0", "t1")), pool, JOB_CONFIG, Path(results))


TINY_RUN = Path("runs") / "in_domain" / "label_only__forced__train0.4__seed42"


# ---- subprocess bodies (run as `python -c "import test_reliability as R; R.<child>(...)"`)


def child_encode(root: str) -> None:
    """Encode TEXTS slowly, shard by shard, into ``root`` (the parent kills us midway)."""
    embed_texts(SlowEncoder(delay=0.4), TEXTS, root=Path(root), shard_size=SHARD, progress=False)


def child_train(results: str, marker: str) -> None:
    """Run the tiny job with a slow loss; announce (marker file) once Phase 2 has started."""
    torch.set_num_threads(1)
    from era_core.train import label as label_mod

    real = label_mod.infonce_loss

    def slow_loss(*args, **kwargs):
        Path(marker).touch()
        time.sleep(0.3)
        return real(*args, **kwargs)

    label_mod.infonce_loss = slow_loss
    run_tiny_job(Path(results))


def child_figures(results: str, figures: str, marker: str) -> None:
    """Redraw alignment_curves.pdf in a loop; announce after the first complete write."""
    from era_core.paper.report import figure_alignment_curves

    for i in range(10_000):
        figure_alignment_curves(results, figures)
        if i == 0:
            Path(marker).touch()


def _spawn(tmp_path: Path, call: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg",
               PYTHONHASHSEED="0")
    code = f"import test_reliability as R; R.{call}"
    with open(tmp_path / "child.log", "wb") as out:  # the child keeps its own copy of the handle
        return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_until(proc: subprocess.Popen, ready, tmp_path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            log = (tmp_path / "child.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"child exited ({proc.returncode}) before it was killed:\n{log}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError("child never reached the kill point")
        time.sleep(0.01)


def _sigkill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


# ============================================================================ 1. bad parameters


def _defaults(nb: str) -> dict:
    return {k: v.default for k, v in SCHEMAS[nb].items()}


@pytest.mark.parametrize(
    "override, needles",
    [
        ({"val_ratio": -0.1}, ["val_ratio=-0.1", "(0, 1]"]),
        ({"eval_ratio": 1.5}, ["eval_ratio=1.5", "(0, 1]"]),
        ({"hard_negative_margin": 0.0}, ["hard_negative_margin=0.0", "(0, 1]"]),
        ({"device": "tpu"}, ["'tpu'", "cpu, cuda, auto"]),
        ({"dtype": "int8"}, ["'int8'", "float32, float16, bfloat16, auto"]),
        ({"label_schedule": "cosine"}, ["'cosine'", "reference, constant"]),
        ({"instruction_settings": "maybe"}, ["maybe", "native, forced"]),
        ({"label_epochs": 2.5}, ["label_epochs=2.5", "expects int"]),
        ({"in_batch_negatives": "yes"}, ["in_batch_negatives='yes'", "expects bool"]),
        ({"small_model": "tiny-bert"}, ["'tiny-bert'", "minilm-l3-onnx"]),
    ],
)
def test_params_gaps_name_value_and_allowed(override, needles):
    with pytest.raises(ParamsError) as err:
        validate("03_training", {**_defaults("03_training"), **override})
    for needle in needles:
        assert needle in str(err.value)


def test_unknown_notebook_lists_notebooks():
    with pytest.raises(ParamsError, match="known notebooks: 00_quickstart, 01_zero_shot"):
        validate("07_magic", {})


def test_params_cli_fails_with_one_message_and_code_2(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text("label_lr: -1\n")
    assert era_main(["params", "check", str(f), "03_training"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"era params: error: {f}: parameter label_lr=-1") and "Traceback" not in err
    f.write_text("label_lr: 0.001\n")
    assert era_main(["params", "check", str(f), "03_training"]) == 0


# ============================================================================ 2. bad data: adapter files


class _RunsShell:
    """Unpickling this would run ``touch <marker>`` through ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_malicious_pt_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "adapter.pt"
    torch.save({"proj.weight": _RunsShell(marker), "proj.bias": torch.zeros(3)}, evil)
    # The payload is live: an unsafe load does run it (proved on a copy with its own marker).
    probe_marker = tmp_path / "probe"
    probe = tmp_path / "probe.pt"
    torch.save({"proj.weight": _RunsShell(probe_marker)}, probe)
    torch.load(probe, weights_only=False)
    assert probe_marker.exists()

    with pytest.raises(EraError) as err:
        load_adapter(evil)
    msg = str(err.value)
    assert "cannot read adapter" in msg and "plain PyTorch state dict" in msg and str(evil) in msg
    assert not marker.exists()


def test_adapter_with_nan_weights_is_refused(tmp_path):
    a = LinearAdapter(4, 3)
    with torch.no_grad():
        a.proj.weight[1, 2] = float("nan")
    path = save_adapter(a, tmp_path / "a.safetensors")
    with pytest.raises(EraError, match="NaN/inf in proj.weight or proj.bias"):
        load_adapter(path)
    pt = tmp_path / "b.pt"
    torch.save({"proj.weight": torch.zeros(3, 4), "proj.bias": torch.tensor([0.0, float("inf"), 0.0])}, pt)
    with pytest.raises(EraError, match="NaN/inf"):
        load_adapter(pt)


# ============================================================================ 3. interruption (real SIGKILL)


def test_sigkill_during_encoding_resumes_missing_shards_only(tmp_path):
    root = tmp_path / "cache"
    edir = _edir(root)
    proc = _spawn(tmp_path, f"child_encode({str(root)!r})")
    _wait_until(proc, lambda: (edir / "shard-00000.json").is_file(), tmp_path)
    _sigkill(proc)

    # Killed midway: no final array, no manifest, and every committed shard is complete.
    assert not (edir / "embeddings.npy").exists() and not (edir / "manifest.json").exists()
    committed = sorted(int(p.name[6:11]) for p in edir.glob("shard-*.json"))
    assert committed and len(committed) < len(TEXTS) // SHARD
    for i in committed:
        meta = eio.read_json(edir / f"shard-{i:05d}.json")
        data = (edir / f"shard-{i:05d}.npy").read_bytes()
        assert hashlib.sha256(data).hexdigest() == meta["sha256"]
        np.testing.assert_array_equal(np.load(edir / f"shard-{i:05d}.npy"),
                                      np.stack([fake_vector(t) for t in TEXTS[meta["start"]:meta["stop"]]]))
    leftovers = [p.name for p in edir.iterdir() if not p.name.startswith("shard-")]
    assert all(n.startswith(".") and n.endswith(".tmp") for n in leftovers), leftovers
    # A killed assembly leaves a (possibly huge) temp file; the resume must delete it.
    (edir / ".embeddings.npy.killed.tmp").write_bytes(b"\x93NUMPY partial")

    resumed = SlowEncoder()
    out = embed_texts(resumed, TEXTS, root=root, shard_size=SHARD, progress=False)
    missing = [t for i in range(len(TEXTS) // SHARD) if i not in committed for t in TEXTS[i * SHARD:(i + 1) * SHARD]]
    assert resumed.encoded == missing and resumed.calls == len(TEXTS) // SHARD - len(committed)
    assert sorted(p.name for p in edir.iterdir()) == ["embeddings.npy", "manifest.json"]

    clean_root = tmp_path / "clean"
    clean = embed_texts(SlowEncoder(), TEXTS, root=clean_root, shard_size=SHARD, progress=False)
    np.testing.assert_array_equal(out, clean)
    assert (edir / "embeddings.npy").read_bytes() == (_edir(clean_root) / "embeddings.npy").read_bytes()
    hit = SlowEncoder()
    embed_texts(hit, TEXTS, root=root, shard_size=SHARD, progress=False)
    assert hit.calls == 0


def test_sigkill_during_training_writes_nothing_and_rerun_matches(tmp_path, monkeypatch):
    monkeypatch.setattr(runs_module, "encoder_identity", _fake_identity)
    killed = tmp_path / "killed"
    marker = tmp_path / "in_phase2"
    proc = _spawn(tmp_path, f"child_train({str(killed)!r}, {str(marker)!r})")
    _wait_until(proc, marker.exists, tmp_path)
    _sigkill(proc)
    run = killed / TINY_RUN
    assert not run.exists() or list(run.iterdir()) == []
    assert not (killed / "timing").exists()

    again = run_tiny_job(killed)
    reference = run_tiny_job(tmp_path / "uninterrupted")
    assert again == reference
    ref_run = tmp_path / "uninterrupted" / TINY_RUN
    assert sorted(p.name for p in run.iterdir()) == ["adapter.safetensors", "era_meta.json", "per_query.json",
                                                   "qrels.trec", "run.trec.gz", "summary.json"]
    assert (run / "adapter.safetensors").read_bytes() == (ref_run / "adapter.safetensors").read_bytes()
    for name in ("summary.json", "era_meta.json"):  # timings live in results/timing, so these are byte-stable
        assert (run / name).read_bytes() == (ref_run / name).read_bytes(), name
    # A finished run is skipped on rerun: training must not even start.
    monkeypatch.setattr(train_mod, "train_era", lambda *a, **k: pytest.fail("a finished run was retrained"))
    assert run_tiny_job(killed) == reference


def test_run_killed_between_its_writes_is_redone(tmp_path, monkeypatch):
    """Adapter and meta written but no summary (killed before the last write): the rerun redoes it."""
    monkeypatch.setattr(runs_module, "encoder_identity", _fake_identity)
    run = tmp_path / TINY_RUN
    run.mkdir(parents=True)
    save_adapter(LinearAdapter(10, 6), run / "adapter.safetensors")
    eio.write_json(run / "era_meta.json", {"stale": True})
    summary = run_tiny_job(tmp_path)
    assert eio.read_json(run / "summary.json") == summary
    assert "stale" not in eio.read_json(run / "era_meta.json")
    reference = run_tiny_job(tmp_path / "clean")
    assert (run / "adapter.safetensors").read_bytes() == (tmp_path / "clean" / TINY_RUN / "adapter.safetensors").read_bytes()
    assert summary == reference


ALIGNMENT_JSON = {
    "history": [{"epoch": e, "train_loss": 1.0 / (e + 1), "eval_loss": 1.1 / (e + 1)} for e in range(30)],
    "eval_cosine": 0.9, "ridge_eval_cosine": 0.91, "best_epoch": 29, "large_model": "a", "small_model": "b",
}


def _complete_pdf(data: bytes) -> bool:
    return data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")


def test_sigkill_during_figure_writing_leaves_only_complete_pdfs(tmp_path):
    from era_core.paper.report import figure_alignment_curves

    results, figures, marker = tmp_path / "results", tmp_path / "figures", tmp_path / "drawn"
    eio.write_json(results / "alignment.json", ALIGNMENT_JSON)
    reference = figure_alignment_curves(results, tmp_path / "reference").read_bytes()
    assert _complete_pdf(reference)
    proc = _spawn(tmp_path, f"child_figures({str(results)!r}, {str(figures)!r}, {str(marker)!r})")
    _wait_until(proc, marker.exists, tmp_path)
    time.sleep(0.15)  # land somewhere inside a later savefig
    _sigkill(proc)

    names = sorted(p.name for p in figures.iterdir())
    targets = [n for n in names if not n.startswith(".")]
    assert targets == ["alignment_curves.pdf"]
    assert (figures / "alignment_curves.pdf").read_bytes() == reference  # complete and byte-stable
    # Whatever else is there is a temp file of atomic_write, never a target name.
    assert all(n.startswith(".alignment_curves.pdf.") and n.endswith(".tmp") for n in names if n.startswith("."))
    assert oct((figures / "alignment_curves.pdf").stat().st_mode & 0o777) == oct(eio._FILE_MODE)


# ============================================================================ 4. cache integrity


def test_bitflipped_committed_shard_is_reencoded(tmp_path):
    with pytest.raises(Killed):
        embed_texts(SlowEncoder(fail_after=3), TEXTS, root=tmp_path, shard_size=SHARD, progress=False)
    shard = _edir(tmp_path) / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x01
    shard.write_bytes(bytes(data))
    resumed = SlowEncoder()
    with pytest.warns(CacheCorruptionWarning, match=r"shard-00001\.npy is unusable.*sha256"):
        out = embed_texts(resumed, TEXTS, root=tmp_path, shard_size=SHARD, progress=False)
    assert resumed.encoded == TEXTS[2:4] + TEXTS[6:]  # shard 1 again, then the never-committed ones
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in TEXTS]))


def test_unreadable_manifest_is_recomputed(tmp_path):
    embed_texts(SlowEncoder(), TEXTS, root=tmp_path, progress=False)
    manifest = _edir(tmp_path) / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    enc = SlowEncoder()
    with pytest.warns(CacheCorruptionWarning, match="unreadable"):
        out = embed_texts(enc, TEXTS, root=tmp_path, progress=False)
    assert enc.calls == 1
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in TEXTS]))
    assert eio.read_json(manifest)["n"] == len(TEXTS)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), shard_size=st.integers(1, 5), data=st.data())
def test_any_crash_point_resumes_to_the_uninterrupted_result(tmp_path_factory, n, shard_size, data):
    texts = [f"t{i}" for i in range(n)]
    n_shards = -(-n // shard_size)
    crash_after = data.draw(st.integers(0, n_shards - 1))
    root = tmp_path_factory.mktemp("resume")
    with pytest.raises(Killed):
        embed_texts(SlowEncoder(fail_after=crash_after), texts, root=root, shard_size=shard_size, progress=False)
    resumed = SlowEncoder()
    out = embed_texts(resumed, texts, root=root, shard_size=shard_size, progress=False)
    assert resumed.encoded == texts[crash_after * shard_size:]
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in texts]))


# ============================================================================ 6. numerical failures


def test_training_error_in_run_job_writes_no_run_files(tmp_path, monkeypatch):
    monkeypatch.setattr(runs_module, "encoder_identity", _fake_identity)

    def diverges(*args, **kwargs):
        raise TrainingError("Phase 2 (label) loss is nan at epoch 3, step 2; lower the learning rate")

    monkeypatch.setattr(train_mod, "train_era", diverges)
    with pytest.raises(TrainingError, match=r"Phase 2 \(label\) loss is nan at epoch 3, step 2"):
        run_tiny_job(tmp_path)
    run = tmp_path / TINY_RUN
    assert not (run / "summary.json").exists() and not (run / "adapter.safetensors").exists()
    assert not (run / "era_meta.json").exists() and not (tmp_path / "timing").exists()


def test_label_weights_turning_nan_raise_and_write_nothing(tmp_path, monkeypatch):
    """A finite loss with non-finite weights (an inf step) is caught after the epoch."""
    monkeypatch.chdir(tmp_path)
    real_step = torch.optim.AdamW.step

    def poisoned_step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned_step)
    # The loss of the next step is NaN, so whichever check fires first, it is a TrainingError.
    task = planted_task("t0", 0)
    cfg = train_mod.LabelConfig(train_ratio=0.4, epochs=2, batch_size=64, top_k=20, schedule="constant")
    with pytest.raises(TrainingError, match=r"Phase 2 \(label\).*(NaN/inf|nan).*epoch 1"):
        train_mod.train_era([task], "label_only", label_cfg=cfg, progress=False)
    assert list(tmp_path.iterdir()) == []


# ============================================================================ 7. disk full


@settings(max_examples=30, deadline=None)
@given(old=st.binary(max_size=64), new=st.binary(min_size=1, max_size=64), data=st.data())
def test_atomic_write_enospc_keeps_old_file_and_leaves_no_temp(tmp_path_factory, old, new, data):
    folder = tmp_path_factory.mktemp("aw")
    target = folder / "result.json"
    target.write_bytes(old)
    cut = data.draw(st.integers(0, len(new)))

    def full_disk(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(new[:cut])
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(OSError) as err:
        eio.atomic_write(target, full_disk)
    assert err.value.errno == errno.ENOSPC
    assert target.read_bytes() == old
    assert [p.name for p in folder.iterdir()] == ["result.json"]
    eio.atomic_write_bytes(target, new)
    assert target.read_bytes() == new and [p.name for p in folder.iterdir()] == ["result.json"]


def test_atomic_write_gives_normal_permissions(tmp_path):
    path = eio.write_json(tmp_path / "r.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    arr = eio.save_npy(tmp_path / "a.npy", np.zeros(3, dtype=np.float32))
    assert arr.stat().st_mode & 0o777 == 0o666 & ~mask


def test_enospc_while_saving_npy_keeps_old_array(tmp_path, monkeypatch):
    path = eio.save_npy(tmp_path / "x.npy", np.arange(4, dtype=np.float32))
    before = path.read_bytes()
    real_save = np.save

    def full(fh, array, allow_pickle=False):
        fh.write(b"\x93NUMPY")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(OSError, match="No space left"):
        eio.save_npy(path, np.ones(1000, dtype=np.float32))
    monkeypatch.setattr(np, "save", real_save)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


# ============================================================================ 5. determinism of saved adapters


def test_saved_adapter_is_byte_reproducible(tmp_path):
    """safetensors orders metadata through a hash map; save_adapter canonicalises the header."""
    from era_core.adapter import read_adapter_metadata

    torch.manual_seed(0)
    a = LinearAdapter(5, 3)
    meta = {"method": "era", "large_model": "x", "small_model": "y", "query_side": "large", "card": {"k": 1}}
    blobs = set()
    for i in range(6):
        ordered = dict(reversed(meta.items())) if i % 2 else dict(meta)
        blobs.add(save_adapter(a, tmp_path / f"a{i}.safetensors", ordered).read_bytes())
    assert len(blobs) == 1
    back = load_adapter(tmp_path / "a0.safetensors", expected_in_dim=5, expected_out_dim=3)
    assert torch.equal(back.proj.weight, a.proj.weight) and torch.equal(back.proj.bias, a.proj.bias)
    assert read_adapter_metadata(tmp_path / "a0.safetensors")["card"] == '{"k": 1}'
    header_len = int.from_bytes(blobs.pop()[:8], "little")
    assert header_len % 8 == 0
