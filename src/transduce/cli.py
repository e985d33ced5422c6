"""The ``transduce`` command line: thin subcommands over the library.

Exit codes: 0 success, 2 a user error (one clear line on stderr), 1 anything
else, 130 interrupted.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from . import config
from .checkpoint import FINE_TUNE_A_MEMBER, average_checkpoints, refuse_ensemble, write_ensemble
from . import sizing
from .config import PRECISIONS, RECIPES, DecodeOptions, recipe_path
from .corpora import load_splits, read_lines
from .demo import run_demo
from .errors import ConfigError, UserError
from .metrics import format_table
from .prepare import format_report, prepare
from .runfolder import saved_steps
from .serve.limits import add_limit_args, limits_from_args
from .train import TrainingDiverged, train
from .translator import Translator, evaluate, model_folder
from .version import __version__


# --- subcommands ---------------------------------------------------------------

def cmd_prepare(args: argparse.Namespace) -> int:
    report = prepare(args.source, args.target, max_len=args.max_len)
    print(format_report(report))
    return 0


RESUMABLE_SECTIONS = ("train", "search")
"""Sections whose keys may change when a run is resumed (the rest define the model and its data)."""


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        cfg, out = _resume_config(args)
    elif args.train:
        cfg, out = _own_data_config(args)
    else:
        if args.config is None:
            raise UserError("train needs a CONFIG (a YAML file or a built-in recipe name), "
                            "--train FILE (your own data) or --resume RUN")
        cfg = config.load(recipe_path(args.config), args.overrides)
        out = Path(args.out or f"runs/{Path(args.config).stem}")
    if args.init_from is not None:
        if args.resume:
            raise UserError("--init-from starts a new run; --resume continues one: give one of them")
        cfg = _adopt_architecture(cfg, Path(args.init_from))
    summary = train(cfg, out, resume=bool(args.resume), init_from=args.init_from)
    print(json.dumps(summary, indent=2, default=str))
    return 130 if summary.get("interrupted") else 0


def _resume_config(args: argparse.Namespace) -> tuple[config.Config, Path]:
    """The run's own config with train.* / search.* overrides; a CONFIG given too must match it."""
    run = Path(args.resume)
    overrides, recipe = list(args.overrides), args.config
    if recipe is not None and "=" in recipe and not Path(recipe).is_file():
        overrides, recipe = [recipe, *overrides], None  # `--resume RUN key=value`: no CONFIG
    for text in overrides:
        (section, key), _ = config.parse_override(text)
        if section not in RESUMABLE_SECTIONS:
            raise UserError(f"cannot change {section}.{key} when resuming {run}: only train.* and "
                            f"search.* keys may change (the rest defines the model and its data)")
    cfg_file = run / "config.yaml"
    if not cfg_file.is_file():
        raise UserError(f"cannot resume: {cfg_file} not found")
    cfg = config.load(cfg_file, overrides)
    if args.out is not None and Path(args.out).resolve() != run.resolve():
        raise UserError(f"--out {args.out} with --resume {run}: a run resumes in its own folder")
    if recipe is not None:
        given = config.load(recipe_path(recipe), overrides)
        if given != cfg:
            key = _first_difference(given.to_dict(), cfg.to_dict())
            raise UserError(f"{recipe} does not match the run being resumed ({cfg_file}): {key} "
                            f"differs; resume without CONFIG, changing train.*/search.* with key=value")
    return cfg, run


def _adopt_architecture(cfg: config.Config, model_dir: Path) -> config.Config:
    """``cfg`` with the model.* and tokenizer.* sections of the model folder being fine-tuned
    (its weights and vocabularies fix them); says so when the given ones differed."""
    refuse_ensemble(model_dir, FINE_TUNE_A_MEMBER)
    base = config.load(model_folder(model_dir) / "config.yaml")
    for section in ("model", "tokenizer"):
        given, kept = getattr(cfg, section), getattr(base, section)
        if given != kept:
            key = _first_difference(dataclasses.asdict(given), dataclasses.asdict(kept), f"{section}.")
            print(f"transduce: --init-from {model_dir}: its {section}.* settings are kept "
                  f"({key} differs from the config)", file=sys.stderr)
        setattr(cfg, section, kept)
    return cfg


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    """The first dotted key whose values differ between two nested dicts."""
    for key in a:
        if isinstance(a[key], dict) and isinstance(b.get(key), dict):
            found = _first_difference(a[key], b[key], f"{prefix}{key}.")
            if found:
                return found
        elif a[key] != b.get(key):
            return f"{prefix}{key} ({a[key]!r} vs {b.get(key)!r})"
    return ""


