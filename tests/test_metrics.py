"""Metrics on hand-computed examples."""
from __future__ import annotations

import math

import pytest
import sacrebleu

from transduce import metrics
from transduce.errors import DataError, UserError


def test_edit_distance():
    assert metrics.edit_distance("kitten".split(), "kitten".split()) == 0
    assert metrics.edit_distance(list("kitten"), list("sitting")) == 3
    assert metrics.edit_distance([], ["a", "b"]) == 2
    assert metrics.edit_distance(["a", "b"], []) == 2


def test_wer_exact_fraction():
    hyps = ["K AE T", "D AO G Z", ""]
    refs = ["K AE T S", "D AA G", "B"]
    # errors: 1 deletion; 1 substitution + 1 insertion; 1 deletion -> 4 / 8 ref tokens
    assert metrics.wer(hyps, refs) == pytest.approx(100 * 4 / 8)


def test_per_exact_fraction():
    hyps = ["T AE K", "D AO G Z"]
    refs = ["K AE T S", "D AA G"]
    # sentence 1: max(3, 4) - 3 matches = 1 (order ignored); sentence 2: max(4, 3) - 2 = 2
    assert metrics.per(hyps, refs) == pytest.approx(100 * 3 / 7)
    assert metrics.wer(hyps, refs) == pytest.approx(100 * (3 + 2) / 7)  # T/K swapped: 2 subs + 1 del


def test_per_counts_repeated_tokens_as_a_bag():
    assert metrics.per(["A A A"], ["A B"]) == pytest.approx(100 * (3 - 1) / 2)


def test_ser_and_exact_match():
    hyps, refs = ["a b", "a  c", "d"], ["a b", "a c", "e"]
    assert metrics.ser(hyps, refs) == pytest.approx(100 / 3)
    assert metrics.exact_match(hyps, refs) == pytest.approx(200 / 3)


def test_bleu_equals_sacrebleu():
    hyps = ["the cat sat on the mat", "a dog runs in the park today"]
    refs = ["the cat sat on a mat", "a dog is running in the park"]
    ours = metrics.bleu(hyps, refs)
    theirs = sacrebleu.corpus_bleu(hyps, [refs])
    assert ours.value == pytest.approx(theirs.score)
    assert 0 < ours.value < 100
    assert ours.signature.startswith("nrefs:1|") and "tok:13a" in ours.signature
    assert metrics.bleu(refs, refs).value == pytest.approx(100.0)


def test_bleu_multiple_references():
    hyps = ["the cat sat on the mat"]
    refs = [["a cat sat on a mat", "the cat sat on the mat"]]
    score = metrics.bleu(hyps, refs)
    assert score.value == pytest.approx(100.0)
    assert "nrefs:2" in score.signature


def test_chrf_equals_sacrebleu():
    hyps = ["the cat sat on the mat"]
    refs = ["the cat sat on a mat"]
    ours = metrics.chrf(hyps, refs)
    assert ours.value == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert ours.signature.startswith("nrefs:1|")


def test_perplexity():
    assert metrics.perplexity(10.0, 5) == pytest.approx(math.exp(2.0))
    assert metrics.perplexity(0.0, 3) == 1.0
    assert metrics.perplexity(1e6, 1) == math.inf
    assert metrics.perplexity(math.inf, 4) == math.inf
    assert math.isnan(metrics.perplexity(1.0, 0))
    assert math.isnan(metrics.perplexity(math.nan, 3))


def test_mismatched_lengths_and_unknown_metric():
    with pytest.raises(DataError, match="2 hypotheses but 1 references"):
        metrics.wer(["a", "b"], ["a"])
    with pytest.raises(UserError, match="unknown metric"):
        metrics.score_texts(["a"], ["a"], ["bleu", "meteor"])


def test_score_texts():
    out = metrics.score_texts(["a b c"], ["a b d"], ["wer", "per", "chrf"])
    assert out["wer"] == pytest.approx(100 / 3)
    assert out["per"] == pytest.approx(100 / 3)
    assert "chrf_signature" in out and out["chrf"] > 0


def test_format_table():
    text = metrics.format_table({"bleu": 12.345, "bleu_signature": "nrefs:1|x", "sentences": 3,
                                 "hypotheses": ["a"]})
    assert text.splitlines() == ["bleu        12.35", "sentences   3", "bleu signature: nrefs:1|x"]


def test_g2p_error_rates_use_the_closest_reference():
    from transduce.metrics import g2p_error_rates

    hyps = ["T AH0 M EY1 T OW2", "K AE1 T", "D AO1 G Z"]
    refs = [["T AH0 M EY1 T OW2", "T AH0 M AA1 T OW2"],   # matches the first of two
            ["K AE1 T"],                                 # exact
            ["D AO1 G"]]                                 # one insertion
    rates = g2p_error_rates(hyps, refs)
    assert rates["word_error_rate"] == pytest.approx(100 / 3)
    assert rates["phoneme_error_rate"] == pytest.approx(100 * 1 / (6 + 3 + 3))
