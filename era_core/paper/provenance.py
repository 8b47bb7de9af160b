"""Provenance: what machine a result came from (CPU model and ISA, BLAS, library versions, bf16 autocast), and what
a query costs each encoder, timed on the encoder itself.

Results are byte-identical only within one CPU kernel family (the BLAS and oneDNN kernels pick
their code path from the ISA), so every ``summary.json`` and the datasheet record
:func:`describe`. Thread counts and file paths are left out on purpose: they change with the
environment, not with the kernels, and would make identical results differ.

The query cost: the zero-shot protocol reads query vectors through the cache, so timing it measures
cache hits on every run after the first. The cost-quality figure needs what a deployment pays per
query: a fixed, deterministic sample of labelled queries (instructed as each model's instruction
setting says) is encoded directly, after a warm-up that keeps model loading out, and the best of a
few repeats is kept. Timings live in ``results/timing/``, apart from the results.

``python -m era_core.paper.provenance`` prints the machine's description as JSON.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from era_core.errors import DataError

UNKNOWN = "unknown"
#: ISA flags that decide which matmul kernels run (and so which bits come out), in report order.
ISA_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
CPUINFO = Path("/proc/cpuinfo")


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model name and the :data:`ISA_FLAGS` of a ``/proc/cpuinfo`` text (first processor block)."""
    model, flags = None, None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        # x86 says "model name"/"flags"; arm64 kernels say "Features" and may omit the model name.
        if model is None and key in ("model name", "Model", "cpu model"):
            model = value.strip() or None
        elif flags is None and key in ("flags", "Features"):
            flags = set(value.split())
        if model is not None and flags is not None:
            break
    return {
        "cpu_model": model or UNKNOWN,
        "isa": {f: (f in flags) if flags is not None else UNKNOWN for f in ISA_FLAGS},
    }


def _cpu() -> dict[str, Any]:
    """Model and ISA from /proc/cpuinfo on Linux; elsewhere what the platform says, the rest "unknown"."""
    if CPUINFO.is_file():
        try:
            info = parse_cpuinfo(CPUINFO.read_text(errors="replace"))
            info["cpu_source"] = str(CPUINFO)
            return info
        except OSError:
            pass
    model = platform.processor() or UNKNOWN
    return {"cpu_model": model, "isa": {f: UNKNOWN for f in ISA_FLAGS}, "cpu_source": "platform.processor()"}


def _blas() -> list[dict[str, Any]]:
    """NumPy's BLAS (threadpoolctl): name, version, threading layer and the kernel it picked for this CPU.

    Only libraries inside NumPy's own install (its wheel's ``numpy.libs``) are listed, so that a
    BLAS that another package happened to load earlier (faiss, SciPy) cannot change the
    description; a NumPy linked to a system BLAS has none there, and then every BLAS loaded is listed.
    """
    import numpy
    from threadpoolctl import threadpool_info

    site = Path(numpy.__file__).resolve().parent.parent
    own = (site / "numpy", site / "numpy.libs")
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    mine = [p for p in pools if any(Path(p.get("filepath") or "").resolve().is_relative_to(d) for d in own)]
    out = [{
        "library": pool.get("internal_api") or UNKNOWN,
        "prefix": pool.get("prefix") or UNKNOWN,
        "version": pool.get("version") or UNKNOWN,
        "threading_layer": pool.get("threading_layer") or UNKNOWN,
        "architecture": pool.get("architecture") or UNKNOWN,
    } for pool in (mine or pools)]
    return sorted(out, key=lambda p: (p["library"], p["prefix"], p["version"]))


def _torch_build() -> dict[str, str]:
    """torch's own BLAS, oneDNN version and the CPU kernel family it dispatches to."""
    import torch

    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=([^,\s]+)", config)
    onednn = re.search(r"MKL-DNN (v[\d.]+)", config)
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:  # older torch
        capability = UNKNOWN
    return {"torch_blas": blas.group(1) if blas else UNKNOWN,
            "torch_onednn": onednn.group(1) if onednn else UNKNOWN,
            "torch_cpu_capability": capability}


