"""Two CPU processes (gloo, torchrun-style environment) train like one process on the same global batch."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config_dict
from transduce.config import from_dict
from transduce.train import Trainer

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


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path, world):
    port, procs = _free_port(), []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                   TEST_CFG=json.dumps(_cfg_dict(accum=1)), TEST_OUT=str(tmp_path / "ddp"),
                   TEST_WEIGHTS=str(tmp_path))
        procs.append(subprocess.Popen([sys.executable, "-c", CHILD], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("distributed training did not finish in 120 s")
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


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
