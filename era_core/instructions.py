"""Instruction settings: how a query meets its instruction, decided per encoder (ERA_METHOD.md §4.2, §7).

Imports only ``errors``, so parameters, the report and the encoders can all read it.
"""

from __future__ import annotations

from typing import Any, Sequence

from era_core.errors import ParamsError

#: How queries meet their instructions (ERA_METHOD.md §4.2, §7):
#: - ``native``: as the reference's wrappers do it. Models trained on instructions (``ModelSpec.instructed``:
#:   Qwen3, bge, the OpenAI API models) get their template; every other model gets the raw query (with
#:   its own documented prompt, if it has one). The headline setting.
#: - ``forced``: every model gets its ``query_template`` (the Qwen template for generic models), which
#:   they were never trained on; kept as a labelled stress test.
INSTRUCTION_SETTINGS = ("native", "forced")


def check_instruction_setting(setting: str) -> str:
    """``setting`` if it is one of ``INSTRUCTION_SETTINGS``, else a ``ParamsError`` naming them."""
    if setting not in INSTRUCTION_SETTINGS:
        raise ParamsError(f"instruction setting {setting!r} is unknown; allowed values: {', '.join(INSTRUCTION_SETTINGS)}")
    return setting


def query_instructions(spec: Any, setting: str, instructions: Sequence[str] | str | None,
                       ) -> Sequence[str] | str | None:
    """The instructions a model's queries get under ``setting``: None (the raw query) for a model that
    was not trained on instructions in the ``native`` setting, ``instructions`` otherwise."""
    check_instruction_setting(setting)
    if setting == "native" and not getattr(spec, "instructed", False):
        return None
    return instructions
