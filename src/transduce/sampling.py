"""Scheduled sampling (Bengio et al. 2015): the decoder's next input, gold or predicted.

The ratio itself (the probability of feeding the gold token at a step) comes
from ``schedules.teacher_forcing_ratio``.

Mixing
------
One coin per target token: for every sentence and every decoder step a
uniform number ``u`` is drawn from the given ``torch.Generator``; the next
input is the gold token when ``u < ratio``, otherwise the model's own
prediction (argmax, or a sample from ``softmax(logits / temperature)`` when
``temperature > 0``), detached. Positions whose gold input is PAD stay PAD.
A ratio of 1.0 is pure teacher forcing: ``make_next_input`` returns None, no
random number is drawn and the model may use its fused path.

Two passes (``tf_two_pass``): ``two_pass_inputs`` runs a teacher-forced pass
without gradients for the predictions at every position and mixes gold and
predicted tokens by the coins; the trainer's second, fused pass on the mixed
inputs carries the gradients.
It differs from the step loop only in that the predictions come from gold
prefixes; for a fixed mixed input sequence both give the same logits.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .decoder import NextInput
from .vocab import PAD


def predict(logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
    """Model's own next tokens, detached.

    logits [..., V] -> LongTensor [...]: argmax when temperature <= 0, else a
    sample from softmax(logits / temperature) drawn with ``generator``.
    """
    logits = logits.detach()
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])  # [N, V]
    if generator is not None and flat.device != generator.device:
        flat = flat.to(generator.device)
    drawn = torch.multinomial(flat, 1, generator=generator).squeeze(-1)  # [N]
    return drawn.to(logits.device).reshape(probs.shape[:-1])


def draw_coins(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform [0, 1) coins of ``shape`` from ``generator`` (on its device), moved to ``device``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def mix(gold: Tensor, predicted: Tensor, coins: Tensor, ratio: float) -> Tensor:
    """Gold where coin < ratio, else predicted; PAD stays PAD. All [...] shaped alike."""
    chosen = torch.where(coins < ratio, gold, predicted)
    return torch.where(gold == PAD, gold, chosen)


def make_next_input(ratio: float, temperature: float = 0.0,
                    generator: torch.Generator | None = None) -> NextInput | None:
    """The ``next_input(t, logits_t [B, V], gold_next [B]) -> [B]`` callable.

    Returns None for ratio >= 1 (pure teacher forcing: forward's fused path,
    no random numbers drawn).
    """
    if ratio >= 1.0:
        return None

    def next_input(t: int, logits_t: Tensor, gold_next: Tensor) -> Tensor:
        """Input of step t+1: gold or the prediction of step t, one coin per sentence."""
        predicted = predict(logits_t, temperature, generator)  # [B]
        if ratio <= 0.0:
            return mix(gold_next, predicted, torch.ones_like(gold_next, dtype=torch.float), ratio)
        coins = draw_coins(tuple(gold_next.shape), generator, gold_next.device)  # [B]
        return mix(gold_next, predicted, coins, ratio)

    return next_input


def mixed_inputs(tgt_in: Tensor, predicted: Tensor, coins: Tensor, ratio: float) -> Tensor:
    """Decoder inputs for a fixed mix.

    tgt_in [B, T] (BOS y1 .. yn PAD..), predicted [B, T] (the prediction made
    at each position, i.e. of tgt_out), coins [B, T-1] ->
    mixed [B, T]: position 0 is BOS; position t+1 is gold tgt_in[:, t+1] when
    coins[:, t] < ratio, else predicted[:, t].
    """
    if tgt_in.shape[1] < 2:
        return tgt_in.clone()
    rest = mix(tgt_in[:, 1:], predicted[:, :-1], coins, ratio)  # [B, T-1]
    return torch.cat([tgt_in[:, :1], rest], dim=1)


def two_pass_inputs(model: torch.nn.Module, batch, ratio: float, temperature: float = 0.0,
                    generator: torch.Generator | None = None) -> Tensor:
    """Mixed decoder inputs [B, T] from a teacher-forced pass without gradients.

    ``batch`` has src [B, S], src_lengths [B], tgt_in [B, T]. Coins are drawn
    as one [B, T-1] tensor.
    """
    tgt_in = batch.tgt_in
    if ratio >= 1.0 or tgt_in.shape[1] < 2:
        return tgt_in
    with torch.no_grad():
        logits = model(batch.src, batch.src_lengths, tgt_in).logits  # [B, T, V]
    predicted = predict(logits, temperature, generator)  # [B, T]
    coins = draw_coins((tgt_in.shape[0], tgt_in.shape[1] - 1), generator, tgt_in.device)
    return mixed_inputs(tgt_in, predicted, coins, ratio)
