"""Inference speed of a trained model: greedy vs beam 5, batched vs one sentence
at a time, fp32 vs bf16 vs int8, with the BLEU of each precision.

For every precision x method x mode it reports sentences/s and output target
tokens/s (pieces of the best hypothesis, EOS not counted), the median of
``--repeats`` runs. The runs are interleaved (round robin over all variants,
one repetition of each in turn), so that other load on a shared machine hits
them alike. The batched outputs are scored with sacreBLEU against the
references; "same" is the share of outputs identical to fp32 batched (for
the one-by-one rows: do batching and padding change anything?).

    python3 bench/bench_inference.py --model runs/multi30k --threads 1 --write
    python3 bench/bench_inference.py --model runs/toy --source src.txt \
        --reference ref.txt --smoke                  # a few seconds

bf16 on a CPU without AMX/AVX512-BF16 (e.g. AVX2-only AMD EPYC) is emulated
and many times slower than fp32; it is then still measured, but on the first
``--bf16-sentences`` sentences only (marked in the table).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import cpu_name, device_name, write_section  # noqa: E402

from transduce import metrics
from transduce.checkpoint import load_model
from transduce.corpora import read_lines
from transduce.device import cpu_has_fast_bf16, resolve_device
from transduce.errors import UserError
from transduce.config import PRECISIONS
from transduce.translator import Translator

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "multi30k"
RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "## Inference (bench/bench_inference.py)"
METHODS = {"greedy": dict(method="greedy"), "beam5": dict(method="beam", beam=5)}
MODES = ("batched", "one-by-one")
SMOKE = dict(sentences=12, one_by_one=3, repeats=1, bf16_sentences=4, batch_size=4)


@dataclass
class Variant:
    """One precision x method x mode, with its timings and first-run outputs."""

    precision: str
    method: str
    mode: str
    texts: list[str]
    seconds: list[float] = field(default_factory=list)
    tokens: int = 0
    outputs: list[str] | None = None
    reduced: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return self.precision, self.method, self.mode

    def sent_per_s(self) -> float:
        return len(self.texts) / statistics.median(self.seconds)

    def tok_per_s(self) -> float:
        return self.tokens / statistics.median(self.seconds)


# --- arguments -------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a trained model folder (e.g. runs/multi30k)")
    p.add_argument("--source", help="source lines (.gz ok); default: the Multi30k test_2016_flickr "
                                    "file of the model's source language in ../shared/data")
    p.add_argument("--reference", help="reference lines; default likewise (target language)")
    p.add_argument("--sentences", type=int, help="use the first N sentences (default all)")
    p.add_argument("--one-by-one", type=int, default=100,
                   help="sentences timed one at a time (default 100; slow)")
    p.add_argument("--repeats", type=int, default=3, help="runs per variant; the median is reported")
    p.add_argument("--precisions", default="fp32,bf16,int8", help="comma list of fp32,bf16,fp16,int8")
    p.add_argument("--methods", default="greedy,beam5", help="comma list of greedy,beam5")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per batch (batched mode)")
    p.add_argument("--bf16-sentences", type=int, default=50,
                   help="sentences for bf16 on a CPU without native bf16 (default 50)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--trained-by", help="the command that trained --model, quoted in the report")
    p.add_argument("--write", action="store_true", help="replace our section of bench/RESULTS.md")
    p.add_argument("--results", default=str(RESULTS), help=argparse.SUPPRESS)
    p.add_argument("--smoke", action="store_true",
                   help="tiny settings for a test: " + ", ".join(f"{k}={v}" for k, v in SMOKE.items()))
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    args.precisions = split_choices(args.precisions, PRECISIONS, "--precisions")
    args.methods = split_choices(args.methods, tuple(METHODS), "--methods")
    for name in ("one_by_one", "repeats", "batch_size", "bf16_sentences"):
        if getattr(args, name) < (0 if name == "one_by_one" else 1):
            raise UserError(f"--{name.replace('_', '-')} must be positive")
    return args


def split_choices(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    """'a,b' -> ['a', 'b']; UserError naming ``option`` for anything not in ``allowed``."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise UserError(f"{option}: {', '.join(bad) or 'nothing'} not in {', '.join(allowed)}")
    return items


def default_file(lang: str) -> Path:
    return SHARED_DATA / f"test_2016_flickr.{lang}.gz"


