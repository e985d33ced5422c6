"""Typed, strict configuration.

A config is a tree of dataclasses loaded from YAML. Unknown keys, wrong types
and invalid choices are errors that name the dotted key (``train.lr``).
Dotted overrides from the command line (``train.lr=3e-4``) are parsed as YAML
scalars and checked the same way.

Every number has a declared range (``field(metadata=between(...))``), checked
when a section is built, so a bad value stops the program before any work
starts. ``DecodeOptions`` (the ``search`` section) is frozen: the CLI, the
Python API, the server and validation all start from a model's
``config.search`` and change it with ``dataclasses.replace``, which runs the
same checks again.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import ConfigError

RECIPES = Path(__file__).resolve().parent / "recipes"
"""The built-in recipes (``transduce train g2p`` reads ``recipes/g2p.yaml``)."""

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "auto")
"""Every precision name; training takes all but int8 (see device.py)."""

MAX_BEAM = 256
MAX_OUTPUT_LEN = 4096


def between(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
            hi_open: bool = False) -> dict:
    """Field metadata declaring the allowed range of a number (None = unbounded)."""
    return {"range": (lo, hi, lo_open, hi_open)}


def ranged(default: Any, lo: float | None = None, hi: float | None = None, *,
           lo_open: bool = False, hi_open: bool = False) -> Any:
    """A dataclass field with a default and a declared range."""
    return field(default=default, metadata=between(lo, hi, lo_open=lo_open, hi_open=hi_open))


def _range_problem(value: Any, spec: tuple) -> str | None:
    """Why ``value`` is outside ``spec`` (from :func:`between`), or None when it is inside."""
    lo, hi, lo_open, hi_open = spec
    if value is None or isinstance(value, bool):
        return None
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, float) and v != v:
            return "must be a number, not nan"
        if lo is not None and (v <= lo if lo_open else v < lo):
            break
        if hi is not None and (v >= hi if hi_open else v > hi):
            break
    else:
        return None
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    if hi is None:
        return f"must be {'>' if lo_open else '>='} {lo:g}"
    if lo is None:
        return f"must be {'<' if hi_open else '<='} {hi:g}"
    return f"must be in {left}{lo:g}, {hi:g}{right}"


TokenizerKind = Literal["char", "whitespace", "bpe", "unigram"]


@dataclass
class DataConfig:
    """Where the parallel data comes from and how it is filtered."""

    corpus: str | None = "cmudict"
    """A built-in corpus (cmudict, numbers-<lang>, copy, reverse, sort,
    multi30k) or None to read the files below."""
    train: list[str] | None = None
    """One TSV file, or two line-aligned files [source, target] (.gz ok)."""
    valid: list[str] | None = None
    test: list[str] | None = None
    path: str | None = None
    """Local folder for multi30k (train.de.gz ...); None = download cache."""
    src_lang: str = "de"
    """multi30k source language (de, en, fr)."""
    tgt_lang: str = "en"
    max_len: int = ranged(100, 1)
    """Pairs whose source or target exceeds this many tokens are dropped (train)."""
    max_train: int | None = ranged(None, 1)
    """Use at most this many training pairs (None = all)."""
    toy_size: int = ranged(5000, 1)
    """Number of training pairs generated for toy and numbers corpora."""
    toy_vocab: int = ranged(10, 1)
    """Number of distinct symbols in toy tasks."""
    toy_len: list[int] = field(default_factory=lambda: [3, 10], metadata=between(1))
    """[min, max] length of toy sequences."""
    seed: int = ranged(1234, 0)


@dataclass
class TokenizerConfig:
    """How text becomes tokens, for each side."""

    src: TokenizerKind = "char"
    tgt: TokenizerKind = "whitespace"
    joint: bool = False
    """Train one sentencepiece model and one vocabulary for both sides (src == tgt)."""
    vocab_size: int = ranged(8000, 8)
    """sentencepiece vocabulary size (bpe, unigram)."""
    character_coverage: float = ranged(1.0, 0.0, 1.0, lo_open=True)
    lowercase: bool = False
    min_freq: int = ranged(1, 1)
    """Tokens seen fewer times become <unk> (char, whitespace)."""
    max_vocab: int | None = ranged(None, 1)
    reverse_target: bool = False
    """Target tokens in reverse order: the model writes its output right to left
    (translations still come out in reading order). Such a model rescores a
    left-to-right model's beam (``transduce ensemble RUN --rescore THIS``)."""


