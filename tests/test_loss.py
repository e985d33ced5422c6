"""Masked cross-entropy: padding excluded, label smoothing, fp32 arithmetic."""
import math

import pytest
import torch
import torch.nn.functional as F

from transduce.loss import masked_cross_entropy, token_accuracy, token_losses
from transduce.metrics import perplexity
from transduce.vocab import PAD


def _batch(seed=0, B=3, T=5, V=7):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g)
    target = torch.randint(1, V, (B, T), generator=g)
    target[0, 3:] = PAD
    target[2, 1:] = PAD
    return logits, target


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_padding_does_not_change_the_loss(eps):
    logits, target = _batch()
    extra = torch.randn(3, 4, 7) * 10  # arbitrary logits at new padding positions
    padded_logits = torch.cat([logits, extra], dim=1)
    padded_target = torch.cat([target, torch.full((3, 4), PAD)], dim=1)
    a = masked_cross_entropy(logits, target, eps)
    b = masked_cross_entropy(padded_logits, padded_target, eps)
    assert torch.allclose(a.loss_sum, b.loss_sum, atol=1e-6)
    assert torch.allclose(a.nll_sum, b.nll_sum, atol=1e-6)
    assert (a.n_tokens, a.n_correct) == (b.n_tokens, b.n_correct)
    assert a.n_tokens == 5 + 3 + 1


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_matches_torch_cross_entropy(eps):
    logits, target = _batch(1)
    out = masked_cross_entropy(logits, target, eps)
    ref = F.cross_entropy(logits.reshape(-1, 7), target.reshape(-1), ignore_index=PAD,
                          reduction="sum", label_smoothing=eps)
    nll = F.cross_entropy(logits.reshape(-1, 7), target.reshape(-1), ignore_index=PAD, reduction="sum")
    assert torch.allclose(out.loss_sum, ref, atol=1e-5)
    assert torch.allclose(out.nll_sum, nll, atol=1e-5)
    if eps > 0:
        assert out.loss_sum > out.nll_sum  # smoothing raises the objective on random logits


def test_no_gradient_reaches_padding_and_counts_correct():
    logits, target = _batch(2)
    logits.requires_grad_(True)
    out = masked_cross_entropy(logits, target, 0.1)
    out.loss_sum.backward()
    pad = target == PAD
    assert torch.all(logits.grad[pad] == 0)
    assert torch.all(logits.grad[~pad].abs().sum(-1) > 0)
    expected = int(((logits.argmax(-1) == target) & ~pad).sum())
    assert out.n_correct == expected


def test_per_token_losses_zero_at_padding_and_fp32_under_bf16():
    logits, target = _batch(3)
    loss, nll = token_losses(logits.bfloat16(), target)
    assert loss.dtype == torch.float32 and nll.dtype == torch.float32
    assert torch.all(loss[target == PAD] == 0)
    ref = -torch.log_softmax(logits.bfloat16().float(), -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    assert torch.equal(nll[target != PAD], ref[target != PAD])


def test_accuracy():
    assert token_accuracy(3, 4) == 0.75
    assert math.isnan(token_accuracy(0, 0))


def test_uniform_logits_give_log_v():
    logits = torch.zeros(2, 3, 11)
    target = torch.tensor([[4, 5, PAD], [6, PAD, PAD]])
    out = masked_cross_entropy(logits, target, 0.3)
    assert out.n_tokens == 3
    assert out.nll_sum.item() == pytest.approx(3 * math.log(11), rel=1e-6)
    assert out.loss_sum.item() == pytest.approx(3 * math.log(11), rel=1e-6)
    assert perplexity(out.nll_sum.item(), out.n_tokens) == pytest.approx(11, rel=1e-5)
