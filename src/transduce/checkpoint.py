"""Model folders and training checkpoints: safetensors + JSON/YAML, never pickle.

A model folder::

    config.yaml                      the full Config (Config.save)
    src.* tgt.*                      the codecs (Codec.save(dir, "src"/"tgt"):
                                     vocabulary, tokenizer model files)
    model.safetensors                weights; tied/shared tensors stored once
    meta.json                        step, metrics, transduce version,
                                     parameter count, vocabulary sizes, time
    trainer/                         (training checkpoints only)
      optimizer.safetensors          every tensor of optimizer.state_dict()
                                     ("state.<param id>.<name>")
      rng.safetensors                torch / cuda / teacher-forcing generator
                                     states, numpy MT state
      state.json                     everything else: optimizer param groups and
                                     non-tensor state, scheduler, step, epoch,
                                     batch position, python RNG, early stopping,
                                     best metrics

Loading executes no code: YAML is read with ``safe_load``, JSON with ``json``
and tensors with ``safetensors``.

Writes are atomic. A folder is written into a temporary sibling folder
(``.NAME.tmp-PID-XXXX``) and renamed into place; when the destination already
exists, each file is moved in with ``os.replace`` (model.safetensors first,
meta.json last) and nothing else in the destination is touched (so the run
folder, which also holds ``log.jsonl`` and ``checkpoints/``, can itself be a
model folder). Any ``OSError`` while writing (a full disk included) raises a
``CheckpointError`` and removes the temporary folder: the previous checkpoint
is left as it was. A missing file, bad JSON/YAML or a truncated safetensors
file raises a ``CheckpointError`` naming the file.
"""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from safetensors.torch import save_model as _st_save_model
from torch import Tensor, nn

from . import config as config_mod
from .config import Config
from .errors import CheckpointError, UserError
from .model import Seq2Seq
from .version import __version__
from .vocab import Codec

WEIGHTS = "model.safetensors"
META = "meta.json"
CONFIG = "config.yaml"
TRAINER = "trainer"
OPTIMIZER = "optimizer.safetensors"
RNG = "rng.safetensors"
STATE = "state.json"


@dataclass
class Loaded:
    """What ``load_model`` returns."""

    model: nn.Module
    config: Config
    src_codec: Any
    tgt_codec: Any
    meta: dict


@dataclass
class TrainingState:
    """Everything besides the weights needed to resume exactly.

    optimizer: ``optimizer.state_dict()`` (tensors + plain values).
    state:     JSON-able dict (step, epoch, batch position, scheduler, early
               stopping, best metrics, python RNG ...), owned by the trainer.
    tensors:   named tensors (RNG states ...), stored in rng.safetensors.
    """

    optimizer: dict
    state: dict = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)


# --- low-level writers (monkeypatched by tests to simulate a full disk) ------

