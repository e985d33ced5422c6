"""model.py: Seq2Seq over the whole grid of cells x families x scores, the
bridge, init, padding invariance, overfitting and the reverse toy task."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transduce import rnn as rnnlib
from transduce.config import ModelConfig
from transduce.errors import ConfigError
from transduce.model import Bridge, Encoded, Seq2Seq, masked_mean



V_SRC, V_TGT = 13, 11
BOS, EOS = 2, 3


def _model(src_vocab: int = V_SRC, tgt_vocab: int = V_TGT, **overrides) -> Seq2Seq:
    torch.manual_seed(0)
    base = dict(emb_dim=6, hidden=8, enc_layers=1, dec_layers=1, dropout=0.2, emb_dropout=0.1)
    base.update(overrides)
    return Seq2Seq.from_config(ModelConfig(**base), src_vocab, tgt_vocab)


FAMILIES = [dict(family="sutskever"), dict(family="cho"), dict(family="bahdanau")] + [
    dict(family="luong", attention=a, input_feeding=f)
    for a in ["dot", "scaled_dot", "general", "concat", "additive"] for f in (True, False)]


def _short_and_long():
    """A short pair alone, and batched with a long one plus extra padding."""
    short_src, short_tgt = torch.tensor([[5, 6, 7]]), torch.tensor([[BOS, 4, 9]])
    src = torch.tensor([[4, 5, 6, 7, 8, 9, 10, 0], [5, 6, 7, 0, 0, 0, 0, 0]])
    tgt = torch.tensor([[BOS, 5, 6, 7, 8, 0, 0], [BOS, 4, 9, 0, 0, 0, 0]])
    return (short_src, torch.tensor([3]), short_tgt), (src, torch.tensor([7, 3]), tgt)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("conf", FAMILIES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_grid_shapes_backward_and_padding_invariance(cell, bidirectional, layers, conf):
    model = _model(cell=cell, bidirectional=bidirectional, enc_layers=layers, dec_layers=layers, **conf)
    (s_src, s_len, s_tgt), (src, lengths, tgt) = _short_and_long()
    out = model(src, lengths, tgt)  # training mode, dropout on
    assert out.logits.shape == (2, 7, V_TGT)
    attends = conf["family"] in ("bahdanau", "luong")
    assert (out.attention is not None) == attends
    F.cross_entropy(out.logits.reshape(-1, V_TGT), tgt.roll(-1, 1).reshape(-1), ignore_index=0).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval()
    alone, batched = model(s_src, s_len, s_tgt), model(src, lengths, tgt)
    assert torch.allclose(batched.logits[1, :3], alone.logits[0], atol=1e-5)
    if attends:
        assert out.attention.shape == (2, 7, 8)
        assert torch.allclose(batched.attention[1, :3, :3], alone.attention[0], atol=1e-5)
        assert not batched.attention[1, :, 3:].any() and not batched.attention[0, :, 7:].any()
        assert torch.allclose(batched.attention.sum(-1), torch.ones(2, 7), atol=1e-5)


SIZES = [(2, 1, 8, 8), (1, 2, 8, 8), (2, 1, 12, 8), (1, 2, 8, 12), (1, 3, 12, 8)]


@pytest.mark.parametrize("kind", ["last", "linear", "mean", "zero"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("enc_layers,dec_layers,enc_hidden,hidden", SIZES)
def test_bridge_with_differing_sizes_and_layers(kind, cell, enc_layers, dec_layers, enc_hidden, hidden):
    model = _model(cell=cell, bridge=kind, enc_layers=enc_layers, dec_layers=dec_layers,
                   enc_hidden=enc_hidden, hidden=hidden, family="luong", attention="general").eval()
    (s_src, s_len, s_tgt), (src, lengths, tgt) = _short_and_long()
    enc = model.encode(src, lengths)
    state = model.init_state(enc).hidden
    parts = list(state) if cell == "lstm" else [state]
    assert all(p.shape == (dec_layers, 2, hidden) for p in parts)
    alone = model.init_state(model.encode(s_src, s_len)).hidden
    assert torch.allclose(rnnlib.top(state)[1], rnnlib.top(alone)[0], atol=1e-6)  # padding-free
    h = parts[0]
    if kind == "zero":
        assert not any(p.any() for p in parts)
    elif kind == "mean":
        assert torch.equal(h[0], h[-1])
        if enc_hidden == hidden:
            assert torch.allclose(h[0], masked_mean(enc.memory, enc.pad_mask), atol=1e-6)
        if cell == "lstm":
            assert not parts[1].any()
    elif kind == "last" and enc_hidden == hidden:
        final = list(enc.final) if cell == "lstm" else [enc.final]
        for p, f in zip(parts, final):  # top layers aligned, bottom one repeated
            assert torch.equal(p[-1], f[-1])
            assert torch.equal(p[0], f[max(0, enc_layers - dec_layers)])
    elif kind == "linear":
        assert h.abs().max() < 1.0 and h.abs().sum() > 0
    out = model(src, lengths, tgt)
    assert out.logits.shape == (2, 7, V_TGT)


def test_masked_mean_ignores_padding():
    memory = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [0.0], [0.0]]])
    pad = torch.tensor([[False, False, True], [False, True, True]])
    assert torch.equal(masked_mean(memory, pad), torch.tensor([[2.0], [2.0]]))
    with pytest.raises(ValueError):
        Bridge("nope", "lstm", 1, 1, 4, 4)


@pytest.mark.parametrize("init", ["uniform", "xavier"])
def test_init_pad_rows_forget_bias_and_range(init):
    model = _model(init=init, init_range=0.05, family="luong", share_embeddings=False)
    assert not model.encoder.embedding.weight[0].any()
    assert not model.decoder.embedding.weight[0].any()
    b = model.decoder.rnn.bias_ih_l0 + model.decoder.rnn.bias_hh_l0
    assert torch.equal(b[8:16], torch.ones(8)) and not b[:8].any()
    assert model.decoder.out.bias.abs().sum() == 0
    if init == "uniform":
        assert model.decoder.out.weight.abs().max() <= 0.05
        assert model.decoder.out.weight.abs().max() > 0.04


def test_share_embeddings_and_config_errors():
    shared = _model(src_vocab=12, tgt_vocab=12, share_embeddings=True, tie_embeddings=True)
    assert shared.encoder.embedding is shared.decoder.embedding
    assert shared.num_parameters() < _model(src_vocab=12, tgt_vocab=12).num_parameters()
    with pytest.raises(ConfigError, match="model.share_embeddings"):
        _model(src_vocab=12, tgt_vocab=13, share_embeddings=True)
    with pytest.raises(ConfigError, match="model.attention"):
        _model(family="luong", attention="dot", enc_hidden=12, hidden=8)


def test_describe_and_num_parameters():
    model = _model(family="luong", attention="concat")
    n = sum(p.numel() for p in model.parameters())
    assert model.num_parameters() == n
    line = model.describe()
    assert "\n" not in line and f"{n:,} parameters" in line and "luong" in line and "concat" in line


def test_encoded_select_and_keys_computed_once():
    model = _model(family="luong", attention="general", bidirectional=True).eval()
    _, (src, lengths, tgt) = _short_and_long()
    calls = []
    model.decoder.attention.score.proj.register_forward_hook(lambda *args: calls.append(1))
    model(src, lengths, tgt, fused=False)
    assert len(calls) == 1  # keys projected once per batch, not per step
    enc = model.encode(src, lengths)
    idx = torch.tensor([1, 1, 0])
    sel = enc.select(idx)
    assert isinstance(sel, Encoded)
    assert torch.equal(sel.memory, enc.memory[idx]) and torch.equal(sel.pad_mask, enc.pad_mask[idx])
    assert torch.equal(sel.keys, enc.keys[idx]) and sel.context is None
    assert torch.equal(sel.final[1], enc.final[1][:, idx])


@pytest.mark.parametrize("conf", [dict(family="cho"), dict(family="luong", input_feeding=True)])
def test_bf16_autocast_forward_backward(conf):
    model = _model(hidden=16, emb_dim=8, enc_layers=2, dec_layers=2, **conf)
    _, (src, lengths, tgt) = _short_and_long()
    ref = model.eval()(src, lengths, tgt).logits
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(src, lengths, tgt)
        loss = F.cross_entropy(out.logits.float().reshape(-1, V_TGT), tgt.reshape(-1))
    loss.backward()
    assert out.logits.dtype == torch.bfloat16
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.allclose(model(src, lengths, tgt).logits.float(), ref, atol=5e-2)


# --- learning --------------------------------------------------------------

def _reverse_batch(n: int, g: torch.Generator):
    """Digit sequences (ids 4..13), length 3-8, and their reversal."""
    lengths = torch.randint(3, 9, (n,), generator=g)
    src = torch.zeros(n, int(lengths.max()), dtype=torch.long)
    tgt_in = torch.zeros(n, src.size(1) + 1, dtype=torch.long)
    tgt_out = torch.zeros_like(tgt_in)
    for i, length in enumerate(lengths.tolist()):
        src[i, :length] = torch.randint(4, 14, (length,), generator=g)
        rev = src[i, :length].flip(0)
        tgt_in[i, 0], tgt_in[i, 1:length + 1] = BOS, rev
        tgt_out[i, :length], tgt_out[i, length] = rev, EOS
    return src, lengths, tgt_in, tgt_out


def _train(model: Seq2Seq, batches, steps: int, lr: float) -> float:
    """Adam on (a cycle of) batches; returns the last loss."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        src, lengths, tgt_in, tgt_out = batches(step)
        logits = model(src, lengths, tgt_in).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt_out.reshape(-1), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    return loss.item()


