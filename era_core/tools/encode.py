"""Sharded encoding into the embedding cache, on one process or many (``torchrun``).

    torchrun --nproc-per-node 8 --nnodes 1 -m era_core.tools.encode --model qwen3-8b --benchmark mair \\
        --tasks all --role document,query --max-length 8192 --batch-size 8 --device auto

Every rank builds the same list of cache entries (one per task unit and role, exactly the
entries ``era_core.paper`` reads), cuts each into the cache's shard layout and encodes the
shards assigned to it: over the global list of (entry, shard) pairs in order, pair g goes to rank
``g % world_size`` (for a single entry: shard i to rank i % world_size). Shards are committed into
the same entry folder ``cache.embed_texts`` uses (same key, file names and checksums, atomic writes
under the entry's lock). After a barrier rank 0 verifies every shard and assembles
``embeddings.npy`` + ``manifest.json``, so a later ``embed_texts`` call is a cache hit.

A restarted job skips committed shards. Because batches never cross a shard (here and in
``embed_texts``), the array equals a single-process ``embed_texts`` with the same ``shard_size``,
``batch_size``, device and dtype byte for byte (given deterministic kernels on that device).

Without torchrun (no ``WORLD_SIZE`` in the environment) it runs as one process.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from era_core import paths
from era_core.errors import EraError, ParamsError
from era_core.instructions import INSTRUCTION_SETTINGS

ROLES = ("document", "query", "sample")
#: Exit code when ``--max-shards`` stopped the job before every entry was complete.
EXIT_INCOMPLETE = 3


# ----------------------------------------------------------------------------- distributed context


@dataclass
class DistContext:
    """Rank, world size and (when several processes run) the torch.distributed process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: single process, no process group

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op for a single process)."""
        if self.backend is None:
            return
        import torch.distributed as dist

        if self.backend == "nccl":
            dist.barrier(device_ids=[self.local_rank])
        else:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.backend is None:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        """Tear the process group down."""
        if self.backend is not None:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.backend = None


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ParamsError(f"environment variable {name}={raw!r} must be an integer (torchrun sets it)") from None


def init_distributed(device: str, backend: str = "auto", timeout_hours: float = 48.0) -> DistContext:
    """Read RANK/WORLD_SIZE/LOCAL_RANK (set by torchrun) and join the process group if there are several ranks."""
    ctx = DistContext(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if ctx.world_size < 1 or not 0 <= ctx.rank < ctx.world_size:
        raise ParamsError(f"RANK={ctx.rank} / WORLD_SIZE={ctx.world_size} are inconsistent; launch with torchrun")
    if ctx.world_size == 1:
        return ctx
    if backend == "auto":
        backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ParamsError(f"--backend must be auto, nccl or gloo, got {backend!r}")
    import torch.distributed as dist

    # Ranks that finish early wait at the barrier for the slowest one: give it hours, not minutes.
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=timeout_hours))
    ctx.backend = backend
    return ctx


def resolve_device(device: str, local_rank: int = 0) -> str:
    """``auto`` → ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``cuda`` → ``cuda:<local_rank>``."""
    if device == "cpu" or device.startswith("cuda:"):
        if device.startswith("cuda:"):
            _require_cuda(device)
        return device
    if device not in ("auto", "cuda"):
        raise ParamsError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    import torch

    if device == "auto" and not torch.cuda.is_available():
        return "cpu"
    _require_cuda(device)
    n = torch.cuda.device_count()
    if local_rank >= n:
        raise ParamsError(f"LOCAL_RANK {local_rank} needs GPU {local_rank} but this node has {n}; "
                          f"use --nproc-per-node {n} or fewer")
    return f"cuda:{local_rank}"


def _require_cuda(device: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise ParamsError(f"--device {device} requested but torch sees no CUDA device; use --device cpu or auto")


# ----------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """One cache entry to fill: a readable label and its plan."""

    label: str
    plan: Any  # era_core.cache.EntryPlan


def unit_requests(unit: Any, role: str, *, encoder: Any, instructions: str, samples_per_task: int, seed: int
                  ) -> tuple[list[str], list[str] | None, str]:
    """The (texts, instructions, cache role) the experiments ask the cache for, for one unit and role, when
    ``encoder`` embeds it under the instruction setting ``instructions``."""
    if role == "document":
        return list(unit.corpus.values()), None, "document"
    if role == "query":
        from era_core.vectors import model_instructions, query_inputs

        _, texts, inst = query_inputs(unit)
        return texts, model_instructions(encoder, instructions, inst), "query"
    if role == "sample":
        from era_core.train import alignment_sample

        # alignment_sample draws per unit with a fresh Random(seed), so one unit at a time is identical.
        rows = alignment_sample([len(unit.corpus)], samples_per_task, seed=seed)[0]
        docs = list(unit.corpus.values())
        return [docs[i] for i in rows], None, "document"
    raise ParamsError(f"unknown role {role!r}; allowed: {', '.join(ROLES)}")


def build_jobs(encoder: Any, units: Sequence[Any], roles: Sequence[str], *, instructions: str = "native",
               samples_per_task: int = 1000, seed: int = 42, root: Path | None = None, shard_size: int = 1024
               ) -> list[Job]:
    """Plan every (unit, role) entry in a fixed order; empty requests are skipped."""
    from era_core.cache import plan_entry

    jobs = []
    for unit in units:
        for role in roles:
            texts, instructions, cache_role = unit_requests(
                unit, role, encoder=encoder, instructions=instructions, samples_per_task=samples_per_task, seed=seed)
            if not texts:
                continue
            plan = plan_entry(encoder, texts, role=cache_role, instructions=instructions, root=root,
                              shard_size=shard_size)
            jobs.append(Job(f"{unit.name}:{role}", plan))
    return jobs


def assign_shards(jobs: Sequence[Job], rank: int, world_size: int) -> list[tuple[int, int]]:
    """(job index, shard) pairs of ``rank``: the g-th pair over all jobs goes to rank g % world_size."""
    pairs = [(j, i) for j, job in enumerate(jobs) for i in range(job.plan.n_shards)]
    return [pair for g, pair in enumerate(pairs) if g % world_size == rank]


@dataclass
class RankReport:
    """What one rank did: shards encoded and skipped (already committed) per entry label."""

    rank: int
    world_size: int
    device: str
    encoded: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, int]] = field(default_factory=list)
    stopped_early: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"rank": self.rank, "world_size": self.world_size, "device": self.device,
                "encoded": [list(x) for x in self.encoded], "skipped": [list(x) for x in self.skipped],
                "stopped_early": self.stopped_early}


def encode_assigned(encoder: Any, jobs: Sequence[Job], pairs: Sequence[tuple[int, int]], report: RankReport, *,
                    done: set[str], batch_size: int, max_shards: int | None, progress: bool) -> None:
    """Encode and commit this rank's shards, skipping finished entries and committed shards."""
    from tqdm.auto import tqdm

    from era_core.cache import commit_shard, encode_shard, shard_committed

    todo = [(j, i) for j, i in pairs if jobs[j].plan.key not in done]
    for j, i in tqdm(todo, desc=f"rank {report.rank} shards", disable=not progress):
        job = jobs[j]
        if shard_committed(job.plan, i):
            report.skipped.append((job.label, i))
            continue
        if max_shards is not None and len(report.encoded) >= max_shards:
            report.stopped_early = True
            break
        vecs = encode_shard(encoder, job.plan, i, batch_size=batch_size, progress=False)
        commit_shard(job.plan, i, vecs)
        report.encoded.append((job.label, i))


