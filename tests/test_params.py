"""Bad parameters fail before any heavy work, with one message naming the value and the allowed values."""

from __future__ import annotations

import pytest

from era_core import paths
from era_core.errors import ParamsError
from era_core.paper.params import SCHEMAS, SHARED_FILE, load_params_file, resolve_domains, shared_params, validate


def _defaults(nb):
    return {k: v.default for k, v in SCHEMAS[nb].items()}


@pytest.mark.parametrize(
    "nb, override, needle",
    [
        ("03_training", {"seed": "one"}, "seed"),
        ("03_training", {"label_lr": "fast"}, "label_lr"),
        ("03_training", {"progress": 1}, "progress"),
        ("03_training", {"train_ratios": "0.1,-0.2"}, "train_ratios"),
        ("03_training", {"train_ratios": "0.1,1.5"}, "train_ratios"),
        ("03_training", {"train_ratios": "0.5"}, "> 1"),
        ("04_lodo", {"train_ratio": 0.45}, "> 1"),
        ("03_training", {"methods": "era,magic"}, "magic"),
        ("03_training", {"negative_strategy": "hardest"}, "topk_percpos"),
        ("03_training", {"large_model": "gpt-9"}, "gpt-9"),
        ("03_training", {"benchmark": "beir"}, "offline"),
        ("03_training", {"tasks": "no_such_task"}, "no_such_task"),
        ("03_training", {"tasks": " , "}, "empty"),
        ("04_lodo", {"domains": "space"}, "space"),
        ("01_zero_shot", {"extra_models": "minilm-l6,nope"}, "nope"),
        ("03_training", {"align_loss": "l1"}, "smooth_l1"),
    ],
)
def test_bad_values_name_the_value_and_allowed_values(nb, override, needle):
    with pytest.raises(ParamsError) as err:
        validate(nb, {**_defaults(nb), **override})
    assert needle in str(err.value)


def test_unknown_key_in_params_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("seeds: '1'\nlearnign_rate: 3\n")
    with pytest.raises(ParamsError, match="learnign_rate"):
        load_params_file(f, "03_training")


@pytest.mark.parametrize("text, needle", [("- a\n- b\n", "mapping"), ("seed: [1\n", "YAML")])
def test_malformed_params_file(tmp_path, text, needle):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(ParamsError, match=needle):
        load_params_file(f, "03_training")


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("seeds: '1'\nlabel_lr: 0.001\nseed: 3\nlabel_lr: 0.01\n")  # plain YAML would keep 0.01 silently
    with pytest.raises(ParamsError, match=r"'label_lr' is given twice \(lines 2 and 4\)"):
        load_params_file(f, "03_training")


def test_every_profile_file_has_each_key_once():
    for path in sorted((paths.PARAMS).glob("*/*.yaml")):
        if path.name == SHARED_FILE:
            shared_params(path.parent.name)  # raises on a repeated key, or on a key no notebook shares
        else:
            load_params_file(path, path.stem)  # raises on a repeated key


def test_missing_params_file(tmp_path):
    with pytest.raises(ParamsError, match="does not exist"):
        load_params_file(tmp_path / "none.yaml", "03_training")


def test_lodo_domain_without_tasks():
    from era_core.data import list_tasks

    table = list_tasks("offline-smoke")
    present = sorted(set(table.values()))
    first_task = next(t for t, d in table.items() if d == present[0])
    with pytest.raises(ParamsError, match="no tasks"):
        resolve_domains("offline-smoke", first_task, present[1])
    with pytest.raises(ParamsError, match="at least 2 domains"):
        validate("04_lodo", {**_defaults("04_lodo"), "tasks": first_task})


def test_valid_defaults_pass_and_ints_are_accepted_as_floats():
    p = validate("03_training", {**_defaults("03_training"), "label_lr": 1})
    assert p["label_lr"] == 1.0 and isinstance(p["label_lr"], float)
