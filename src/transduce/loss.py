"""Masked (label-smoothed) cross-entropy over padded target sequences.

Padding positions (``target == PAD``) are excluded by an explicit mask built
from the target, so a batch padded to any length gives the same sums. All
arithmetic is done in fp32, even when the logits come out of a bf16/fp16
autocast region. Sums (not means) are returned so that gradient accumulation
and distributed training can normalise by the *global* number of target
tokens (see ``train.py``).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .vocab import PAD


class LossOutput(NamedTuple):
    """Sums over the non-pad target tokens of one batch.

    loss_sum:  0-dim float tensor, the training objective (label-smoothed
               when label_smoothing > 0), differentiable.
    n_tokens:  int, number of non-pad target tokens.
    n_correct: int, tokens whose argmax equals the target.
    nll_sum:   0-dim float tensor (detached), plain negative log-likelihood,
               for perplexity.
    """

    loss_sum: Tensor
    n_tokens: int
    n_correct: int
    nll_sum: Tensor


def token_losses(logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
    """Per-token losses.

    logits [B, T, V], target [B, T] -> (loss [B, T], nll [B, T]) in fp32, both
    exactly 0 at padding. ``loss`` is (1 - eps) * nll + eps * mean_v(-log p_v)
    (uniform label smoothing over the whole vocabulary, as in
    ``F.cross_entropy(label_smoothing=eps)``); ``nll`` is -log p_target.
    """
    loss, nll, _ = _token_terms(logits, target, label_smoothing, want_correct=False)
    return loss, nll


def _token_terms(logits: Tensor, target: Tensor, label_smoothing: float,
                 want_correct: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """(loss, nll, correct or None) [B, T]: :func:`token_losses` and, if wanted, whether
    the target has the highest probability (bool, False at padding; a tie counts)."""
    if logits.dim() != 3 or target.shape != logits.shape[:2]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match")
    mask = target != PAD  # [B, T]
    logp = F.log_softmax(logits.float(), dim=-1)  # [B, T, V]
    safe_target = target.masked_fill(~mask, PAD)  # any valid index; masked out below
    target_logp = logp.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)  # [B, T]
    nll = -target_logp
    if label_smoothing > 0.0:
        smooth = -logp.mean(dim=-1)  # [B, T]
        loss = (1.0 - label_smoothing) * nll + label_smoothing * smooth
    else:
        loss = nll
    # amax of fp32 is vectorised; argmax (of bf16 logits above all) is ~10x slower
    correct = (target_logp >= logp.amax(dim=-1)) & mask if want_correct else None
    zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
    return torch.where(mask, loss, zero), torch.where(mask, nll, zero), correct


def masked_cross_entropy(logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> LossOutput:
    """Summed masked cross-entropy.

    logits [B, T, V] (any float dtype), target [B, T] with PAD at padding.
    ``n_correct`` counts target tokens that have the highest probability.
    """
    loss, nll, correct = _token_terms(logits, target, label_smoothing, want_correct=True)
    mask = target != PAD  # [B, T]
    return LossOutput(
        loss_sum=loss.sum(),
        n_tokens=int(mask.sum()),
        n_correct=int(correct.sum()),
        nll_sum=nll.sum().detach(),
    )


def token_accuracy(n_correct: int, n_tokens: int) -> float:
    """Fraction of target tokens predicted exactly (argmax); nan with no tokens."""
    return n_correct / n_tokens if n_tokens > 0 else float("nan")
