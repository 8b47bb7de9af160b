"""Embedding cache: keys, hits without a model, resume, corruption, races, disk-full, NaN."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing as mp
import os
import tempfile
import time
import warnings
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


# ----------------------------------------------------------------------------- sampled integrity

import era_core.cache.integrity as cache_mod  # noqa: E402  (where the sampled checks read these)
from era_core.cache import clear_cache, lookup_entry, plan_entry  # noqa: E402

MANY = [f"row {i}" for i in range(40)]
MANY_EXPECTED = np.stack([fake_vector(t, 8) for t in MANY])


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 2 rows (64 bytes at dim 8), 4 sampled: 40 rows give 20 blocks, 16 of them unsampled."""
    monkeypatch.setattr(cache_mod, "SAMPLE_BLOCK_BYTES", 64)
    monkeypatch.setattr(cache_mod, "SAMPLE_BLOCKS", 4)


@pytest.fixture
def hashed(monkeypatch):
    """Every (offset, length) the cache hashes, through its one hashing function."""
    calls: list[tuple[int, int]] = []
    real = cache_mod._hash_range

    def counting(path, offset, length):
        calls.append((offset, length))
        return real(path, offset, length)

    monkeypatch.setattr(cache_mod, "_hash_range", counting)
    return calls


def _many_entry(root: Path) -> Path:
    embed_texts(FakeEncoder(), MANY, root=root, progress=False)
    return entry_dir(root, "fake", cache_key(FakeEncoder().cache_fields(), "document", MANY))


def _header_len(npy: Path) -> int:
    # Independent of the cache's parser: the .npy v1 header length is a little-endian u16 at byte 8.
    raw = npy.read_bytes()
    assert raw[:6] == b"\x93NUMPY" and raw[6] == 1
    return 10 + int.from_bytes(raw[8:10], "little")


