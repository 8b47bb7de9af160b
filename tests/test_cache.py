"""Embedding cache: keys, hits without a model, resume, corruption, races, disk-full, NaN."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import era_core.io as eio
from era_core.cache import CacheCorruptionWarning, cache_info, cache_key, embed_texts, entry_dir
from era_core.encoders import format_queries
from era_core.errors import CacheError, ParamsError

TEMPLATE = "Instruct: {instruction}\nQuery: {query}"


class Killed(Exception):
    """Stands in for a process being killed in the middle of an encode."""


class FakeEncoder:
    """Deterministic hash-seeded unit vectors; counts what it is asked to encode."""

    def __init__(self, key="fake", dim=8, extra=None, fail_after=None, nan_in_call=None, delay=0.0):
        self.key, self.dim = key, dim
        self.extra = dict(extra or {})
        self.fail_after, self.nan_in_call, self.delay = fail_after, nan_in_call, delay
        self.calls = 0
        self.encoded: list[str] = []

    def cache_fields(self):
        return {"model": self.key, "dim": self.dim, "query_template": TEMPLATE, "max_length": 16, **self.extra}

    def format_queries(self, queries, instructions):
        return format_queries(queries, instructions, template=TEMPLATE)

    def encode(self, texts, *, batch_size=32, progress=True):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise Killed(f"killed after {self.calls} encode calls")
        self.calls += 1
        self.encoded.extend(texts)
        if self.delay:
            time.sleep(self.delay)
        out = np.stack([fake_vector(t, self.dim) for t in texts])
        if self.nan_in_call == self.calls:
            out[0, 0] = np.nan
        return out


def fake_vector(text: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


TEXTS = [f"document number {i} about topic {i % 3}" for i in range(10)]
EXPECTED = np.stack([fake_vector(t, 8) for t in TEXTS])


# ----------------------------------------------------------------------------- keys


def test_key_changes_with_instruction_max_length_order_and_role():
    fields = FakeEncoder().cache_fields()
    base = cache_key(fields, "query", TEXTS, "find it")
    assert cache_key(dict(fields), "query", list(TEXTS), "find it") == base
    assert cache_key(fields, "query", TEXTS, "find that") != base
    assert cache_key(fields, "query", TEXTS, None) != base
    assert cache_key(fields, "query", TEXTS, ["find it"] * len(TEXTS)) != base
    assert cache_key({**fields, "max_length": 32}, "query", TEXTS, "find it") != base
    assert cache_key(fields, "query", TEXTS[::-1], "find it") != base
    assert cache_key(fields, "document", TEXTS) != cache_key(fields, "query", TEXTS)
    # Length prefixes: moving a boundary between texts is a different request.
    assert cache_key(fields, "document", ["ab", "c"]) != cache_key(fields, "document", ["a", "bc"])
    assert cache_key(fields, "document", ["a\x00", "b"]) != cache_key(fields, "document", ["a", "\x00b"])


scalars = st.one_of(st.integers(-5, 5), st.text(max_size=4), st.booleans(), st.none())


@settings(max_examples=60, deadline=None)
@given(
    fields=st.dictionaries(st.text(min_size=1, max_size=6), scalars, min_size=1, max_size=6),
    texts=st.lists(st.text(max_size=6), min_size=1, max_size=5),
    role=st.sampled_from(["query", "document"]),
    data=st.data(),
)
def test_any_key_field_change_changes_key(fields, texts, role, data):
    key = cache_key(fields, role, texts)
    assert cache_key(dict(fields), role, list(texts)) == key
    name = data.draw(st.sampled_from(sorted(fields)))
    new_value = data.draw(scalars.filter(lambda v: v != fields[name] or type(v) is not type(fields[name])))
    assert cache_key({**fields, name: new_value}, role, texts) != key
    assert cache_key({**fields, name + "x": fields[name]}, role, texts) != key
    changed = list(texts)
    changed[data.draw(st.integers(0, len(texts) - 1))] += "!"
    assert cache_key(fields, role, changed) != key


@settings(max_examples=15, deadline=None)
@given(
    extra=st.dictionaries(st.sampled_from(["pooling", "dtype", "fingerprint"]), st.text(max_size=3), max_size=3),
    change=st.sampled_from(["pooling", "dtype", "fingerprint", "max_length"]),
)
def test_identical_request_hits_and_changed_field_misses(extra, change):
    with tempfile.TemporaryDirectory() as tmp:
        enc = FakeEncoder(extra=extra)
        first = embed_texts(enc, TEXTS, root=tmp, progress=False)
        again = embed_texts(FakeEncoder(extra=extra), TEXTS, root=tmp, progress=False)
        np.testing.assert_array_equal(first, again)
        same = FakeEncoder(extra=extra)
        embed_texts(same, TEXTS, root=tmp, progress=False)
        assert same.calls == 0
        other = FakeEncoder(extra={**extra, change: "changed-value"})
        embed_texts(other, TEXTS, root=tmp, progress=False)
        assert other.calls == 1


# ----------------------------------------------------------------------------- hits and layout


def test_second_call_is_hit_without_model(tmp_path):
    enc = FakeEncoder()
    a = embed_texts(enc, TEXTS, root=tmp_path, progress=False)
    assert enc.calls == 1 and a.dtype == np.float32 and a.shape == (10, 8)
    np.testing.assert_allclose(a, EXPECTED, atol=0)
    fresh = FakeEncoder()
    b = embed_texts(fresh, TEXTS, root=tmp_path, progress=False)
    assert fresh.calls == 0
    np.testing.assert_array_equal(a, b)
    edir = entry_dir(tmp_path, "fake", cache_key(enc.cache_fields(), "document", TEXTS))
    assert sorted(p.name for p in edir.iterdir()) == ["embeddings.npy", "manifest.json"]
    manifest = eio.read_json(edir / "manifest.json")
    assert manifest["n"] == 10 and manifest["dim"] == 8 and manifest["dtype"] == "float32"
    assert manifest["sha256"] == hashlib.sha256((edir / "embeddings.npy").read_bytes()).hexdigest()
    mm = embed_texts(fresh, TEXTS, root=tmp_path, progress=False, mmap=True)
    assert isinstance(mm, np.memmap) and not mm.flags.writeable
    info = cache_info(tmp_path)
    assert len(info) == 1 and info[0]["model"] == "fake" and info[0]["n"] == 10 and info[0]["size"] > 320


def test_empty_texts_give_empty_array(tmp_path):
    out = embed_texts(FakeEncoder(), [], root=tmp_path, progress=False)
    assert out.shape == (0, 8) and out.dtype == np.float32


def test_queries_formatted_documents_never_instructed(tmp_path):
    enc = FakeEncoder()
    q = embed_texts(enc, ["q1", "q2"], role="query", instructions="Find", root=tmp_path, progress=False)
    assert enc.encoded == ["Instruct: Find\nQuery: q1", "Instruct: Find\nQuery: q2"]
    np.testing.assert_array_equal(q[0], fake_vector("Instruct: Find\nQuery: q1", 8))
    per = FakeEncoder()
    embed_texts(per, ["q1", "q2"], role="query", instructions=["A", ""], root=tmp_path, progress=False)
    assert per.encoded == ["Instruct: A\nQuery: q1", "q2"]
    with pytest.raises(ParamsError, match="never instructed"):
        embed_texts(enc, ["d"], role="document", instructions="Find", root=tmp_path, progress=False)
    with pytest.raises(ParamsError, match="role"):
        embed_texts(enc, ["d"], role="passage", root=tmp_path, progress=False)


def test_force_recomputes(tmp_path):
    embed_texts(FakeEncoder(), TEXTS, root=tmp_path, progress=False)
    enc = FakeEncoder()
    out = embed_texts(enc, TEXTS, root=tmp_path, progress=False, force=True)
    assert enc.calls == 1
    np.testing.assert_array_equal(out, EXPECTED)


def test_real_lazy_encoder_hit_does_not_load_model(tmp_path):
    from era_core.encoders import load_encoder

    enc = load_encoder("minilm-l3-onnx", threads=2)
    a = embed_texts(enc, TEXTS[:4], root=tmp_path, progress=False)
    assert enc.loaded and a.shape == (4, 384)
    again = load_encoder("minilm-l3-onnx", threads=2)
    b = embed_texts(again, TEXTS[:4], root=tmp_path, progress=False)
    assert not again.loaded
    np.testing.assert_array_equal(a, b)
    shorter = load_encoder("minilm-l3-onnx", max_length=8)
    embed_texts(shorter, TEXTS[:4], root=tmp_path, progress=False)
    assert shorter.loaded  # a different max_length is a different entry


# ----------------------------------------------------------------------------- resume


def test_killed_encode_resumes_missing_shards_only(tmp_path):
    with pytest.raises(Killed):
        embed_texts(FakeEncoder(fail_after=2), TEXTS, root=tmp_path / "a", shard_size=3, progress=False)
    edir = entry_dir(tmp_path / "a", "fake", cache_key(FakeEncoder().cache_fields(), "document", TEXTS))
    assert sorted(p.name for p in edir.glob("shard-*")) == [
        "shard-00000.json", "shard-00000.npy", "shard-00001.json", "shard-00001.npy"
    ]
    assert not (edir / "manifest.json").exists()
    resumed = FakeEncoder()
    out = embed_texts(resumed, TEXTS, root=tmp_path / "a", shard_size=3, progress=False)
    assert resumed.encoded == TEXTS[6:] and resumed.calls == 2
    clean = embed_texts(FakeEncoder(), TEXTS, root=tmp_path / "b", shard_size=3, progress=False)
    np.testing.assert_array_equal(out, clean)
    np.testing.assert_array_equal(out, EXPECTED)
    assert not list(edir.glob("shard-*"))


# ----------------------------------------------------------------------------- corruption


def _entry(tmp_path: Path) -> Path:
    embed_texts(FakeEncoder(), TEXTS, root=tmp_path, progress=False)
    return entry_dir(tmp_path, "fake", cache_key(FakeEncoder().cache_fields(), "document", TEXTS))


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_damaged_array_detected_and_recomputed(tmp_path, damage):
    npy = _entry(tmp_path) / "embeddings.npy"
    data = bytearray(npy.read_bytes())
    if damage == "truncate":
        npy.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[-7] ^= 0x10
        npy.write_bytes(bytes(data))
    enc = FakeEncoder()
    with pytest.warns(CacheCorruptionWarning, match="embeddings.npy"):
        out = embed_texts(enc, TEXTS, root=tmp_path, progress=False)
    assert enc.calls == 1
    np.testing.assert_array_equal(out, EXPECTED)
    hit = FakeEncoder()
    embed_texts(hit, TEXTS, root=tmp_path, progress=False)
    assert hit.calls == 0


def test_manifest_with_other_fields_is_not_served(tmp_path):
    edir = _entry(tmp_path)
    manifest = eio.read_json(edir / "manifest.json")
    manifest["fields"]["max_length"] = 999
    eio.write_json(edir / "manifest.json", manifest)
    enc = FakeEncoder()
    with pytest.warns(CacheCorruptionWarning, match="does not match"):
        out = embed_texts(enc, TEXTS, root=tmp_path, progress=False)
    assert enc.calls == 1
    np.testing.assert_array_equal(out, EXPECTED)
    assert eio.read_json(edir / "manifest.json")["fields"]["max_length"] == 16


# ----------------------------------------------------------------------------- failures


@pytest.mark.parametrize("failing", ["shard-00000.npy", "embeddings.npy"])
def test_disk_full_fails_cleanly_and_keeps_previous_entry(tmp_path, monkeypatch, failing):
    edir = _entry(tmp_path)
    before = {p.name: p.read_bytes() for p in edir.iterdir()}
    real = eio.atomic_write

    def full_disk(path, writer):
        if Path(path).name == failing:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, writer)

    monkeypatch.setattr(eio, "atomic_write", full_disk)
    with pytest.raises(CacheError) as info:
        embed_texts(FakeEncoder(), TEXTS, root=tmp_path, progress=False, force=True)
    needed = 10 * 8 * 4 + 128
    assert f"{needed:,} bytes" in str(info.value) and failing in str(info.value)
    monkeypatch.setattr(eio, "atomic_write", real)
    assert {p.name: p.read_bytes() for p in edir.iterdir() if not p.name.startswith("shard-")} == before
    assert not [p for p in edir.iterdir() if p.name.endswith(".tmp")]
    hit = FakeEncoder()
    np.testing.assert_array_equal(embed_texts(hit, TEXTS, root=tmp_path, progress=False), EXPECTED)
    assert hit.calls == 0


def test_nan_embeddings_raise_and_write_nothing_for_that_shard(tmp_path):
    with pytest.raises(CacheError) as info:
        embed_texts(FakeEncoder(nan_in_call=2), TEXTS, root=tmp_path, shard_size=4, progress=False)
    msg = str(info.value)
    assert "'fake'" in msg and "shard 1" in msg and "NaN" in msg
    edir = entry_dir(tmp_path, "fake", cache_key(FakeEncoder().cache_fields(), "document", TEXTS))
    assert sorted(p.name for p in edir.glob("shard-*")) == ["shard-00000.json", "shard-00000.npy"]
    assert not (edir / "manifest.json").exists()


# ----------------------------------------------------------------------------- concurrency


def _race_worker(root: str) -> tuple[np.ndarray, int]:
    enc = FakeEncoder(delay=0.5)
    out = embed_texts(enc, TEXTS, root=root, progress=False)
    return np.array(out), enc.calls


def test_two_processes_racing_on_one_key(tmp_path):
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.map(_race_worker, [str(tmp_path)] * 2)
    for arr, _ in results:
        np.testing.assert_array_equal(arr, EXPECTED)
    # The lock lets exactly one of them encode; the other waits and then hits.
    assert sorted(calls for _, calls in results) == [0, 1]
    hit = FakeEncoder()
    embed_texts(hit, TEXTS, root=tmp_path, progress=False)
    assert hit.calls == 0
