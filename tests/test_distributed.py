"""Two CPU processes (gloo), started by torchrun or by train.processes, train like one process on the
same global batch; they agree on time budgets, Ctrl-C and errors."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import tiny_config_dict
from transduce import checkpoint as ck
from transduce.config import from_dict
from transduce.errors import ConfigError, DataError
from transduce.launch import _free_port
from transduce.train import Trainer, train

CHILD = """
import json, os, sys
import torch
from safetensors.torch import save_model
from transduce.config import from_dict
from transduce.train import Trainer
torch.set_num_threads(1)
cfg = from_dict(json.loads(os.environ["TEST_CFG"]))
trainer = Trainer(cfg, os.environ["TEST_OUT"])
summary = trainer.run()
save_model(trainer.model, os.path.join(os.environ["TEST_WEIGHTS"], f"rank{trainer.workers.rank}.safetensors"))
print(json.dumps({"rank": trainer.workers.rank, "world": trainer.workers.world, "steps": summary["steps"]}))
trainer.close()
"""


def _cfg_dict(accum):
    """The shared tiny config, without dropout, with plain SGD: two ranks must match one process."""
    return tiny_config_dict(
        data={"toy_size": 96}, model={"dropout": 0.0, "emb_dropout": 0.0}, search={"max_len_b": 1},
        train={"device": "cpu", "batch_sentences": 12, "max_steps": 3, "optimizer": "sgd", "lr": 0.5, "clip_norm": None,
               "accum_steps": accum, "valid_every": 100, "valid_max_sentences": 4})


def _torchrun_style(script, world, timeout=120, **env_extra):
    """Run ``script`` in ``world`` processes with torchrun's environment; each one's last
    stdout line, parsed as JSON, in rank order."""
    port, procs = _free_port(), []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1", **env_extra)
        procs.append(subprocess.Popen([sys.executable, "-c", script], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"the distributed processes did not finish in {timeout} s")
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


def _launch(tmp_path, world):
    return _torchrun_style(CHILD, world, TEST_CFG=json.dumps(_cfg_dict(accum=1)),
                           TEST_OUT=str(tmp_path / "ddp"), TEST_WEIGHTS=str(tmp_path))


def test_two_gloo_processes_match_one_process_on_the_same_global_batch(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    outs = _launch(tmp_path, 2)
    assert sorted(o["rank"] for o in outs) == [0, 1] and {o["world"] for o in outs} == {2}
    assert {o["steps"] for o in outs} == {3}
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # DDP keeps the replicas identical

    # one process, two micro-batches per update = the union of the two ranks' batches
    single = Trainer(from_dict(_cfg_dict(accum=2)), tmp_path / "single")
    init = {k: v.clone() for k, v in single.model.state_dict().items()}
    assert single.run()["steps"] == 3
    single.close()
    moved = 0
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(r0[k], v, rtol=1e-5, atol=1e-6)
        moved += int(not torch.equal(v, init[k]))
    assert moved > 5  # training did change the weights
    assert (tmp_path / "ddp" / "model.safetensors").is_file()  # rank 0 wrote the run folder
    assert (tmp_path / "ddp" / "log.jsonl").read_text().count('"split": "valid"') == 1  # rank 0 only


# --- train.processes: workers started by transduce itself ----------------------------------

def _needs_distributed():
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")


def test_train_processes_starts_workers_that_train_like_one_process(tmp_path):
    _needs_distributed()
    cfg = _cfg_dict(accum=1)
    cfg["train"]["processes"] = 2
    launched = train(from_dict(cfg), tmp_path / "launched")
    single = train(from_dict(_cfg_dict(accum=2)), tmp_path / "single")
    assert launched["steps"] == single["steps"] == 3
    assert launched["tokens"] == single["tokens"]  # the union of both workers' batches
    a, b = load_file(str(tmp_path / "launched" / "model.safetensors")), load_file(str(tmp_path / "single" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_a_time_budget_ends_every_worker_at_the_same_step(tmp_path):
    """Each worker measures its own clock; they agree on the longest after every update, so
    none is left waiting for a peer that stopped (which would hang) and the run ends."""
    _needs_distributed()
    cfg = _cfg_dict(accum=1)
    cfg["train"].update(processes=2, max_steps=100000, max_minutes=0.05, lr_schedule="cosine",
                        valid_every=100000)
    summary = train(from_dict(cfg), tmp_path / "run")
    assert 0 < summary["steps"] < 100000 and summary["time_s"] >= 3.0
    assert ck.load_model(tmp_path / "run").meta["step"] == summary["steps"]


def test_workers_agree_on_the_longest_time_and_on_any_stop(tmp_path):
    _needs_distributed()
    script = """
import json, os, torch.distributed as dist
from transduce.train import init_distributed
import torch
w = init_distributed(torch.device("cpu"))
rank = w.rank
print(json.dumps([w.agree([4.0, 7.5][rank], [False, True][rank]), w.agree(1.0 + rank, False)]))
w.close()
"""
    assert _torchrun_style(script, 2, timeout=60) == [[[7.5, True], [2.0, False]]] * 2


def test_a_workers_user_error_is_raised_in_the_caller_with_its_message(tmp_path):
    _needs_distributed()
    bad = tmp_path / "train.tsv"
    bad.write_bytes(b"a b\tb a\n\xff c\tc\n")
    cfg = _cfg_dict(accum=1)
    cfg["data"] = {"corpus": None, "train": [str(bad)]}
    cfg["train"]["processes"] = 2
    with pytest.raises(DataError, match=rf"{bad}:2: invalid UTF-8"):
        train(from_dict(cfg), tmp_path / "run")


def test_more_processes_than_gpus_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfg = _cfg_dict(accum=1)
    cfg["train"].update(processes=2, device="cuda")
    with pytest.raises(ConfigError, match=r"'train.processes': 2 processes need 2 GPUs, 1 are visible"):
        train(from_dict(cfg), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_ctrl_c_stops_every_worker_at_one_step_and_the_run_resumes(tmp_path):
    """The terminal's Ctrl-C reaches the launcher and both workers (one process group)."""
    _needs_distributed()
    cfg = _cfg_dict(accum=1)
    cfg["train"].update(processes=2, max_steps=100000, valid_every=100000, progress=True,
                        progress_every=1.0, batch_sentences=4)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "transduce", "train", str(path), "--out", str(run)],
                            env=dict(os.environ, OMP_NUM_THREADS="1"), text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in proc.stderr:  # the first progress line: the workers are training
        if line.startswith("transduce: step "):
            break
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the workers did not stop after Ctrl-C")
    assert proc.returncode == 130, err
    summary = json.loads(out)
    assert summary["interrupted"] and summary["steps"] > 0
    assert err.count("interrupted at step") == 1  # rank 0 alone speaks
    assert (run / "checkpoints" / f"step-{summary['steps']}").is_dir()
    resumed = subprocess.run([sys.executable, "-m", "transduce", "train", "--resume", str(run),
                              f"train.max_steps={summary['steps'] + 2}"], env=dict(os.environ, OMP_NUM_THREADS="1"),
                             text=True, capture_output=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == summary["steps"] + 2