def finalize_jobs(jobs: Sequence[Job], done: set[str], *, progress: bool) -> tuple[list[str], dict[str, list[int]]]:
    """Rank 0: assemble every entry whose shards are all committed; returns (finished labels, missing shards)."""
    from filelock import FileLock
    from tqdm.auto import tqdm

    from era_core.cache import finalize_entry, lookup_entry, missing_shards

    finished, incomplete = [], {}
    for job in tqdm(jobs, desc="assemble", disable=not progress):
        if job.plan.key in done:
            finished.append(job.label)
            continue
        job.plan.edir.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(job.plan.lock_path)):
            if lookup_entry(job.plan) is not None:  # another process finished it meanwhile
                finished.append(job.label)
                continue
            missing = missing_shards(job.plan)
            if missing:
                incomplete[job.label] = missing
                continue
            finalize_entry(job.plan)
        if lookup_entry(job.plan) is None:
            raise EraError(f"the entry just assembled in {job.plan.edir} does not verify; the disk may be failing")
        finished.append(job.label)
    return finished, incomplete


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    ap = argparse.ArgumentParser(
        prog="python -m era_core.tools.encode",
        description="Encode benchmark texts into the embedding cache, sharded over torchrun ranks "
                    "(or in one process). Afterwards the notebooks' embed_texts calls are cache hits.",
        epilog="Example: torchrun --nproc-per-node 8 -m era_core.tools.encode --model qwen3-8b --benchmark mair "
               "--tasks all --role query,sample --max-length 8192 --batch-size 8",
    )
    ap.add_argument("--model", required=True, help="registry key, e.g. qwen3-8b, qwen3-0.6b, minilm-l6")
    ap.add_argument("--benchmark", required=True, help="mair, offline or offline-smoke")
    ap.add_argument("--tasks", default="all", help="'all' or comma-separated task names (default: all)")
    ap.add_argument("--data-root", default=None,
                    help="local MAIR-format folder (MAIR-Queries/, MAIR-Docs/) instead of the hub, for --benchmark mair")
    ap.add_argument("--role", default="document,query",
                    help="comma-separated: document (the full corpus), query (labelled queries), sample (the "
                         "Phase 1 alignment sample of the corpus: all the large model needs) (default: %(default)s)")
    ap.add_argument("--instructions", default="native", choices=(*INSTRUCTION_SETTINGS, "both"),
                    help="query instruction setting, as the notebooks' (native, forced, or both; default: native)")
    ap.add_argument("--samples-per-task", type=int, default=1000, help="Phase 1 sample size per unit (align_samples_per_task)")
    ap.add_argument("--seed", type=int, default=42, help="Phase 1 sampling seed (the notebooks' seed)")
    ap.add_argument("--max-length", type=int, default=None,
                    help="token truncation; must equal the notebooks' max_length for their cache hits "
                         "(default: the model's registry default)")
    ap.add_argument("--shard-size", type=int, default=1024, help="rows per shard (default: %(default)s, as embed_texts)")
    ap.add_argument("--batch-size", type=int, default=32, help="encoding batch size within a shard (default: %(default)s)")
    ap.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if available), cpu, cuda or cuda:N")
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"),
                    help="auto: the model's CUDA dtype on GPU; on CPU bfloat16 where the CPU has native bf16, else float32")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per rank (default: library default)")
    ap.add_argument("--backend", default="auto", choices=("auto", "nccl", "gloo"),
                    help="process-group backend when launched by torchrun (auto: nccl on CUDA, gloo on CPU)")
    ap.add_argument("--barrier-timeout-hours", type=float, default=48.0,
                    help="how long finished ranks wait for the slowest one (default: %(default)s)")
    ap.add_argument("--max-shards", type=int, default=None,
                    help="encode at most this many shards per rank, then stop (for time-limited allocations); "
                         f"exit code {EXIT_INCOMPLETE} while entries remain incomplete")
    ap.add_argument("--cache-dir", default=None, help=f"embedding cache root (default: {paths.EMBEDDING_CACHE})")
    ap.add_argument("--report-dir", default=None, help="write rank-<r>.json with the shards each rank encoded")
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return ap


