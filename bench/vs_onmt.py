"""Quality at equal wall clock: the multi30k recipe against OpenNMT-py's RNN configuration.

    python bench/vs_onmt.py --minutes 25            # both at once, one thread each (~35 minutes)
    python bench/vs_onmt.py --minutes 25 --write    # also rewrite the section of bench/RESULTS.md
    python bench/vs_onmt.py --minutes 25 --no-train # score what the last run left

Both systems train at the same time on this machine, one torch thread each,
for the same wall clock (--minutes, counted from the start of training, after
data preparation), then both translate test_2016_flickr with beam 5 ranked
by GNMT's length penalty (alpha 0.6) and are scored with sacreBLEU (cased,
detokenized):

* transduce: ``bench/quality.py multi30k train.max_minutes=M``, the recipe as
  it is (its warm-up + cosine decay follows the clock);
* OpenNMT-py: ../shared/peers/onmt-rnn.yaml (2-layer biLSTM encoder of 512,
  2-layer LSTM decoder of 512, input feeding, Adam 1e-3, 64 sentences,
  dropout 0.1, fp32: OpenNMT-py has no bf16 on a CPU) on the same pieces
  (transduce's joint sentencepiece model, prepared as bench/speed.py
  prepares them). It has no time budget of its own, so it saves a checkpoint
  every --save-every steps and is stopped M minutes after it logs "Starting
  training"; its newest checkpoint is scored.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402
from results_md import RESULTS, publish  # noqa: E402

HEADING = "## Equal wall clock against OpenNMT-py (bench/vs_onmt.py)"
ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "vs-onmt"
STARTED = "Starting training"
STEP_FILE = re.compile(r"model_step_(\d+)\.pt$")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=25.0, help="wall clock of training for each (default 25)")
    p.add_argument("--save-every", type=int, default=100, help="OpenNMT-py's checkpoint interval in steps")
    p.add_argument("--runs", type=Path, default=RUNS, help="run folders go here (emptied first)")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "speed-cache",
                   help="bench/speed.py's cache: the pieces, the OpenNMT-py venv and vocabulary")
    p.add_argument("--peers", type=Path, help="a folder holding venv-onmt (default: CACHE/peers)")
    p.add_argument("--no-train", action="store_true", help="score the runs as they are")
    p.add_argument("--limit", type=int, help="score the first N test sentences only (smoke runs)")
    p.add_argument("--write", action="store_true", help="rewrite the section of bench/RESULTS.md")
    p.add_argument("--results", type=Path, default=RESULTS)
    return p.parse_args(argv)


def onmt_yaml(bench: speed.Bench, run: Path, save_every: int) -> Path:
    """bench/speed.py's OpenNMT-py config (input feeding, fp32) with no step limit to speak of,
    a checkpoint every ``save_every`` steps, the newest two kept."""
    path = speed.onmt_config(bench, run, speed.Setting("feed-fp32", "", True, "fp32"), 10**6, 50)
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg.update(save_checkpoint_steps=save_every, keep_checkpoint=2)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def newest_checkpoint(run: Path) -> tuple[int, Path]:
    """(step, file) of the newest model_step_N.pt in ``run``."""
    found = [(int(m.group(1)), p) for p in run.glob("model_step_*.pt") if (m := STEP_FILE.search(p.name))]
    if not found:
        raise RuntimeError(f"OpenNMT-py saved no checkpoint in {run} (too few minutes for --save-every?)")
    return max(found)


def wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 600.0) -> None:
    """Until ``text`` appears in ``log``; an error if the process ends first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.is_file() and text in log.read_text(encoding="utf-8", errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"onmt_train ended (exit {proc.returncode}) before training; see {log}")
        time.sleep(1.0)
    raise RuntimeError(f"no '{text}' in {log} after {timeout:.0f} s")


def transduce_command(args: argparse.Namespace) -> list[str]:
    out = args.runs / "transduce"
    minutes = f"{args.minutes:g}"
    return [sys.executable, str(ROOT / "bench" / "quality.py"), "multi30k", f"data.path={speed.MULTI30K}",
            f"train.max_minutes={minutes}", "train.max_steps=100000", "--out", str(out),
            "--json-out", str(args.runs / "transduce.json"), *(["--limit", str(args.limit)] if args.limit else [])]


