"""A training run's folder: where resume starts, which checkpoints are kept.

Layout (``out_dir``)::

    config.yaml src.* tgt.* model.safetensors meta.json
                         the BEST model so far (by train.early_stop_metric),
                         so ``transduce translate RUN`` works on the run itself
                         (the last model when there is no validation set)
    log.jsonl            the run log (runlog.py)
    tensorboard/         TensorBoard scalars (train.tensorboard)
    checkpoints/step-N/  the last ``keep_last`` checkpoints: a model folder plus
                         trainer/ (optimizer, RNG, counters); resume reads the
                         newest one that loads
    checkpoints/best-N/  the best ``keep_best`` model folders

checkpoint.py writes and reads each folder; this module decides which ones:
a fresh run refuses a folder that already holds ``step-N`` checkpoints;
resume takes the newest ``step-N`` that loads (older ones are tried when a
newer one raises a CheckpointError); after each save all but the newest
``keep_last`` ``step-N`` folders are removed (never the one just written);
``best_list`` holds ``[value, step]`` of the kept ``best-N`` folders, best
first (ties: the later step first), and is saved in ``trainer/state.json``.
When a run starts (fresh or resumed) the temporary leftovers of killed
writers (``.NAME.tmp-PID-*``, ``.NAME.old-PID-*`` of dead processes, see
checkpoint.py) are removed from the run folder, ``checkpoints/``, its
folders, and beside the run folder.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import checkpoint
from .config import Config
from .errors import CheckpointError, UserError

CHECKPOINTS = "checkpoints"
STEP_PREFIX = "step-"
BEST_PREFIX = "best-"


@dataclass
class ResumePoint:
    """A loaded ``checkpoints/step-N``: the model folder and its trainer/ state."""

    folder: Path
    loaded: checkpoint.Loaded
    training: checkpoint.TrainingState


def saved_steps(run: str | Path) -> list[Path]:
    """The ``checkpoints/step-N`` folders of a run that hold weights, oldest first."""
    folder = Path(run) / "checkpoints"
    return sorted((p for p in folder.glob(f"{STEP_PREFIX}*") if (p / checkpoint.WEIGHTS).is_file()),
                  key=step_of)


def step_of(path: Path) -> int:
    """N of a ``prefix-N`` folder name; -1 when the name does not end in a number."""
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def remove_tree(path: Path) -> None:
    """Remove a folder and everything in it; errors are ignored."""
    shutil.rmtree(path, ignore_errors=True)


def prune(folder: Path, prefix: str, n: int, keep: int) -> None:
    """Remove all but the newest ``n`` ``prefix<step>`` folders (never step ``keep``)."""
    found = sorted((p for p in folder.glob(f"{prefix}*") if step_of(p) >= 0), key=step_of, reverse=True)
    for path in found[n:]:
        if step_of(path) != keep:
            remove_tree(path)


@dataclass
class RunFolder:
    """The checkpoint bookkeeping of one run folder (see the module docstring)."""

    out: Path
    keep_last: int
    keep_best: int
    higher_is_better: bool
    best_list: list[list] = field(default_factory=list)  # [value, step] of the kept best-N, best first

    @property
    def checkpoints(self) -> Path:
        """``out/checkpoints``."""
        return self.out / CHECKPOINTS

    def step_dir(self, step: int) -> Path:
        """``checkpoints/step-<step>``."""
        return self.checkpoints / f"{STEP_PREFIX}{step}"

    def best_dir(self, step: int) -> Path:
        """``checkpoints/best-<step>``."""
        return self.checkpoints / f"{BEST_PREFIX}{step}"

    def check_fresh(self) -> None:
        """UserError when the folder already holds a run (some ``checkpoints/step-N``)."""
        if any(self.checkpoints.glob(f"{STEP_PREFIX}*")):
            raise UserError(f"{self.out} already holds a training run; resume it "
                            f"(transduce train --resume {self.out}) or choose another --out")

    def find_resume(self, warn: Callable[[str], None],
                    check: Callable[[checkpoint.TrainingState, Path], None] | None = None) -> ResumePoint:
        """The newest ``checkpoints/step-N`` that loads and passes ``check`` (a CheckpointError
        when the training state is not usable); ``warn`` is told of each one skipped."""
        found = sorted(self.checkpoints.glob(f"{STEP_PREFIX}*"), key=step_of, reverse=True)
        if not found:
            raise UserError(f"cannot resume: no checkpoint in {self.checkpoints}")
        for folder in found:
            try:
                loaded = checkpoint.load_model(folder, "cpu")
                training = checkpoint.load_training_state(folder, "cpu")
                if check is not None:
                    check(training, folder / checkpoint.TRAINER)
                return ResumePoint(folder, loaded, training)
            except CheckpointError as exc:
                warn(f"skipping checkpoint {folder}: {exc}")
        raise CheckpointError(f"cannot resume: no loadable checkpoint in {self.checkpoints}")

    def remove_stale(self) -> list[Path]:
        """Remove the temporary leftovers of killed writers (see the module docstring); returns them."""
        removed = checkpoint.remove_stale(self.out.parent, self.out.name) + checkpoint.remove_stale(self.out)
        removed += checkpoint.remove_stale(self.checkpoints)
        if self.checkpoints.is_dir():
            for folder in sorted(p for p in self.checkpoints.iterdir() if p.is_dir() and step_of(p) >= 0):
                removed += checkpoint.remove_stale(folder)
        return removed

    def newest_step(self) -> Path | None:
        """The newest ``checkpoints/step-N`` folder, or None."""
        found = sorted(self.checkpoints.glob(f"{STEP_PREFIX}*"), key=step_of)
        return found[-1] if found else None

    def write_config(self, cfg: Config) -> None:
        """Create the folder and its config.yaml (left alone when it exists)."""
        self.out.mkdir(parents=True, exist_ok=True)
        if not (self.out / checkpoint.CONFIG).exists():
            checkpoint.atomic_write_text(self.out / checkpoint.CONFIG, cfg.to_yaml())

    def prune_steps(self, current: int) -> None:
        """Keep the newest ``keep_last`` (at least 1) ``step-N`` folders and step ``current``."""
        prune(self.checkpoints, STEP_PREFIX, max(1, self.keep_last), keep=current)

    def add_best(self, value: float, step: int) -> None:
        """Record ``best-<step>`` (just written) with ``value``; remove those beyond ``keep_best``."""
        self.best_list = [b for b in self.best_list if b[1] != step] + [[value, step]]
        higher = self.higher_is_better
        self.best_list.sort(key=lambda b: (-b[0] if higher else b[0], -b[1]))
        for _, dropped in self.best_list[self.keep_best:]:
            remove_tree(self.best_dir(dropped))
        self.best_list = self.best_list[:self.keep_best]
