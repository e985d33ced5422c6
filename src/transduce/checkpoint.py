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

An ensemble folder (``write_ensemble``; loaded by ``load_model`` as an
ensembles.Ensemble, or as its one member when it has rescorers)::

    ensemble.json                    the member and rescorer folders' names, where
                                     they came from
    member-1/ member-2/ ...          model folders (the files above, no trainer/)
    rescorer-1/ ...                  (optional) model folders whose log-probabilities
                                     re-rank the members' beam (Translator)

Loading executes no code: YAML is read with ``safe_load``, JSON with ``json``
and tensors with ``safetensors``.

Writes are atomic. A folder is written into a temporary sibling folder
(``.NAME.tmp-PID-XXXX``) and renamed into place; when the destination already
exists, each file is moved in with ``os.replace`` (model.safetensors first,
meta.json last) and nothing else in the destination is touched (so the run
folder, which also holds ``log.jsonl`` and ``checkpoints/``, can itself be a
model folder). Any ``OSError`` while writing (a full disk included, and
safetensors' own ``SafetensorError``, which carries the OS error) raises a
``CheckpointError`` and removes the temporary folder: the previous checkpoint
is left as it was. A killed writer leaves its temporary folder behind
(``.NAME.tmp-PID-XXXXXXXX``, ``.NAME.old-PID-XXXXXXXX``): ``remove_stale``
removes those of dead processes (runfolder.py calls it when a run starts).

Weights or optimizer tensors holding NaN or inf are never written
(``NonFiniteError``, a ``CheckpointError``) and are refused on load.

Loading checks every file before using it: ``meta.json`` and
``trainer/state.json`` against a schema (a mapping, the type of every key),
the vocabularies (a list of distinct strings, sizes equal to what
``meta.json`` says), the weights' shapes against the model built from
``config.yaml`` and the vocabulary sizes (embedding and output rows), and
``rng.safetensors`` (every tensor present, right dtype). A missing file, bad
JSON/YAML, a truncated safetensors file or content of the wrong shape raises
a ``CheckpointError`` naming the file.
"""
from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from . import config as config_mod
from .config import Config
from .errors import CheckpointError, ConfigError, UserError
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
ENSEMBLE = "ensemble.json"
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")
"""Names of the temporary files and folders the writers below make (``.NAME.tmp-PID-XXXXXXXX``)."""


class NonFiniteError(CheckpointError):
    """Weights or optimizer state holding NaN or inf: never written, refused on load."""


@dataclass
class Loaded:
    """What ``load_model`` returns."""

    model: nn.Module
    config: Config
    src_codec: Any
    tgt_codec: Any
    meta: dict
    rescorers: list["Loaded"] = field(default_factory=list)
    """Models that re-rank this one's beam (an ensemble folder's rescorer-N)."""


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

@contextmanager
def _safetensors_io() -> Iterator[None]:
    """Turn safetensors' SafetensorError (not an OSError) into the OSError it reports ("os error N")."""
    try:
        yield
    except SafetensorError as exc:
        found = re.search(r"os error (\d+)", str(exc))
        raise OSError(int(found.group(1)) if found else errno.EIO, str(exc)) from exc


