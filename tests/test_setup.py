"""The environment, notebooks and parameter files agree with each other."""

from __future__ import annotations

import re
import subprocess
import sys

import nbformat
import papermill
import pytest
import yaml

from era_core import paths
from era_core.params import SCHEMAS, load_params_file

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("*.ipynb"))
PROFILES = ("smoke", "default", "paper")


def _pins(path):
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, _, version = line.partition("==")
        assert version, f"{path.name}: {line!r} is not pinned with =="
        pins[re.sub(r"[-_.]+", "-", name.lower())] = version
    return pins


def test_requirements_are_pinned_and_torch_is_the_cpu_wheel():
    pins = _pins(paths.ROOT / "requirements.txt")
    assert pins["torch"] == "2.13.0"
    for extra in ("requirements-nodeps.txt", "requirements-large.txt"):
        _pins(paths.ROOT / extra)


def test_environment_yml_mirrors_requirements():
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-r requirements.txt" in pip_section and "-e ." in pip_section
    # any package the yml names explicitly must carry the same pin as requirements.txt
    pins = _pins(paths.ROOT / "requirements.txt")
    for item in pip_section:
        if not item.startswith("-"):
            name, _, version = item.partition("==")
            assert pins.get(re.sub(r"[-_.]+", "-", name.lower())) == version, item
    conda_pkgs = [d for d in deps if isinstance(d, str) and d not in ("pip",) and not d.startswith("python=")]
    assert not conda_pkgs, f"conda packages {conda_pkgs} bypass requirements.txt"


def test_every_notebook_has_a_schema_and_vice_versa():
    assert {nb.stem for nb in NOTEBOOKS} == set(SCHEMAS)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_parameters_match_schema(nb):
    declared = papermill.inspect_notebook(str(nb))
    schema = SCHEMAS[nb.stem]
    assert list(declared) == list(schema)
    for name, spec in schema.items():
        assert declared[name]["inferred_type_name"] == spec.type.__name__, name
        assert eval(declared[name]["default"]) == spec.default, name  # literal defaults only


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped_and_parameters_cell_is_first_code_cell(nb):
    book = nbformat.read(nb, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert book.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_params_file_is_valid(profile):
    for nb in SCHEMAS:
        load_params_file(paths.PARAMS / profile / f"{nb}.yaml", nb)


def test_params_cli_fails_fast_naming_the_bad_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nlearning_rat: 0.1\n")
    proc = subprocess.run([sys.executable, "-m", "era_core.params", "check", str(bad), "03_training"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "learning_rat" in proc.stderr and "Traceback" not in proc.stderr
    assert "label_lr" in proc.stderr  # the allowed names are listed