def read_data(args, cfg) -> tuple[list[str], list[str]]:
    """Source and reference lines (first ``--sentences``); UserError when missing/mismatched."""
    src = Path(args.source) if args.source else default_file(cfg.data.src_lang)
    ref = Path(args.reference) if args.reference else default_file(cfg.data.tgt_lang)
    for path in (src, ref):
        if not path.is_file():
            raise UserError(f"file not found: {path} (give --source/--reference)")
    sources, references = list(read_lines(src)), list(read_lines(ref))
    if len(sources) != len(references):
        raise UserError(f"{src} has {len(sources)} lines but {ref} has {len(references)}")
    n = args.sentences or len(sources)
    return sources[:n], references[:n]


# --- measuring -------------------------------------------------------------------


def slow_bf16(device: torch.device) -> bool:
    """True when bf16 is emulated (CPU without AMX/AVX512-BF16)."""
    return device.type == "cpu" and not cpu_has_fast_bf16()


def make_translators(loaded, args, device: torch.device) -> dict[str, Translator]:
    """One Translator per precision over the same weights (int8: a quantized copy)."""
    cfg = copy.deepcopy(loaded.config)
    cfg.search = dataclasses.replace(cfg.search, batch_size=args.batch_size)
    out = {}
    for precision in args.precisions:
        if precision == "int8" and device.type != "cpu":
            print(f"bench_inference: skipping int8 (CPU only, device is {device})", file=sys.stderr)
            continue
        out[precision] = Translator(loaded.model, cfg, loaded.src_codec, loaded.tgt_codec,
                                    device, precision)
    return out


def make_variants(translators: dict, sources: list[str], args, device) -> list[Variant]:
    """Every precision x method x mode with the sentences it runs on."""
    variants = []
    for precision in translators:
        reduced = precision == "bf16" and slow_bf16(device)
        n = min(len(sources), args.bf16_sentences) if reduced else len(sources)
        for method in args.methods:
            variants.append(Variant(precision, method, "batched", sources[:n],
                                    reduced=reduced and n < len(sources)))
            k = min(args.one_by_one, n)
            if k:
                variants.append(Variant(precision, method, "one-by-one", sources[:k],
                                        reduced=reduced and k < args.one_by_one))
    return variants


def run_once(tr: Translator, v: Variant) -> tuple[float, list]:
    """Translate ``v.texts`` once in ``v.mode``; -> (seconds, Translations)."""
    opts = tr.options(**METHODS[v.method])
    start = time.perf_counter()
    if v.mode == "batched":
        out = tr.translate(v.texts, opts)
    else:
        out = [tr.translate([text], opts)[0] for text in v.texts]
    return time.perf_counter() - start, out


def measure(translators: dict, variants: list[Variant], repeats: int) -> None:
    """Warm up each translator, then time all variants round robin ``repeats`` times."""
    for precision, tr in translators.items():
        for method in {v.method for v in variants}:
            tr.translate(variants[0].texts[:2], tr.options(**METHODS[method]))
    for r in range(repeats):
        for v in variants:
            seconds, out = run_once(translators[v.precision], v)
            v.seconds.append(seconds)
            if v.outputs is None:
                v.outputs = [t.text for t in out]
                v.tokens = sum(len(t.tokens) for t in out)
            print(f"  repeat {r + 1}/{repeats} {v.precision:5s} {v.method:6s} {v.mode:10s} "
                  f"{len(v.texts):5d} sentences {seconds:8.2f} s", file=sys.stderr, flush=True)


# --- reporting -------------------------------------------------------------------


def same_share(outputs: list[str], baseline: list[str]) -> float:
    """Percent of ``outputs`` equal to the first len(outputs) of ``baseline``."""
    return 100.0 * sum(a == b for a, b in zip(outputs, baseline)) / max(1, len(outputs))


def rows(variants: list[Variant], references: list[str]) -> list[list[str]]:
    """Table rows: precision, method, mode, sentences, sent/s, tok/s, x fp32, BLEU, same."""
    by_key = {v.key: v for v in variants}
    out = []
    for v in variants:
        base = by_key.get(("fp32", v.method, "batched"))
        ratio = f"{v.sent_per_s() / base.sent_per_s():.2f}x" if base else "-"
        n = len(v.texts)
        bleu, same = "-", "-"
        if v.mode == "batched":
            bleu = f"{metrics.bleu(v.outputs, references[:n]).value:.2f}"
            if base and base is not v:
                delta = float(bleu) - metrics.bleu(base.outputs[:n], references[:n]).value
                bleu += f" ({round(delta, 2) + 0.0:+.2f})"
        if base and base is not v:
            same = f"{same_share(v.outputs, base.outputs):.1f}%"
        sentences = f"{n}*" if v.reduced else str(n)
        out.append([v.precision, v.method, v.mode, sentences, f"{v.sent_per_s():.1f}",
                    f"{v.tok_per_s():.0f}", ratio, bleu, same])
    return out