def _own_data_config(args: argparse.Namespace) -> tuple[config.Config, Path]:
    """A recipe (small | base) with data.* from --train/--valid/--test and sizes for that data."""
    if args.config is not None and "=" not in args.config:
        raise UserError("train takes either a CONFIG or --train FILE, not both "
                        "(put the files in the config's data.train instead)")
    overrides = [args.config] if args.config is not None else []
    for name in ("train", "valid", "test"):  # `--train f.tsv key=value`: nargs took the override
        given = getattr(args, name) or []
        keep = [a for a in given if "=" not in a or Path(a).exists()]
        overrides += [a for a in given if a not in keep]
        setattr(args, name, keep or None)
    if not args.train:
        raise UserError("--train needs a TSV file or two line-aligned files")
    data = sizing.profile_files(args.train)
    sized = sizing.sized_overrides(data, args.recipe)
    files = [f"data.train={json.dumps(args.train)}"]
    files += [f"data.{name}={json.dumps(getattr(args, name))}" for name in ("valid", "test")
              if getattr(args, name)]
    print(f"transduce: {args.train[0]}: " + sizing.describe(data, sized), file=sys.stderr)
    cfg = config.load(RECIPES / f"{args.recipe}.yaml", files + sized + overrides + list(args.overrides))
    return cfg, Path(args.out or f"runs/{Path(args.train[0]).name.split('.')[0]}")


def decode_options(args: argparse.Namespace, translator: Translator, **fixed) -> DecodeOptions:
    """The model's decoding defaults changed by the decoding flags that were given
    (and by ``fixed``); a bad value is a UserError naming the flag."""
    changes = {name: getattr(args, name) for name in DECODE_FLAGS if getattr(args, name) is not None}
    if args.greedy:
        changes["method"] = "greedy"
    changes.update(fixed)
    try:
        return translator.options(**changes)
    except ConfigError as exc:
        flag = f"--{exc.key.replace('_', '-')}" if exc.key in DECODE_FLAGS else exc.key
        raise UserError(f"{flag}: {exc.problem}") from None


