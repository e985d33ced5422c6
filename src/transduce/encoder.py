"""Encoder: embedding -> dropout -> packed (bi)RNN -> memory + final states.

The source is packed (``enforce_sorted=False``), so padding never enters the
recurrence and a sentence encodes identically whatever it is batched with.
No Python loop over time steps.

Shapes: B batch, S source length, E embedding size, L layers, H_mem the
memory size (both directions concatenated; per direction H_mem / 2).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import rnn as rnnlib
from .dropout import Dropout
from .rnn import Hidden
from .vocab import PAD


class Encoder(nn.Module):
    """Embedding + multi-layer (bidirectional) LSTM/GRU/RNN over a padded batch.

    ``hidden`` is the memory size H_mem: for a bidirectional encoder each
    direction has ``hidden // 2`` units. Dropout ``emb_dropout`` applies to
    the embeddings, ``dropout`` between layers and on the top layer's output.
    ``embedding`` may be given to share it with the decoder.
    """

    def __init__(self, vocab_size: int, emb_dim: int, hidden: int, n_layers: int,
                 cell: str = "lstm", bidirectional: bool = True, dropout: float = 0.0,
                 emb_dropout: float = 0.0, embedding: nn.Embedding | None = None):
        super().__init__()
        self.directions = 2 if bidirectional else 1
        if hidden % self.directions:
            raise ValueError(f"bidirectional encoder needs an even hidden size, got {hidden}")
        self.hidden = hidden
        self.n_layers = n_layers
        self.cell = cell
        self.embedding = (embedding if embedding is not None
                          else nn.Embedding(vocab_size, emb_dim, padding_idx=PAD))
        self.emb_dropout = Dropout(emb_dropout)
        self.rnn = rnnlib.make_rnn(cell, emb_dim, hidden // self.directions, n_layers,
                                   dropout, bidirectional)
        self.out_dropout = Dropout(dropout)

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, Hidden]:
        """src [B, S] (PAD = 0), src_lengths [B] (>= 1) ->
        (memory [B, S, H_mem] zero at padding, final state [L, B, H_mem]).

        The final state of a bidirectional layer is [fwd at its last token;
        bwd at the first token], the same halves as the memory.
        """
        emb = self.emb_dropout(self.embedding(src))  # [B, S, E]
        packed = pack_padded_sequence(rnnlib.to_autocast_dtype(emb), src_lengths.detach().to("cpu", torch.int64),
                                      batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        final = rnnlib.merge_directions(final, self.directions)  # [L, B, H_mem]
        return self.out_dropout(memory), final