def _flip_keeping_mtime(npy: Path, row: int, header: int) -> None:
    """Flip one bit inside ``row`` and put the old mtime back (as silent disk damage would)."""
    st = npy.stat()
    with open(npy, "r+b") as fh:
        fh.seek(header + row * 8 * 4 + 5)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x04]))
    os.utime(npy, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert npy.stat().st_mtime_ns == st.st_mtime_ns


def _blocks(edir: Path) -> tuple[set[int], set[int]]:
    record = eio.read_json(edir / "manifest.json")["integrity"]
    assert record["block_rows"] == 2
    sampled = {b for b, _ in record["blocks"]}
    return sampled, set(range(20)) - sampled


def test_write_records_first_last_and_keyed_blocks(tmp_path, small_blocks):
    edir = _many_entry(tmp_path)
    record = eio.read_json(edir / "manifest.json")["integrity"]
    npy = edir / "embeddings.npy"
    raw, header = npy.read_bytes(), _header_len(npy)
    assert record["file_size"] == len(raw) == header + 40 * 8 * 4
    assert record["mtime_ns"] == npy.stat().st_mtime_ns and record["data_offset"] == header
    sampled = [b for b, _ in record["blocks"]]
    assert len(sampled) == 4 and sampled[0] == 0 and sampled[-1] == 19
    for b, digest in record["blocks"]:
        start = header + b * 2 * 32
        assert digest == hashlib.sha256(raw[start:start + 64]).hexdigest()
    # Keyed: another entry (other texts, so another key) samples other middle blocks.
    other = [t + "!" for t in MANY]
    embed_texts(FakeEncoder(), other, root=tmp_path, progress=False)
    odir = entry_dir(tmp_path, "fake", cache_key(FakeEncoder().cache_fields(), "document", other))
    again = [b for b, _ in eio.read_json(odir / "manifest.json")["integrity"]["blocks"]]
    assert again[0] == 0 and again[-1] == 19 and again != sampled


def test_bitflip_in_sampled_block_caught_on_normal_hit(tmp_path, small_blocks, hashed):
    edir = _many_entry(tmp_path)
    npy = edir / "embeddings.npy"
    sampled, _ = _blocks(edir)
    middle = sorted(sampled - {0, 19})[0]
    _flip_keeping_mtime(npy, 2 * middle + 1, _header_len(npy))
    hashed.clear()
    enc = FakeEncoder()
    with pytest.warns(CacheCorruptionWarning, match=f"sampled row block {middle} fails"):
        out = embed_texts(enc, MANY, root=tmp_path, progress=False)
    assert enc.calls == 1
    np.testing.assert_array_equal(out, MANY_EXPECTED)


def test_bitflip_in_unsampled_block_missed_by_sample_caught_by_full_and_mtime(tmp_path, small_blocks):
    edir = _many_entry(tmp_path)
    npy = edir / "embeddings.npy"
    header = _header_len(npy)
    _, unsampled = _blocks(edir)
    row = 2 * sorted(unsampled)[len(unsampled) // 2]
    _flip_keeping_mtime(npy, row, header)

    # The documented blind spot: the sampled check serves the damaged row.
    hit = FakeEncoder()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheCorruptionWarning)
        served = embed_texts(hit, MANY, root=tmp_path, progress=False)
    assert hit.calls == 0
    assert not np.array_equal(served[row], MANY_EXPECTED[row])
    np.testing.assert_array_equal(np.delete(served, row, 0), np.delete(MANY_EXPECTED, row, 0))

    # verify="full" catches it, through embed_texts and through lookup_entry.
    plan = plan_entry(FakeEncoder(), MANY, root=tmp_path)
    with pytest.warns(CacheCorruptionWarning, match="sha256"):
        assert lookup_entry(plan, verify="full") is None
    full = FakeEncoder()
    with pytest.warns(CacheCorruptionWarning, match="sha256"):
        out = embed_texts(full, MANY, root=tmp_path, progress=False, verify="full")
    assert full.calls == 1
    np.testing.assert_array_equal(out, MANY_EXPECTED)

    # After a write that changes the mtime, the normal (sampled) hit does the full check.
    _flip_keeping_mtime(npy, row, header)
    st = npy.stat()
    os.utime(npy, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    touched = FakeEncoder()
    with pytest.warns(CacheCorruptionWarning, match="sha256"):
        out = embed_texts(touched, MANY, root=tmp_path, progress=False)
    assert touched.calls == 1
    np.testing.assert_array_equal(out, MANY_EXPECTED)


def test_truncation_caught_by_size_check_without_hashing(tmp_path, small_blocks, hashed):
    edir = _many_entry(tmp_path)
    npy = edir / "embeddings.npy"
    st = npy.stat()
    os.truncate(npy, st.st_size - 4)
    os.utime(npy, ns=(st.st_atime_ns, st.st_mtime_ns))
    hashed.clear()
    plan = plan_entry(FakeEncoder(), MANY, root=tmp_path)
    with pytest.warns(CacheCorruptionWarning, match=f"{st.st_size - 4} bytes, the manifest recorded {st.st_size}"):
        assert lookup_entry(plan) is None
    assert hashed == []
    enc = FakeEncoder()
    with pytest.warns(CacheCorruptionWarning, match="truncated"):
        out = embed_texts(enc, MANY, root=tmp_path, progress=False)
    assert enc.calls == 1
    np.testing.assert_array_equal(out, MANY_EXPECTED)


class IndexEncoder:
    """Fast vectorised vectors for many rows ('t<i>' -> a row derived from i)."""

    key, dim = "index", 64

    def cache_fields(self):
        return {"model": self.key, "dim": self.dim}

    def format_queries(self, queries, instructions):
        return list(queries)

    def encode(self, texts, *, batch_size=32, progress=True):
        idx = np.array([int(t[1:]) for t in texts], dtype=np.float32)
        return (idx[:, None] * 0.001 + np.arange(self.dim, dtype=np.float32)[None, :]).astype(np.float32)


def test_sampled_hit_reads_a_bounded_number_of_bytes(tmp_path, hashed):
    # Default block size (1 MiB) and count (8): a 16 MiB array must be checked by reading at most
    # 8 MiB plus the header, and the full check reads it all.
    n = 16 * (cache_mod.SAMPLE_BLOCK_BYTES // (64 * 4))
    texts = [f"t{i}" for i in range(n)]
    embed_texts(IndexEncoder(), texts, root=tmp_path, shard_size=n, progress=False)
    npy = entry_dir(tmp_path, "index", cache_key(IndexEncoder().cache_fields(), "document", texts)) / "embeddings.npy"
    size = npy.stat().st_size
    assert size == _header_len(npy) + 16 * (1 << 20)

    hashed.clear()
    out = embed_texts(IndexEncoder(), texts, root=tmp_path, progress=False, mmap=True, lookup_only=True)
    assert out is not None and out.shape == (n, 64)
    read = sum(length for _, length in hashed)
    assert 0 < read <= 8 * (1 << 20) + _header_len(npy)
    assert len(hashed) == 1 + 8  # the header and eight blocks, each read once

    hashed.clear()
    embed_texts(IndexEncoder(), texts, root=tmp_path, progress=False, mmap=True, lookup_only=True, verify="full")
    assert sum(length for _, length in hashed) >= size


def test_old_manifest_without_block_digests_is_verified_fully_once_then_sampled(tmp_path, small_blocks, hashed):
    edir = _many_entry(tmp_path)
    npy = edir / "embeddings.npy"
    manifest = eio.read_json(edir / "manifest.json")
    written = manifest.pop("integrity")
    eio.write_json(edir / "manifest.json", manifest)  # as the previous writer left it

    hashed.clear()
    enc = FakeEncoder()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheCorruptionWarning)
        out = embed_texts(enc, MANY, root=tmp_path, progress=False)
    assert enc.calls == 0
    np.testing.assert_array_equal(out, MANY_EXPECTED)
    assert (0, npy.stat().st_size) in hashed  # the whole file
    upgraded = eio.read_json(edir / "manifest.json")
    assert upgraded["integrity"] == written
    assert {k: v for k, v in upgraded.items() if k != "integrity"} == manifest

    hashed.clear()
    embed_texts(FakeEncoder(), MANY, root=tmp_path, progress=False)
    assert sum(length for _, length in hashed) < npy.stat().st_size / 2


def test_old_manifest_with_damage_anywhere_is_recomputed(tmp_path, small_blocks):
    edir = _many_entry(tmp_path)
    npy = edir / "embeddings.npy"
    _, unsampled = _blocks(edir)
    manifest = eio.read_json(edir / "manifest.json")
    del manifest["integrity"]
    eio.write_json(edir / "manifest.json", manifest)
    _flip_keeping_mtime(npy, 2 * min(unsampled), _header_len(npy))
    enc = FakeEncoder()
    with pytest.warns(CacheCorruptionWarning, match="sha256"):
        out = embed_texts(enc, MANY, root=tmp_path, progress=False)
    assert enc.calls == 1
    np.testing.assert_array_equal(out, MANY_EXPECTED)
    assert "integrity" in eio.read_json(edir / "manifest.json")


def test_touched_but_intact_file_is_checked_fully_once_then_sampled(tmp_path, small_blocks, hashed):
    edir = _many_entry(tmp_path)
    npy = edir / "embeddings.npy"
    st = npy.stat()
    os.utime(npy, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # e.g. copied without -p
    hashed.clear()
    hit = FakeEncoder()
    np.testing.assert_array_equal(embed_texts(hit, MANY, root=tmp_path, progress=False), MANY_EXPECTED)
    assert hit.calls == 0 and (0, st.st_size) in hashed
    assert eio.read_json(edir / "manifest.json")["integrity"]["mtime_ns"] == st.st_mtime_ns + 5_000_000_000
    hashed.clear()
    embed_texts(FakeEncoder(), MANY, root=tmp_path, progress=False)
    assert (0, st.st_size) not in hashed


def test_busy_lock_skips_the_record_refresh_but_serves_the_hit(tmp_path, small_blocks):
    from filelock import FileLock

    edir = _many_entry(tmp_path)
    npy = edir / "embeddings.npy"
    st = npy.stat()
    os.utime(npy, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    before = (edir / "manifest.json").read_bytes()
    with FileLock(str(edir) + ".lock"):
        out = lookup_entry(plan_entry(FakeEncoder(), MANY, root=tmp_path))
    np.testing.assert_array_equal(out, MANY_EXPECTED)
    assert (edir / "manifest.json").read_bytes() == before  # no write into an entry without its lock


def test_verify_mode_is_validated(tmp_path):
    with pytest.raises(ParamsError, match="verify must be one of"):
        embed_texts(FakeEncoder(), TEXTS, root=tmp_path, progress=False, verify="none")
    with pytest.raises(ParamsError, match="verify must be one of"):
        lookup_entry(plan_entry(FakeEncoder(), TEXTS, root=tmp_path), verify="partial")


# ----------------------------------------------------------------------------- cache_info / clear_cache


def _populate(root: Path) -> dict[str, tuple]:
    """Three complete entries over two models plus one partial (manifest-less) entry of model a."""
    a, b = FakeEncoder(key="fake-a", dim=8), FakeEncoder(key="fake-b", dim=4)
    embed_texts(a, TEXTS, root=root, progress=False)
    embed_texts(a, ["q1", "q2"], role="query", instructions="Find", root=root, progress=False)
    embed_texts(b, TEXTS[:5], root=root, progress=False)
    with pytest.raises(Killed):
        embed_texts(FakeEncoder(key="fake-a", fail_after=1), MANY, root=root, shard_size=4, progress=False)
    fa, fb = a.cache_fields(), b.cache_fields()
    return {
        cache_key(fa, "document", TEXTS): ("fake-a", "document", 10, 8),
        cache_key(fa, "query", ["q1", "q2"], "Find"): ("fake-a", "query", 2, 8),
        cache_key(fb, "document", TEXTS[:5]): ("fake-b", "document", 5, 4),
    }


def test_cache_info_lists_complete_entries_with_their_sizes(tmp_path):
    expected = _populate(tmp_path)
    info = cache_info(tmp_path)
    assert len(info) == 3
    for row in info:
        model, role, n, dim = expected[row["key"]]
        assert (row["model"], row["role"], row["n"], row["dim"]) == (model, role, n, dim)
        assert row["size"] == 128 + n * dim * 4  # a small array's .npy header is 128 bytes
        assert Path(row["path"]) == entry_dir(tmp_path, model, row["key"])
    partial = entry_dir(tmp_path, "fake-a", cache_key(FakeEncoder(key="fake-a").cache_fields(), "document", MANY))
    assert list(partial.glob("shard-*.npy")) and str(partial) not in {r["path"] for r in info}
    assert cache_info(tmp_path / "absent") == []


def test_clear_cache_by_model_then_all(tmp_path):
    _populate(tmp_path)
    (tmp_path / "stray.txt").write_text("left by hand")
    # Complete entries are counted; the partial one of the same model goes too.
    assert clear_cache(tmp_path, model="fake-a") == 2
    assert not (tmp_path / "fake-a").exists()
    assert [(r["model"], r["n"]) for r in cache_info(tmp_path)] == [("fake-b", 5)]
    hit = FakeEncoder(key="fake-b", dim=4)
    embed_texts(hit, TEXTS[:5], root=tmp_path, progress=False)
    assert hit.calls == 0
    assert clear_cache(tmp_path, model="no-such-model") == 0
    assert clear_cache(tmp_path) == 1
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []
    assert clear_cache(tmp_path) == 0
    assert clear_cache(tmp_path / "absent") == 0


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b"])
def test_clear_cache_rejects_a_model_that_is_not_one_folder(tmp_path, bad):
    _populate(tmp_path / "root")
    (tmp_path / "outside").mkdir()
    with pytest.raises(ParamsError, match="model must be"):
        clear_cache(tmp_path / "root", model=bad)
    assert len(cache_info(tmp_path / "root")) == 3 and (tmp_path / "outside").is_dir()
