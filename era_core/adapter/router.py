"""Export an ERA adapter as a standard sentence-transformers model (``Router.for_query_document``).

The folder loads with ``SentenceTransformer(path)`` and nothing from this package:
- query route: the query encoder's own modules (Transformer, Pooling, its Dense layers, Normalize),
  then a ``Dense`` holding the adapter (in = query dim, out = document dim, bias, Identity
  activation: sentence-transformers' default is Tanh), then ``Normalize``;
- document route: the document encoder's modules; documents are never adapted.

ONNX-only encoders (paraphrase-MiniLM-L3-v2 here) become a torch BERT: sentence-transformers'
ONNX backend needs Optimum and switches every route at once, so it cannot serve one route of a
Router. Every weight of such a graph is in its initializers; named ones map by name and each
anonymous ``MatMul`` weight by the named bias its output is added to. The rebuilt model is checked
against the ONNX session before it is written.

Not exportable with standard modules (refused with a message): ``fused`` adapters (the query route
would need both encoders' outputs side by side, which a sequential route cannot build without a
custom module, i.e. ``trust_remote_code``), static (model2vec) and API encoders.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from era_core.adapter.trained import TrainedAdapter, load_trained
from era_core.errors import EraError, ModelUnavailableError, ParamsError
from era_core.io import atomic_write_text, read_json, write_json

#: Licences of the registry's base models (from their model cards), for the exported card.
LICENSES = {
    "minilm-l6": "apache-2.0", "minilm-l3-onnx": "apache-2.0",
    "embeddinggemma-300m": "gemma", "potion-base-8m": "mit", "qwen3-8b": "apache-2.0",
    "qwen3-0.6b": "apache-2.0",
}
_POOLING_ST = {"mean": "mean", "cls": "cls", "last": "lasttoken"}
_BERT_PREFIXES = ("model.0.auto_model.", "0.auto_model.", "auto_model.", "bert.", "")
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.")
#: Largest |difference| in token states we accept between the rebuilt BERT and its ONNX graph.
ONNX_TOLERANCE = 1e-4


class ExportError(EraError, ValueError):
    """An adapter or encoder cannot be written as a standard sentence-transformers model."""


# ----------------------------------------------------------------------------- ONNX -> torch BERT


def _bert_name(name: str) -> str | None:
    for prefix in _BERT_PREFIXES:
        rest = name[len(prefix):]
        if name.startswith(prefix) and rest.startswith(("embeddings.", "encoder.", "pooler.")):
            return rest
    return None


def read_onnx_bert_weights(onnx_path: Path) -> dict[str, np.ndarray]:
    """The BERT parameters of an ONNX graph, named as ``transformers.BertModel`` names them (Linear as [out, in])."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ModelUnavailableError("exporting an ONNX encoder needs the 'onnx' package: pip install onnx==1.23.2") from None
    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: np.array(numpy_helper.to_array(i)) for i in graph.initializer}
    state = {clean: arr for name, arr in inits.items() if (clean := _bert_name(name)) is not None}
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:  # MatMul(x, W) -> Add(., named bias): the bias names W's layer
        if node.op_type != "Add":
            continue
        biases = [i for i in node.input if i in inits and (_bert_name(i) or "").endswith(".bias")]
        others = [i for i in node.input if i not in inits]
        if len(biases) != 1 or len(others) != 1 or producers.get(others[0]) is None:
            continue
        mm = producers[others[0]]
        weights = [i for i in mm.input if i in inits]
        if mm.op_type == "MatMul" and len(weights) == 1:
            state[_bert_name(biases[0])[: -len(".bias")] + ".weight"] = inits[weights[0]].T.copy()
    return state


