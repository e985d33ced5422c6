"""The run log: ``RUN/log.jsonl`` and, when asked for, TensorBoard scalars.

log.jsonl holds one JSON object per line, each with ``step`` first and
``time`` (seconds of training so far) last; non-finite floats are written as
null. The trainer writes:

* ``{"step", "split": "data", "train_pairs", "dropped_too_long",
  "valid_pairs", "time"}`` at the start of each training session (pairs
  dropped for being longer than ``data.max_len`` tokens);
* train records every ``log_every`` steps ``{"step", "split": "train",
  "epoch", "loss", "ppl", "accuracy", "lr", "tf_ratio", "tok_per_s",
  "grad_norm", "time"}`` (means over the interval);
* valid records ``{"step", "split": "valid", "loss", "ppl", "accuracy",
  "bleu", "chrf", "wer", "per", "exact_match", "time"}``;
* a record ``{"step", "split": "train", "tf_ratio", "time"}`` whenever the
  teacher-forcing ratio has moved by 0.01 or more since the last one logged
  (every change goes to TensorBoard).

On resume, records after the resumed step are dropped (``truncate``); so is
a line cut short by a full disk. A record that cannot be written (a full
disk) is a ``CheckpointError`` saying so (the checkpoints are intact).
TensorBoard (``RUN/tensorboard/``) gets every numeric value of every record
but step, split, time and epoch, as ``<split>/<key>``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_text, write_error
from .errors import CheckpointError

LOG = "log.jsonl"
TENSORBOARD = "tensorboard"
NOT_SCALARS = ("step", "split", "time", "epoch")


def finite_or_none(value: Any) -> Any:
    """``value``, or None for a non-finite float (JSON has no inf or nan)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunLog:
    """Writes the run log of one process; a disabled log (ranks > 0) writes nothing."""

    def __init__(self, out_dir: Path, tensorboard: bool, enabled: bool = True):
        """The log of ``out_dir``; TensorBoard scalars too when ``tensorboard`` (and ``enabled``)."""
        self.path = Path(out_dir) / LOG
        self.tensorboard_dir = Path(out_dir) / TENSORBOARD
        self.enabled = enabled
        self.use_tensorboard = tensorboard and enabled
        self.tf_logged: float | None = None  # last ratio written to log.jsonl (saved with checkpoints)
        self._tb_ratio: float | None = None  # last ratio written to TensorBoard
        self._writer = None  # the SummaryWriter, made at the first scalar

    def write(self, step: int, elapsed: float, record: dict) -> None:
        """Append ``{"step": step, **record, "time": elapsed}`` to log.jsonl and TensorBoard."""
        if not self.enabled:
            return
        record = {"step": step, **{k: finite_or_none(v) for k, v in record.items()},
                  "time": round(elapsed, 3)}
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise CheckpointError(write_error(self.path, exc, "the run log")) from exc
        writer = self._tensorboard()
        if writer is not None:
            for key, value in record.items():
                if key not in NOT_SCALARS and isinstance(value, (int, float)):
                    writer.add_scalar(f"{record['split']}/{key}", value, step)

    def note_ratio(self, step: int, elapsed: float, ratio: float) -> None:
        """Log the teacher-forcing ratio when it changes (log.jsonl: by 0.01 or more)."""
        writer = self._tensorboard()
        if writer is not None and ratio != self._tb_ratio:
            writer.add_scalar("train/tf_ratio", ratio, step)
            self._tb_ratio = ratio
        if self.tf_logged is None or abs(ratio - self.tf_logged) >= 0.01:
            self.write(step, elapsed, {"split": "train", "tf_ratio": ratio})
            self.tf_logged = ratio

    def truncate(self, step: int) -> None:
        """Drop records written after ``step`` (they belong to the lost part of a run)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except ValueError:
                continue
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept), "the run log")

    def _tensorboard(self):
        """The SummaryWriter (made on first use), or None without TensorBoard."""
        if self._writer is None and self.use_tensorboard:
            # imported here: torch.utils.tensorboard is heavy (it loads tensorboard and protobuf)
            # and only runs with train.tensorboard
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.tensorboard_dir))
        return self._writer

    def close(self) -> None:
        """Flush and close the TensorBoard writer, if any."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
