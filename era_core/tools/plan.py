"""Dry run of ``make paper``: what a profile would encode, how much cache it needs, how long it takes.

    python -m era_core.tools.plan --profile paper       (also: DRY_RUN=1 make paper PROFILE=paper; make dry-run)

Nothing is loaded: no model, no hub, no dataset download. Text counts are exact for the offline
profiles (read from the built benchmark) and come from MAIR's published totals for ``mair``.

Which texts each encoder sees, as the notebooks are written:
- queries: the labelled queries of every unit, once per instruction setting any notebook uses;
- corpus: every document of every unit, for each model ``01_zero_shot`` scores (it scores the
  large model large→large too, so it encodes the full corpus with it; ERA_METHOD.md §9.11);
- Phase 1 sample: ``min(align_samples_per_task, N_docs)`` documents per unit. ``02_alignment``
  encodes it with the large model only when the full-corpus entry is absent, so in the configured
  pipeline it costs nothing extra; the "ERA minimum" rows show what ERA alone needs (large model:
  queries + sample; small model: queries + corpus).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from era_core import paths
from era_core.errors import EraError, ParamsError

PROFILES = ("smoke", "default", "paper")
NOTEBOOKS = ("00_quickstart", "01_zero_shot", "02_alignment", "03_training", "04_lodo", "05_domain_specific",
             "06_figures")

#: MAIR totals from the MAIR paper (ERA_METHOD.md §10; MAIR.md). Per-task sizes are not known offline.
MAIR_QUERIES = 10_038
MAIR_DOCS = 4_274_916

#: Measured CPU throughput (texts per second) of the bundled models. Provenance: measured by the
#: project lead on the development machine (2 CPU cores, no GPU), max_length 128, batch size 32,
#: offline-benchmark documents and instructed queries (the paper profile at scale).
CPU_THROUGHPUT: dict[str, dict[str, float]] = {
    "minilm-l6": {"docs_per_s": 52.0, "queries_per_s": 203.0},
    "minilm-l3-onnx": {"docs_per_s": 123.0, "queries_per_s": 347.0},
}


@dataclass(frozen=True)
class GpuAssumption:
    """An explicit, unmeasured estimate of GPU encoding speed: FLOPs = 2 x params x tokens.

    Replace these numbers with the throughput ``make gpu-check`` reports on the target GPU.
    """

    gpu: str = "H100 SXM"
    peak_tflops: float = 989.0  # dense bf16/fp16 peak from NVIDIA's H100 SXM datasheet
    utilisation: float = 0.35  # assumed model-FLOPs utilisation of length-bucketed inference batches
    doc_tokens: int = 500  # assumed mean MAIR document length after truncation (not measured)
    query_tokens: int = 100  # assumed mean instructed query length (not measured)
    note: str = ("estimate, not a measurement: attention FLOPs, padding and data loading are ignored; "
                 "replace with `make gpu-check` numbers")


@dataclass(frozen=True)
class Counts:
    """Texts of one benchmark selection."""

    units: int
    queries: int  # labelled queries
    docs: int
    sample: int  # Phase 1 sample, summed over units
    exact: bool
    note: str = ""


@dataclass(frozen=True)
class EncoderLoad:
    """What one encoder encodes under one scenario, with cache size and time."""

    model: str
    role: str  # "large", "small", "extra" or "pair (<notebook>)"
    scenario: str  # "configured" or "era-minimum"
    dim: int
    queries: int
    docs: int
    cache_bytes: int
    hours: float | None
    hours_kind: str  # "cpu-hours (measured throughput)", "gpu-hours (FLOP estimate)", "api"


# ----------------------------------------------------------------------------- profile


def load_profile(profile: str) -> dict[str, dict[str, Any]]:
    """Validated parameters of every notebook of a profile (reads params/<profile>/*.yaml only)."""
    from era_core.paper.params import load_params_file

    if profile not in PROFILES:
        raise ParamsError(f"unknown profile {profile!r}; allowed values: {', '.join(PROFILES)}")
    from era_core.paper.params import SCHEMAS

    # The core notebooks always; any later notebook that has both a schema and a params file too.
    names = list(NOTEBOOKS) + sorted(nb for nb in SCHEMAS if nb not in NOTEBOOKS
                                     and (paths.PARAMS / profile / f"{nb}.yaml").is_file())
    return {nb: load_params_file(paths.PARAMS / profile / f"{nb}.yaml", nb) for nb in names}


def model_dim(key: str) -> int:
    """Embedding dimension of a registry or API model key (no loading)."""
    from era_core.encoders import REGISTRY
    from era_core.encoders.openai_api import API_MODELS

    if key in API_MODELS:
        return API_MODELS[key].dim
    return REGISTRY[key].dim


def model_params(key: str) -> int:
    """Parameter count of a registry model (0 for API models)."""
    from era_core.encoders import REGISTRY
    from era_core.encoders.openai_api import API_MODELS

    return 0 if key in API_MODELS else int(REGISTRY[key].params)


def count_texts(benchmark: str, tasks: list[str], samples_per_task: int) -> Counts:
    """Labelled queries, documents and Phase 1 sample size of a selection, without loading any model."""
    if benchmark == "mair":
        from era_core.data import MAIR_TASKS

        n = len(tasks)
        if n == len(MAIR_TASKS):
            return Counts(units=n, queries=MAIR_QUERIES, docs=MAIR_DOCS, sample=min(n * samples_per_task, MAIR_DOCS),
                          exact=False, note=("MAIR's published totals; the Phase 1 sample is an upper bound "
                                             f"({n} tasks x {samples_per_task}; multi-split tasks add up to "
                                             f"{samples_per_task} per extra sub-split)"))
        share = n / len(MAIR_TASKS)
        return Counts(units=n, queries=round(MAIR_QUERIES * share), docs=round(MAIR_DOCS * share),
                      sample=n * samples_per_task, exact=False,
                      note=f"{n} of {len(MAIR_TASKS)} tasks: MAIR totals scaled by task share (sizes vary a lot)")
    from era_core.data import load_mair_task
    from era_core.data.offline import SMOKE_CAPS, DEFAULT_CAPS, default_root, is_complete, offline_task_table

    smoke = benchmark == "offline-smoke"
    root = default_root(smoke)
    table = list(offline_task_table(smoke))
    if not is_complete(root, SMOKE_CAPS if smoke else DEFAULT_CAPS, table):
        return Counts(0, 0, 0, 0, exact=False,
                      note=f"benchmark {benchmark} is not built yet at {root}; `make paper` builds it first")
    units = [u for t in tasks for u in load_mair_task(t, root).units()]
    return Counts(units=len(units), queries=sum(len(u.qrels) for u in units),
                  docs=sum(len(u.corpus) for u in units),
                  sample=sum(min(samples_per_task, len(u.corpus)) for u in units), exact=True)


def _hours(model: str, queries: int, docs: int, device: str, gpu: GpuAssumption) -> tuple[float | None, str]:
    from era_core.encoders.openai_api import API_MODELS

    if model in API_MODELS:
        return None, "api (billed per token, not estimated)"
    if device == "cpu" and model in CPU_THROUGHPUT:
        t = CPU_THROUGHPUT[model]
        return (docs / t["docs_per_s"] + queries / t["queries_per_s"]) / 3600, "cpu-hours (measured, 2 cores)"
    flops = 2.0 * model_params(model) * (docs * gpu.doc_tokens + queries * gpu.query_tokens)
    return flops / (gpu.peak_tflops * 1e12 * gpu.utilisation) / 3600, f"gpu-hours ({gpu.gpu}, FLOP estimate)"


def _training_settings(p: dict[str, dict[str, Any]]) -> set[str]:
    """Instruction settings any training notebook uses (03's list, 04's and 05's setting)."""
    from era_core.paper.params import split_csv

    return set(split_csv(p["03_training"]["instruction_settings"])) | {
        p[nb]["instructions"] for nb in ("04_lodo", "05_domain_specific")}


def _pair_models(p: dict[str, dict[str, Any]], counted: set[str], counts: Any) -> list[tuple[str, str, int]]:
    """``(notebook, model, documents)`` of encoder-pair models not counted yet ("large>small,..." params).

    The small side encodes queries + corpus, the large side queries + the Phase 1 sample.
    """
    from era_core.paper.params import split_csv

    out, counted = [], set(counted)
    for nb, params in p.items():
        for pair in split_csv(params.get("pairs", "")):
            q_model, _, d_model = pair.partition(">")
            for model, docs in ((d_model.strip(), counts.docs), (q_model.strip(), counts.sample)):
                if model and model not in counted:
                    counted.add(model)
                    out.append((nb, model, docs))
    return out


def build_plan(profile: str, gpu: GpuAssumption | None = None) -> dict[str, Any]:
    """The whole dry-run plan of a profile as a JSON-friendly dict."""
    from era_core.data import list_tasks
    from era_core.paper.params import resolve_tasks, split_csv

    gpu = gpu or GpuAssumption()
    p = load_profile(profile)
    z, a = p["01_zero_shot"], p["02_alignment"]
    benchmark = z["benchmark"]
    tasks = resolve_tasks(benchmark, z["tasks"])
    table = list_tasks(benchmark)
    by_domain: dict[str, list[str]] = {}
    for t in tasks:
        by_domain.setdefault(table[t], []).append(t)
    train_settings = _training_settings(p)
    settings = set(split_csv(z["instruction_settings"])) | train_settings
    counts = count_texts(benchmark, tasks, a["align_samples_per_task"])
    large, small = z["large_model"], z["small_model"]
    extras = [m for m in split_csv(z["extra_models"]) if m not in (large, small)]
    device = z["device"]
    mismatched = sorted(nb for nb in NOTEBOOKS if "benchmark" in p[nb] and (
        p[nb]["benchmark"], p[nb].get("tasks", z["tasks"]), p[nb]["large_model"], p[nb]["small_model"])
        != (benchmark, z["tasks"], large, small))

    def load(model: str, role: str, scenario: str, n_query_settings: int, docs: int) -> EncoderLoad:
        q = counts.queries * n_query_settings
        dim = model_dim(model)
        hours, kind = _hours(model, q, docs, device, gpu)
        return EncoderLoad(model, role, scenario, dim, q, docs, (q + docs) * dim * 4, hours, kind)

    z_settings = len(set(split_csv(z["instruction_settings"])))
    loads = [load(large, "large", "configured", len(settings), counts.docs),
             load(small, "small", "configured", len(settings), counts.docs)]
    loads += [load(m, "extra", "configured", z_settings, counts.docs) for m in extras]
    loads += [load(model, f"pair ({nb})", "configured", 1, docs)
              for nb, model, docs in _pair_models(p, {large, small, *extras}, counts)]
    loads += [load(large, "large", "era-minimum", len(train_settings), counts.sample),
              load(small, "small", "era-minimum", len(train_settings), counts.docs)]
    return {
        "profile": profile,
        "notebooks": {nb: {"params_file": str(Path("params") / profile / f"{nb}.yaml"), "params": p[nb]}
                      for nb in p},
        "benchmark": benchmark,
        "tasks_by_domain": by_domain,
        "n_tasks": len(tasks),
        "instruction_settings": sorted(settings),
        "device": device,
        "counts": asdict(counts),
        "encoders": [asdict(x) for x in loads],
        "gpu_assumption": asdict(gpu),
        "cpu_throughput": CPU_THROUGHPUT,
        "warnings": ([f"notebooks {mismatched} use another benchmark/tasks/model pair than 01_zero_shot; "
                      "counts follow 01_zero_shot"] if mismatched else []),
    }


# ----------------------------------------------------------------------------- text output


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:,.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:,.1f} MB"


def format_plan(plan: dict[str, Any]) -> str:
    """Human-readable rendering of ``build_plan``'s result."""
    out = [f"make paper PROFILE={plan['profile']} (dry run: nothing is loaded, downloaded or encoded)", ""]
    out.append("Notebooks and parameters:")
    for nb, info in plan["notebooks"].items():
        params = " ".join(f"{k}={v}" for k, v in info["params"].items())
        out.append(f"  {nb}  ({info['params_file']})")
        out += textwrap.wrap(params, width=100, initial_indent="      ", subsequent_indent="      ")
    out.append("")
    out.append(f"Benchmark {plan['benchmark']}: {plan['n_tasks']} tasks in {len(plan['tasks_by_domain'])} domains "
               f"(device {plan['device']}, query instruction settings: {', '.join(plan['instruction_settings'])})")
    for domain, names in plan["tasks_by_domain"].items():
        out += textwrap.wrap(", ".join(names), width=100, initial_indent=f"  {domain} ({len(names)}): ",
                             subsequent_indent="      ")
    c = plan["counts"]
    out.append("")
    out.append(f"Texts ({'exact, from the built benchmark' if c['exact'] else 'estimated'}): {c['units']} units, "
               f"{c['queries']:,} labelled queries, {c['docs']:,} documents, Phase 1 sample {c['sample']:,}")
    if c["note"]:
        out.append(f"  note: {c['note']}")
    out.append("")
    rw = max([4] + [len(e["role"]) for e in plan["encoders"]])
    header = f"  {'scenario':<12} {'model':<15} {'role':<{rw}} {'dim':>5} {'queries':>12} {'docs':>12} {'cache':>11}  time"
    out.append("Per encoder (queries counted once per instruction setting; cache = n x dim x 4 bytes):")
    out.append(header)
    total: dict[str, int] = {}
    for e in plan["encoders"]:
        if e["hours"] is None:
            t = e["hours_kind"]
        else:
            amount = f"{e['hours']:,.2f} h" if e["hours"] >= 1 else f"{e['hours'] * 60:,.1f} min"
            t = f"{amount} {e['hours_kind'].replace('-hours', '')}"
        out.append(f"  {e['scenario']:<12} {e['model']:<15} {e['role']:<{rw}} {e['dim']:>5} {e['queries']:>12,} "
                   f"{e['docs']:>12,} {_gb(e['cache_bytes']):>11}  {t}")
        total[e["scenario"]] = total.get(e["scenario"], 0) + e["cache_bytes"]
    out.append("  total cache: " + ", ".join(f"{k} {_gb(v)}" for k, v in total.items()))
    g = plan["gpu_assumption"]
    out.append("")
    out.append(f"GPU time assumption ({g['note']}): {g['gpu']} {g['peak_tflops']:g} TFLOP/s peak x "
               f"{g['utilisation']:g} utilisation, {g['doc_tokens']} tokens/doc, {g['query_tokens']} tokens/query, "
               "FLOPs = 2 x params x tokens.")
    out.append("CPU throughput (measured on the 2-core development machine, max_length 128): "
               + "; ".join(f"{m} {v['docs_per_s']:g} docs/s, {v['queries_per_s']:g} queries/s"
                           for m, v in plan["cpu_throughput"].items()))
    out.append("Training and evaluation are minutes by comparison (ERA_METHOD.md §10).")
    for w in plan["warnings"]:
        out.append(f"warning: {w}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI behind ``make dry-run`` and ``DRY_RUN=1 make paper``."""
    ap = argparse.ArgumentParser(prog="python -m era_core.tools.plan", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default", choices=PROFILES, help="parameter profile (default: %(default)s)")
    ap.add_argument("--json", action="store_true", help="print the plan as JSON")
    ap.add_argument("--gpu-tflops", type=float, default=GpuAssumption.peak_tflops, help="assumed peak TFLOP/s")
    ap.add_argument("--utilisation", type=float, default=GpuAssumption.utilisation, help="assumed FLOP utilisation")
    ap.add_argument("--doc-tokens", type=int, default=GpuAssumption.doc_tokens, help="assumed tokens per document")
    ap.add_argument("--query-tokens", type=int, default=GpuAssumption.query_tokens, help="assumed tokens per query")
    args = ap.parse_args(argv)
    try:
        if not (args.gpu_tflops > 0 and 0 < args.utilisation <= 1 and args.doc_tokens > 0 and args.query_tokens > 0):
            raise ParamsError("--gpu-tflops, --doc-tokens and --query-tokens must be > 0 and --utilisation in (0, 1]")
        gpu = GpuAssumption(peak_tflops=args.gpu_tflops, utilisation=args.utilisation, doc_tokens=args.doc_tokens,
                            query_tokens=args.query_tokens)
        plan = build_plan(args.profile, gpu)
    except EraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(plan, indent=2, sort_keys=True, default=str) + "\n" if args.json else format_plan(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
