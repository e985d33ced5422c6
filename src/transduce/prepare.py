"""``transduce prepare SOURCE [TARGET]``: check a corpus and describe it.

SOURCE is a TSV file (``source<TAB>target``), or SOURCE and TARGET are two
line-aligned files (``.gz`` ok), or SOURCE is a built-in corpus name
(``cmudict``, ``numbers-es``, ``copy``, ``reverse``, ``sort``; ``multi30k``
reads ``$TRANSDUCE_MULTI30K`` or the download cache), whose training split is
described. The report counts pairs, empty pairs (dropped by training), pairs
over ``max_len`` whitespace tokens (dropped by a whitespace tokenizer) and
over ``max_len`` characters (dropped by a char tokenizer), gives length
min/mean/max per side in characters and whitespace tokens, the number of
distinct whitespace tokens and characters per side, a few sample pairs, and
the first few drops with their line numbers and reasons. Unreadable input
raises DataError (missing file, bad UTF-8, line without a tab, mismatched
line counts, no pairs at all); TSV lines with more than two columns are
counted and named, since their extra columns are ignored.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable

from . import corpora
from .config import DataConfig
from .errors import DataError

N_SAMPLES = 5
N_DROP_EXAMPLES = 5


@dataclass
class SideStats:
    """Lengths and vocabulary of one side."""

    chars_min: int = 0
    chars_max: int = 0
    chars_sum: int = 0
    tokens_min: int = 0
    tokens_max: int = 0
    tokens_sum: int = 0
    token_types: set = field(default_factory=set)
    char_types: set = field(default_factory=set)

    def add(self, text: str, first: bool) -> None:
        n_chars, tokens = len(text), text.split()
        if first:
            self.chars_min = self.chars_max = n_chars
            self.tokens_min = self.tokens_max = len(tokens)
        self.chars_min, self.chars_max = min(self.chars_min, n_chars), max(self.chars_max, n_chars)
        self.tokens_min = min(self.tokens_min, len(tokens))
        self.tokens_max = max(self.tokens_max, len(tokens))
        self.chars_sum += n_chars
        self.tokens_sum += len(tokens)
        self.token_types.update(tokens)
        self.char_types.update(text)


@dataclass
class Report:
    """What ``prepare`` found; ``format_report`` renders it."""

    source: str
    target: str | None
    max_len: int
    lines: int = 0
    pairs: int = 0
    """Non-empty pairs (kept by training before length filtering)."""
    empty: int = 0
    too_long_tokens: int = 0
    too_long_chars: int = 0
    src: SideStats = field(default_factory=SideStats)
    tgt: SideStats = field(default_factory=SideStats)
    samples: list = field(default_factory=list)
    drops: list = field(default_factory=list)
    """(line, reason) of the first few drops."""
    extra_columns: list = field(default_factory=list)
    """Line numbers of TSV lines with more than two columns (the rest is ignored)."""
    splits: dict | None = None
    """Sizes of train/valid/test for a built-in corpus."""


def _check(report: Report, lineno: int, src: str, tgt: str) -> None:
    """Account for one pair."""
    report.lines += 1
    reason = None
    if not src or not tgt:
        report.empty += 1
        reason = "empty " + ("source" if not src else "target")
    else:
        report.src.add(src, report.pairs == 0)
        report.tgt.add(tgt, report.pairs == 0)
        report.pairs += 1
        if len(report.samples) < N_SAMPLES:
            report.samples.append((src, tgt))
        reason = _length_reason(report, src, tgt)
    if reason and len(report.drops) < N_DROP_EXAMPLES:
        report.drops.append((lineno, reason))


def _length_reason(report: Report, src: str, tgt: str) -> str | None:
    n_tok = max(len(src.split()), len(tgt.split()))
    n_chr = max(len(src), len(tgt))
    reasons = []
    if n_tok > report.max_len:
        report.too_long_tokens += 1
        reasons.append(f"{n_tok} whitespace tokens > {report.max_len}")
    if n_chr > report.max_len:
        report.too_long_chars += 1
        reasons.append(f"{n_chr} characters > {report.max_len}")
    return "too long: " + ", ".join(reasons) if reasons else None


def _builtin_pairs(name: str, report: Report) -> Iterable[tuple[str, str]]:
    cfg = DataConfig(corpus=name, path=os.environ.get("TRANSDUCE_MULTI30K"))
    train, valid, test = corpora.load_raw(cfg)
    report.splits = {"train": len(train), "valid": len(valid), "test": len(test)}
    return train


def prepare(source: str, target: str | None = None, max_len: int = 100) -> Report:
    """Read a corpus (TSV, two files, or a built-in name) and describe it."""
    report = Report(str(source), None if target is None else str(target), max_len)
    if target is None and corpora.builtin_name(str(source)):
        pairs = _builtin_pairs(str(source), report)
    else:
        pairs = corpora.read_files([source] if target is None else [source, target],
                                   report.extra_columns)
    for lineno, (src, tgt) in enumerate(pairs, 1):
        _check(report, lineno, src, tgt)
    if report.pairs == 0:
        what = source if target is None else f"{source} + {target}"
        raise DataError(f"corpus {what} has no pairs ({report.lines} lines, "
                        f"{report.empty} of them empty)")
    return report


def _side_lines(name: str, s: SideStats, n: int) -> list[str]:
    return [
        f"  {name}: chars min/mean/max {s.chars_min}/{s.chars_sum / n:.1f}/{s.chars_max}, "
        f"tokens min/mean/max {s.tokens_min}/{s.tokens_sum / n:.1f}/{s.tokens_max}, "
        f"{len(s.token_types)} distinct tokens, {len(s.char_types)} distinct chars",
    ]


def format_report(report: Report) -> str:
    """Human-readable text of a Report."""
    what = report.source if report.target is None else f"{report.source} + {report.target}"
    lines = [f"corpus: {what}"]
    if report.splits:
        lines.append("built-in splits: " + ", ".join(f"{k} {v}" for k, v in report.splits.items())
                     + " (statistics below: train)")
    n = report.pairs
    lines += [
        f"lines: {report.lines}",
        f"pairs: {n}",
        f"empty pairs (dropped): {report.empty}",
        f"longer than max_len={report.max_len} whitespace tokens (dropped by whitespace "
        f"tokenizers): {report.too_long_tokens}",
        f"longer than max_len={report.max_len} characters (dropped by char tokenizers): "
        f"{report.too_long_chars}",
        "lengths:",
    ]
    lines += _side_lines("source", report.src, n) + _side_lines("target", report.tgt, n)
    lines.append("samples:")
    lines += [f"  {src}\t->\t{tgt}" for src, tgt in report.samples]
    if report.extra_columns:
        first = ", ".join(str(n) for n in report.extra_columns[:N_DROP_EXAMPLES])
        lines.append(f"lines with more than two tab-separated columns (only the first two are "
                     f"read; a tab inside a sentence cuts it): {len(report.extra_columns)}, "
                     f"first: line {first}")
    if report.drops:
        lines.append("first drops:")
        lines += [f"  line {lineno}: {reason}" for lineno, reason in report.drops]
    return "\n".join(lines)
