"""OpenAI-compatible embedding API encoders (``text-embedding-3-small`` / ``-large``), stdlib only.

Same interface as ``era_core.encoders.encoder.Encoder`` (``key``, ``dim``, ``loaded``, ``cache_fields()``,
``format_queries()``, ``encode()``), so the embedding cache and the experiments use it unchanged.
Behaviour follows the reference (ERA_METHOD.md §7, "OpenAI"):

- queries are sent as ``"{instruction}\\n{query}"`` (not the Qwen template);
- at most 100 texts per request, ``encoding_format="float"``;
- empty strings are not sent (the API rejects them) and get zero vectors;
- HTTP 429, 5xx and network errors are retried with exponential backoff (bounded attempts);
- on a context-length error a batch is split in half, and a single text is cut to half its
  characters (the reference re-truncates with tiktoken; we have no tokenizer, see below).

Deviations: no tiktoken, so texts are not pre-truncated to 8191 tokens; the API's own
context-length error triggers the halving instead. Returned vectors are L2-normalised again
(a no-op for OpenAI, whose vectors are unit length; it guards other compatible servers).

The base URL comes from the ``base_url`` argument, else ``OPENAI_BASE_URL``, else OpenAI's; the
key from ``api_key``, else ``OPENAI_API_KEY``. A missing key fails at the first request, so a
run served entirely from the cache needs no key.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from era_core.encoders.spec import SpecIdentity, check_encode_inputs, format_queries
from era_core.errors import ModelUnavailableError, ParamsError

#: The reference's query format for OpenAI models.
API_QUERY_TEMPLATE = "{instruction}\n{query}"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: OpenAI's limit on texts per request, as in the reference.
MAX_PER_REQUEST = 100
#: The models' context length in tokens.
API_MAX_TOKENS = 8191
#: Bump when request/normalisation code changes in a way that changes vectors.
API_ENCODER_VERSION = 1
_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ApiModelSpec:
    """One API embedding model: registry key, the provider's model name, dimension."""

    key: str
    api_model: str
    dim: int
    hub_id: str  # a stable identifier for model cards (these models are not on the HF hub)
    max_length: int = API_MAX_TOKENS
    query_template: str = API_QUERY_TEMPLATE
    size: str = "API"
    params: int = 0  # not published by OpenAI
    #: The reference instructs OpenAI models (``{instruction}\n{query}``) in every setting.
    instructed: bool = True


API_MODELS: dict[str, ApiModelSpec] = {
    s.key: s
    for s in (
        ApiModelSpec("te3-small", "text-embedding-3-small", 1536, hub_id="openai/text-embedding-3-small"),
        ApiModelSpec("te3-large", "text-embedding-3-large", 3072, hub_id="openai/text-embedding-3-large"),
    )
}