@dataclass
class ModelConfig:
    """The encoder-decoder network."""

    family: Literal["sutskever", "cho", "bahdanau", "luong"] = "luong"
    cell: Literal["lstm", "gru", "rnn"] = "lstm"
    emb_dim: int = ranged(256, 1)
    hidden: int = ranged(512, 1)
    """Decoder hidden size; also the encoder's unless enc_hidden is set."""
    enc_hidden: int | None = ranged(None, 1)
    """Encoder hidden size per direction x directions (None = hidden)."""
    enc_layers: int = ranged(2, 1)
    dec_layers: int = ranged(2, 1)
    bidirectional: bool = True
    dropout: float = ranged(0.2, 0.0, 1.0, hi_open=True)
    emb_dropout: float = ranged(0.1, 0.0, 1.0, hi_open=True)
    attention: Literal["additive", "dot", "scaled_dot", "general", "concat"] = "general"
    """Score for luong (bahdanau is always additive)."""
    input_feeding: bool = True
    """luong only: feed the previous attentional state to the RNN input."""
    bridge: Literal["last", "mean", "linear", "zero"] = "linear"
    tie_embeddings: bool = False
    """Share target embedding and output projection weights."""
    share_embeddings: bool = False
    """Share source and target embeddings (needs a joint vocabulary)."""
    init: Literal["uniform", "xavier"] = "uniform"
    init_range: float = ranged(0.1, 0.0, 10.0, lo_open=True)


