"""decoder.py: DecoderState, one step(), the fused path equals the step loop."""
from __future__ import annotations

import pytest
import torch

from transduce.config import ModelConfig
from transduce.decoder import DecoderState
from transduce.model import Seq2Seq



V_SRC, V_TGT = 15, 17


def _model(**overrides) -> Seq2Seq:
    torch.manual_seed(0)
    base = dict(emb_dim=6, hidden=8, enc_layers=2, dec_layers=2, dropout=0.3, emb_dropout=0.2)
    base.update(overrides)
    return Seq2Seq.from_config(ModelConfig(**base), V_SRC, V_TGT).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, V_SRC, (3, 6), generator=g)
    lengths = torch.tensor([6, 4, 1])
    src[1, 4:] = 0
    src[2, 1:] = 0
    tgt_in = torch.randint(4, V_TGT, (3, 5), generator=g)
    tgt_in[:, 0] = 2
    return src, lengths, tgt_in


FUSABLE = [dict(family="sutskever"), dict(family="cho")] + [
    dict(family="luong", input_feeding=False, attention=a)
    for a in ["dot", "scaled_dot", "general", "concat", "additive"]]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("conf", FUSABLE, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_fused_equals_step_loop(cell, conf):
    model = _model(cell=cell, **conf)
    assert model.supports_fused
    src, lengths, tgt_in = _batch()
    fused = model(src, lengths, tgt_in)
    loop = model(src, lengths, tgt_in, fused=False)
    assert fused.logits.shape == (3, 5, V_TGT)
    assert torch.allclose(fused.logits, loop.logits, atol=1e-5)
    if conf["family"] == "luong":
        assert torch.allclose(fused.attention, loop.attention, atol=1e-5)
    else:
        assert fused.attention is None and loop.attention is None


def test_fused_equals_step_loop_with_tied_embeddings():
    model = _model(family="luong", input_feeding=False, tie_embeddings=True)
    src, lengths, tgt_in = _batch()
    assert torch.allclose(model(src, lengths, tgt_in).logits,
                          model(src, lengths, tgt_in, fused=False).logits, atol=1e-5)


@pytest.mark.parametrize("conf", [dict(family="bahdanau"), dict(family="luong", input_feeding=True)])
def test_loop_only_families_refuse_fused(conf):
    model = _model(**conf)
    assert not model.supports_fused
    src, lengths, tgt_in = _batch()
    with pytest.raises(ValueError):
        model(src, lengths, tgt_in, fused=True)
    with pytest.raises(ValueError):
        model.decoder.fused(tgt_in, model.init_state(model.encode(src, lengths)), None)


@pytest.mark.parametrize("conf", [dict(family="bahdanau"), dict(family="luong", input_feeding=True),
                                  dict(family="cho")])
def test_forward_equals_manual_steps_and_gold_next_input(conf):
    model = _model(**conf)
    src, lengths, tgt_in = _batch()
    out = model(src, lengths, tgt_in)
    enc = model.encode(src, lengths)
    state = model.init_state(enc)
    seen = []

    def gold(t, logits_t, gold_next):
        seen.append((t, logits_t.shape, gold_next.clone()))
        return gold_next

    for t in range(tgt_in.size(1)):
        step = model.step(tgt_in[:, t], state, enc)
        state = step.state
        assert torch.allclose(step.logits, out.logits[:, t], atol=1e-5)
        if step.attention is not None:
            assert torch.allclose(step.attention, out.attention[:, t], atol=1e-6)
    sampled = model(src, lengths, tgt_in, next_input=gold)
    assert torch.allclose(sampled.logits, out.logits, atol=1e-5)
    assert [s[0] for s in seen] == [0, 1, 2, 3]
    assert all(torch.equal(g, tgt_in[:, t + 1]) for t, _, g in seen)
    assert seen[0][1] == (3, V_TGT)


def test_next_input_changes_later_steps_only():
    model = _model(family="sutskever")
    src, lengths, tgt_in = _batch()
    ref = model(src, lengths, tgt_in)
    out = model(src, lengths, tgt_in, next_input=lambda t, logits, gold: logits.argmax(-1))
    assert torch.allclose(out.logits[:, 0], ref.logits[:, 0], atol=1e-6)
    assert not torch.allclose(out.logits, ref.logits, atol=1e-4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_decoder_state_select(cell):
    h = torch.arange(24.0).view(2, 3, 4)
    hidden = (h, -h) if cell == "lstm" else h
    state = DecoderState(hidden, feed=torch.arange(6.0).view(3, 2))
    picked = state.select(torch.tensor([2, 2, 0, 1]))
    ph = picked.hidden[0] if cell == "lstm" else picked.hidden
    assert torch.equal(ph, h[:, [2, 2, 0, 1]])
    if cell == "lstm":
        assert torch.equal(picked.hidden[1], -h[:, [2, 2, 0, 1]])
    assert torch.equal(picked.feed, state.feed[[2, 2, 0, 1]])


def _parts(hidden):
    return list(hidden) if isinstance(hidden, tuple) else [hidden]


@pytest.mark.parametrize("conf", [dict(family="sutskever", cell="gru"), dict(family="cho"),
                                  dict(family="bahdanau"), dict(family="luong", input_feeding=True)])
def test_select_then_step_equals_step_then_select(conf):
    model = _model(**conf)
    src, lengths, tgt_in = _batch()
    enc = model.encode(src, lengths)
    state = model.step(tgt_in[:, 0], model.init_state(enc), enc).state
    idx = torch.tensor([2, 0, 0, 1, 2])
    a = model.step(tgt_in[idx, 1], state.select(idx), enc.select(idx))
    b = model.step(tgt_in[:, 1], state, enc)
    assert torch.allclose(a.logits, b.logits[idx], atol=1e-6)
    b_sel = b.state.select(idx)
    for part_a, part_b in zip(_parts(a.state.hidden), _parts(b_sel.hidden)):
        assert torch.allclose(part_a, part_b, atol=1e-6)
    if b.attention is not None:
        assert torch.allclose(a.attention, b.attention[idx], atol=1e-6)


@pytest.mark.parametrize("hidden,emb", [(8, 8), (8, 6)])
def test_tied_output_layer_shares_the_embedding(hidden, emb):
    model = _model(family="luong", tie_embeddings=True, hidden=hidden, emb_dim=emb)
    dec = model.decoder
    assert dec.out is None
    assert (dec.tie_proj is None) == (hidden == emb)
    src, lengths, tgt_in = _batch()
    model.train()
    model(src, lengths, tgt_in).logits.sum().backward()
    grad = dec.embedding.weight.grad
    assert grad is not None and grad[1].abs().sum() > 0  # UNK never embedded: gradient from the output layer
    untied = _model(family="luong", hidden=hidden, emb_dim=emb)
    assert model.num_parameters() < untied.num_parameters()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("conf", [dict(family="bahdanau"), dict(family="luong", input_feeding=True),
                                  dict(family="luong", input_feeding=False)])
def test_int8_model_steps_like_fp32(cell, conf):
    from transduce.translator import quantize_int8

    model = _model(cell=cell, **conf)
    with torch.no_grad():  # weights of a trained model's size, not the tiny initial output layer
        for p in model.parameters():
            p.uniform_(-0.5, 0.5)
    q = quantize_int8(model)
    src, lengths, tgt_in = _batch()
    if cell != "rnn":  # torch has no dynamic int8 tanh RNN: that one stays fp32
        assert not hasattr(q.decoder.rnn, "weight_ih_l0")
    with torch.inference_mode():
        ref = model(src, lengths, tgt_in, fused=False).logits
        loop = q(src, lengths, tgt_in, fused=False).logits
        assert loop.shape == ref.shape
        assert (loop - ref).abs().max() < 0.05 * ref.abs().max()
        if q.supports_fused:  # activation scales are per call, so close rather than equal
            fused = q(src, lengths, tgt_in, fused=True).logits
            assert (fused - ref).abs().max() < 0.05 * ref.abs().max()
