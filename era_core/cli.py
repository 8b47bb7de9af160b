"""The ``era`` command: train, evaluate and export adapters on your own data; encode and plan for the paper runs.

``--data`` takes a BEIR-format folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), a folder of
them, or a MAIR-format folder. Every error the user can cause exits 2 with a message saying how
to fix it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from era_core.errors import EraError, ParamsError
from era_core.instructions import INSTRUCTION_SETTINGS
from era_core.methods import METHODS



def _setup(data: Path, units: list, query_model: str, doc_model: str, max_length: int) -> Any:
    from era_core.experiments import Setup

    return Setup(benchmark=str(data.resolve()), tasks=tuple(sorted({u.name.split("/", 1)[0] for u in units})),
                 large_model=query_model, small_model=doc_model, max_length=max_length, dtype="float32", progress=False)


def _units(data: str, split: str) -> tuple[Path, list]:
    from era_core.beir import load_folder_tasks

    folder = Path(data)
    tasks = load_folder_tasks(folder, split=split)
    return folder, [u for t in tasks for u in t.units()]


def cmd_train(args: argparse.Namespace) -> int:
    """Train an adapter on a folder; write adapter, summary and TREC run files under ``--out``."""
    from era_core.experiments import EmbeddingPool, run_dir, run_job, make_run_id
    from era_core.params import SCHEMAS

    if not 0 < args.train_ratio <= 1:
        raise ParamsError(f"--train-ratio must be in (0, 1], got {args.train_ratio}")
    folder, units = _units(args.data, args.split)
    p = {k: v.default for k, v in SCHEMAS["03_training"].items()}
    p.update(large_model=args.query_model, small_model=args.doc_model, max_length=args.max_length, seed=args.seed,
             dtype="float32", progress=False, benchmark=str(folder.resolve()))
    if args.align_epochs is not None:
        p["align_epochs"] = args.align_epochs
    if args.label_epochs is not None:
        p["label_epochs"] = args.label_epochs
    pool = EmbeddingPool(_setup(folder, units, args.query_model, args.doc_model, args.max_length), units)
    out = Path(args.out)
    summary = run_job("own", args.mode, seed=args.seed, train_ratio=args.train_ratio, instructions=args.instructions,
                      train_names=[u.name for u in units], pool=pool, p=p, results=out)
    run = run_dir(out, "own", make_run_id(args.mode, args.instructions, args.train_ratio, args.seed, {}))
    print(f"trained {args.mode}: test nDCG@10 {summary['scopes']['test']['overall'].get('ndcg@10', float('nan')):.4f}; "
          f"run folder {run}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Score an adapter (run or adapter folder) or a zero-shot model on a folder; write summary and TREC files."""
    import numpy as np

    from era_core.adapter import FusedAdapter, apply_adapter, fuse_queries
    from era_core.experiments import embed_corpus, embed_queries, query_inputs, score_unit, summarise
    from era_core.io import write_json
    from era_core.trec import QRELS_FILE, RUN_FILE, write_qrels, write_run

    if (args.adapter is None) == (args.model is None):
        raise ParamsError("pass exactly one of --adapter FOLDER (a trained adapter) or --model KEY (zero-shot)")
    folder, units = _units(args.data, args.split)
    adapter = None
    if args.adapter is not None:
        from era_core.export import resolve_source

        src = resolve_source(args.adapter, max_length=args.max_length)
        adapter, qkey, dkey = src.adapter, src.query_model, src.doc_model
    else:
        qkey = dkey = args.model
    setup = _setup(folder, units, qkey, dkey, args.max_length)
    per_query, runs = {}, {}
    for u in units:
        qids, _, _ = query_inputs(u)
        q = embed_queries(qkey, u, setup, args.instructions)
        if isinstance(adapter, FusedAdapter):
            q = fuse_queries(q, embed_queries(dkey, u, setup, args.instructions), adapter)
        q = apply_adapter(adapter, q) if adapter is not None else q
        per_query[u.name] = score_unit(np.asarray(q), embed_corpus(dkey, u, setup), qids, list(u.corpus), u.qrels,
                                       run_out=runs.setdefault(u.name, {}))
    summary = summarise(per_query, {u.name: u.domain for u in units})
    out = Path(args.out)
    write_run(out / RUN_FILE, runs, tag="era-eval")
    write_qrels(out / QRELS_FILE, {u.name: u.qrels for u in units})
    write_json(out / "summary.json", {"query_model": qkey, "doc_model": dkey, "adapter": args.adapter,
                                      "instructions": args.instructions, "scope": "all", **summary})
    print(f"nDCG@10 {summary['overall'].get('ndcg@10', float('nan')):.4f} over {len(units)} unit(s); wrote {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a sentence-transformers model folder for an adapter."""
    from era_core.export import export_sentence_transformers

    out = export_sentence_transformers(args.source, args.out, query_model=args.query_model, doc_model=args.doc_model,
                                       max_length=args.max_length)
    print(f"exported {args.source} to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``era`` argument parser with its five subcommands."""
    ap = argparse.ArgumentParser(prog="era", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", metavar="{train,eval,export,encode,plan}")
    sub.required = True

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", required=True, help="BEIR-format folder (or a folder of them) or MAIR-format folder")
        p.add_argument("--split", default="test", help="BEIR qrels split to read (qrels/<split>.tsv; default: test)")
        p.add_argument("--max-length", type=int, default=128, help="token truncation length (default: 128)")
        p.add_argument("--instructions", choices=INSTRUCTION_SETTINGS, default="native",
                       help="native (default): each encoder gets instructions only if it was trained on them, as the "
                            "reference does; forced: every encoder gets the instruction template (a stress test)")
        p.add_argument("--out", required=True, help="output folder")

    t = sub.add_parser("train", help="train an adapter on your data", description=cmd_train.__doc__)
    data_args(t)
    t.add_argument("--query-model", required=True, help="query-side (large) encoder key, e.g. minilm-l6")
    t.add_argument("--doc-model", required=True, help="document-side (small) encoder key, e.g. minilm-l3-onnx")
    t.add_argument("--mode", choices=list(METHODS), default="era",
                   help="training method (default: era)")
    t.add_argument("--train-ratio", type=float, default=0.4, help="share of labelled queries to train on (default: 0.4)")
    t.add_argument("--seed", type=int, default=42, help="seed of the split and training (default: 42)")
    t.add_argument("--align-epochs", type=int, default=None, help="Phase 1 epochs (default: the package default)")
    t.add_argument("--label-epochs", type=int, default=None, help="Phase 2 maximum epochs (default: the package default)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="score an adapter or a zero-shot model", description=cmd_eval.__doc__)
    data_args(e)
    e.add_argument("--adapter", default=None, help="run folder or adapter folder to score")
    e.add_argument("--model", default=None, help="encoder key to score zero-shot (both sides)")
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("export", help="write a sentence-transformers model folder", description=cmd_export.__doc__)
    x.add_argument("source", help="run folder (results/runs/<protocol>/<run>) or adapter folder")
    x.add_argument("--out", required=True, help="output model folder")
    x.add_argument("--query-model", default=None, help="override the query encoder key")
    x.add_argument("--doc-model", default=None, help="override the document encoder key")
    x.add_argument("--max-length", type=int, default=None, help="token truncation length (default: the run's)")
    x.set_defaults(func=cmd_export)

    sub.add_parser("encode", help="sharded cache fill (python -m era_core.encode; see era encode --help)", add_help=False)
    sub.add_parser("plan", help="dry run of a profile (python -m era_core.plan; see era plan --help)", add_help=False)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``era`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "encode":
        from era_core import encode

        return encode.main(argv[1:])
    if argv and argv[0] == "plan":
        from era_core import plan

        return plan.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EraError as exc:
        print(f"era {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
