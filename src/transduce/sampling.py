"""Teacher forcing and scheduled sampling (Bengio et al. 2015).

Schedules
---------
``teacher_forcing_ratio(train_cfg, step)`` gives the probability that the
decoder input at a position is the gold token. ``step`` is the number of
optimizer updates already done (0 for the first batch). The first
``tf_warmup`` steps always give 1.0; after that ``i = step - tf_warmup``
(so i = 0 on the first step after warm-up) and:

=================  =================================================
``constant``       ``teacher_forcing``  (i is ignored)
``linear``         ``max(tf_floor, 1 - (1 - tf_floor) * i / tf_steps)``
``exponential``    ``max(tf_floor, tf_k ** i)``            (0 < k < 1)
``inverse_sigmoid`` ``max(tf_floor, k / (k + exp(i / k)))`` (k >= 1)
=================  =================================================

``tf_floor`` (default 0) bounds all three decaying schedules from below.

Mixing
------
One coin per target token: for every sentence and every decoder step a
uniform number ``u`` is drawn from the given ``torch.Generator``; the next
input is the gold token when ``u < ratio``, otherwise the model's own
prediction (argmax, or a sample from ``softmax(logits / temperature)`` when
``temperature > 0``), detached. Positions whose gold input is PAD stay PAD.
A ratio of 1.0 is pure teacher forcing: ``make_next_input`` returns None, no
random number is drawn and the model may use its fused path.

Two passes (``tf_two_pass``): a teacher-forced pass without gradients gives
the predictions at every position; gold and predicted tokens are mixed by
the coins; a second fused pass on the mixed inputs carries the gradients.
It differs from the step loop only in that the predictions come from gold
prefixes; for a fixed mixed input sequence both give the same logits.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .config import TrainConfig
from .errors import ConfigError

from .vocab import PAD

NextInput = Callable[[int, Tensor, Tensor], Tensor]


def _linear(cfg: TrainConfig, i: int) -> float:
    if cfg.tf_steps <= 0:
        raise ConfigError("config key 'train.tf_steps' must be positive for tf_schedule: linear")
    return 1.0 - (1.0 - cfg.tf_floor) * min(1.0, i / cfg.tf_steps)


def _exponential(cfg: TrainConfig, i: int) -> float:
    if not 0.0 < cfg.tf_k < 1.0:
        raise ConfigError(f"config key 'train.tf_k' must be in (0, 1) for tf_schedule: exponential, got {cfg.tf_k}")
    return cfg.tf_k ** i


def _inverse_sigmoid(cfg: TrainConfig, i: int) -> float:
    k = cfg.tf_k
    if k < 1.0:
        raise ConfigError(f"config key 'train.tf_k' must be >= 1 for tf_schedule: inverse_sigmoid, got {k}")
    x = i / k
    return k / (k + math.exp(x)) if x < 700 else 0.0


SCHEDULES: dict[str, Callable[[TrainConfig, int], float]] = {
    "constant": lambda cfg, i: cfg.teacher_forcing,
    "linear": _linear,
    "exponential": _exponential,
    "inverse_sigmoid": _inverse_sigmoid,
}


def teacher_forcing_ratio(cfg: TrainConfig, step: int) -> float:
    """Probability of feeding the gold token at update ``step`` (see module doc)."""
    if step < cfg.tf_warmup:
        return 1.0
    i = step - cfg.tf_warmup
    ratio = SCHEDULES[cfg.tf_schedule](cfg, i)
    if cfg.tf_schedule != "constant":
        ratio = max(cfg.tf_floor, ratio)
    return float(min(1.0, max(0.0, ratio)))


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


def two_pass(model: torch.nn.Module, batch, ratio: float, temperature: float = 0.0,
             generator: torch.Generator | None = None):
    """Second (gradient) pass of two-pass scheduled sampling -> ForwardOutput (logits [B, T, V])."""
    mixed = two_pass_inputs(model, batch, ratio, temperature, generator)
    return model(batch.src, batch.src_lengths, mixed)
