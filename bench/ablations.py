"""Ablations on Multi30k De->En at one size and one budget: what each choice buys.

    python bench/ablations.py                      # train every variant (2 at a time), score, print
    python bench/ablations.py --only tied          # one variant (trains, or resumes, then scores)
    python bench/ablations.py --write              # also rewrite the section of bench/RESULTS.md
    python bench/ablations.py --report --write     # only the table of the runs already scored

Every variant is the ``multi30k`` recipe (its model, its warm-up + cosine
schedule) trained for the same number of updates (--steps, default 2000,
batches of 64 sentences) with one change, then scored on test_2016_flickr
with beam 5 (sacreBLEU, cased, detokenized); the baseline is also scored
greedily. The baseline runs with --seeds seeds (default 3: the recipe's and
``seed2``, ``seed3``) so that the table carries its own run-to-run spread,
and every difference is taken against the baseline's mean. Variants run as
separate processes of one torch thread each, ``--jobs`` at a time (default:
one per core), so their wall times are comparable with each other. Each
row's command reproduces it; runs resume, so an interrupted sweep continues
where it stopped. Settings were fixed before any test score was seen;
nothing here is selected on the test split.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import RESULTS, publish  # noqa: E402

HEADING = "## Ablations (bench/ablations.py)"
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "multi30k"
RUNS = ROOT / "runs" / "ablations"  # runs of --steps N go to RUNS / N unless --runs says
BASELINE = "recipe"

# (name, what it answers, overrides of the baseline). Scheduled sampling: each
# schedule goes from teacher forcing 1.0 to about 0.5 at the last step.
VARIANTS: list[tuple[str, str, list[str]]] = [
    (BASELINE, "the multi30k recipe: Luong general attention, no input feeding, label smoothing 0.1", []),
    ("input-feeding", "input feeding on (the step-by-step path)", ["model.input_feeding=true"]),
    ("bahdanau", "additive attention before the RNN (Bahdanau)", ["model.family=bahdanau"]),
    ("cho", "no attention: the context fed at every step (Cho)", ["model.family=cho"]),
    ("sutskever", "no attention: the context as initial state only (Sutskever)", ["model.family=sutskever"]),
    ("no-label-smoothing", "label smoothing off", ["train.label_smoothing=0"]),
    ("tied", "target embedding tied to the output layer", ["model.tie_embeddings=true"]),
    ("ss-linear", "scheduled sampling, linear 1 -> 0.5", [
        "train.tf_schedule=linear", "train.tf_floor=0.5", "train.tf_steps={steps}"]),
    ("ss-exponential", "scheduled sampling, exponential k^i", [
        "train.tf_schedule=exponential", "train.tf_k={exp_k}"]),
    ("ss-inverse-sigmoid", "scheduled sampling, inverse sigmoid", [
        "train.tf_schedule=inverse_sigmoid", "train.tf_k={sig_k}"]),
    ("ss-two-pass", "scheduled sampling, linear 1 -> 0.5, two fused passes", [
        "train.tf_schedule=linear", "train.tf_floor=0.5", "train.tf_steps={steps}", "train.tf_two_pass=true"]),
]


def seed_of(name: str) -> int | None:
    """K of a baseline run named seedK (K >= 2), else None."""
    return int(name[4:]) if name.startswith("seed") and name[4:].isdigit() and int(name[4:]) >= 2 else None


def seed_names(seeds: int) -> list[str]:
    """The baseline's extra runs: seed2, seed3, ... (the first run keeps the recipe's seed)."""
    return [f"seed{k}" for k in range(2, seeds + 1)]


def names(seeds: int) -> list[str]:
    """Every run of a sweep, in the order they start: the baseline and its seeds first."""
    return [BASELINE, *seed_names(seeds), *(v[0] for v in VARIANTS[1:])]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", metavar="NAME", help="run these variants only (seedK: the baseline's seed K)")
    p.add_argument("--steps", type=int, default=2000, help="updates per variant (default 2000)")
    p.add_argument("--seeds", type=int, default=3, help="runs of the baseline, for the spread (default 3)")
    p.add_argument("--data", type=Path, default=DATA, help="the Multi30k folder (default ../shared/data/multi30k)")
    p.add_argument("--runs", type=Path, help="run folders go here (default runs/ablations/STEPS)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="variants at a time")
    p.add_argument("--limit", type=int, help="score at most this many test sentences (smoke runs)")
    p.add_argument("--report", action="store_true",
                   help="train nothing: the table of the variants already scored in the runs folder")
    p.add_argument("--write", action="store_true", help="rewrite the section of bench/RESULTS.md")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    for name in args.only or []:
        if seed_of(name) is None and name not in names(1):
            p.error(f"--only: unknown variant {name!r} (choose from {', '.join(names(args.seeds))}, seedK)")
    args.runs = args.runs or RUNS / str(args.steps)
    return args


def inverse_sigmoid_k(steps: int) -> float:
    """The k >= 1 with k / (k + exp(steps / k)) = 0.5, i.e. k = exp(steps / k) (bisection)."""
    lo, hi = 1.0, max(3.0, float(steps))
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid < math.exp(min(700.0, steps / mid)) else (lo, mid)
    return hi


def overrides(name: str, steps: int, data: Path) -> list[str]:
    """The full override list of one variant (seedK: the baseline with train.seed=K)."""
    seed = seed_of(name)
    extra = [f"train.seed={seed}"] if seed else next(v[2] for v in VARIANTS if v[0] == name)
    # both schedules reach a teacher-forcing ratio of 0.5 at the last step
    fill = {"steps": steps, "exp_k": f"{0.5 ** (1 / steps):.8f}", "sig_k": f"{inverse_sigmoid_k(steps):.2f}"}
    return [f"data.path={data}", f"train.max_steps={steps}", f"train.valid_every={steps // 2}",
            "train.patience=null", *(o.format(**fill) for o in extra)]


def score_file(name: str, runs: Path, greedy: bool = False) -> Path:
    """Where bench/quality.py leaves the figures of one variant (beam 5, or greedy)."""
    return runs / name / ("score-greedy.json" if greedy else "score.json")


def quality(name: str, args: argparse.Namespace, greedy: bool = False) -> None:
    """Run bench/quality.py for one variant in its own one-thread process."""
    out = args.runs / name
    cmd = [sys.executable, str(ROOT / "bench" / "quality.py"), "multi30k",
           *overrides(name, args.steps, args.data), "--out", str(out),
           "--json-out", str(score_file(name, args.runs, greedy))]
    cmd += ["--no-train", "--beam", "1"] if greedy else []
    cmd += ["--limit", str(args.limit)] if args.limit else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSDUCE_THREADS": "1"}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ablation.log", "a", encoding="utf-8") as log:
        done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise SystemExit(f"ablations: {name} failed (exit {done.returncode}); see {out / 'ablation.log'}")


def run_variant(name: str, args: argparse.Namespace) -> None:
    """Train and score one variant (beam 5; the baseline greedily too)."""
    quality(name, args)
    if name == BASELINE:
        quality(name, args, greedy=True)


def load_results(runs: Path) -> dict[str, dict]:
    """{variant: {"beam": figures, "greedy": figures}} of every variant scored so far, the
    baseline's seeds included, in the order of the table."""
    seeds = sorted(k for d in runs.glob("seed*") if (k := seed_of(d.name)))
    found = {}
    for name in [BASELINE, *(f"seed{k}" for k in seeds), *(v[0] for v in VARIANTS[1:])]:
        for kind, greedy in (("beam", False), ("greedy", True)):
            path = score_file(name, runs, greedy)
            if path.is_file():
                found.setdefault(name, {})[kind] = json.loads(path.read_text(encoding="utf-8"))
    return found


