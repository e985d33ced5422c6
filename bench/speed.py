"""Side-by-side speed of transduce and OpenNMT-py on Multi30k De->En (issue 15).

Both tools train and translate the same model (2-layer bidirectional LSTM
encoder of 512, 2-layer LSTM decoder of 512, emb 256, general attention,
batch 64 sentences, Adam 1e-3) on the same pieces: transduce's joint 8k
sentencepiece BPE model, trained the way ``transduce train multi30k`` trains
it, encodes train/val/test once into piece-per-space text files, which both
tools read as whitespace-separated tokens (OpenNMT-py with ``share_vocab``,
transduce with a joint whitespace tokenizer), so the vocabularies are the
same set of pieces and the output layers the same size.

    python3 bench/speed.py --peers /work/peers --write      # all parts, 1 and 2 threads (~2 h)
    python3 bench/speed.py --part train --threads 1 --alternations 3
    python3 bench/speed.py --part infer --write              # the other parts' stored results are kept
    python3 bench/speed.py --smoke                           # tiny model, a few minutes

Parts (``--part``; results are stored in the cache's results.json, so that
parts run separately still make one report):

* ``train``: target tokens/s of training, from each tool's own log (both
  count non-pad target tokens including EOS), over the steady part of a run
  (the first ``--warmup-reports`` reports discarded; the median of the
  rest), median of ``--alternations`` runs, the two tools alternating run by
  run. Settings: input feeding fp32 / bf16 autocast, no input feeding
  (transduce's fused path) fp32 / bf16; OpenNMT-py has no bf16 on a CPU.
* ``infer``: one model per tool (input feeding, fp32, ``--infer-steps``
  steps, cached) translates test_2016_flickr, greedy and beam 5 at batch 32
  and (first ``--batch1-sentences``) at batch 1; translation time only
  (OpenNMT-py's ``-report_time``; transduce: ``Translator.translate``, both
  in a fresh process per run). sentences/s, output pieces/s, mean output
  length, sacreBLEU (detokenized, cased); transduce also in bf16 and int8.
* ``peak``: the machine's torch.matmul GFLOP/s at the model's shapes (fp32,
  bf16) and the batch-1 weight-read floor: one decoder step's matrix-vector
  products with the decoder's weights.
* ``synthetic`` (not part of ``all``): decoding speed of an untrained model
  of the same size on random sources with a fixed output length; needs no
  data and no peers, runs on any ``--device`` (bench/gpu.sh uses it).

Without ../shared (peers/setup.sh, peers/onmt-rnn.yaml, data/multi30k) the
script stops with one line saying so; OpenNMT-py is installed with
../shared/peers/setup.sh into CACHE/peers unless ``--peers`` names a folder
that holds venv-onmt. The report gives FLOPs per target token from the configuration (the formula
is printed), achieved / peak for every row, threads, dtypes, load averages,
the CPU and its bf16/AMX flags and the versions.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import RESULTS, cpu_name, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PEERS_SETUP = SHARED / "peers" / "setup.sh"
ONMT_YAML = SHARED / "peers" / "onmt-rnn.yaml"
MULTI30K = SHARED / "data" / "multi30k"
HEADING = "## Speed (bench/speed.py)"
WORKER = "_translate"  # hidden first argument: translate once with transduce (a fresh process)
ONMT, TD = "OpenNMT-py", "transduce"
CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni")
# transduce's side of the comparison, pinned to OpenNMT-py's configuration (peers/onmt-rnn.yaml)
# so that tuning the multi30k recipe for quality does not change what is compared here:
# joint 8k BPE, 2-layer biLSTM encoder / 2-layer LSTM decoder (emb and hidden from the
# options), general attention, batches of 64 sentences, Adam 1e-3, dropout 0.1; beam search
# ranked with GNMT's length penalty, alpha 0.6.
MATCH = {
    "tokenizer": {"src": "bpe", "tgt": "bpe", "joint": True, "vocab_size": 8000},
    "model": {"family": "luong", "attention": "general", "cell": "lstm", "enc_layers": 2,
              "dec_layers": 2, "bidirectional": True, "dropout": 0.1, "emb_dropout": 0.1,
              "bridge": "linear"},
    "train": {"batch_sentences": 64, "optimizer": "adam", "lr": 1.0e-3, "clip_norm": 5.0,
              "lr_schedule": "plateau", "early_stop_metric": "bleu", "patience": 5},
    "search": {"beam": 5, "max_len_a": 1.5, "max_len_b": 10, "length_penalty": "gnmt", "alpha": 0.6},
}
SMOKE = dict(steps=8, report_every=2, alternations=1, threads=[1], emb=64, hidden=128,
             infer_steps=20, sentences=24, batch1_sentences=4, max_len=20, peak_reps=3)


# --- what is compared --------------------------------------------------------------


@dataclass(frozen=True)
class Arch:
    """The compared network; ``vocab`` is the joint vocabulary (both sides, output layer)."""

    vocab: int = 8000
    emb: int = 256
    hidden: int = 512
    layers: int = 2
    feed: bool = True

    @property
    def key(self) -> str:
        return f"e{self.emb}-h{self.hidden}-l{self.layers}"


@dataclass(frozen=True)
class Setting:
    """One training setting of the table."""

    key: str
    label: str
    feed: bool
    precision: str

    @property
    def systems(self) -> tuple[str, ...]:
        """OpenNMT-py has no bf16 autocast on a CPU: fp32 settings only."""
        return (ONMT, TD) if self.precision == "fp32" else (TD,)


SETTINGS = (
    Setting("feed-fp32", "input feeding, fp32", True, "fp32"),
    Setting("feed-bf16", "input feeding, bf16 autocast", True, "bf16"),
    Setting("nofeed-fp32", "no input feeding (fused path), fp32", False, "fp32"),
    Setting("nofeed-bf16", "no input feeding, bf16", False, "bf16"),
)


@dataclass(frozen=True)
class Decode:
    """One translation setting: beam width (1 = greedy) and batch size in sentences."""

    beam: int
    batch: int

    @property
    def label(self) -> str:
        return f"{'greedy' if self.beam == 1 else f'beam {self.beam}'}, batch {self.batch}"


DECODES = (Decode(5, 32), Decode(1, 32), Decode(5, 1), Decode(1, 1))
TRANSLATORS = ((ONMT, "fp32"), (TD, "fp32"), (TD, "bf16"), (TD, "int8"))


# --- FLOPs ----------------------------------------------------------------------------


def lstm_flops(inp: int, hid: int) -> int:
    """FLOPs per token of one LSTM direction: the gates' matmul, 2 * 4h * (i + h)."""
    return 2 * 4 * hid * (inp + hid)


def encoder_flops(arch: Arch) -> int:
    """Per source token: every layer, both directions of H/2 units (H/2 per direction, as
    OpenNMT-py's brnn and transduce's bidirectional encoder split ``hidden``)."""
    half = arch.hidden // 2
    return sum(2 * lstm_flops(arch.emb if layer == 0 else arch.hidden, half)
               for layer in range(arch.layers))