def onnx_to_bert(onnx_path: Path, num_heads: int = 12) -> Any:
    """A fp32 ``transformers.BertModel`` holding the weights of a BERT ONNX export."""
    import torch
    from transformers import BertConfig, BertModel

    state = read_onnx_bert_weights(Path(onnx_path))
    if "embeddings.word_embeddings.weight" not in state or "encoder.layer.0.intermediate.dense.weight" not in state:
        raise ExportError(f"{onnx_path} is not a BERT export this package can rebuild (no BERT embeddings/layers found)")
    vocab, hidden = state["embeddings.word_embeddings.weight"].shape
    config = BertConfig(
        vocab_size=int(vocab), hidden_size=int(hidden), num_attention_heads=int(num_heads),
        num_hidden_layers=len({int(m.group(1)) for k in state if (m := _LAYER.match(k))}),
        intermediate_size=int(state["encoder.layer.0.intermediate.dense.weight"].shape[0]),
        max_position_embeddings=int(state["embeddings.position_embeddings.weight"].shape[0]),
        type_vocab_size=int(state["embeddings.token_type_embeddings.weight"].shape[0]),
        hidden_act="gelu", layer_norm_eps=1e-12,
    )
    model = BertModel(config, add_pooling_layer=True).eval()
    with torch.no_grad():  # unused by sentence embeddings; zeroed so the export's bytes are deterministic
        model.pooler.dense.weight.zero_()
        model.pooler.dense.bias.zero_()
    want = {k for k in model.state_dict()
            if k not in ("embeddings.position_ids", "embeddings.token_type_ids") and not k.startswith("pooler.")}
    missing = sorted(want - set(state))
    if missing:
        raise ExportError(f"{onnx_path}: BERT weights {missing[:4]} are not recoverable from the ONNX graph")
    model.load_state_dict({k: torch.from_numpy(state[k]) for k in want}, strict=False)
    return model


def onnx_max_difference(model: Any, onnx_path: Path, input_ids: np.ndarray, attention_mask: np.ndarray) -> float:
    """Largest |difference| between the rebuilt model's and the ONNX session's token states (real tokens only)."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    feed = {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64),
            "token_type_ids": np.zeros_like(input_ids, dtype=np.int64)}
    outs = [o.name for o in session.get_outputs() if len(o.shape) == 3]
    ref = session.run(outs[:1], {k: v for k, v in feed.items() if k in names})[0]
    with torch.no_grad():
        got = model(input_ids=torch.from_numpy(feed["input_ids"]),
                    attention_mask=torch.from_numpy(feed["attention_mask"])).last_hidden_state.numpy()
    keep = attention_mask.astype(bool)
    return float(np.abs(got[keep] - ref[keep]).max())


# ----------------------------------------------------------------------------- encoder -> modules


def encoder_modules(key: str, max_length: int, workdir: Path) -> list[Any]:
    """The sentence-transformers modules that reproduce registry encoder ``key`` (fp32, L2-normalised output)."""
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    from era_core.encoders import REGISTRY, load_encoder, resolve_weights

    if key not in REGISTRY:
        raise ExportError(f"model {key!r} is not a registry encoder (API models cannot be exported); "
                          f"exportable: {', '.join(k for k, s in REGISTRY.items() if s.backend != 'static')}")
    enc = load_encoder(key, dtype="float32", max_length=max_length, progress=False)
    spec = enc.spec
    if spec.backend == "static":
        raise ExportError(f"model {key!r} is a static (model2vec) encoder; its export is not implemented")
    if spec.backend == "onnx":
        import torch
        from transformers import AutoTokenizer

        bert = onnx_to_bert(enc.location)
        folder = workdir / f"{key}-torch"
        tok = AutoTokenizer.from_pretrained(str(resolve_weights(REGISTRY[spec.tokenizer_from or key])), local_files_only=True)
        probe = tok(["a probe sentence for the onnx check", "x"], padding=True, return_tensors="np")
        diff = onnx_max_difference(bert, enc.location, probe["input_ids"], probe["attention_mask"])
        if not diff < ONNX_TOLERANCE:
            raise ExportError(f"the BERT rebuilt from {enc.location} differs from the ONNX graph by {diff:.2e} "
                              f"(> {ONNX_TOLERANCE}); this ONNX export is not supported")
        with torch.no_grad():
            bert.save_pretrained(str(folder))
        tok.save_pretrained(str(folder))
        return [Transformer(str(folder), max_seq_length=max_length, model_kwargs={"local_files_only": True},
                            processor_kwargs={"local_files_only": True}),
                Pooling(spec.dim, pooling_mode=_POOLING_ST[enc.pooling]), Normalize()]
    if enc.truncate_dim is not None:
        raise ExportError(f"model {key!r} with truncate_dim is not exportable; export the full-width model")
    if enc.modules is not None:
        from sentence_transformers import SentenceTransformer

        modules = list(SentenceTransformer(str(enc.location), device="cpu", local_files_only=True).children())
        modules[0].max_seq_length = max_length
        kinds = [type(m).__name__ for m in modules]
        if kinds[-1] != "Normalize":  # our encoder always L2-normalises its output
            modules.append(Normalize())
        return modules
    return [Transformer(str(enc.location), max_seq_length=max_length), Pooling(spec.dim, pooling_mode=_POOLING_ST[enc.pooling]),
            Normalize()]


def adapter_dense(adapter: Any) -> Any:
    """A sentence-transformers ``Dense`` (bias, Identity activation) holding a ``LinearAdapter``'s weights."""
    import torch
    from sentence_transformers.base.modules import Dense

    from era_core.adapter import FusedAdapter, LinearAdapter

    if isinstance(adapter, FusedAdapter):
        raise ExportError("a fused adapter reads [q_large ; q_small]: a sentence-transformers route is a sequence of "
                          "modules and cannot concatenate two encoders' outputs without custom code "
                          "(trust_remote_code); use it through era_core.adapter.AdaptedQueryEncoder, which needs era_core installed, or "
                          "export the same-model control (era train --mode small_adapter), a standard model")
    if not isinstance(adapter, LinearAdapter):
        raise ExportError(f"a {type(adapter).__name__} has no standard sentence-transformers module; only linear "
                          "adapters are exported")
    dense = Dense(adapter.in_dim, adapter.out_dim, bias=True, activation_function=torch.nn.Identity())
    with torch.no_grad():
        dense.linear.weight.copy_(adapter.proj.weight.detach().float())
        dense.linear.bias.copy_(adapter.proj.bias.detach().float())
    return dense


