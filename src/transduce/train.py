"""Training: the loop of one run (step, validate, early stop, checkpoints, exact resume).

``Trainer`` owns the model, optimizer, schedules and counters of a run and
runs the loop. What surrounds the loop lives beside it: the run folder's
layout and bookkeeping (resume discovery, pruning, best-N) in runfolder.py,
the run log (log.jsonl, TensorBoard) in runlog.py, the LR, early-stopping
and teacher-forcing schedules in schedules.py, the scheduled-sampling inputs
in sampling.py; checkpoint.py writes and reads the folders.

Checkpoints are written at each validation (every ``valid_every`` steps and at
the end) and on Ctrl-C (first Ctrl-C: finish the update, save, stop; a second
one aborts at once).

Data. Training pairs with more than ``data.max_len`` tokens on a side (or an
empty source) are dropped; the counts are said on stderr and written to the
log at the start of each training session, and an empty validation split is
announced (no validation: the run folder then holds the last model).

Steps. ``step`` counts optimizer updates. One update consumes a *group* of
``accum_steps * world_size`` consecutive batches of the epoch's seeded batch
order (batching.BatchSampler); rank r takes ``group[r::world_size]``. The
loss of every micro-batch is ``loss_sum * world_size / N`` with N the number
of target tokens of the whole group (known to every rank without
communication), so after DDP's gradient averaging the gradient is that of
``sum of token losses / N`` — exactly what one process gets on the same
global batch with ``accum_steps * world_size`` micro-batches. At the end of
an epoch a group is cut to a multiple of world_size batches (the rest of the
epoch is skipped; nothing is skipped with one process).

Exact resume. Before every update the torch RNG (dropout) and the
teacher-forcing coin generator are re-seeded from (seed, step, rank), the
batch order depends only on (seed, epoch) and the position in the epoch is
saved, the optimizer, LR schedule, GradScaler, early-stopping state and RNG
states are saved; validation runs under ``torch.random.fork_rng`` and does
not move any generator. On CPU a run stopped at step k and resumed ends with
weights bitwise equal to an uninterrupted run.

Non-finite updates. An update whose loss or gradient norm is NaN or inf is
skipped (no optimizer step; with fp16 the GradScaler keeps its own skipping
of overflowing gradients, and a non-finite loss is counted as well) and said
on stderr; ``train.max_nonfinite`` such updates in a row raise
``TrainingDiverged`` (the CLI: one line, exit 1). Weights holding NaN or inf
are never saved nor chosen as best (``TrainingDiverged`` instead), so the
newest checkpoint stays a finite resume point.

Validation goes through a ``Translator`` over the live model, the same code
as ``transduce translate`` and ``evaluate``: teacher-forced loss, perplexity
and token accuracy on the whole valid split (``Translator.likelihood``); then
the first ``valid_max_sentences`` sentences decoded (greedy, or beam search
of width ``train.valid_beam``, with the cfg.search limits and penalties) and
scored with BLEU, chrF (sacreBLEU), WER, PER and exact match (metrics.py),
all always computed. Early stopping,
best checkpoints and reduce-on-plateau follow ``train.early_stop_metric``
(loss, wer, per: lower is better; bleu, chrf, accuracy: higher); ``accuracy``
is the teacher-forced token accuracy (in %).

Distributed (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK): process group
``nccl`` on CUDA, ``gloo`` on CPU, DistributedDataParallel, rank 0 alone
validates, logs and writes checkpoints (barriers around them); validation
results are broadcast so that every rank takes the same early-stopping and
plateau decisions; after every update the ranks agree on the longest clock and
on any Ctrl-C (``Workers.agree``), so a time budget or an interrupt ends them at
the same step. ``train.processes`` starts the processes without torchrun
(launch.py).
"""
from __future__ import annotations

import math
import os
import random
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from . import checkpoint, launch
from .batching import BatchSampler, Example, collate, encode_pairs, example_sizes, filter_long
from .config import Config, TrainConfig
from .corpora import load_splits
from .device import autocast, resolve_device, resolve_precision
from .errors import ConfigError, DataError
from .loss import masked_cross_entropy, token_accuracy
from .metrics import HIGHER_IS_BETTER, perplexity, score_texts
from .model import Seq2Seq
from .runfolder import ResumePoint, RunFolder
from .runlog import RunLog
from .sampling import make_next_input, two_pass_inputs
from .schedules import EarlyStopping, LRSchedule, teacher_forcing_ratio
from .translator import Translator, model_folder
from .vocab import UNK, Codec, build_codecs

