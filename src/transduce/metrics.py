"""Evaluation metrics: sacreBLEU BLEU and chrF, WER, PER, sentence error rate, perplexity.

All corpus-level. Hypotheses and references are detokenized strings, one
per sentence; WER, PER and SER split them on whitespace into tokens (for
grapheme-to-phoneme, one phoneme per token). Rates are percentages
(0-100, WER and PER can exceed 100), like BLEU and chrF:

* WER = 100 * sum_i edit_distance(hyp_i, ref_i) / sum_i len(ref_i), edit
  distance = Levenshtein over tokens (substitution, insertion, deletion cost 1).
* PER (position-independent error rate) = 100 * sum_i (max(len(hyp_i),
  len(ref_i)) - matches_i) / sum_i len(ref_i), matches_i = size of the
  multiset (bag) intersection of hyp_i and ref_i tokens.
* SER (sentence error rate) = 100 * share of sentences whose token list
  differs from the reference; ``exact_match`` = 100 - SER.
* perplexity = exp(nll_sum / n_tokens).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from sacrebleu.metrics import BLEU, CHRF

from .errors import DataError, UserError


@dataclass(frozen=True)
class Score:
    """A corpus score and the sacreBLEU signature that makes it reproducible."""

    value: float
    signature: str

    def __float__(self) -> float:
        return self.value


def _check(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise DataError(f"{len(hyps)} hypotheses but {len(refs)} references: "
                        "the files must have the same number of lines")


def _ref_streams(refs: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    """One reference per sentence, or several ([n_sents][n_refs]) -> sacreBLEU streams."""
    if refs and not isinstance(refs[0], str):
        return [list(stream) for stream in zip(*refs)]
    return [list(refs)]


def bleu(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]],
         tokenize: str = "13a", lowercase: bool = False) -> Score:
    """Corpus BLEU (0-100) with sacreBLEU; refs: one string per sentence or a list of several."""
    _check(hyps, refs)
    metric = BLEU(tokenize=tokenize, lowercase=lowercase)
    result = metric.corpus_score(list(hyps), _ref_streams(refs))
    return Score(float(result.score), str(metric.get_signature()))


def chrf(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]],
         word_order: int = 0) -> Score:
    """Corpus chrF (0-100; chrF++ with word_order=2) with sacreBLEU."""
    _check(hyps, refs)
    metric = CHRF(word_order=word_order)
    result = metric.corpus_score(list(hyps), _ref_streams(refs))
    return Score(float(result.score), str(metric.get_signature()))


def edit_distance(hyp: Sequence[str], ref: Sequence[str]) -> int:
    """Levenshtein distance between two token lists (unit costs)."""
    prev = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        cur = [i]
        for j, r in enumerate(ref, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r)))
        prev = cur
    return prev[-1]


def position_independent_errors(hyp: Sequence[str], ref: Sequence[str]) -> int:
    """max(len(hyp), len(ref)) - |bag(hyp) & bag(ref)|."""
    matches = sum((Counter(hyp) & Counter(ref)).values())
    return max(len(hyp), len(ref)) - matches


def _rate(hyps: Sequence[str], refs: Sequence[str], errors) -> float:
    _check(hyps, refs)
    n_err = n_ref = 0
    for h, r in zip(hyps, refs):
        ref = r.split()
        n_err += errors(h.split(), ref)
        n_ref += len(ref)
    if n_ref == 0:
        return 0.0 if n_err == 0 else math.inf
    return 100.0 * n_err / n_ref


def wer(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Word (token) error rate in percent; see the module docstring."""
    return _rate(hyps, refs, edit_distance)


def per(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Position-independent error rate in percent; see the module docstring."""
    return _rate(hyps, refs, position_independent_errors)


def ser(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Sentence error rate in percent: sentences whose tokens differ from the reference."""
    _check(hyps, refs)
    if not refs:
        return 0.0
    wrong = sum(h.split() != r.split() for h, r in zip(hyps, refs))
    return 100.0 * wrong / len(refs)


def exact_match(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Percentage of sentences equal to their reference token for token (100 - SER)."""
    return 100.0 - ser(hyps, refs)


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """exp(nll_sum / n_tokens): inf on overflow (and for an infinite sum), nan
    without tokens or for a nan sum."""
    mean = float(nll_sum) / n_tokens if n_tokens > 0 else math.nan
    if math.isnan(mean):
        return math.nan
    return math.exp(mean) if mean < 709.0 else math.inf


def g2p_error_rates(hyps: Sequence[str], ref_lists: Sequence[Sequence[str]]) -> dict[str, float]:
    """The grapheme-to-phoneme convention, with every pronunciation of a word as a reference.

    ``word_error_rate``: percent of words whose output equals none of their
    references. ``phoneme_error_rate``: phoneme edit distance to the closest
    reference, summed, over the summed lengths of those closest references.
    """
    if len(hyps) != len(ref_lists):
        raise ValueError(f"{len(hyps)} hypotheses but {len(ref_lists)} reference lists")
    wrong = n_err = n_ref = 0
    for hyp, refs in zip(hyps, ref_lists):
        tokens = hyp.split()
        dist, ref = min((edit_distance(tokens, r.split()), r.split()) for r in refs)
        wrong += dist > 0
        n_err += dist
        n_ref += len(ref)
    return {"word_error_rate": 100.0 * wrong / max(1, len(hyps)),
            "phoneme_error_rate": 100.0 * n_err / max(1, n_ref)}


METRICS = {"bleu": bleu, "chrf": chrf, "wer": wer, "per": per, "ser": ser,
           "exact_match": exact_match}
"""Name -> function(hyps, refs); bleu and chrf return a Score, the others a float."""
HIGHER_IS_BETTER = {"bleu": True, "chrf": True, "wer": False, "per": False, "ser": False,
                    "exact_match": True, "ppl": False, "loss": False, "accuracy": True}


def score_texts(hyps: Sequence[str], refs: Sequence[str], names: Sequence[str]) -> dict:
    """Compute the named metrics: {name: value} plus {name}_signature for sacreBLEU ones."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UserError(f"unknown metric(s) {', '.join(unknown)} (known: {', '.join(METRICS)})")
    out: dict = {}
    for name in names:
        result = METRICS[name](hyps, refs)
        if isinstance(result, Score):
            out[name], out[f"{name}_signature"] = result.value, result.signature
        else:
            out[name] = result
    return out


def format_table(result: dict) -> str:
    """Human-readable lines ``name  value`` for the numbers of a result dict
    (from ``translator.evaluate`` or :func:`score_texts`), signatures after them."""
    rows, signatures = [], []
    for key, value in result.items():
        if key.endswith("_signature"):
            signatures.append(f"{key[:-len('_signature')]} signature: {value}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        elif isinstance(value, int):
            rows.append(f"{key:<12}{value}")
        else:
            rows.append(f"{key:<12}{value:.2f}" if key != "nll" else f"{key:<12}{value:.4f}")
    return "\n".join(rows + signatures)
