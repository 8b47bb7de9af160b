"""era_core.paper.provenance: ISA flags parsed from /proc/cpuinfo texts, platform fallback, the real description; and
query cost, measured on the encoder, not through the cache."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest

from era_core.data import Task
from era_core.errors import DataError
from era_core.paper import provenance as hardware
from era_core.paper.provenance import measure_query_cost, query_sample

AMD_EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu vme de pse sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni
bugs\t\t: sysret_ss_attrs

processor\t: 1
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu amx_tile amx_bf16
"""

INTEL_XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
"""

# Flags that only contain a wanted flag as a substring must not count as that flag.
LOOKALIKE = """model name\t: Some CPU
flags\t\t: avx512fp16 avx2_extra amx_tile_x
"""


def test_amd_epyc_with_avx512_bf16_but_no_amx():
    info = hardware.parse_cpuinfo(AMD_EPYC)
    assert info["cpu_model"] == "AMD EPYC 9R14 96-Core Processor"
    # Only the first processor block counts (the second one's amx flags are ignored).
    assert info["isa"] == {"amx_bf16": False, "amx_tile": False, "avx512_bf16": True, "avx512f": True, "avx2": True}


def test_intel_xeon_with_amx():
    info = hardware.parse_cpuinfo(INTEL_XEON)
    assert info["cpu_model"] == "Intel(R) Xeon(R) Platinum 8488C"
    assert info["isa"] == {"amx_bf16": True, "amx_tile": True, "avx512_bf16": True, "avx512f": True, "avx2": True}
    assert list(info["isa"]) == list(hardware.ISA_FLAGS)


def test_substrings_of_flags_are_not_flags_and_missing_fields_are_unknown():
    info = hardware.parse_cpuinfo(LOOKALIKE)
    assert info["isa"] == {f: False for f in hardware.ISA_FLAGS}
    empty = hardware.parse_cpuinfo("processor\t: 0\n")
    assert empty["cpu_model"] == "unknown" and set(empty["isa"].values()) == {"unknown"}


def test_without_proc_cpuinfo_the_flags_say_unknown(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "no-cpuinfo")
    monkeypatch.setattr(hardware.platform, "processor", lambda: "")
    info = hardware.describe()
    assert info["cpu_model"] == "unknown" and info["cpu_source"] == "platform.processor()"
    assert info["isa"] == {f: "unknown" for f in hardware.ISA_FLAGS}


def test_real_description_has_every_key_in_a_fixed_order():
    import numpy
    import torch

    from era_core.encoders import cpu_has_native_bf16

    info = hardware.describe()
    assert list(info) == ["system", "machine", "cpu_model", "cpu_source", "isa", "logical_cores", "blas",
                          "torch_blas", "torch_onednn", "torch_cpu_capability", "torch", "numpy",
                          "cpu_bf16_autocast"]
    assert list(info["isa"]) == list(hardware.ISA_FLAGS)
    assert info["torch"] == torch.__version__ and info["numpy"] == numpy.__version__
    assert info["cpu_bf16_autocast"] is cpu_has_native_bf16()
    assert isinstance(info["logical_cores"], int) and info["logical_cores"] >= 1
    # NumPy's BLAS is loaded by describe() itself, so at least one BLAS is always named.
    assert info["blas"] and all(set(b) == {"library", "prefix", "version", "threading_layer", "architecture"}
                                for b in info["blas"])
    assert json.loads(json.dumps(info)) == info  # JSON-ready for summary.json
    # A second call gives the same description (nothing time- or thread-dependent in it), even with
    # fewer threads and after another package loaded a BLAS of its own.
    from threadpoolctl import threadpool_limits

    import faiss  # noqa: F401  (brings its own BLAS)

    with threadpool_limits(limits=1):
        assert hardware.describe() == info
    # The real description reads /proc/cpuinfo the same way the parser does.
    if hardware.CPUINFO.is_file():
        assert info["isa"] == hardware.parse_cpuinfo(hardware.CPUINFO.read_text())["isa"]


# ----------------------------------------------------------------------------- query cost


class SleepyEncoder:
    """Encodes in a known time per text and records what it was asked to encode."""

    def __init__(self, seconds_per_text: float, instructed: bool = False) -> None:
        self.seconds, self.calls = seconds_per_text, []
        self.spec = SimpleNamespace(instructed=instructed)

    def format_queries(self, texts, instructions):
        return [f"{i}|{t}" for t, i in zip(texts, instructions or [""] * len(texts))]

    def encode(self, texts, *, batch_size=32, progress=True):
        self.calls.append(list(texts))
        time.sleep(self.seconds * len(texts))
        return np.ones((len(texts), 4), dtype=np.float32)


def _unit(name, n):
    return Task(name, "code", queries={f"{name}{i}": f"{name} query {i}" for i in range(n)},
                instructions={f"{name}{i}": f"instr {name}" for i in range(n)},
                qrels={f"{name}{i}": {"d": 1} for i in range(n)}, corpus={"d": "doc"})


def test_sample_is_round_robin_and_carries_the_instructions():
    units = [_unit("a", 3), _unit("b", 1)]
    texts, instr = query_sample(units, 3)
    assert texts == ["a query 0", "b query 0", "a query 1"] and instr == ["instr a", "instr b", "instr a"]
    assert query_sample(units, 10)[0] == ["a query 0", "b query 0", "a query 1", "a query 2"]
    with pytest.raises(DataError):
        query_sample([_unit("c", 0)], 5)


def test_cost_is_timed_on_the_encoder_after_a_warm_up(tmp_path, monkeypatch):
    monkeypatch.setenv("ERA_CACHE_DIR", str(tmp_path / "cache"))
    slow, fast = SleepyEncoder(0.004, instructed=True), SleepyEncoder(0.0)
    texts, instr = query_sample([_unit("a", 20)], 20)
    ms = measure_query_cost({"slow": slow, "fast": fast}, texts, instr, "native", batch_size=8, repeats=2)
    assert ms["slow"] >= 4.0 > ms["fast"]                               # sleep() guarantees the lower bound
    assert [len(c) for c in slow.calls] == [8, 20, 20]                 # one warm-up batch, then the timed repeats
    assert slow.calls[1][0] == "instr a|a query 0"                     # an instructed model gets the template
    assert fast.calls[1][0] == "|a query 0"                            # natively, a generic model the raw query
    measure_query_cost({"fast": fast}, texts, instr, "forced", batch_size=8, repeats=1)
    assert fast.calls[-1][0] == "instr a|a query 0"                    # forced: every model gets the template
    assert not (tmp_path / "cache").exists()                           # nothing was read from or written to a cache
