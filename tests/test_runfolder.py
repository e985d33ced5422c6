"""Run-folder bookkeeping: pruning, resume discovery, best-N, the fresh-folder check."""
from pathlib import Path

import pytest
import torch

from transduce import checkpoint
from transduce.errors import CheckpointError, UserError
from transduce.model import Seq2Seq
from transduce.runfolder import RunFolder, prune, step_of
from transduce.vocab import build_codecs

PAIRS = [("a b c", "c b a"), ("b c", "c b")]


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def _folder(tmp_path, keep_last=2, keep_best=2, higher=False):
    return RunFolder(tmp_path / "run", keep_last, keep_best, higher)


def _save_step(run, cfg, step):
    src, tgt = build_codecs(cfg.tokenizer, PAIRS)
    torch.manual_seed(step)
    model = Seq2Seq.from_config(cfg.model, len(src.vocab), len(tgt.vocab))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    training = checkpoint.TrainingState(opt.state_dict(), {"step": step})
    checkpoint.save_checkpoint(run.step_dir(step), model, cfg, src, tgt, {"step": step}, training)


def test_step_of():
    assert [step_of(Path(n)) for n in ["step-12", "run/best-3", "step-x", "x"]] == [12, 3, -1, -1]


def test_prune_keeps_the_newest_n_and_the_current_step(tmp_path):
    for name in ["step-1", "step-2", "step-3", "step-10", "step-x", "best-1"]:
        (tmp_path / name).mkdir()
    prune(tmp_path, "step-", 2, keep=1)
    assert _names(tmp_path) == ["best-1", "step-1", "step-10", "step-3", "step-x"]
    prune(tmp_path, "step-", 1, keep=99)
    assert _names(tmp_path) == ["best-1", "step-10", "step-x"]


def test_prune_steps_keeps_at_least_one(tmp_path):
    run = _folder(tmp_path, keep_last=0)
    for step in (4, 8):
        run.step_dir(step).mkdir(parents=True)
    run.prune_steps(current=4)  # keep_last 0 keeps the newest, and the current step
    assert _names(run.checkpoints) == ["step-4", "step-8"]
    run.prune_steps(current=8)
    assert _names(run.checkpoints) == ["step-8"]


def test_resume_takes_the_newest_that_loads(tmp_path, tiny_config):
    cfg, run = tiny_config(), _folder(tmp_path)
    with pytest.raises(UserError, match="cannot resume: no checkpoint in"):
        run.find_resume(print)
    for step in (2, 4, 10):
        _save_step(run, cfg, step)
    weights = run.step_dir(10) / checkpoint.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:64])
    warnings = []
    start = run.find_resume(warnings.append)
    assert start.folder == run.step_dir(4) and start.training.state == {"step": 4}
    assert start.loaded.meta["step"] == 4
    assert len(warnings) == 1 and warnings[0].startswith(f"skipping checkpoint {run.step_dir(10)}: ")
    for step in (2, 4):
        (run.step_dir(step) / checkpoint.TRAINER / checkpoint.STATE).write_text("{")
    with pytest.raises(CheckpointError, match="cannot resume: no loadable checkpoint"):
        run.find_resume(warnings.append)
    assert len(warnings) == 4


def test_a_fresh_run_refuses_a_folder_with_checkpoints(tmp_path):
    run = _folder(tmp_path)
    run.check_fresh()  # no folder yet
    run.best_dir(3).mkdir(parents=True)
    run.check_fresh()  # best-N alone is no run to resume
    run.step_dir(3).mkdir()
    with pytest.raises(UserError, match="already holds a training run; resume it"):
        run.check_fresh()


def _add(run, value, step):
    run.best_dir(step).mkdir(parents=True)
    run.add_best(value, step)


def test_best_n_lower_is_better(tmp_path):
    run = _folder(tmp_path, keep_best=2)
    for value, step in [(3.0, 1), (2.0, 2), (2.5, 3), (2.5, 4)]:
        _add(run, value, step)
    assert run.best_list == [[2.0, 2], [2.5, 4]]  # a tie goes to the later step
    assert _names(run.checkpoints) == ["best-2", "best-4"]


def test_best_n_higher_is_better_and_a_step_written_again(tmp_path):
    run = _folder(tmp_path, keep_best=3, higher=True)
    for value, step in [(10.0, 1), (30.0, 2), (20.0, 3), (5.0, 4)]:
        _add(run, value, step)
    assert run.best_list == [[30.0, 2], [20.0, 3], [10.0, 1]]
    assert _names(run.checkpoints) == ["best-1", "best-2", "best-3"]
    run.add_best(40.0, 3)  # best-3 rewritten (e.g. at the end of a resumed run): one entry
    assert run.best_list == [[40.0, 3], [30.0, 2], [10.0, 1]]


def test_remove_stale_takes_only_dead_writers_leftovers(tmp_path):
    import os
    import subprocess
    dead = subprocess.Popen(["true"])
    dead.wait()
    run = _folder(tmp_path)
    (run.checkpoints / "step-3").mkdir(parents=True)
    stale = [run.checkpoints / f".step-4.tmp-{dead.pid}-0123abcd", run.out / f".config.yaml.tmp-{dead.pid}-89abcdef",
             run.checkpoints / "step-3" / f".trainer.old-{dead.pid}-00000000",
             tmp_path / f".run.tmp-{dead.pid}-ffffffff"]
    kept = [run.checkpoints / f".step-5.tmp-{os.getpid()}-0123abcd",  # a live writer (this process)
            tmp_path / f".other.tmp-{dead.pid}-ffffffff", run.out / ".hidden"]
    for path in stale + kept:
        path.mkdir() if "config" not in path.name and "hidden" not in path.name else path.write_text("x")
    assert sorted(run.remove_stale()) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)
