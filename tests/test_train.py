"""Trainer: end to end on a toy corpus, exact resume, Ctrl-C, the data report."""
import json
import re
import signal

import pytest
import torch

from transduce import checkpoint as ck
from transduce import train as train_mod
from transduce.corpora import load_splits
from transduce.errors import UserError
from transduce.search import greedy
from transduce.train import train


def _weights(folder):
    return ck.read_tensors(folder / "model.safetensors")  # copies (load_file maps the file)


def _assert_same_run(a, b, step):
    wa, wb = _weights(a / "checkpoints" / f"step-{step}"), _weights(b / "checkpoints" / f"step-{step}")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    oa = ck.read_tensors(a / "checkpoints" / f"step-{step}" / "trainer" / "optimizer.safetensors")
    ob = ck.read_tensors(b / "checkpoints" / f"step-{step}" / "trainer" / "optimizer.safetensors")
    assert all(torch.equal(oa[k], ob[k]) for k in oa)


def test_end_to_end_reduces_loss_and_writes_a_loadable_folder(tmp_path, tiny_config):
    cfg = tiny_config(train=dict(max_steps=24, valid_every=12, lr=3e-2, teacher_forcing=0.8, tf_two_pass=True))
    summary = train(cfg, tmp_path / "run")
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in records if r["split"] == "train" and "loss" in r]
    valid = [r for r in records if r["split"] == "valid"]
    assert train_losses[-1] < 0.85 * train_losses[0]
    assert [r["step"] for r in valid] == [12, 24] and valid[1]["loss"] < valid[0]["loss"]
    assert {"bleu", "chrf", "wer", "per", "exact_match", "accuracy", "ppl"} <= valid[0].keys()
    assert summary["steps"] == 24 and summary["best_step"] == 24
    assert summary["best"] == pytest.approx(valid[1]["loss"])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best-24", "step-12", "step-24"]
    loaded = ck.load_model(run)  # the run folder itself is the best model
    assert loaded.meta["step"] == 24
    src = torch.tensor([loaded.src_codec.encode("a b c")])
    hyp = greedy(loaded.model, src, torch.tensor([3]), loaded.config.search)[0]
    assert isinstance(loaded.tgt_codec.decode(hyp.tokens), str)
    with pytest.raises(UserError, match="already holds a training run"):
        train(cfg, run)


@pytest.mark.parametrize("variant", [
    dict(teacher_forcing=0.6, sample_temperature=1.0, accum_steps=2),
    dict(tf_schedule="linear", tf_steps=8, tf_two_pass=True, lr_schedule="inverse_sqrt", warmup_steps=3,
         optimizer="adamw", weight_decay=0.01),
])
def test_resume_is_bitwise_exact(tmp_path, tiny_config, variant):
    variant = dict(variant, valid_every=100)  # the split run also validates at 4: that must not matter
    train(tiny_config(train=variant), tmp_path / "straight")
    train(tiny_config(train=dict(variant, max_steps=4)), tmp_path / "split")
    summary = train(tiny_config(train=variant), tmp_path / "split", resume=True)
    assert summary["steps"] == 8
    _assert_same_run(tmp_path / "straight", tmp_path / "split", 8)
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # no duplicated tail after the resume


def _interrupt_at(monkeypatch, call, how):
    """Make the n-th loss computation raise KeyboardInterrupt or deliver SIGINT."""
    real, calls = train_mod.masked_cross_entropy, [0]

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            if how == "raise":
                raise KeyboardInterrupt
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "masked_cross_entropy", wrapped)


@pytest.mark.parametrize("how", ["raise", "signal"])
def test_ctrl_c_saves_and_resumes_exactly(tmp_path, tiny_config, monkeypatch, capsys, how):
    cfg = tiny_config(train=dict(teacher_forcing=0.7, accum_steps=2, valid_every=100, max_steps=6))
    train(cfg, tmp_path / "straight")
    _interrupt_at(monkeypatch, 6, how)  # 3rd update (2 micro-batches each)
    summary = train(cfg, tmp_path / "split")
    stopped = 2 if how == "raise" else 3  # a signal lets the current update finish
    assert summary["interrupted"] and summary["steps"] == stopped
    assert f"transduce train --resume {tmp_path / 'split'}" in capsys.readouterr().err
    monkeypatch.undo()
    assert train(cfg, tmp_path / "split", resume=True)["steps"] == 6
    _assert_same_run(tmp_path / "straight", tmp_path / "split", 6)


def test_resume_skips_a_corrupt_newest_checkpoint(tmp_path, tiny_config, capsys):
    train(tiny_config(), tmp_path / "b")
    weights = tmp_path / "b" / "checkpoints" / "step-8" / "model.safetensors"
    good = _weights(weights.parent)
    weights.write_bytes(weights.read_bytes()[:64])
    assert train(tiny_config(), tmp_path / "b", resume=True)["steps"] == 8  # redone from step 4
    assert "skipping checkpoint" in capsys.readouterr().err
    again = _weights(weights.parent)
    assert all(torch.equal(good[k], again[k]) for k in good)