DECODE_METRICS = ["bleu", "chrf", "wer", "per", "exact_match"]


class TrainingDiverged(RuntimeError):
    """Training cannot go on: too many non-finite updates in a row, or non-finite weights.

    The message is one line naming the last finite checkpoint (the resume point);
    the CLI prints it and exits 1.
    """


NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))
TRAINER_SCHEMA = {
    "step": int, "epoch": int, "pos": int, "tokens_seen": int, "elapsed": NUMBER,
    "schedule": {"scale": NUMBER, "best": OPTIONAL_NUMBER, "bad": int},
    "early": {"best": OPTIONAL_NUMBER, "best_step": (int, type(None)), "bad": int},
    "best_list": [[NUMBER]], "scaler": dict, "last_valid": dict, "tf_logged": OPTIONAL_NUMBER,
    "rng": {"python": list, "numpy": list}, "world_size?": int, "nonfinite?": int,
}
"""The trainer's part of trainer/state.json (``Trainer.training_state``); "?": absent in older runs."""
RNG_TENSORS = {"torch": torch.uint8, "numpy": torch.int64, "tf_generator": torch.uint8}
"""The tensors trainer/rng.safetensors must hold (``cuda.<i>`` ones are optional)."""


def check_training_state(training: checkpoint.TrainingState, folder: Path) -> None:
    """CheckpointError naming the file when ``folder`` (a trainer/) cannot resume this trainer."""
    checkpoint.check_schema(training.state, TRAINER_SCHEMA, folder / checkpoint.STATE, "trainer")
    checkpoint.check_tensors(training.tensors, RNG_TENSORS, folder / checkpoint.RNG)


def _say(msg: str) -> None:
    """One ``transduce: ...`` line on stderr."""
    print(f"transduce: {msg}", file=sys.stderr, flush=True)


# --- devices and processes ------------------------------------------------------

@dataclass
class Workers:
    """This process's place in a (possibly one-process) job of ``world`` processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this process made the process group (and destroys it)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where collectives run

    @property
    def enabled(self) -> bool:
        """True when there is more than one process."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """True on rank 0, the one that validates, logs and writes."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for with one)."""
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object), on every rank."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, elapsed: float, stop: bool) -> tuple[float, bool]:
        """(the longest ``elapsed`` of all processes, whether any of them has to ``stop``):
        one small all-reduce per update, so that a time budget or Ctrl-C ends every process
        at the same step, and a budgeted learning rate is the same on all of them."""
        if not self.enabled:
            return elapsed, stop
        box = torch.tensor([elapsed, float(stop)], dtype=torch.float64, device=self.device)
        dist.all_reduce(box, op=dist.ReduceOp.MAX)
        return float(box[0]), bool(box[1])

    def close(self) -> None:
        """Destroy the process group when this process made it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: torch.device) -> Workers:
    """Join the torchrun job described by the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" not in os.environ or world <= 1:
        return Workers()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's collectives run on this process's own GPU
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Workers(rank, world, local, owns, device)


# --- data ------------------------------------------------------------------------

@dataclass
class TrainingData:
    """Codecs, encoded examples and the training batch sampler."""

    src_codec: Codec
    tgt_codec: Codec
    train: list[Example]
    valid: list[Example]
    valid_pairs: list[tuple[str, str]]
    sampler: BatchSampler
    dropped_too_long: int = 0  # training pairs over data.max_len tokens (or with an empty source)
    valid_carved: bool = False  # valid set aside from the training files (no data.valid)
    unknown: tuple[float, float] = (0.0, 0.0)  # % of training source / target tokens that are <unk>

    @property
    def codecs(self) -> tuple[Codec, Codec]:
        """(src_codec, tgt_codec)."""
        return self.src_codec, self.tgt_codec


def build_data(cfg: Config, codecs: tuple[Codec, Codec] | None = None) -> TrainingData:
    """Corpus -> tokenizers/vocabularies (or the given ones, on resume) -> examples -> sampler."""
    splits = load_splits(cfg.data)
    src_codec, tgt_codec = codecs or build_codecs(cfg.tokenizer, splits.train)
    train, dropped = filter_long(encode_pairs(splits.train, src_codec, tgt_codec), cfg.data.max_len)
    if not train:
        raise DataError(f"no training pair is left after dropping {dropped} longer than "
                        f"data.max_len={cfg.data.max_len} tokens")
    valid = encode_pairs(splits.valid, src_codec, tgt_codec)
    valid_keep = [i for i, ex in enumerate(valid) if ex.src_ids]
    opts = cfg.train
    sampler = BatchSampler(example_sizes(train), opts.batch_tokens, opts.batch_sentences, shuffle=True,
                           seed=opts.seed)
    return TrainingData(src_codec, tgt_codec, train, [valid[i] for i in valid_keep],
                        [splits.valid[i] for i in valid_keep], sampler, dropped, splits.valid_carved,
                        _unknown_percent(train))