def cmd_translate(args: argparse.Namespace) -> int:
    if args.attention and not args.jsonl:
        raise UserError("--attention needs --jsonl (attention weights are written as JSON); "
                        "for pictures use --plot-attention DIR")
    translator = Translator.from_dir(args.model, device=args.device, precision=args.precision)
    want_attention = args.attention or args.plot_attention is not None
    options = decode_options(args, translator, return_attention=want_attention)
    _translate_stream(translator, options, source=args.input, output=args.output, jsonl=args.jsonl,
                      plot_dir=args.plot_attention)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    translator = Translator.from_dir(args.model, device=args.device, precision=args.precision)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.split:
        if args.source or args.reference:
            raise UserError("evaluate takes either --split or --source and --reference, not both")
        sources, references = _split_pairs(translator, args.split)
        what = f"the {args.split} split of {args.model} (data.{args.split} in its config.yaml)"
    elif args.source and args.reference:
        sources, references = _read_lines(args.source), _read_lines(args.reference)
        what = args.source
        if len(sources) != len(references):
            raise UserError(f"{args.source} has {len(sources)} lines but {args.reference} has {len(references)}")
    else:
        raise UserError("evaluate needs --source and --reference files, or --split valid|test")
    if not sources:
        raise UserError(f"{what} is empty")
    result = _evaluate_pairs(translator, sources, references, metrics,
                             options=decode_options(args, translator), hyp_out=args.output)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    translator = Translator.from_dir(args.model, device=args.device, precision=args.precision)
    sources, targets = _read_lines(args.source), _read_lines(args.target)
    if len(sources) != len(targets):
        raise UserError(f"{args.source} has {len(sources)} lines but {args.target} has {len(targets)}")
    out = _open_out(args.output)
    try:
        for logprob, n in translator.score(sources, targets):
            if args.jsonl:
                record = {"logprob": logprob, "tokens": n, "per_token": logprob / n if n else None}
                out.write(json.dumps(record) + "\n")
            else:
                out.write(f"{logprob:.4f}\t{n}\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .serve.app import run_server  # FastAPI: the optional 'serve' extra
    except ImportError as exc:
        raise UserError(f"serve needs the 'serve' extra: pip install 'transduce[serve]' ({exc})") from None
    run_server(args.models, host=args.host, port=args.port, device=args.device, limits=limits_from_args(args))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    run_demo(Path(args.out), quick=args.quick, overrides=args.overrides)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plots import plot_training  # matplotlib: heavy, loaded only when drawing

    for path in plot_training(Path(args.run)):
        print(path)
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    folders = _checkpoints_to_average(args.checkpoints, args.last)
    average_checkpoints(folders, Path(args.out))
    print(f"averaged {len(folders)} checkpoints into {args.out}: {', '.join(str(f) for f in folders)}")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    write_ensemble(args.models, Path(args.out), args.rescore)
    rescored = f", re-ranked by {', '.join(args.rescore)}" if args.rescore else ""
    n = len(args.models)
    print(f"ensemble of {n} model{'s' if n > 1 else ''} in {args.out}: {', '.join(args.models)}{rescored} "
          f"(use it as a model folder: transduce translate {args.out})")
    return 0


def _checkpoints_to_average(given: list[str], last: int | None) -> list[Path]:
    """The folders named, or with ``--last N`` the newest N step checkpoints of one run."""
    if last is None:
        return [Path(d) for d in given]
    if len(given) != 1:
        raise UserError("--last N takes one training run folder")
    found = saved_steps(given[0])
    if len(found) < last:
        raise UserError(f"{given[0]} keeps {len(found)} step checkpoint(s), fewer than --last {last} "
                        f"(train with train.keep_last={last} or more; the default keeps 1)")
    return found[-last:]


# --- file handling for translate / evaluate --------------------------------------

def _read_lines(path: str) -> list[str]:
    """All lines of a UTF-8 text file, with errors naming the file and line."""
    return list(read_lines(path))


def _open_out(path: str | None):
    if path is None or path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def _input_lines(path: str | None):
    """Lines from a file or stdin, streamed (newline stripped); bytes that are not
    UTF-8 are an error naming the line, as they are in files."""
    if path not in (None, "-"):
        yield from _read_lines(path)
        return
    for lineno, raw in enumerate(sys.stdin.buffer, 1):
        try:
            yield raw.decode("utf-8").rstrip("\n").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise UserError(f"<stdin>:{lineno}: invalid UTF-8 ({exc.reason} at byte {exc.start})") from None


def _interactive(path: str | None) -> bool:
    """True when lines are typed at a terminal: answer each as soon as it is entered."""
    return path in (None, "-") and sys.stdin.isatty()


def _plot_folder(plot_dir: str | None) -> Path | None:
    """The --plot-attention folder, created now so that a bad path fails before any work."""
    if plot_dir is None:
        return None
    try:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--plot-attention {plot_dir}: cannot create the folder ({exc.strerror})") from None
    return Path(plot_dir)


def _translate_stream(translator: Translator, options: DecodeOptions, source: str | None,
                      output: str | None, jsonl: bool, plot_dir: str | None) -> None:
    """Translate ``source`` line by line into ``output`` (stdout by default)."""
    out = _open_out(output)
    show_progress = output not in (None, "-") and source not in (None, "-") and sys.stderr.isatty()
    lines = _input_lines(source)
    if show_progress:
        lines = tqdm(list(lines), desc="translate", unit="sent")
    folder = _plot_folder(plot_dir)
    chunk = 1 if _interactive(source) else None
    try:
        for i, tr in enumerate(translator.translate_stream(lines, options, chunk_size=chunk)):
            if folder is not None and tr.attention is not None and tr.tokens:
                from .plots import attention_title, plot_attention  # matplotlib: heavy, lazy

                plot_attention(tr.attention, tr.src_tokens, tr.tokens, folder / f"{i:05d}.png",
                               title=attention_title(tr))
            out.write(_format_result(tr, i, options.nbest, jsonl) + "\n")
            out.flush()
    finally:
        if out is not sys.stdout:
            out.close()


def _format_result(tr, index: int, nbest: int, jsonl: bool) -> str:
    """One output line; with nbest > 1 in text, ``nbest`` lines ``index<TAB>text<TAB>score``
    (``index`` = the 0-based input line, as in Moses and fairseq); attention only in JSON."""
    if jsonl:
        record = {"text": tr.text, "score": tr.score}
        if nbest > 1:
            record["nbest"] = [{"text": t, "score": s} for t, s in tr.nbest]
        if tr.attention is not None:
            record.update(src_tokens=tr.src_tokens, tokens=tr.tokens, attention=tr.attention)
        return json.dumps(record, ensure_ascii=False)
    if nbest > 1:
        return "\n".join(f"{index}\t{t}\t{s:.4f}" for t, s in tr.nbest[:nbest])
    return tr.text


def _split_pairs(translator, split: str) -> tuple[list[str], list[str]]:
    """Sources and references of a split of the corpus the model was trained on
    (its config's data section: a built-in corpus, or data.valid / data.test)."""
    pairs = getattr(load_splits(translator.config.data), split)
    return [s for s, _ in pairs], [t for _, t in pairs]


def _evaluate_pairs(translator, sources, references, metrics, options, hyp_out):
    result = evaluate(translator, sources, references, metrics, options, progress=sys.stderr.isatty())
    if hyp_out:
        with _open_out(hyp_out) as fh:
            fh.write("\n".join(result.pop("hypotheses", [])) + "\n")
    else:
        result.pop("hypotheses", None)
    return result


# --- the parser --------------------------------------------------------------------

DECODE_FLAGS = {
    "method": "beam search, greedy decoding or sampling",
    "beam": "beam size",
    "nbest": "hypotheses per input (text: N lines 'input index<TAB>text<TAB>score'; --jsonl: a list)",
    "max_len": "absolute maximum output length in tokens",
    "max_len_a": "output length limit a * source_length + b: a",
    "max_len_b": "output length limit a * source_length + b: b",
    "min_len": "minimum output length in tokens",
    "length_penalty": "beam ranking: raw log-prob, per-token average, or GNMT",
    "alpha": "GNMT length penalty exponent",
    "coverage": "GNMT coverage penalty weight (0 = off)",
    "exact_stop": "beam search: stop a sentence only when no live hypothesis can still win at any length",
    "rescore_weight": "weight of the rescorers' log-probability in re-ranking the beam (0 = off)",
    "temperature": "sampling temperature (0 = argmax)",
    "top_k": "sampling: keep the k most likely tokens (0 = all)",
    "top_p": "sampling: nucleus probability mass",
    "seed": "sampling seed",
    "replace_unk": "replace <unk> outputs by the source token with the most attention",
    "batch_size": "sentences decoded together",
}
"""Decoding flags, one per DecodeOptions field (return_attention is --attention)."""


def _add_search_args(p: argparse.ArgumentParser) -> None:
    """One flag per decoding option (default: the model's config.search), device, precision."""
    hints = typing.get_type_hints(DecodeOptions)
    for name, help_text in DECODE_FLAGS.items():
        flag, tp = f"--{name.replace('_', '-')}", hints[name]
        help_text += f" (default: the model's search.{name})"
        if tp is bool:
            p.add_argument(flag, action="store_true", default=None, help=help_text)
        elif typing.get_origin(tp) is typing.Literal:
            p.add_argument(flag, choices=typing.get_args(tp), help=help_text)
        else:
            base = next(a for a in typing.get_args(tp) or (tp,) if a is not type(None))
            p.add_argument(flag, type=base, metavar=name.upper(), help=help_text)
    p.add_argument("--greedy", action="store_true", help="greedy decoding (= --method greedy)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="inference precision: bf16 autocast (AMX/AVX512-BF16 CPUs, GPUs), fp16 "
                        "(CUDA), dynamic int8 (CPU), or auto (bf16 where native, else fp32)")


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _port(text: str) -> int:
    """argparse type: a TCP port number."""
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (1-65535), got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """A bad argument is one line, like every other user error (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"transduce: error: {message} (see: {self.prog} --help)\n")


class _SubParser(_Parser):
    """Every sub-command's parser states defaults in its help (see _Help)."""

    def __init__(self, *args, **kwargs):  # argparse passes its own keywords through
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)


