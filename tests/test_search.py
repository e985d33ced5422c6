"""Search: oracle decoders with hand-set probabilities, and a tiny real model."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pytest
import torch

from transduce import search
from transduce.config import DecodeOptions
from transduce.search import beam_search, greedy, replace_unk, sample
from transduce.vocab import EOS


A, B_ = 4, 5  # the two ordinary tokens of the oracle vocabulary (V = 6)
V = 6


@dataclass
class FakeEnc:
    memory: torch.Tensor    # [B, S, 1]
    pad_mask: torch.Tensor  # [B, S]

    def select(self, idx):
        return FakeEnc(self.memory.index_select(0, idx), self.pad_mask.index_select(0, idx))


@dataclass
class FakeState:
    prefix: torch.Tensor  # [B, t] tokens fed so far after BOS
    first: bool = True    # the next input is BOS

    def select(self, idx):
        return FakeState(self.prefix.index_select(0, idx), self.first)


@dataclass
class FakeOut:
    logits: torch.Tensor
    state: FakeState
    attention: torch.Tensor | None


class Oracle:
    """A decoder whose next-token distribution depends only on the prefix.

    ``table`` maps a prefix tuple to {token: probability}; unlisted prefixes
    give EOS with probability 1. ``per_source`` optionally picks a table by the
    first source token. Attention at step t is one-hot on source position
    min(t, len - 1).
    """

    def __init__(self, table, per_source=None, attention=True):
        self.table, self.per_source, self.attention = table, per_source or {}, attention
        self.calls = []  # batch size of each step call

    def encode(self, src, src_lengths):
        return FakeEnc(src[:, :, None].float(), src == 0)

    def init_state(self, enc):
        return FakeState(torch.zeros(enc.memory.size(0), 0, dtype=torch.long))

    def step(self, tokens, state, enc):
        self.calls.append(tokens.size(0))
        group = tokens.size(0) // enc.memory.size(0)  # decoder rows per source row (beam)
        prefix = state.prefix if state.first else torch.cat([state.prefix, tokens[:, None]], 1)
        probs = torch.zeros(tokens.size(0), V)
        for i, row in enumerate(prefix.tolist()):
            table = self.per_source.get(int(enc.memory[i // group, 0, 0]), self.table)
            for tok, p in table.get(tuple(row), {EOS: 1.0}).items():
                probs[i, tok] = p
        lengths = (~enc.pad_mask).sum(1).repeat_interleave(group)
        t = prefix.size(1)
        attn = None
        if self.attention:
            attn = torch.nn.functional.one_hot((lengths - 1).clamp(max=t), enc.pad_mask.size(1)).float()
        return FakeOut(probs.log(), FakeState(prefix, False), attn)


TABLE = {
    (): {A: 0.6, B_: 0.4},
    (A,): {EOS: 0.5, A: 0.3, B_: 0.2},
    (B_,): {EOS: 0.9, A: 0.05, B_: 0.05},
}
SRC = torch.tensor([[7, 7, 7]])
LEN = torch.tensor([3])


def toks_scores(hyps):
    return [(h.tokens, round(h.score, 6)) for h in hyps]


def lg(p):
    return round(math.log(p), 6)


def test_oracle_nbest_no_penalty():
    out = beam_search(Oracle(TABLE), SRC, LEN, DecodeOptions(beam=2, nbest=2, length_penalty="none", max_len=10))
    assert toks_scores(out[0]) == [([B_], lg(0.36)), ([A], lg(0.3))]
    assert out[0][0].logprob == pytest.approx(math.log(0.36))


def test_oracle_average_penalty_longer_wins():
    out = beam_search(Oracle(TABLE), SRC, LEN, DecodeOptions(beam=2, nbest=2, length_penalty="average", max_len=10))
    assert toks_scores(out[0]) == [([B_], round(math.log(0.36) / 2, 6)),
                                   ([A, A], round(math.log(0.18) / 3, 6))]
    assert out[0][1].logprob == pytest.approx(math.log(0.18))


def test_oracle_gnmt_penalty():
    table = {(): {EOS: 0.55, A: 0.45}, (A,): {A: 0.99, EOS: 0.01}, (A, A): {EOS: 1.0}}
    lp = lambda n, alpha: ((5 + n) / 6) ** alpha
    out = beam_search(Oracle(table), SRC, LEN, DecodeOptions(beam=2, nbest=2, length_penalty="gnmt", alpha=2.0, max_len=10))
    assert toks_scores(out[0]) == [([A, A], round(math.log(0.45 * 0.99) / lp(3, 2.0), 6)),
                                   ([], round(math.log(0.55) / lp(1, 2.0), 6))]
    # without a length penalty the early, top-ranked empty output wins
    out = beam_search(Oracle(table), SRC, LEN, DecodeOptions(beam=2, nbest=1, length_penalty="none", max_len=10))
    assert toks_scores(out[0]) == [([], lg(0.55))]


def test_top_finished_early_but_longer_wins_later():
    # EOS is a top-K candidate at step 0 (finished: []), but the beam goes on
    # with 'a' and finds [a, a] with a higher probability.
    table = {(): {A: 0.6, EOS: 0.4}, (A,): {A: 0.9, EOS: 0.1}, (A, A): {EOS: 1.0}}
    out = beam_search(Oracle(table), SRC, LEN, DecodeOptions(beam=2, nbest=2, length_penalty="none", max_len=10))
    assert toks_scores(out[0]) == [([A, A], lg(0.54)), ([], lg(0.4))]


def test_exact_stop_waits_for_a_longer_winner():
    # [] finishes first (average score log 0.7); the live [a] looks worse at its
    # current length (log 0.3 / 2) but every later token has probability 1, so
    # [a a a a a] ends at log 0.3 / 6, the better score.
    table = {(): {EOS: 0.7, A: 0.3}, **{(A,) * n: {A: 1.0} for n in range(1, 5)}}
    opts = DecodeOptions(beam=2, length_penalty="average", max_len=10)
    quick = Oracle(table)
    assert toks_scores(beam_search(quick, SRC, LEN, opts)[0]) == [([], lg(0.7))]
    exact = Oracle(table)
    got = beam_search(exact, SRC, LEN, dataclasses.replace(opts, exact_stop=True))
    assert toks_scores(got[0]) == [([A] * 5, round(math.log(0.3) / 6, 6))]
    assert len(quick.calls) == 1 and len(exact.calls) == 6


def test_greedy_drops_finished_sentences():
    # sentence 0 ends after 2 steps, sentence 1 runs to its limit of 4
    per = {8: {(): {A: 1.0}, **{(A,) * n: {A: 1.0} for n in range(1, 7)}}}
    oracle = Oracle(TABLE, per)
    out = greedy(oracle, torch.tensor([[7], [8]]), torch.tensor([1, 1]),
                 DecodeOptions(method="greedy", max_len=4))
    assert [h.tokens for h in out] == [[A], [A] * 4]
    assert oracle.calls == [2, 2, 1, 1]


def test_oracle_min_len():
    out = beam_search(Oracle(TABLE), SRC, LEN, DecodeOptions(beam=2, nbest=2, length_penalty="none", min_len=2, max_len=10))
    assert toks_scores(out[0]) == [([A, A], lg(0.18)), ([A, B_], lg(0.12))]
    g = greedy(Oracle(TABLE), SRC, LEN, DecodeOptions(method="greedy", min_len=2, max_len=10))
    assert toks_scores(g) == [([A, A], lg(0.18))]


def test_oracle_max_len_truncates_without_eos():
    out = beam_search(Oracle(TABLE), SRC, LEN, DecodeOptions(beam=2, nbest=2, length_penalty="none", max_len=1))
    assert toks_scores(out[0]) == [([A], lg(0.6)), ([B_], lg(0.4))]
    out = beam_search(Oracle(TABLE), SRC, LEN, DecodeOptions(length_penalty="none", beam=2, nbest=1, max_len_a=0.0, max_len_b=0))
    assert toks_scores(out[0]) == [([], 0.0)]
    assert toks_scores(greedy(Oracle(TABLE), SRC, LEN, DecodeOptions(method="greedy", max_len=1))) == [([A], lg(0.6))]


def test_per_sentence_limit_from_source_length():
    # limit = floor(1.0 * src_len + 0): 1 token for a length-1 source, 3 for length 3
    table = {(): {A: 1.0}, (A,): {A: 1.0}, (A, A): {A: 1.0}, (A, A, A): {A: 1.0}}
    src = torch.tensor([[7, 0, 0], [7, 7, 7]])
    lens = torch.tensor([1, 3])
    out = beam_search(Oracle(table), src, lens, DecodeOptions(length_penalty="none", beam=2, max_len_a=1.0, max_len_b=0))
    assert [o[0].tokens for o in out] == [[A], [A, A, A]]
    assert [h.tokens for h in greedy(Oracle(table), src, lens, DecodeOptions(method="greedy", max_len_a=1.0, max_len_b=0))] == [[A], [A, A, A]]


def test_greedy_oracle():
    g = greedy(Oracle(TABLE), SRC, LEN, DecodeOptions(method="greedy", max_len=10, return_attention=True))
    assert toks_scores(g) == [([A], lg(0.3))]
    assert g[0].attention.shape == (1, 3)
    assert greedy(Oracle(TABLE), SRC, LEN, DecodeOptions(method="greedy", max_len=10))[0].attention is None


def test_beam_one_equals_greedy_on_oracle():
    per = {8: {(): {B_: 0.7, A: 0.3}, (B_,): {B_: 0.6, EOS: 0.4}}}
    src = torch.tensor([[7, 7, 7], [8, 8, 0]])
    lens = torch.tensor([3, 2])
    b = beam_search(Oracle(TABLE, per), src, lens, DecodeOptions(length_penalty="none", beam=1, max_len=6))
    g = greedy(Oracle(TABLE, per), src, lens, DecodeOptions(method="greedy", max_len=6))
    assert [toks_scores(x) for x in b] == [toks_scores([h]) for h in g]


def test_batched_equals_single_on_oracle_and_attention_trimmed():
    per = {8: {(): {B_: 0.7, A: 0.3}, (B_,): {B_: 0.6, EOS: 0.4}, (B_, B_): {EOS: 0.5, A: 0.5}}}
    src = torch.tensor([[7, 7, 7], [8, 8, 0]])
    lens = torch.tensor([3, 2])
    opts = DecodeOptions(beam=3, nbest=3, length_penalty="gnmt", max_len=6, return_attention=True)
    batched = beam_search(Oracle(TABLE, per), src, lens, opts)
    for i in range(2):
        single = beam_search(Oracle(TABLE, per), src[i:i + 1, :lens[i]], lens[i:i + 1], opts)
        assert toks_scores(batched[i]) == toks_scores(single[0])
        for hb, hs in zip(batched[i], single[0]):
            assert torch.equal(hb.attention, hs.attention)
            assert hb.attention.shape == (len(hb.tokens), int(lens[i]))


def test_early_stop_drops_finished_sentences():
    # Sentence 0 is done after 2 steps; sentence 1 runs to its limit of 6.
    per = {8: {(): {A: 1.0}, **{(A,) * n: {A: 1.0} for n in range(1, 7)}}}
    oracle = Oracle(TABLE, per)
    out = beam_search(oracle, torch.tensor([[7], [8]]), torch.tensor([1, 1]), DecodeOptions(length_penalty="none", beam=2, max_len=6))
    assert out[0][0].tokens == [B_] and out[1][0].tokens == [A] * 6
    # one row per sentence at the first step (only the empty hypothesis is live),
    # then beam rows; sentence 0 left the batch after 2 steps
    assert oracle.calls == [2, 4, 2, 2, 2, 2]


def test_coverage_penalty_ranks_by_attention():
    # both outputs have probability 0.5; [a, a] attends to 2 of 2 source
    # positions, [b] to 1 of 2, so with coverage the longer one wins.
    table = {(): {A: 0.5, B_: 0.5}, (A,): {A: 1.0}, (A, A): {EOS: 1.0}, (B_,): {EOS: 1.0}}
    src, lens = torch.tensor([[7, 7]]), torch.tensor([2])
    out = beam_search(Oracle(table), src, lens, DecodeOptions(length_penalty="none", beam=2, nbest=2, coverage=0.2, max_len=5))
    eps = math.log(search.COVERAGE_EPS)
    # attention one-hot at min(t, len-1): [b] -> steps 0,1 -> positions 0,1 (full coverage)
    # [a, a] -> steps 0,1,2 -> positions 0,1,1
    assert out[0][0].score == pytest.approx(math.log(0.5))
    assert out[0][1].score == pytest.approx(math.log(0.5))
    src, lens = torch.tensor([[7, 7, 7]]), torch.tensor([3])
    out = beam_search(Oracle(table), src, lens, DecodeOptions(length_penalty="none", beam=2, nbest=2, coverage=0.2, max_len=5))
    # [b]: positions 0,1 -> position 2 uncovered; [a, a]: 0,1,2 covered
    assert out[0][0].tokens == [A, A] and out[0][0].score == pytest.approx(math.log(0.5))
    assert out[0][1].tokens == [B_] and out[0][1].score == pytest.approx(math.log(0.5) + 0.2 * eps)


def test_no_attention_model():
    out = beam_search(Oracle(TABLE, attention=False), SRC, LEN, DecodeOptions(length_penalty="none", beam=2, nbest=2, coverage=0.5, max_len=10))
    assert toks_scores(out[0]) == [([B_], lg(0.36)), ([A], lg(0.3))]
    assert out[0][0].attention is None


def test_sampling_topk1_equals_greedy_and_seed_reproducible():
    g = greedy(Oracle(TABLE), SRC, LEN, DecodeOptions(method="greedy", max_len=10))
    s = sample(Oracle(TABLE), SRC, LEN, DecodeOptions(method="sample", top_k=1, max_len=10), generator=torch.Generator().manual_seed(0))
    assert toks_scores(s) == toks_scores(g)
    src = SRC.repeat(50, 1)
    lens = LEN.repeat(50)
    r1 = sample(Oracle(TABLE), src, lens, DecodeOptions(method="sample", max_len=10), generator=torch.Generator().manual_seed(3))
    r2 = sample(Oracle(TABLE), src, lens, DecodeOptions(method="sample", max_len=10), generator=torch.Generator().manual_seed(3))
    assert toks_scores(r1) == toks_scores(r2)
    assert len({tuple(h.tokens) for h in r1}) > 1  # really samples


def test_sampling_distribution_and_nucleus():
    src, lens = SRC.repeat(2000, 1), LEN.repeat(2000)
    gen = torch.Generator().manual_seed(1)
    first = [h.tokens[0] for h in sample(Oracle(TABLE), src, lens, DecodeOptions(method="sample", max_len=1), generator=gen)]
    assert first.count(A) / 2000 == pytest.approx(0.6, abs=0.04)
    # top_p = 0.5: the nucleus of {a: .6, b: .4} is {a}
    nuc = sample(Oracle(TABLE), src[:100], lens[:100], DecodeOptions(method="sample", top_p=0.5, max_len=1), generator=gen)
    assert {tuple(h.tokens) for h in nuc} == {(A,)}
    # scores are the model's log-probabilities of the sampled tokens
    assert {round(h.score, 6) for h in nuc} == {lg(0.6)}


def test_filter_logits():
    logp = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = search.filter_logits(logp, 1.0, 0, 0.75).isfinite().tolist()[0]
    assert kept == [True, True, False, False]
    kept = search.filter_logits(logp, 1.0, 3, 1.0).isfinite().tolist()[0]
    assert kept == [True, True, True, False]
    probs = search.filter_logits(logp, 2.0, 0, 1.0).softmax(-1)
    expected = torch.tensor([0.5, 0.3, 0.15, 0.05]).sqrt()
    assert torch.allclose(probs, expected / expected.sum())


def test_length_normalise_formulas():
    lp = torch.tensor([-2.0])
    assert search.length_normalise(lp, 4, "none", 0.6).item() == -2.0
    assert search.length_normalise(lp, 4, "average", 0.6).item() == -0.5
    assert search.length_normalise(lp, 4, "gnmt", 0.6).item() == pytest.approx(-2.0 / 1.5 ** 0.6)


def test_replace_unk():
    att = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    assert replace_unk(["x", "<unk>", "<unk>"], ["s1", "s2"], att) == ["x", "s2", "s1"]
    assert replace_unk(["<unk>"], ["s1"], None) == ["<unk>"]


@pytest.mark.parametrize("changes, message", [
    (dict(beam=2, nbest=3), "decoding option 'nbest': must be at most beam \\(2\\)"),
    (dict(method="greedy", nbest=2), "decoding option 'nbest'"),
    (dict(length_penalty="wu"), "decoding option 'length_penalty': 'wu' is not one of"),
    (dict(beam=0), "decoding option 'beam': must be in \\[1, 256\\], got 0"),
    (dict(beam="5"), "decoding option 'beam': expected int, got '5'"),
    (dict(top_p=0.0), "decoding option 'top_p': must be in \\(0, 1\\]"),
    (dict(max_len=-1), "decoding option 'max_len'"),
])
def test_bad_options_name_the_option(changes, message):
    with pytest.raises(ValueError, match=message):
        DecodeOptions(**changes)
    with pytest.raises(ValueError, match=message):  # replace() checks again
        dataclasses.replace(DecodeOptions(), **changes)


def test_options_are_frozen_and_widen_ints():
    opts = DecodeOptions(alpha=1)
    assert opts.alpha == 1.0 and isinstance(opts.alpha, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.beam = 3


# --- a tiny real model --------------------------------------------------------

EOS_BIAS = {"luong": 0.1, "bahdanau": 0.05, "sutskever": 0.1, "cho": 0.1}


def tiny_model(family, cell="lstm", seed=0, eos_bias=None):
    from transduce.config import ModelConfig
    from transduce.model import Seq2Seq

    torch.manual_seed(seed)
    cfg = ModelConfig(family=family, cell=cell, emb_dim=8, hidden=12, enc_layers=1, dec_layers=1,
                      dropout=0.0, emb_dropout=0.0, init_range=0.5)
    model = Seq2Seq.from_config(cfg, 11, 13).eval()
    with torch.no_grad():  # make EOS likely enough that hypotheses end at varied lengths
        model.decoder.out.bias[EOS] += EOS_BIAS[family] if eos_bias is None else eos_bias
    return model


def random_batch(seed=0, n=5, max_len=7):
    gen = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, max_len + 1, (n,), generator=gen)
    lens[0] = max_len
    src = torch.randint(4, 11, (n, max_len), generator=gen)
    src[torch.arange(max_len)[None, :] >= lens[:, None]] = 0
    return src, lens


FAMILIES = [("luong", "lstm"), ("bahdanau", "gru"), ("sutskever", "lstm"), ("cho", "rnn")]


@pytest.mark.parametrize("family,cell", FAMILIES)
def test_beam_one_equals_greedy_real_model(family, cell):
    model = tiny_model(family, cell)
    src, lens = random_batch(seed=1)
    g = greedy(model, src, lens, DecodeOptions(method="greedy", max_len_a=1.0, max_len_b=3))
    b = beam_search(model, src, lens, DecodeOptions(length_penalty="none", beam=1, max_len_a=1.0, max_len_b=3))
    assert [h.tokens for h in g] == [x[0].tokens for x in b]
    # some outputs end with EOS before the limit (not all truncated, not all empty)
    assert any(0 < len(h.tokens) < n + 3 for h, n in zip(g, lens.tolist()))
    for hg, (hb,) in zip(g, b):
        assert hb.score == pytest.approx(hg.score, abs=1e-5)
        assert hb.logprob == pytest.approx(hg.logprob, abs=1e-5)
        if hg.attention is not None:
            assert torch.allclose(hg.attention, hb.attention, atol=1e-6)
    s = sample(model, src, lens, DecodeOptions(method="sample", top_k=1, max_len_a=1.0, max_len_b=3))
    assert [h.tokens for h in s] == [h.tokens for h in g]


@pytest.mark.parametrize("family,cell", FAMILIES[:2])
@pytest.mark.parametrize("penalty,coverage", [("none", 0.0), ("gnmt", 0.3), ("average", 0.0)])
def test_batched_equals_one_by_one_real_model(family, cell, penalty, coverage):
    model = tiny_model(family, cell)
    src, lens = random_batch(seed=1)
    opts = DecodeOptions(beam=4, nbest=3, length_penalty=penalty, coverage=coverage, max_len_a=1.0,
                         max_len_b=2)
    batched = beam_search(model, src, lens, opts)
    for i in range(src.size(0)):
        single = beam_search(model, src[i:i + 1, :lens[i]], lens[i:i + 1], opts)[0]
        assert [h.tokens for h in batched[i]] == [h.tokens for h in single]
        assert [h.score for h in batched[i]] == pytest.approx([h.score for h in single], abs=1e-5)
        assert len(batched[i]) == 3
        assert all(a.score >= b.score for a, b in zip(batched[i], batched[i][1:]))
        assert all(len(h.tokens) <= int(lens[i]) + 2 for h in batched[i])


def test_beam_finds_at_least_greedy_score_real_model():
    model = tiny_model("luong")
    src, lens = random_batch(seed=2)
    g = greedy(model, src, lens, DecodeOptions(method="greedy", max_len=8))
    b = beam_search(model, src, lens, DecodeOptions(beam=5, length_penalty="none", max_len=8))
    for hg, hb in zip(g, b):
        assert hb[0].score >= hg.score - 1e-5


def test_real_model_attention_rows_sum_to_one():
    model = tiny_model("luong")
    src, lens = random_batch(seed=3)
    opts = DecodeOptions(length_penalty="none", beam=3, max_len=5, return_attention=True)
    for hyps, n in zip(beam_search(model, src, lens, opts), lens.tolist()):
        att = hyps[0].attention
        assert att.shape == (len(hyps[0].tokens), n)
        assert torch.allclose(att.sum(-1), torch.ones(att.size(0)), atol=1e-5)


@pytest.mark.parametrize("width,n,min_len", [(1, 10, 0), (4, 8, 0), (4, 8, 3), (3, 50, 0)])
def test_top_extensions_equal_the_full_log_softmax_ranking(width, n, min_len):
    torch.manual_seed(0)
    a, vocab = 5, 17
    logits = torch.randn(a * width, vocab) * 3
    scores = torch.randn(a, width)
    scores[0, 1:] = -math.inf  # empty slots stay -inf
    full = (scores.view(-1, 1) + search.log_probs(logits, 1, min_len)).view(a, width * vocab)
    want_vals, want_idx = full.topk(min(n, width * vocab), dim=-1)
    vals, slots, toks = search.top_extensions(logits.clone(), scores, n, 1, min_len)
    assert torch.allclose(vals, want_vals, atol=1e-5)
    finite = vals > -math.inf
    assert torch.equal((slots * vocab + toks)[finite], want_idx[finite])
    if min_len > 1:
        assert not (toks[finite] == EOS).any()
