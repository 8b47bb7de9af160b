"""Follow a sentence-transformers folder's ``modules.json``: Transformer → Pooling → Dense* → Normalize.

The ``hf`` backend runs the Transformer module itself (AutoModel); this module reads what comes
after it, so models such as EmbeddingGemma (mean pooling, then Dense 768→3072, Dense 3072→768,
then Normalize) give the vectors their authors intended. Only the module types below are
supported; anything else is refused with a clear error rather than silently skipped.
``read_st_pooling`` reads only the pooling mode (also of folders without ``modules.json``), for ``load_encoder``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from era_core.encoders.spec import POOLINGS
from era_core.errors import ModelUnavailableError

SUPPORTED = ("Transformer", "Pooling", "Dense", "Normalize")
#: Dense activations we run, by the name sentence-transformers writes into ``config.json``.
ACTIVATIONS = ("torch.nn.modules.linear.Identity", "torch.nn.modules.activation.Tanh")
_POOL_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_lasttoken": "last",
}
_UNSUPPORTED_POOL_KEYS = (
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
)


@dataclass(frozen=True)
class DenseSpec:
    """One Dense module: its folder and shape."""

    path: str
    in_features: int
    out_features: int
    bias: bool
    activation: str


@dataclass(frozen=True)
class ModulesSpec:
    """What a sentence-transformers folder asks for after its Transformer module."""

    transformer_path: str
    pooling: str | None
    dense: tuple[DenseSpec, ...]
    normalize: bool

    @property
    def layout(self) -> list[str]:
        """Module types in order, e.g. ``['Transformer', 'Pooling', 'Dense', 'Dense', 'Normalize']``."""
        return (["Transformer"] + (["Pooling"] if self.pooling else []) + ["Dense"] * len(self.dense)
                + (["Normalize"] if self.normalize else []))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


def _pooling_mode(cfg_path: Path) -> str:
    cfg = _read_json(cfg_path)
    chosen = [mode for k, mode in _POOL_KEYS.items() if cfg.get(k)]
    unsupported = [k for k in _UNSUPPORTED_POOL_KEYS if cfg.get(k)]
    if unsupported or len(chosen) != 1:
        raise ModelUnavailableError(
            f"{cfg_path} asks for pooling {chosen + unsupported}; supported is exactly one of {', '.join(POOLINGS)}"
        )
    if cfg.get("include_prompt", True) is False:
        # Pooling that skips the prompt tokens needs the prompt length per text; not implemented.
        raise ModelUnavailableError(f"{cfg_path} sets include_prompt=false, which this package does not support")
    return chosen[0]


def read_st_pooling(folder: Path) -> str | None:
    """Read the pooling mode from a sentence-transformers folder (``modules.json``, else ``1_Pooling``), or None."""
    modules_file = folder / "modules.json"
    pool_dir = None
    if modules_file.is_file():
        for module in _read_json(modules_file):
            if str(module.get("type", "")).endswith("Pooling"):
                pool_dir = folder / module.get("path", "1_Pooling")
    elif (folder / "1_Pooling").is_dir():
        pool_dir = folder / "1_Pooling"
    if pool_dir is None or not (pool_dir / "config.json").is_file():
        return None
    return _pooling_mode(pool_dir / "config.json")


def read_modules(folder: Path) -> ModulesSpec | None:
    """Parse ``folder/modules.json`` (None if the folder has none); refuse unsupported modules."""
    modules_file = Path(folder) / "modules.json"
    if not modules_file.is_file():
        return None
    modules = sorted(_read_json(modules_file), key=lambda m: int(m.get("idx", 0)))
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    bad = [t for t in kinds if t not in SUPPORTED]
    if bad or not kinds or kinds[0] != "Transformer" or kinds.count("Transformer") != 1:
        raise ModelUnavailableError(
            f"{modules_file} lists modules {kinds}; supported is Transformer first, then Pooling, Dense and "
            f"Normalize ({', '.join(bad) or 'order'} not supported)"
        )
    pooling: str | None = None
    dense: list[DenseSpec] = []
    normalize = False
    for module, kind in zip(modules[1:], kinds[1:]):
        sub = str(module.get("path", ""))
        if normalize:
            raise ModelUnavailableError(f"{modules_file}: a {kind} module after Normalize is not supported")
        if kind == "Pooling":
            if pooling is not None or dense:
                raise ModelUnavailableError(f"{modules_file}: Pooling must come once, before any Dense")
            pooling = _pooling_mode(Path(folder) / sub / "config.json")
        elif kind == "Dense":
            if pooling is None:
                raise ModelUnavailableError(f"{modules_file}: a Dense module before Pooling is not supported")
            cfg = _read_json(Path(folder) / sub / "config.json")
            act = cfg.get("activation_function", "torch.nn.modules.activation.Tanh")
            if act not in ACTIVATIONS or cfg.get("use_residual"):
                raise ModelUnavailableError(
                    f"{Path(folder) / sub / 'config.json'}: activation {act!r}"
                    f"{' with a residual' if cfg.get('use_residual') else ''} is not supported "
                    f"(supported: {', '.join(ACTIVATIONS)}, no residual)"
                )
            d = DenseSpec(sub, int(cfg["in_features"]), int(cfg["out_features"]), bool(cfg.get("bias", True)), act)
            if dense and dense[-1].out_features != d.in_features:
                raise ModelUnavailableError(f"{modules_file}: Dense {sub} takes {d.in_features}, gets {dense[-1].out_features}")
            dense.append(d)
        elif kind == "Normalize":
            normalize = True
    return ModulesSpec(str(modules[0].get("path", "")), pooling, tuple(dense), normalize)


def output_dim(spec: ModulesSpec, hidden: int) -> int:
    """The vector width the module chain produces from a ``hidden``-wide transformer."""
    return spec.dense[-1].out_features if spec.dense else hidden


def dense_files(folder: Path, spec: ModulesSpec) -> list[tuple[str, Path]]:
    """The files of the Dense modules (config and weights), named by relative path, for fingerprints."""
    out = []
    for d in spec.dense:
        for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
            p = Path(folder) / d.path / name
            if p.is_file():
                out.append((f"{d.path}/{name}", p))
    return out


def load_head(folder: Path, spec: ModulesSpec, device: str = "cpu") -> list[Any]:
    """The Dense modules as fp32 ``torch.nn.Sequential`` blocks (Linear + activation), in order."""
    import torch
    from safetensors.torch import load_file

    layers = []
    for d in spec.dense:
        weights = Path(folder) / d.path / "model.safetensors"
        if not weights.is_file():
            raise ModelUnavailableError(f"Dense module {d.path!r} has no model.safetensors in {folder}")
        state = load_file(str(weights))
        linear = torch.nn.Linear(d.in_features, d.out_features, bias=d.bias)
        want = {"linear.weight"} | ({"linear.bias"} if d.bias else set())
        if set(state) != want:
            raise ModelUnavailableError(f"{weights} holds tensors {sorted(state)}; expected {sorted(want)}")
        linear.load_state_dict({k.split(".", 1)[1]: v.float() for k, v in state.items()})
        act = torch.nn.Identity() if d.activation.endswith("Identity") else torch.nn.Tanh()
        layers.append(torch.nn.Sequential(linear, act).eval().to(device))
    return layers


def apply_head(pooled: Any, layers: list[Any]) -> Any:
    """Run the pooled fp32 vectors ``[b, d]`` through the Dense layers (outside autocast: they are cheap)."""
    import torch

    x = pooled.float()
    with torch.autocast(x.device.type, enabled=False):
        for layer in layers:
            x = layer(x)
    return x
