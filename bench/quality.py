"""Quality of a recipe, end to end: train it, score its test split, add a row to bench/RESULTS.md.

    python bench/quality.py g2p --out runs/g2p                 # train, then score the test split
    python bench/quality.py g2p --out runs/g2p --no-train      # score a run that trained already
    python bench/quality.py g2p --out runs/g2p --no-train --split valid --beam 10   # choose settings
    python bench/quality.py g2p search.length_penalty=gnmt --out runs/g2p --no-train --split valid
    python bench/quality.py multi30k data.path=../shared/data/multi30k --out runs/m30k --write

Training is ``transduce train RECIPE [key=value ...] --out RUN`` (resumed when
RUN already holds a run: checkpoints resume exactly). The test split is the
one of the recipe's own corpus (``transduce evaluate RUN --split test``);
corpora of words and pronunciations (cmudict) are scored with the g2p
convention (any dictionary pronunciation counts: word and phoneme error
rates, as ``transduce demo`` prints), the others with sacreBLEU BLEU and chrF
(cased, detokenized) and their signatures. With ``--average-last N`` the
newest N step checkpoints are averaged first (``transduce average RUN --last
N``) and the average is scored; with ``--ensemble RUN ...`` the ensemble of the run
and those runs or step checkpoints (``transduce ensemble``; steps and training time are
then the members' sums, each run counted once, up to its furthest checkpoint); with ``--rescore RUN
...`` those runs re-rank its beam (``transduce ensemble --rescore``, weighted by
``search.rescore_weight``; their training counts too). ``search.*`` overrides change the decoding
of the score (with ``--no-train`` too; ``--beam N`` is ``search.beam=N``; ``--precision``
that of its decoding, default auto). The row gives recipe, test set, figures,
steps, training wall time, machine and precision, and the command; a row of
the same command is replaced, others are kept. Never tune on the test split:
choose settings on the validation split (``--split valid`` scores it the same
way) and score the test split once.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import RESULTS, device_name, edit  # noqa: E402

from transduce import config  # noqa: E402
from transduce.config import PRECISIONS  # noqa: E402
from transduce.cli import _checkpoints_to_average  # noqa: E402
from transduce.checkpoint import average_checkpoints, write_ensemble  # noqa: E402
from transduce.corpora import load_splits  # noqa: E402
from transduce.demo import score_g2p  # noqa: E402
from transduce.device import resolve_device, resolve_precision  # noqa: E402
from transduce.errors import UserError  # noqa: E402
from transduce.train import train  # noqa: E402
from transduce.translator import Translator, evaluate  # noqa: E402

HEADING = "## Quality (bench/quality.py)"
TABLE_HEAD = ("| recipe | test set | result | steps | train time | machine | command |\n"
              "|---|---|---|---|---|---|---|")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipe", help="built-in recipe name or YAML file")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the recipe")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--no-train", action="store_true", help="score the run as it is")
    p.add_argument("--average-last", type=int, metavar="N", help="score the average of the newest N steps")
    p.add_argument("--ensemble", nargs="+", metavar="RUN", default=[],
                   help="score the ensemble of --out and these trained runs or their step checkpoints")
    p.add_argument("--rescore", nargs="+", metavar="RUN", default=[],
                   help="re-rank the beam with these trained runs (search.rescore_weight)")
    p.add_argument("--ensemble-dir", type=Path, metavar="DIR",
                   help="where to write the folder of --ensemble/--rescore (default: RUN/ensemble; "
                        "give each of several side-by-side scorings of one run its own)")
    p.add_argument("--beam", type=int, help="beam size (default: the recipe's search.beam)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="precision of the scoring's decoding (default auto: bf16 where native)")
    p.add_argument("--split", choices=("test", "valid"), default="test",
                   help="the split to score (default test; valid for choosing settings)")
    p.add_argument("--limit", type=int, help="score at most this many test items (smoke runs)")
    p.add_argument("--write", action="store_true", help="add the row to bench/RESULTS.md")
    p.add_argument("--json-out", type=Path, metavar="FILE",
                   help="also write the figures, steps, training seconds and command as JSON")
    p.add_argument("--results", type=Path, default=RESULTS, help="the results file to write")
    return p.parse_args(argv)


def train_run(args: argparse.Namespace) -> None:
    """Train (or resume) the recipe into --out."""
    cfg = config.load(config.recipe_path(args.recipe), args.overrides)
    resume = any((Path(args.out) / "checkpoints").glob("step-*"))
    if resume:
        cfg = config.load(Path(args.out) / "config.yaml",
                          [o for o in args.overrides if o.split(".")[0] in ("train", "search")])
    train(cfg, args.out, resume=resume)


def model_to_score(args: argparse.Namespace) -> Path:
    """The run folder, the average of its newest --average-last step checkpoints, or the
    ensemble of it (or that average) and the --ensemble runs, re-ranked by the --rescore runs."""
    model = Path(args.out)
    if args.average_last:
        model = Path(args.out) / f"average-last-{args.average_last}"
        average_checkpoints(_checkpoints_to_average([args.out], args.average_last), model)
    if args.ensemble or args.rescore:
        target = args.ensemble_dir or Path(args.out) / "ensemble"
        shutil.rmtree(target, ignore_errors=True)
        model = write_ensemble([model, *args.ensemble], target, args.rescore)
    return model


def search_options(run: Path, overrides: list[str]):
    """The run's own search options with the ``search.*`` overrides applied (checked as
    `transduce train` checks them), or None without any."""
    changes = [o for o in overrides if o.split(".")[0] == "search"]
    return config.load(run / "config.yaml", changes).search if changes else None


def score(translator: Translator, limit: int | None, beam: int | None,
          split: str = "test", base=None) -> tuple[str, str, dict]:
    """(split name, result text, figures) of the model's own test (or validation) split,
    decoded with ``base`` (default: the run's search options) and ``beam``."""
    cfg = translator.config
    pairs = getattr(load_splits(cfg.data), split)
    if not pairs:
        raise UserError(f"the corpus of {cfg.data.corpus or cfg.data.train} has no {split} split")
    options = translator.options(base) if beam is None else translator.options(base, beam=beam)
    name = f"{cfg.data.corpus or getattr(cfg.data, split)} {split}"
    if (cfg.data.corpus or "").startswith("cmudict"):
        got = score_g2p(translator, pairs, limit, options)
        text = (f"WER {got['word_error_rate']:.1f}%, PER {got['phoneme_error_rate']:.1f}% "
                f"({got['words']:,} words, beam {options.beam}; without stress digits: WER "
                f"{got['word_error_rate_no_stress']:.1f}%, PER {got['phoneme_error_rate_no_stress']:.1f}%)")
        return name, text, got
    pairs = pairs[:limit]
    got = evaluate(translator, [s for s, _ in pairs], [t for _, t in pairs], ("bleu", "chrf"), options)
    got.pop("hypotheses")
    text = (f"BLEU {got['bleu']:.1f}, chrF {got['chrf']:.1f} ({len(pairs):,} sentences, beam "
            f"{options.beam}; {got['bleu_signature']})").replace("|", "\\|")  # a cell of a markdown table
    return name, text, got


def training_cost(runs: list[Path]) -> tuple[int, float]:
    """(steps, seconds of training) from the runs' logs, summed over the runs. A step
    checkpoint of a run (RUN/checkpoints/step-N) costs its run's training up to step N;
    members from one run count that run once, up to its furthest member."""
    upto: dict[Path, int | None] = {}  # run folder -> last step paid for (None: all of it)
    for run in runs:
        root, step = run, None
        if not (run / "log.jsonl").is_file() and run.parent.name == "checkpoints":
            root = run.parent.parent
            try:
                step = int(json.loads((run / "meta.json").read_text(encoding="utf-8"))["step"])
            except (OSError, ValueError, KeyError, TypeError):
                raise UserError(f"{run} has no readable meta.json: not a step checkpoint") from None
        if not (root / "log.jsonl").is_file():
            raise UserError(f"{run} has no training log (log.jsonl): give the folder of a training "
                            f"run or one of its checkpoints")
        known = upto.get(root, 0)
        upto[root] = None if step is None or known is None else max(step, known)
    steps, seconds = 0, 0.0
    for root, last in upto.items():
        records = [json.loads(line) for line in (root / "log.jsonl").read_text(encoding="utf-8").splitlines()]
        records = [r for r in records if last is None or r["step"] <= last]
        steps += max(r["step"] for r in records)
        seconds += max(r.get("time") or 0.0 for r in records)
    return steps, seconds


def add_row(path: Path, row: str, command: str) -> None:
    """Put ``row`` in the quality table of ``path`` (replacing the row of the same command)."""
    def change(text: str) -> str:
        if HEADING not in text:
            text = text.rstrip("\n") + f"\n\n{HEADING}\n\nRows added by `python bench/quality.py ...`; " \
                   "the command in each row reproduces it.\n\n" + TABLE_HEAD + "\n"
        lines = text.split("\n")
        start = lines.index(HEADING)
        first = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
        end = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
        table = [line for line in lines[first:end] if f"`{command}`" not in line]  # the section's first
        lines[first:end] = table + [row]  # table only: later ones are notes' tables
        return "\n".join(lines)
    edit(path, change)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.no_train:
            train_run(args)
        translator = Translator.from_dir(model_to_score(args), device="auto", precision=args.precision)
        test_set, text, figures = score(translator, args.limit, args.beam, args.split,
                                        search_options(Path(args.out), args.overrides))
        steps, seconds = training_cost([Path(args.out), *map(Path, args.ensemble + args.rescore)])
    except UserError as exc:
        print(f"quality: error: {exc}", file=sys.stderr)
        return 2
    command = "python bench/quality.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    device = resolve_device(translator.config.train.device)
    precision = resolve_precision(device, translator.config.train.precision)
    cpu = device_name(device)
    machine = f"{cpu}, {precision} training"
    averaged = f" (average of the last {args.average_last})" if args.average_last else ""
    if args.ensemble:
        averaged += f" (ensemble with {', '.join(args.ensemble)})"
    if args.rescore:
        averaged += f" (re-ranked by {', '.join(args.rescore)})"
    row = (f"| {Path(args.recipe).stem}{averaged} | {test_set} | {text} | {steps:,} | "
           f"{seconds / 60:.1f} min | {machine} | `{command}` |")
    print(row)
    figures = {k: v for k, v in figures.items() if not isinstance(v, list)}
    print(json.dumps(figures, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps({**figures, "steps": steps, "train_seconds": seconds,
                                             "precision": precision, "machine": cpu,
                                             "command": command}, indent=2), encoding="utf-8")
    if args.write:
        add_row(args.results, row, command)
        print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
