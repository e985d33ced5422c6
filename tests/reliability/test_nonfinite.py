"""Non-finite training: updates skipped and counted, a stop after train.max_nonfinite in a row,
no NaN/inf weights ever written or chosen as best, the last finite checkpoint the resume point.

Issue 10's ranges keep model.init_range <= 10 and train.lr <= 100, which no
longer blow this tiny model up; the loss or the weights are made non-finite
by a patch instead (from a chosen step on).
"""
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_config_dict
from transduce import checkpoint as ck
from transduce import cli
from transduce import train as train_mod
from transduce.train import TrainingDiverged, train


def _nan_loss_from(monkeypatch, call: int) -> None:
    """Training losses (one call per update here) are NaN from the ``call``-th on."""
    real, calls = train_mod.masked_cross_entropy, []

    def patched(logits, target, label_smoothing=0.0):
        out = real(logits, target, label_smoothing)
        calls.append(1)
        return out._replace(loss_sum=out.loss_sum * float("nan")) if len(calls) >= call else out
    monkeypatch.setattr(train_mod, "masked_cross_entropy", patched)


def _safetensors_files(run: Path) -> list[Path]:
    """Every tensor file of a run folder."""
    return sorted(run.rglob("*.safetensors"))


def _assert_all_finite(run: Path) -> None:
    """No tensor file of the run folder holds NaN or inf."""
    for path in _safetensors_files(run):
        assert ck.non_finite(ck.read_tensors(path)) == [], path


def test_nan_losses_are_skipped_then_training_stops(tmp_path, tiny_config, monkeypatch, capsys):
    _nan_loss_from(monkeypatch, 7)
    cfg = tiny_config(train=dict(max_steps=16, valid_every=4))
    with pytest.raises(TrainingDiverged, match=r"at step 11: 5 updates in a row .*non-finite.*step-8") as err:
        train(cfg, tmp_path / "run")
    assert "\n" not in str(err.value)
    assert capsys.readouterr().err.count("non-finite loss, update skipped") == 5
    _assert_all_finite(tmp_path / "run")
    monkeypatch.undo()
    train(tiny_config(train=dict(max_steps=6, valid_every=4)), tmp_path / "six")
    for name in ("model.safetensors", "trainer/optimizer.safetensors"):  # skipped updates changed nothing
        got = ck.read_tensors(tmp_path / "run" / "checkpoints" / "step-8" / name)
        want = ck.read_tensors(tmp_path / "six" / "checkpoints" / "step-6" / name)
        assert all(torch.equal(got[k], want[k]) for k in want), name


def test_non_finite_weights_are_never_saved(tmp_path, tiny_config, monkeypatch):
    real = train_mod.Trainer._update

    def poisoned(self, loss_finite):
        norm = real(self, loss_finite)
        if self.step == 5:
            with torch.no_grad():
                self.model.decoder.out.bias.fill_(float("inf"))
        return norm
    monkeypatch.setattr(train_mod.Trainer, "_update", poisoned)
    with pytest.raises(TrainingDiverged, match=r"hold NaN or inf .*nothing saved; the last finite checkpoint is "
                                               r".*step-4"):
        train(tiny_config(train=dict(max_steps=16, valid_every=4)), tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["best-4", "step-4"]
    _assert_all_finite(tmp_path / "run")
    assert ck.load_model(tmp_path / "run").meta["step"] == 4


def test_a_non_finite_validation_is_never_the_best(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(train_mod.Trainer, "validate", lambda self: {"loss": float("nan")})
    summary = train(tiny_config(train=dict(max_steps=8, valid_every=4)), tmp_path / "run")
    assert summary["best"] is None and not (tmp_path / "run" / "model.safetensors").exists()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-4", "step-8"]


def test_checkpoint_writers_refuse_non_finite_tensors(tmp_path, tiny_config):
    from transduce.model import Seq2Seq
    from transduce.vocab import build_codecs
    cfg = tiny_config()
    src, tgt = build_codecs(cfg.tokenizer, [("a b", "b a")])
    model = Seq2Seq.from_config(cfg.model, len(src.vocab), len(tgt.vocab))
    with torch.no_grad():
        model.encoder.embedding.weight[3, 0] = float("nan")
    with pytest.raises(ck.NonFiniteError, match=r"m/model\.safetensors: refusing to write non-finite"):
        ck.save_model(tmp_path / "m", model, cfg, src, tgt)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_says_one_line_and_exits_1(tmp_path, monkeypatch, capsys):
    _nan_loss_from(monkeypatch, 3)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(train={"max_steps": 16, "valid_every": 4})))
    code = cli.main(["train", str(config), "--out", str(tmp_path / "run")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("transduce: error: training diverged at step 7")
    _assert_all_finite(tmp_path / "run")