# ----------------------------------------------------------------------------- what to export


def resolve_source(source: Any, *, query_model: str | None = None, doc_model: str | None = None,
                   max_length: int | None = None) -> TrainedAdapter:
    """A ``TrainedAdapter`` as given, read from a run folder, or an adapter object with its encoders' keys."""
    import torch

    if isinstance(source, TrainedAdapter):
        return source
    if isinstance(source, torch.nn.Module):
        if not (query_model and doc_model):
            raise ParamsError("exporting an adapter object needs query_model= and doc_model= (registry keys)")
        return TrainedAdapter(source, query_model, doc_model, max_length=max_length or 128)
    trained = load_trained(source, max_length=max_length)
    if query_model or doc_model:  # an explicit override of the encoders the run recorded
        trained = replace(trained, large_model=query_model or trained.large_model,
                          small_model=doc_model or trained.small_model)
    return trained


def instruction_prefix(template: str, instruction: str) -> str:
    """The text an instruction puts before the query under ``template`` (which must end with ``{query}``)."""
    if not template.endswith("{query}"):
        raise ExportError(f"query template {template!r} does not end with {{query}}; it cannot be written as a prompt")
    return template[: -len("{query}")].format(instruction=instruction)


def export_sentence_transformers(source: Any, out: Path | str, *, query_model: str | None = None,
                                 doc_model: str | None = None, max_length: int | None = None,
                                 instructions: Mapping[str, str] | None = None, force: bool = False) -> Path:
    """Write a sentence-transformers Router model folder for an adapter (a ``TrainedAdapter``, a run folder or a module).

    ``instructions`` ({name: instruction}) become named prompts (``encode_query(q, prompt_name=name)``);
    for a run folder the training tasks' default instructions are added. An adapter whose validation comparison
    says it scores below no adapter is refused unless ``force``.

    Example:
        >>> from era_core.adapter.router import export_sentence_transformers              # doctest: +SKIP
        >>> export_sentence_transformers("results/runs/in_domain/era__inston__train0.4__seed42", "my-model")
        >>> from sentence_transformers import SentenceTransformer
        >>> m = SentenceTransformer("my-model", local_files_only=True)
        >>> m.encode_query(["how do I sort a list"]).shape                         # (1, 384)
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Router

    from era_core.instructions import query_instructions

    src = resolve_source(source, query_model=query_model, doc_model=doc_model, max_length=max_length)
    qspec, dspec, dense = _exportable(src, force)
    out = Path(out)
    setting = src.card.get("instructions", src.instructions)
    instructed = query_instructions(qspec, setting, "x") is not None
    prompts = _prompts(src, setting, instructed, dict(instructions or {}))
    task_instructions = _run_instructions(src.run) if src.run is not None and instructed else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".era-export-", dir=out.parent) as tmp:
        work, stage = Path(tmp) / "work", Path(tmp) / "model"
        work.mkdir()
        query_mods = encoder_modules(src.query_model, src.max_length, work)
        # The same encoder on both sides (small_adapter) shares its modules: one copy of the weights.
        doc_mods = (query_mods if src.doc_model == src.query_model
                    else encoder_modules(src.doc_model, src.max_length, work))
        router = Router.for_query_document(query_modules=query_mods + [dense, Normalize()], document_modules=doc_mods)
        model = SentenceTransformer(modules=[router], device="cpu", prompts=prompts, similarity_fn_name="cosine")
        model.save(str(stage), create_model_card=False)
        cfg = read_json(stage / "config_sentence_transformers.json")
        cfg["era"] = {"query_model": src.query_model, "doc_model": src.doc_model, "max_length": src.max_length,
                      "query_prefix": qspec.query_prefix, "document_prefix": dspec.document_prefix,
                      "instruction_template": qspec.query_template if instructed else None,
                      "instructions": setting,
                      "method": src.card.get("method"), "adapter": [dense.in_features, dense.out_features],
                      "task_instructions": task_instructions}
        write_json(stage / "config_sentence_transformers.json", cfg)
        atomic_write_text(stage / "README.md", model_card_markdown(src, prompts))
        if out.exists():  # swap in whole: a reader never sees half a model
            old = Path(tmp) / "old"
            os.replace(out, old)
        os.replace(stage, out)
    return out


def _exportable(src: TrainedAdapter, force: bool) -> tuple[Any, Any, Any]:
    """The two encoders' specs and the adapter's Dense layer, after refusing what cannot or should not be exported."""
    from era_core.encoders import REGISTRY

    validation = src.meta.get("validation") or {}
    if validation.get("warning") and not force:
        raise ExportError(f"refusing to export: {validation['warning']}. Pass --force (force=True) to export it anyway")
    if src.query_side == "fused" and validation.get("rows"):
        # Name the best adapter that does export, with what it gives up on validation.
        rows = {r["method"]: r["ndcg@10"] for r in validation["rows"]}
        alt = max((m for m in rows if m != "fused"), key=lambda m: rows[m])
        raise ExportError(f"a fused adapter reads the large and the small model's query vectors at once, which a "
                          f"sentence-transformers route cannot express without custom code; the best adapter that "
                          f"exports here is {alt} ({rows[alt]:.4f} validation nDCG@10 against fused's "
                          f"{rows['fused']:.4f}): train it with --mode {alt}, or use the fused adapter through "
                          "era_core.adapter.AdaptedQueryEncoder (needs era_core installed)")
    for key in (src.query_model, src.doc_model):
        if key not in REGISTRY:
            raise ExportError(f"model {key!r} is not a registry encoder; exportable: {', '.join(REGISTRY)}")
    qspec, dspec = REGISTRY[src.query_model], REGISTRY[src.doc_model]
    dense = adapter_dense(src.adapter)
    if (dense.in_features, dense.out_features) != (qspec.dim, dspec.dim):
        raise ExportError(f"the adapter maps {dense.in_features} -> {dense.out_features}, but {src.query_model} -> "
                          f"{src.doc_model} needs {qspec.dim} -> {dspec.dim}; pass the encoders it was trained for")
    return qspec, dspec, dense


def _prompts(src: TrainedAdapter, setting: str, instructed: bool, named: dict[str, str]) -> dict[str, str]:
    """The model's prompts: the two encoders' prefixes, plus one per named instruction (instructed models only)."""
    from era_core.encoders import REGISTRY

    qspec, dspec = REGISTRY[src.query_model], REGISTRY[src.doc_model]
    if named and not instructed:
        raise ExportError(f"this adapter was trained on bare queries of {src.query_model} (instruction setting "
                          f"{setting!r}: the model was not trained on instructions), so instruction prompts would feed "
                          "it inputs it never saw; export without instructions, or train with instructions 'forced'")
    prompts = {"query": qspec.query_prefix, "document": dspec.document_prefix}
    for name, inst in named.items():
        if name in ("query", "document"):
            raise ParamsError(f"instruction name {name!r} is reserved; pick another prompt name")
        prompts[name] = qspec.query_prefix + instruction_prefix(qspec.query_template, inst)
    return prompts


def _run_instructions(run: Path) -> dict[str, str]:
    """Each training task's default instruction, read from the benchmark the run used (empty if unreadable)."""
    from era_core.data import load_tasks

    meta = read_json(run / "era_meta.json")
    params = meta["config"]["params"]
    units = list(meta["config"].get("train_units") or {})
    tasks = sorted({u.split("/", 1)[0] for u in units})
    try:
        loaded = load_tasks(params["benchmark"], tasks, progress=False)
    except EraError:
        return {}
    return {t.name: t.default_instruction for t in loaded if t.default_instruction}


