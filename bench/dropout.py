"""Dropout's mask: transduce's integer-draw mask against ``F.dropout`` (bernoulli_), per training step.

For each recipe, builds the trainer on the recipe's own data and times
``Trainer.train_step`` (forward, backward, clipping, the optimizer step) on the
same batches with the two dropouts, one thread, in ABBA order (the two take
turns at going first: on a shared host the first run of a pair tends to be
the slower). Reports the median milliseconds per step of each and the median
of the per-alternation ratios; plus forward + backward of one dropout on a
[190, 12, 512] tensor (the demo's encoder memory is about that size).

    python3 bench/dropout.py --write
    python3 bench/dropout.py --recipes demo --overrides model.dropout=0.1
    python3 bench/dropout.py --recipes toy --steps 4 --alternations 1
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time

import torch

from results_md import cpu_name, publish
from transduce import dropout as droplib
from transduce import rnn

TRANSDUCE = droplib.dropout

HEADING = "## Dropout masks: integer draws against bernoulli_ (bench/dropout.py)"


def use(variant: str) -> None:
    """Route transduce's dropout to ``variant`` ("transduce" or "bernoulli")."""
    droplib.dropout = rnn.dropout = TRANSDUCE if variant == "transduce" else torch.nn.functional.dropout


def step_ms(trainer, groups: list, variant: str) -> float:
    """Median milliseconds of ``trainer.train_step`` over ``groups`` (after 2 untimed)."""
    from transduce.train import Interval

    use(variant)
    times = []
    for i, group in enumerate(groups):
        start = time.perf_counter()
        trainer.train_step(group, 1.0, Interval())
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def tensor_ms(variant: str, reps: int = 30) -> float:
    """Median milliseconds of forward + backward of one dropout (p 0.1) on [190, 12, 512]."""
    use(variant)
    x = torch.randn(190, 12, 512, requires_grad=True)
    grad = torch.ones_like(x)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        droplib.dropout(x, 0.1, True).backward(grad)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def abba(measure, alternations: int) -> tuple[float, float, float]:
    """(median ms bernoulli, median ms transduce, median ratio), the order swapping each time."""
    ms: dict[str, list[float]] = {"bernoulli": [], "transduce": []}
    ratios = []
    for k in range(alternations):
        order = ("bernoulli", "transduce") if k % 2 == 0 else ("transduce", "bernoulli")
        got = {v: measure(v) for v in order}
        for v in order:
            ms[v].append(got[v])
        ratios.append(got["bernoulli"] / got["transduce"])
    return statistics.median(ms["bernoulli"]), statistics.median(ms["transduce"]), statistics.median(ratios)


def main() -> None:
    from transduce import config
    from transduce.config import RECIPES
    from transduce.train import Trainer

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", nargs="+", default=["demo", "g2p"])
    ap.add_argument("--overrides", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every recipe, e.g. model.dropout=0.1")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    ap.add_argument("--alternations", type=int, default=4)
    ap.add_argument("--write", action="store_true", help="put the section into bench/RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    b, t, r = abba(tensor_ms, args.alternations)
    rows = [f"| one dropout, [190, 12, 512], p 0.1 (forward + backward) | {b:.2f} | {t:.2f} | {r:.2f}x |"]
    for recipe in args.recipes:
        cfg = config.load(RECIPES / f"{recipe}.yaml", [
            "train.max_minutes=null", "train.processes=1", "train.device=cpu", "train.tensorboard=false",
            *args.overrides])
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(cfg, tmp)
            groups = [[batch] for batch in trainer._epoch_batches()[:args.steps + 2]]
            b, t, r = abba(lambda v: step_ms(trainer, groups, v), args.alternations)
        rows.append(f"| `{recipe}` training step (dropout {cfg.model.dropout}, "
                    f"embeddings {cfg.model.emb_dropout}) | {b:.1f} | {t:.1f} | {r:.2f}x |")
    use("transduce")
    overrides = f" --overrides {' '.join(args.overrides)}" if args.overrides else ""
    text = f"""{HEADING}

Milliseconds on one thread: medians of {args.steps} training steps (the recipe's own batches) and of
{args.alternations} alternations in ABBA order; the ratio is the median of the per-alternation ratios.
CPU: {cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {datetime.date.today()}.

Command: `python3 bench/dropout.py --recipes {' '.join(args.recipes)}{overrides} --steps {args.steps} --alternations {args.alternations}`

| what | bernoulli_ (F.dropout) | transduce | speed-up |
|---|---|---|---|
""" + "\n".join(rows) + "\n"
    publish(HEADING, text, args.write)


if __name__ == "__main__":
    main()