HEADER = ["precision", "method", "mode", "sentences", "sent/s", "tok/s", "vs fp32 batched",
          "BLEU (vs fp32 same sents)", "same as fp32"]


def markdown_table(table: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return lines + ["| " + " | ".join(r) + " |" for r in table]


def text_table(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER] + table) for i in range(len(HEADER))]
    fmt = lambda r: "  ".join(c.rjust(w) if i > 2 else c.ljust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(HEADER), fmt(["-" * w for w in widths])] + [fmt(r) for r in table])


def machine(device: torch.device) -> str:
    """CPU (or GPU) name, cores, threads, load, torch version."""
    if device.type == "cuda":
        dev = device_name(device)
    else:
        bf16 = "native bf16 (AMX or AVX512-BF16)" if cpu_has_fast_bf16() else "no native bf16"
        dev = (f"CPU {cpu_name()}, {bf16}, {os.cpu_count()} cores, "
               f"{torch.get_num_threads()} torch threads")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{dev}, load average {load:.1f} at start, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def notes(args, variants: list[Variant], device, model_desc: str, n_sent: int) -> list[str]:
    out = [f"Model: {model_desc}. {n_sent} sentences; batched mode {args.batch_size} sentences "
           f"per batch (sorted by length); one-by-one mode the first "
           f"{args.one_by_one} sentences. Median of {args.repeats} interleaved repeats. tok/s "
           "counts output target pieces (no EOS). 'vs fp32 batched' is the sentences/s ratio "
           "to fp32 batched with the same method; BLEU (sacreBLEU, batched outputs) in "
           "brackets: minus fp32 on the same sentences; 'same as fp32': outputs identical to "
           "fp32 batched."]
    if any(v.reduced for v in variants):
        out.append(f"\\* bf16 on this CPU (no AMX / AVX512-BF16) is emulated and much slower "
                   f"than fp32, so it ran on the first {args.bf16_sentences} sentences only; "
                   "its BLEU and speed compare with fp32 on those sentences (the speed ratio "
                   "to fp32 on all of them).")
    if "int8" in args.precisions and device.type == "cpu":
        out.append("int8: dynamic quantization (qint8 weights) of every nn.Linear, nn.LSTM and "
                   "nn.GRU, the decoder's step RNN included; embeddings stay fp32.")
    return out


def report(args, argv: list[str], table, variants, device, model_desc: str, n_sent: int) -> str:
    shown = [a for i, a in enumerate(argv)  # the training command is quoted on its own line
             if not a.startswith("--trained-by") and (i == 0 or argv[i - 1] != "--trained-by")]
    lines = [HEADING, "", f"Command: `python3 bench/bench_inference.py {shlex.join(shown)}`", ""]
    if args.trained_by:
        lines += [f"`{args.model}` trained by `{args.trained_by}`.", ""]
    lines += [f"Device: {machine(device)}. Date: {datetime.date.today().isoformat()}.", ""]
    lines += markdown_table(table) + [""]
    lines += [n + "\n" for n in notes(args, variants, device, model_desc, n_sent)]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------


def run(argv: list[str]) -> str:
    """Parse, measure, print; -> the markdown section."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, key="--device")
    loaded = load_model(args.model, device=device)
    sources, references = read_data(args, loaded.config)
    translators = make_translators(loaded, args, device)
    variants = make_variants(translators, sources, args, device)
    if any(v.reduced for v in variants):
        print(f"bench_inference: bf16 is emulated on this CPU (no AMX/AVX512-BF16) and much "
              f"slower than fp32: measuring it on {args.bf16_sentences} sentences only",
              file=sys.stderr)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="bf16 on this CPU")
        measure(translators, variants, args.repeats)
    desc = loaded.model.describe() if hasattr(loaded.model, "describe") else str(args.model)
    table = rows(variants, references)
    print(text_table(table))
    print("\n".join(notes(args, variants, device, desc, len(sources))).replace("\\*", "*"))
    text = report(args, argv, table, variants, device, desc, len(sources))
    if args.write:
        write_section(HEADING, text, Path(args.results))
        print(f"bench_inference: wrote {args.results}", file=sys.stderr)
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        run(argv)
    except UserError as exc:
        print(f"bench_inference: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
