"""Which precision an encoder computes in: the CPU bf16 probe, ``dtype='auto'`` and the dtype checks.

On CPU, bf16 means fp32 weights run under ``torch.autocast(bfloat16)`` (``CPU_AUTOCAST`` in the
cache key); it is only worth it where the CPU multiplies bf16 in hardware (docs/DESIGN.md).
"""

from __future__ import annotations

import warnings
from typing import Any

from era_core.encoders.spec import ModelSpec
from era_core.errors import ParamsError

DTYPES = ("float32", "float16", "bfloat16")
#: Cache-key marker of CPU bf16: fp32 weights, matmuls in bf16 with fp32 accumulation (autocast).
CPU_AUTOCAST = "cpu-autocast-bf16"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def auto_dtype(spec: ModelSpec, device: str) -> str:
    """The precision ``dtype='auto'`` picks: the registry's CUDA dtype on GPU; bf16 on CPUs with native bf16."""
    if device.startswith("cuda"):
        return spec.cuda_dtype
    # bf16 matmuls are ~1.8x faster on such CPUs at cosine > 0.9999 with fp32 (docs/DESIGN.md).
    return "bfloat16" if spec.backend == "transformers" and cpu_has_native_bf16() else "float32"


def choose_dtype(spec: ModelSpec, device: str, dtype: str | None) -> str:
    """The dtype ``load_encoder`` runs ``spec`` in on ``device`` (None: the default; 'auto': see ``auto_dtype``)."""
    cuda = device.startswith("cuda")
    if dtype is None:
        dtype = spec.cuda_dtype if cuda else "float32"
    elif dtype == "auto":
        dtype = auto_dtype(spec, device)
    if dtype not in DTYPES:
        raise ParamsError(f"dtype must be one of {', '.join(DTYPES)} or 'auto', got {dtype!r}")
    if dtype in spec.forbidden_dtypes:
        raise ParamsError(
            f"dtype {dtype!r} is not allowed for model {spec.key!r}: its activations overflow in {dtype} and the "
            "vectors break; use dtype='auto' (bf16 where the hardware has it, else float32), 'bfloat16' or 'float32'"
        )
    if spec.backend == "static" and dtype != "float32":
        raise ParamsError(f"model {spec.key!r} is a static lookup table and runs in float32 only; got dtype={dtype!r}")
    cpu_bf16 = dtype == "bfloat16" and not cuda and spec.backend == "transformers"
    if dtype != "float32" and not cpu_bf16 and (not cuda or spec.backend == "onnx"):
        raise ParamsError(
            f"dtype {dtype!r} is not supported for model {spec.key!r} ({spec.backend} backend) on device "
            f"{device!r}; CPU supports 'float32' and, for transformers models, 'bfloat16'; use "
            "dtype='float32' or 'auto'"
        )
    if cpu_bf16 and not cpu_has_native_bf16():
        warnings.warn(
            f"dtype='bfloat16' on a CPU without native bf16 (AVX512-BF16/AMX): {spec.key!r} will run emulated "
            "bf16, usually slower than float32; use dtype='auto' (float32 here) unless you need bf16 vectors",
            stacklevel=3,  # the caller of load_encoder, which calls this
        )
    return dtype


def torch_dtype(name: str) -> Any:
    """The torch dtype named ``name`` (one of ``DTYPES``)."""
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
