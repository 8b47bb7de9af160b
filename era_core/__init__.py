"""era_core: a reproducible implementation of ERA (Align then Train: Efficient Retrieval Adapter Learning).

The few names a user needs are importable from here and stay put across versions; they import
their modules lazily, so ``import era_core`` stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"
__all__ = ["load_encoder", "load_task", "train_adapter", "evaluate_adapter", "export_model"]


def load_encoder(key: str, **kwargs: Any) -> Any:
    """A registry encoder (lazily loaded); ``encode(texts)`` gives L2-normalised float32 rows.

    Example:
        >>> import era_core
        >>> enc = era_core.load_encoder("minilm-l6")          # doctest: +SKIP
        >>> enc.encode(["hello"], progress=False).shape        # doctest: +SKIP
        (1, 384)
    """
    from era_core.encoders import load_encoder as _load

    return _load(key, **kwargs)


def load_task(folder: str | Path, *, split: str = "test", strict: bool = False) -> list[Any]:
    """The tasks of a BEIR-format folder (or a folder of them) or a MAIR-format folder, as ``era_core.data.Task``.

    Example:
        >>> tasks = era_core.load_task("my_index/")             # doctest: +SKIP
        >>> tasks[0].name, len(tasks[0].corpus), len(tasks[0].qrels)
    """
    from era_core.beir import load_folder_tasks

    return load_folder_tasks(folder, split=split, strict=strict)


def train_adapter(data: str | Path, out: str | Path, *, query_model: str, doc_model: str, mode: str = "era",
                  train_ratio: float = 0.4, seed: int = 42, **overrides: Any) -> Path:
    """Train an adapter on a data folder; returns the run folder (adapter, summary.json, TREC run files).

    Example:
        >>> run = era_core.train_adapter("my_index/", "out/", query_model="minilm-l6",
        ...                              doc_model="minilm-l3-onnx", train_ratio=0.4)   # doctest: +SKIP
    """
    from era_core.cli import main

    argv = ["train", "--data", str(data), "--out", str(out), "--query-model", query_model, "--doc-model", doc_model,
            "--mode", mode, "--train-ratio", str(train_ratio), "--seed", str(seed)]
    for k, v in overrides.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    if main(argv) != 0:
        from era_core.errors import EraError

        raise EraError("training failed; the message above says why")
    from era_core.experiments import make_run_id

    return Path(out) / "runs" / "own" / make_run_id(mode, overrides.get("instructions", "native"), train_ratio, seed, {})


def evaluate_adapter(data: str | Path, out: str | Path, *, adapter: str | Path | None = None,
                     model: str | None = None) -> dict[str, Any]:
    """Score an adapter (run or adapter folder) or a zero-shot ``model`` on a data folder; returns the summary.

    Example:
        >>> era_core.evaluate_adapter("my_index/", "eval/", adapter=run)["overall"]["ndcg@10"]   # doctest: +SKIP
    """
    from era_core.cli import main
    from era_core.io import read_json

    argv = ["eval", "--data", str(data), "--out", str(out)]
    argv += ["--adapter", str(adapter)] if adapter is not None else []
    argv += ["--model", model] if model is not None else []
    if main(argv) != 0:
        from era_core.errors import EraError

        raise EraError("evaluation failed; the message above says why")
    return read_json(Path(out) / "summary.json")


def export_model(source: Any, out: str | Path, **kwargs: Any) -> Path:
    """Write a sentence-transformers model folder (Router: query encoder + adapter | document encoder).

    Example:
        >>> era_core.export_model(run, "my-era-model")                                   # doctest: +SKIP
        >>> from sentence_transformers import SentenceTransformer
        >>> m = SentenceTransformer("my-era-model", local_files_only=True)
        >>> m.encode_query(["a query"]).shape, m.encode_document(["a doc"]).shape
    """
    from era_core.export import export_sentence_transformers

    return export_sentence_transformers(source, out, **kwargs)