class _Help(argparse.HelpFormatter):
    """Help that states each option's default (unless it is None/off or already said)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings
                or action.default in (None, False, [], argparse.SUPPRESS)):
            return text
        return f"{text} (default: {action.default})"


def _prepare_parser(sub) -> None:
    """The ``prepare`` sub-command's arguments."""
    p = sub.add_parser("prepare", help="check a corpus and print statistics",
                       description="Read a corpus (a TSV file, two line-aligned files, .gz ok, or a "
                                   "built-in corpus name) and print statistics and what would be dropped.")
    p.add_argument("source", help="TSV file, source file, or built-in corpus name (cmudict, reverse, ...)")
    p.add_argument("target", nargs="?", help="target file, line-aligned with SOURCE")
    p.add_argument("--max-len", type=_positive_int, default=100,
                   help="token limit used to count over-long pairs (default: 100)")
    p.set_defaults(func=cmd_prepare)


def _train_parser(sub) -> None:
    """The ``train`` sub-command's arguments."""
    p = sub.add_parser("train", help="train a model from a YAML recipe or your own files",
                       description="Train a model. CONFIG is a YAML file or a built-in recipe name "
                                   f"({', '.join(sorted(r.stem for r in RECIPES.glob('*.yaml')))}); or give your "
                                   "own data with --train. Overrides look like train.lr=3e-4.")
    p.add_argument("config", nargs="?", help="YAML recipe or built-in recipe name")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.hidden=256 train.lr=3e-4")
    p.add_argument("--out", help="run folder (default: runs/<config or training file name>)")
    p.add_argument("--resume", metavar="RUN",
                   help="continue the run in RUN where it stopped (train.*/search.* overrides allowed)")
    p.add_argument("--init-from", metavar="MODEL_DIR",
                   help="fine-tune: start from this model folder's weights and vocabularies (its "
                        "model.* and tokenizer.* settings), with a fresh optimizer, schedule, step "
                        "count and best score, on the data of CONFIG or --train")
    p.add_argument("--train", nargs="+", metavar="FILE",
                   help="your own training data: one TSV file (source<TAB>target) or two line-aligned "
                        "files, .gz ok; tokenizers and steps are sized for it")
    p.add_argument("--valid", nargs="+", metavar="FILE",
                   help="with --train: validation data (default: 5%% of --train, at most 1,000 pairs)")
    p.add_argument("--test", nargs="+", metavar="FILE", help="with --train: test data")
    p.add_argument("--recipe", choices=("small", "base"), default="small",
                   help="with --train: small (1-layer biGRU 256) or base (2-layer biLSTM 512)")
    p.set_defaults(func=cmd_train)


