"""Decoder: one explicit state, one ``step()``, and a fused whole-sequence path.

Families (``cfg.model.family``); s_t is the top decoder state, y_{t-1} the
embedded previous token, c the fixed context (top-layer final encoder state,
``Encoded.context``), c_t an attention context:

- ``sutskever``  s_t = RNN(y_{t-1}, s_{t-1}); output from s_t. The context
  only initialises the state (through the bridge).
- ``cho``        s_t = RNN([y_{t-1}; c], s_{t-1}); output from
  tanh(W_o [s_t; y_{t-1}; c]) (Cho et al. 2014, with tanh instead of maxout).
- ``bahdanau``   c_t = attend(s_{t-1}) (additive score);
  s_t = RNN([y_{t-1}; c_t], s_{t-1}); output from tanh(W_o [s_t; c_t; y_{t-1}])
  (Bahdanau et al. 2015, tanh instead of maxout).
- ``luong``      s_t = RNN([y_{t-1}; h~_{t-1}] with input feeding, else
  y_{t-1}); c_t = attend(s_t) (dot, scaled_dot, general, concat or additive);
  h~_t = tanh(W_c [c_t; s_t]); output from h~_t (Luong et al. 2015).

The output layer is ``logits = W_out dropout(pre) + b``. With
``tie_embeddings`` W_out is the target embedding matrix [V, E]; when the
pre-output size H differs from E a bias-free projection H -> E comes first.

Fused path (sutskever, cho, luong without input feeding): one RNN call over
the whole target, attention for all steps in one batched matmul and one
output projection. Otherwise (bahdanau, input feeding, scheduled sampling)
the step loop runs; without a ``next_input`` callback it still collects the
pre-output states and projects them all in one matmul at the end. The loop
calls ``advance`` (``step`` without the output layer) once per target token.

Init (``init_weights`` in model.py): uniform(-r, r) or Xavier matrices,
zero biases, LSTM forget-gate bias 1, PAD embedding row 0.

Shapes: B batch, T target length, S source length, E embedding size,
H decoder hidden size, H_mem memory size, L decoder layers, V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from . import rnn as rnnlib
from .attention import Attention
from .dropout import Dropout
from .rnn import Hidden
from .vocab import PAD

FAMILIES = ("sutskever", "cho", "bahdanau", "luong")
NextInput = Callable[[int, Tensor, Tensor], Tensor]


@dataclass
class DecoderState:
    """Everything the decoder carries from one step to the next.

    hidden: [L, B, H] (LSTM: (h, c)); feed: [B, H] previous attentional
    state h~ (luong input feeding) or None. Coverage (summed attention) is
    tracked by beam search itself, from the attention each step returns.
    """

    hidden: Hidden
    feed: Tensor | None = None

    def select(self, idx: Tensor) -> "DecoderState":
        """Rows ``idx`` [K] of the batch (repeat/reorder for beam search)."""
        pick = (lambda t: t.index_select(0, idx) if t is not None else None)
        return DecoderState(rnnlib.select(self.hidden, idx), pick(self.feed))


@dataclass
class StepOutput:
    """One decoder step: logits [B, V], next state, attention [B, S] or None."""

    logits: Tensor
    state: DecoderState
    attention: Tensor | None


def per_row(t: Tensor, rows: int) -> Tensor:
    """Encoder rows [B, ...] for ``rows`` decoder rows: W = rows / B consecutive decoder
    rows share an encoder row (beam search keeps one per sentence)."""
    return t if t.size(0) == rows else t.repeat_interleave(rows // t.size(0), dim=0)


class Decoder(nn.Module):
    """Embedding + RNN (+ attention) + readout + output layer for one family."""

    def __init__(self, family: str, cell: str, vocab_size: int, emb_dim: int, hidden: int,
                 n_layers: int, mem_dim: int, attention: str = "general",
                 input_feeding: bool = True, dropout: float = 0.0, emb_dropout: float = 0.0,
                 tie_embeddings: bool = False, embedding: nn.Embedding | None = None):
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"unknown decoder family {family!r} (known: {', '.join(FAMILIES)})")
        self.family, self.cell, self.hidden, self.n_layers = family, cell, hidden, n_layers
        self.input_feeding = family == "luong" and input_feeding
        self.embedding = (embedding if embedding is not None
                          else nn.Embedding(vocab_size, emb_dim, padding_idx=PAD))
        self.emb_dropout = Dropout(emb_dropout)
        extra = {"sutskever": 0, "cho": mem_dim, "bahdanau": mem_dim,
                 "luong": hidden if self.input_feeding else 0}[family]
        self.rnn = rnnlib.make_rnn(cell, emb_dim + extra, hidden, n_layers, dropout)
        self.attention = None
        if family in ("bahdanau", "luong"):
            score = "additive" if family == "bahdanau" else attention
            self.attention = Attention(score, hidden, mem_dim, hidden)
        readout_in = {"sutskever": 0, "cho": hidden + emb_dim + mem_dim,
                      "bahdanau": hidden + mem_dim + emb_dim, "luong": mem_dim + hidden}[family]
        self.readout = nn.Linear(readout_in, hidden, bias=family != "luong") if readout_in else None
        self.out_dropout = Dropout(dropout)
        self.tied = tie_embeddings
        self._build_output(vocab_size, emb_dim, hidden)

    def _build_output(self, vocab_size: int, emb_dim: int, hidden: int) -> None:
        """Output layer: Linear(H, V), or tied to the embedding (with H -> E if needed)."""
        if self.tied:
            self.tie_proj = nn.Linear(hidden, emb_dim, bias=False) if hidden != emb_dim else None
            self.out_bias = nn.Parameter(torch.zeros(vocab_size))
            self.out = None
        else:
            self.out = nn.Linear(hidden, vocab_size)

    @property
    def supports_fused(self) -> bool:
        """True when teacher forcing can run the whole sequence at once."""
        return self.family in ("sutskever", "cho") or (self.family == "luong" and not self.input_feeding)

    def project(self, pre: Tensor) -> Tensor:
        """pre-output [..., H] -> logits [..., V] (dropout, optional tying)."""
        pre = self.out_dropout(pre)
        if not self.tied:
            return self.out(pre)
        if self.tie_proj is not None:
            pre = self.tie_proj(pre)  # [..., E]
        return nn.functional.linear(pre, self.embedding.weight, self.out_bias)

    def init_feed(self, batch: int, like: Tensor) -> Tensor | None:
        """Initial h~_0 [B, H] = 0 for input feeding, else None."""
        return like.new_zeros(batch, self.hidden) if self.input_feeding else None

    def embed(self, tokens: Tensor) -> Tensor:
        """tokens [B] or [B, T] -> embeddings [B, (T,) E] (with dropout)."""
        return self.emb_dropout(self.embedding(tokens))

    def _readout(self, parts: list[Tensor]) -> Tensor:
        """tanh(W [parts]) [..., H], or the single part itself (sutskever)."""
        if self.readout is None:
            return parts[0]
        return torch.tanh(self.readout(torch.cat(parts, dim=-1)))

    def advance(self, emb: Tensor, state: DecoderState, enc: Any) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One step without the output layer: emb [N, E] ->
        (pre-output [N, H], next state, attention [N, S] or None); N is the
        batch of ``enc`` or W times it (W rows per encoder row, see :func:`per_row`)."""
        att, hidden, feed = None, state.hidden, None
        if self.family == "sutskever":
            s, hidden = rnnlib.run_step(self.rnn, emb, hidden)
            pre = s
        elif self.family == "cho":
            ctx = per_row(enc.context, emb.size(0))
            s, hidden = rnnlib.run_step(self.rnn, torch.cat([emb, ctx], -1), hidden)
            pre = self._readout([s, emb, ctx])
        elif self.family == "bahdanau":
            ctx, att = self.attention(rnnlib.top(hidden), enc.keys, enc.memory, enc.pad_mask)
            s, hidden = rnnlib.run_step(self.rnn, torch.cat([emb, ctx.to(emb.dtype)], -1), hidden)
            pre = self._readout([s, ctx.to(s.dtype), emb])
        else:  # luong
            x = torch.cat([emb, state.feed.to(emb.dtype)], -1) if self.input_feeding else emb
            s, hidden = rnnlib.run_step(self.rnn, x, hidden)
            ctx, att = self.attention(s, enc.keys, enc.memory, enc.pad_mask)
            pre = self._readout([ctx.to(s.dtype), s])
            feed = pre if self.input_feeding else None
        return pre, DecoderState(hidden, feed), att

    def step(self, tokens: Tensor, state: DecoderState, enc: Any) -> StepOutput:
        """tokens [B] (previous outputs, BOS first) -> StepOutput(logits [B, V], ...)."""
        pre, state, att = self.advance(self.embed(tokens), state, enc)
        return StepOutput(self.project(pre), state, att)

    def fused(self, tgt_in: Tensor, state: DecoderState, enc: Any) -> tuple[Tensor, Tensor | None]:
        """Whole-sequence teacher forcing: tgt_in [B, T] ->
        (logits [B, T, V], attention [B, T, S] or None). Needs ``supports_fused``."""
        if not self.supports_fused:
            raise ValueError(f"the {self.family} decoder (input feeding: {self.input_feeding}) has no fused path")
        emb = self.embed(tgt_in)  # [B, T, E]
        att = None
        if self.family == "cho":
            ctx = enc.context.unsqueeze(1).expand(-1, emb.size(1), -1)  # [B, T, H_mem]
            s, _ = rnnlib.run_seq(self.rnn, torch.cat([emb, ctx.to(emb.dtype)], -1), state.hidden)
            pre = self._readout([s, emb.to(s.dtype), ctx.to(s.dtype)])
        else:
            s, _ = rnnlib.run_seq(self.rnn, emb, state.hidden)  # [B, T, H]
            pre = s
            if self.family == "luong":
                ctx, att = self.attention(s, enc.keys, enc.memory, enc.pad_mask)
                pre = self._readout([ctx.to(s.dtype), s])
        return self.project(pre), att

    def loop(self, tgt_in: Tensor, state: DecoderState, enc: Any,
             next_input: NextInput | None = None) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing (or scheduled sampling via ``next_input``) by the
        step loop: tgt_in [B, T] -> (logits [B, T, V], attention [B, T, S] or None)."""
        steps = tgt_in.size(1)
        # embedded once; unbind: one backward node (indexing [:, t] would zero-fill a
        # [B, T, E] gradient at every step)
        gold_emb = self.embed(tgt_in).unbind(1) if next_input is None else None  # T x [B, E]
        tokens = tgt_in[:, 0]
        pres, logits, atts = [], [], []
        for t in range(steps):
            emb = gold_emb[t] if gold_emb is not None else self.embed(tokens)
            pre, state, att = self.advance(emb, state, enc)
            if att is not None:
                atts.append(att)
            if next_input is None:
                pres.append(pre)
                continue
            logits.append(self.project(pre))
            if t + 1 < steps:
                tokens = next_input(t, logits[-1], tgt_in[:, t + 1])
        out = self.project(torch.stack(pres, 1)) if next_input is None else torch.stack(logits, 1)
        return out, (torch.stack(atts, 1) if atts else None)  # [B, T, V], [B, T, S]