def decoder_step_flops(arch: Arch, src_len: float) -> dict[str, float]:
    """Per target token (one decoder step of one hypothesis), by part.

    rnn: layer 1 takes emb (+ the previous attentional state with input
    feeding), the others H. attention: the general score's H x H projection,
    scores and context over ``src_len`` source states (2 * 2 * S * H), and
    the attentional state tanh(W_c [c; h]) (2 * 2H * H). output: 2 * H * V.
    """
    h = arch.hidden
    first = arch.emb + (h if arch.feed else 0)
    rnn = lstm_flops(first, h) + (arch.layers - 1) * lstm_flops(h, h)
    attention = 2 * h * h + 2 * 2 * src_len * h + 2 * 2 * h * h
    return {"decoder rnn": rnn, "attention": attention, "output layer": 2 * h * arch.vocab}


def training_flops(arch: Arch, src_len: float, src_per_tgt: float) -> dict[str, float]:
    """Forward FLOPs per target token by part (the encoder scaled by source tokens per
    target token), plus 'forward' and 'training' (= 3 x forward: backward ~ 2 x forward)."""
    parts = {"encoder": encoder_flops(arch) * src_per_tgt, **decoder_step_flops(arch, src_len)}
    forward = sum(parts.values())
    return {**parts, "forward": forward, "training": 3 * forward}


def flops_formula(arch: Arch, src_len: float, src_per_tgt: float) -> list[str]:
    """The formula, with this configuration's numbers, as report lines."""
    f = training_flops(arch, src_len, src_per_tgt)
    e, h, v, n = arch.emb, arch.hidden, arch.vocab, arch.layers
    feed = " + H" if arch.feed else ""
    m = lambda x: f"{x / 1e6:.2f} M"  # noqa: E731
    return [
        f"FLOPs per target token (a multiply-add = 2; E={e}, H={h}, V={v}, {n} layers, "
        f"S={src_len:.1f} source pieces per sentence, {src_per_tgt:.3f} source per target piece):",
        "- LSTM layer, input i, h units, per token and direction: 2 * 4h * (i + h)",
        f"- encoder = src/tgt * sum over layers of 2 directions x LSTM(i, H/2), i = E then H: "
        f"{src_per_tgt:.3f} x {m(encoder_flops(arch))} = {m(f['encoder'])}",
        f"- decoder rnn = LSTM(E{feed}, H) + {n - 1} x LSTM(H, H) = {m(f['decoder rnn'])}",
        f"- attention = 2H^2 (general) + 4*S*H (scores, context) + 4H^2 (tanh(W_c[c; h])) "
        f"= {m(f['attention'])}",
        f"- output layer = 2*H*V = {m(f['output layer'])}",
        f"- forward = {m(f['forward'])}; training = 3 x forward = {m(f['training'])} per target token",
    ]


def decode_flops(arch: Arch, src_tokens: int, hyp_steps: float, src_len: float) -> float:
    """FLOPs of translating: the encoder over every source token plus one decoder step
    per hypothesis and step (``hyp_steps``)."""
    return encoder_flops(arch) * src_tokens + hyp_steps * sum(decoder_step_flops(arch, src_len).values())


# --- small helpers ---------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def fmt_num(x: float | None, digits: int = 0) -> str:
    """1234.5 -> '1,234' (digits=0) or '1,234.5'; None/nan -> '-'."""
    if x is None or x != x:
        return "-"
    return f"{x:,.{digits}f}"


def fmt_runs(values: list[float], digits: int = 0) -> str:
    """The median, with the range of the runs when there are several: '702 (610-745)'."""
    if not values:
        return "-"
    mid = fmt_num(median(values), digits)
    if len(values) == 1:
        return mid
    return f"{mid} ({fmt_num(min(values), digits)}-{fmt_num(max(values), digits)})"


def ratio(a: float | None, b: float | None) -> str:
    """'1.23x' for a / b; '-' when either is missing."""
    if not a or not b or a != a or b != b:
        return "-"
    return f"{a / b:.2f}x"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table, as lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def say(msg: str) -> None:
    print(f"speed: {msg}", file=sys.stderr, flush=True)


def thread_env(threads: int, **extra: str) -> dict[str, str]:
    """The environment of a measured process: ``threads`` OpenMP/MKL threads."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **extra}


def run_logged(cmd: list[str], log: Path, env: dict[str, str], what: str) -> str:
    """Run ``cmd`` with stdout+stderr into ``log``; its text. RuntimeError naming ``what``
    and the log's tail when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    text = log.read_text(encoding="utf-8", errors="replace")
    if rc != 0:
        tail = "\n".join(text.splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit {rc}; log {log}):\n{tail}")
    return text


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# --- log parsers ---------------------------------------------------------------------

ONMT_STEP = re.compile(r"Step\s+(\d+)/\s*\d+;.*?;\s*([\d.]+)/\s*([\d.]+) tok/s;")
ONMT_TIME = re.compile(r"Average translation time \(ms\):\s*([\d.]+)")
ONMT_TOTAL = re.compile(r"Total translation time \(s\):\s*([\d.]+)")
ONMT_VOCAB = re.compile(r"\* tgt vocab size = (\d+)")


def parse_onmt_train(text: str) -> list[tuple[int, float]]:
    """(step, target tokens/s) of each OpenNMT-py training report ('Step 10/ 60; ...;
    src/tgt tok/s;'). Its tgt count is Statistics.n_words: the non-pad tokens of the
    target shifted past BOS (utils/loss.py _stats), i.e. the pieces plus EOS; the rate is
    over the time since the previous report (report_manager returns fresh Statistics)."""
    return [(int(m.group(1)), float(m.group(3))) for m in ONMT_STEP.finditer(text)]


def parse_transduce_train(text: str) -> list[tuple[int, float]]:
    """(step, tok_per_s) of each train record of a transduce log.jsonl (records without
    tok_per_s, e.g. teacher-forcing notes, skipped). tok_per_s counts the non-pad tokens
    of tgt_out (pieces plus EOS, loss.masked_cross_entropy n_tokens) since the last record."""
    out = []
    for line in text.splitlines():
        rec = json.loads(line) if line.strip() else {}
        if rec.get("split") == "train" and rec.get("tok_per_s") is not None:
            out.append((int(rec["step"]), float(rec["tok_per_s"])))
    return out


def parse_onmt_translate_seconds(text: str, n_sentences: int) -> float:
    """Translation time from onmt_translate -report_time: the average per sentence (ms,
    0.1 ms resolution) times the sentences, which has more digits than its total (0.1 s)."""
    avg = ONMT_TIME.search(text)
    if avg and float(avg.group(1)) > 0:
        return float(avg.group(1)) * n_sentences / 1000.0
    total = ONMT_TOTAL.search(text)
    if not total:
        raise ValueError("no 'Total translation time' in the onmt_translate output")
    return float(total.group(1))


def steady_rate(reports: list[tuple[int, float]], warmup: int) -> float:
    """Median tokens/s of the reports after the first ``warmup`` (ValueError if none left)."""
    rest = [rate for _, rate in reports[warmup:]]
    if not rest:
        raise ValueError(f"only {len(reports)} reports, none after the {warmup} warm-up report(s)")
    return median(rest)


# --- machine and versions -----------------------------------------------------------