def _translate_parser(sub) -> None:
    """The ``translate`` sub-command's arguments."""
    p = sub.add_parser("translate", help="translate lines (stdin -> stdout by default)")
    p.add_argument("model", help="model folder (a training run)")
    p.add_argument("--input", help="input file (default: stdin)")
    p.add_argument("--output", help="output file (default: stdout)")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per line")
    p.add_argument("--attention", action="store_true",
                   help="include attention weights (needs --jsonl)")
    p.add_argument("--plot-attention", metavar="DIR", help="write an attention heatmap per sentence")
    _add_search_args(p)
    p.set_defaults(func=cmd_translate)


def _evaluate_parser(sub) -> None:
    """The ``evaluate`` sub-command's arguments."""
    p = sub.add_parser("evaluate", help="translate a test set and score it")
    p.add_argument("model", help="model folder")
    p.add_argument("--source", help="source sentences, one a line")
    p.add_argument("--reference", help="reference translations, line-aligned")
    p.add_argument("--split", choices=["valid", "test"],
                   help="instead of files: that split of the corpus in the model's config")
    p.add_argument("--metrics", default="bleu,chrf",
                   help="comma list of bleu, chrf, wer, per, ser, exact_match, ppl")
    p.add_argument("--output", help="also write the hypotheses to this file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_search_args(p)
    p.set_defaults(func=cmd_evaluate)


def _score_parser(sub) -> None:
    """The ``score`` sub-command's arguments."""
    p = sub.add_parser("score", help="log-probabilities of given translations",
                       description="Score each target line given its source line with the model "
                                   "(teacher forced, EOS included): 'logprob<TAB>tokens' per line.")
    p.add_argument("model", help="model folder")
    p.add_argument("--source", required=True, help="source sentences, one a line")
    p.add_argument("--target", required=True, help="target sentences to score, line-aligned")
    p.add_argument("--output", help="output file (default: stdout)")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per line (logprob, tokens, per_token)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="inference precision")
    p.set_defaults(func=cmd_score)


def _serve_parser(sub) -> None:
    """The ``serve`` sub-command's arguments."""
    p = sub.add_parser("serve", help="REST API and web page for one or more models")
    p.add_argument("models", nargs="+", help="model folders")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (0.0.0.0: every interface; mind the limits below)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    add_limit_args(p)
    p.set_defaults(func=cmd_serve)


