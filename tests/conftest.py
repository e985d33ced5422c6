"""Suite-wide settings and the one tiny configuration the tests share.

Tiny models run fastest on one thread (and the CI box has two cores).
"""
import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from transduce.config import Config, from_dict

TOY_OVERRIDES = ["data.toy_size=400", "train.max_steps=30", "train.valid_every=30",
                 "train.valid_max_sentences=20", "train.progress=false", "train.tensorboard=false"]
"""Command-line overrides that make the built-in ``toy`` recipe a run of a few seconds."""

TINY = {
    "data": {"corpus": "reverse", "toy_size": 160, "toy_vocab": 6, "toy_len": [2, 5]},
    "tokenizer": {"src": "whitespace", "tgt": "whitespace"},
    "model": {"family": "luong", "cell": "gru", "emb_dim": 8, "hidden": 16, "enc_layers": 1,
              "dec_layers": 1, "attention": "general", "input_feeding": False,
              "dropout": 0.2, "emb_dropout": 0.1},
    "search": {"beam": 1, "max_len_a": 1.0, "max_len_b": 2},
    "train": {"batch_sentences": 16, "max_steps": 8, "lr": 5e-3, "valid_every": 4,
              "valid_max_sentences": 16, "log_every": 2, "tensorboard": False, "progress": False,
              "early_stop_metric": "loss", "keep_last": 2},
}
"""A GRU model of a few hundred parameters on the reverse task: trains in about a second."""


def tiny_config_dict(**sections: dict) -> dict:
    """TINY with ``section={key: value}`` changes merged in (a fresh copy)."""
    out = copy.deepcopy(TINY)
    for name, changes in sections.items():
        out.setdefault(name, {}).update(changes)
    return out


@pytest.fixture
def tiny_config():
    """``tiny_config(train={...}, data={...})`` -> a validated Config."""
    def make(**sections: dict) -> Config:
        return from_dict(tiny_config_dict(**sections))
    return make


@pytest.fixture(scope="session")
def toy_overrides() -> tuple[str, ...]:
    return tuple(TOY_OVERRIDES)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_bench_script(name: str):
    """bench/<name>.py imported as the module ``name`` (bench/ is not a package)."""
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
