"""Ablations on Multi30k De->En at one size and one budget: what each choice buys.

    python bench/ablations.py                      # train every variant (2 at a time), score, print
    python bench/ablations.py --only luong-feed    # one variant (trains, or resumes, then scores)
    python bench/ablations.py --write              # also rewrite the section of bench/RESULTS.md

Every variant is the ``multi30k`` recipe at 1x256 (1-layer bidirectional
LSTM encoder, 1-layer LSTM decoder, 256 units), trained for the same number
of updates (--steps, default 1500, batches of 64 sentences, the recipe's
plateau schedule) with one change, then scored on test_2016_flickr with beam
5 (sacreBLEU, cased, detokenized); the baseline is also scored greedily.
Variants run as separate processes of one torch thread each, ``--jobs`` at a
time (default: one per core), so their wall times are comparable with each
other. Each row's command reproduces it; runs resume, so an interrupted
sweep continues where it stopped. Settings were fixed before any test score
was seen; nothing here is selected on the test split.
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
from results_md import RESULTS, write_section  # noqa: E402

HEADING = "## Ablations (bench/ablations.py)"
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "multi30k"
RUNS = ROOT / "runs" / "ablations"
SIZE = ["model.hidden=256", "model.enc_layers=1", "model.dec_layers=1", "train.patience=null"]

# (name, what it answers, compared with, overrides of the baseline). Scheduled
# sampling: each schedule goes from teacher forcing 1.0 to about 0.5 at the last step.
VARIANTS: list[tuple[str, str, str, list[str]]] = [
    ("luong-feed", "baseline: Luong general attention, input feeding", "", []),
    ("seed", "the baseline again with another seed: the run-to-run spread", "luong-feed", ["train.seed=2"]),
    ("luong-nofeed", "input feeding off", "luong-feed", ["model.input_feeding=false"]),
    ("bahdanau", "additive attention before the RNN (Bahdanau)", "luong-feed", ["model.family=bahdanau"]),
    ("cho", "no attention: the context fed at every step (Cho)", "luong-feed", ["model.family=cho"]),
    ("sutskever", "no attention: the context as initial state only (Sutskever)", "luong-feed",
     ["model.family=sutskever"]),
    ("label-smoothing", "label smoothing 0.1", "luong-feed", ["train.label_smoothing=0.1"]),
    ("tied", "target embedding tied to the output layer", "luong-feed",
     ["model.tie_embeddings=true"]),
    ("ss-linear", "scheduled sampling, linear 1 -> 0.5", "luong-feed",
     ["train.tf_schedule=linear", "train.tf_floor=0.5", "train.tf_steps={steps}"]),
    ("ss-exponential", "scheduled sampling, exponential k^i", "luong-feed",
     ["train.tf_schedule=exponential", "train.tf_k={exp_k}"]),
    ("ss-inverse-sigmoid", "scheduled sampling, inverse sigmoid", "luong-feed",
     ["train.tf_schedule=inverse_sigmoid", "train.tf_k={sig_k}"]),
    ("ss-two-pass", "scheduled sampling, linear, two fused passes (no input feeding)", "luong-nofeed",
     ["model.input_feeding=false", "train.tf_schedule=linear", "train.tf_floor=0.5",
      "train.tf_steps={steps}", "train.tf_two_pass=true"]),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", metavar="NAME", choices=[v[0] for v in VARIANTS],
                   help="run these variants only")
    p.add_argument("--steps", type=int, default=1500, help="updates per variant (default 1500)")
    p.add_argument("--data", type=Path, default=DATA, help="the Multi30k folder (default ../shared/data/multi30k)")
    p.add_argument("--runs", type=Path, default=RUNS, help="run folders go here")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="variants at a time")
    p.add_argument("--limit", type=int, help="score at most this many test sentences (smoke runs)")
    p.add_argument("--write", action="store_true", help="rewrite the section of bench/RESULTS.md")
    p.add_argument("--results", type=Path, default=RESULTS)
    return p.parse_args(argv)


def inverse_sigmoid_k(steps: int) -> float:
    """The k >= 1 with k / (k + exp(steps / k)) = 0.5, i.e. k = exp(steps / k) (bisection)."""
    lo, hi = 1.0, max(3.0, float(steps))
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid < math.exp(min(700.0, steps / mid)) else (lo, mid)
    return hi


def overrides(name: str, steps: int, data: Path) -> list[str]:
    """The full override list of one variant."""
    extra = next(v[3] for v in VARIANTS if v[0] == name)
    # both schedules reach a teacher-forcing ratio of 0.5 at the last step
    fill = {"steps": steps, "exp_k": f"{0.5 ** (1 / steps):.8f}", "sig_k": f"{inverse_sigmoid_k(steps):.2f}"}
    return [f"data.path={data}", *SIZE, f"train.max_steps={steps}",
            f"train.valid_every={max(1, steps // 3)}", *(o.format(**fill) for o in extra)]


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
    if name == VARIANTS[0][0]:
        quality(name, args, greedy=True)


def load_results(runs: Path) -> dict[str, dict]:
    """{variant: {"beam": figures, "greedy": figures}} of every variant scored so far."""
    found = {}
    for name, *_ in VARIANTS:
        for kind, greedy in (("beam", False), ("greedy", True)):
            path = score_file(name, runs, greedy)
            if path.is_file():
                found.setdefault(name, {})[kind] = json.loads(path.read_text(encoding="utf-8"))
    return found


def row_command(name: str, steps: int, runs: Path) -> str:
    """The command that reruns one row: its variant, its budget and (if not the default) its folder."""
    command = f"python bench/ablations.py --only {name} --steps {steps}"
    folder = runs.resolve()
    if folder == RUNS:
        return command
    return f"{command} --runs {folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder}"


def table(results: dict[str, dict], runs: Path = RUNS) -> str:
    """The markdown section: one row per scored variant, in the order of VARIANTS."""
    scored = [r["beam"] for r in results.values() if "beam" in r]
    base = {n: r["beam"]["bleu"] for n, r in results.items() if "beam" in r}
    steps = " or ".join(f"{n:,}" for n in sorted({r["steps"] for r in scored}))
    machines = "; ".join(sorted({f"{r['machine']}, {r['precision']}" for r in scored}))
    lines = [HEADING, "",
             f"Multi30k De->En, test_2016_flickr (1,000 sentences), sacreBLEU cased detokenized; every "
             f"variant is the `multi30k` recipe at 1x256 trained for {steps} updates of 64 sentences on "
             f"one thread ({machines}), two variants at a time on 2 cores, beam 5 unless said. "
             f"Train time includes validation.", "",
             "| variant | what changes | BLEU | chrF | vs | train time | command |", "|---|---|---|---|---|---|---|"]
    rows = []
    for name, question, against, _ in VARIANTS:
        if "beam" not in results.get(name, {}):
            continue
        r = results[name]["beam"]
        delta = f"{r['bleu'] - base[against]:+.1f} vs {against}" if against in base else ""
        rows.append((name, question, r, delta))
        if "greedy" in results[name]:
            rows.append((f"{name} (greedy)", "the same model, greedy search", results[name]["greedy"],
                         f"{results[name]['greedy']['bleu'] - r['bleu']:+.1f} vs beam 5"))
    for name, question, r, delta in rows:
        lines.append(f"| {name} | {question} | {r['bleu']:.1f} | {r['chrf']:.1f} | "
                     f"{delta} | {r['train_seconds'] / 60:.1f} min | `{row_command(name.split()[0], r['steps'], runs)}` |")
    lines += ["", f"BLEU signature: `{scored[0]['bleu_signature']}`."]
    if "seed" in base and VARIANTS[0][0] in base:
        spread = abs(base["seed"] - base[VARIANTS[0][0]])
        lines += ["", f"Run-to-run spread: the baseline with another seed differs by {spread:.1f} BLEU; "
                      f"a difference smaller than that between two rows is not evidence of an effect."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.data / "train.de.gz").is_file():
        print(f"ablations: error: no Multi30k corpus in {args.data} (give --data)", file=sys.stderr)
        return 2
    names = args.only or [v[0] for v in VARIANTS]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(lambda n: run_variant(n, args), names))
    results = load_results(args.runs)
    if not results:
        print(f"ablations: no scored variant in {args.runs}", file=sys.stderr)
        return 1
    text = table(results, args.runs)
    print(text)
    if args.write:
        write_section(HEADING, text, args.results)
        print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