def _demo_parser(sub) -> None:
    """The ``demo`` sub-command's arguments."""
    p = sub.add_parser("demo", help="the built-in default: train, evaluate and use a g2p model",
                       description="Train the grapheme-to-phoneme recipe on the CMU dictionary with a "
                                   "small model (a few minutes on 2 CPU cores), report WER/PER on the "
                                   "test split, print sample transductions and an attention heatmap.")
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="a much shorter run, for smoke tests")
    p.add_argument("overrides", nargs="*", help="dotted overrides of the demo recipe")
    p.set_defaults(func=cmd_demo)


def _plot_parser(sub) -> None:
    """The ``plot`` sub-command's arguments."""
    p = sub.add_parser("plot", help="draw the training curves of a run to PNG")
    p.add_argument("run", help="run folder")
    p.set_defaults(func=cmd_plot)


def _average_parser(sub) -> None:
    """The ``average`` sub-command's arguments."""
    p = sub.add_parser("average", help="average the weights of several checkpoints")
    p.add_argument("checkpoints", nargs="+",
                   help="model folders with the same architecture, or one run with --last N")
    p.add_argument("--last", type=_positive_int, metavar="N",
                   help="average the newest N step checkpoints of the run (needs train.keep_last >= N)")
    p.add_argument("--out", required=True, help="output model folder")
    p.set_defaults(func=cmd_average)


def _ensemble_parser(sub) -> None:
    """The ``ensemble`` sub-command's arguments."""
    p = sub.add_parser("ensemble", help="join several models into one that averages their predictions",
                       description="Write an ensemble folder: copies of the models' folders and ensemble.json. "
                                   "translate, evaluate, score, serve and transduce.load take it as a model "
                                   "folder; each step decodes with the mean of the models' next-token "
                                   "probabilities. The models must share vocabularies and tokenizers "
                                   "(e.g. runs of recipes on the same data). With --rescore, beam search "
                                   "keeps the whole beam and re-ranks it by its score plus "
                                   "rescore_weight (a decoding option: translate/evaluate "
                                   "--rescore-weight, default 1) times the rescorers' log-probability of each "
                                   "hypothesis (e.g. a model trained with tokenizer.reverse_target=true, "
                                   "which reads the output right to left); one RUN will then do.")
    p.add_argument("models", nargs="+", metavar="RUN", help="two or more model folders (one with --rescore)")
    p.add_argument("--rescore", nargs="+", metavar="RUN", default=[],
                   help="model folders that re-rank the beam (any vocabulary: they score the text)")
    p.add_argument("--out", required=True, help="the ensemble folder to write")
    p.set_defaults(func=cmd_ensemble)


def build_parser() -> argparse.ArgumentParser:
    """The ``transduce`` parser: one sub-command per verb, each with ``--threads``."""
    parser = _Parser(
        prog="transduce", formatter_class=_Help,
        description="Recurrent encoder-decoder models: train, translate, evaluate, serve.",
    )
    parser.add_argument("--version", action="version", version=f"transduce {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_SubParser)

    _prepare_parser(sub)
    _train_parser(sub)
    _translate_parser(sub)
    _evaluate_parser(sub)
    _score_parser(sub)
    _serve_parser(sub)
    _demo_parser(sub)
    _plot_parser(sub)
    _average_parser(sub)
    _ensemble_parser(sub)
    for p in sub.choices.values():
        p.add_argument("--threads", type=_positive_int, metavar="N",
                       help="torch CPU threads (default: $TRANSDUCE_THREADS, else one per core)")
    return parser


def set_threads(requested: int | None) -> None:
    """torch intra-op threads from --threads, else $TRANSDUCE_THREADS, else torch's default."""
    env = os.environ.get("TRANSDUCE_THREADS")
    if requested is None and env:
        try:
            requested = _positive_int(env)
        except argparse.ArgumentTypeError as exc:
            raise UserError(f"TRANSDUCE_THREADS {exc}") from None
    if requested is not None:
        torch.set_num_threads(requested)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings (cut inputs, extra TSV columns, ...) as one plain line on stderr."""
    return f"transduce: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides may come after options (`train toy --out r train.lr=1e-3`).
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        set_threads(args.threads)
        return args.func(args)
    except UserError as exc:
        print(f"transduce: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"transduce: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("transduce: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