def _parse_roles(raw: str) -> list[str]:
    roles = [r.strip() for r in raw.split(",") if r.strip()]
    bad = [r for r in roles if r not in ROLES]
    if not roles or bad:
        raise ParamsError(f"--role {raw!r}: allowed values are {', '.join(ROLES)} (comma-separated)")
    return list(dict.fromkeys(roles))


def _check_args(args: argparse.Namespace) -> None:
    for name in ("shard_size", "batch_size", "samples_per_task"):
        if getattr(args, name) < 1:
            raise ParamsError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_shards is not None and args.max_shards < 0:
        raise ParamsError(f"--max-shards must be >= 0, got {args.max_shards}")


def _load_units(args: argparse.Namespace, tasks: list[str], ctx: DistContext, progress: bool) -> list[Any]:
    """Every unit of the requested tasks; rank 0 first, since it may build the offline benchmark or fill the HF cache."""
    from era_core.data import load_tasks

    data_root = Path(args.data_root) if args.data_root else None
    if ctx.is_main:
        loaded = load_tasks(args.benchmark, tasks, root=data_root, progress=progress)
    ctx.barrier()
    if not ctx.is_main:
        loaded = load_tasks(args.benchmark, tasks, root=data_root, progress=False)
    return [u for t in loaded for u in t.units()]