def describe() -> dict[str, Any]:
    """This machine's CPU, ISA flags, cores, BLAS, torch/NumPy versions and bf16 autocast use; fixed key order."""
    import numpy
    import torch

    from era_core.encoders import cpu_has_native_bf16

    cpu = _cpu()
    torch_build = _torch_build()
    return {
        "system": platform.system() or UNKNOWN,
        "machine": platform.machine() or UNKNOWN,
        "cpu_model": cpu["cpu_model"],
        "cpu_source": cpu["cpu_source"],
        "isa": cpu["isa"],
        "logical_cores": os.cpu_count() or UNKNOWN,
        "blas": _blas(),
        "torch_blas": torch_build["torch_blas"],
        "torch_onednn": torch_build["torch_onednn"],
        "torch_cpu_capability": torch_build["torch_cpu_capability"],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        # What `dtype: auto` does for transformers encoders on this CPU: bf16 autocast when native bf16 exists.
        "cpu_bf16_autocast": bool(cpu_has_native_bf16()),
    }


def as_markdown(info: dict[str, Any] | None = None) -> str:
    """The :func:`describe` record as a short Markdown list (for the datasheet)."""
    info = describe() if info is None else info
    isa = ", ".join(f"{k} {'yes' if v is True else 'no' if v is False else v}" for k, v in info["isa"].items())
    blas = "; ".join(f"{b['library']} {b['version']} ({b['threading_layer']}, {b['architecture']})" for b in info["blas"])
    return "\n".join([
        f"- CPU: {info['cpu_model']} ({info['machine']}, {info['logical_cores']} logical cores)",
        f"- ISA: {isa}",
        f"- NumPy BLAS: {blas or UNKNOWN}; torch BLAS {info['torch_blas']}, oneDNN {info['torch_onednn']}, "
        f"kernels {info['torch_cpu_capability']}",
        f"- torch {info['torch']}, NumPy {info['numpy']}; bf16 autocast for `dtype: auto`: "
        f"{'yes' if info['cpu_bf16_autocast'] else 'no'}",
    ]) + "\n"



@functools.lru_cache(maxsize=1)
def machine() -> dict[str, Any]:
    """``describe()`` of this process's machine (read once)."""
    return describe()


def query_sample(units: Sequence[Any], n: int) -> tuple[list[str], list[str]]:
    """The first ``n`` labelled queries taken round-robin over the units, and their instructions ('' if none)."""
    per_unit = [[(u.queries[q], u.instructions.get(q, "")) for q in u.labelled_qids()] for u in units]
    picked: list[tuple[str, str]] = []
    for i in range(max((len(p) for p in per_unit), default=0)):
        picked += [p[i] for p in per_unit if i < len(p)]
        if len(picked) >= n:
            break
    if not picked:
        raise DataError("no labelled query to time; the benchmark's units hold no labelled queries")
    picked = picked[:n]
    return [t for t, _ in picked], [i for _, i in picked]


def measure_query_cost(encoders: Mapping[str, Any], texts: list[str], instructions: list[str], setting: str, *,
                       batch_size: int = 32, repeats: int = 3) -> dict[str, float]:
    """Milliseconds per query of each encoder on ``texts`` under the instruction ``setting``: best of
    ``repeats`` direct encodes after a warm-up."""
    from era_core.instructions import query_instructions

    out: dict[str, float] = {}
    for key, enc in encoders.items():
        formatted = enc.format_queries(texts, query_instructions(enc.spec, setting, instructions))
        enc.encode(formatted[: min(len(formatted), batch_size)], batch_size=batch_size, progress=False)  # warm-up
        best = float("inf")
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            enc.encode(formatted, batch_size=batch_size, progress=False)
            best = min(best, time.perf_counter() - t0)
        out[key] = 1000.0 * best / len(formatted)
    return out


def main() -> int:
    """Print :func:`describe` as JSON."""
    print(json.dumps(describe(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