def cpu_flags() -> dict[str, bool]:
    """Which of CPU_FLAGS /proc/cpuinfo lists."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        flags = []
    return {f: f in flags for f in CPU_FLAGS}


def git_commit() -> str:
    """Short HEAD of this repository, '+dirty' when src/ has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--", "src") else "")


def environment(onmt_python: Path | None) -> dict:
    """Machine, versions and commit, for the report."""
    import torch
    import transduce

    env = {"cpu": cpu_name(), "cores": os.cpu_count(), "flags": cpu_flags(),
           "python": platform.python_version(), "torch": torch.__version__,
           "transduce": transduce.__version__, "commit": git_commit(),
           "date": datetime.date.today().isoformat()}
    if onmt_python is not None:
        probe = subprocess.run([str(onmt_python), "-c", "import onmt, torch; print(onmt.__version__, "
                                "torch.__version__)"], capture_output=True, text=True)
        parts = probe.stdout.split()
        env["onmt"], env["onmt_torch"] = (parts + ["?", "?"])[:2]
    return env


# --- peers and data ------------------------------------------------------------------


def check_shared() -> None:
    """SystemExit with one line when ../shared (peers, Multi30k) is missing."""
    missing = [p for p in (PEERS_SETUP, ONMT_YAML, MULTI30K / "train.de.gz") if not p.exists()]
    if missing:
        raise SystemExit(f"speed: error: bench/speed.py needs ../shared beside the repository "
                         f"(peers/setup.sh, peers/onmt-rnn.yaml, data/multi30k); missing: "
                         f"{', '.join(map(str, missing))}")


def ensure_onmt(peers: Path) -> Path:
    """The OpenNMT-py venv's bin folder, installed by ../shared/peers/setup.sh when absent."""
    venv = peers / "venv-onmt"
    if not (venv / "bin" / "onmt_train").exists():
        say(f"installing OpenNMT-py into {venv} (../shared/peers/setup.sh, a few minutes)")
        run_logged(["bash", str(PEERS_SETUP), str(peers), "onmt"], peers / "setup.log",
                   dict(os.environ), "../shared/peers/setup.sh")
    return venv / "bin"


@dataclass
class Corpus:
    """Piece files (one sentence a line, pieces separated by spaces) and their facts."""

    folder: Path
    train_pairs: int
    vocab: int  # specials + distinct pieces of the training data, both sides
    src_len: float  # mean source pieces per training sentence
    src_per_tgt: float  # source pieces per target piece (EOS included)
    test_pairs: int

    def path(self, split: str, lang: str) -> Path:
        return self.folder / f"{split}.{lang}"

    def detokenizer(self) -> Callable[[str], str]:
        """Piece line -> text, with transduce's sentencepiece model."""
        from transduce.tokenizers import Tokenizer

        tok = Tokenizer.load(self.folder, "joint")
        return lambda line: tok.decode(line.split())


def prepare_corpus(folder: Path, langs: tuple[str, str] = ("de", "en")) -> Corpus:
    """Train transduce's joint sentencepiece model on Multi30k as ``transduce train
    multi30k`` does (load_splits + build_codecs of the recipe's tokenizer section),
    encode every split to piece files; cached in ``folder`` (info.json last)."""
    info = folder / "info.json"
    if not info.is_file():
        from transduce import config
        from transduce.corpora import load_splits
        from transduce.vocab import SPECIALS, build_codecs

        cfg = config.load(config.recipe_path("multi30k"), [f"data.path={MULTI30K}"] + [
            f"tokenizer.{k}={v}" for k, v in MATCH["tokenizer"].items()])
        splits = load_splits(cfg.data)
        codec, _ = build_codecs(cfg.tokenizer, splits.train)
        folder.mkdir(parents=True, exist_ok=True)
        codec.tokenizer.save(folder, "joint")
        train_pieces = {}
        for split, pairs in (("train", splits.train), ("val", splits.valid), ("test", splits.test)):
            for side, lang in enumerate(langs):
                pieces = codec.tokenizer.encode_batch([p[side] for p in pairs])
                write_lines(folder / f"{split}.{lang}", (" ".join(p) for p in pieces))
                if split == "train":
                    train_pieces[lang] = pieces
            write_lines(folder / f"{split}.ref.{langs[1]}", (p[1] for p in pairs))
        for lang in langs:
            write_lines(folder / f"val16.{lang}", read_lines(folder / f"val.{lang}")[:16])
        src, tgt = train_pieces[langs[0]], train_pieces[langs[1]]
        n_src, n_tgt = sum(map(len, src)), sum(map(len, tgt)) + len(tgt)
        distinct = {p for pieces in src + tgt for p in pieces}
        info.write_text(json.dumps({
            "train_pairs": len(src), "vocab": len(SPECIALS) + len(distinct),
            "sentencepiece_pieces": len(codec.vocab), "src_len": n_src / len(src),
            "src_per_tgt": n_src / n_tgt, "test_pairs": len(splits.test)}, indent=1))
    data = json.loads(info.read_text())
    return Corpus(folder, data["train_pairs"], data["vocab"], data["src_len"], data["src_per_tgt"],
                  data["test_pairs"])


# --- the two tools: training ----------------------------------------------------------


@dataclass
class Bench:
    """What every measurement needs: options, cache, corpus, the peer's bin folder."""

    args: argparse.Namespace
    cache: Path
    corpus: Corpus
    onmt_bin: Path

    def arch(self, feed: bool = True) -> Arch:
        return Arch(self.corpus.vocab, self.args.emb, self.args.hidden, 2, feed)


def onmt_vocab(bench: Bench) -> Path:
    """The shared OpenNMT-py vocabulary of the training pieces (onmt_build_vocab, once)."""
    folder = bench.cache / "onmt-vocab"
    vocab = folder / "vocab.shared"
    if not vocab.is_file():
        cfg = onmt_config(bench, folder, Setting("vocab", "", True, "fp32"), 1, 1)
        run_logged([str(bench.onmt_bin / "onmt_build_vocab"), "-config", str(cfg), "-n_sample", "-1"],
                   folder / "build_vocab.log", thread_env(1), "onmt_build_vocab")
    return vocab


def onmt_config(bench: Bench, run: Path, setting: Setting, steps: int, report_every: int) -> Path:
    """../shared/peers/onmt-rnn.yaml with the piece files, RUN, steps and the setting's
    input feeding filled in; vocab_size_multiple 1 so that the vocabulary is exactly the
    pieces plus 4 specials, like transduce's (the default pads it to a multiple of 8)."""
    text = ONMT_YAML.read_text(encoding="utf-8")
    c = bench.corpus
    for name, path in (("TRAIN_SRC", c.path("train", "de")), ("TRAIN_TGT", c.path("train", "en")),
                       ("VALID_SRC", c.path("val", "de")), ("VALID_TGT", c.path("val", "en"))):
        text = text.replace(name, str(path))
    cfg = yaml.safe_load(text.replace("RUN", str(run)))
    vocab = str(bench.cache / "onmt-vocab" / "vocab.shared")
    cfg.update(src_vocab=vocab, tgt_vocab=vocab, train_steps=steps, report_every=report_every,
               input_feed=int(setting.feed), hidden_size=bench.args.hidden,
               word_vec_size=bench.args.emb, vocab_size_multiple=1, save_checkpoint_steps=steps)
    run.mkdir(parents=True, exist_ok=True)
    path = run / "onmt.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def train_onmt(bench: Bench, run: Path, setting: Setting, steps: int, report_every: int,
               threads: int) -> tuple[list[tuple[int, float]], int]:
    """One onmt_train run into ``run`` (emptied first): (reports, vocabulary size)."""
    shutil.rmtree(run, ignore_errors=True)
    cfg = onmt_config(bench, run, setting, steps, report_every)
    text = run_logged([str(bench.onmt_bin / "onmt_train"), "-config", str(cfg)], run / "train.log",
                      thread_env(threads), "onmt_train")
    vocab = ONMT_VOCAB.search(text)
    return parse_onmt_train(text), int(vocab.group(1)) if vocab else -1


