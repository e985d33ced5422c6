"""rnn.py: the (h, c) vs h helpers, the step kernel and initialisation."""
from __future__ import annotations

import pytest
import torch

from transduce import rnn as rnnlib



def _state(cell: str, layers: int = 2, batch: int = 4, hidden: int = 6) -> rnnlib.Hidden:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(layers, batch, hidden, generator=g)
    return (h, torch.randn(layers, batch, hidden, generator=g)) if cell == "lstm" else h


def test_registry_maps_names_to_modules():
    assert rnnlib.CELLS == {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
    assert rnnlib.cell_kind(rnnlib.make_rnn("gru", 3, 4, 1)) == "gru"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_select_map_top_layers(cell):
    state = _state(cell)
    idx = torch.tensor([3, 3, 0])
    picked = rnnlib.select(state, idx)
    h, c = rnnlib.split(state)
    ph, pc = rnnlib.split(picked)
    assert (c is None) == (pc is None) == (cell != "lstm")
    assert torch.equal(ph, h[:, [3, 3, 0]])
    if cell == "lstm":
        assert torch.equal(pc, c[:, [3, 3, 0]])
    assert torch.equal(rnnlib.top(state), h[-1])
    assert rnnlib.layers(state) == 2
    doubled = rnnlib.map_hidden(lambda t: 2 * t, state)
    assert torch.equal(rnnlib.top(doubled), 2 * h[-1])
    assert rnnlib.is_lstm_state(state) == (cell == "lstm")


def test_zeros_and_as_cell_state():
    like = torch.ones(1)
    z = rnnlib.zeros("lstm", 3, 2, 5, like)
    assert isinstance(z, tuple) and z[0].shape == (3, 2, 5) and not z[0].any() and not z[1].any()
    assert rnnlib.zeros("gru", 3, 2, 5, like).shape == (3, 2, 5)
    h = torch.randn(1, 2, 5)
    h_c = rnnlib.as_cell_state("lstm", h)
    assert torch.equal(h_c[0], h) and not h_c[1].any()
    assert rnnlib.as_cell_state("rnn", h) is h


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_merge_directions_matches_output_halves(cell):
    torch.manual_seed(0)
    net = rnnlib.make_rnn(cell, 3, 4, 2, bidirectional=True)
    x = torch.randn(2, 5, 3)
    out, final = net(x)  # out [B, T, 8]
    merged = rnnlib.merge_directions(final, 2)
    top = rnnlib.top(merged)  # [B, 8]
    assert rnnlib.layers(merged) == 2
    assert torch.allclose(top[:, :4], out[:, -1, :4])  # forward half: last step
    assert torch.allclose(top[:, 4:], out[:, 0, 4:])  # backward half: first step


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_run_step_equals_module_call(cell):
    torch.manual_seed(0)
    net = rnnlib.make_rnn(cell, 3, 4, 2, dropout=0.3).eval()
    x = torch.randn(5, 3)
    state = _state(cell, 2, 5, 4)
    out, new = rnnlib.run_step(net, x, state)
    ref_out, ref = net(x.unsqueeze(1), state)
    assert torch.allclose(out, ref_out[:, 0], atol=1e-6)
    assert torch.allclose(rnnlib.top(new), rnnlib.top(ref), atol=1e-6)
    if cell == "lstm":
        assert torch.allclose(new[1], ref[1], atol=1e-6)


def test_run_step_under_bf16_autocast_matches_fp32():
    torch.manual_seed(0)
    net = rnnlib.make_rnn("lstm", 3, 4, 2)
    x, state = torch.randn(5, 3), _state("lstm", 2, 5, 4)
    ref, _ = rnnlib.run_step(net, x, state)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = rnnlib.run_step(net, x, state)
        seq, _ = rnnlib.run_seq(net, x.unsqueeze(1), state)
    assert torch.allclose(out.float(), ref, atol=3e-2)
    assert torch.allclose(seq[:, 0].float(), ref, atol=3e-2)


@pytest.mark.parametrize("init", ["uniform", "xavier"])
def test_init_rnn_forget_bias_and_range(init):
    net = rnnlib.make_rnn("lstm", 3, 4, 2)
    rnnlib.init_rnn(net, init, 0.05)
    for layer in range(2):
        b_ih, b_hh = getattr(net, f"bias_ih_l{layer}"), getattr(net, f"bias_hh_l{layer}")
        total = b_ih + b_hh  # gates i, f, g, o
        assert torch.equal(total[4:8], torch.ones(4))
        assert not total[:4].any() and not total[8:].any()
    if init == "uniform":
        assert net.weight_ih_l0.abs().max() <= 0.05
