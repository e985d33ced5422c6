"""encoder.py: packed (bi)RNN encoder, padding invariance, final states."""
from __future__ import annotations

import pytest
import torch

from transduce import rnn as rnnlib
from transduce.encoder import Encoder



def _encoder(cell: str, bidirectional: bool, layers: int) -> Encoder:
    torch.manual_seed(0)
    return Encoder(12, 5, 8, layers, cell, bidirectional, dropout=0.3, emb_dropout=0.2).eval()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_padding_changes_nothing(cell, bidirectional, layers):
    enc = _encoder(cell, bidirectional, layers)
    short = torch.tensor([[5, 6, 7]])
    mem1, fin1 = enc(short, torch.tensor([3]))
    batch = torch.tensor([[4, 5, 6, 7, 8, 9, 0], [5, 6, 7, 0, 0, 0, 0]])  # extra pad column too
    mem2, fin2 = enc(batch, torch.tensor([6, 3]))
    assert mem2.shape == (2, 7, 8)
    assert torch.allclose(mem2[1, :3], mem1[0], atol=1e-6)
    assert not mem2[1, 3:].any() and not mem2[0, 6:].any()  # zero at padding
    assert rnnlib.layers(fin2) == layers
    assert torch.allclose(rnnlib.top(fin2)[1], rnnlib.top(fin1)[0], atol=1e-6)
    if cell == "lstm":
        assert torch.allclose(fin2[1][:, 1], fin1[1][:, 0], atol=1e-6)


def test_final_state_halves_match_memory_at_sentence_ends():
    enc = _encoder("gru", True, 2)
    src = torch.tensor([[4, 5, 6, 7], [8, 9, 0, 0]])
    memory, final = enc(src, torch.tensor([4, 2]))
    top = rnnlib.top(final)  # [B, 8]
    assert torch.allclose(top[1, :4], memory[1, 1, :4])  # forward: last real token
    assert torch.allclose(top[1, 4:], memory[1, 0, 4:])  # backward: first token


def test_dropout_only_in_training_and_odd_bidirectional_size_rejected():
    enc = _encoder("lstm", True, 2)
    src, lengths = torch.tensor([[4, 5, 6, 7]]), torch.tensor([4])
    assert torch.equal(enc(src, lengths)[0], enc(src, lengths)[0])
    enc.train()
    assert not torch.equal(enc(src, lengths)[0], enc(src, lengths)[0])
    with pytest.raises(ValueError):
        Encoder(12, 5, 7, 1, "lstm", True)


def test_lengths_on_any_device_and_bf16_autocast():
    enc = _encoder("lstm", True, 2)
    src, lengths = torch.tensor([[4, 5, 6], [7, 0, 0]]), torch.tensor([3, 1])
    ref, _ = enc(src, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mem, _ = enc(src, lengths)
    assert mem.dtype == torch.bfloat16
    assert torch.allclose(mem.float(), ref, atol=3e-2)