def _all_jobs(args: argparse.Namespace, encoder: Any, units: list[Any], roles: list[str]) -> list[Job]:
    """The cache entries to fill, each once (queries per instruction setting, documents once)."""
    settings = list(INSTRUCTION_SETTINGS) if args.instructions == "both" else [args.instructions]
    root = Path(args.cache_dir) if args.cache_dir else None
    jobs: list[Job] = []
    for setting in settings:
        q_roles = roles if setting == settings[0] else [r for r in roles if r == "query"]
        jobs += build_jobs(encoder, units, q_roles, instructions=setting,
                           samples_per_task=args.samples_per_task, seed=args.seed, root=root,
                           shard_size=args.shard_size)
    return list({j.plan.key: j for j in jobs}.values())  # an entry requested twice is filled once


def _finish(args: argparse.Namespace, jobs: list[Job], done: set[str], progress: bool) -> int:
    """Rank 0: merge the shards into entries and report; the exit code (incomplete entries: rerun)."""
    finished, incomplete = finalize_jobs(jobs, done, progress=progress)
    root = Path(args.cache_dir) if args.cache_dir else None
    print(f"era.encode: {len(finished)} of {len(jobs)} entries complete in {root or paths.EMBEDDING_CACHE}", flush=True)
    if not incomplete:
        return 0
    listing = "; ".join(f"{k}: shards {v}" for k, v in list(incomplete.items())[:10])
    print(f"era.encode: {len(incomplete)} entries incomplete ({listing}); rerun to continue", flush=True)
    return EXIT_INCOMPLETE


def run(args: argparse.Namespace) -> int:
    """Do the work of one rank; returns the process exit code."""
    from era_core.encoders import load_encoder
    from era_core.io import write_json
    from era_core.paper.params import resolve_tasks

    roles = _parse_roles(args.role)
    _check_args(args)
    tasks = resolve_tasks(args.benchmark, args.tasks)
    device = resolve_device(args.device, _env_int("LOCAL_RANK", 0))
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)
    ctx = init_distributed(device, args.backend, args.barrier_timeout_hours)
    progress = not args.no_progress
    try:
        encoder = load_encoder(args.model, device=device, dtype=args.dtype, max_length=args.max_length,
                               threads=args.threads, progress=progress and ctx.is_main)
        jobs = _all_jobs(args, encoder, _load_units(args, tasks, ctx, progress), roles)
        if ctx.is_main:
            from era_core.cache import lookup_entry

            done = {j.plan.key for j in jobs if lookup_entry(j.plan) is not None}
            n_shards = sum(j.plan.n_shards for j in jobs)
            print(f"era.encode: {args.model} ({encoder.dim}-d, max_length {getattr(encoder, 'max_length', '-')}, "
                  f"{device}) on {ctx.world_size} rank(s): {len(jobs)} entries, {n_shards} shards of "
                  f"{args.shard_size}; {len(done)} entries already cached", flush=True)
        done = ctx.broadcast(done if ctx.is_main else None)
        report = RankReport(ctx.rank, ctx.world_size, device)
        encode_assigned(encoder, jobs, assign_shards(jobs, ctx.rank, ctx.world_size), report, done=done,
                        batch_size=args.batch_size, max_shards=args.max_shards, progress=progress)
        if args.report_dir:
            write_json(Path(args.report_dir) / f"rank-{ctx.rank}.json", report.as_dict())
        ctx.barrier()
        code = _finish(args, jobs, done, progress) if ctx.is_main else 0
        code = ctx.broadcast(code)
        ctx.barrier()
        return code
    finally:
        ctx.close()


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``python -m era_core.tools.encode`` or under ``torchrun -m era_core.tools.encode``)."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except EraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
