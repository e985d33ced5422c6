"""Where the time of a worker process's update goes, with and without length-paired batches.

Starts ``--workers`` one-thread processes (torchrun's environment, gloo) on a
recipe's data and model and times each update in four phases on every rank:

- compute: forward and backward of the rank's own micro-batches;
- wait: a barrier, i.e. how long the rank waits for the slowest one;
- all-reduce: the gradients' sum over the ranks (one flat tensor, as DDP's bucket);
- optimizer: the optimizer step.

It does this for two batch orders, alternating them ``--alternations`` times:
``paired``, the trainer's (the batches of one update are neighbours in a
length-sorted pool: batching.BatchSampler's ``group``), and ``shuffled``, the
order before it (every batch placed on its own). The table gives the mean
milliseconds per update (over the ranks and the updates after ``--skip``),
median over alternations, and the ratio of the totals.

    python3 bench/worker_phases.py --write          # demo recipe, 2 workers, 300 updates, 3 alternations
    python3 bench/worker_phases.py --recipe toy --updates 20 --skip 5 --alternations 1

Run it on an otherwise idle machine: the workers use every core.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PHASES = ("compute", "wait", "all-reduce", "optimizer")
HEADING = "## Where a worker's update time goes (bench/worker_phases.py)"


def worker(args: argparse.Namespace) -> None:
    """One rank (started by torchrun): time the phases; rank 0 prints every rank's means as JSON."""
    import torch.distributed as dist

    from transduce import config
    from transduce.batching import collate
    from transduce.config import RECIPES
    from transduce.loss import masked_cross_entropy
    from transduce.train import Trainer

    torch.set_num_threads(1)
    cfg = config.load(RECIPES / f"{args.recipe}.yaml",
                      ["train.max_minutes=null", f"train.max_steps={args.updates}", "train.device=cpu",
                       "train.processes=1", "train.tensorboard=false", "train.progress=false"])
    trainer = Trainer(cfg, args.out)
    model, rank, world = trainer.model, trainer.workers.rank, trainer.workers.world
    if args.order == "shuffled":
        trainer.data.sampler.group = 1
    times = {p: [] for p in PHASES}
    for step in range(args.updates):
        group = trainer.next_group()
        trainer.pos += len(group)
        t0 = time.perf_counter()
        n_global = sum(trainer._tokens(b) for b in group)
        for indices in group[rank::world]:
            batch = collate(trainer.data.train, indices)
            with trainer._autocast():
                logits = model(batch.src, batch.src_lengths, batch.tgt_in).logits
            out = masked_cross_entropy(logits, batch.tgt_out, cfg.train.label_smoothing)
            (out.loss_sum * world / n_global).backward()
        t1 = time.perf_counter()
        dist.barrier()
        t2 = time.perf_counter()
        flat = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        dist.all_reduce(flat)
        t3 = time.perf_counter()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if step >= args.skip:
            for phase, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[phase].append(dt)
    means = torch.tensor([1000 * statistics.mean(times[p]) for p in PHASES], dtype=torch.float64)
    every = [torch.zeros_like(means) for _ in range(world)]
    dist.all_gather(every, means)
    if rank == 0:
        print(json.dumps({"ranks": [m.tolist() for m in every]}), flush=True)
    trainer.workers.close()


def run_once(args: argparse.Namespace, order: str, out: Path) -> list[float]:
    """Mean ms per update of each phase, averaged over the ranks, for one batch order."""
    from transduce.launch import _free_port
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.workers),
            "--master_port", str(args.port or _free_port()), __file__, "--worker", "--order", order,
            "--recipe", args.recipe, "--updates", str(args.updates), "--skip", str(args.skip),
            "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    line = next((l for l in done.stdout.splitlines() if l.startswith('{"ranks"')), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"bench/worker_phases.py: the workers failed:\n{done.stderr[-2000:]}")
    ranks = json.loads(line)["ranks"]
    return [statistics.mean(r[i] for r in ranks) for i in range(len(PHASES))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="demo")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--updates", type=int, default=300)
    ap.add_argument("--skip", type=int, default=50, help="updates not timed at the start")
    ap.add_argument("--alternations", type=int, default=3)
    ap.add_argument("--port", type=int, help="the workers' rendezvous port (default: a free one)")
    ap.add_argument("--write", action="store_true", help="put the section into bench/RESULTS.md")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--order", choices=("paired", "shuffled"), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.skip >= args.updates:
        raise SystemExit("bench/worker_phases.py: --skip must be below --updates")
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results_md import cpu_name, publish

    runs: dict[str, list[list[float]]] = {"paired": [], "shuffled": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.alternations):
            for order in ("shuffled", "paired"):
                runs[order].append(run_once(args, order, Path(tmp) / f"{order}{i}"))
                print(f"alternation {i + 1} {order}: " + ", ".join(
                    f"{p} {v:.1f} ms" for p, v in zip(PHASES, runs[order][-1])), file=sys.stderr)
    med = {o: [statistics.median(r[i] for r in runs[o]) for i in range(len(PHASES))] for o in runs}
    totals = {o: [sum(r) for r in runs[o]] for o in runs}
    ratio = statistics.median(s / p for s, p in zip(totals["shuffled"], totals["paired"]))
    rows = "\n".join(f"| {o} | " + " | ".join(f"{v:.1f}" for v in med[o])
                     + f" | {statistics.median(totals[o]):.1f} |" for o in ("shuffled", "paired"))
    text = f"""{HEADING}

Milliseconds per update of {args.workers} one-thread worker processes (gloo) on the
`{args.recipe}` recipe, mean over the ranks and updates {args.skip + 1}-{args.updates}, median of
{args.alternations} alternations. CPU: {cpu_name()}, {os.cpu_count()} logical CPUs, torch
{torch.__version__}, {datetime.date.today()}.

Command: `python3 bench/worker_phases.py --recipe {args.recipe} --workers {args.workers} --updates {args.updates} --skip {args.skip} --alternations {args.alternations}`

| batch order | {' | '.join(PHASES)} | total |
|---|---|---|---|---|---|
{rows}

`shuffled` places every batch on its own (the order before the batches of an update were
paired); `paired` is the trainer's. Updates per second, paired against shuffled: **{ratio:.2f}x**
(median of the alternations' ratios).
"""
    publish(HEADING, text, args.write)


if __name__ == "__main__":
    main()
