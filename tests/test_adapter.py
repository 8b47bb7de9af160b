"""Tests for era_core.adapter: forward pass, file formats, errors, and the adapted query encoder."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from era_core.adapter import (
    AdaptedQueryEncoder,
    FusedAdapter,
    LinearAdapter,
    apply_adapter,
    fuse_queries,
    load_adapter,
    load_any_adapter,
    load_fused_adapter,
    read_adapter_metadata,
    save_adapter,
)
from era_core.errors import DataError, EraError, ModelUnavailableError, ParamsError


def _adapter(in_dim: int = 6, out_dim: int = 4, seed: int = 0) -> LinearAdapter:
    torch.manual_seed(seed)
    return LinearAdapter(in_dim, out_dim)


def test_forward_is_unit_norm_and_equals_normalized_affine_map():
    a = _adapter()
    x = torch.randn(10, 6)
    y = a(x)
    w, b = a.proj.weight.detach().numpy(), a.proj.bias.detach().numpy()
    ref = x.numpy() @ w.T + b
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(y.detach().numpy(), axis=1), 1.0, atol=1e-6)
    assert a.proj.weight.shape == (4, 6) and a.proj.bias.shape == (4,)


def test_apply_adapter_chunks_give_same_result_and_unit_rows():
    a = _adapter()
    x = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    full = apply_adapter(a, x, chunk=4096)
    small = apply_adapter(a, x, chunk=7)
    assert full.dtype == np.float32 and full.shape == (50, 4)
    np.testing.assert_allclose(full, small, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ParamsError, match="in_dim"):
        apply_adapter(a, np.zeros((3, 5), dtype=np.float32))


def test_identity_and_from_weights():
    ident = LinearAdapter.identity(5)
    x = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    expected = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(apply_adapter(ident, x), expected, atol=1e-6)
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.array([1.0, -1.0, 0.5], dtype=np.float32)
    a = LinearAdapter.from_weights(w, b)
    np.testing.assert_array_equal(a.proj.weight.detach().numpy(), w)
    np.testing.assert_array_equal(a.proj.bias.detach().numpy(), b)
    with pytest.raises(DataError):
        LinearAdapter.from_weights(w, np.zeros(4))


def test_safetensors_round_trip_with_metadata(tmp_path):
    a = _adapter()
    path = save_adapter(a, tmp_path / "a.safetensors", {"mode": "both", "epochs": 3})
    b = load_adapter(path, expected_in_dim=6, expected_out_dim=4)
    assert torch.equal(a.proj.weight, b.proj.weight) and torch.equal(a.proj.bias, b.proj.bias)
    meta = read_adapter_metadata(path)
    assert meta["mode"] == "both" and meta["epochs"] == "3" and meta["in_dim"] == "6"
    # No temp files left behind by the atomic write.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]


def test_reference_pt_round_trip(tmp_path):
    a = _adapter(8, 3)
    path = tmp_path / "adapter__wd0.0001.pt"
    torch.save(a.state_dict(), path)
    b = load_adapter(path, expected_in_dim=8, expected_out_dim=3)
    x = np.random.default_rng(2).normal(size=(5, 8)).astype(np.float32)
    np.testing.assert_array_equal(apply_adapter(a, x), apply_adapter(b, x))


def test_pt_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(DataError, match="not a state dict"):
        load_adapter(path)


class _Boom:
    """Unpickling this would run code; weights_only loading must refuse it without running it."""

    def __reduce__(self):
        return (_record_call, ("executed",))


_CALLS: list[str] = []


def _record_call(tag: str) -> str:
    _CALLS.append(tag)
    return tag


def test_pickled_object_is_refused_without_executing_code(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"proj.weight": _Boom(), "proj.bias": _Boom()}, fh, protocol=2)
    _CALLS.clear()
    with pytest.raises(DataError, match="plain PyTorch state dict"):
        load_adapter(path)
    assert _CALLS == []


def test_wrong_keys_are_listed(tmp_path):
    path = tmp_path / "keys.pt"
    torch.save({"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, path)
    with pytest.raises(DataError) as err:
        load_adapter(path)
    assert "['bias', 'weight']" in str(err.value) and "proj.weight" in str(err.value)


def test_shape_mismatch_names_both_shapes(tmp_path):
    path = save_adapter(_adapter(6, 4), tmp_path / "a.safetensors")
    with pytest.raises(ParamsError) as err:
        load_adapter(path, expected_in_dim=4096, expected_out_dim=1024)
    msg = str(err.value)
    assert "(4, 6)" in msg and "(1024, 4096)" in msg


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ModelUnavailableError, match="not found"):
        load_adapter(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="cannot read"):
        load_adapter(bad)
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(b"garbage")
    with pytest.raises(DataError):
        load_adapter(bad_pt)
    other = tmp_path / "a.npz"
    other.write_bytes(b"")
    with pytest.raises(ParamsError, match="allowed"):
        load_adapter(other)
    assert issubclass(DataError, EraError)


@dataclass
class _Spec:
    key: str
    dim: int


class FakeEncoder:
    """A tiny deterministic 'encoder': bag-of-characters projected by a fixed matrix."""

    def __init__(self, key: str = "fake-large", dim: int = 6) -> None:
        self.spec = _Spec(key, dim)
        self.dim = dim
        self.formatted: list[str] = []
        self._proj = np.random.default_rng(3).normal(size=(128, dim)).astype(np.float32)

    def format_queries(self, queries, instructions):
        insts = [instructions] * len(queries) if instructions is None or isinstance(instructions, str) else instructions
        return [q if not i else f"Instruct: {i}\nQuery: {q}" for q, i in zip(queries, insts)]

    def encode(self, texts, batch_size=32, progress=True):
        self.formatted.extend(texts)
        counts = np.zeros((len(texts), 128), dtype=np.float32)
        for r, t in enumerate(texts):
            for ch in t:
                counts[r, ord(ch) % 128] += 1
        v = counts @ self._proj
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_adapted_query_encoder_formats_encodes_and_adapts():
    enc, a = FakeEncoder(), _adapter(6, 4)
    aq = AdaptedQueryEncoder(enc, a, instruction="Find docs", doc_model="fake-small", instructions="forced")
    out = aq.encode(["hello", "world"], progress=False)
    assert enc.formatted == ["Instruct: Find docs\nQuery: hello", "Instruct: Find docs\nQuery: world"]
    expected = apply_adapter(a, FakeEncoder().encode(enc.formatted))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert out.shape == (2, 4) and aq.dim == 4
    # Per-query instructions override the default one.
    aq.encode(["x"], instructions=["Other"], progress=False)
    assert enc.formatted[-1] == "Instruct: Other\nQuery: x"
    with pytest.raises(ParamsError, match="dim"):
        AdaptedQueryEncoder(FakeEncoder(dim=5), a)
    # Natively (the default), a model that was not trained on instructions gets the bare query.
    native = AdaptedQueryEncoder(FakeEncoder(), a, instruction="Find docs")
    native.encode(["hello"], progress=False)
    assert native.query_encoder.formatted == ["hello"]
    with pytest.raises(ParamsError, match="native, forced"):
        AdaptedQueryEncoder(FakeEncoder(), a, instructions="on")


def test_a_query_encoder_of_the_wrong_width_is_refused():
    with pytest.raises(ParamsError, match="has dim 5 but the adapter expects in_dim 6"):
        AdaptedQueryEncoder(FakeEncoder(dim=5), _adapter(6, 4))


def test_fake_namespace_encoder_without_spec_is_accepted():
    enc = SimpleNamespace(format_queries=FakeEncoder().format_queries, encode=FakeEncoder().encode, dim=6)
    out = AdaptedQueryEncoder(enc, _adapter(6, 4)).encode(["abc"], progress=False)
    assert out.shape == (1, 4)


# ---------------------------------------------------------------- fused adapters


def _trained_fused(seed: int = 1) -> FusedAdapter:
    fused = FusedAdapter.control_init(6, 4)
    with torch.no_grad():
        fused.proj.weight.add_(0.1 * torch.randn(4, 10, generator=torch.Generator().manual_seed(seed)))
    return fused


def test_fused_adapter_roundtrips_through_safetensors(tmp_path):
    fused = _trained_fused()
    path = save_adapter(fused, tmp_path / "fused.safetensors", {"method": "fused"})
    meta = read_adapter_metadata(path)
    assert (meta["adapter_type"], meta["large_dim"], meta["small_dim"], meta["in_dim"]) == ("fused", "6", "4", "10")
    x = fuse_queries(np.random.default_rng(0).normal(size=(7, 6)), np.random.default_rng(1).normal(size=(7, 4)))
    for loaded in (load_fused_adapter(path, expected_large_dim=6, expected_small_dim=4), load_any_adapter(path)):
        assert isinstance(loaded, FusedAdapter) and (loaded.large_dim, loaded.small_dim) == (6, 4)
        np.testing.assert_array_equal(apply_adapter(loaded, x), apply_adapter(fused, x))
    with pytest.raises(ParamsError, match="large 6-d \\+ small 4-d"):
        load_fused_adapter(path, expected_large_dim=8)
    linear = save_adapter(_adapter(), tmp_path / "linear.safetensors")
    with pytest.raises(DataError, match="not 'fused'"):
        load_fused_adapter(linear)
    with pytest.raises(DataError, match="does not fit large_dim"):
        FusedAdapter.from_weights(fused.proj.weight, fused.proj.bias, large_dim=5)


def test_linear_adapter_files_carry_no_adapter_type(tmp_path):
    assert "adapter_type" not in read_adapter_metadata(save_adapter(_adapter(), tmp_path / "lin.safetensors"))


class FakeSmallEncoder(FakeEncoder):
    """The small model of a fused pair: its own query template and 4-d vectors."""

    def __init__(self, key: str = "fake-small", dim: int = 4) -> None:
        super().__init__(key, dim)

    def format_queries(self, queries, instructions):
        insts = [instructions] * len(queries) if instructions is None or isinstance(instructions, str) else instructions
        return [f"query: {q}" if not i else f"task: {i} | query: {q}" for q, i in zip(queries, insts)]


def test_fused_adapted_query_encoder_uses_both_encoders():
    large, small, fused = FakeEncoder(), FakeSmallEncoder(), _trained_fused()
    aq = AdaptedQueryEncoder(large, fused, instruction="Find", doc_model="fake-small", small_query_encoder=small,
                             instructions="forced")
    out = aq.encode(["hello", "world"], progress=False)
    assert small.formatted == ["task: Find | query: hello", "task: Find | query: world"]
    expected = apply_adapter(fused, fuse_queries(FakeEncoder().encode(large.formatted), FakeSmallEncoder().encode(small.formatted)))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # The untrained control start reproduces the small model's own query vectors.
    control = AdaptedQueryEncoder(FakeEncoder(), FusedAdapter.control_init(6, 4), small_query_encoder=FakeSmallEncoder(),
                                  instructions="forced")
    np.testing.assert_allclose(control.encode(["abc"], "Find", progress=False),
                               FakeSmallEncoder().encode(["task: Find | query: abc"]), atol=1e-6)
    with pytest.raises(ParamsError, match="small_query_encoder"):
        AdaptedQueryEncoder(FakeEncoder(), fused)
    with pytest.raises(ParamsError, match="small_dim 4"):
        AdaptedQueryEncoder(FakeEncoder(), fused, small_query_encoder=FakeEncoder(dim=5))
