"""Scheduled sampling: per-token coins, predictions, and the two-pass variant."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from transduce.sampling import make_next_input, mixed_inputs, predict, two_pass_inputs
from transduce.vocab import BOS, PAD


class TinyDecoder(nn.Module):
    """A stand-in with Seq2Seq.forward's signature: GRU decoder, fused path and step loop."""

    def __init__(self, V=9, H=8):
        super().__init__()
        self.src_emb = nn.Embedding(V, H)
        self.emb = nn.Embedding(V, H)
        self.rnn = nn.GRUCell(H, H)
        self.out = nn.Linear(H, V)
        self.fed = []  # inputs seen by the step loop, per step

    def forward(self, src, src_lengths, tgt_in, next_input=None, fused=None):
        h = self.src_emb(src).mean(1)  # [B, H]
        if next_input is None:
            return SimpleNamespace(logits=self._run(h, self.emb(tgt_in)), attention=None)
        self.fed, logits, tok = [], [], tgt_in[:, 0]
        for t in range(tgt_in.shape[1]):
            self.fed.append(tok)
            h = self.rnn(self.emb(tok), h)
            logits.append(self.out(h))
            if t + 1 < tgt_in.shape[1]:
                tok = next_input(t, logits[-1], tgt_in[:, t + 1])
        return SimpleNamespace(logits=torch.stack(logits, 1), attention=None)

    def _run(self, h, emb):  # "fused": same arithmetic, inputs known in advance
        out = []
        for t in range(emb.shape[1]):
            h = self.rnn(emb[:, t], h)
            out.append(self.out(h))
        return torch.stack(out, 1)


def _batch():
    torch.manual_seed(0)
    src = torch.randint(4, 9, (3, 4))
    tgt_in = torch.tensor([[BOS, 5, 6, 7, 8], [BOS, 4, 4, PAD, PAD], [BOS, 8, 7, 6, PAD]])
    return SimpleNamespace(src=src, src_lengths=torch.tensor([4, 4, 4]), tgt_in=tgt_in)


def _real_model():
    model_mod = pytest.importorskip("transduce.model")
    from transduce.config import ModelConfig
    cfg = ModelConfig(family="luong", cell="lstm", emb_dim=8, hidden=8, enc_layers=1, dec_layers=1,
                      input_feeding=False, dropout=0.0, emb_dropout=0.0)
    torch.manual_seed(0)
    return model_mod.Seq2Seq.from_config(cfg, 9, 9).eval()


# --- next_input ----------------------------------------------------------------------

def test_ratio_one_is_pure_teacher_forcing_and_draws_nothing():
    g = torch.Generator().manual_seed(5)
    before = g.get_state()
    assert make_next_input(1.0, 0.0, g) is None
    assert torch.equal(g.get_state(), before)
    model, b = TinyDecoder(), _batch()
    gold = lambda t, logits, gold_next: gold_next  # noqa: E731  (step loop feeding gold)
    fused = model(b.src, b.src_lengths, b.tgt_in).logits
    loop = model(b.src, b.src_lengths, b.tgt_in, next_input=gold).logits
    assert torch.equal(fused, loop)


def test_ratio_zero_feeds_only_predictions():
    torch.manual_seed(1)
    model, b = TinyDecoder(), _batch()
    out = model(b.src, b.src_lengths, b.tgt_in, next_input=make_next_input(0.0, 0.0, torch.Generator()))
    fed = torch.stack(model.fed, 1)  # [B, T]
    predicted = out.logits.argmax(-1)  # prediction at t is fed at t+1
    real = b.tgt_in[:, 1:] != PAD
    assert torch.equal(fed[:, 1:][real], predicted[:, :-1][real])
    assert torch.all(fed[:, 1:][~real] == PAD) and torch.all(fed[:, 0] == BOS)


def test_one_coin_per_token():
    g = torch.Generator().manual_seed(3)
    expected_coins = torch.rand(64, generator=torch.Generator().manual_seed(3))
    logits = torch.zeros(64, 9)
    logits[:, 4] = 1.0  # the model always predicts 4
    gold = torch.full((64,), 7)
    got = make_next_input(0.5, 0.0, g)(0, logits, gold)
    assert torch.equal(got, torch.where(expected_coins < 0.5, 7, 4))
    assert 10 < int((got == 7).sum()) < 54


def test_sampling_temperature_draws_from_softmax():
    logits = torch.log(torch.tensor([[0.0, 0.0, 0.25, 0.75]])).expand(4000, 4)
    draws = predict(logits, 1.0, torch.Generator().manual_seed(0))
    assert set(draws.tolist()) == {2, 3}
    assert abs(float((draws == 3).float().mean()) - 0.75) < 0.03
    assert torch.equal(predict(logits, 0.0, None), torch.full((4000,), 3))


# --- two passes -------------------------------------------------------------------------

def _fixed_mix_equals_step_loop(model, b):
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        predicted = model(b.src, b.src_lengths, b.tgt_in).logits.argmax(-1)
    coins = torch.rand(b.tgt_in.shape[0], b.tgt_in.shape[1] - 1, generator=g)
    mixed = mixed_inputs(b.tgt_in, predicted, coins, 0.5)
    assert not torch.equal(mixed, b.tgt_in)
    feed = lambda t, logits, gold_next: mixed[:, t + 1]  # noqa: E731
    fused = model(b.src, b.src_lengths, mixed).logits
    loop = model(b.src, b.src_lengths, b.tgt_in, next_input=feed).logits
    torch.testing.assert_close(fused, loop, rtol=1e-5, atol=1e-6)


def test_two_pass_equals_step_loop_for_a_fixed_mix():
    torch.manual_seed(2)
    _fixed_mix_equals_step_loop(TinyDecoder(), _batch())


def test_two_pass_equals_step_loop_for_a_fixed_mix_real_model():
    _fixed_mix_equals_step_loop(_real_model(), _batch())


def test_two_pass_inputs_use_pass_one_predictions_and_coins():
    torch.manual_seed(4)
    model, b = TinyDecoder(), _batch()
    mixed = two_pass_inputs(model, b, 0.4, 0.0, torch.Generator().manual_seed(9))
    predicted = model(b.src, b.src_lengths, b.tgt_in).logits.argmax(-1)
    coins = torch.rand(3, 4, generator=torch.Generator().manual_seed(9))
    gold = b.tgt_in[:, 1:]
    want = torch.where(gold == PAD, PAD, torch.where(coins < 0.4, gold, predicted[:, :-1]))
    assert torch.equal(mixed[:, 1:], want) and torch.all(mixed[:, 0] == BOS)
    assert two_pass_inputs(model, b, 1.0, 0.0, None) is b.tgt_in
