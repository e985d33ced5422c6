"""Defaults sized for a user's own data: ``transduce train --train data.tsv``.

:func:`profile` reads the training files once (streaming) and counts pairs
and mean lengths; :func:`sized_overrides` turns that into config overrides on
top of a recipe (``small`` or ``base``):

* tokenizers: a side whose texts are mostly single words (mean <= 1.5
  whitespace tokens: words, names) is split into characters; a side of
  several tokens per line is kept in whitespace tokens when its vocabulary is
  small (phonemes, tags: at most 500 distinct tokens); otherwise both sides
  share one BPE model (sentences), of ``clamp(pairs / 4, 1000, 16000)`` pieces
  rounded to 500 (8,000 for Multi30k's 29,000 pairs);
* steps: about ``EPOCHS[recipe]`` passes over the data at the recipe's
  ``batch_tokens`` (at least 500 steps), validation ten times per run;
* early stopping on exact match for word-level tasks, BLEU for sentences.

Every choice is an ordinary ``key=value`` override: the CLI prints them and
the user's own overrides win.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from .corpora import read_files

EPOCHS = {"small": 20, "base": 30}
BATCH_TOKENS = {"small": 2000, "base": 4000}
WORD_LEVEL_TOKENS = 1.5
SMALL_VOCABULARY = 500


@dataclass
class SideProfile:
    """Counts of one side of a corpus."""

    tokens: int = 0
    """Whitespace tokens in all lines."""
    chars: int = 0
    """Characters in all lines."""
    types: set = field(default_factory=set)
    """Distinct whitespace tokens (counting stops growing at SMALL_VOCABULARY + 1)."""

    def add(self, text: str) -> None:
        words = text.split()
        self.tokens += len(words)
        self.chars += len(text)
        if len(self.types) <= SMALL_VOCABULARY:
            self.types.update(words)


@dataclass
class DataProfile:
    """What sizing needs to know about the training pairs."""

    pairs: int = 0
    src: SideProfile = field(default_factory=SideProfile)
    tgt: SideProfile = field(default_factory=SideProfile)

    def mean_tokens(self, side: SideProfile) -> float:
        """Mean whitespace tokens per line of ``side``."""
        return side.tokens / max(1, self.pairs)

    def mean_length(self, side: SideProfile, kind: str) -> float:
        """Mean tokens per line of ``side`` under a tokenizer ``kind`` (BPE: ~1.3 per word)."""
        if kind == "char":
            return side.chars / max(1, self.pairs)
        return self.mean_tokens(side) * (1.3 if kind == "bpe" else 1.0)


def profile(pairs: Iterable[tuple[str, str]]) -> DataProfile:
    """Count the non-empty pairs and their whitespace tokens."""
    out = DataProfile()
    for src, tgt in pairs:
        if src and tgt:
            out.pairs += 1
            out.src.add(src)
            out.tgt.add(tgt)
    return out


def profile_files(paths: list[str]) -> DataProfile:
    """:func:`profile` of one TSV file or two parallel files (DataError if unreadable)."""
    return profile(read_files(paths, extra_columns=[]))


def _side_kind(data: DataProfile, side: SideProfile) -> str:
    """char (single words), whitespace (short lines over a small vocabulary) or bpe."""
    if data.mean_tokens(side) <= WORD_LEVEL_TOKENS:
        return "char"
    return "whitespace" if len(side.types) <= SMALL_VOCABULARY else "bpe"


def _round(value: float, step: int) -> int:
    return int(step * max(1, round(value / step)))


def sized_overrides(data: DataProfile, recipe: str) -> list[str]:
    """Config overrides (``section.key=value``) sized for ``data`` under ``recipe``."""
    src, tgt = _side_kind(data, data.src), _side_kind(data, data.tgt)
    out = []
    if "bpe" in (src, tgt):
        vocab = _round(min(16000, max(1000, data.pairs / 4)), 500)
        out += ["tokenizer.src=bpe", "tokenizer.tgt=bpe", "tokenizer.joint=true",
                f"tokenizer.vocab_size={vocab}"]
    else:
        out += [f"tokenizer.src={src}", f"tokenizer.tgt={tgt}"]
    per_epoch = data.pairs * (data.mean_length(data.tgt, tgt) + 1) / BATCH_TOKENS[recipe]
    steps = _round(max(500, EPOCHS[recipe] * per_epoch), 100)
    word_level = src == "char" and tgt != "bpe"
    out += [f"train.max_steps={steps}", f"train.valid_every={_round(steps / 10, 50)}",
            f"train.warmup_steps={min(500, _round(steps / 20, 50))}",
            f"train.early_stop_metric={'exact_match' if word_level else 'bleu'}"]
    return out


def describe(data: DataProfile, overrides: list[str]) -> str:
    """One line for the user: what was counted and what was chosen."""
    return (f"{data.pairs:,} training pairs, mean {data.mean_tokens(data.src):.1f} / "
            f"{data.mean_tokens(data.tgt):.1f} whitespace tokens (source / target): "
            + " ".join(overrides) + " (override any with key=value)")