class ApiRequestError(Exception):
    """One failed HTTP request (internal: turned into ModelUnavailableError or retried)."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _is_context_length_error(err: ApiRequestError) -> bool:
    text = err.message.lower()
    return err.status == 400 and ("context length" in text or "maximum" in text and "token" in text)


class ApiEncoder(SpecIdentity):
    """An OpenAI-compatible ``/embeddings`` endpoint behind the ``Encoder`` interface."""

    def __init__(
        self,
        spec: ApiModelSpec,
        *,
        base_url: str,
        api_key: str | None,
        max_per_request: int = MAX_PER_REQUEST,
        max_attempts: int = 5,
        backoff_start: float = 2.0,
        backoff_max: float = 60.0,
        timeout: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= max_per_request <= MAX_PER_REQUEST:
            raise ParamsError(f"max_per_request must be in [1, {MAX_PER_REQUEST}], got {max_per_request}")
        if max_attempts < 1:
            raise ParamsError(f"max_attempts must be >= 1, got {max_attempts}")
        self.spec = spec
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.max_per_request = max_per_request
        self.max_attempts = max_attempts
        self.backoff_start, self.backoff_max = float(backoff_start), float(backoff_max)
        self.timeout = timeout
        self._sleep = sleep
        self.requests = 0  # HTTP requests sent, retries included
        self._used = False

    @property
    def loaded(self) -> bool:
        """Whether the API has been called (a cache hit must leave this False)."""
        return self._used

    @property
    def precision(self) -> str:
        """The service returns float32 vectors."""
        return "float32"

    def __repr__(self) -> str:  # never shows the key
        return f"ApiEncoder({self.key!r}, model={self.spec.api_model}, base_url={self.base_url}, loaded={self.loaded})"

    def cache_fields(self) -> dict[str, Any]:
        """Everything that changes a vector, for the embedding cache key (the key is never included)."""
        return {
            "model": self.spec.key,
            "api_model": self.spec.api_model,
            "base_url": self.base_url,
            "backend": "api",
            "max_length": self.spec.max_length,
            "query_template": self.spec.query_template,
            "normalize": "l2",
            "dim": self.spec.dim,
            "encoder_version": API_ENCODER_VERSION,
        }

    def format_queries(self, queries: Sequence[str], instructions: Sequence[str] | str | None) -> list[str]:
        """Apply the reference's OpenAI query format ``instruction\\nquery`` (documents never go through this)."""
        return format_queries(queries, instructions, template=self.spec.query_template)

    # -- HTTP
    def _post(self, inputs: list[str]) -> list[list[float]]:
        """One ``POST /embeddings``; returns the vectors in input order or raises ApiRequestError."""
        if not self._api_key:
            raise ModelUnavailableError(
                f"model {self.key!r} ({self.spec.api_model}) is an API model and needs an API key: set the "
                "environment variable OPENAI_API_KEY (and OPENAI_BASE_URL for an OpenAI-compatible server "
                f"other than {DEFAULT_BASE_URL})"
            )
        body = json.dumps({"model": self.spec.api_model, "input": inputs, "encoding_format": "float"}).encode("utf-8")
        req = urllib.request.Request(
            self.base_url + "/embeddings",
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json"},
        )
        self.requests += 1
        self._used = True
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            err = ApiRequestError(exc.code, f"HTTP {exc.code}: {detail}")
            err.retry_after = exc.headers.get("Retry-After") if exc.headers else None  # type: ignore[attr-defined]
            raise err from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise ApiRequestError(None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
        except ValueError as exc:
            raise ModelUnavailableError(f"embedding API at {self.base_url} returned invalid JSON: {exc}") from None
        try:
            rows = sorted(payload["data"], key=lambda d: int(d["index"]))
            vecs = [r["embedding"] for r in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelUnavailableError(
                f"embedding API at {self.base_url} returned an unexpected body (no data[].index/embedding: {exc})"
            ) from None
        if [int(r["index"]) for r in rows] != list(range(len(inputs))):
            raise ModelUnavailableError(
                f"embedding API at {self.base_url} answered {len(rows)} embeddings for {len(inputs)} inputs"
            )
        return vecs

    def _post_with_retries(self, inputs: list[str]) -> list[list[float]]:
        delay = self.backoff_start
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._post(inputs)
            except ApiRequestError as err:
                retryable = err.status is None or err.status in _RETRY_STATUS or err.status >= 500
                if not retryable or attempt == self.max_attempts:
                    if _is_context_length_error(err):
                        raise
                    raise ModelUnavailableError(
                        f"embedding API {self.base_url}/embeddings failed for model {self.spec.api_model!r} "
                        f"after {attempt} attempt(s): {err.message}"
                        + ("" if retryable else " (not retried: fix the request, key or model name)")
                    ) from None
                wait = delay
                retry_after = getattr(err, "retry_after", None)
                if retry_after:
                    try:
                        wait = max(wait, float(retry_after))
                    except ValueError:
                        pass
                self._sleep(min(wait, self.backoff_max))
                delay = min(delay * 2, self.backoff_max)
        raise AssertionError("unreachable")

    def _embed_batch(self, inputs: list[str]) -> list[list[float]]:
        """Embed one request's worth, halving on context-length errors like the reference."""
        try:
            return self._post_with_retries(inputs)
        except ApiRequestError as err:  # only context-length errors get here
            if len(inputs) > 1:
                mid = len(inputs) // 2
                return self._embed_batch(inputs[:mid]) + self._embed_batch(inputs[mid:])
            text = inputs[0]
            if len(text) < 2:
                raise ModelUnavailableError(f"embedding API rejects a {len(text)}-character text: {err.message}") from None
            return self._embed_batch([text[: len(text) // 2]])

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = True) -> np.ndarray:
        """Embed already formatted texts: L2-normalised float32 ``[n, dim]`` in input order.

        Requests carry up to ``max_per_request`` (100) texts whatever ``batch_size`` is: the
        API's limit, not memory, bounds a request.
        """
        texts = check_encode_inputs(texts, batch_size)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo = [i for i, t in enumerate(texts) if t]  # empty texts keep zero vectors (reference)
        starts = range(0, len(todo), self.max_per_request)
        for s in tqdm(starts, desc=f"encode {self.key} (API)", disable=not progress, total=len(starts)):
            idx = todo[s : s + self.max_per_request]
            vecs = np.asarray(self._embed_batch([texts[i] for i in idx]), dtype=np.float64)
            if vecs.ndim != 2 or vecs.shape[1] != self.dim:
                raise ModelUnavailableError(
                    f"embedding API returned vectors of shape {vecs.shape} for model {self.spec.api_model!r}; "
                    f"expected {self.dim} dimensions (is OPENAI_BASE_URL serving another model?)"
                )
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            if (norms == 0).any() or not np.isfinite(vecs).all():
                raise ModelUnavailableError("embedding API returned a zero or non-finite vector for a non-empty text")
            out[idx] = (vecs / norms).astype(np.float32)
        return out


def load_api_encoder(
    key: str,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    max_length: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    base_url: str | None = None,
    api_key: str | None = None,
    **options: Any,
) -> ApiEncoder:
    """Build an API encoder (no request is made); ``load_encoder`` delegates API keys here."""
    if key not in API_MODELS:
        raise ModelUnavailableError(f"unknown API model key {key!r}; API keys: {', '.join(API_MODELS)}")
    spec = API_MODELS[key]
    if dtype not in (None, "float32", "auto"):
        raise ParamsError(
            f"API model {key!r} returns float32 vectors; dtype must be 'float32', 'auto' or None, got {dtype!r}"
        )
    if max_length not in (None, spec.max_length):
        raise ParamsError(
            f"API model {key!r} cannot truncate to max_length={max_length} (no local tokenizer); the model's "
            f"context is {spec.max_length} tokens: use max_length={spec.max_length} (or None)"
        )
    url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    if not url.startswith(("http://", "https://")):
        raise ParamsError(f"OPENAI_BASE_URL / base_url must start with http:// or https://, got {url!r}")
    key_value = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
    return ApiEncoder(spec, base_url=url, api_key=key_value or None, **options)
