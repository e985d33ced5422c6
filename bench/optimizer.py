"""The optimizer step: PyTorch's fused Adam (what transduce uses) against its per-tensor loop.

Builds each recipe's model (vocabularies of 40 and 45 symbols, as the g2p
data has), gives every parameter a random gradient and times
``optimizer.step()`` on one thread: the median of ``--steps`` steps, then the
median of ``--alternations`` alternations of the three variants (``fused=True``,
``foreach=True``, the default per-tensor loop).

    python3 bench/optimizer.py --write
    python3 bench/optimizer.py --recipes toy --steps 5 --alternations 1
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import torch

from results_md import cpu_name, publish

HEADING = "## Optimizer step: fused Adam against the loop (bench/optimizer.py)"
VARIANTS = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}


def step_ms(params: list[torch.nn.Parameter], variant: str, steps: int) -> float:
    """Median milliseconds of one Adam step over ``steps`` steps (after 3 untimed)."""
    opt = torch.optim.Adam(params, lr=1e-3, **VARIANTS[variant])
    times = []
    for i in range(steps + 3):
        for p in params:
            p.grad = torch.randn_like(p)
        start = time.perf_counter()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    from transduce import config
    from transduce.config import RECIPES
    from transduce.model import Seq2Seq

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", nargs="+", default=["demo", "g2p"])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--alternations", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="put the section into bench/RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for recipe in args.recipes:
        cfg = config.load(RECIPES / f"{recipe}.yaml", [])
        params = list(Seq2Seq.from_config(cfg.model, 40, 45).parameters())
        ms: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(args.alternations):
            for variant in VARIANTS:
                ms[variant].append(step_ms(params, variant, args.steps))
        med = {v: statistics.median(ms[v]) for v in VARIANTS}
        size = sum(p.numel() for p in params)
        rows.append(f"| {recipe} | {size:,} | {med['fused']:.2f} | {med['foreach']:.2f} | {med['loop']:.2f} "
                    f"| {med['loop'] / med['fused']:.1f}x |")
    text = f"""{HEADING}

Milliseconds per Adam step on one thread, median of {args.steps} steps and of {args.alternations}
alternations. CPU: {cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__},
{datetime.date.today()}.

Command: `python3 bench/optimizer.py --recipes {' '.join(args.recipes)} --steps {args.steps} --alternations {args.alternations}`

| recipe's model | parameters | fused | foreach | loop | loop / fused |
|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n"
    publish(HEADING, text, args.write)


if __name__ == "__main__":
    main()