def _save_tensors(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write named tensors to a safetensors file (mode as for any file: see _usual_mode)."""
    with _safetensors_io():
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    _usual_mode(path)


def _tensor_key(t: Tensor) -> tuple:
    """Equal for the same tensor under two names (tied weights), different for tensors that
    merely share a storage, such as the views into cuDNN's flat RNN weights on a GPU."""
    where = t.data_ptr() if t.numel() else id(t)  # empty tensors all have address 0
    return t.device, where, t.dtype, tuple(t.shape), t.stride()


def _save_module(model: nn.Module, path: Path) -> None:
    """Write a module's state dict; tied tensors (one tensor under several names, _tensor_key)
    are stored once, under the first name in sorted order, the others named in the metadata
    (as safetensors' save_model does); every other tensor is stored."""
    groups: dict[tuple, list[str]] = {}
    state = model.state_dict()
    for name, t in state.items():
        groups.setdefault(_tensor_key(t), []).append(name)
    metadata, kept = {"format": "pt"}, {}
    for names in groups.values():
        first, *others = sorted(names)
        kept[first] = state[first]
        metadata.update({other: first for other in others})
    _save_tensors(kept, path, metadata)
    _usual_mode(path)


def _usual_mode(path: Path) -> None:
    """safetensors creates its files 0600; give them the mode the umask gives other files
    (0644 usually), so that a model folder copied for another user can be read."""
    os.chmod(path, 0o666 & ~_UMASK)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def non_finite(tensors: dict[str, Tensor]) -> list[str]:
    """Names of the floating tensors of ``tensors`` holding a NaN or an inf."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def check_finite(tensors: dict[str, Tensor], path: Path, doing: str) -> None:
    """NonFiniteError naming ``path`` when a floating tensor holds NaN or inf (``doing``: "write"/"load")."""
    bad = non_finite(tensors)
    if bad:
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise NonFiniteError(f"{path}: refusing to {doing} non-finite values (NaN or inf) in "
                             f"{len(bad)} of {len(tensors)} tensors ({shown})")


def _write_text(path: Path, text: str) -> None:
    """Write UTF-8 text (not atomic: callers write into temporary folders)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_text(path: str | Path, text: str, what: str = "checkpoint") -> None:
    """Write ``text`` to a temporary file beside ``path``, then ``os.replace`` it;
    CheckpointError (``write_error`` of ``what``) when it cannot be written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _write_text(tmp, text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(write_error(path, exc, what)) from exc


def write_error(path: Path, exc: OSError, what: str = "checkpoint") -> str:
    """The one-line message of a failed write of ``what`` (a full disk said plainly)."""
    if exc.errno == errno.ENOSPC:
        return (f"cannot write {what} {path}: disk full (no space left on device); "
                "the previous checkpoint was left intact; free some space and resume")
    return f"cannot write {what} {path}: {exc.strerror or exc}; the previous checkpoint was left intact"


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
        raise CheckpointError(write_error(final, exc)) from exc
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
    """Write a model folder atomically (see module doc); returns its path. NonFiniteError for NaN/inf weights."""
    check_finite(model.state_dict(), Path(dir) / WEIGHTS, "write")
    with atomic_dir(dir) as tmp:
        _write_model_files(tmp, model, cfg, src_codec, tgt_codec, meta)
    return Path(dir)


def save_checkpoint(dir: str | Path, model: nn.Module, cfg: Config, src_codec: Any, tgt_codec: Any,
                    meta: dict | None, training: TrainingState) -> Path:
    """A model folder plus ``trainer/``, written as one atomic folder (nothing when a tensor is NaN/inf)."""
    check_finite(model.state_dict(), Path(dir) / WEIGHTS, "write")
    check_finite(_flatten_optimizer(training.optimizer)[0], Path(dir) / TRAINER / OPTIMIZER, "write")
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


def load_weights(model: nn.Module, path: str | Path, device: str | torch.device = "cpu",
                 state: dict[str, Tensor] | None = None) -> None:
    """Copy weights from ``path`` (or its already read ``state``) into ``model`` (strict; tied
    tensors restored); CheckpointError naming the file for other names or shapes, or NaN/inf."""
    path = Path(path)
    state = read_tensors(path, device) if state is None else state
    own = model.state_dict()
    missing = [k for k in own if k not in state and not _is_alias(own, k, state)]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the model "
                              f"(missing: {missing[:5]}, unexpected: {unexpected[:5]})")
    wrong = [k for k in state if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(f"{path}: weights do not match the model ({k} has shape "
                              f"{list(state[k].shape)}, the model needs {list(own[k].shape)})")
    check_finite(state, path, "load")
    model.load_state_dict(state, strict=False)


def _is_alias(own: dict[str, Tensor], key: str, saved: dict[str, Tensor]) -> bool:
    """True when ``own[key]`` is a tensor saved under another name (tied weights, as
    _save_module groups them)."""
    mine = _tensor_key(own[key])
    return any(k in saved and _tensor_key(own[k]) == mine for k in own if k != key)


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
        codec = Codec.load(dir, prefix)
    except CheckpointError:
        raise
    except (UserError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{dir}: cannot load the {prefix} vocabulary/tokenizer ({exc})") from None
    tokens = codec.vocab.itos
    if not all(isinstance(t, str) for t in tokens) or len(set(tokens)) != len(tokens):
        raise CheckpointError(f"{dir / f'{prefix}.vocab.json'}: the tokens must be distinct strings")
    return codec


META_SCHEMA = {"transduce_version?": str, "parameters?": int, "src_vocab_size?": (int, type(None)),
               "tgt_vocab_size?": (int, type(None)), "time?": str, "step?": int, "epoch?": int,
               "metrics?": dict, "best?": dict, "averaged_from?": list}
"""meta.json: a mapping; every key optional ("?"), each of its type when present."""


def read_meta(dir: Path) -> dict:
    """meta.json of a model folder, checked against META_SCHEMA."""
    path = dir / META
    meta = read_json(path)
    check_schema(meta, META_SCHEMA, path)
    return meta


def _vocab_sizes(dir: Path, meta: dict, src_codec: Any, tgt_codec: Any) -> tuple[int, int]:
    """(source, target) vocabulary sizes; CheckpointError when meta.json says other sizes."""
    sizes = []
    for prefix, codec in (("src", src_codec), ("tgt", tgt_codec)):
        n, said = len(codec.vocab), meta.get(f"{prefix}_vocab_size")
        if said is not None and said != n:
            raise CheckpointError(f"{dir / f'{prefix}.vocab.json'}: {n} tokens, but {dir / META} says "
                                  f"{prefix}_vocab_size {said}")
        sizes.append(n)
    return sizes[0], sizes[1]


VOCAB_ROWS = {"encoder.embedding.weight": "src", "decoder.embedding.weight": "tgt",
              "decoder.out.weight": "tgt", "decoder.out.bias": "tgt"}
"""Weights whose first dimension is a vocabulary size, and which one."""


def _check_vocab_rows(dir: Path, state: dict[str, Tensor], sizes: tuple[int, int]) -> None:
    """CheckpointError naming the vocabulary file whose size differs from its weights' rows."""
    for key, prefix in VOCAB_ROWS.items():
        n = sizes[0] if prefix == "src" else sizes[1]
        if key in state and state[key].dim() >= 1 and state[key].shape[0] != n:
            raise CheckpointError(f"{dir / f'{prefix}.vocab.json'}: {n} tokens, but {dir / WEIGHTS} "
                                  f"{key} has {state[key].shape[0]} rows")


def load_model(dir: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """Load a model folder written by ``save_model``/``save_checkpoint`` (model in eval mode),
    or an ensemble folder written by ``write_ensemble`` (an ensembles.Ensemble)."""
    dir = Path(dir)
    if not dir.is_dir():
        raise CheckpointError(f"model folder not found: {dir}")
    if (dir / ENSEMBLE).is_file():
        return _load_ensemble(dir, device)
    cfg = load_config(dir)
    meta = read_meta(dir)
    src_codec, tgt_codec = _load_codec(dir, "src"), _load_codec(dir, "tgt")
    sizes = _vocab_sizes(dir, meta, src_codec, tgt_codec)
    state = read_tensors(dir / WEIGHTS)
    _check_vocab_rows(dir, state, sizes)
    try:
        model = Seq2Seq.from_config(cfg.model, *sizes)
    except ConfigError as exc:
        raise CheckpointError(f"{dir / CONFIG}: {exc}") from None
    load_weights(model, dir / WEIGHTS, state=state)
    model.to(device).eval()
    return Loaded(model, cfg, src_codec, tgt_codec, meta)


# --- schemas ----------------------------------------------------------------------

def _type_names(kind: type | tuple) -> str:
    """'int', 'int or float or null' ... for a message."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def check_schema(value: Any, schema: Any, path: Path, where: str = "") -> None:
    """CheckpointError naming ``path`` and the key when ``value`` does not fit ``schema``.

    A schema is a type (or tuple of types; bool is no int), ``[schema]`` for a
    list of such items, or a dict of key -> schema (a key ending in "?" may be
    absent; other keys are not checked).
    """
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise CheckpointError(f"{path}: {where or 'the content'} must be a mapping, "
                                  f"not {type(value).__name__}")
        for key, sub in schema.items():
            name = key.rstrip("?")
            if name in value:
                check_schema(value[name], sub, path, f"{where}.{name}" if where else name)
            elif not key.endswith("?"):
                raise CheckpointError(f"{path}: key '{where + '.' if where else ''}{name}' is missing")
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise CheckpointError(f"{path}: '{where}' must be a list, not {type(value).__name__}")
        for i, item in enumerate(value):
            check_schema(item, schema[0], path, f"{where}[{i}]")
        return
    kinds = schema if isinstance(schema, tuple) else (schema,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise CheckpointError(f"{path}: '{where}' must be {_type_names(schema)}, not {type(value).__name__}")


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


STATE_SCHEMA = {"optimizer": {"state": dict, "param_groups": [dict]}, "trainer": dict}
"""trainer/state.json; the trainer checks its own part (train.TRAINER_SCHEMA)."""


def check_tensors(tensors: dict[str, Tensor], required: dict[str, torch.dtype], path: Path) -> None:
    """CheckpointError naming ``path`` when a ``required`` tensor is missing or not 1-D of its dtype."""
    for name, dtype in required.items():
        if name not in tensors:
            raise CheckpointError(f"{path}: tensor '{name}' is missing")
        if tensors[name].dtype != dtype or tensors[name].dim() != 1:
            raise CheckpointError(f"{path}: tensor '{name}' is not a 1-D {dtype} tensor")


def load_training_state(dir: str | Path, device: str | torch.device = "cpu") -> TrainingState:
    """Read ``dir/trainer/`` (STATE_SCHEMA and finite optimizer tensors checked; the trainer checks its part);
    CheckpointError naming any missing or corrupt file."""
    folder = Path(dir) / TRAINER
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no training state (not a training checkpoint)")
    data = read_json(folder / STATE)
    check_schema(data, STATE_SCHEMA, folder / STATE)
    rng = read_tensors(folder / RNG)
    tensors = read_tensors(folder / OPTIMIZER, device)
    check_finite(tensors, folder / OPTIMIZER, "load")
    try:
        optimizer = _unflatten_optimizer(tensors, data["optimizer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder / STATE}: unexpected optimizer content ({exc!r})") from None
    return TrainingState(optimizer, data["trainer"], rng)


# --- temporary leftovers of killed writers --------------------------------------------

def _alive(pid: int) -> bool:
    """True when process ``pid`` exists (this one included)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders (``TEMP_NAME``) of dead writers in ``folder``
    (only those made for ``name`` when given); returns what was removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        found = TEMP_NAME.match(entry.name)
        if not found or (name is not None and found["name"] != name) or _alive(int(found["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


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
    for d in dirs:
        refuse_ensemble(d, "its members differ in their weights' meaning and cannot be averaged")
    states = [read_tensors(d / WEIGHTS) for d in dirs]
    avg = _average(states, dirs)
    check_finite(avg, Path(out_dir) / WEIGHTS, "write")
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


# --- ensembles --------------------------------------------------------------------

ENSEMBLE_SCHEMA = {"transduce_version?": str, "members": list, "sources?": list, "time?": str,
                   "rescorers?": list, "rescorer_sources?": list}
"""ensemble.json: the member and rescorer folders (names inside the ensemble folder), where they
came from."""


def is_ensemble(dir: str | Path) -> bool:
    """True when ``dir`` is an ensemble folder (holds ensemble.json)."""
    return (Path(dir) / ENSEMBLE).is_file()


FINE_TUNE_A_MEMBER = "fine-tune one of its members (its member-N folders) instead"
"""Why --init-from refuses an ensemble folder (cli.py and train.py)."""


def refuse_ensemble(dir: str | Path, why: str) -> None:
    """CheckpointError "DIR is an ensemble folder: WHY" where only a single model will do."""
    if is_ensemble(dir):
        raise CheckpointError(f"{dir} is an ensemble folder: {why}")


def _model_files(dir: Path) -> list[Path]:
    """The files of a model folder: config, weights, meta and the codecs (src.* / tgt.*)."""
    names = {CONFIG, WEIGHTS, META}
    return sorted(p for p in dir.iterdir() if p.is_file() and (p.name in names or p.name.startswith(("src.", "tgt."))))


def _check_same_codecs(dirs: list[Path]) -> None:
    """CheckpointError unless every folder's src.* / tgt.* files equal the first folder's."""
    def codec_files(d: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in _model_files(d) if p.name.startswith(("src.", "tgt."))}
    first = codec_files(dirs[0])
    for d in dirs[1:]:
        other = codec_files(d)
        for name in sorted(set(first) | set(other)):
            if first.get(name) != other.get(name):
                raise CheckpointError(f"{d / name} differs from {dirs[0] / name}: the models of an ensemble "
                                      f"need the same vocabularies and tokenizers (trained on the same data "
                                      f"with the same tokenizer settings)")


def write_ensemble(dirs: list[str | Path], out_dir: str | Path,
                   rescorers: list[str | Path] | tuple = ()) -> Path:
    """Write an ensemble folder ``out_dir`` of the model folders ``dirs`` (at least 2, or
    1 with rescorers) and the ``rescorers``, model folders that re-rank the members' beam
    (see Translator; e.g. a right-to-left model, ``tokenizer.reverse_target``).

    Each model's files are copied into ``out_dir/member-N`` and ``out_dir/rescorer-N``
    (so the folder stands alone), and ``ensemble.json`` lists them. They are loaded
    first (every check of ``load_model``); the members must share their vocabularies
    and tokenizers (a rescorer scores text, so its own may differ); an ensemble folder
    cannot be one of them.
    """
    dirs, extra, out = [Path(d) for d in dirs], [Path(d) for d in rescorers], Path(out_dir)
    if len(dirs) < (1 if extra else 2):
        raise CheckpointError(f"an ensemble needs at least 2 model folders, or 1 and a rescorer; got {len(dirs)}")
    if (out / WEIGHTS).exists() or any(out.resolve() == d.resolve() for d in dirs + extra):
        raise CheckpointError(f"{out} holds a model already; write the ensemble into a new folder")
    for d in dirs + extra:
        refuse_ensemble(d, "give its members' folders instead")
        load_model(d)  # every check, before anything is written
    _check_same_codecs(dirs)
    names = [f"member-{i}" for i in range(1, len(dirs) + 1)]
    extra_names = [f"rescorer-{i}" for i in range(1, len(extra) + 1)]
    manifest = {"transduce_version": __version__, "members": names,
                "sources": [str(d.resolve()) for d in dirs], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if extra:
        manifest.update(rescorers=extra_names, rescorer_sources=[str(d.resolve()) for d in extra])
    with atomic_dir(out_dir) as tmp:
        for name, d in zip(names + extra_names, dirs + extra):
            (tmp / name).mkdir()
            for f in _model_files(d):
                shutil.copy2(f, tmp / name / f.name)
        _write_text(tmp / ENSEMBLE, json.dumps(manifest, indent=2))
    return Path(out_dir)


def _folder_names(manifest: dict, key: str, least: int, dir: Path) -> list[Path]:
    """The folders that ensemble.json's ``key`` names inside ``dir`` (at least ``least``)."""
    names = manifest.get(key, [])
    if len(names) < least or not all(isinstance(n, str) and n and "/" not in n and "\\" not in n
                                      and n not in (".", "..") for n in names):
        many = f"at least {least} folder{'s' if least > 1 else ''}" if least else "folders"
        raise CheckpointError(f"{dir / ENSEMBLE}: '{key}' must name {many} inside {dir}")
    folders = [dir / n for n in names]
    for f in folders:
        refuse_ensemble(f, "an ensemble cannot be a member or rescorer of an ensemble")
    return folders


def _load_ensemble(dir: Path, device: str | torch.device) -> Loaded:
    """An ensemble folder -> Loaded(Ensemble (the member itself if it is the only one), the
    first member's config and codecs, meta {"ensemble": [each member's meta.json],
    "rescorers": [each rescorer's]}, the rescorers' Loaded)."""
    from .ensembles import Ensemble

    manifest = read_json(dir / ENSEMBLE)
    check_schema(manifest, ENSEMBLE_SCHEMA, dir / ENSEMBLE)
    extra = _folder_names(manifest, "rescorers", 0, dir)
    members = _folder_names(manifest, "members", 1 if extra else 2, dir)
    loaded = [load_model(m, device) for m in members]
    _check_same_codecs(members)
    rescorers = [load_model(r, device) for r in extra]
    first = loaded[0]
    model = Ensemble([x.model for x in loaded]).eval() if len(loaded) > 1 else first.model
    meta = {"ensemble": [x.meta for x in loaded]}
    if rescorers:
        meta["rescorers"] = [x.meta for x in rescorers]
    return Loaded(model, first.config, first.src_codec, first.tgt_codec, meta, rescorers)
