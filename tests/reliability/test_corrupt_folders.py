"""Corrupt model folders and checkpoints, and pickle payloads: each refused with a
CheckpointError naming the file (the CLI: exit 2), no payload ever executed."""
import io
import json
import os
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from conftest import tiny_config_dict
from transduce import checkpoint as ck
from transduce import cli

MARKER = Path(tempfile.gettempdir()) / f"transduce-pickle-payload-ran-{os.getpid()}"


class Payload:
    """Unpickling this creates MARKER: proof that a loader executed a pickle."""

    def __reduce__(self):
        return (Path.touch, (MARKER,))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run folder of 4 steps: the model at the top, checkpoints/step-4 with trainer/."""
    base = tmp_path_factory.mktemp("base")
    config = base / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(train={"max_steps": 4, "valid_every": 4})))
    assert cli.main(["train", str(config), "--out", str(base / "run")]) == 0
    return base / "run"


def _json(path: Path, change) -> None:
    """Rewrite the JSON file ``path`` as ``change(content)``."""
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _tensors(path: Path, change) -> None:
    """Rewrite the safetensors file ``path`` as ``change(tensors)``."""
    tensors = ck.read_tensors(path)
    save_file(change(tensors), str(path))


def _pickle(path: Path) -> None:
    """Replace ``path`` with a torch.save pickle whose loading would create MARKER."""
    torch.save({"weights": Payload()}, str(path))


def _nan(tensors: dict) -> dict:
    """The tensors with a NaN in the first floating one."""
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name].view(-1)[0] = float("nan")
    return tensors


MODEL_CASES = {  # name -> (file at fault, how to corrupt the folder)
    "meta.json a list": ("meta.json", lambda d: (d / "meta.json").write_text("[1, 2]")),
    "meta.json string step": ("meta.json", lambda d: _json(d / "meta.json", lambda m: {**m, "step": "5"})),
    "meta.json bool vocab size": ("meta.json", lambda d: _json(d / "meta.json",
                                                              lambda m: {**m, "src_vocab_size": True})),
    "meta.json invalid": ("meta.json", lambda d: (d / "meta.json").write_text("{not json")),
    "meta.json missing": ("meta.json", lambda d: (d / "meta.json").unlink()),
    "config.yaml a list": ("config.yaml", lambda d: (d / "config.yaml").write_text("- 1\n- 2\n")),
    "config.yaml unknown key": ("config.yaml", lambda d: (d / "config.yaml").write_text("model: {hiden: 3}\n")),
    "config.yaml python tag": ("config.yaml", lambda d: (d / "config.yaml").write_text(
        f"!!python/object/apply:pathlib.Path.touch ['{MARKER}']\n")),
    "src vocab shorter than meta": ("src.vocab.json", lambda d: _json(
        d / "src.vocab.json", lambda v: {"tokens": v["tokens"][:-1]})),
    "tgt vocab shorter than weights": ("tgt.vocab.json", lambda d: (
        _json(d / "meta.json", lambda m: {k: v for k, v in m.items() if k != "tgt_vocab_size"}),
        _json(d / "tgt.vocab.json", lambda v: {"tokens": v["tokens"][:-2]}))),
    "vocab a list": ("src.vocab.json", lambda d: (d / "src.vocab.json").write_text('["<pad>"]')),
    "vocab duplicate tokens": ("tgt.vocab.json", lambda d: _json(
        d / "tgt.vocab.json", lambda v: {"tokens": v["tokens"][:-1] + v["tokens"][-2:-1]})),
    "vocab non-string tokens": ("src.vocab.json", lambda d: _json(
        d / "src.vocab.json", lambda v: {"tokens": v["tokens"][:4] + list(range(len(v["tokens"]) - 4))})),
    "tokenizer invalid": ("src.tokenizer.json", lambda d: (d / "src.tokenizer.json").write_text("{")),
    "weights truncated": ("model.safetensors", lambda d: (d / "model.safetensors").write_bytes(
        (d / "model.safetensors").read_bytes()[:200])),
    "weights missing": ("model.safetensors", lambda d: (d / "model.safetensors").unlink()),
    "weights NaN": ("model.safetensors", lambda d: _tensors(d / "model.safetensors", _nan)),
    "weights a tensor short": ("model.safetensors", lambda d: _tensors(
        d / "model.safetensors", lambda t: {k: v for k, v in t.items() if k != "decoder.out.bias"})),
    "weights pickle payload": ("model.safetensors", lambda d: _pickle(d / "model.safetensors")),
    "weights raw pickle": ("model.safetensors", lambda d: (d / "model.safetensors").write_bytes(
        pickle.dumps(Payload()))),
}


@pytest.mark.parametrize("case", MODEL_CASES)
def test_a_corrupt_model_folder_is_refused_naming_the_file(trained, tmp_path, monkeypatch, capsys, case):
    MARKER.unlink(missing_ok=True)
    folder = tmp_path / "model"
    shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("checkpoints"))
    culprit, corrupt = MODEL_CASES[case]
    corrupt(folder)
    with pytest.raises(ck.CheckpointError, match=culprit.replace(".", r"\.")):
        ck.load_model(folder)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a b\n"), encoding="utf-8"))
    assert cli.main(["translate", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("transduce: error: ") and culprit in err[0]
    assert not MARKER.exists()


TRAINER_CASES = {  # name -> (file at fault, how to corrupt checkpoints/step-4/trainer)
    "state.json string step": ("state.json", lambda t: _json(
        t / "state.json", lambda s: {**s, "trainer": {**s["trainer"], "step": "4"}})),
    "state.json a list": ("state.json", lambda t: (t / "state.json").write_text("[]")),
    "state.json no epoch": ("state.json", lambda t: _json(
        t / "state.json", lambda s: {**s, "trainer": {k: v for k, v in s["trainer"].items() if k != "epoch"}})),
    "state.json bad early stopping": ("state.json", lambda t: _json(
        t / "state.json", lambda s: {**s, "trainer": {**s["trainer"], "early": {"best": "low"}}})),
    "state.json bad param groups": ("state.json", lambda t: _json(
        t / "state.json", lambda s: {**s, "optimizer": {**s["optimizer"], "param_groups": [3]}})),
    "rng missing a tensor": ("rng.safetensors", lambda t: _tensors(
        t / "rng.safetensors", lambda r: {k: v for k, v in r.items() if k != "tf_generator"})),
    "rng wrong dtype": ("rng.safetensors", lambda t: _tensors(
        t / "rng.safetensors", lambda r: {**r, "torch": r["torch"].float()})),
    "optimizer NaN": ("optimizer.safetensors", lambda t: _tensors(t / "optimizer.safetensors", _nan)),
    "optimizer pickle payload": ("optimizer.safetensors", lambda t: _pickle(t / "optimizer.safetensors")),
}


@pytest.mark.parametrize("case", TRAINER_CASES)
def test_a_corrupt_training_state_is_refused_naming_the_file(trained, tmp_path, capsys, case):
    MARKER.unlink(missing_ok=True)
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    culprit, corrupt = TRAINER_CASES[case]
    corrupt(run / "checkpoints" / "step-4" / "trainer")
    assert cli.main(["train", "--resume", str(run), "train.max_steps=8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("skipping checkpoint" in line and culprit in line for line in err), err
    assert err[-1].startswith("transduce: error: cannot resume: no loadable checkpoint")
    assert not MARKER.exists()


def test_a_stray_pickle_beside_the_weights_is_never_read(trained, tmp_path):
    MARKER.unlink(missing_ok=True)
    folder = tmp_path / "model"
    shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("checkpoints"))
    for name in ("pytorch_model.bin", "model.pt", "src.spm.model"):
        _pickle(folder / name)
    assert ck.load_model(folder).meta["step"] == 4
    assert not MARKER.exists()
