"""Schedules: learning rate (with warm-up and plateau), early stopping, teacher forcing."""
import math

import pytest

from transduce.config import TrainConfig, load
from transduce.errors import ConfigError
from transduce.schedules import EarlyStopping, LRSchedule, teacher_forcing_ratio


# --- learning rate and early stopping ------------------------------------------------

def test_lr_schedules():
    base = dict(lr=1.0, min_lr=0.01)
    lr = LRSchedule(TrainConfig(**base, warmup_steps=4)).lr_at
    assert [lr(s) for s in (0, 1, 3, 4, 100)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    lr = LRSchedule(TrainConfig(**base, lr_schedule="step", lr_step_size=10, lr_gamma=0.5)).lr_at
    assert [lr(s) for s in (0, 9, 10, 25, 1000)] == [1.0, 1.0, 0.5, 0.25, 0.01]
    lr = LRSchedule(TrainConfig(**base, lr_schedule="inverse_sqrt", warmup_steps=4)).lr_at
    assert [lr(s) for s in (0, 3, 15, 63)] == pytest.approx([0.25, 1.0, 0.5, 0.25])
    lr = LRSchedule(TrainConfig(**base, lr_schedule="linear", warmup_steps=10, max_steps=110)).lr_at
    assert [lr(s) for s in (0, 9, 10, 60, 110, 500)] == pytest.approx([0.1, 1.0, 1.0, 0.505, 0.01, 0.01])
    lr = LRSchedule(TrainConfig(**base, lr_schedule="cosine", max_steps=100)).lr_at
    assert [lr(s) for s in (0, 50, 100)] == pytest.approx([1.0, 0.505, 0.01])
    plateau = LRSchedule(TrainConfig(**base, lr_schedule="plateau", plateau_patience=1, plateau_factor=0.1))
    reduced = [plateau.observe(v, higher_is_better=False) for v in (5.0, 4.0, 4.5, 4.2, 4.1, 3.0)]
    assert reduced == [False, False, False, True, False, False]
    assert plateau.lr_at(50) == pytest.approx(0.1)


def test_early_stopping():
    es = EarlyStopping("bleu", patience=2)
    flags = [es.update(v, s) for s, v in enumerate([10.0, 12.0, 11.0, 12.0, 13.0, 1.0, 2.0])]
    assert flags == [True, True, False, False, True, False, False]
    assert es.should_stop and es.best == 13.0 and es.best_step == 4


def test_schedule_states_round_trip():
    plateau = LRSchedule(TrainConfig(lr=1.0, lr_schedule="plateau", plateau_patience=0, plateau_factor=0.5))
    for v in (3.0, 4.0):
        plateau.observe(v, higher_is_better=False)
    again = LRSchedule(plateau.cfg)
    again.load_state_dict(plateau.state_dict())
    assert again.state_dict() == plateau.state_dict() == {"scale": 0.5, "best": 3.0, "bad": 0}
    es = EarlyStopping("loss", patience=3)
    es.update(2.0, 10), es.update(float("nan"), 20)
    es2 = EarlyStopping("loss", patience=3)
    es2.load_state_dict(es.state_dict())
    assert es2.state_dict() == {"best": 2.0, "best_step": 10, "bad": 1}


# --- teacher forcing ---------------------------------------------------------------------

def test_constant_with_warmup():
    cfg = TrainConfig(teacher_forcing=0.7, tf_warmup=10)
    assert [teacher_forcing_ratio(cfg, s) for s in (0, 9, 10, 10**6)] == [1.0, 1.0, 0.7, 0.7]


def test_linear_schedule_values():
    cfg = TrainConfig(tf_schedule="linear", tf_floor=0.2, tf_steps=100, tf_warmup=10)
    got = [teacher_forcing_ratio(cfg, s) for s in (0, 10, 35, 60, 110, 5000)]
    assert got == pytest.approx([1.0, 1.0, 0.8, 0.6, 0.2, 0.2])


def test_exponential_schedule_values():
    cfg = TrainConfig(tf_schedule="exponential", tf_k=0.99, tf_warmup=5)
    assert teacher_forcing_ratio(cfg, 4) == 1.0
    assert teacher_forcing_ratio(cfg, 5) == 1.0  # i = 0
    assert teacher_forcing_ratio(cfg, 105) == pytest.approx(0.99 ** 100)
    assert teacher_forcing_ratio(TrainConfig(tf_schedule="exponential", tf_k=0.5, tf_floor=0.1), 10) == 0.1


def test_inverse_sigmoid_schedule_values():
    cfg = TrainConfig(tf_schedule="inverse_sigmoid", tf_k=10.0)
    assert teacher_forcing_ratio(cfg, 0) == pytest.approx(10 / 11)
    assert teacher_forcing_ratio(cfg, 50) == pytest.approx(10 / (10 + math.exp(5)))
    assert teacher_forcing_ratio(cfg, 10**7) == 0.0


def test_the_config_refuses_k_and_steps_the_schedules_cannot_use():
    for bad in (["train.tf_schedule=exponential", "train.tf_k=1.5"],
                ["train.tf_schedule=inverse_sigmoid", "train.tf_k=0.9"],
                ["train.tf_schedule=linear", "train.tf_steps=0"]):
        with pytest.raises(ConfigError, match=r"train\.tf_(k|steps)"):
            load(None, bad)
