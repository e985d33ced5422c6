"""attention.py: one Attention class, pluggable scores, exact zero at padding."""
from __future__ import annotations

import math

import pytest
import torch

from transduce.attention import SCORES, Attention



SCORE_NAMES = ["dot", "scaled_dot", "general", "additive", "concat"]


def _inputs(batch: int = 3, src_len: int = 5, dim: int = 6, steps: int = 4):
    g = torch.Generator().manual_seed(0)
    memory = torch.randn(batch, src_len, dim, generator=g)
    pad_mask = torch.zeros(batch, src_len, dtype=torch.bool)
    pad_mask[1, 3:] = True
    pad_mask[2, 1:] = True
    query = torch.randn(batch, steps, dim, generator=g)
    return query, memory, pad_mask


def test_registry_has_every_score():
    assert set(SCORES) == set(SCORE_NAMES)


@pytest.mark.parametrize("score", SCORE_NAMES)
def test_rows_sum_to_one_and_padding_gets_exactly_zero(score):
    torch.manual_seed(0)
    att = Attention(score, 6, 6, 7)
    query, memory, pad_mask = _inputs()
    keys = att.precompute_keys(memory)
    context, weights = att(query, keys, memory, pad_mask)
    assert context.shape == (3, 4, 6) and weights.shape == (3, 4, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 4), atol=1e-6)
    assert torch.all(weights.masked_select(pad_mask.unsqueeze(1).expand_as(weights)) == 0.0)
    assert torch.allclose(weights[2, :, 0], torch.ones(4))  # one real position
    assert torch.allclose(context, torch.bmm(weights, memory), atol=1e-6)


@pytest.mark.parametrize("score", SCORE_NAMES)
def test_sequence_query_equals_one_query_at_a_time(score):
    torch.manual_seed(0)
    att = Attention(score, 6, 6)
    query, memory, pad_mask = _inputs()
    keys = att.precompute_keys(memory)
    ctx_all, w_all = att(query, keys, memory, pad_mask)
    for t in range(query.size(1)):
        ctx, w = att(query[:, t], keys, memory, pad_mask)
        assert ctx.shape == (3, 6) and w.shape == (3, 5)
        assert torch.allclose(ctx, ctx_all[:, t], atol=1e-6)
        assert torch.allclose(w, w_all[:, t], atol=1e-6)


def test_scores_match_their_formulas():
    torch.manual_seed(0)
    query, memory, pad_mask = _inputs(steps=1)
    q = query[:, 0]
    dot = Attention("dot", 6, 6)
    _, w = dot(q, dot.precompute_keys(memory), memory, pad_mask)
    raw = torch.einsum("bh,bsh->bs", q, memory).masked_fill(pad_mask, float("-inf"))
    assert torch.allclose(w, torch.softmax(raw, -1), atol=1e-6)
    scaled = Attention("scaled_dot", 6, 6)
    _, w = scaled(q, scaled.precompute_keys(memory), memory, pad_mask)
    assert torch.allclose(w, torch.softmax(raw / math.sqrt(6), -1), atol=1e-6)
    general = Attention("general", 6, 4)  # memory 4 -> query 6
    mem4 = memory[..., :4]
    _, w = general(q, general.precompute_keys(mem4), mem4, pad_mask)
    raw = torch.einsum("bh,bsh->bs", q, general.score.proj(mem4)).masked_fill(pad_mask, float("-inf"))
    assert torch.allclose(w, torch.softmax(raw, -1), atol=1e-6)
    add = Attention("additive", 6, 6, 5)
    s = add.score
    _, w = add(q, add.precompute_keys(memory), memory, pad_mask)
    raw = s.v(torch.tanh(s.query_proj(q)[:, None] + s.key_proj(memory))).squeeze(-1)
    assert torch.allclose(w, torch.softmax(raw.masked_fill(pad_mask, float("-inf")), -1), atol=1e-6)
    assert Attention("concat", 6, 6).score.key_proj.bias is None


def test_all_padding_row_gives_zeros_and_finite_gradients():
    att = Attention("general", 6, 6)
    query, memory, pad_mask = _inputs()
    pad_mask[0] = True
    memory.requires_grad_(True)
    context, weights = att(query, att.precompute_keys(memory), memory, pad_mask)
    assert not weights[0].any() and not context[0].any()
    assert torch.isfinite(weights).all()
    context.sum().backward()
    assert torch.isfinite(memory.grad).all()


def test_dot_needs_equal_sizes():
    with pytest.raises(ValueError):
        Attention("dot", 6, 8)


@pytest.mark.parametrize("score", SCORE_NAMES)
def test_rows_sharing_a_memory_row_equal_a_copied_memory(score):
    # beam search: W = 4 consecutive query rows per memory row, memory not copied
    query, memory, pad_mask = _inputs(steps=4)
    att = Attention(score, 6, 6)
    keys = att.precompute_keys(memory)
    flat = query.reshape(-1, 6)  # [B*W, H]
    ctx, w = att(flat, keys, memory, pad_mask)
    rep = lambda t: t.repeat_interleave(4, dim=0)
    want_ctx, want_w = att(flat, rep(keys), rep(memory), rep(pad_mask))
    assert ctx.shape == (12, 6) and w.shape == (12, 5)
    assert torch.allclose(ctx, want_ctx, atol=1e-6) and torch.allclose(w, want_w, atol=1e-6)