def transduce_config(bench: Bench, run: Path, setting: Setting, steps: int, report_every: int) -> Path:
    """The model of MATCH on the piece files (a joint whitespace tokenizer over them, so
    the vocabulary is the pieces plus 4 specials), steps, log interval and the setting.
    Validation only once at the end, on 16 sentences (it is not timed, but costs time);
    data.max_len 1000 so that no pair is dropped (OpenNMT-py drops none either)."""
    cfg = {section: dict(values) for section, values in MATCH.items() if section != "tokenizer"}
    c = bench.corpus
    cfg["data"] = {"corpus": None, "max_len": 1000,
                   "train": [str(c.path("train", "de")), str(c.path("train", "en"))],
                   "valid": [str(c.path("val16", "de")), str(c.path("val16", "en"))],
                   "test": [str(c.path("test", "de")), str(c.path("test", "en"))]}
    cfg["tokenizer"] = {"src": "whitespace", "tgt": "whitespace", "joint": True}
    cfg["model"].update(input_feeding=setting.feed, emb_dim=bench.args.emb, hidden=bench.args.hidden)
    cfg["train"].update(max_steps=steps, log_every=report_every, valid_every=steps,
                        precision=setting.precision, valid_max_sentences=16, tensorboard=False,
                        progress=False)
    run.parent.mkdir(parents=True, exist_ok=True)
    path = run.parent / f"{run.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def train_transduce(bench: Bench, run: Path, setting: Setting, steps: int, report_every: int,
                    threads: int) -> tuple[list[tuple[int, float]], int]:
    """One ``transduce train`` run into ``run`` (emptied first): (reports, vocabulary size)."""
    shutil.rmtree(run, ignore_errors=True)
    cfg = transduce_config(bench, run, setting, steps, report_every)
    run_logged([sys.executable, "-m", "transduce", "train", str(cfg), "--out", str(run),
                "--threads", str(threads)], run.parent / f"{run.name}.log", thread_env(threads),
               "transduce train")
    vocab = json.loads((run / "tgt.vocab.json").read_text(encoding="utf-8"))["tokens"]
    return parse_transduce_train((run / "log.jsonl").read_text(encoding="utf-8")), len(vocab)


TRAINERS = {ONMT: train_onmt, TD: train_transduce}


# --- the two tools: translation -------------------------------------------------------


@dataclass
class Output:
    """One translation run: seconds and the output piece lines."""

    seconds: float
    lines: list[str]