def _save_tensors(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write named tensors to a safetensors file."""
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


def _save_module(model: nn.Module, path: Path) -> None:
    """Write a module's state dict; shared (tied) tensors are stored once."""
    _st_save_model(model, str(path), metadata={"format": "pt"})


def _write_text(path: Path, text: str) -> None:
    """Write UTF-8 text (not atomic: callers write into temporary folders)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then ``os.replace`` it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _write_text(tmp, text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(_os_message(path, exc)) from exc


def _os_message(path: Path, exc: OSError) -> str:
    """The CheckpointError message of a failed write (disk full said plainly)."""
    if exc.errno == errno.ENOSPC:
        return (f"cannot write checkpoint {path}: disk full (no space left on device); "
                "the previous checkpoint was left intact; free some space and resume")
    return f"cannot write checkpoint {path}: {exc.strerror or exc}; the previous checkpoint was left intact"


# --- atomic folders ------------------------------------------------------------

_ORDER = {WEIGHTS: 0, TRAINER: 1, META: 3}  # meta.json last: it marks completeness


def _move_into(tmp: Path, final: Path) -> None:
    """Move the entries of ``tmp`` into the existing folder ``final``, one atomic rename each."""
    for entry in sorted(tmp.iterdir(), key=lambda p: (_ORDER.get(p.name, 2), p.name)):
        target = final / entry.name
        if entry.is_dir() and target.is_dir():
            old = final / f".{entry.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
            os.rename(entry, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(entry, target)
    tmp.rmdir()


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success its content becomes ``final``.

    On any error the temporary folder is removed and ``final`` is untouched;
    an OSError becomes a CheckpointError.
    """
    final = Path(final)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        yield tmp
        if final.exists():
            _move_into(tmp, final)
        else:
            os.rename(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(_os_message(final, exc)) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --- model folders -------------------------------------------------------------

def _meta(model: nn.Module, src_codec: Any, tgt_codec: Any, meta: dict | None) -> dict:
    """meta.json: version, parameter count, vocabulary sizes, time, then ``meta``."""
    out = {
        "transduce_version": __version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "src_vocab_size": _vocab_size(src_codec),
        "tgt_vocab_size": _vocab_size(tgt_codec),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.update(meta or {})
    return out


def _vocab_size(codec: Any) -> int | None:
    """len(codec.vocab), or None for a codec without one."""
    vocab = getattr(codec, "vocab", None)
    return len(vocab) if vocab is not None else None


def _write_model_files(folder: Path, model: nn.Module, cfg: Config, src_codec: Any,
                       tgt_codec: Any, meta: dict | None) -> None:
    """The files of a model folder, written into ``folder`` (meta.json last)."""
    cfg.save(folder / CONFIG)
    src_codec.save(folder, "src")
    tgt_codec.save(folder, "tgt")
    _save_module(model, folder / WEIGHTS)
    _write_text(folder / META, json.dumps(_meta(model, src_codec, tgt_codec, meta), indent=2))


def save_model(dir: str | Path, model: nn.Module, cfg: Config, src_codec: Any, tgt_codec: Any,
               meta: dict | None = None) -> Path:
    """Write a model folder atomically (see module doc); returns its path."""
    with atomic_dir(dir) as tmp:
        _write_model_files(tmp, model, cfg, src_codec, tgt_codec, meta)
    return Path(dir)


def save_checkpoint(dir: str | Path, model: nn.Module, cfg: Config, src_codec: Any, tgt_codec: Any,
                    meta: dict | None, training: TrainingState) -> Path:
    """A model folder plus ``trainer/``, written as one atomic folder."""
    with atomic_dir(dir) as tmp:
        _write_model_files(tmp, model, cfg, src_codec, tgt_codec, meta)
        (tmp / TRAINER).mkdir()
        _write_training_files(tmp / TRAINER, training)
    return Path(dir)


def _require(path: Path) -> Path:
    """``path``, or a CheckpointError when it is not a file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: file missing (incomplete or not a transduce checkpoint)")
    return path


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; CheckpointError naming it when missing or invalid."""
    path = _require(Path(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from None


def read_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Load a safetensors file; CheckpointError naming it when missing, truncated or corrupt."""
    path = _require(Path(path))
    try:
        tensors = load_file(str(path), device=str(device))
        # load_file maps the file: copy, so that nothing depends on the file staying as it is
        return {k: v.clone() for k, v in tensors.items()} if torch.device(device).type == "cpu" else tensors
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError, ...
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({exc})") from None


def load_weights(model: nn.Module, path: str | Path, device: str | torch.device = "cpu") -> None:
    """Copy weights from ``path`` into ``model`` (strict; tied tensors restored)."""
    path = Path(path)
    state = read_tensors(path, device)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not _is_alias(own, k, state)]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the model "
                              f"(missing: {missing[:5]}, unexpected: {unexpected[:5]})")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise CheckpointError(f"{path}: weights do not match the model ({first})") from None


def _is_alias(own: dict[str, Tensor], key: str, saved: dict[str, Tensor]) -> bool:
    """True when ``own[key]`` shares storage with a tensor saved under another name."""
    ptr = own[key].untyped_storage().data_ptr()
    return any(k in saved and own[k].untyped_storage().data_ptr() == ptr for k in own if k != key)


def load_config(dir: str | Path) -> Config:
    """The Config of a model folder."""
    path = _require(Path(dir) / CONFIG)
    try:
        return config_mod.load(path)
    except UserError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _load_codec(dir: Path, prefix: str) -> Any:
    """The ``prefix`` (src/tgt) Codec of a model folder; CheckpointError when it cannot be read."""
    try:
        return Codec.load(dir, prefix)
    except CheckpointError:
        raise
    except (UserError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{dir}: cannot load the {prefix} vocabulary/tokenizer ({exc})") from None


def load_model(dir: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """Load a model folder written by ``save_model``/``save_checkpoint`` (model in eval mode)."""
    dir = Path(dir)
    if not dir.is_dir():
        raise CheckpointError(f"model folder not found: {dir}")
    cfg = load_config(dir)
    meta = read_json(dir / META)
    src_codec, tgt_codec = _load_codec(dir, "src"), _load_codec(dir, "tgt")
    src_v = meta.get("src_vocab_size") or len(src_codec.vocab)
    tgt_v = meta.get("tgt_vocab_size") or len(tgt_codec.vocab)
    model = Seq2Seq.from_config(cfg.model, src_v, tgt_v)
    load_weights(model, dir / WEIGHTS)
    model.to(device).eval()
    return Loaded(model, cfg, src_codec, tgt_codec, meta)


# --- training state --------------------------------------------------------------

def _flatten_optimizer(sd: dict) -> tuple[dict[str, Tensor], dict]:
    """optimizer.state_dict() -> (tensors "state.<pid>.<name>", JSON-able rest)."""
    tensors: dict[str, Tensor] = {}
    plain: dict[str, dict] = {}
    for pid, entry in sd["state"].items():
        plain[str(pid)] = {}
        for name, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"state.{pid}.{name}"] = value
            else:
                plain[str(pid)][name] = value
    return tensors, {"state": plain, "param_groups": sd["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, Tensor], rest: dict) -> dict:
    """Inverse of ``_flatten_optimizer`` (betas back to tuples)."""
    state: dict[int, dict] = {int(pid): dict(values) for pid, values in rest["state"].items()}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    groups = [dict(g) for g in rest["param_groups"]]
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def _write_training_files(folder: Path, training: TrainingState) -> None:
    """optimizer.safetensors, rng.safetensors and state.json into ``folder``."""
    tensors, rest = _flatten_optimizer(training.optimizer)
    _save_tensors(tensors, folder / OPTIMIZER)
    _save_tensors(training.tensors, folder / RNG)
    _write_text(folder / STATE, json.dumps({"optimizer": rest, "trainer": training.state}, indent=1))


def load_training_state(dir: str | Path, device: str | torch.device = "cpu") -> TrainingState:
    """Read ``dir/trainer/``; CheckpointError naming any missing or corrupt file."""
    folder = Path(dir) / TRAINER
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no training state (not a training checkpoint)")
    data = read_json(folder / STATE)
    try:
        optimizer = _unflatten_optimizer(read_tensors(folder / OPTIMIZER, device), data["optimizer"])
        return TrainingState(optimizer, data["trainer"], read_tensors(folder / RNG))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder / STATE}: unexpected content ({exc!r})") from None


# --- random number generators --------------------------------------------------------

def capture_rng() -> tuple[dict, dict[str, Tensor]]:
    """States of python random, numpy and torch (CPU and CUDA) -> (JSON part, tensors)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {"python": [version, list(internal), gauss],
             "numpy": [kind, int(pos), int(has_gauss), float(cached)]}
    tensors = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    return plain, tensors


def restore_rng(plain: dict, tensors: dict[str, Tensor]) -> None:
    """Inverse of ``capture_rng``."""
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"].cpu())
    cuda = [tensors[k] for k in sorted(tensors, key=_cuda_index) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda[: torch.cuda.device_count()]])


def _cuda_index(key: str) -> int:
    """i of a ``cuda.i`` key (-1 for others), to sort CUDA RNG states."""
    return int(key.split(".")[1]) if key.startswith("cuda.") else -1


# --- averaging --------------------------------------------------------------------

def average_checkpoints(dirs: list[str | Path], out_dir: str | Path) -> Path:
    """Average the weights of model folders ``dirs`` (same architecture) into ``out_dir``.

    Floating tensors are averaged in float64 and cast back; other tensors are
    taken from the last folder. Config, codecs and meta come from the last
    folder (meta gains ``averaged_from``).
    """
    if not dirs:
        raise CheckpointError("average_checkpoints: no checkpoint folders given")
    dirs = [Path(d) for d in dirs]
    states = [read_tensors(d / WEIGHTS) for d in dirs]
    avg = _average(states, dirs)
    meta = read_json(dirs[-1] / META)
    meta["averaged_from"] = [str(d) for d in dirs]
    with atomic_dir(out_dir) as tmp:
        for entry in dirs[-1].iterdir():
            if entry.is_file() and entry.name not in (WEIGHTS, META) and not entry.name.startswith("."):
                shutil.copy2(entry, tmp / entry.name)
        _save_tensors(avg, tmp / WEIGHTS, metadata={"format": "pt"})
        _write_text(tmp / META, json.dumps(meta, indent=2))
    return Path(out_dir)


def _average(states: list[dict[str, Tensor]], dirs: list[Path]) -> dict[str, Tensor]:
    """Mean of floating tensors (float64, cast back); others from the last state."""
    keys = set(states[-1])
    for s, d in zip(states, dirs):
        if set(s) != keys or any(s[k].shape != states[-1][k].shape for k in keys):
            raise CheckpointError(f"{d / WEIGHTS}: weights differ in names or shapes from {dirs[-1] / WEIGHTS}")
    out = {}
    for k, last in states[-1].items():
        if last.is_floating_point():
            total = sum(s[k].double() for s in states)
            out[k] = (total / len(states)).to(last.dtype)
        else:
            out[k] = last.clone()
    return out
