"""The parameter schema of every notebook, and the one place that validates parameters.

Each notebook's tagged ``parameters`` cell declares exactly the names of its schema here (a test
checks this with ``papermill.inspect_notebook``). Validation runs before any encoding or training:
from the Makefile (``era params check``) and again as the first cell after the
parameters, so values injected with ``papermill -p`` are checked too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from era_core import paths
from era_core.data import BENCHMARKS, resolve_tasks
from era_core.encoders.precision import DTYPES as PRECISIONS
from era_core.errors import ParamsError
from era_core.instructions import INSTRUCTION_SETTINGS
from era_core.methods import ALIGNMENT_INITS as ALIGN_INITS
from era_core.methods import ALIGNMENT_LOSSES as ALIGN_LOSSES
from era_core.methods import METHODS as METHOD_RECORDS
from era_core.methods import SCHEDULES
from era_core.negatives import STRATEGIES as NEG_STRATEGIES

METHODS = tuple(METHOD_RECORDS)
DEVICES = ("cpu", "cuda", "auto")
DTYPES = (*PRECISIONS, "auto")


@dataclass(frozen=True)
class Param:
    """One declared parameter: its type, default and an optional value check."""

    type: type
    default: Any
    check: Callable[[str, Any], None] | None = None
    help: str = ""


# ---------------------------------------------------------------- value checks


def _choice(allowed: tuple[str, ...]) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in allowed:
            raise ParamsError(f"parameter {name}={value!r} is not allowed; allowed values: {', '.join(allowed)}")

    return check


def _csv_choice(allowed: tuple[str, ...]) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        items = split_csv(value)
        if not items:
            raise ParamsError(f"parameter {name} is empty; give a comma-separated list of: {', '.join(allowed)}")
        bad = [v for v in items if v not in allowed]
        if bad:
            raise ParamsError(f"parameter {name} has unknown value(s) {bad}; allowed values: {', '.join(allowed)}")

    return check


def _ratio(name: str, value: Any) -> None:
    if not 0.0 < float(value) <= 1.0:
        raise ParamsError(f"parameter {name}={value!r} must be a ratio in (0, 1]")


def _ratio_list(name: str, value: Any) -> None:
    items = split_csv(value)
    if not items:
        raise ParamsError(f"parameter {name} is empty; give comma-separated ratios such as '0.1,0.2,0.4'")
    for item in items:
        try:
            r = float(item)
        except ValueError:
            raise ParamsError(f"parameter {name} has {item!r}, which is not a number; example: '0.1,0.2,0.4'") from None
        _ratio(name, r)


def _ratio_list_or_empty(name: str, value: Any) -> None:
    if split_csv(value):
        _ratio_list(name, value)


def _int_list(name: str, value: Any) -> None:
    items = split_csv(value)
    if not items:
        raise ParamsError(f"parameter {name} is empty; give comma-separated integers such as '42,43,44'")
    for item in items:
        try:
            int(item)
        except ValueError:
            raise ParamsError(f"parameter {name} has {item!r}, which is not an integer; example: '42,43,44'") from None


def _float_list_or_empty(name: str, value: Any) -> None:
    for item in split_csv(value):
        try:
            if float(item) <= 0:
                raise ValueError
        except ValueError:
            raise ParamsError(f"parameter {name} has {item!r}; give positive numbers such as '1e-4,1e-3', or '' for none") from None


def _positive(name: str, value: Any) -> None:
    if value <= 0:
        raise ParamsError(f"parameter {name}={value!r} must be > 0")


def _non_negative(name: str, value: Any) -> None:
    if value < 0:
        raise ParamsError(f"parameter {name}={value!r} must be >= 0")


def _benchmark(name: str, value: Any) -> None:
    # A folder path is a benchmark too (MAIR or BEIR layout); anything else must be a known name.
    if isinstance(value, str) and Path(value).is_dir():
        return
    _choice(BENCHMARKS)(name, value)


def _model(name: str, value: Any) -> None:
    from era_core.encoders import REGISTRY

    if value not in REGISTRY:
        raise ParamsError(f"parameter {name}={value!r} is not a known model; allowed values: {', '.join(REGISTRY)}")


def _model_list(name: str, value: Any) -> None:
    for item in split_csv(value):
        _model(name, item)


def parse_pairs(value: str, name: str = "pairs") -> list[tuple[str, str]]:
    """Parse ``'large>small,large>small'`` into (large, small) registry-key pairs."""
    from era_core.encoders import REGISTRY

    pairs = []
    for item in split_csv(value):
        large, sep, small = (x.strip() for x in item.partition(">"))
        if not sep or large not in REGISTRY or small not in REGISTRY:
            raise ParamsError(f"parameter {name} has {item!r}; write 'large>small' with keys from: {', '.join(REGISTRY)}")
        pairs.append((large, small))
    if not pairs:
        raise ParamsError(f"parameter {name} is empty; give e.g. 'minilm-l6>minilm-l3-onnx'")
    return pairs


def _pairs(name: str, value: Any) -> None:
    parse_pairs(value, name)


def split_csv(value: Any) -> list[str]:
    """Split a comma-separated parameter string into stripped, non-empty items."""
    return [v.strip() for v in str(value).split(",") if v.strip()]


# ---------------------------------------------------------------- parameter groups

COMMON = {
    "seed": Param(int, 42, _non_negative, "seed for Python, NumPy and torch"),
    "benchmark": Param(str, "offline-smoke", _benchmark, "which benchmark: mair, offline, offline-smoke, or a MAIR-/BEIR-format folder"),
    "tasks": Param(str, "all", None, "'all' or comma-separated task names"),
    "large_model": Param(str, "minilm-l6", _model, "query-side (large) encoder key"),
    "small_model": Param(str, "minilm-l3-onnx", _model, "document-side (small) encoder key"),
    "max_length": Param(int, 128, _positive, "token truncation length for both encoders"),
    "batch_size": Param(int, 32, _positive, "encoding batch size"),
    "device": Param(str, "cpu", _choice(DEVICES), "torch device for encoding and training"),
    "dtype": Param(str, "auto", _choice(DTYPES), "encoder precision; auto: bf16 on CPUs with native bf16, else fp32"),
    "progress": Param(bool, True, None, "show progress bars"),
}
ALIGN = {
    "align_samples_per_task": Param(int, 1000, _positive, "Phase 1 documents sampled per task"),
    "align_eval_ratio": Param(float, 0.1, _ratio, "Phase 1 hold-out share"),
    "align_loss": Param(str, "cosine", _choice(ALIGN_LOSSES), "Phase 1 loss"),
    "align_lr": Param(float, 1e-3, _positive, "Phase 1 learning rate"),
    "align_weight_decay": Param(float, 0.01, _non_negative, "Phase 1 weight decay"),
    "align_batch_size": Param(int, 256, _positive, "Phase 1 batch size"),
    "align_epochs": Param(int, 20, _non_negative, "Phase 1 epochs"),
    "align_init": Param(str, "default", _choice(ALIGN_INITS), "Phase 1 start: PyTorch default init, closed-form ridge, or orthogonal Procrustes (equal dims only)"),
}
LABEL = {
    "val_ratio": Param(float, 0.1, _ratio, "validation share of each task's labelled queries"),
    "eval_ratio": Param(float, 0.5, _ratio, "test share of each task's labelled queries"),
    "label_lr": Param(float, 1e-4, _positive, "Phase 2 learning rate"),
    "label_lr_grid": Param(str, "", _float_list_or_empty,
                           "if set, pick label_lr per method from these values by validation loss ('' = use label_lr)"),
    "label_weight_decay": Param(float, 1e-4, _non_negative, "Phase 2 weight decay"),
    "label_batch_size": Param(int, 256, _positive, "Phase 2 batch size"),
    "label_epochs": Param(int, 100, _positive, "Phase 2 maximum epochs (also the schedule's budget)"),
    "label_patience": Param(int, 5, _positive, "early-stopping patience in epochs"),
    "label_schedule": Param(str, "reference", _choice(SCHEDULES), "Phase 2 learning-rate schedule"),
    "warmup_ratio": Param(float, 0.1, _non_negative, "warm-up share of the step budget"),
    "temperature": Param(float, 0.05, _positive, "InfoNCE temperature"),
    "num_negatives": Param(int, 5, _positive, "negatives per training query"),
    "negative_strategy": Param(str, "topk_percpos", _choice(NEG_STRATEGIES), "negative mining strategy"),
    "hard_negative_top_k": Param(int, 2000, _positive, "candidate pool for hard negatives"),
    "hard_negative_margin": Param(float, 0.95, _ratio, "negatives must score below margin x positive"),
    "in_batch_negatives": Param(bool, False, None, "also use in-batch negatives (off in the reference)"),
}
SWEEP = {
    "methods": Param(str, "era,label_only,alignment_only,small_adapter", _csv_choice(METHODS), "methods to train"),
    "train_ratios": Param(str, "0.1,0.4", _ratio_list, "comma-separated train ratios"),
    "seeds": Param(str, "42", _int_list, "comma-separated seeds (seed 42 is the reference's split)"),
    "instruction_settings": Param(str, "native", _csv_choice(INSTRUCTION_SETTINGS),
                                  "instruction settings, the headline first: native (each encoder instructed only "
                                  "if trained on instructions, as the reference) and/or forced (the template on "
                                  "every encoder: a stress test)"),
}
#: The in-domain sweep's extra cells (03_training).
SWEEP_EXTRA = {
    "stress_ratios": Param(str, "", _ratio_list_or_empty,
                           "train ratios of the instruction settings after the first ('' = all of train_ratios)"),
    "remine_ratios": Param(str, "", _ratio_list_or_empty,
                           "train ratios at which the headline setting also runs each Phase 2 method's re-mined "
                           "variant (<method>+remine; '' = none)"),
}
INSTRUCTIONS = Param(str, "native", _choice(INSTRUCTION_SETTINGS),
                     "instruction setting: native (as the reference) or forced (the template on every encoder)")
PROTOCOL = {
    "methods": Param(str, "era", _csv_choice(METHODS), "methods to train"),
    "train_ratio": Param(float, 0.4, _ratio, "train ratio of the training tasks"),
    "seeds": Param(str, "42", _int_list, "comma-separated seeds"),
    "instructions": INSTRUCTIONS,
    "domains": Param(str, "all", None, "'all' or comma-separated domains to hold out / train on"),
}

ALIGN_SOURCES = ("task_docs", "corpus_pool", "train_queries", "all_texts")
#: The Phase 1 scaling study of 02_alignment (era_core.paper.scaling).
ALIGN_SCALING = {
    "run_scaling": Param(bool, True, None, "run the Phase 1 scaling study (text sources x sizes x solvers)"),
    "align_sources": Param(str, "task_docs,corpus_pool,train_queries", _csv_choice(ALIGN_SOURCES),
                           "Phase 1 text sources of the study: task_docs (the reference), corpus_pool (unused "
                           "source texts, offline only), train_queries (train-split query texts, no labels), "
                           "all_texts (a diagnostic ceiling: every document and every query text, test queries "
                           "included, no labels)"),
    "align_sizes": Param(str, "200,400", _int_list, "numbers of identical-text pairs drawn per source (nested, "
                                                    "capped by what the source has)"),
    "align_sample_seed": Param(int, 42, _non_negative, "seed of the nested sample order (fixed across seeds, so "
                                                       "texts are encoded once)"),
    "scaling_inits": Param(str, "default,ridge,procrustes", _csv_choice(ALIGN_INITS),
                           "Phase 1 solvers: AdamW from the default init, closed-form ridge, Procrustes (equal dims)"),
    "scaling_ratio": Param(float, 0.4, _ratio, "train ratio of the downstream ERA runs"),
    "scaling_seeds": Param(str, "42", _int_list, "seeds of the study (each redraws hold-out, split and Phase 2)"),
    "instructions": INSTRUCTIONS,
}

#: Parameters every notebook of a profile shares: set once, in ``params/<profile>/shared.yaml``; a notebook
#: declares only its own (the rest of its schema).
SHARED = (*COMMON, *ALIGN, *LABEL)
SHARED_FILE = "shared.yaml"

SCHEMAS: dict[str, dict[str, Param]] = {
    "00_quickstart": {
        **{k: COMMON[k] for k in ("seed", "benchmark", "large_model", "small_model", "max_length", "device", "dtype")},
        "task": Param(str, "", None, "task to search ('' = first task of the benchmark)"),
        "query": Param(str, "", None, "query text ('' = a test query of the task)"),
        "run_dir": Param(str, "", None, "run folder of a trained adapter ('' = the largest-ratio ERA run of 03_training; "
                                        "a relative path starts at the repository root)"),
        "top_k": Param(int, 10, _positive, "documents shown per method"),
    },
    "01_zero_shot": {
        **COMMON,
        "extra_models": Param(str, "", _model_list, "other encoders scored zero-shot (comma-separated keys)"),
        "instruction_settings": SWEEP["instruction_settings"],
        "seeds": SWEEP["seeds"],
        "eval_ratio": LABEL["eval_ratio"],
    },
    "02_alignment": {**COMMON, **ALIGN, **LABEL, **ALIGN_SCALING},
    "03_training": {**COMMON, **ALIGN, **LABEL, **SWEEP, **SWEEP_EXTRA},
    "04_lodo": {**COMMON, **ALIGN, **LABEL, **PROTOCOL},
    "05_domain_specific": {**COMMON, **ALIGN, **LABEL, **PROTOCOL},
    "07_encoder_pairs": {
        **{k: v for k, v in COMMON.items() if k not in ("large_model", "small_model")},
        "pairs": Param(str, "minilm-l6>minilm-l3-onnx", _pairs, "encoder pairs 'large>small', comma-separated"),
        **ALIGN, **LABEL,
        "methods": Param(str, "era,small_adapter", _csv_choice(METHODS), "methods to train per pair"),
        "train_ratios": SWEEP["train_ratios"],
        "seeds": SWEEP["seeds"],
        "instruction_settings": SWEEP["instruction_settings"],
    },
    "08_alignment_ladder": {
        **{k: v for k, v in COMMON.items() if k != "small_model"},
        **ALIGN, **LABEL,
        "ladder_dims": Param(str, "64,128", _int_list, "index widths: the query model truncated to its first k dims"),
        "ladder_sizes": Param(str, "250,1000", _int_list, "Phase 1 pair counts of the fitted rungs (the 'all' and "
                                                           "'exact' rungs always run)"),
        "align_sample_seed": ALIGN_SCALING["align_sample_seed"],
        "train_ratios": Param(str, "0.1,0.4", _ratio_list, "train ratios of ERA, the control and fused"),
        "seeds": SWEEP["seeds"],
        "instructions": INSTRUCTIONS,
    },
    "06_figures": {
        "bar_ratio": Param(float, 0.4, _ratio, "train ratio shown in the per-domain bar chart"),
        "main_instructions": Param(str, "native", _choice(INSTRUCTION_SETTINGS), "instruction setting of the main table"),
    },
}


def _type_ok(expected: type, value: Any) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def profile_name() -> str:
    """The profile whose shared parameters a notebook reads: ``ERA_PROFILE`` (set by ``make``), else ``default``."""
    name = os.environ.get("ERA_PROFILE") or "default"
    if not (paths.PARAMS / name).is_dir():
        raise ParamsError(f"ERA_PROFILE={name!r} names no folder under {paths.PARAMS}; use smoke, default or paper")
    return name


def shared_params(profile: str) -> dict[str, Any]:
    """The parameters every notebook of ``profile`` shares (``params/<profile>/shared.yaml``), unchecked."""
    path = paths.PARAMS / profile / SHARED_FILE
    data = _read_yaml(path)
    stray = sorted(set(data) - set(SHARED))
    if stray:
        raise ParamsError(f"{path} sets {stray}, which are no shared parameters; move them to a notebook's own file")
    return data


def validate(notebook: str, values: dict[str, Any], *, partial: bool = False, profile: str | None = None,
             ) -> dict[str, Any]:
    """Check parameter names, types and values for ``notebook``; return the full, typed parameter dict.

    A parameter's value is, from the strongest: ``values`` (a notebook's ``globals()``, which hold papermill's
    ``-p`` and ``-f`` values over the notebook's literals; only declared names are read), the profile's
    shared file (``profile``, default ``profile_name()``), the schema's default. With ``partial=True`` (a
    params file) unknown keys are errors.
    """
    if notebook not in SCHEMAS:
        raise ParamsError(f"unknown notebook {notebook!r}; known notebooks: {', '.join(SCHEMAS)}")
    schema = SCHEMAS[notebook]
    shared = shared_params(profile or profile_name())
    if partial:
        unknown = sorted(set(values) - set(schema))
        if unknown:
            raise ParamsError(
                f"unknown parameter(s) {unknown} for notebook {notebook}; allowed parameters: {', '.join(schema)}"
            )
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        value = values[name] if name in values else shared.get(name, spec.default)
        if not _type_ok(spec.type, value):
            raise ParamsError(
                f"parameter {name}={value!r} has type {type(value).__name__}; {notebook} expects {spec.type.__name__}"
            )
        if spec.type is float:
            value = float(value)
        if spec.check is not None:
            spec.check(name, value)
        out[name] = value
    _check_cross(notebook, out)
    return out


def _check_cross(notebook: str, p: dict[str, Any]) -> None:
    ratios = [float(r) for r in split_csv(p["train_ratios"])] if "train_ratios" in p else []
    ratios += [float(r) for r in split_csv(p.get("stress_ratios", "")) + split_csv(p.get("remine_ratios", ""))]
    if "train_ratio" in p:
        ratios.append(p["train_ratio"])
    if "val_ratio" in p:
        for r in ratios:
            total = r + p["val_ratio"] + p["eval_ratio"]
            if total > 1 + 1e-9:
                raise ParamsError(
                    f"train_ratio {r} + val_ratio {p['val_ratio']} + eval_ratio {p['eval_ratio']} = {total:g} > 1; "
                    "lower the train ratio (with the defaults val 0.1 and eval 0.5 the largest is 0.4)"
                )
    if "benchmark" in p and "tasks" in p:
        resolve_tasks(p["benchmark"], p["tasks"])  # refuses unknown tasks before any work
    if "domains" in p:
        resolve_domains(p["benchmark"], p["tasks"], p["domains"], notebook)


def resolve_domains(benchmark: str, tasks: str, domains: str, notebook: str = "") -> list[str]:
    """Turn the ``domains`` parameter into the list of domains that have tasks in the selection."""
    from era_core.data import DOMAINS, list_tasks

    table = list_tasks(benchmark)
    selected = resolve_tasks(benchmark, tasks)
    present = [d for d in DOMAINS if any(table[t] == d for t in selected)]
    if domains.strip() == "all":
        chosen = present
    else:
        chosen = split_csv(domains)
        bad = [d for d in chosen if d not in DOMAINS]
        if bad:
            raise ParamsError(f"unknown domain(s) {bad}; allowed values: {', '.join(DOMAINS)}")
        empty = [d for d in chosen if d not in present]
        if empty:
            raise ParamsError(
                f"domain(s) {empty} have no tasks in the selected tasks of {benchmark}; domains with tasks: {', '.join(present)}"
            )
    if notebook == "04_lodo" and len(present) < 2:
        raise ParamsError(f"leave-one-domain-out needs tasks from at least 2 domains; the selection has {present}")
    if not chosen:
        raise ParamsError(f"no domain has tasks in the selection of {benchmark}")
    return chosen


def _strict_yaml_loader() -> type:
    """A safe YAML loader that refuses a key given twice (plain YAML keeps the last one silently)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"parameter {key!r} is given twice (lines {seen[key] + 1} and "
                        f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
                seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def _read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping (a key given twice is refused), or a ``ParamsError`` that says what is wrong with the file."""
    import yaml

    if not path.exists():
        raise ParamsError(f"parameter file {path} does not exist; create it or pick a profile under params/")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_strict_yaml_loader())
    except yaml.YAMLError as exc:
        raise ParamsError(f"parameter file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"parameter file {path} must hold a mapping of name: value, not {type(data).__name__}")
    return data


def load_params_file(path: Path | str, notebook: str) -> dict[str, Any]:
    """Read a notebook's papermill YAML file and validate it over its profile's shared file: the folder's profile for
    ``params/<profile>/<notebook>.yaml``, else ``profile_name()`` (``ERA_PROFILE``, or ``default``)."""
    path = Path(path)
    data = _read_yaml(path)
    inside = path.resolve().parent.parent == paths.PARAMS.resolve()
    try:
        return validate(notebook, data, partial=True, profile=path.parent.name if inside else None)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