def _unknown_percent(examples: list[Example]) -> tuple[float, float]:
    """Percent of source and target ids that are UNK (pieces the vocabularies lack)."""
    sides = [[ex.src_ids for ex in examples], [ex.tgt_ids for ex in examples]]
    out = []
    for rows in sides:
        total = sum(len(r) for r in rows)
        out.append(100.0 * sum(r.count(UNK) for r in rows) / total if total else 0.0)
    return out[0], out[1]


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD from the config. Adam and AdamW take PyTorch's fused kernel
    where this torch has one for the device (CUDA; CPU from torch 2.4): several times faster
    steps than the per-tensor loop on the CPU (bench/optimizer.py)."""
    params = list(params)
    if cfg.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        try:
            return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        except RuntimeError:  # no fused kernel for these parameters' device
            return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python's random: a fresh run's saved RNG states depend on the seed only."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix-style mixing)."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (p & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


@dataclass
class Interval:
    """Training statistics summed since the last train log record."""

    loss: float = 0.0
    nll: float = 0.0
    tokens: int = 0
    correct: int = 0
    steps: int = 0
    grad_norm: float = float("nan")
    start: float = field(default_factory=time.perf_counter)

    def tokens_per_second(self, world: int) -> float:
        """Target tokens per second over all ``world`` processes since ``start``."""
        return self.tokens * world / max(1e-9, time.perf_counter() - self.start)


# --- the trainer -------------------------------------------------------------------

class PlainProgress:
    """Where no progress bar is drawn (stderr is a log file or nohup's), one plain line
    every ``every`` seconds: step, loss, tokens/s, lr, ETA."""

    def __init__(self, every: float, enabled: bool, clock=time.perf_counter):
        self.every, self.enabled, self.clock = every, enabled, clock
        self.last = clock()
        self.start_step: int | None = None
        self.start_time = self.last

    def maybe_say(self, trainer: "Trainer", stats: Interval) -> None:
        """Print the line when ``every`` seconds have passed since the last one."""
        now = self.clock()
        if self.start_step is None:
            self.start_step, self.start_time = trainer.step - 1, now
        if not self.enabled or now - self.last < self.every:
            return
        self.last = now
        opts = trainer.train_cfg
        rate = (trainer.step - self.start_step) / max(1e-9, now - self.start_time)  # steps/s
        left = (opts.max_steps - trainer.step) / max(rate, 1e-9)
        if opts.max_minutes:
            left = min(left, 60 * opts.max_minutes - trainer.elapsed)
        loss = stats.loss / stats.tokens if stats.tokens else float("nan")
        _say(f"step {trainer.step}/{opts.max_steps} loss {loss:.4f} "
             f"tok/s {stats.tokens_per_second(trainer.workers.world):,.0f} "
             f"lr {trainer.optimizer.param_groups[0]['lr']:.3g} eta {_clock(max(0.0, left))}")


def _clock(seconds: float) -> str:
    """H:MM:SS."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Trainer:
    """Owns the model, optimizer, schedules and counters of one training run."""

    def __init__(self, cfg: Config, out_dir: str | Path, resume: bool = False,
                 init_from: str | Path | None = None):
        """Set up the run in ``out_dir``: a fresh one, the newest loadable checkpoint when
        ``resume``, or a fine-tuning run starting from the weights and vocabularies of the
        model folder ``init_from`` (fresh optimizer, schedule, step and best score)."""
        self.cfg, self.train_cfg, self.out = cfg, cfg.train, Path(out_dir)
        opts = self.train_cfg
        self.device = resolve_device(opts.device, int(os.environ.get("LOCAL_RANK", "0")), key="train.device")
        self.precision = resolve_precision(self.device, opts.precision, key="train.precision")
        self.workers = init_distributed(self.device)
        self.folder = RunFolder(self.out, opts.keep_last, opts.keep_best, HIGHER_IS_BETTER[opts.early_stop_metric])
        self.runlog = RunLog(self.out, opts.tensorboard, enabled=self.workers.main)
        start = self._find_start(resume)
        self.init_from = None if start or init_from is None else model_folder(init_from)
        if self.init_from is not None:
            checkpoint.refuse_ensemble(self.init_from, checkpoint.FINE_TUNE_A_MEMBER)
        init = checkpoint.load_model(self.init_from) if self.init_from else None
        source = start.loaded if start else init
        self.data = build_data(cfg, (source.src_codec, source.tgt_codec) if source else None)
        self.model = self._build_model(start, init)  # the Seq2Seq itself
        self.wrapped = self._wrap(self.model)  # what the training forward calls: DDP or the model
        self.optimizer = make_optimizer(opts, self.model.parameters())
        self.lr_schedule = LRSchedule(opts)
        self.early = EarlyStopping(opts.early_stop_metric, opts.patience)
        self.validator = Translator(self.model, cfg, *self.data.codecs, self.device, self.precision)
        if opts.precision == "auto":
            self._info(f"precision auto: {self.precision} on {self.device}")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.generator = torch.Generator(device=self.device)  # teacher-forcing coins
        self.step, self.epoch, self.pos, self.tokens_seen, self.elapsed = 0, 0, 0, 0, 0.0
        self.last_valid: dict = {}
        self.validated_at: int | None = None  # step of the last validation of this session
        self.updating = False  # from the optimizer step until the counters move (see _stop_on_interrupt)
        self.stop_requested = self.interrupted = self.stopped_early = False
        self.stop_signal = False  # Ctrl-C seen by this process; stop_requested once all processes know
        self.nonfinite = 0  # consecutive updates skipped for a non-finite loss or gradient norm
        show_plain = opts.progress and self.workers.main and not sys.stderr.isatty()
        self.plain_progress = PlainProgress(opts.progress_every, show_plain)
        self._epoch_cache: tuple[int, list[list[int]]] | None = None
        if start:
            self._restore(start)

    # -- set-up -------------------------------------------------------------
    def _find_start(self, resume: bool) -> ResumePoint | None:
        """The checkpoint to resume from (``resume``), else None after checking the folder is free."""
        if self.workers.main:
            for path in self.folder.remove_stale():
                self._info(f"removed {path} (left by a writer that was killed)")
        self.workers.barrier()
        if resume:
            return self.folder.find_resume(self._info, check_training_state)
        self.folder.check_fresh()
        return None

    def _build_model(self, start: ResumePoint | None, init: checkpoint.Loaded | None) -> nn.Module:
        """The resumed model, the ``init_from`` model, or a fresh one seeded with train.seed;
        on the device, in train mode."""
        if start is not None:
            if start.loaded.config.model != self.cfg.model:
                raise ConfigError(f"cannot change the model.* settings when resuming {self.out}")
            model = start.loaded.model
        elif init is not None:
            if init.config.model != self.cfg.model:
                raise ConfigError(f"--init-from {self.init_from}: the config's model.* settings differ "
                                  f"from the model folder's (fine-tuning keeps its architecture)")
            seed_everything(self.train_cfg.seed)
            model = init.model
        else:
            seed_everything(self.train_cfg.seed)
            model = Seq2Seq.from_config(self.cfg.model, len(self.data.src_codec.vocab),
                                        len(self.data.tgt_codec.vocab))
        self._info(model.describe())
        return model.to(self.device).train()

    def _wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel around ``model`` in a multi-process job, else ``model``."""
        if not self.workers.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def _info(self, msg: str) -> None:
        """Say ``msg`` on stderr (rank 0 only)."""
        if self.workers.main:
            _say(msg)

    def _log(self, record: dict) -> None:
        """Append ``record`` to the run log at the current step and time."""
        self.runlog.write(self.step, self.elapsed, record)

    # -- state ----------------------------------------------------------------
    def training_state(self, rng: tuple[dict, dict] | None = None) -> checkpoint.TrainingState:
        """Everything but the weights that an exact resume needs (trainer/ of a checkpoint)."""
        plain, tensors = rng or checkpoint.capture_rng()
        tensors = dict(tensors, tf_generator=self.generator.get_state())
        state = {"step": self.step, "epoch": self.epoch, "pos": self.pos, "tokens_seen": self.tokens_seen,
                 "elapsed": self.elapsed, "schedule": self.lr_schedule.state_dict(),
                 "early": self.early.state_dict(), "best_list": self.folder.best_list,
                 "scaler": self.scaler.state_dict(), "last_valid": self.last_valid,
                 "tf_logged": self.runlog.tf_logged, "rng": plain, "world_size": self.workers.world,
                 "nonfinite": self.nonfinite}
        return checkpoint.TrainingState(self.optimizer.state_dict(), state, tensors)

    def _restore(self, start: ResumePoint) -> None:
        """Inverse of ``training_state``; drops the log records after the resumed step."""
        training = start.training
        s = training.state
        self.optimizer.load_state_dict(training.optimizer)
        self.lr_schedule.load_state_dict(s["schedule"])
        self.early.load_state_dict(s["early"])
        if s["scaler"]:
            self.scaler.load_state_dict(s["scaler"])
        self.step, self.epoch, self.pos = s["step"], s["epoch"], s["pos"]
        self.tokens_seen, self.elapsed, self.folder.best_list = s["tokens_seen"], s["elapsed"], s["best_list"]
        self.last_valid, self.runlog.tf_logged = s["last_valid"], s["tf_logged"]
        self.nonfinite = s.get("nonfinite", 0)
        self.generator.set_state(training.tensors["tf_generator"].cpu())
        checkpoint.restore_rng(s["rng"], training.tensors)
        self.runlog.truncate(self.step)
        self._info(f"resumed from {start.folder} at step {self.step} (epoch {self.epoch}, batch {self.pos})")

    # -- batches ----------------------------------------------------------------
    def _epoch_batches(self) -> list[list[int]]:
        """The batch order of the current epoch (computed once per epoch)."""
        if self._epoch_cache is None or self._epoch_cache[0] != self.epoch:
            self._epoch_cache = (self.epoch, self.data.sampler.epoch_batches(self.epoch))
        return self._epoch_cache[1]

    def next_group(self) -> list[list[int]] | None:
        """The batches (index lists) of the next update, all ranks; None when the epochs are done."""
        need, world = self.train_cfg.accum_steps * self.workers.world, self.workers.world
        for _ in range(2):
            if self.train_cfg.max_epochs is not None and self.epoch >= self.train_cfg.max_epochs:
                return None
            group = self._epoch_batches()[self.pos:self.pos + need]
            usable = len(group) - len(group) % world
            if usable:
                return group[:usable]
            self.epoch, self.pos = self.epoch + 1, 0
        raise DataError(f"the training data gives fewer than {world} batches per epoch "
                        f"({len(self.data.train)} pairs); lower train.batch_tokens")

    def _tokens(self, indices: list[int]) -> int:
        """Target tokens (EOS included) of the training examples ``indices``."""
        return sum(len(self.data.train[i].tgt_ids) + 1 for i in indices)

    # -- one update -----------------------------------------------------------------
    def _autocast(self):
        """The autocast context of the training precision."""
        return autocast(self.device, self.precision)

    def forward(self, batch, ratio: float):
        """Logits [B, T, V] for a batch at teacher-forcing ratio ``ratio``."""
        temp = self.train_cfg.sample_temperature
        if ratio >= 1.0:
            return self.wrapped(batch.src, batch.src_lengths, batch.tgt_in).logits
        if self.train_cfg.tf_two_pass and self.model.supports_fused:
            mixed = two_pass_inputs(self.model, batch, ratio, temp, self.generator)
            return self.wrapped(batch.src, batch.src_lengths, mixed).logits
        nxt = make_next_input(ratio, temp, self.generator)
        return self.wrapped(batch.src, batch.src_lengths, batch.tgt_in, next_input=nxt).logits

    def _reseed(self) -> None:
        """Seed dropout and the coins from (seed, step, rank): the same on resume."""
        torch.manual_seed(_mix_seed(self.train_cfg.seed, self.step, self.workers.rank))
        self.generator.manual_seed(_mix_seed(self.train_cfg.seed + 1, self.step, self.workers.rank))

    def train_step(self, group: list[list[int]], ratio: float, stats: Interval) -> None:
        """Forward/backward over this rank's micro-batches of ``group``, then one update."""
        self._reseed()
        n_global = sum(self._tokens(b) for b in group)
        world = self.workers.world
        mine = group[self.workers.rank::world]
        loss = 0.0
        for i, indices in enumerate(mine):
            batch = collate(self.data.train, indices).to(self.device)
            last = i == len(mine) - 1
            with nullcontext() if last or not self.workers.enabled else self.wrapped.no_sync():
                with self._autocast():
                    logits = self.forward(batch, ratio)
                out = masked_cross_entropy(logits, batch.tgt_out, self.train_cfg.label_smoothing)
                self.scaler.scale(out.loss_sum * (world / n_global)).backward()
            loss += float(out.loss_sum.detach())
            stats.nll += float(out.nll_sum)
            stats.tokens += out.n_tokens
            stats.correct += out.n_correct
        stats.loss += loss
        stats.grad_norm = self._update(math.isfinite(loss))
        stats.steps += 1
        self.tokens_seen += n_global

    def _time_done(self) -> float:
        """Fraction of the train.max_minutes budget spent (0 without a budget)."""
        budget = self.train_cfg.max_minutes
        return min(1.0, self.elapsed / (60.0 * budget)) if budget else 0.0

    def _update(self, loss_finite: bool) -> float:
        """Clip, set the lr of this step, step the optimizer; -> the gradient norm.

        A non-finite loss or gradient norm skips the step and is counted
        (with fp16 the GradScaler skips overflowing gradients on its own).
        """
        self.scaler.unscale_(self.optimizer)
        norm = self._grad_norm()
        lr = self.lr_schedule.lr_at(self.step, self._time_done())
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        if not self.scaler.is_enabled() and not (loss_finite and math.isfinite(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            self._count_nonfinite("loss" if not loss_finite else "gradient norm")
            return norm
        self.updating = True  # until the counters move (see _stop_on_interrupt)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if loss_finite:
            self.nonfinite = 0
        else:
            self._count_nonfinite("loss")
        return norm

    def _grad_norm(self) -> float:
        """The global gradient norm, after clipping to train.clip_norm when set."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.train_cfg.clip_norm:
            return float(torch.nn.utils.clip_grad_norm_(params, self.train_cfg.clip_norm))
        return float(torch.nn.utils.get_total_norm([p.grad for p in params])) if params else 0.0

    def _count_nonfinite(self, what: str) -> None:
        """Count an update skipped for a non-finite ``what`` and say so."""
        self.nonfinite += 1
        self._info(f"step {self.step + 1}: non-finite {what}, update skipped "
                   f"({self.nonfinite} in a row; stopping at train.max_nonfinite={self.train_cfg.max_nonfinite})")

    def _diverged(self, why: str) -> TrainingDiverged:
        """The TrainingDiverged of ``why``, naming the resume point."""
        newest = self.folder.newest_step()
        where = (f"the last finite checkpoint is {newest} (resume: transduce train --resume {self.out})"
                 if newest else "no checkpoint was written")
        return TrainingDiverged(f"training diverged at step {self.step}: {why}; {where}; "
                                "lower train.lr or model.init_range, or set train.clip_norm")

    def _check_finite_weights(self) -> None:
        """TrainingDiverged when a weight holds NaN or inf (they are never saved)."""
        bad = checkpoint.non_finite(self.model.state_dict())
        if bad:
            raise self._diverged(f"{len(bad)} weight tensors hold NaN or inf (e.g. {bad[0]}); nothing saved")

    # -- validation -----------------------------------------------------------------
    def validate(self) -> dict:
        """Validation metrics (rank 0 computes, every rank receives); {} without a valid split.

        Through the same Translator as ``translate`` and ``evaluate``: the
        teacher-forced likelihood of the whole split (loss, ppl, accuracy) and
        the decoded first ``valid_max_sentences`` sentences (greedy, or beam
        search of width ``valid_beam``) scored against their references.
        """
        metrics: dict = {}
        if self.workers.main and self.data.valid:
            devices = [self.device.index or 0] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):  # validation moves no generator
                lik = self.validator.likelihood(self.data.valid)
                metrics = {"loss": lik.loss, "ppl": lik.ppl, "accuracy": lik.accuracy,
                           **self._valid_decode()}
        return self.workers.broadcast(metrics)

    def _valid_decode(self) -> dict:
        """Decode the first valid_max_sentences sources and score them (metrics.py)."""
        pairs = self.data.valid_pairs[:self.train_cfg.valid_max_sentences]
        beam = self.train_cfg.valid_beam
        options = dataclasses.replace(self.cfg.search, method="beam" if beam > 1 else "greedy",
                                      beam=beam, nbest=1, return_attention=False)
        hyps = [tr.text for tr in self.validator.translate([src for src, _ in pairs], options)]
        scores = score_texts(hyps, [tgt for _, tgt in pairs], DECODE_METRICS)
        return {k: v for k, v in scores.items() if not k.endswith("_signature")}

    def validate_and_save(self) -> None:
        """Validate, update early stopping / plateau, log, write checkpoints."""
        metrics = self.validate()
        self.last_valid = metrics
        improved = True
        name = self.train_cfg.early_stop_metric
        if metrics:
            improved = self.early.update(metrics[name], self.step)
            if self.lr_schedule.observe(metrics[name], HIGHER_IS_BETTER[name]):
                self._info(f"step {self.step}: {name} did not improve, lr scale now {self.lr_schedule.scale:g}")
            self._log({"split": "valid", **metrics})
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            self._info(f"step {self.step} valid: {shown}{' (best)' if improved else ''}")
        self.save(improved)
        self.validated_at = self.step
        if self.early.should_stop:
            self.stopped_early = True
            self._info(f"early stop: {name} did not improve for {self.early.bad} validations "
                       f"(best {self.early.best:.4g} at step {self.early.best_step})")

    # -- checkpoints -------------------------------------------------------------------
    def _meta(self) -> dict:
        """meta.json of the folders written now: counters, last metrics, best so far."""
        return {"step": self.step, "epoch": self.epoch, "metrics": self.last_valid,
                "best": {"metric": self.train_cfg.early_stop_metric, "value": self.early.best,
                         "step": self.early.best_step}}

    def save(self, improved: bool) -> None:
        """Write checkpoints/step-N (and the best model folders when ``improved``); rank 0 only.
        TrainingDiverged (nothing written) when a weight is NaN or inf."""
        self._check_finite_weights()
        self.workers.barrier()
        if self.workers.main:
            if improved:
                self._save_best()
            checkpoint.save_checkpoint(self.folder.step_dir(self.step), self.model, self.cfg,
                                       *self.data.codecs, self._meta(), self.training_state())
            self.folder.prune_steps(current=self.step)
        self.workers.barrier()

    def _save_best(self) -> None:
        """The run folder's model, and checkpoints/best-N when there are metrics and keep_best."""
        checkpoint.save_model(self.out, self.model, self.cfg, *self.data.codecs, self._meta())
        if not self.last_valid or self.train_cfg.keep_best < 1:
            return
        checkpoint.save_model(self.folder.best_dir(self.step), self.model, self.cfg, *self.data.codecs,
                              self._meta())
        self.folder.add_best(self.early.best, self.step)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> dict:
        """Train until max_steps / max_epochs / early stop / Ctrl-C; returns the summary."""
        if self.workers.main:
            self.folder.write_config(self.cfg)
        self._report_data()
        self.validated_at = self.step if self.step else None
        with self._sigint(), self._progress() as bar:
            try:
                self._loop(bar)
            except KeyboardInterrupt:
                self.interrupted = True
        if self.interrupted or self.stop_requested:
            return self._stop_on_interrupt()
        if self._time_done() >= 1.0 and self.step < self.train_cfg.max_steps:
            self._info(f"time budget of {self.train_cfg.max_minutes:g} minutes reached at step {self.step}")
        if self.validated_at != self.step:
            self.validate_and_save()
        return self.summary()

    def _report_data(self) -> None:
        """Say how many pairs train and validate (stderr and the log), and how many were dropped."""
        data = self.data
        self._info(f"{len(data.train)} training pairs ({data.dropped_too_long} dropped: longer than "
                   f"data.max_len={self.cfg.data.max_len} tokens or no source), "
                   f"{len(data.valid)} validation pairs")
        if not data.valid:
            self._info("the validation split is empty: no validation metrics, early stopping or best-N "
                       "checkpoints; the run folder holds the last model")
        elif data.valid_carved:
            self._info(f"the {len(data.valid)} validation pairs were set aside from the training data "
                       f"(no data.valid given)")
        if self.init_from is not None:
            self._info(f"fine-tuning from {self.init_from}: its weights and vocabularies, a fresh "
                       f"optimizer, schedule and step count")
        if any(data.unknown):
            self._info(f"{data.unknown[0]:.2f}% of the training source tokens and {data.unknown[1]:.2f}% "
                       f"of the target tokens are not in the vocabulary (<unk>)")
        self._log({"split": "data", "train_pairs": len(data.train),
                   "dropped_too_long": data.dropped_too_long, "valid_pairs": len(data.valid),
                   "valid_carved": data.valid_carved, "unknown_src_pct": data.unknown[0],
                   "unknown_tgt_pct": data.unknown[1]})

    def _loop(self, bar) -> None:
        """The updates, with train records every log_every steps and validation every valid_every."""
        stats, t0, base = Interval(), time.perf_counter(), self.elapsed
        opts = self.train_cfg
        while (self.step < opts.max_steps and self._time_done() < 1.0
               and not (self.stop_requested or self.stopped_early)):
            group = self.next_group()
            if group is None:
                break
            ratio = teacher_forcing_ratio(opts, self.step)
            self.runlog.note_ratio(self.step, self.elapsed, ratio)
            self.train_step(group, ratio, stats)
            self.pos, self.step = self.pos + len(group), self.step + 1
            self.updating = False
            if self.nonfinite >= opts.max_nonfinite:
                raise self._diverged(f"{self.nonfinite} updates in a row had a non-finite loss or "
                                     "gradient norm and were skipped")
            self.elapsed, self.stop_requested = self.workers.agree(base + time.perf_counter() - t0,
                                                                   self.stop_signal)
            bar.update(1)
            self.plain_progress.maybe_say(self, stats)
            if self.step % opts.log_every == 0 or self.step == opts.max_steps:
                bar.set_postfix(loss=f"{stats.loss / max(1, stats.tokens):.3f}",
                                tok_s=f"{stats.tokens_per_second(self.workers.world):.0f}")
                self._log_train(stats, ratio)
                stats = Interval()
            if self.step % opts.valid_every == 0:
                self.validate_and_save()

    def _log_train(self, stats: Interval, ratio: float) -> None:
        """The train record of the interval ``stats``."""
        self._log({"split": "train", "epoch": self.epoch, "loss": stats.loss / max(1, stats.tokens),
                   "ppl": perplexity(stats.nll, stats.tokens),
                   "accuracy": 100.0 * token_accuracy(stats.correct, stats.tokens),
                   "lr": self.optimizer.param_groups[0]["lr"], "tf_ratio": ratio,
                   "tok_per_s": stats.tokens_per_second(self.workers.world), "grad_norm": stats.grad_norm})

    def _stop_on_interrupt(self) -> dict:
        """After Ctrl-C: save a checkpoint unless stopped inside an update; the summary with ``resume``."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.updating:
            self._info("interrupted inside an optimizer update: no checkpoint written; "
                       f"resume from the last one with: transduce train --resume {self.out}")
        else:
            self.save(improved=not self.data.valid and self.workers.main)
            self._info(f"interrupted at step {self.step}: checkpoint saved in {self.folder.step_dir(self.step)}; "
                       f"resume with: transduce train --resume {self.out}")
        summary = self.summary()
        summary["resume"] = f"transduce train --resume {self.out}"
        return summary

    @contextmanager
    def _sigint(self) -> Iterator[None]:
        """First Ctrl-C: finish the current update, save, stop. Second: abort at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            """SIGINT: ask the loop to stop; the second time, abort."""
            if self.stop_signal:
                raise KeyboardInterrupt
            self.stop_signal = True
            self._info("stopping after this update and saving a checkpoint (Ctrl-C again to abort now)")

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _progress(self) -> tqdm:
        """The progress bar (shown on rank 0 when stderr is a terminal and train.progress)."""
        show = self.train_cfg.progress and self.workers.main and sys.stderr.isatty()
        return tqdm(total=self.train_cfg.max_steps, initial=self.step, disable=not show, unit="step",
                    dynamic_ncols=True, desc="train")

    def summary(self) -> dict:
        """What the run did: counters, time, best metric and step, last validation, how it ended."""
        return {"out_dir": str(self.out), "steps": self.step, "epochs": self.epoch,
                "tokens": self.tokens_seen, "time_s": round(self.elapsed, 3),
                "parameters": self.model.num_parameters(), "best_metric": self.train_cfg.early_stop_metric,
                "best": self.early.best, "best_step": self.early.best_step, "valid": self.last_valid,
                "interrupted": self.interrupted or self.stop_requested, "stopped_early": self.stopped_early}

    def close(self) -> None:
        """Close the TensorBoard writer and the process group this process made."""
        self.runlog.close()
        self.workers.close()


def train(cfg: Config, out_dir: str | Path, resume: bool = False,
          init_from: str | Path | None = None) -> dict:
    """Train ``cfg`` into ``out_dir`` (resume the run there when ``resume``; start from the
    model folder ``init_from``'s weights and vocabularies: fine-tuning); returns a summary.
    With ``train.processes`` > 1 (and no torchrun), in that many worker processes (launch.py)."""
    if launch.wanted(cfg):
        return launch.launch(cfg, out_dir, resume, init_from)
    trainer = Trainer(cfg, out_dir, resume, init_from)
    try:
        return trainer.run()
    finally:
        trainer.close()
