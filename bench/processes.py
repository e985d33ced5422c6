"""Worker processes against threads: training tokens/s of one recipe on this machine.

Trains the same recipe (default: the demo's g2p model) for ``--steps`` updates
with N worker processes (``train.processes=N``, 1 thread each) and with one
process of N threads, alternating the two ``--alternations`` times (taking
turns at going first), and
reports the median target tokens per second of each (the run's own count of
target tokens over its training time: worker start-up and data loading are
outside it, validation is switched off) and their ratio. A worker process
takes batch_tokens of its own, so its updates are N times larger: the
comparison is of throughput, not of steps.

    python3 bench/processes.py --write          # demo recipe, 2 workers vs 2 threads, 3 alternations
    python3 bench/processes.py --recipe g2p --steps 60 --alternations 1

Run it on an otherwise idle machine: both variants use every core.
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
from pathlib import Path

import torch

from results_md import cpu_name, publish

HEADING = "## Worker processes against threads (bench/processes.py)"


def run_once(recipe: str, steps: int, processes: int, threads: int, out: Path) -> float:
    """Target tokens/s of one training run in a fresh process."""
    argv = [sys.executable, "-m", "transduce", "train", recipe, "--threads", str(threads),
            "--out", str(out), f"train.processes={processes}", f"train.max_steps={steps}",
            "train.max_minutes=null", "train.valid_every=1000000", "train.valid_max_sentences=1",
            "train.progress=false", "train.tensorboard=false", "train.device=cpu"]
    done = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    if done.returncode != 0:
        raise SystemExit(f"bench/processes.py: training failed:\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    return summary["tokens"] / summary["time_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="demo")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--alternations", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="put the section into bench/RESULTS.md")
    args = ap.parse_args()
    n = args.workers
    rates: dict[str, list[float]] = {"threads": [], "workers": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.alternations):
            # the two take turns at going first: on a shared host the first run of an
            # alternation was often the slower one, whichever it was
            for kind in ("threads", "workers")[::1 if i % 2 == 0 else -1]:
                procs, threads = (1, n) if kind == "threads" else (n, 1)
                rates[kind].append(run_once(args.recipe, args.steps, procs, threads, Path(tmp) / f"{kind}{i}"))
            print(f"alternation {i + 1}: 1 process x {n} threads {rates['threads'][-1]:,.0f} tok/s, "
                  f"{n} processes x 1 thread {rates['workers'][-1]:,.0f} tok/s", file=sys.stderr)
    one, many = statistics.median(rates["threads"]), statistics.median(rates["workers"])
    text = f"""{HEADING}

Training target tokens/s of the `{args.recipe}` recipe, {args.steps} updates per run, validation off,
median of {args.alternations} alternations. CPU: {cpu_name()}, {os.cpu_count()} logical CPUs,
torch {torch.__version__}, {datetime.date.today()}.

Command: `python3 bench/processes.py --recipe {args.recipe} --steps {args.steps} --workers {n} --alternations {args.alternations}`

| setting | tokens/s (median) | runs |
|---|---|---|
| 1 process x {n} threads (`train.processes=1`) | {one:,.0f} | {', '.join(f'{r:,.0f}' for r in rates['threads'])} |
| {n} processes x 1 thread (`train.processes={n}`) | {many:,.0f} | {', '.join(f'{r:,.0f}' for r in rates['workers'])} |

Ratio: **{many / one:.2f}x** for the worker processes. Their updates are {n} times as large
({n} x batch_tokens), so per update they are {many / one / n:.2f}x as fast.
"""
    publish(HEADING, text, args.write)


if __name__ == "__main__":
    main()