def translate_onmt(bench: Bench, model: Path, src: Path, decode: Decode, precision: str,
                   threads: int, out_dir: Path) -> Output:
    """onmt_translate -report_time; greedy is beam 1 with -random_sampling_topk 1 (its
    default, 0, samples from the whole distribution)."""
    out = out_dir / f"onmt-{decode.beam}-{decode.batch}.txt"
    cmd = [str(bench.onmt_bin / "onmt_translate"), "-model", str(model), "-src", str(src),
           "-output", str(out), "-beam_size", str(decode.beam), "-batch_size", str(decode.batch),
           "-gpu", "-1", "-report_time"]
    if decode.beam == 1:
        cmd += ["-random_sampling_topk", "1"]
    else:  # transduce's recipe ranks beams with GNMT's length penalty, alpha 0.6
        cmd += ["-length_penalty", "wu", "-alpha", "0.6"]
    if bench.args.max_len:
        cmd += ["-max_length", str(bench.args.max_len)]
    text = run_logged(cmd, out.with_suffix(".log"), thread_env(threads, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1"),
                      "onmt_translate")
    n = len(read_lines(src))
    return Output(parse_onmt_translate_seconds(text, n), read_lines(out))


def translate_transduce(bench: Bench, model: Path, src: Path, decode: Decode, precision: str,
                        threads: int, out_dir: Path) -> Output:
    """This script's worker in a fresh process (as onmt_translate is): load, then time
    Translator.translate only."""
    out = out_dir / f"transduce-{precision}-{decode.beam}-{decode.batch}.txt"
    cmd = [sys.executable, str(Path(__file__).resolve()), WORKER, str(model), str(src), str(out),
           precision, str(decode.beam), str(decode.batch), str(bench.args.max_len or 0), str(threads)]
    text = run_logged(cmd, out.with_suffix(".log"), thread_env(threads), "transduce translate")
    seconds = json.loads(text.strip().splitlines()[-1])["seconds"]
    return Output(seconds, read_lines(out))


TRANSLATE = {ONMT: translate_onmt, TD: translate_transduce}


def translate_worker(argv: list[str]) -> int:
    """``speed.py _translate MODEL SRC OUT PRECISION BEAM BATCH MAX_LEN THREADS``: load the
    model (not timed), translate SRC (timed), write OUT, print {"seconds": ...}."""
    model, src, out, precision, beam, batch, max_len, threads = argv
    import torch

    torch.set_num_threads(int(threads))
    from transduce.translator import Translator

    translator = Translator.from_dir(model, precision=precision)
    texts = read_lines(Path(src))
    opts = translator.options(method="beam" if int(beam) > 1 else "greedy", beam=int(beam),
                              batch_size=int(batch), max_len=int(max_len) or None)
    start = time.perf_counter()
    results = translator.translate(texts, opts)
    seconds = time.perf_counter() - start
    write_lines(Path(out), (r.text for r in results))
    print(json.dumps({"seconds": seconds}))
    return 0


def inference_model(bench: Bench, system: str) -> Path:
    """The system's model for the inference part (input feeding, fp32, --infer-steps
    steps), trained once into the cache: OpenNMT-py's checkpoint file, transduce's folder."""
    steps = bench.args.infer_steps
    run = bench.cache / "models" / f"{'onmt' if system == ONMT else 'transduce'}-{bench.arch().key}-s{steps}"
    target = run / f"model_step_{steps}.pt" if system == ONMT else run
    if not (run / "done").is_file():
        say(f"training the {system} model for the inference part ({steps} steps)")
        TRAINERS[system](bench, run, SETTINGS[0], steps, max(1, steps // 6), bench.args.threads[0])
        (run / "done").write_text("")
    return target


# --- measuring -----------------------------------------------------------------------


def measure_training(bench: Bench) -> dict:
    """Steady tokens/s of every setting, system and thread count, tools alternating."""
    a = bench.args
    rates: dict[str, list[float]] = {}
    vocab: dict[str, int] = {}
    load_before = load_average()
    for alt in range(a.alternations):
        for threads in a.threads:
            for setting in SETTINGS:
                systems = setting.systems if alt % 2 == 0 else setting.systems[::-1]
                for system in systems:
                    run = bench.cache / "runs" / f"{'onmt' if system == ONMT else 'transduce'}-{setting.key}"
                    reports, vocab[system] = TRAINERS[system](bench, run, setting, a.steps, a.report_every,
                                                              threads)
                    if vocab[system] != bench.corpus.vocab:
                        say(f"warning: {system}'s vocabulary has {vocab[system]} entries, "
                            f"not {bench.corpus.vocab} (4 specials + the training pieces)")
                    rate = steady_rate(reports, a.warmup_reports)
                    rates.setdefault(f"{threads}|{setting.key}|{system}", []).append(rate)
                    say(f"train {alt + 1}/{a.alternations} threads {threads} {setting.key:11s} "
                        f"{system:10s} {rate:9,.0f} tok/s (reports {[round(r) for _, r in reports]})")
    return {"rates": rates, "vocab": vocab, "load": [load_before, load_average()],
            "steps": a.steps, "report_every": a.report_every, "warmup_reports": a.warmup_reports,
            "alternations": a.alternations, "threads": a.threads}


def inference_inputs(bench: Bench, out_dir: Path) -> dict[int, Path]:
    """Source piece files per batch size: the first --sentences for batch > 1, the first
    --batch1-sentences for batch 1."""
    lines = read_lines(bench.corpus.path("test", "de"))
    sizes = {d.batch: (bench.args.batch1_sentences if d.batch == 1 else bench.args.sentences)
             for d in DECODES}
    out = {}
    for batch, n in sizes.items():
        out[batch] = out_dir / f"test-b{batch}.de"
        write_lines(out[batch], lines[:n or len(lines)])
    return out


def measure_inference(bench: Bench) -> dict:
    """Seconds, output lengths and BLEU of every decode x translator x thread count."""
    a = bench.args
    models = {system: inference_model(bench, system) for system in (ONMT, TD)}
    out_dir = bench.cache / "translations"
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = inference_inputs(bench, out_dir)
    detok = bench.corpus.detokenizer()
    refs = read_lines(bench.corpus.path("test", "ref.en"))
    rows: dict[str, dict] = {}
    load_before = load_average()
    for alt in range(a.alternations):
        for threads in a.threads:
            for decode in DECODES:
                order = TRANSLATORS if alt % 2 == 0 else TRANSLATORS[::-1]
                for system, precision in order:
                    out = TRANSLATE[system](bench, models[system], inputs[decode.batch], decode,
                                           precision, threads, out_dir)
                    key = f"{threads}|{decode.beam}|{decode.batch}|{system}|{precision}"
                    row = rows.setdefault(key, {"seconds": []})
                    row["seconds"].append(out.seconds)
                    if "bleu" not in row:
                        row.update(output_stats(out.lines, detok, refs, read_lines(inputs[decode.batch])))
                    say(f"infer {alt + 1}/{a.alternations} threads {threads} {decode.label:17s} "
                        f"{system:10s} {precision} {row['sentences'] / out.seconds:8.1f} sent/s")
    return {"rows": rows, "load": [load_before, load_average()], "alternations": a.alternations,
            "threads": a.threads, "infer_steps": a.infer_steps, "max_len": a.max_len}


def output_stats(lines: list[str], detok: Callable[[str], str], refs: list[str],
                 sources: list[str]) -> dict:
    """Sentences, output pieces (no EOS), source pieces and BLEU of one run's outputs."""
    from transduce import metrics

    pieces = sum(len(line.split()) for line in lines)
    bleu = metrics.bleu([detok(line) for line in lines], refs[:len(lines)]).value
    return {"sentences": len(lines), "pieces": pieces, "src_pieces": sum(len(s.split()) for s in sources),
            "bleu": bleu}


def matmul_gflops(m: int, k: int, n: int, dtype, reps: int) -> float:
    """Best GFLOP/s of torch.matmul [m x k] @ [k x n] over ``reps`` timed calls."""
    import torch

    x, w = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(2):
        torch.matmul(x, w)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.matmul(x, w)
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def peak_shapes(arch: Arch, rows: int = 1024, batch: int = 64) -> dict[str, tuple[int, int, int]]:
    """The model's matmul shapes: a batch's tokens through LSTM gates and the output layer,
    and one recurrent step of a batch."""
    h = arch.hidden
    return {f"gates [{rows}x{h}]@[{h}x{4 * h}]": (rows, h, 4 * h),
            f"recurrent step [{batch}x{h}]@[{h}x{4 * h}]": (batch, h, 4 * h),
            f"output [{rows}x{h}]@[{h}x{arch.vocab}]": (rows, h, arch.vocab)}


def step_weights(arch: Arch) -> list[tuple[int, int]]:
    """(in, out) of the matrices one decoder step multiplies by: layer 1's gates over
    [emb; feed; h], the other layers' over [x; h], the general score's projection, the
    attentional state's W_c over [c; h], the output layer."""
    h = arch.hidden
    first = arch.emb + (h if arch.feed else 0) + h
    return ([(first, 4 * h)] + [(2 * h, 4 * h)] * (arch.layers - 1)
            + [(h, h), (2 * h, h), (h, arch.vocab)])


def step_floor_ms(arch: Arch, rows: int, reps: int) -> float:
    """Median ms of one decoder step's matrix products at ``rows`` hypotheses (fp32): the
    weight-read floor of batch-1 decoding."""
    import torch

    mats = [(torch.randn(rows, i), torch.randn(i, o)) for i, o in step_weights(arch)]
    times = []
    for _ in range(reps + 2):
        start = time.perf_counter()
        for x, w in mats:
            torch.matmul(x, w)
        times.append(time.perf_counter() - start)
    return 1000 * median(times[2:])


def measure_peak(bench: Bench) -> dict:
    """GFLOP/s per shape, dtype and thread count, and the batch-1 floor per step."""
    import torch

    arch, reps = bench.arch(), bench.args.peak_reps
    gflops, floor = {}, {}
    for threads in bench.args.threads:
        torch.set_num_threads(threads)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            gflops[f"{threads}|{name}"] = {label: matmul_gflops(*shape, dtype, reps)
                                           for label, shape in peak_shapes(arch).items()}
        floor[str(threads)] = {str(rows): step_floor_ms(arch, rows, 10 * reps) for rows in (1, 5)}
    return {"gflops": gflops, "floor_ms": floor, "weights": sum(i * o for i, o in step_weights(arch)),
            "threads": bench.args.threads}


# --- synthetic decoding: no data, any device (bench/gpu.sh) ------------------------------


def synthetic_translator(arch: Arch, device: str, precision: str):
    """A Translator over an untrained model of ``arch`` and a vocabulary of made-up pieces."""
    import torch
    from transduce.config import Config, ModelConfig
    from transduce.model import Seq2Seq
    from transduce.tokenizers import WhitespaceTokenizer
    from transduce.translator import Translator
    from transduce.vocab import SPECIALS, Codec, Vocab

    torch.manual_seed(0)
    pieces = [f"w{i}" for i in range(arch.vocab - len(SPECIALS))]
    codec = Codec(WhitespaceTokenizer(), Vocab(SPECIALS + pieces))
    cfg = Config(model=ModelConfig(family="luong", attention="general", input_feeding=arch.feed,
                                   emb_dim=arch.emb, hidden=arch.hidden, enc_layers=arch.layers,
                                   dec_layers=arch.layers, bidirectional=True))
    model = Seq2Seq.from_config(cfg.model, arch.vocab, arch.vocab)
    return Translator(model, cfg, codec, codec, device, precision)


def timed_translate(translator, texts: list[str], opts) -> tuple[float, int]:
    """(seconds, output pieces) of one translate call (CUDA synchronised)."""
    import torch

    sync = torch.cuda.synchronize if translator.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    results = translator.translate(texts, opts)
    sync()
    return time.perf_counter() - start, sum(len(r.tokens) for r in results)


def measure_synthetic(args: argparse.Namespace) -> list[list[str]]:
    """Sentences/s of greedy and beam 5 at each --synthetic-batches size and precision:
    random sources of 15 pieces, exactly --synthetic-len output steps (min_len = max_len),
    so that an untrained model costs what a trained one does; median of --alternations."""
    import random

    import torch

    if args.device == "cpu":
        torch.set_num_threads(args.threads[0])
    arch = Arch(8000, args.emb, args.hidden)
    rng = random.Random(1)
    rows = []
    for precision in args.precisions:
        translator = synthetic_translator(arch, args.device, precision)
        for beam in (1, 5):
            for batch in args.synthetic_batches:
                n = batch * (4 if batch > 1 else 32) // (4 if args.smoke else 1)
                texts = [" ".join(f"w{rng.randrange(arch.vocab - 4)}" for _ in range(15)) for _ in range(n)]
                opts = translator.options(method="beam" if beam > 1 else "greedy", beam=beam,
                                          batch_size=batch, min_len=args.synthetic_len,
                                          max_len=args.synthetic_len)
                timed_translate(translator, texts[:batch], opts)  # warm-up
                runs = [timed_translate(translator, texts, opts) for _ in range(args.alternations)]
                seconds, pieces = median(r[0] for r in runs), runs[0][1]
                step_ms = 1000 * seconds / (n / batch) / (args.synthetic_len + 1)
                rows.append([precision, Decode(beam, batch).label, str(n), fmt_num(n / seconds, 1),
                             fmt_num(pieces / seconds), fmt_num(pieces / n, 1), fmt_num(step_ms, 2)])
                say(f"synthetic {precision} {Decode(beam, batch).label}: {n / seconds:.1f} sent/s")
    return rows


def synthetic_report(args: argparse.Namespace) -> str:
    """The synthetic decoding table with its device and settings."""
    import torch

    device = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
              else f"CPU {cpu_name()}, {args.threads[0]} thread(s)")
    rows = measure_synthetic(args)
    head = [f"Synthetic decoding on {device}, torch {torch.__version__}: an untrained model "
            f"(emb {args.emb}, 2x{args.hidden} biLSTM encoder, 2x{args.hidden} LSTM decoder, input "
            f"feeding, general attention, vocabulary 8,000), random sources of 15 pieces, exactly "
            f"{args.synthetic_len} output pieces a sentence (min_len = max_len), "
            f"Translator.translate, median of {args.alternations}.", ""]
    return "\n".join(head + md_table(["precision", "decode", "sentences", "sent/s", "output tok/s",
                                      "output length", "ms per batch step"], rows)) + "\n"


# --- the report ----------------------------------------------------------------------


def peak_of(results: dict, threads: int, precision: str) -> float | None:
    """The best measured GFLOP/s at ``threads`` and ``precision`` (None: not measured)."""
    shapes = results.get("peak", {}).get("gflops", {}).get(f"{threads}|{precision}")
    return max(shapes.values()) if shapes else None


def utilisation(gflops: float | None, peak: float | None) -> str:
    return f"{100 * gflops / peak:.0f}%" if gflops and peak else "-"


def training_rows(results: dict, threads: int, corpus: Corpus, bench_arch: Callable) -> list[list[str]]:
    """setting | OpenNMT-py | transduce | ratio | achieved GFLOP/s and % of peak of each."""
    rates = results["train"]["rates"]
    rows = []
    for s in SETTINGS:
        flops = training_flops(bench_arch(s.feed), corpus.src_len, corpus.src_per_tgt)["training"]
        peak = peak_of(results, threads, s.precision)
        cells = {sys_: rates.get(f"{threads}|{s.key}|{sys_}", []) for sys_ in (ONMT, TD)}
        base = median(rates.get(f"{threads}|{s.key.split('-')[0]}-fp32|{ONMT}", []))
        onmt = fmt_runs(cells[ONMT]) if s.precision == "fp32" else "(no bf16 on CPU)"
        util = [utilisation(median(cells[x]) * flops / 1e9 if cells[x] else None, peak) for x in (ONMT, TD)]
        rows.append([s.label, onmt, fmt_runs(cells[TD]), ratio(median(cells[TD]), base), *util])
    return rows


def thread_rows(results: dict) -> list[list[str]]:
    """2 threads vs 1 thread per setting and system (when both were measured)."""
    rates = results["train"]["rates"]
    rows = []
    for s in SETTINGS:
        for system in s.systems:
            one, two = (median(rates.get(f"{t}|{s.key}|{system}", [])) for t in (1, 2))
            if one == one and two == two:
                faster = "2 threads" if two > one else "1 thread"
                rows.append([s.label, system, fmt_num(one), fmt_num(two), ratio(two, one), faster])
    return rows


def inference_rows(results: dict, threads: int, arch: Arch) -> list[list[str]]:
    """One row per decode and transduce precision, against OpenNMT-py fp32 of the same decode;
    the paired cells are 'OpenNMT-py / transduce' (OpenNMT-py only on the fp32 rows)."""
    rows_in = results["infer"]["rows"]
    out = []
    for precision in ("fp32", "bf16", "int8"):
        for d in DECODES:
            td = rows_in.get(f"{threads}|{d.beam}|{d.batch}|{TD}|{precision}")
            onmt = rows_in.get(f"{threads}|{d.beam}|{d.batch}|{ONMT}|fp32")
            if td is None:
                continue
            shown = onmt if precision == "fp32" else None
            peaks = (peak_of(results, threads, "fp32"), peak_of(results, threads, precision))

            def pair(cell: Callable[[dict, float | None], str]) -> str:
                return " / ".join(cell(r, p) if r else "-" for r, p in zip((shown, td), peaks))

            label = d.label if precision == "fp32" else f"transduce {precision}, {d.label}"
            out.append([label, fmt_runs(sent_per_s(shown), 1), fmt_runs(sent_per_s(td), 1),
                        ratio(median(sent_per_s(td)), median(sent_per_s(onmt))),
                        pair(lambda r, p: fmt_num(r["pieces"] / median(r["seconds"]))),
                        pair(lambda r, p: fmt_num(r["pieces"] / r["sentences"], 1)),
                        pair(lambda r, p: fmt_num(r["bleu"], 1)),
                        pair(lambda r, p: utilisation(decode_gflops(r, d, arch), p))])
    return out


def sent_per_s(row: dict | None) -> list[float]:
    """Sentences/s of each run of a translation row ([] for none)."""
    return [row["sentences"] / s for s in row["seconds"]] if row else []


def hyp_steps(row: dict, beam: int) -> float:
    """Approximate decoder steps x hypotheses: beam x (output pieces + EOS) per sentence."""
    return beam * (row["pieces"] + row["sentences"])


def decode_gflops(row: dict, d: Decode, arch: Arch) -> float:
    """Achieved GFLOP/s of a translation run (median time)."""
    src_len = row["src_pieces"] / row["sentences"]
    return decode_flops(arch, row["src_pieces"], hyp_steps(row, d.beam), src_len) / median(row["seconds"]) / 1e9


def floor_rows(results: dict, threads: int) -> list[list[str]]:
    """Batch 1: the measured weight-read floor per step vs each translator's time per step."""
    floors = results.get("peak", {}).get("floor_ms", {}).get(str(threads))
    rows_in = results["infer"]["rows"]
    out = []
    for d in (x for x in DECODES if x.batch == 1):
        floor = floors.get("5" if d.beam > 1 else "1") if floors else None
        for system, precision in TRANSLATORS:
            r = rows_in.get(f"{threads}|{d.beam}|1|{system}|{precision}")
            if r is None:
                continue
            per_step = 1000 * median(r["seconds"]) / (r["pieces"] + r["sentences"])
            out.append([d.label, f"{system} {precision}", fmt_num(per_step, 2), fmt_num(floor, 2),
                        ratio(per_step, floor)])
    return out


def report(results: dict, bench: Bench) -> str:
    """The markdown section from whatever parts ``results`` holds (each with its command)."""
    env, c = results["env"], bench.corpus
    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in env["flags"].items())
    commands = sorted({cmd for part in PARTS if part in results
                       for cmd in results[part].get("commands", [results[part].get("command", "?")])})
    lines = [HEADING, "", "Command: " + "; ".join(f"`{cmd}`" for cmd in commands) + ".", "",
             f"Machine: {env['cpu']}, {env['cores']} cores ({flags}); Python {env['python']}, "
             f"torch {env['torch']}, transduce {env['transduce']} (commit {env['commit']}), "
             f"OpenNMT-py {env.get('onmt', '?')} (torch {env.get('onmt_torch', '?')}); {env['date']}.", "",
             f"Data: Multi30k De->En, {c.train_pairs:,} training pairs, encoded once with transduce's "
             f"joint sentencepiece BPE (8k, as `transduce train multi30k` trains it) and fed to both "
             f"as pieces. Joint vocabulary (4 specials + the distinct pieces of the training data): "
             + vocab_sentence(results, c) + ".", ""]
    lines += ["Model (both): " + model_sentence(bench), ""]
    if "train" in results:
        lines += training_section(results, bench)
    if "infer" in results:
        lines += inference_section(results, bench)
    lines += utilisation_section(results, bench)
    return "\n".join(lines).rstrip("\n") + "\n"


def vocab_sentence(results: dict, corpus: Corpus) -> str:
    """The joint vocabulary: expected from the pieces, and as each tool reported it."""
    measured = results.get("train", {}).get("vocab") or {}
    told = "; as the tools report it: " + ", ".join(f"{s} {n:,}" for s, n in sorted(measured.items()))
    return f"{corpus.vocab:,}" + (told if measured else "")


def model_sentence(bench: Bench) -> str:
    a = bench.args
    return (f"2-layer bidirectional LSTM encoder of {a.hidden} ({a.hidden // 2} per direction), "
            f"2-layer LSTM decoder of {a.hidden}, emb {a.emb}, general attention, batch 64 sentences, "
            f"Adam 1e-3, dropout 0.1 (OpenNMT-py: ../shared/peers/onmt-rnn.yaml; transduce: the "
            f"multi30k recipe, which also has embedding dropout 0.1 and a linear bridge).")


def training_section(results: dict, bench: Bench) -> list[str]:
    t = results["train"]
    lines = ["### Training: target tokens/s (each tool's own log)", "",
             f"{t['steps']} steps a run, a report every {t['report_every']} steps, the first "
             f"{t['warmup_reports']} report(s) discarded, the median of the rest; median (range) of "
             f"{t['alternations']} runs, the tools alternating. Load average {t['load'][0]:.2f} "
             f"before, {t['load'][1]:.2f} after.", "",
             "Both logs count the non-pad target tokens with EOS: OpenNMT-py's tgt tok/s is "
             "Statistics.n_words over the time since the last report, n_words the non-pad tokens of "
             "the target past its BOS (onmt/utils/loss.py _stats; the target is BOS + pieces + EOS, "
             "onmt/inputters/text_utils.py); transduce's tok_per_s counts the non-pad tokens of "
             "tgt_out, the pieces + EOS (loss.masked_cross_entropy n_tokens, train.py Interval).", ""]
    for threads in t["threads"]:
        lines += [f"{threads} thread(s):", ""]
        lines += md_table(["setting", f"{ONMT} {results['env'].get('onmt', '')}".strip(), TD,
                           "ratio", f"{ONMT} % of peak", f"{TD} % of peak"],
                          training_rows(results, threads, bench.corpus, bench.arch))
        lines.append("")
    threads = thread_rows(results)
    if threads:
        lines += ["2 threads vs 1 thread (median tokens/s):", ""]
        lines += md_table(["setting", "system", "1 thread", "2 threads", "2 / 1", "faster"], threads)
        lines.append("")
    lines += ["ratio: transduce over OpenNMT-py fp32 with the same input feeding (bf16 rows too). "
              "% of peak: tokens/s x training FLOPs per token (below) over the best measured "
              "matmul GFLOP/s of that dtype and thread count.", ""]
    return lines


def inference_section(results: dict, bench: Bench) -> list[str]:
    i = results["infer"]
    lines = ["### Inference: test_2016_flickr", "",
             f"Models of the same architecture (input feeding, fp32) trained {i['infer_steps']} steps "
             f"each; batch 32: {sentences_of(i, 32)} sentences, batch 1: the first "
             f"{sentences_of(i, 1)}. Translation time only (model loading excluded), each run a fresh "
             f"process; median (range) of {i['alternations']} runs, the tools alternating. Beam "
             f"search ranks with GNMT's length penalty, alpha 0.6, in both (OpenNMT-py: -length_penalty "
             f"wu -alpha 0.6, its default max_length 250; greedy = beam 1 with -random_sampling_topk 1; "
             f"transduce: the recipe's search, max length 1.5 x source + 10)"
             f"{'; max length ' + str(i['max_len']) + ' for both' if i['max_len'] else ''}. "
             f"Load average {i['load'][0]:.2f} before, {i['load'][1]:.2f} after.", ""]
    for threads in i["threads"]:
        lines += [f"{threads} thread(s):", ""]
        lines += md_table(["setting", f"{ONMT} sent/s", f"{TD} sent/s", "ratio",
                           "output tok/s (O / t)", "mean length (O / t)", "BLEU (O / t)",
                           "% of peak (O / t)"],
                          inference_rows(results, threads, bench.arch()))
        lines.append("")
    lines += ["ratio: transduce over OpenNMT-py fp32 of the same decode. O / t: OpenNMT-py / "
              "transduce of the row. Output tokens: pieces of the output, EOS not counted. BLEU: "
              "sacreBLEU, cased, on the outputs decoded to text with the sentencepiece model. % of "
              "peak: FLOPs (the encoder over the source plus beam x (output length + 1) decoder "
              "steps, an approximation for beam search) over the median time, against the "
              "dtype's matmul peak (int8: none measured).", ""]
    return lines


def sentences_of(infer: dict, batch: int) -> str:
    rows = [r for k, r in infer["rows"].items() if k.split("|")[2] == str(batch)]
    return fmt_num(rows[0]["sentences"]) if rows else "-"


def utilisation_section(results: dict, bench: Bench) -> list[str]:
    c = bench.corpus
    lines = ["### Utilisation", ""]
    for feed in (True, False):
        formula = flops_formula(bench.arch(feed), c.src_len, c.src_per_tgt)
        lines += [f"Input feeding {'on' if feed else 'off'}. {formula[0]}", *formula[1:], ""]
    peak = results.get("peak")
    if not peak:
        return lines + ["Matmul peak: not measured (run --part peak).", ""]
    shapes = list(next(iter(peak["gflops"].values())))
    rows = [[*key.split("|"), *(fmt_num(v) for v in g.values()), fmt_num(max(g.values()))]
            for key, g in peak["gflops"].items()]
    lines += ["Matmul GFLOP/s (torch.matmul, best of the timed calls):", ""]
    lines += md_table(["threads", "dtype", *shapes, "peak"], rows) + [""]
    floor_lines = []
    if "infer" in results:
        for threads in peak["threads"]:
            floor = floor_rows(results, threads)
            if floor:
                floor_lines += [f"{threads} thread(s):", ""] + md_table(
                    ["decode", "translator", "ms per step", "floor ms per step", "x floor"], floor) + [""]
    mb = peak["weights"] * 4 / 1e6
    lines += [f"Batch 1: the weight-read floor is one decoder step's matrix products with the "
              f"decoder's weights ({peak['weights'] / 1e6:.1f} M parameters, {mb:.0f} MB in fp32; 1 "
              f"row for greedy, 5 for beam 5), fp32; the time per step of a translator is its time "
              f"over the output pieces + EOS of its outputs.", ""] + floor_lines
    return lines


# --- main ----------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--part", choices=("train", "infer", "peak", "all", "synthetic"), default="all",
                   help="all: peak, train and infer; synthetic: decoding of an untrained model, no data "
                        "or peers needed (any --device, bench/gpu.sh)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads of every run")
    p.add_argument("--alternations", type=int, default=3, help="runs of each system and setting")
    p.add_argument("--steps", type=int, default=60, help="training steps of a throughput run")
    p.add_argument("--report-every", type=int, default=10, help="steps between log reports")
    p.add_argument("--warmup-reports", type=int, default=1, help="reports discarded at a run's start")
    p.add_argument("--infer-steps", type=int, default=300, help="training steps of the inference models")
    p.add_argument("--sentences", type=int, default=0, help="test sentences at batch 32 (0: all)")
    p.add_argument("--batch1-sentences", type=int, default=100, help="test sentences at batch 1")
    p.add_argument("--max-len", type=int, default=0, help="output length limit for both (0: defaults)")
    p.add_argument("--peak-reps", type=int, default=20, help="timed calls per matmul shape")
    p.add_argument("--device", default="cpu", help="synthetic part: the device")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], help="synthetic part")
    p.add_argument("--synthetic-batches", type=int, nargs="+", default=[1, 64], help="synthetic part")
    p.add_argument("--synthetic-len", type=int, default=16, help="synthetic part: output pieces")
    p.add_argument("--emb", type=int, default=256, help=argparse.SUPPRESS)
    p.add_argument("--hidden", type=int, default=512, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "speed-cache")
    p.add_argument("--peers", type=Path, help="a folder holding venv-onmt (default: CACHE/peers)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny settings into CACHE/smoke: " + ", ".join(f"{k}={v}" for k, v in SMOKE.items()))
    p.add_argument("--write", action="store_true", help="replace the section in bench/RESULTS.md")
    p.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
        args.cache = args.cache / "smoke"
    if args.steps <= args.report_every * args.warmup_reports:
        p.error("--steps must leave reports after the --warmup-reports")
    return args