def train_both(args: argparse.Namespace, bench: speed.Bench) -> None:
    """Start transduce (trains, then scores itself) and OpenNMT-py at once; stop OpenNMT-py
    --minutes after it starts training."""
    shutil.rmtree(args.runs, ignore_errors=True)
    onmt_run = args.runs / "onmt"
    cfg = onmt_yaml(bench, onmt_run, args.save_every)
    env = speed.thread_env(1, TRANSDUCE_THREADS="1")
    with open(args.runs / "transduce.log", "w", encoding="utf-8") as td_log, \
            open(onmt_run / "train.log", "w", encoding="utf-8") as onmt_log:
        td = subprocess.Popen(transduce_command(args), env=env, stdout=td_log, stderr=subprocess.STDOUT)
        onmt = subprocess.Popen([str(bench.onmt_bin / "onmt_train"), "-config", str(cfg)], env=env,
                                stdout=onmt_log, stderr=subprocess.STDOUT)
        try:
            wait_for(onmt_run / "train.log", STARTED, onmt)
            started = time.monotonic()
            while onmt.poll() is None and time.monotonic() - started < args.minutes * 60:
                time.sleep(1.0)
        finally:
            onmt.terminate()
            onmt.wait()
        if td.wait():
            raise RuntimeError(f"bench/quality.py failed (exit {td.returncode}); see {args.runs / 'transduce.log'}")


def score_onmt(args: argparse.Namespace, bench: speed.Bench) -> dict:
    """Beam 5 (GNMT penalty 0.6) on test_2016_flickr with OpenNMT-py's newest checkpoint."""
    from transduce import metrics

    run = args.runs / "onmt"
    step, model = newest_checkpoint(run)
    src = run / "test.de"
    speed.write_lines(src, speed.read_lines(bench.corpus.path("test", "de"))[:args.limit])
    out = speed.translate_onmt(bench, model, src, speed.Decode(5, 32), "fp32", 1, run)
    detok = bench.corpus.detokenizer()
    hyps = [detok(line) for line in out.lines]
    refs = speed.read_lines(bench.corpus.path("test", "ref.en"))[:len(hyps)]
    return {"bleu": metrics.bleu(hyps, refs).value, "chrf": metrics.chrf(hyps, refs).value, "steps": step,
            "sentences": len(hyps)}


def table(onmt: dict, td: dict, minutes: float, command: str) -> str:
    """The markdown section: one row per system."""
    def row(system: str, model: str, r: dict, precision: str) -> str:
        return (f"| {system} | {model} | {r['steps']:,} | {r['bleu']:.1f} | {r['chrf']:.1f} | {precision} |")

    return "\n".join([
        HEADING, "",
        f"Both trained at the same time on one machine ({td['machine']}, 2 cores), one torch thread each, "
        f"for {minutes:g} minutes of wall clock from the start of training; test_2016_flickr ({onmt['sentences']:,} "
        f"sentences), beam 5 with GNMT's length penalty 0.6, sacreBLEU cased detokenized "
        f"(`{td['bleu_signature']}`). OpenNMT-py was stopped after {minutes:g} minutes and its newest "
        f"checkpoint scored; transduce's recipe ran with `train.max_minutes={minutes:g}`.", "",
        "| system | model | steps | BLEU | chrF | precision |", "|---|---|---|---|---|---|",
        row("OpenNMT-py 3.5.1", "2x512 biLSTM, input feeding, dropout 0.1, Adam 1e-3 "
            "(../shared/peers/onmt-rnn.yaml)", onmt, "fp32"),
        row("transduce", "the `multi30k` recipe: 1x512 biLSTM, no input feeding, dropout 0.3, label "
            "smoothing 0.1, warm-up + cosine", td, td["precision"]),
        "", f"Command: `{command}`.", ""])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        speed.check_shared()
        args.cache.mkdir(parents=True, exist_ok=True)
        onmt_bin = speed.ensure_onmt(args.peers or args.cache / "peers")
        corpus = speed.prepare_corpus(args.cache / "data")
        bench = speed.Bench(argparse.Namespace(emb=256, hidden=512, max_len=None), args.cache, corpus, onmt_bin)
        speed.onmt_vocab(bench)
        if not args.no_train:
            train_both(args, bench)
        onmt = score_onmt(args, bench)
        td = json.loads((args.runs / "transduce.json").read_text(encoding="utf-8"))
    except (RuntimeError, OSError) as exc:
        print(f"vs_onmt: error: {exc}", file=sys.stderr)
        return 1
    shown = [a for a in (sys.argv[1:] if argv is None else argv) if a not in ("--write", "--no-train")]
    text = table(onmt, td, args.minutes, "python bench/vs_onmt.py " + shlex.join(shown))
    publish(HEADING, text, args.write, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
