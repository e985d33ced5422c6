"""Typed, strict configuration.

A config is a tree of dataclasses loaded from YAML. Unknown keys, wrong types
and invalid choices are errors that name the dotted key (``train.lr``).
Dotted overrides from the command line (``train.lr=3e-4``) are parsed as YAML
scalars and checked the same way.
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
    max_len: int = 100
    """Pairs whose source or target exceeds this many tokens are dropped (train)."""
    max_train: int | None = None
    """Use at most this many training pairs (None = all)."""
    toy_size: int = 5000
    """Number of training pairs generated for toy and numbers corpora."""
    toy_vocab: int = 10
    """Number of distinct symbols in toy tasks."""
    toy_len: list[int] = field(default_factory=lambda: [3, 10])
    """[min, max] length of toy sequences."""
    seed: int = 1234


@dataclass
class TokenizerConfig:
    """How text becomes tokens, for each side."""

    src: TokenizerKind = "char"
    tgt: TokenizerKind = "whitespace"
    joint: bool = False
    """Train one sentencepiece model and one vocabulary for both sides."""
    vocab_size: int = 8000
    """sentencepiece vocabulary size (bpe, unigram)."""
    character_coverage: float = 1.0
    lowercase: bool = False
    min_freq: int = 1
    """Tokens seen fewer times become <unk> (char, whitespace)."""
    max_vocab: int | None = None


@dataclass
class ModelConfig:
    """The encoder-decoder network."""

    family: Literal["sutskever", "cho", "bahdanau", "luong"] = "luong"
    cell: Literal["lstm", "gru", "rnn"] = "lstm"
    emb_dim: int = 256
    hidden: int = 512
    """Decoder hidden size; also the encoder's unless enc_hidden is set."""
    enc_hidden: int | None = None
    """Encoder hidden size per direction x directions (None = hidden)."""
    enc_layers: int = 2
    dec_layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.2
    emb_dropout: float = 0.1
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
    init_range: float = 0.1


@dataclass
class TrainConfig:
    """Optimisation, teacher forcing, validation and checkpoints."""

    batch_tokens: int = 2000
    """Target tokens per batch (token-based, length-bucketed batches)."""
    batch_sentences: int | None = None
    """If set, batches of this many sentences instead of batch_tokens."""
    max_steps: int = 10000
    max_epochs: int | None = None
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    clip_norm: float | None = 5.0
    accum_steps: int = 1
    lr_schedule: Literal["constant", "plateau", "inverse_sqrt", "step", "linear", "cosine"] = "constant"
    """linear / cosine: decay from lr after warm-up down to min_lr at max_steps."""
    warmup_steps: int = 0
    lr_step_size: int = 1000
    """step: multiply lr by lr_gamma every lr_step_size steps."""
    lr_gamma: float = 0.5
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    min_lr: float = 1e-6
    label_smoothing: float = 0.0
    teacher_forcing: float = 1.0
    """Probability that the next decoder input is the gold token (constant schedule)."""
    tf_schedule: Literal["constant", "linear", "exponential", "inverse_sigmoid"] = "constant"
    tf_floor: float = 0.0
    """linear: lowest ratio."""
    tf_steps: int = 10000
    """linear: steps to go from 1 down to tf_floor."""
    tf_k: float = 0.9999
    """exponential: ratio k^i (k < 1); inverse_sigmoid: k / (k + exp(i / k)) (k >= 1)."""
    tf_warmup: int = 0
    """Steps of pure teacher forcing before the schedule starts."""
    tf_two_pass: bool = False
    """Scheduled sampling by two fused passes instead of the step loop."""
    sample_temperature: float = 0.0
    """0 = feed argmax predictions; > 0 = sample them at this temperature."""
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    """Training precision; bf16/fp16 autocast keeps fp32 master weights. auto: bf16
    where the device has native bf16 (GPU, CPU with AMX or AVX512-BF16), else fp32."""
    seed: int = 1234
    valid_every: int = 500
    valid_max_sentences: int | None = 1000
    """Decode at most this many validation sentences for BLEU/WER."""
    early_stop_metric: Literal["loss", "bleu", "chrf", "wer", "per", "accuracy", "exact_match"] = "loss"
    """accuracy: teacher-forced token accuracy; exact_match: greedy-decoded sentences equal to the reference."""
    patience: int | None = None
    """Stop after this many validations without improvement (None = never)."""
    keep_best: int = 1
    keep_last: int = 1
    log_every: int = 50
    device: str = "auto"
    """auto (cuda if available, else cpu), cpu, cuda, cuda:1 ..."""
    tensorboard: bool = True
    progress: bool = True


@dataclass
class SearchConfig:
    """Decoding defaults used by validation, translate and evaluate."""

    beam: int = 5
    max_len_a: float = 1.5
    """max output length = max_len_a * source_len + max_len_b."""
    max_len_b: int = 10
    min_len: int = 0
    length_penalty: Literal["none", "average", "gnmt"] = "gnmt"
    alpha: float = 0.6
    coverage: float = 0.0
    """GNMT coverage penalty weight (beta)."""
    nbest: int = 1
    replace_unk: bool = False
    batch_size: int = 64


@dataclass
class Config:
    """A whole recipe."""

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")


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


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it (ints widen to float)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"config key '{key}': {value!r} is not one of {_type_name(tp)}")
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
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [value]  # a single path is a list of one
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
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
    raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys."""
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
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    """Cross-field checks that types alone cannot express."""
    checks = [
        (cfg.model.hidden > 0, "model.hidden", "must be positive"),
        (cfg.model.emb_dim > 0, "model.emb_dim", "must be positive"),
        (cfg.model.enc_layers >= 1, "model.enc_layers", "must be at least 1"),
        (cfg.model.dec_layers >= 1, "model.dec_layers", "must be at least 1"),
        (0.0 <= cfg.model.dropout < 1.0, "model.dropout", "must be in [0, 1)"),
        (0.0 <= cfg.model.emb_dropout < 1.0, "model.emb_dropout", "must be in [0, 1)"),
        (0.0 <= cfg.train.teacher_forcing <= 1.0, "train.teacher_forcing", "must be in [0, 1]"),
        (0.0 <= cfg.train.tf_floor <= 1.0, "train.tf_floor", "must be in [0, 1]"),
        (0.0 <= cfg.train.label_smoothing < 1.0, "train.label_smoothing", "must be in [0, 1)"),
        (cfg.train.lr > 0, "train.lr", "must be positive"),
        (cfg.train.accum_steps >= 1, "train.accum_steps", "must be at least 1"),
        (cfg.train.batch_tokens > 0, "train.batch_tokens", "must be positive"),
        (cfg.search.beam >= 1, "search.beam", "must be at least 1"),
        (cfg.data.max_len >= 1, "data.max_len", "must be at least 1"),
        (not cfg.model.share_embeddings or cfg.tokenizer.joint,
         "model.share_embeddings", "needs tokenizer.joint: true"),
    ]
    for ok, key, msg in checks:
        if not ok:
            raise ConfigError(f"config key '{key}' {msg}")
    if cfg.model.enc_hidden is not None and cfg.model.bidirectional and cfg.model.enc_hidden % 2:
        raise ConfigError("config key 'model.enc_hidden' must be even for a bidirectional encoder")
    if cfg.model.bidirectional and (cfg.model.enc_hidden or cfg.model.hidden) % 2:
        raise ConfigError("config key 'model.hidden' must be even for a bidirectional encoder")


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