PARTS = {"peak": measure_peak, "train": measure_training, "infer": measure_inference}


def shown_command(argv: list[str]) -> str:
    """The command line of a part as the report quotes it (without the hidden --results)."""
    shown = [a for i, a in enumerate(argv) if not a.startswith("--results")
             and (i == 0 or argv[i - 1] != "--results")]
    return f"python3 bench/speed.py {shlex.join(shown)}".rstrip()


THREAD_KEYED = ("rates", "rows", "gflops", "floor_ms")
"""The dicts of a part's results keyed by "threads|..." (or by the thread count)."""


def merge_threads(old: dict | None, new: dict) -> dict:
    """A part's new results, keeping the old ones of thread counts it did not measure
    (so that ``--threads 2`` later adds to a ``--threads 1`` run); both commands kept."""
    kept = [t for t in (old or {}).get("threads", []) if t not in new["threads"]]
    if not kept:
        return new
    merged = dict(new, threads=sorted(kept + new["threads"]),
                  commands=old.get("commands", [old.get("command", "?")]) + new["commands"])
    for key in THREAD_KEYED:
        if key in new:
            keep = {k: v for k, v in old.get(key, {}).items() if int(k.split("|")[0]) in kept}
            merged[key] = {**keep, **new[key]}
    return merged