@dataclass
class TrainConfig:
    """Optimisation, teacher forcing, validation and checkpoints."""

    batch_tokens: int = ranged(2000, 1)
    """Target tokens per batch (token-based, length-bucketed batches)."""
    batch_sentences: int | None = ranged(None, 1)
    """If set, batches of this many sentences instead of batch_tokens."""
    max_steps: int = ranged(10000, 1)
    max_epochs: int | None = ranged(None, 1)
    max_minutes: float | None = ranged(None, 0.0, lo_open=True)
    """Also stop after this many minutes of training (validations included, resumed
    sessions added up); linear/cosine decay then follows the larger of the step and
    the time fraction, so a budgeted run depends on the machine's speed."""
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = ranged(1e-3, 0.0, 100.0, lo_open=True)
    weight_decay: float = ranged(0.0, 0.0)
    momentum: float = ranged(0.0, 0.0, 1.0, hi_open=True)
    clip_norm: float | None = ranged(5.0, 0.0, lo_open=True)
    """Clip gradients to this global norm (None = no clipping)."""
    accum_steps: int = ranged(1, 1)
    lr_schedule: Literal["constant", "plateau", "inverse_sqrt", "step", "linear", "cosine"] = "constant"
    """linear / cosine: decay from lr after warm-up down to min_lr at max_steps."""
    warmup_steps: int = ranged(0, 0)
    lr_step_size: int = ranged(1000, 1)
    """step: multiply lr by lr_gamma every lr_step_size steps."""
    lr_gamma: float = ranged(0.5, 0.0, 1.0, lo_open=True)
    plateau_factor: float = ranged(0.5, 0.0, 1.0, lo_open=True, hi_open=True)
    plateau_patience: int = ranged(2, 0)
    min_lr: float = ranged(1e-6, 0.0)
    label_smoothing: float = ranged(0.0, 0.0, 1.0, hi_open=True)
    teacher_forcing: float = ranged(1.0, 0.0, 1.0)
    """Probability that the next decoder input is the gold token (constant schedule)."""
    tf_schedule: Literal["constant", "linear", "exponential", "inverse_sigmoid"] = "constant"
    tf_floor: float = ranged(0.0, 0.0, 1.0)
    """linear: lowest ratio."""
    tf_steps: int = ranged(10000, 1)
    """linear: steps to go from 1 down to tf_floor."""
    tf_k: float = ranged(0.9999, 0.0, lo_open=True)
    """exponential: ratio k^i (0 < k < 1); inverse_sigmoid: k / (k + exp(i / k)) (k >= 1)."""
    tf_warmup: int = ranged(0, 0)
    """Steps of pure teacher forcing before the schedule starts."""
    tf_two_pass: bool = False
    """Scheduled sampling by two fused passes instead of the step loop."""
    sample_temperature: float = ranged(0.0, 0.0)
    """0 = feed argmax predictions; > 0 = sample them at this temperature."""
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    """Training precision; bf16/fp16 autocast keeps fp32 master weights. auto: bf16
    where the device has native bf16 (GPU, CPU with AMX or AVX512-BF16), else fp32."""
    seed: int = ranged(1234, 0)
    valid_every: int = ranged(500, 1)
    valid_max_sentences: int | None = ranged(1000, 1)
    """Decode at most this many validation sentences for BLEU/WER."""
    valid_beam: int = ranged(1, 1, MAX_BEAM)
    """Validation decoding: 1 = greedy, > 1 = beam search of this width (search section's
    length penalty and limits)."""
    early_stop_metric: Literal["loss", "bleu", "chrf", "wer", "per", "accuracy", "exact_match"] = "loss"
    """accuracy: teacher-forced token accuracy; exact_match: decoded sentences equal to the reference."""
    patience: int | None = ranged(None, 1)
    """Stop after this many validations without improvement (None = never)."""
    max_nonfinite: int = ranged(5, 1, 10000)
    """Stop (exit 1) after this many consecutive updates with a non-finite loss or
    gradient norm; each such update is skipped."""
    keep_best: int = ranged(1, 0)
    keep_last: int = ranged(1, 1)
    log_every: int = ranged(50, 1)
    device: str = "auto"
    """auto (cuda if available, else cpu), cpu, cuda, cuda:1 ..."""
    processes: int = ranged(1, 1, 1024)
    """Data-parallel worker processes to start on this machine (gloo on the CPU, where
    they share the threads; one GPU each on CUDA). Each takes its own batches, so an
    update sees processes x batch_tokens. Ignored under torchrun, which starts them."""
    tensorboard: bool = True
    progress: bool = True
    """A progress bar on a terminal; elsewhere (a log file, nohup) a plain line every
    progress_every seconds."""
    progress_every: float = ranged(30.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class DecodeOptions:
    """How to decode: the ``search`` section of a config, and the one set of
    decoding options that translate, evaluate, serve and validation pass to
    search.py. Frozen: change it with ``dataclasses.replace`` (which checks
    again); a bad value raises ConfigError naming the option.

    Output length limit per sentence: ``max_len`` if set, else
    ``floor(max_len_a * source_length + max_len_b)``.
    """

    method: Literal["beam", "greedy", "sample"] = "beam"
    """beam search, greedy (argmax) or ancestral sampling."""
    beam: int = ranged(5, 1, MAX_BEAM)
    nbest: int = ranged(1, 1, MAX_BEAM)
    """Hypotheses returned per input (<= beam; 1 for greedy and sampling)."""
    max_len_a: float = ranged(1.5, 0.0, 100.0)
    max_len_b: int = ranged(10, 0, MAX_OUTPUT_LEN)
    max_len: int | None = ranged(None, 1, MAX_OUTPUT_LEN)
    """An absolute output length limit for every input (None = max_len_a/b)."""
    min_len: int = ranged(0, 0, MAX_OUTPUT_LEN)
    """EOS is forbidden before this many output tokens."""
    length_penalty: Literal["none", "average", "gnmt"] = "gnmt"
    """Beam ranking: raw log-prob, log-prob / length, or GNMT's ((5 + len) / 6) ** alpha."""
    alpha: float = ranged(0.6, 0.0, 10.0)
    coverage: float = ranged(0.0, 0.0, 10.0)
    """GNMT coverage penalty weight (beta); 0 = off."""
    exact_stop: bool = False
    """Beam search: keep a sentence running while any live hypothesis could still
    outscore its finished ones at some length up to the limit (exact, but with a
    length penalty many more steps); default: stop once none does at its current
    length, as OpenNMT-py and Hugging Face do."""
    rescore_weight: float = ranged(1.0, 0.0, 100.0)
    """Beam search with a model folder that has rescorers (``transduce ensemble RUN
    --rescore OTHER``): each of the beam's hypotheses gets its score plus this weight
    times the rescorers' mean log-probability of it (length-normalised like the score),
    and the best of that sum wins; 0 = the beam's own ranking."""
    temperature: float = ranged(1.0, 0.0, 100.0)
    """Sampling temperature (0 = argmax)."""
    top_k: int = ranged(0, 0)
    """Sampling: keep the k most likely tokens (0 = all)."""
    top_p: float = ranged(1.0, 0.0, 1.0, lo_open=True)
    """Sampling: keep the smallest set of tokens whose probability reaches p."""
    seed: int | None = ranged(None, 0)
    """Sampling seed (None = a fresh random seed)."""
    replace_unk: bool = False
    """Replace each <unk> output by the source token it attends to most."""
    return_attention: bool = False
    """Return the attention matrix of the best hypothesis."""
    batch_size: int = ranged(64, 1, 4096)
    """Sentences decoded together."""

    def __post_init__(self) -> None:
        try:
            check_fields(self)
            if self.nbest > (self.beam if self.method == "beam" else 1):
                raise _mismatch("nbest", f"must be at most beam ({self.beam}) for beam search and 1 "
                                         f"for greedy and sampling, got {self.nbest}")
        except ConfigError as exc:
            raise ConfigError(f"decoding option '{exc.key}': {exc.problem}", exc.key, exc.problem) from None


@dataclass
class Config:
    """A whole recipe."""

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: DecodeOptions = field(default_factory=DecodeOptions)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")


def recipe_path(name_or_path: str) -> Path:
    """A config path, or the name of a built-in recipe (``g2p``, ``toy``, ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    builtin = RECIPES / f"{name_or_path}.yaml"
    if builtin.is_file() and path.suffix == "":
        return builtin
    known = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
    raise ConfigError(f"config file not found: {name_or_path} (built-in recipes: {known})")


# --- strict conversion -------------------------------------------------------

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _mismatch(key: str, problem: str) -> ConfigError:
    return ConfigError(f"config key '{key}': {problem}", key=key, problem=problem)


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it (ints widen to float)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise _mismatch(key, f"{value!r} is not one of {_type_name(tp)}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
        raise _mismatch(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [value]  # a single path is a list of one
        if not isinstance(value, (list, tuple)):
            raise _mismatch(key, f"expected {_type_name(tp)}, got {value!r}")
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a programming error in this module
        raise TypeError(f"unsupported config type {tp!r} for {key}")
    raise _mismatch(key, f"expected {_type_name(tp)}, got {value!r}")


def check_fields(obj: Any) -> None:
    """Check every field of dataclass ``obj`` against its type and declared range
    (ints widen to float in place); ConfigError with ``key`` = the field name."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = _convert(getattr(obj, f.name), hints[f.name], f.name)
        object.__setattr__(obj, f.name, value)  # also for frozen dataclasses
        spec = f.metadata.get("range")
        problem = _range_problem(value, spec) if spec else None
        if problem:
            raise _mismatch(f.name, f"{problem}, got {value!r}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and values
    of the wrong type or outside their declared range."""
    where = f"section '{prefix}'" if prefix else "the config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown config key '{dotted}' (known in {where}: {known})")
        kwargs[key] = _convert(value, hints[key], dotted)
    try:
        obj = cls(**kwargs)
        if cls is not Config:
            check_fields(obj)
    except ConfigError as exc:
        if exc.key is None or not prefix or exc.key.startswith(f"{prefix}."):
            raise
        raise _mismatch(f"{prefix}.{exc.key}", exc.problem) from None
    return obj


_TF_K = {"exponential": (0.0, 1.0, True, True), "inverse_sigmoid": (1.0, None, False, False)}


def _validate(cfg: Config) -> None:
    """Cross-field checks that single ranges cannot express."""
    m, t, tok = cfg.model, cfg.train, cfg.tokenizer
    checks = [
        (not m.share_embeddings or tok.joint, "model.share_embeddings", "needs tokenizer.joint: true"),
        (not tok.joint or tok.src == tok.tgt, "tokenizer.joint",
         f"needs tokenizer.src == tokenizer.tgt (got {tok.src!r} and {tok.tgt!r})"),
        (not m.bidirectional or (m.enc_hidden or m.hidden) % 2 == 0,
         "model.enc_hidden" if m.enc_hidden else "model.hidden", "must be even for a bidirectional encoder"),
        (len(cfg.data.toy_len) == 2 and cfg.data.toy_len[0] <= cfg.data.toy_len[1], "data.toy_len",
         f"must be [min, max] with 1 <= min <= max (got {cfg.data.toy_len})"),
        (t.min_lr <= t.lr, "train.min_lr", f"must not exceed train.lr ({t.lr:g})"),
    ]
    if t.tf_schedule in _TF_K:
        problem = _range_problem(t.tf_k, _TF_K[t.tf_schedule])
        checks.append((problem is None, "train.tf_k", f"{problem} for tf_schedule: {t.tf_schedule}"))
    for ok, key, problem in checks:
        if not ok:
            raise _mismatch(key, problem)


def from_dict(data: dict[str, Any] | None) -> Config:
    """Build and validate a Config from a plain mapping."""
    cfg = _build(Config, data or {}, "")
    _validate(cfg)
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train.lr=3e-4'`` -> (['train', 'lr'], 0.0003)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, _, raw = text.partition("=")
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override '{text}': key must be section.key, e.g. train.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_like_float(raw):
        value = float(raw)  # YAML 1.1 reads 3e-4 as a string
    return parts, value


def _looks_like_float(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return any(ch in raw.lower() for ch in ".e") and raw.strip().lower() not in ("inf", "nan")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted overrides applied (not yet validated)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in (data or {}).items()}
    for text in overrides:
        (section, key), value = parse_override(text)
        if section not in {f.name for f in dataclasses.fields(Config)}:
            raise ConfigError(f"override '{text}': unknown config section '{section}'")
        out.setdefault(section, {})
        if not isinstance(out[section], dict):
            raise ConfigError(f"config section '{section}' must be a mapping")
        out[section][key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 ({exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping of sections")
    return data


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML recipe (or the defaults when ``path`` is None) plus overrides."""
    data = read_yaml(path) if path is not None else {}
    merged = apply_overrides(data, overrides or [])  # its errors name the override
    try:
        return from_dict(merged)
    except ConfigError as exc:
        if not overrides:
            raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None
        try:  # name the culprit: the file itself, or the command-line overrides
            from_dict(data)
        except ConfigError as file_exc:
            raise ConfigError(f"{path}: {file_exc}" if path is not None else str(file_exc)) from None
        raise ConfigError(f"command-line override: {exc}") from None
