"""Seq2Seq: encoder -> bridge -> decoder, built from ``cfg.model``.

Bridge (``cfg.model.bridge``), encoder final state [L_enc, B, H_mem] (both
directions already concatenated) -> decoder initial state [L_dec, B, H]:

- ``last``    the encoder's final states, projected by a linear map only if
  H_mem != H. LSTM: h from the encoder's h, c from its c (own projection).
- ``linear``  h0 = tanh(W_h h_enc + b_h); LSTM c0 = W_c c_enc + b_c (no tanh:
  a cell memory is unbounded).
- ``mean``    h0 = masked mean of the memory over non-pad positions (projected
  if H_mem != H), the same for every decoder layer; LSTM c0 = 0.
- ``zero``    all zeros.

Layer counts may differ: decoder layers are aligned from the top, decoder
layer i taking encoder layer max(0, L_enc - L_dec + i) (a 2-layer encoder
feeds its top layer to a 1-layer decoder; a 1-layer encoder feeds both
layers of a 2-layer decoder).

Initialisation (``init_weights``): every weight matrix and embedding
uniform(-init_range, init_range) (``init: uniform``) or Xavier uniform
(``init: xavier``); biases 0; LSTM forget-gate biases 1 (see rnn.py); the
PAD row (id 0) of every embedding 0, kept 0 by ``padding_idx``.

Embedding sharing: ``share_embeddings`` uses one embedding for source and
target (vocabulary sizes must be equal); ``tie_embeddings`` reuses the
target embedding as the output matrix (decoder.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import rnn as rnnlib
from .config import ModelConfig
from .decoder import Decoder, DecoderState, NextInput, StepOutput
from .encoder import Encoder
from .errors import ConfigError
from .rnn import Hidden

__all__ = ["Bridge", "DecoderState", "Encoded", "ForwardOutput", "Seq2Seq", "StepOutput"]


@dataclass
class Encoded:
    """The encoder's output, everything the decoder reads.

    memory [B, S, H_mem]; pad_mask [B, S] True at padding; keys [B, S, K]
    attention keys projected once (None without attention); context
    [B, H_mem] top-layer final encoder state (sutskever/cho) or None.
    Extension: final, the encoder's final state [L_enc, B, H_mem] (LSTM:
    (h, c)) that the bridge turns into the decoder's initial state.
    """

    memory: Tensor
    pad_mask: Tensor
    keys: Tensor | None = None
    context: Tensor | None = None
    final: Hidden | None = None

    def select(self, idx: Tensor) -> "Encoded":
        """Rows ``idx`` [K] of the batch (repeat/reorder for beam search)."""
        pick = (lambda t: t.index_select(0, idx) if t is not None else None)
        final = rnnlib.select(self.final, idx) if self.final is not None else None
        return Encoded(pick(self.memory), pick(self.pad_mask), pick(self.keys), pick(self.context), final)


@dataclass
class ForwardOutput:
    """logits [B, T, V]; attention [B, T, S] (None for sutskever/cho)."""

    logits: Tensor
    attention: Tensor | None


def masked_mean(memory: Tensor, pad_mask: Tensor) -> Tensor:
    """memory [B, S, H], pad_mask [B, S] -> mean over non-pad positions [B, H]."""
    keep = (~pad_mask).unsqueeze(-1).to(memory.dtype)  # [B, S, 1]
    return (memory * keep).sum(1) / keep.sum(1).clamp_min(1.0)


class Bridge(nn.Module):
    """Encoder final state -> decoder initial state (see the module docstring)."""

    KINDS = ("last", "linear", "mean", "zero")

    def __init__(self, kind: str, cell: str, enc_layers: int, dec_layers: int, mem_dim: int, hidden: int):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"unknown bridge {kind!r} (known: {', '.join(self.KINDS)})")
        self.kind, self.cell, self.dec_layers, self.hidden = kind, cell, dec_layers, hidden
        self.layer_idx = [max(0, enc_layers - dec_layers + i) for i in range(dec_layers)]
        project = kind == "linear" or (kind in ("last", "mean") and mem_dim != hidden)
        self.proj_h = nn.Linear(mem_dim, hidden) if project else None
        lstm_c = project and cell == "lstm" and kind != "mean"
        self.proj_c = nn.Linear(mem_dim, hidden) if lstm_c else None

    def forward(self, final: Hidden, memory: Tensor, pad_mask: Tensor) -> Hidden:
        """final [L_enc, B, H_mem], memory [B, S, H_mem], pad_mask [B, S] -> [L_dec, B, H]."""
        batch = memory.size(0)
        if self.kind == "zero":
            return rnnlib.zeros(self.cell, self.dec_layers, batch, self.hidden, memory)
        if self.kind == "mean":
            h = masked_mean(memory, pad_mask)  # [B, H_mem]
            h = self.proj_h(h) if self.proj_h is not None else h
            h = h.unsqueeze(0).expand(self.dec_layers, -1, -1).contiguous()  # [L_dec, B, H]
            return rnnlib.as_cell_state(self.cell, h)
        idx = torch.tensor(self.layer_idx, device=memory.device)
        picked = rnnlib.map_hidden(lambda t: t.index_select(0, idx), final)  # [L_dec, B, H_mem]
        if self.proj_h is None:
            return rnnlib.contiguous(picked)
        h, c = rnnlib.split(picked)
        h = self.proj_h(h)
        h = torch.tanh(h) if self.kind == "linear" else h
        c = self.proj_c(c) if self.proj_c is not None else None
        return rnnlib.as_cell_state(self.cell, h, c)


def init_weights(model: nn.Module, init: str, init_range: float) -> None:
    """Initialise ``model`` in place (see the module docstring)."""
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            rnnlib.init_rnn(module, init, init_range)
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            if init == "xavier":
                nn.init.xavier_uniform_(module.weight)
            else:
                nn.init.uniform_(module.weight, -init_range, init_range)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()


def _check(cfg: ModelConfig, src_vocab: int, tgt_vocab: int, mem_dim: int) -> None:
    """Raise ConfigError for model options that cannot work together."""
    if cfg.share_embeddings and src_vocab != tgt_vocab:
        raise ConfigError(f"config key 'model.share_embeddings' needs equal source and target "
                          f"vocabularies, got {src_vocab} and {tgt_vocab} (use tokenizer.joint: true)")
    if cfg.family == "luong" and cfg.attention in ("dot", "scaled_dot") and mem_dim != cfg.hidden:
        raise ConfigError(f"config key 'model.attention': {cfg.attention} needs model.enc_hidden "
                          f"({mem_dim}) equal to model.hidden ({cfg.hidden}); use general or concat")


class Seq2Seq(nn.Module):
    """A recurrent encoder-decoder of one family (see decoder.py)."""

    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int):
        super().__init__()
        mem_dim = cfg.enc_hidden or cfg.hidden
        _check(cfg, src_vocab, tgt_vocab, mem_dim)
        self.cfg = cfg
        self.encoder = Encoder(src_vocab, cfg.emb_dim, mem_dim, cfg.enc_layers, cfg.cell,
                               cfg.bidirectional, cfg.dropout, cfg.emb_dropout)
        shared = self.encoder.embedding if cfg.share_embeddings else None
        self.decoder = Decoder(cfg.family, cfg.cell, tgt_vocab, cfg.emb_dim, cfg.hidden,
                               cfg.dec_layers, mem_dim, cfg.attention, cfg.input_feeding,
                               cfg.dropout, cfg.emb_dropout, cfg.tie_embeddings, shared)
        self.bridge = Bridge(cfg.bridge, cfg.cell, cfg.enc_layers, cfg.dec_layers, mem_dim, cfg.hidden)
        init_weights(self, cfg.init, cfg.init_range)

    @classmethod
    def from_config(cls, cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> "Seq2Seq":
        """Build from ``cfg.model`` and the two vocabulary sizes."""
        return cls(cfg, src_vocab, tgt_vocab)

    @property
    def supports_fused(self) -> bool:
        """True when teacher forcing may run as one whole-sequence pass (no input feeding)."""
        return self.decoder.supports_fused

    def encode(self, src: Tensor, src_lengths: Tensor) -> Encoded:
        """src [B, S], src_lengths [B] -> Encoded (keys projected once here)."""
        memory, final = self.encoder(src, src_lengths)
        positions = torch.arange(src.size(1), device=src.device)
        pad_mask = positions.unsqueeze(0) >= src_lengths.to(src.device).unsqueeze(1)  # [B, S]
        att = self.decoder.attention
        keys = att.precompute_keys(memory) if att is not None else None
        context = rnnlib.top(final) if self.cfg.family in ("sutskever", "cho") else None
        return Encoded(memory, pad_mask, keys, context, final)

    def init_state(self, enc: Encoded) -> DecoderState:
        """The decoder's initial state from the bridge."""
        hidden = self.bridge(enc.final, enc.memory, enc.pad_mask)
        return DecoderState(hidden, self.decoder.init_feed(enc.memory.size(0), enc.memory))

    def step(self, tokens: Tensor, state: DecoderState, enc: Encoded) -> StepOutput:
        """tokens [B] -> StepOutput(logits [B, V], state, attention [B, S] | None)."""
        return self.decoder.step(tokens, state, enc)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor,
                next_input: NextInput | None = None, fused: bool | None = None) -> ForwardOutput:
        """src [B, S], src_lengths [B], tgt_in [B, T] (BOS first) -> ForwardOutput:
        :meth:`encode`, then :meth:`decode`."""
        return self.decode(self.encode(src, src_lengths), tgt_in, next_input, fused)

    def decode(self, enc: Encoded, tgt_in: Tensor, next_input: NextInput | None = None,
               fused: bool | None = None) -> ForwardOutput:
        """Encoded sources (B rows), tgt_in [B, T] (BOS first) -> ForwardOutput.

        Teacher forcing runs the fused path when ``supports_fused`` and
        ``fused`` is not False; ``next_input(t, logits_t [B, V], gold_next [B])
        -> [B]`` picks the input of step t+1 and forces the step loop.
        """
        if fused and (next_input is not None or not self.supports_fused):
            raise ValueError("fused=True needs teacher forcing (no next_input) and no input feeding")
        state = self.init_state(enc)
        if next_input is None and self.supports_fused and fused is not False:
            logits, att = self.decoder.fused(tgt_in, state, enc)
        else:
            logits, att = self.decoder.loop(tgt_in, state, enc, next_input)
        return ForwardOutput(logits, att)

    def num_parameters(self) -> int:
        """Number of distinct trainable parameters (shared ones counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def describe(self) -> str:
        """One line: family, cell, sizes, attention, bridge, parameter count."""
        c = self.cfg
        att = {"bahdanau": " att=additive", "luong": f" att={c.attention} feed={'on' if c.input_feeding else 'off'}"}
        return (f"{c.family} {c.cell}: enc {c.enc_layers}x{self.encoder.hidden}"
                f"{' bi' if c.bidirectional else ''}, dec {c.dec_layers}x{c.hidden}, emb {c.emb_dim}"
                f"{att.get(c.family, '')}, bridge={c.bridge}"
                f"{', tied' if c.tie_embeddings else ''}{', shared emb' if c.share_embeddings else ''}"
                f", {self.num_parameters():,} parameters")
