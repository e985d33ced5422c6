"""One attention class; only the score function differs between types.

Scores (``SCORES`` registry), for a query q (decoder state) and memory m_s:

- ``dot``         q . m_s                        (Luong; needs H_q == H_mem)
- ``scaled_dot``  q . m_s / sqrt(H_q)            (Vaswani-style scaling)
- ``general``     q . (W_a m_s)                  (Luong "general")
- ``additive``    v . tanh(W_q q + W_k m_s + b)  (Bahdanau)
- ``concat``      v . tanh(W_a [q; m_s])         (Luong "concat"; the same form
  as additive without the bias: W_a splits into a query and a memory half)

The memory side of every score (``W_a m_s``, ``W_k m_s + b``, or ``m_s``
itself) is computed ONCE per batch by :meth:`Attention.precompute_keys` and
kept in ``Encoded.keys``; each decoder step only projects its query.

Padding gets exactly zero weight: scores are filled with -inf at padding
before the softmax and the weights are zeroed there afterwards, which also
turns the NaN row of an all-padding source into zeros.

Shapes: B batch, T query steps, S source length, H_q query size, H_mem
memory size, A attention size.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class DotScore(nn.Module):
    """q . k with keys = memory (no parameters)."""

    def __init__(self, query_dim: int, mem_dim: int, att_dim: int, scaled: bool = False):
        super().__init__()
        if query_dim != mem_dim:
            raise ValueError(f"dot attention needs equal query and memory sizes, got {query_dim} and {mem_dim}")
        self.scale = 1.0 / math.sqrt(query_dim) if scaled else 1.0

    def keys(self, memory: Tensor) -> Tensor:
        """memory [B, S, H_mem] -> keys [B, S, H_mem]."""
        return memory

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        """query [B, T, H_q], keys [B, S, H_q] -> scores [B, T, S]."""
        scores = torch.bmm(query, keys.transpose(1, 2))
        return scores * self.scale if self.scale != 1.0 else scores


class ScaledDotScore(DotScore):
    """q . k / sqrt(H_q)."""

    def __init__(self, query_dim: int, mem_dim: int, att_dim: int):
        super().__init__(query_dim, mem_dim, att_dim, scaled=True)


class GeneralScore(DotScore):
    """q . (W_a m): keys = W_a m [B, S, H_q]."""

    def __init__(self, query_dim: int, mem_dim: int, att_dim: int):
        super().__init__(query_dim, query_dim, att_dim)
        self.proj = nn.Linear(mem_dim, query_dim, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.proj(memory)


class AdditiveScore(nn.Module):
    """v . tanh(W_q q + W_k m + b): keys = W_k m + b [B, S, A]."""

    def __init__(self, query_dim: int, mem_dim: int, att_dim: int, bias: bool = True):
        super().__init__()
        self.query_proj = nn.Linear(query_dim, att_dim, bias=False)
        self.key_proj = nn.Linear(mem_dim, att_dim, bias=bias)
        self.v = nn.Linear(att_dim, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.key_proj(memory)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        """query [B, T, H_q], keys [B, S, A] -> scores [B, T, S]."""
        q = self.query_proj(query).unsqueeze(2)  # [B, T, 1, A]
        return self.v(torch.tanh(q + keys.unsqueeze(1))).squeeze(-1)  # [B, T, S]


class ConcatScore(AdditiveScore):
    """v . tanh(W_a [q; m]) (Luong): additive without the bias."""

    def __init__(self, query_dim: int, mem_dim: int, att_dim: int):
        super().__init__(query_dim, mem_dim, att_dim, bias=False)


SCORES: dict[str, type[nn.Module]] = {
    "dot": DotScore,
    "scaled_dot": ScaledDotScore,
    "general": GeneralScore,
    "additive": AdditiveScore,
    "concat": ConcatScore,
}


class Attention(nn.Module):
    """Attention over an encoder memory with a pluggable score (``SCORES`` key).

    ``att_dim`` is the hidden size of the additive/concat scores (A).
    """

    def __init__(self, score: str, query_dim: int, mem_dim: int, att_dim: int | None = None):
        super().__init__()
        self.kind = score
        self.score = SCORES[score](query_dim, mem_dim, att_dim or query_dim)

    def precompute_keys(self, memory: Tensor) -> Tensor:
        """memory [B, S, H_mem] -> keys [B, S, K]; once per batch."""
        return self.score.keys(memory)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor,
                pad_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Attend with one query per row or a whole query sequence at once.

        query [B, H_q] or [B, T, H_q]; keys [B, S, K]; memory [B, S, H_mem];
        pad_mask [B, S] True at padding ->
        (context [B, (T,) H_mem], weights [B, (T,) S]) with rows summing to
        1 and exactly 0 at padding (all-padding rows are all 0).

        One query per row may also come as [B*W, H_q]: W consecutive rows per
        memory row (the hypotheses of a beam), answered as [B*W, ...].
        """
        single = query.dim() == 2
        # [B, T, H_q]; W rows per memory row are W queries at once
        q = query.view(keys.size(0), -1, query.size(-1)) if single else query
        scores = self.score(q, keys)  # [B, T, S]
        mask = pad_mask.unsqueeze(1)  # [B, 1, S]
        weights = torch.softmax(scores.float().masked_fill(mask, float("-inf")), dim=-1)
        weights = weights.masked_fill(mask, 0.0)  # float32, exactly 0 at padding
        context = torch.bmm(weights.to(memory.dtype), memory)  # [B, T, H_mem]
        if single:
            return context.flatten(0, 1), weights.flatten(0, 1)
        return context, weights