def _greedy(model: Seq2Seq, src, lengths, max_len: int) -> torch.Tensor:
    """Real greedy decoding from BOS with model.step: [B, max_len] token ids."""
    enc = model.encode(src, lengths)
    state = model.init_state(enc)
    tokens = torch.full((src.size(0),), BOS, dtype=torch.long)
    out = []
    for _ in range(max_len):
        step = model.step(tokens, state, enc)
        state, tokens = step.state, step.logits.argmax(-1)
        out.append(tokens)
    return torch.stack(out, 1)


@pytest.mark.parametrize("family", ["sutskever", "cho", "bahdanau", "luong"])
def test_each_family_overfits_a_tiny_batch(family):
    model = _model(src_vocab=14, tgt_vocab=14, family=family, hidden=32, emb_dim=16, dropout=0.0, emb_dropout=0.0)
    batch = _reverse_batch(6, torch.Generator().manual_seed(3))
    loss = _train(model, lambda step: batch, 120, 1e-2)
    assert loss < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bahdanau", "luong"])
def test_attention_families_learn_reverse(family):
    torch.manual_seed(0)
    model = _model(src_vocab=14, tgt_vocab=14, family=family, hidden=64, emb_dim=32, bidirectional=True,
                   dropout=0.0, emb_dropout=0.0, attention="general", input_feeding=True)
    g = torch.Generator().manual_seed(1)
    _train(model, lambda step: _reverse_batch(64, g), 300, 5e-3)
    src, lengths, _, tgt_out = _reverse_batch(300, torch.Generator().manual_seed(99))
    model.eval()
    with torch.no_grad():
        pred = _greedy(model, src, lengths, tgt_out.size(1))
    exact = ((pred == tgt_out) | (tgt_out == 0)).all(1).float().mean().item()
    assert exact >= 0.99
