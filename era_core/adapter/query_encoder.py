"""``AdaptedQueryEncoder``: a query encoder and a trained adapter together, saved and loaded as one folder."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from era_core.adapter.files import load_adapter, load_fused_adapter, save_adapter
from era_core.adapter.modules import FusedAdapter, LinearAdapter, apply_adapter, fuse_queries
from era_core.errors import DataError, ModelUnavailableError, ParamsError
from era_core.io import write_json


class AdaptedQueryEncoder:
    """Query encoder + adapter: encodes raw queries straight into the document model's space.

    A ``FusedAdapter`` also needs ``small_query_encoder`` (the small model, encoding the same
    queries with its own query template); its input is ``fuse_queries(large, small)``.
    ``instructions`` is the instruction setting the adapter was trained in (``era_core.instructions``):
    under ``native`` an encoder that was not trained on instructions gets the bare query.
    """

    def __init__(
        self,
        query_encoder: Any,
        adapter: LinearAdapter,
        instruction: str | None = None,
        doc_model: str | None = None,
        small_query_encoder: Any = None,
        instructions: str = "native",
    ) -> None:
        from era_core.instructions import check_instruction_setting

        check_instruction_setting(instructions)
        fused = isinstance(adapter, FusedAdapter)
        if fused != (small_query_encoder is not None):
            raise ParamsError(
                "a fused adapter needs small_query_encoder (the small model encodes the query too); "
                "other adapters take the query encoder only"
            )
        pairs = [(query_encoder, adapter.large_dim if fused else adapter.in_dim, "in_dim")]
        if fused:
            pairs.append((small_query_encoder, adapter.small_dim, "small_dim"))
        for encoder, expected, what in pairs:
            enc_dim = getattr(encoder, "dim", None)
            if enc_dim is not None and int(enc_dim) != expected:
                raise ParamsError(
                    f"query encoder {_encoder_key(encoder)!r} has dim {enc_dim} but the adapter expects "
                    f"{what} {expected}; pair the adapter with the encoder it was trained on"
                )
        self.query_encoder = query_encoder
        self.small_query_encoder = small_query_encoder
        self.adapter = adapter
        self.instruction = instruction
        self.doc_model = doc_model
        self.instructions = instructions

    @property
    def dim(self) -> int:
        """Output dimension (the document model's)."""
        return self.adapter.out_dim

    def encode(
        self,
        queries: list[str],
        instructions: list[str] | str | None = None,
        batch_size: int = 32,
        progress: bool = True,
    ) -> np.ndarray:
        """Format with the query template, encode, adapt: float32 unit rows in the doc space."""
        if instructions is None:
            instructions = self.instruction
        if isinstance(instructions, list) and len(instructions) != len(queries):
            raise ParamsError(f"got {len(queries)} queries but {len(instructions)} instructions; pass one per query")
        x = _encode_queries(self.query_encoder, queries, instructions, self.instructions, batch_size, progress)
        if self.small_query_encoder is not None:
            small = _encode_queries(self.small_query_encoder, queries, instructions, self.instructions, batch_size,
                                    progress)
            x = fuse_queries(x, small, self.adapter)
        return apply_adapter(self.adapter, x)

    def save_pretrained(self, folder: Path | str, card: Mapping[str, Any] | None = None) -> Path:
        """Write ``adapter.safetensors`` and ``config.json`` into ``folder``."""
        return self.save_adapter_folder(
            folder,
            self.adapter,
            query_model=_encoder_key(self.query_encoder),
            doc_model=self.doc_model,
            # Recorded by formatting placeholders, so it shows what the encoder really receives.
            instruction_template=_template(self.query_encoder, self.instructions),
            default_instruction=self.instruction,
            card=card,
            small_query_model=None if self.small_query_encoder is None else _encoder_key(self.small_query_encoder),
            small_instruction_template=None
            if self.small_query_encoder is None
            else _template(self.small_query_encoder, self.instructions),
            instructions=self.instructions,
        )

    @staticmethod
    def save_adapter_folder(
        folder: Path | str,
        adapter: LinearAdapter,
        *,
        query_model: str | None,
        doc_model: str | None,
        instruction_template: str | None = None,
        default_instruction: str | None = None,
        card: Mapping[str, Any] | None = None,
        small_query_model: str | None = None,
        small_instruction_template: str | None = None,
        instructions: str = "native",
    ) -> Path:
        """Write a ``from_pretrained`` folder without loading the query encoder (used for releases).

        A ``FusedAdapter`` also records ``small_query_model`` (the encoder of its small input block).
        """
        folder = Path(folder)
        config = {
            "query_model": query_model,
            "doc_model": doc_model,
            "in_dim": adapter.in_dim,
            "out_dim": adapter.out_dim,
            "instruction_template": instruction_template,
            "default_instruction": default_instruction,
            "instructions": instructions,
            "card": dict(card or {}),
        }
        if isinstance(adapter, FusedAdapter):  # extra keys only here: linear folders stay as they were
            if not small_query_model:
                raise ParamsError("a fused adapter folder needs small_query_model (the small encoder's key)")
            config.update({"adapter_type": "fused", "large_dim": adapter.large_dim, "small_dim": adapter.small_dim,
                           "small_query_model": small_query_model,
                           "small_instruction_template": small_instruction_template})
        elif small_query_model is not None:
            raise ParamsError("small_query_model is only for fused adapters")
        meta = {"query_model": query_model or "", "doc_model": doc_model or "", "card": dict(card or {})}
        save_adapter(adapter, folder / "adapter.safetensors", meta)
        write_json(folder / "config.json", config)  # written last: its presence marks a complete folder
        return folder

    @classmethod
    def from_pretrained(
        cls, folder: Path | str, *, query_encoder: Any = None, small_query_encoder: Any = None
    ) -> "AdaptedQueryEncoder":
        """Load a folder written by ``save_pretrained``; loads the query encoder(s) by key if not given."""
        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.exists():
            raise ModelUnavailableError(f"no config.json in {folder}; expected a folder written by save_pretrained")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read {cfg_path}: {exc}") from exc
        missing = [k for k in ("query_model", "doc_model", "in_dim", "out_dim") if k not in config]
        if missing:
            raise DataError(f"{cfg_path} lacks keys {missing}")
        fused = config.get("adapter_type") == "fused"
        if fused:
            adapter: LinearAdapter = load_fused_adapter(
                folder / "adapter.safetensors", expected_large_dim=int(config["large_dim"]),
                expected_small_dim=int(config["small_dim"]),
            )  # fmt: skip
            small_query_encoder = _encoder_for(small_query_encoder, config.get("small_query_model"), folder)
        elif small_query_encoder is not None:
            raise ParamsError(f"adapter in {folder} is not fused; do not pass small_query_encoder")
        else:
            adapter = load_adapter(
                folder / "adapter.safetensors", expected_in_dim=int(config["in_dim"]),
                expected_out_dim=int(config["out_dim"]),
            )  # fmt: skip
        query_encoder = _encoder_for(query_encoder, config["query_model"], folder)
        # Folders written before instruction settings existed applied the template to every encoder.
        return cls(query_encoder, adapter, instruction=config.get("default_instruction"), doc_model=config["doc_model"],
                   small_query_encoder=small_query_encoder, instructions=config.get("instructions", "forced"))


def _encoder_for(encoder: Any, key: str | None, folder: Path) -> Any:
    """``encoder`` checked against the recorded ``key``, or the encoder loaded by ``key`` if none is given."""
    if encoder is None:
        from era_core.encoders import load_encoder  # lazy: loading an encoder pulls in transformers

        return load_encoder(key)
    given = _encoder_key(encoder)
    if given is not None and key is not None and given != key:
        raise ParamsError(f"adapter in {folder} was trained for query model {key!r}, but query encoder {given!r} was given")
    return encoder


def _template(encoder: Any, setting: str) -> str:
    """What ``encoder`` receives for a query under ``setting``, with ``{instruction}`` and ``{query}`` placeholders."""
    from era_core.instructions import query_instructions

    return encoder.format_queries(["{query}"], query_instructions(getattr(encoder, "spec", None), setting,
                                                                  "{instruction}"))[0]


def _encode_queries(encoder: Any, queries: list[str], instructions: Any, setting: str, batch_size: int,
                    progress: bool) -> np.ndarray:
    from era_core.instructions import query_instructions

    texts = encoder.format_queries(list(queries), query_instructions(getattr(encoder, "spec", None), setting,
                                                                     instructions))
    return np.asarray(encoder.encode(texts, batch_size=batch_size, progress=progress), dtype=np.float32)


def _encoder_key(encoder: Any) -> str | None:
    """The registry key of an encoder object (``encoder.spec.key``), if it has one."""
    spec = getattr(encoder, "spec", None)
    key = getattr(spec, "key", None)
    return None if key is None else str(key)