# ----------------------------------------------------------------------------- model card


def _yaml_str(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _training_section(card: Mapping[str, Any], ndcg: float | None) -> list[str]:
    """The card's training facts: method, data and its size, instruction policy, and how it compares with no
    adapter on validation (and on test, where known)."""
    if not card:
        return []
    n_train = f", {card['n_train_queries']} training queries" if "n_train_queries" in card else ""
    lines = ["## Training", "",
             f"- method: `{card.get('method')}`, train ratio {card.get('train_ratio')}, seed {card.get('seed')}",
             f"- instruction policy: `{card.get('instructions')}` (query template `{card.get('instruction_template')}`)",
             f"- data: {card.get('benchmark')} ({len(card.get('train_units') or [])} training units: "
             f"{', '.join(card.get('train_units') or [])}{n_train})"]
    if ndcg is not None:
        lines.append(f"- test nDCG@10 (macro over tasks, the run's `summary.json`): {float(ndcg):.4f}")
    validation = card.get("validation")
    if validation:
        lines += ["", f"Validation nDCG@10 on {validation['n_val_queries']} queries, against the index model with no "
                  f"adapter ({validation['reason']}):", "", "| method | nDCG@10 | vs no adapter |", "|---|---|---|"]
        lines += [f"| {r['method']} | {r['ndcg@10']:.4f} | {r['delta_vs_no_adapter']:+.4f} |" for r in validation["rows"]]
        if validation.get("warning"):
            lines += ["", f"**Warning:** {validation['warning']}."]
    return lines + [""]


def model_card_markdown(src: TrainedAdapter, prompts: Mapping[str, str]) -> str:
    """An HF-style README.md: YAML front matter (base models, licences, data, nDCG@10) and usage."""
    from era_core.encoders import REGISTRY

    q, d = REGISTRY[src.query_model], REGISTRY[src.doc_model]
    card = src.card
    licenses = sorted({LICENSES.get(src.query_model, "other"), LICENSES.get(src.doc_model, "other")})
    ndcg = (card.get("test_metrics_overall") or {}).get("ndcg@10")
    bench = card.get("benchmark")
    lines = ["---", "language:", "- en", f"license: {licenses[0] if len(licenses) == 1 else 'other'}",
             "library_name: sentence-transformers", "pipeline_tag: sentence-similarity",
             "tags:", "- sentence-transformers", "- feature-extraction", "- retrieval", "- asymmetric",
             "- era-adapter", "base_model:", f"- {q.hub_id}", f"- {d.hub_id}", "base_model_relation: adapter"]
    if bench:
        lines += ["datasets:", f"- {bench}"]
    if ndcg is not None:
        lines += ["metrics:", "- ndcg_at_10", "model-index:", f"- name: {_yaml_str(f'ERA {src.query_model} to {src.doc_model}')}",
                  "  results:", "  - task:", "      type: retrieval", "    dataset:",
                  f"      name: {_yaml_str(bench)}", f"      type: {_yaml_str(bench)}", "    metrics:",
                  "    - type: ndcg_at_10", f"      value: {float(ndcg):.5f}",
                  f"      name: {_yaml_str('nDCG@10, test split, macro mean over tasks')}"]
    lines += ["---", "", f"# ERA adapter: {q.hub_id} queries into the {d.hub_id} index", "",
              f"Queries go through `{q.hub_id}` ({q.dim}-d), then a linear adapter (Dense {q.dim} → {d.dim}, "
              f"Identity activation) and L2 normalisation; documents go through `{d.hub_id}` ({d.dim}-d) unchanged, "
              "so an existing index of that model keeps working.", "",
              "| base model | side | licence |", "|---|---|---|",
              f"| `{q.hub_id}` | query | {LICENSES.get(src.query_model, 'see its model card')} |",
              f"| `{d.hub_id}` | document | {LICENSES.get(src.doc_model, 'see its model card')} |", ""]
    lines += _training_section(card, ndcg)
    lines += ["## Usage", "", "```python", "from sentence_transformers import SentenceTransformer", "",
              "model = SentenceTransformer('path/to/this/folder')",
              "docs = model.encode_document(['a document'])   # the document model, unchanged",
              "queries = model.encode_query(['a query'])       # query model + adapter, in the document space",
              "print(model.similarity(queries, docs))", "```", ""]
    if card.get("instructions", "native") == "native" and not q.instructed:
        lines.append(f"The adapter was trained on bare queries: `{q.hub_id}` takes no instructions, so pass none.")
    else:
        lines.append(f"Instructions follow the template `{q.query_template!r}`; pass one as a prompt, e.g. "
                     f"`model.encode_query(q, prompt={instruction_prefix(q.query_template, 'Retrieve the answer')!r})`.")
    extra = sorted(k for k in prompts if k not in ("query", "document"))
    if extra:
        lines.append(f"Named prompts (`prompt_name=`) for the training tasks: {', '.join(f'`{k}`' for k in extra)}.")
    lines += ["", "Written by `era export` (era_core)."]
    return "\n".join(lines) + "\n"
