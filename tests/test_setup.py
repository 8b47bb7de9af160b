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
from era_core.paper.params import SCHEMAS, SHARED, SHARED_FILE, load_params_file

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


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.lower())


def test_requirements_are_the_one_pinned_source_and_torch_is_the_cpu_wheel():
    pins = _pins(paths.ROOT / "requirements.txt")
    assert pins["torch"] == "2.13.0"
    assert sorted(p.name for p in paths.ROOT.glob("requirements*.txt")) == ["requirements.txt"]


def test_pyproject_lists_what_the_package_imports():
    import ast
    import importlib.metadata as md
    import tomllib

    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    declared = {_norm(re.split(r"[<>=\[; ]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    extras = {_norm(re.split(r"[<>=\[; ]", d, maxsplit=1)[0]) for ds in project["optional-dependencies"].values()
              for d in ds}
    assert (declared | extras) <= set(_pins(paths.ROOT / "requirements.txt"))  # every one of them pinned
    modules = set()
    for f in (paths.ROOT / "era_core").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third_party = sorted(m for m in modules - set(sys.stdlib_module_names) - {"era_core"})
    dists = md.packages_distributions()
    missing = [m for m in third_party if not {_norm(d) for d in dists.get(m, [m])} & (declared | extras)]
    assert not missing, f"era_core imports {missing}, which pyproject.toml does not list"


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
            assert pins.get(_norm(name)) == version, item
    conda_pkgs = [d for d in deps if isinstance(d, str) and d not in ("pip",) and not d.startswith("python=")]
    assert not conda_pkgs, f"conda packages {conda_pkgs} bypass requirements.txt"


def test_every_notebook_has_a_schema_and_vice_versa():
    assert {nb.stem for nb in NOTEBOOKS} == set(SCHEMAS)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_declare_only_their_own_knobs_at_the_default_profiles_values(nb):
    declared = papermill.inspect_notebook(str(nb))
    schema = SCHEMAS[nb.stem]
    own = [name for name in schema if name not in SHARED]
    assert list(declared) == own  # the shared parameters come from params/<profile>/shared.yaml
    defaults = yaml.safe_load((paths.PARAMS / "default" / f"{nb.stem}.yaml").read_text()) or {}
    for name in own:
        assert declared[name]["inferred_type_name"] == schema[name].type.__name__, name
        assert eval(declared[name]["default"]) == defaults.get(name, schema[name].default), name  # literals only


def _stored(nb):
    """The notebook as git stores it (the index, which a JupyterLab save does not touch), else the file."""
    proc = subprocess.run(["git", "show", f":{nb.relative_to(paths.ROOT).as_posix()}"], cwd=paths.ROOT,
                          capture_output=True, text=True)
    return nbformat.reads(proc.stdout, as_version=4) if proc.returncode == 0 else nbformat.read(nb, as_version=4)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_notebook_is_stripped_and_parameters_cell_is_first_code_cell(nb):
    book = _stored(nb)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert book.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_params_file_is_valid_and_holds_each_value_once(profile):
    shared = yaml.safe_load((paths.PARAMS / profile / SHARED_FILE).read_text())
    assert set(shared) <= set(SHARED)
    for nb, schema in SCHEMAS.items():
        load_params_file(paths.PARAMS / profile / f"{nb}.yaml", nb)
        own = yaml.safe_load((paths.PARAMS / profile / f"{nb}.yaml").read_text()) or {}
        assert not set(own) & set(SHARED), f"{profile}/{nb}.yaml repeats shared parameters {set(own) & set(SHARED)}"


def test_params_cli_fails_fast_naming_the_bad_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nlearning_rat: 0.1\n")
    proc = subprocess.run([sys.executable, "-m", "era_core.tools.cli", "params", "check", str(bad), "03_training"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "learning_rat" in proc.stderr and "Traceback" not in proc.stderr
    assert "label_lr" in proc.stderr  # the allowed names are listed
