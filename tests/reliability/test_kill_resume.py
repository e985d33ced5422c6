"""SIGKILL a training at seeded random moments, inside checkpoint writes too, and resume.

A tiny training runs as a subprocess (killable_train.py: the CLI with the
checkpoint writers slowed down and announced, so that kills land inside
writes). After each kill every checkpoint on disk must load; resuming each
time must end with weights, optimizer and RNG state bitwise equal to an
uninterrupted run, and no temporary folder of a killed writer may be left.
"""
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from conftest import tiny_config_dict
from transduce import checkpoint as ck

SEED = 20261126
KILLS = 12
DELAY = 0.1  # seconds each checkpoint write sleeps inside its temporary folder
CHILD = Path(__file__).with_name("killable_train.py")
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
STEPS = 64


def _config(tmp_path: Path) -> Path:
    """The tiny config as a YAML file: 64 steps, a checkpoint every 4."""
    cfg = tiny_config_dict(train={"max_steps": STEPS, "valid_every": 4, "keep_last": 2, "keep_best": 2})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start(config: Path, out: Path, delay: float) -> subprocess.Popen:
    """The training child: a resume when ``out`` holds a checkpoint, else a fresh run."""
    resume = any((out / "checkpoints").glob("step-*"))
    argv = ["train", "--resume", str(out)] if resume else ["train", str(config), "--out", str(out)]
    return subprocess.Popen([sys.executable, str(CHILD), str(delay), *argv], env=ENV, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_at(proc: subprocess.Popen, kind: str, k: int, jitter: float) -> bool:
    """SIGKILL ``jitter`` s after the child's k-th ``@kind`` line; False when it ended first."""
    seen = 0
    for line in proc.stderr:
        seen += line.startswith(f"@{kind}")
        if seen == k:
            time.sleep(jitter)
            proc.kill()
            proc.wait()
            return True
    proc.wait()
    return False


def _folders(out: Path) -> list[Path]:
    """The step-N and best-N folders of a run."""
    return sorted([*(out / "checkpoints").glob("step-*"), *(out / "checkpoints").glob("best-*")])


def _temps(out: Path) -> list[Path]:
    """Temporary leftovers of writers (checkpoint.TEMP_NAME) in and beside the run folder."""
    places = [out.parent, out, out / "checkpoints", *_folders(out)]
    return [p for d in places if d.is_dir() for p in d.iterdir() if ck.TEMP_NAME.match(p.name)]


def _all_load(out: Path) -> int:
    """Load every checkpoint folder (and the run folder's model); returns how many were read."""
    folders = _folders(out)
    for folder in folders:
        ck.load_model(folder)
        if folder.name.startswith("step-"):
            ck.load_training_state(folder)
    if (out / "meta.json").exists():
        ck.load_model(out)
    return len(folders)


def _final_state(out: Path) -> dict:
    """Every tensor and counter of the final checkpoint and the best model."""
    last = out / "checkpoints" / f"step-{STEPS}"
    state = json.loads((last / "trainer" / "state.json").read_text())
    state["trainer"].pop("elapsed")
    return {"weights": ck.read_tensors(last / "model.safetensors"),
            "optimizer": ck.read_tensors(last / "trainer" / "optimizer.safetensors"),
            "rng": ck.read_tensors(last / "trainer" / "rng.safetensors"),
            "best": ck.read_tensors(out / "model.safetensors"), "state": state}


def _assert_equal(a: dict, b: dict) -> None:
    """Bitwise equal tensors, equal counters."""
    assert a["state"]["optimizer"] == b["state"]["optimizer"]
    for key, value in a["state"]["trainer"].items():
        assert value == b["state"]["trainer"][key], key
    for part in ("weights", "optimizer", "rng", "best"):
        assert a[part].keys() == b[part].keys(), part
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), (part, name)


def test_sigkill_at_random_moments_then_resume_is_bitwise_exact(tmp_path):
    config = _config(tmp_path)
    straight = _start(config, tmp_path / "straight", 0.0)
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    out, rng = tmp_path / "killed", random.Random(SEED)
    kills = inside_writes = loaded = 0
    while kills < KILLS:
        kind = rng.choice(["step", "write"])
        k = rng.randint(1, 8) if kind == "step" else rng.randint(1, 12)
        jitter = rng.uniform(0, DELAY) if kind == "write" else rng.uniform(0, 0.05)
        assert _kill_at(_start(config, out, DELAY), kind, k, jitter), "the run ended before the kill"
        kills += 1
        inside_writes += bool(_temps(out))
        loaded += _all_load(out)  # 0 unreadable checkpoints
    final = _start(config, out, 0.0)
    assert final.wait(timeout=300) == 0, final.stderr.read()
    print(f"\nkill/resume: {kills} SIGKILLs, {inside_writes} inside a checkpoint write, "
          f"{loaded} checkpoint folders loaded after kills, 0 unreadable")
    assert inside_writes >= 3
    assert _temps(out) == []
    _assert_equal(_final_state(out), _final_state(tmp_path / "straight"))
