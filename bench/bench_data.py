"""Data pipeline speed on Multi30k (train, 29,000 de-en pairs).

Times, per run: sentencepiece tokenization of both sides (batch encode),
building a joint vocabulary, encoding pieces to ids, and building one epoch
of token-budget batches (sampling + collating every batch into tensors).
Training the 8k joint BPE model is timed once, separately. Prints seconds per
10,000 pairs (median of --runs) and, with --write, replaces the section
"## Data pipeline (bench/bench_data.py)" of bench/RESULTS.md.

    python3 bench/bench_data.py [--data ../shared/data/multi30k] [--runs 3] [--write]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import cpu_name, write_section  # noqa: E402

from transduce.batching import BatchSampler, Example, collate, example_sizes
from transduce.corpora import read_parallel
from transduce.tokenizers import train_sentencepiece
from transduce.vocab import Vocab

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "multi30k"
HEADING = "## Data pipeline (bench/bench_data.py)"


def one_run(tok, pairs, batch_tokens: int) -> dict[str, float]:
    """Seconds for each stage of one pass over ``pairs``."""
    times = {}
    t0 = time.perf_counter()
    src_pieces = tok.encode_batch([s for s, _ in pairs])
    tgt_pieces = tok.encode_batch([t for _, t in pairs])
    t1 = time.perf_counter()
    vocab = Vocab.build(src_pieces + tgt_pieces, extra=tok.inventory())
    t2 = time.perf_counter()
    examples = [Example(vocab.encode(s), vocab.encode(t)) for s, t in zip(src_pieces, tgt_pieces)]
    t3 = time.perf_counter()
    sampler = BatchSampler(example_sizes(examples), batch_tokens=batch_tokens, seed=1)
    n_batches = 0
    for indices in sampler.epoch_batches(0):
        collate(examples, indices)
        n_batches += 1
    t4 = time.perf_counter()
    times.update(tokenize=t1 - t0, vocab=t2 - t1, ids=t3 - t2, batches=t4 - t3, total=t4 - t0)
    times["n_batches"] = n_batches
    return times


def report(train_s: float, runs: list[dict], n_pairs: int, vocab_size: int, args) -> str:
    per10k = lambda key: statistics.median(r[key] for r in runs) / n_pairs * 10_000  # noqa: E731
    lines = [
        HEADING, "",
        f"Command: `python3 bench/bench_data.py --runs {args.runs} --write` "
        f"(Multi30k train de+en, {n_pairs} pairs, joint BPE {vocab_size}, "
        f"batch_tokens {args.batch_tokens}).",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPU cores (shared), Python "
        f"{platform.python_version()}, torch {torch.__version__}, {datetime.date.today().isoformat()}.",
        "",
        "| stage | seconds per 10,000 pairs (median of %d) |" % len(runs),
        "|---|---|",
    ]
    for key in ("tokenize", "vocab", "ids", "batches", "total"):
        lines.append(f"| {key} | {per10k(key):.3f} |")
    lines += ["", f"Training the sentencepiece model (once, not in the above): {train_s:.2f} s "
                  f"for {n_pairs} pairs. Requirement: total well under 1 s per 10,000 pairs.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--batch-tokens", type=int, default=2000)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not (data / "train.de.gz").is_file():
        print(f"bench_data: Multi30k not found in {data}", file=sys.stderr)
        return 2
    pairs = list(read_parallel(data / "train.de.gz", data / "train.en.gz"))
    t0 = time.perf_counter()
    tok = train_sentencepiece((t for p in pairs for t in p), "bpe", args.vocab_size)
    train_s = time.perf_counter() - t0
    runs = [one_run(tok, pairs, args.batch_tokens) for _ in range(args.runs)]
    text = report(train_s, runs, len(pairs), tok.sp.get_piece_size(), args)
    print(text)
    if args.write:
        write_section(HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
