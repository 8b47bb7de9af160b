"""A notebook's first cell (era_core.paper.notebook): where it writes, and errors that say what to do."""

from __future__ import annotations

import pytest

from era_core import paths
from era_core.errors import ParamsError
from era_core.paper import notebook
from era_core.paper.params import SCHEMAS, load_params_file


@pytest.fixture
def results(tmp_path, monkeypatch):
    res, fig = tmp_path / "results", tmp_path / "figures"
    (res / "timing").mkdir(parents=True)
    (res / "zero_shot.json").write_text('{"made by": "make paper"}\n')
    (res / "timing" / "zero_shot.json").write_text("{}\n")
    monkeypatch.setattr(paths, "RESULTS", res)
    monkeypatch.setattr(paths, "FIGURES", fig)
    monkeypatch.delenv("ERA_PAPER_RUN", raising=False)
    monkeypatch.setenv("ERA_PROFILE", "smoke")
    return res, fig


def _smoke(nb: str) -> dict:
    return load_params_file(paths.PARAMS / "smoke" / f"{nb}.yaml", nb)


def test_the_profiles_own_parameters_write_to_the_profiles_folders(results):
    res, fig = results
    assert notebook.output_folders("03_training", _smoke("03_training")) == (res, fig)


def test_other_parameters_write_to_a_variant_folder_seeded_with_the_inputs(results, capsys):
    res, fig = results
    params = {**_smoke("03_training"), "seeds": "7"}
    out, figures = notebook.output_folders("03_training", params)
    assert out.parent == res / "variants" and out.name.startswith("03_training-") and figures == out / "figures"
    assert "(seeds)" in capsys.readouterr().out
    # The profile's results files a notebook reads are there; writing them there leaves make paper's alone.
    (out / "zero_shot.json").write_text("{}\n")
    assert (res / "zero_shot.json").read_text() == '{"made by": "make paper"}\n'
    assert (out / "timing" / "zero_shot.json").is_file()
    # The same parameters find the same folder again; other ones another.
    assert notebook.output_folders("03_training", params)[0] == out
    assert notebook.output_folders("03_training", {**params, "seeds": "8"})[0] != out


def test_make_paper_and_read_only_notebooks_always_use_the_profiles_folders(results, monkeypatch):
    res, fig = results
    assert notebook.output_folders("00_quickstart", {**_smoke("00_quickstart"), "query": "mine"}) == (res, fig)
    monkeypatch.setenv("ERA_PAPER_RUN", "1")
    assert notebook.output_folders("03_training", {**_smoke("03_training"), "seeds": "7"}) == (res, fig)


def test_begin_validates_seeds_and_returns_the_folders(results):
    values = {k: v.default for k, v in SCHEMAS["06_figures"].items()}
    params, out, figures = notebook.begin("06_figures", values | _smoke("06_figures"))
    assert params == _smoke("06_figures") and out == results[0]
    with pytest.raises(ParamsError, match="bar_ratio"):
        notebook.begin("06_figures", {"bar_ratio": "high"})


def test_hints_say_what_to_run():
    assert notebook.hint(ParamsError("parameter x is wrong; set it to 1\nmore")) == "parameter x is wrong; set it to 1"
    missing = FileNotFoundError(2, "No such file", "/r/training.json")
    assert notebook.hint(missing) == ("training.json is written by notebooks/03_training.ipynb: run `make paper` (or "
                                      "that notebook) first")
    assert "06_figures" in notebook.hint(FileNotFoundError(2, "No such file", "/r/tables/main.md"))


def test_a_kernel_prints_the_hint_above_the_traceback(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        notebook.explain_errors()
        shell.run_cell("from era_core.errors import DataError\nraise DataError('run 01_zero_shot first')")
        err = capsys.readouterr()
        text = err.err + err.out
        assert "What to do: run 01_zero_shot first" in text
        assert text.index("What to do:") < text.index("DataError")
    finally:
        InteractiveShell.clear_instance()