def run(argv: list[str]) -> str:
    """Measure the chosen parts, store them, print (and write) the report."""
    args = parse_args(argv)
    if args.part == "synthetic":
        text = synthetic_report(args)
        print(text)
        return text
    check_shared()
    args.cache.mkdir(parents=True, exist_ok=True)
    onmt_bin = ensure_onmt(args.peers or args.cache / "peers")
    corpus = prepare_corpus(args.cache / "data")
    bench = Bench(args, args.cache, corpus, onmt_bin)
    onmt_vocab(bench)
    say(f"vocabulary: {corpus.vocab} (specials + training pieces), {corpus.train_pairs} training pairs")
    store = args.cache / "results.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    results["env"] = environment(onmt_bin / "python")
    for name, measure in PARTS.items():
        if args.part in (name, "all"):
            new = {**measure(bench), "commands": [shown_command(argv)]}
            results[name] = merge_threads(results.get(name), new)
            store.write_text(json.dumps(results, indent=1))
    text = report(results, bench)
    print(text)
    if args.write:
        write_section(HEADING, text, args.results)
        say(f"wrote {args.results}")
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == [WORKER]:
        return translate_worker(argv[1:])
    try:
        run(argv)
    except (RuntimeError, ValueError) as exc:
        print(f"speed: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