def row_command(name: str, steps: int, runs: Path) -> str:
    """The command that reruns one row: its variant, its budget and (if not the default) its folder."""
    command = f"python bench/ablations.py --only {name} --steps {steps}"
    folder = runs.resolve()
    if folder == RUNS / str(steps):
        return command
    return f"{command} --runs {folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder}"


def what(name: str) -> str:
    """The 'what changes' cell of a row."""
    if seed_of(name):
        return f"the baseline again with train.seed={seed_of(name)}: the run-to-run spread"
    return next(v[1] for v in VARIANTS if v[0] == name)


def table(results: dict[str, dict], runs: Path) -> str:
    """The markdown section: the baseline, its seeds and greedy search, then one row per variant;
    differences against the mean of the baseline's seeds."""
    scored = {n: r["beam"] for n, r in results.items() if "beam" in r}
    runs_of_baseline = [r["bleu"] for n, r in scored.items() if n == BASELINE or seed_of(n)]
    mean = sum(runs_of_baseline) / len(runs_of_baseline) if runs_of_baseline else None
    steps = " or ".join(f"{n:,}" for n in sorted({r["steps"] for r in scored.values()}))
    machines = "; ".join(sorted({f"{r['machine']}, {r['precision']}" for r in scored.values()}))
    against = f"baseline mean of {len(runs_of_baseline)}" if len(runs_of_baseline) > 1 else "baseline"
    lines = [HEADING, "",
             f"Multi30k De->En, test_2016_flickr (1,000 sentences), sacreBLEU cased detokenized; every "
             f"variant is the `multi30k` recipe trained for {steps} updates of 64 sentences "
             f"({machines}), beam 5 unless said. Variants ran side by side, sharing the machine "
             f"(separate processes of one CPU thread each), so train times (validation included) "
             f"compare within this table only.", "",
             "| variant | what changes | BLEU | chrF | vs | train time | command |", "|---|---|---|---|---|---|---|"]
    for name, r in scored.items():
        delta = f"{r['bleu'] - mean:+.1f} vs {against}" if mean is not None else ""
        command = f"`{row_command(name, r['steps'], runs)}`"
        lines.append(f"| {name} | {what(name)} | {r['bleu']:.1f} | {r['chrf']:.1f} | {delta} | "
                     f"{r['train_seconds'] / 60:.1f} min | {command} |")
        if "greedy" in results[name]:
            g = results[name]["greedy"]
            lines.append(f"| {name} (greedy) | the same model, greedy search | {g['bleu']:.1f} | "
                         f"{g['chrf']:.1f} | {g['bleu'] - r['bleu']:+.1f} vs its beam 5 | "
                         f"{r['train_seconds'] / 60:.1f} min | {command} |")
    lines += ["", f"BLEU signature: `{next(iter(scored.values()))['bleu_signature']}`."]
    if len(runs_of_baseline) > 1:
        low, high = min(runs_of_baseline), max(runs_of_baseline)
        lines += ["", f"Run-to-run spread: {len(runs_of_baseline)} seeds of the baseline score {low:.1f} to "
                      f"{high:.1f} (mean {mean:.1f}, spread {high - low:.1f} BLEU); a row that differs from "
                      f"the mean by less than the spread is not evidence of an effect."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.report:
        if not (args.data / "train.de.gz").is_file():
            print(f"ablations: error: no Multi30k corpus in {args.data} (give --data)", file=sys.stderr)
            return 2
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(lambda n: run_variant(n, args), args.only or names(args.seeds)))
    results = load_results(args.runs)
    if not results:
        print(f"ablations: no scored variant in {args.runs}", file=sys.stderr)
        return 1
    text = table(results, args.runs)
    publish(HEADING, text, args.write, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