def test_start_reports_dropped_pairs_in_the_log(tmp_path, tiny_config, capsys):
    cfg = tiny_config(data={"max_len": 4}, train={"max_steps": 2, "valid_every": 100})
    splits = load_splits(cfg.data)
    dropped = sum(1 for src, tgt in splits.train if len(src.split()) > 4 or len(tgt.split()) > 4)
    assert 0 < dropped < len(splits.train)
    train(cfg, tmp_path / "run")
    first = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert first == {"step": 0, "split": "data", "train_pairs": len(splits.train) - dropped,
                     "dropped_too_long": dropped, "valid_pairs": len(splits.valid),
                     "valid_carved": False, "unknown_src_pct": 0.0, "unknown_tgt_pct": 0.0, "time": 0.0}
    assert f"{len(splits.train) - dropped} training pairs ({dropped} dropped" in capsys.readouterr().err


def test_an_empty_validation_split_is_announced(tmp_path, tiny_config, capsys):
    (tmp_path / "train.tsv").write_text("a b\tb a\nc d\td c\na c\tc a\n")
    (tmp_path / "valid.tsv").write_text("\t\n")
    cfg = tiny_config(data={"corpus": None, "train": [str(tmp_path / "train.tsv")],
                            "valid": [str(tmp_path / "valid.tsv")]}, train={"max_steps": 2})
    summary = train(cfg, tmp_path / "run")
    assert "the validation split is empty" in capsys.readouterr().err
    assert summary["valid"] == {} and ck.load_model(tmp_path / "run").meta["step"] == 2  # the last model
    first = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert (first["train_pairs"], first["dropped_too_long"], first["valid_pairs"]) == (3, 0, 0)


def test_the_non_finite_streak_is_saved_and_resumed(tmp_path, tiny_config, monkeypatch):
    real, calls = train_mod.masked_cross_entropy, []

    def nan_from_the_third(logits, target, label_smoothing=0.0):
        out = real(logits, target, label_smoothing)
        calls.append(1)
        return out._replace(loss_sum=out.loss_sum * float("nan")) if len(calls) >= 3 else out
    monkeypatch.setattr(train_mod, "masked_cross_entropy", nan_from_the_third)
    train(tiny_config(train=dict(max_steps=4, valid_every=4)), tmp_path / "run")  # steps 3, 4 skipped
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-4" / "trainer" / "state.json").read_text())
    assert state["trainer"]["nonfinite"] == 2
    with pytest.raises(train_mod.TrainingDiverged, match="at step 7: 5 updates in a row"):
        train(tiny_config(train=dict(max_steps=16, valid_every=4)), tmp_path / "run", resume=True)


def test_an_unclipped_gradient_norm_is_logged(tmp_path, tiny_config):
    train(tiny_config(train=dict(max_steps=4, clip_norm=None)), tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    norms = [r["grad_norm"] for r in records if "grad_norm" in r]
    assert norms and all(isinstance(n, float) and n > 0 for n in norms)


def test_plain_progress_line_every_n_seconds(capsys):
    from types import SimpleNamespace

    clock = iter([0.0, 0.0, 10.0, 20.0, 35.0])
    progress = train_mod.PlainProgress(every=30.0, enabled=True, clock=lambda: next(clock))
    trainer = SimpleNamespace(step=1, elapsed=0.0, workers=SimpleNamespace(world=1),
                              train_cfg=SimpleNamespace(max_steps=101, max_minutes=None),
                              optimizer=SimpleNamespace(param_groups=[{"lr": 1e-3}]))
    stats = train_mod.Interval(loss=50.0, tokens=100, start=0.0)
    for step in (1, 11, 21, 36):
        trainer.step = step
        progress.maybe_say(trainer, stats)
    lines = capsys.readouterr().err.splitlines()
    # one line, at 35 s: 36 steps in 35 s -> 65 steps left take 63 s
    assert len(lines) == 1
    assert re.fullmatch(r"transduce: step 36/101 loss 0\.5000 tok/s [\d,]+ lr 0\.001 eta 0:01:03", lines[0])


def test_time_budget_stops_training_and_drives_the_cosine(tiny_config, tmp_path, capsys):
    cfg = tiny_config(train={"max_steps": 1000, "max_minutes": 0.001, "lr_schedule": "cosine",
                             "valid_every": 1000})
    summary = train(cfg, tmp_path / "run")
    assert 0 < summary["steps"] < 1000
    assert "time budget of 0.001 minutes reached" in capsys.readouterr().err
    from transduce.schedules import LRSchedule

    schedule = LRSchedule(cfg.train)
    assert schedule.lr_at(10, time_done=1.0) == pytest.approx(cfg.train.min_lr)
    assert schedule.lr_at(10, time_done=0.5) < schedule.lr_at(10)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_takes_the_fused_kernel_with_the_same_steps(name):
    """make_optimizer picks PyTorch's fused Adam(W) on the CPU; its updates match the loop's."""
    from transduce.config import TrainConfig
    torch.manual_seed(0)
    start = [torch.randn(7, 5), torch.randn(5)]
    grads = [[torch.randn_like(w) for w in start] for _ in range(4)]
    cfg = TrainConfig(optimizer=name, lr=1e-2, weight_decay=0.01)
    fused = [torch.nn.Parameter(w.clone()) for w in start]
    loop = [torch.nn.Parameter(w.clone()) for w in start]
    opt = train_mod.make_optimizer(cfg, fused)
    ref = type(opt)(loop, lr=1e-2, weight_decay=0.01, foreach=False)
    assert opt.defaults["fused"] is True and type(opt).__name__.lower() == name
    for g in grads:
        for params, o in ((fused, opt), (loop, ref)):
            for p, gp in zip(params, g):
                p.grad = gp.clone()
            o.step()
    for a, b in zip(fused, loop):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(fused[0], start[0])
