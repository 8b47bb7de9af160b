"""The OpenAI-compatible API encoder against a local fake server (127.0.0.1 only, never the internet)."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from era_core.cache import embed_texts
from era_core.encoders import load_encoder
from era_core.encoders.openai_api import API_MODELS, ApiEncoder, load_api_encoder
from era_core.errors import ModelUnavailableError, ParamsError


def raw_vector(text: str, dim: int) -> list[float]:
    """Deterministic, deliberately unnormalised vector for ``text``."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    return (np.random.default_rng(seed).standard_normal(dim) * 3.0).tolist()


class FakeApi:
    """A tiny OpenAI-compatible /embeddings server; records requests, can fail on demand."""

    def __init__(self, dim: int = 1536):
        self.dim = dim
        self.requests: list[dict] = []
        self.auth: list[str] = []
        self.fail_statuses: list[int] = []  # statuses to answer before succeeding, consumed in order
        self.max_chars: int | None = None  # answer 400 "maximum context length" above this
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.requests.append(body)
                api.auth.append(self.headers.get("Authorization", ""))
                if self.path != "/v1/embeddings":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if api.fail_statuses:
                    return self._send(api.fail_statuses.pop(0), {"error": {"message": "temporary failure"}})
                if api.max_chars is not None and any(len(t) > api.max_chars for t in body["input"]):
                    return self._send(400, {"error": {"message": "This model's maximum context length is 8191 tokens"}})
                dim = 3072 if body["model"].endswith("large") else api.dim
                data = [{"object": "embedding", "index": i, "embedding": raw_vector(t, dim)}
                        for i, t in enumerate(body["input"])]
                data.reverse()  # out of order on purpose: the client must sort by index
                self._send(200, {"object": "list", "data": data, "model": body["model"]})

            def _send(self, status, obj):
                raw = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    with FakeApi() as server:
        yield server


def make(api, **kw) -> ApiEncoder:
    sleeps: list[float] = []
    enc = load_api_encoder("te3-small", base_url=api.url, api_key="sk-test", sleep=sleeps.append, **kw)
    enc.sleeps = sleeps  # type: ignore[attr-defined]
    return enc


def expected(texts, dim=1536) -> np.ndarray:
    v = np.array([raw_vector(t, dim) for t in texts])
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_registered_keys_and_dims(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    small, large = load_encoder("te3-small"), load_encoder("te3-large")
    assert (small.dim, large.dim) == (1536, 3072)
    assert small.key == "te3-small" and not small.loaded
    assert API_MODELS["te3-large"].api_model == "text-embedding-3-large"


def test_batches_of_at_most_100_in_order_and_normalised(api):
    enc = make(api)
    texts = [f"text number {i}" for i in range(250)]
    out = enc.encode(texts, progress=False)
    assert [len(r["input"]) for r in api.requests] == [100, 100, 50]
    assert [t for r in api.requests for t in r["input"]] == texts
    assert all(r["model"] == "text-embedding-3-small" and r["encoding_format"] == "float" for r in api.requests)
    assert api.auth == ["Bearer sk-test"] * 3
    assert out.dtype == np.float32 and out.shape == (250, 1536)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out, expected(texts), atol=1e-6)


def test_query_format_is_instruction_newline_query(api):
    enc = make(api)
    assert enc.format_queries(["q1", "q2"], ["find it", ""]) == ["find it\nq1", "q2"]
    enc.encode(enc.format_queries(["q1"], "find it"), progress=False)
    assert api.requests[-1]["input"] == ["find it\nq1"]


def test_empty_texts_get_zero_vectors_and_are_not_sent(api):
    out = make(api).encode(["a", "", "b"], progress=False)
    assert api.requests[0]["input"] == ["a", "b"]
    assert not out[1].any()
    np.testing.assert_allclose(out[[0, 2]], expected(["a", "b"]), atol=1e-6)


def test_retry_on_500_then_success(api):
    api.fail_statuses = [500, 429]
    enc = make(api, backoff_start=0.5, backoff_max=4.0)
    out = enc.encode(["x", "y"], progress=False)
    assert len(api.requests) == 3 and enc.requests == 3
    assert enc.sleeps == [0.5, 1.0]  # exponential backoff, never actually slept in the test
    np.testing.assert_allclose(out, expected(["x", "y"]), atol=1e-6)


def test_retries_are_bounded(api):
    api.fail_statuses = [503] * 10
    enc = make(api, max_attempts=3, backoff_start=1.0, backoff_max=1.5)
    with pytest.raises(ModelUnavailableError, match="after 3 attempt") as info:
        enc.encode(["x"], progress=False)
    assert len(api.requests) == 3 and enc.sleeps == [1.0, 1.5]
    assert "sk-test" not in str(info.value)


def test_client_error_is_not_retried(api):
    api.fail_statuses = [401]
    enc = make(api)
    with pytest.raises(ModelUnavailableError, match="HTTP 401.*not retried"):
        enc.encode(["x"], progress=False)
    assert len(api.requests) == 1


def test_context_length_error_halves_batch_then_text(api):
    api.max_chars = 10
    long_text = "y" * 30
    out = make(api).encode(["short", long_text], progress=False)
    sent = [r["input"] for r in api.requests]
    assert sent[0] == ["short", long_text] and ["short"] in sent and ["y" * 7] in sent
    np.testing.assert_allclose(out, expected(["short", "y" * 7]), atol=1e-6)


def test_no_key_is_a_clear_error_and_contacts_nobody(api, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", api.url)
    enc = load_encoder("te3-small")
    assert enc.base_url == api.url
    with pytest.raises(ModelUnavailableError, match="OPENAI_API_KEY"):
        enc.encode(["x"], progress=False)
    assert api.requests == [] and not enc.loaded


def test_key_and_base_url_from_environment(api, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", api.url + "/")
    enc = load_encoder("te3-large")
    enc.encode(["x"], progress=False)
    assert api.auth == ["Bearer sk-env"] and api.requests[0]["model"] == "text-embedding-3-large"
    assert "sk-env" not in repr(enc) and "sk-env" not in json.dumps(enc.cache_fields())


def test_cache_hit_makes_no_request(api, tmp_path):
    texts = ["alpha", "beta", "gamma"]
    first = embed_texts(make(api), texts, root=tmp_path, progress=False)
    n = len(api.requests)
    again = make(api)
    second = embed_texts(again, texts, root=tmp_path, progress=False)
    assert len(api.requests) == n and not again.loaded
    np.testing.assert_array_equal(first, second)


def test_bad_options_are_params_errors(api):
    with pytest.raises(ParamsError, match="max_length"):
        load_api_encoder("te3-small", max_length=128, base_url=api.url)
    with pytest.raises(ParamsError, match="dtype"):
        load_api_encoder("te3-small", dtype="float16", base_url=api.url)
    with pytest.raises(ParamsError, match="http"):
        load_api_encoder("te3-small", base_url="ftp://example")
    with pytest.raises(ModelUnavailableError, match="te3-small"):
        load_api_encoder("te3-medium")
