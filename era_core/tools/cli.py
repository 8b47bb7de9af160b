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

from era_core.errors import DataError, EraError, ParamsError
from era_core.instructions import INSTRUCTION_SETTINGS
from era_core.methods import METHODS, get_method
from era_core.validation_choice import AUTO, RULE


def _setup(data: Path, units: list, query_model: str, doc_model: str, max_length: int) -> Any:
    from era_core.setup import Setup

    return Setup(benchmark=str(data.resolve()), tasks=tuple(sorted({u.name.split("/", 1)[0] for u in units})),
                 large_model=query_model, small_model=doc_model, max_length=max_length, dtype="float32", progress=False)


def _units(data: str, split: str, *, strict: bool = False) -> tuple[Path, list]:
    from era_core.data.beir import load_folder_tasks

    folder = Path(data)
    tasks = load_folder_tasks(folder, split=split, strict=strict)
    return folder, [u for t in tasks for u in t.units()]


def _check_user_data(units: list, train_ratio: float, val_ratio: float, eval_ratio: float) -> None:
    """Refuse, before any encoding, data a run cannot use: empty texts, and tasks too small to split."""
    from era_core.splits import minimum_queries

    need = minimum_queries(train_ratio, val_ratio, eval_ratio)
    for u in units:
        empty = [f"query {q!r}" for q, t in u.queries.items() if not t.strip()]
        empty += [f"document {d!r}" for d, t in u.corpus.items() if not t.strip()]
        if empty:
            raise DataError(f"task {u.name!r} has {len(empty)} empty text(s), e.g. {', '.join(empty[:3])}; give every "
                            "query and document some text, or remove them (and their qrels)")
        n = len(u.labelled_qids())
        if n < need:
            raise DataError(f"task {u.name!r} has {n} labelled queries; --train-ratio {train_ratio:g} with a "
                            f"{val_ratio:g} validation and {eval_ratio:g} test share needs at least {need} for one "
                            "training, one validation and one test query: label more queries, or drop the task")


def _train_config(args: argparse.Namespace, folder: Path) -> Any:
    """The 03_training defaults with what the command line sets, validated."""
    from era_core.paper.config import Config
    from era_core.paper.params import SCHEMAS, validate

    if not 0 < args.train_ratio <= 1:
        raise ParamsError(f"--train-ratio must be in (0, 1], got {args.train_ratio}")
    given = {"large_model": args.query_model, "small_model": args.doc_model, "max_length": args.max_length,
             "seed": args.seed, "dtype": "float32", "progress": False, "benchmark": str(folder.resolve())}
    given.update({k: v for k, v in (("align_epochs", args.align_epochs), ("label_epochs", args.label_epochs))
                  if v is not None})
    return Config.from_params(validate("03_training", {k: v.default for k, v in SCHEMAS["03_training"].items()} | given))


def cmd_train(args: argparse.Namespace) -> int:
    """Train an adapter on a folder through the API; compare it with no adapter on the validation queries; write
    the kept adapter's run folder (adapter, meta, summary, TREC files) to ``--out``."""
    from era_core import api
    from era_core.seeding import seed_everything
    from era_core.splits import split_units
    from era_core.validation_choice import candidates

    folder, units = _units(args.data, args.split, strict=True)
    cfg = _train_config(args, folder)
    _check_user_data(units, args.train_ratio, cfg.val_ratio, cfg.eval_ratio)
    splits = split_units(units, args.train_ratio, cfg.val_ratio, cfg.eval_ratio, args.seed)
    setup = _setup(folder, units, args.query_model, args.doc_model, args.max_length)
    embeddings = api.embed(setup, units, args.instructions)
    seed_everything(args.seed)
    align = cfg.alignment(args.seed, setup.device)
    start = (api.phase1(setup, units, align)[0] if any(get_method(m).phase1 for m in candidates(args.mode))
             else None)
    trained, comp = api.compare(setup, embeddings, args.mode, label=cfg.label(None, args.train_ratio, args.seed,
                                                                              setup.device),
                                align=align, phase1=start, splits=splits, instructions=args.instructions)
    print(comp.table())
    print(f"kept {comp.chosen}: {comp.reason}")
    if comp.warning:
        print(f"era train: WARNING: {comp.warning}", file=sys.stderr)
    summary = _write_train_run(Path(args.out), trained[comp.chosen], embeddings, splits, cfg, setup, args)
    print(f"test nDCG@10 of {comp.chosen}: {summary['scopes']['test']['overall'].get('ndcg@10', float('nan')):.4f}; "
          f"run folder {args.out}")
    return 0


