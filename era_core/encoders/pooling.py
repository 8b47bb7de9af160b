"""What the token backends (``hf``, ``onnx``) share: longest-first batching, pooling, unit vectors.

A backend tokenises once, runs each batch through its model and hands the token states here; the
pooling, the width check, the L2 normalisation and the Matryoshka cut are the same for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from era_core.encoders.spec import POOLINGS, ModelSpec
from era_core.errors import ModelUnavailableError, ParamsError

Features = list[dict[str, list[int]]]


def pool(hidden: Any, mask: Any, method: str) -> Any:
    """Pool token states ``[b, s, d]`` with attention mask ``[b, s]`` into ``[b, d]`` (torch)."""
    import torch

    mask = mask.to(hidden.device)
    if method == "mean":
        m = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if method == "cls":
        # The first attended position, so a left-padded batch still gets its CLS token.
        first = mask.long().argmax(dim=1)
        return hidden[rows, first]
    if method == "last":
        # Left padding: every row ends with a real token. Otherwise index each row's last one.
        if bool((mask[:, -1] == 1).all()):
            return hidden[:, -1]
        last = mask.long().sum(dim=1) - 1
        return hidden[rows, last]
    raise ParamsError(f"unknown pooling {method!r}; allowed: {', '.join(POOLINGS)}")


def unit_vectors(pooled: Any, spec: ModelSpec, location: Path, truncate_dim: int | None) -> np.ndarray:
    """Check the pooled width against the registry, L2-normalise, apply the Matryoshka cut; float32 numpy."""
    import torch.nn.functional as F

    if pooled.shape[-1] != spec.dim:
        raise ModelUnavailableError(
            f"model {spec.key!r} at {location} produces {pooled.shape[-1]}-d vectors but the "
            f"registry says {spec.dim}; the weights are not the registered model"
        )
    vecs = F.normalize(pooled, p=2, dim=-1)
    if truncate_dim is not None:  # Matryoshka: keep the leading dims, renormalise
        vecs = F.normalize(vecs[:, :truncate_dim], p=2, dim=-1)
    return vecs.cpu().numpy().astype(np.float32, copy=False)


def encode_longest_first(
    feats: Features,
    run_batch: Callable[[Features], np.ndarray],
    dim: int,
    *,
    batch_size: int,
    desc: str,
    progress: bool,
) -> np.ndarray:
    """Run ``run_batch`` over ``feats`` in batches, longest texts first; rows back in input order."""
    import torch

    out = np.zeros((len(feats), dim), dtype=np.float32)
    # Longest first: similar lengths share a batch (little padding) and OOM shows up at once.
    order = sorted(range(len(feats)), key=lambda i: -len(feats[i]["input_ids"]))
    starts = range(0, len(order), batch_size)
    with torch.inference_mode():
        for s in tqdm(starts, desc=desc, disable=not progress, total=len(starts)):
            idx = order[s : s + batch_size]
            out[idx] = run_batch([feats[i] for i in idx])
    return out
