"""What every notebook's first cell does: check the parameters, seed, pick where to write, explain errors.

``begin(notebook, globals())`` validates the notebook's parameters (``params.validate``: the profile's shared
file, then the notebook's own, then papermill's ``-p``), seeds Python, NumPy and torch, and returns the folders
the notebook writes to:

- under ``make paper`` (papermill started by the Makefile), and whenever the parameters are exactly the ones
  ``make paper`` runs the notebook with, the profile's own ``results/`` and ``figures/``: a JupyterLab "Run All"
  after ``make paper`` reuses every finished run and shows the same numbers;
- otherwise a folder of its own, ``results/variants/<notebook>-<digest of the parameters>/`` (figures inside
  it), seeded with copies of the profile's top-level results files that the notebook reads. A run with other
  parameters writes only there: it never overwrites what ``make paper`` made.

In a Jupyter kernel it also puts one line that says what to do above the traceback of an error this package
raises (which notebook or ``make`` target to run first, which parameter to change).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from era_core import paths
from era_core.errors import EraError
from era_core.paper.params import load_params_file, profile_name, validate

#: Notebooks that write nothing: they always read the profile's own results.
READ_ONLY = ("00_quickstart",)
VARIANTS = "variants"


def begin(notebook: str, values: dict[str, Any]) -> tuple[dict[str, Any], Path, Path]:
    """Validated parameters (seeded), and the results and figures folders this run of ``notebook`` writes to."""
    from era_core.seeding import seed_everything

    explain_errors()
    params = validate(notebook, values)
    if "seed" in params:
        seed_everything(params["seed"])
    results, figures = output_folders(notebook, params)
    return params, results, figures


def output_folders(notebook: str, params: dict[str, Any]) -> tuple[Path, Path]:
    """The profile's results and figures folders, or a variant folder when ``params`` are not ``make paper``'s."""
    results, figures = paths.RESULTS, paths.FIGURES
    if os.environ.get("ERA_PAPER_RUN") == "1" or notebook in READ_ONLY:
        return paths.ensure(results), paths.ensure(figures)
    profile = profile_name()
    expected = load_params_file(paths.PARAMS / profile / f"{notebook}.yaml", notebook)
    changed = sorted(k for k in params if params[k] != expected.get(k))
    if not changed:
        return paths.ensure(results), paths.ensure(figures)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]
    folder = results / VARIANTS / f"{notebook}-{digest}"
    _seed_variant(results, folder)
    print(f"parameters differ from params/{profile}/{notebook}.yaml ({', '.join(changed)}): this run writes to "
          f"{folder}, never over the results `make paper` made")
    return paths.ensure(folder), paths.ensure(folder / "figures")


def _seed_variant(results: Path, folder: Path) -> None:
    """Copy the profile's top-level results files (not its run folders) that the variant does not have yet."""
    for src in [*results.glob("*.json"), *(results / "timing").glob("*.json")]:
        dst = folder / src.relative_to(results)
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def explain_errors() -> None:
    """In a Jupyter kernel, print what to do (the error's own message) in one line above an error's traceback."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return

    def handler(self: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> Any:
        print(f"What to do: {hint(value)}", file=sys.stderr)
        return self.showtraceback((etype, value, tb), tb_offset=tb_offset)

    shell.set_custom_exc((EraError, FileNotFoundError), handler)


def hint(error: BaseException) -> str:
    """One line saying how to fix ``error``: this package's message, or for a missing file what writes it."""
    if isinstance(error, EraError):
        return str(error).splitlines()[0]
    name = Path(getattr(error, "filename", "") or "").name
    writers = {"zero_shot.json": "01_zero_shot", "alignment.json": "02_alignment", "training.json": "03_training",
               "lodo.json": "04_lodo", "domain_specific.json": "05_domain_specific",
               "encoder_pairs.json": "07_encoder_pairs", "alignment_ladder.json": "08_alignment_ladder"}
    if name in writers:
        return f"{name} is written by notebooks/{writers[name]}.ipynb: run `make paper` (or that notebook) first"
    if name.endswith((".md", ".csv", ".pdf")):
        return f"{name} is written by notebooks/06_figures.ipynb: run `make paper` (or that notebook) first"
    return f"a file this notebook reads is missing ({error}); run `make paper` first"