def _write_train_run(out: Path, trained: Any, embeddings: list, splits: dict, cfg: Any, setup: Any,
                     args: argparse.Namespace) -> dict[str, Any]:
    """The run folder of ``era train``: adapter, meta (config and key), TREC files of the test split, summary."""
    from era_core import api
    from era_core.cache.keys import config_hash
    from era_core.io import write_json
    from era_core.setup import encoder_identity
    from era_core.splits import test_split
    from era_core.trec import QRELS_FILE, RUN_FILE, write_qrels, write_run

    scores, keep = api.evaluate(trained, embeddings), test_split(splits)
    record = {"params": cfg.params, "encoders": encoder_identity(setup), "instructions": args.instructions,
              "mode": args.mode}
    trained.meta = {**trained.meta, "config": record, "config_key": config_hash(record)}
    api.save(trained, out)
    write_run(out / RUN_FILE, scores.runs, tag=f"era-{trained.method}", keep=keep)
    write_qrels(out / QRELS_FILE, {te.name: te.qrels for te in embeddings}, keep=keep)
    validation = trained.meta["validation"]
    summary = {"protocol": "own", "method": trained.method, "requested": args.mode, "seed": args.seed,
               "train_ratio": args.train_ratio, "instructions": args.instructions,
               "train_units": [te.name for te in embeddings],
               "n_train_queries": sum(len(s["train"]) for s in splits.values()),
               "config_key": trained.meta["config_key"], "validation": validation, "warning": validation["warning"],
               "scopes": {"test": scores.summary(keep)}}
    write_json(out / "summary.json", summary)
    return summary


def cmd_eval(args: argparse.Namespace) -> int:
    """Score a trained adapter (a run folder) or a zero-shot model on a folder; write summary and TREC files."""
    from era_core import api
    from era_core.io import write_json
    from era_core.trec import QRELS_FILE, RUN_FILE, write_qrels, write_run

    if (args.adapter is None) == (args.model is None):
        raise ParamsError("pass exactly one of --adapter FOLDER (a trained adapter) or --model KEY (zero-shot)")
    folder, units = _units(args.data, args.split)
    trained = api.load(args.adapter) if args.adapter is not None else None
    large, small = (trained.large_model, trained.small_model) if trained is not None else (args.model, args.model)
    setup = _setup(folder, units, large, small, args.max_length)
    embeddings = api.embed(setup, units, args.instructions)
    scores = api.evaluate(trained, embeddings)
    summary = scores.summary()
    out = Path(args.out)
    write_run(out / RUN_FILE, scores.runs, tag="era-eval")
    write_qrels(out / QRELS_FILE, {u.name: u.qrels for u in units})
    write_json(out / "summary.json", {"query_model": large if trained is None else trained.query_model,
                                      "doc_model": small, "adapter": args.adapter,
                                      "instructions": args.instructions, "scope": "all", **summary})
    print(f"nDCG@10 {summary['overall'].get('ndcg@10', float('nan')):.4f} over {len(units)} unit(s); wrote {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a sentence-transformers model folder for an adapter."""
    from era_core import api

    out = api.export(args.source, args.out, query_model=args.query_model, doc_model=args.doc_model,
                     max_length=args.max_length, force=args.force)
    print(f"exported {args.source} to {out}")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    """Check a papermill parameter file for a notebook, or list a notebook's parameters with their defaults."""
    from era_core.paper.params import SCHEMAS, load_params_file

    want = 2 if args.action == "check" else 1
    if len(args.args) != want:
        raise ParamsError("usage: era params check params/<profile>/<notebook>.yaml NOTEBOOK, or era params show NOTEBOOK")
    if args.action == "check":
        load_params_file(args.args[0], args.args[1])
        print(f"ok: {args.args[0]} is valid for {args.args[1]}")
        return 0
    schema = SCHEMAS.get(args.args[0])
    if schema is None:
        raise ParamsError(f"unknown notebook {args.args[0]!r}; known notebooks: {', '.join(SCHEMAS)}")
    for name, spec in schema.items():
        print(f"{name}: {spec.type.__name__} = {spec.default!r}  # {spec.help}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``era`` argument parser with its six subcommands."""
    ap = argparse.ArgumentParser(prog="era", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", metavar="{train,eval,export,params,encode,plan}")
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
    t.add_argument("--mode", choices=[AUTO, *METHODS], default=AUTO,
                   help=f"training method (default: auto). Every mode is compared with no adapter on the validation "
                        f"queries and warns when it scores below it. auto keeps {RULE}")
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
    x.add_argument("source", help="run folder (the --out of era train, or results/runs/<protocol>/<run>)")
    x.add_argument("--out", required=True, help="output model folder")
    x.add_argument("--query-model", default=None, help="override the query encoder key")
    x.add_argument("--doc-model", default=None, help="override the document encoder key")
    x.add_argument("--max-length", type=int, default=None, help="token truncation length (default: the run's)")
    x.add_argument("--force", action="store_true", help="export even an adapter that scored below no adapter on "
                   "the validation queries (refused otherwise)")
    x.set_defaults(func=cmd_export)

    p = sub.add_parser("params", help="check a notebook's parameter file, or list its parameters",
                       description=cmd_params.__doc__)
    p.add_argument("action", choices=("check", "show"), help="check FILE NOTEBOOK, or show NOTEBOOK")
    p.add_argument("args", nargs="+", metavar="FILE|NOTEBOOK", help="params/<profile>/<notebook>.yaml NOTEBOOK (check) "
                   "or NOTEBOOK (show)")
    p.set_defaults(func=cmd_params)

    sub.add_parser("encode", help="sharded cache fill (python -m era_core.tools.encode; see era encode --help)", add_help=False)
    sub.add_parser("plan", help="dry run of a profile (python -m era_core.tools.plan; see era plan --help)", add_help=False)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``era`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "encode":
        from era_core.tools import encode

        return encode.main(argv[1:])
    if argv and argv[0] == "plan":
        from era_core.tools import plan

        return plan.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EraError as exc:
        print(f"era {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
