"""Ensembles: several trained models that decode as one.

An :class:`Ensemble` has the interface search.py uses of a model (``encode``,
``init_state``, ``step``, ``forward``, ``decode``), so greedy, beam search, sampling,
likelihoods and attention plots work on it unchanged. Each step runs every
member's own decoder step on its own state and returns, as ``logits``, the
log of the members' mean next-token probability,
``log(1/N sum_i softmax(logits_i))`` (already normalised, so search's
log-softmax leaves it as it is); attention is the members' mean (members
without attention are left out of it). The members must share their source
and target vocabularies and tokenizers (checked when the ensemble folder is
written and again when it is loaded: checkpoint.write_ensemble /
load_model), and may differ in anything else: size, depth, family.

Shapes as in model.py: B batch (rows), S source length, V target vocabulary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .decoder import StepOutput
from .model import ForwardOutput, Seq2Seq


def _mean_attention(maps: list[Tensor | None]) -> Tensor | None:
    """The mean of the attention maps that exist (all the same shape), or None."""
    present = [a.float() for a in maps if a is not None]
    return torch.stack(present).mean(0) if present else None


def _mean_log_probs(logits: list[Tensor]) -> Tensor:
    """log of the mean of softmax(logits_i) over the members [..., V], in float32."""
    logp = torch.stack([x.float().log_softmax(-1) for x in logits])
    return logp.logsumexp(0) - math.log(len(logits))


@dataclass
class EnsembleEncoded:
    """The members' Encoded outputs; ``pad_mask`` [B, S] is the same for all."""

    parts: list

    @property
    def pad_mask(self) -> Tensor:
        return self.parts[0].pad_mask

    def select(self, idx: Tensor) -> "EnsembleEncoded":
        return EnsembleEncoded([p.select(idx) for p in self.parts])


@dataclass
class EnsembleState:
    """The members' DecoderStates."""

    parts: list

    def select(self, idx: Tensor) -> "EnsembleState":
        return EnsembleState([p.select(idx) for p in self.parts])


class Ensemble(nn.Module):
    """Members that decode together by averaging their next-token probabilities."""

    def __init__(self, members: list[Seq2Seq]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 models, got {len(members)}")
        self.members = nn.ModuleList(members)

    @property
    def supports_fused(self) -> bool:
        return all(m.supports_fused for m in self.members)

    def encode(self, src: Tensor, src_lengths: Tensor) -> EnsembleEncoded:
        return EnsembleEncoded([m.encode(src, src_lengths) for m in self.members])

    def init_state(self, enc: EnsembleEncoded) -> EnsembleState:
        return EnsembleState([m.init_state(e) for m, e in zip(self.members, enc.parts)])

    def step(self, tokens: Tensor, state: EnsembleState, enc: EnsembleEncoded) -> StepOutput:
        """tokens [B] -> StepOutput(log mean probabilities [B, V], states, mean attention [B, S])."""
        outs = [m.step(tokens, s, e) for m, s, e in zip(self.members, state.parts, enc.parts)]
        return StepOutput(_mean_log_probs([o.logits for o in outs]), EnsembleState([o.state for o in outs]),
                          _mean_attention([o.attention for o in outs]))

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, next_input=None,
                fused: bool | None = None) -> ForwardOutput:
        """Teacher-forced log mean probabilities [B, T, V] (likelihoods, scores); no training."""
        return self.decode(self.encode(src, src_lengths), tgt_in, next_input, fused)

    def decode(self, enc: EnsembleEncoded, tgt_in: Tensor, next_input=None,
               fused: bool | None = None) -> ForwardOutput:
        """:meth:`forward` from the members' Encoded sources."""
        if next_input is not None:
            raise ValueError("an ensemble decodes and scores; it is not trained (no next_input)")
        outs = [m.decode(e, tgt_in, fused=fused) for m, e in zip(self.members, enc.parts)]
        return ForwardOutput(_mean_log_probs([o.logits for o in outs]),
                             _mean_attention([o.attention for o in outs]))

    def num_parameters(self) -> int:
        return sum(m.num_parameters() for m in self.members)

    def describe(self) -> str:
        parts = "; ".join(f"({i}) {m.describe()}" for i, m in enumerate(self.members, 1))
        return f"ensemble of {len(self.members)}: {parts}"
