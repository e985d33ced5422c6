"""Schedules of a training run: learning rate, early stopping, teacher forcing.

``s`` / ``step`` is the number of optimizer updates already done (0 for the
first update). All three are pure functions of the config and the step, or
keep their state in plain floats (``state_dict`` / ``load_state_dict``) that
the trainer saves in ``trainer/state.json``.

Learning rate (``LRSchedule.lr_at``): ``constant`` lr; ``step`` lr * gamma **
(s // lr_step_size); ``inverse_sqrt`` lr * sqrt(max(1, warmup)) / sqrt(max(s +
1, warmup)); ``linear`` and ``cosine`` decay from lr (after warm-up) to min_lr
at max_steps; ``plateau`` lr times plateau_factor after each plateau_patience
validations without improvement (``observe``). Decays never go below min_lr.
Warm-up (all schedules) multiplies by (s + 1) / warmup_steps for s <
warmup_steps.

Early stopping (``EarlyStopping``): the best value of ``train.early_stop_metric``
(loss, wer, per: lower is better; bleu, chrf, accuracy: higher;
metrics.HIGHER_IS_BETTER), the step it was reached at, and the validations
since; stop after ``patience`` validations without improvement. Non-finite
values never improve.

Teacher forcing (Bengio et al. 2015; ``teacher_forcing_ratio(train_cfg,
step)``): the probability that the decoder input at a position is the gold
token (sampling.py does the mixing). The first ``tf_warmup`` steps always
give 1.0; after that ``i = step - tf_warmup`` (so i = 0 on the first step
after warm-up) and:

=================  =================================================
``constant``       ``teacher_forcing``  (i is ignored)
``linear``         ``max(tf_floor, 1 - (1 - tf_floor) * i / tf_steps)``
``exponential``    ``max(tf_floor, tf_k ** i)``            (0 < k < 1)
``inverse_sigmoid`` ``max(tf_floor, k / (k + exp(i / k)))`` (k >= 1)
=================  =================================================

``tf_floor`` (default 0) bounds all three decaying schedules from below.
The ranges of ``tf_k`` and ``tf_steps`` are checked when the config is
loaded (config._validate), not here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .config import TrainConfig
from .metrics import HIGHER_IS_BETTER


def better(a: float, b: float, higher_is_better: bool) -> bool:
    """True when ``a`` is strictly better than ``b``."""
    return a > b if higher_is_better else a < b


# --- learning rate -------------------------------------------------------------

class LRSchedule:
    """Learning rate per update (see the module docstring); state is plain floats."""

    def __init__(self, cfg: TrainConfig):
        """No plateau reduction yet."""
        self.cfg = cfg
        self.scale = 1.0  # plateau reductions
        self.best: float | None = None
        self.bad = 0

    def lr_at(self, s: int, time_done: float = 0.0) -> float:
        """The learning rate of update ``s`` (0-based), warm-up included; linear and
        cosine decay follow the larger of the step fraction and ``time_done`` (the
        fraction of a train.max_minutes budget spent)."""
        c = self.cfg
        if c.lr_schedule in ("linear", "cosine"):
            span = max(1, c.max_steps - c.warmup_steps)
            done = min(1.0, max(max(0, s - c.warmup_steps) / span, time_done))
            shape = 1.0 - done if c.lr_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))
            lr = c.min_lr + (c.lr - c.min_lr) * shape
        else:
            decay = {"constant": 1.0, "plateau": self.scale,
                     "step": c.lr_gamma ** (s // max(1, c.lr_step_size)),
                     "inverse_sqrt": math.sqrt(max(1, c.warmup_steps)) / math.sqrt(max(s + 1, c.warmup_steps))
                     }[c.lr_schedule]
            lr = max(c.min_lr, c.lr * decay) if decay < 1.0 else c.lr
        if c.warmup_steps > 0 and s < c.warmup_steps:
            lr *= (s + 1) / c.warmup_steps
        return lr

    def observe(self, value: float, higher_is_better: bool) -> bool:
        """Feed a validation value (plateau schedule); True when the lr was reduced."""
        if self.cfg.lr_schedule != "plateau" or not math.isfinite(value):
            return False
        if self.best is None or better(value, self.best, higher_is_better):
            self.best, self.bad = value, 0
            return False
        self.bad += 1
        if self.bad <= self.cfg.plateau_patience:
            return False
        self.scale *= self.cfg.plateau_factor
        self.bad = 0
        return True

    def state_dict(self) -> dict:
        """The plateau state: {"scale", "best", "bad"}."""
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of ``state_dict``."""
        self.scale, self.best, self.bad = state["scale"], state["best"], state["bad"]


# --- early stopping ----------------------------------------------------------------

@dataclass
class EarlyStopping:
    """Best value of the early-stop metric, when it was reached, validations since."""

    metric: str
    patience: int | None
    best: float | None = None
    best_step: int | None = None
    bad: int = 0

    def update(self, value: float, step: int) -> bool:
        """Record a validation; True when it is a new best."""
        if math.isfinite(value) and (self.best is None or better(value, self.best, HIGHER_IS_BETTER[self.metric])):
            self.best, self.best_step, self.bad = value, step, 0
            return True
        self.bad += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True after ``patience`` validations without a new best (never when patience is None)."""
        return self.patience is not None and self.bad >= self.patience

    def state_dict(self) -> dict:
        """{"best", "best_step", "bad"}."""
        return {"best": self.best, "best_step": self.best_step, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of ``state_dict``."""
        self.best, self.best_step, self.bad = state["best"], state["best_step"], state["bad"]


# --- teacher forcing ------------------------------------------------------------------

def _linear(cfg: TrainConfig, i: int) -> float:
    """1 -> tf_floor over tf_steps steps."""
    return 1.0 - (1.0 - cfg.tf_floor) * min(1.0, i / cfg.tf_steps)


def _exponential(cfg: TrainConfig, i: int) -> float:
    """tf_k ** i."""
    return cfg.tf_k ** i


def _inverse_sigmoid(cfg: TrainConfig, i: int) -> float:
    """k / (k + exp(i / k)), 0 once exp would overflow."""
    k = cfg.tf_k
    x = i / k
    return k / (k + math.exp(x)) if x < 700 else 0.0


TF_SCHEDULES: dict[str, Callable[[TrainConfig, int], float]] = {
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
    ratio = TF_SCHEDULES[cfg.tf_schedule](cfg, i)
    if cfg.tf_schedule != "constant":
        ratio = max(cfg.tf_floor, ratio)
    return float(min(1.0, max(0.0, ratio)))
