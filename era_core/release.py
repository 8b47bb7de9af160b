"""Export a trained adapter as a self-describing release: safetensors weights plus a model card."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from era_core import paths
from era_core.errors import EraError
from era_core.io import atomic_write_text, read_json, write_json


def largest_ratio_run(results: Path, method: str = "era", instructions: str = "native") -> Path:
    """The in-domain run folder of ``method`` with the largest train ratio (lowest seed on ties)."""
    root = results / "runs" / "in_domain"
    candidates = []
    for summary in sorted(root.glob("*/summary.json")):
        s = read_json(summary)
        if s["method"] == method and s["instructions"] == instructions:
            candidates.append((-s["train_ratio"], s["seed"], summary.parent))
    if not candidates:
        raise EraError(f"no finished in-domain {method!r} run with instructions {instructions} under {root}; "
                       "run notebooks/03_training.ipynb first (make paper)")
    return min(candidates)[2]


def model_card(run: Path) -> dict[str, Any]:
    """The card of a run: encoders, dims, instruction template, data, ratio, seed and test metrics."""
    from era_core.encoders import REGISTRY

    meta, summary = read_json(run / "era_meta.json"), read_json(run / "summary.json")
    enc = meta["config"]["encoders"]
    large, small = meta["config"]["params"]["large_model"], meta["config"]["params"]["small_model"]
    return {
        "method": summary["method"],
        "query_model": large, "query_model_hub_id": REGISTRY[large].hub_id, "query_dim": REGISTRY[large].dim,
        "doc_model": small, "doc_model_hub_id": REGISTRY[small].hub_id, "doc_dim": REGISTRY[small].dim,
        # The model's own query prompt (EmbeddingGemma's) stands in front of the instruction template; a model
        # that takes no instruction in the run's setting sees the bare query.
        "instruction_template": (enc["large"].get("query_prefix") or "") + (
            (enc["large"].get("query_template") or "{query}")
            if summary["instructions"] == "forced" or enc["large"].get("instructed") else "{query}"),
        "benchmark": meta["config"]["params"]["benchmark"], "train_units": summary["train_units"],
        "train_ratio": summary["train_ratio"], "seed": summary["seed"], "instructions": summary["instructions"],
        "test_metrics_overall": summary["scopes"]["test"]["overall"],
        "test_metrics_per_domain": summary["scopes"]["test"]["per_domain"],
        "config_key": summary["config_key"],
    }


def export_release(run: Path, out: Path) -> Path:
    """Write ``adapter.safetensors``, ``config.json``, ``model_card.json`` and ``README.md`` to ``out``."""
    from era_core.adapter import AdaptedQueryEncoder, load_adapter

    card = model_card(run)
    adapter = load_adapter(run / "adapter.safetensors", expected_in_dim=card["query_dim"], expected_out_dim=card["doc_dim"])
    AdaptedQueryEncoder.save_adapter_folder(out, adapter, query_model=card["query_model"], doc_model=card["doc_model"],
                                            instruction_template=card["instruction_template"], card=card,
                                            instructions=card["instructions"])
    write_json(out / "model_card.json", card)
    lines = [f"# ERA adapter: {card['query_model']} → {card['doc_model']}", "",
             f"Maps {card['query_dim']}-d query vectors of `{card['query_model_hub_id']}` into the "
             f"{card['doc_dim']}-d document space of `{card['doc_model_hub_id']}`.", "",
             f"- method: {card['method']}; train ratio {card['train_ratio']}; seed {card['seed']}; "
             f"instructions {card['instructions']}",
             f"- benchmark: {card['benchmark']} ({len(card['train_units'])} training tasks)",
             f"- query template: `{card['instruction_template']!r}`",
             f"- test nDCG@10 (macro over tasks): {card['test_metrics_overall']['ndcg@10']:.4f}", "",
             "```python", "from era_core.adapter import AdaptedQueryEncoder",
             "enc = AdaptedQueryEncoder.from_pretrained('path/to/this/folder')", "vectors = enc.encode(['my query'])", "```", ""]
    atomic_write_text(out / "README.md", "\n".join(lines))
    return out


def export_largest_ratio_adapter(results: Path) -> Path | None:
    """Export the ERA run with the largest train ratio (lowest seed on ties) to ``results/adapters/era``.

    The quick-start notebook reads it. Without a finished ERA run it prints why and exports
    nothing, so 03_training still completes when its ``methods`` leave out ``era``.
    """
    try:
        run = largest_ratio_run(results)
    except EraError as exc:
        print(f"no adapter exported: {exc}")
        return None
    return export_release(run, results / "adapters" / "era")


def main(argv: list[str] | None = None) -> int:
    """CLI behind ``make release-adapter``."""
    ap = argparse.ArgumentParser(prog="python -m era_core.release", description="Export a trained ERA adapter with a model card.")
    ap.add_argument("--results", default=str(paths.RESULTS), help="results folder of a profile (default: %(default)s)")
    ap.add_argument("--method", default="era", help="method whose run to export (default: era)")
    ap.add_argument("--run", default=None, help="explicit run folder (default: the largest-ratio run)")
    ap.add_argument("--out", default=None, help="output folder (default: <results>/adapters/<method>)")
    ap.add_argument("--no-sentence-transformers", action="store_true",
                    help="skip the sentence-transformers model folder (<out>-sentence-transformers)")
    args = ap.parse_args(argv)
    results = Path(args.results)
    try:
        run = Path(args.run) if args.run else largest_ratio_run(results, args.method)
        out = export_release(run, Path(args.out) if args.out else results / "adapters" / args.method)
        if not args.no_sentence_transformers:
            from era_core.export import export_sentence_transformers

            st_out = export_sentence_transformers(run, out.parent / f"{out.name}-sentence-transformers")
            print(f"sentence-transformers model: {st_out}")
    except EraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {run.name} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
